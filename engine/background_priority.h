#pragma once
// How the engine's own threads (the insert thread, the maintenance thread that seals
// and calibrates, the compaction thread) step aside for the application's searches:
// a nice value (the default), or SCHED_IDLE, under which a waking search preempts them
// at once but which, on a machine whose cores other work keeps busy, leaves them only
// idle CPU (writes then wait for it; Collection::WaitForSealRoom bounds memory); and,
// optionally, a set of CPUs they are confined to.
// Measured (docs/BENCHMARKS.md section 8, docs/RELIABILITY.md runs 9-13): on a quiet 2-core
// host neither nice nor SCHED_IDLE moves issue 14's R1 tail (a woken search still waits for a
// core that background work -- its user-space part or the kernel's work on its behalf -- holds
// for up to a scheduler tick); confining that work to the CPUs searches do not need does
// (run 13).
//
// Thread safety: the functions act on the calling thread only, or are pure; any thread may
// call them.

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace strata::engine {

struct BackgroundPriority {
  int nice = 10;          // 0..19; ignored with idle
  bool idle = false;      // SCHED_IDLE: runs only when nothing else wants the core
  uint32_t threads = 0;   // OpenMP team size of parallel work this thread starts (0: the default)
  // CPUs the thread (and the OpenMP teams it starts, which inherit the mask) may run on;
  // empty: any. The default team size of its parallel regions is capped at their number (a
  // region given an explicit num_threads is not).
  std::vector<int> cpus{};
};

// Applies `p` to the calling thread. Best effort: what the kernel refuses is left as it was,
// and the first refusal is returned (the caller decides whether to log it). Call it before
// the thread starts its first OpenMP parallel region: libgomp keeps a thread's team threads
// and does not re-pin them (and with OMP_PROC_BIND / OMP_PLACES set it binds team threads to
// places of its own, outside this mask). A nice value is only ever raised (priority lowered).
Status ApplyToThisThread(const BackgroundPriority& p);

// CPUs here are the kernel's logical CPUs (hardware threads): "auto" leaves the lowest one to
// searches, which on an SMT machine shares its core with a sibling that stays in the list.
// The list is read once: a cpuset that changes later (cgroups) is not followed, and a CPU
// quota alone (cpu.max) does not show in the mask. "Allowed" is the calling thread's mask
// (the main thread's, as the server and Engine::Open call it), up to CPU_SETSIZE CPUs.
//
// Parses a CPU list as taskset(1) writes one -- "1", "0,2", "1-3", "0,2-3" -- into sorted,
// distinct CPU numbers. "auto": every CPU this process may run on except the lowest, when it
// may run on two or more (else none: an empty list). Every CPU named must be one this process
// may run on (sched_getaffinity); the error names the first that is not, or what does not parse.
// An empty text gives an empty list (no confinement).
Result<std::vector<int>> ParseCpuList(std::string_view text);

// The CPU list as ParseCpuList reads it back ("1-3,5"); "" for an empty list.
std::string FormatCpuList(const std::vector<int>& cpus);

}  // namespace strata::engine
