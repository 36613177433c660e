#pragma once
// How the engine's own threads (the insert thread, the maintenance thread that seals
// and calibrates, the compaction thread) step aside for the application's searches.
// On a machine with few cores a search thread shares its core with these threads as
// soon as more of them are runnable than there are cores, and the kernel then runs a
// background thread for a whole scheduler tick (4 ms at HZ=250) before the search
// gets its core back: that, not lock waits, is the tail of search latency under
// writes (engine-bench --mixed's tail breakdown: the slowest 1% spend about one tick
// off the CPU after one involuntary switch, and no more CPU than the median search).
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
