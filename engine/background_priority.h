#pragma once
// How the engine's own threads (the insert thread, the maintenance thread that seals
// and calibrates, the compaction thread) step aside for the application's searches:
// a nice value (the default), or SCHED_IDLE, under which a waking search preempts them
// at once but which, on a machine whose cores other work keeps busy, leaves them only
// idle CPU (writes then wait for it; Collection::WaitForSealRoom bounds memory).
// Measured (docs/BENCHMARKS.md section 8, docs/RELIABILITY.md run 9): on a quiet 2-core
// host SCHED_IDLE changes neither the mixed-load tail (CPU work: traversals through a
// sealed segment's tombstones) nor issue 14's R1 tail, so it stays an option.
//
// Thread safety: the functions act on the calling thread only; any thread may call them.

#include <cstdint>

namespace strata::engine {

struct BackgroundPriority {
  int nice = 10;          // 0..19; ignored with idle
  bool idle = false;      // SCHED_IDLE: runs only when nothing else wants the core
  uint32_t threads = 0;   // OpenMP team size of parallel work this thread starts (0: the default)
};

// Applies `p` to the calling thread (best effort: a refusal leaves it as it was).
void ApplyToThisThread(const BackgroundPriority& p);

}  // namespace strata::engine
