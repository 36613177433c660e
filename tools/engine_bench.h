#pragma once
// `strata engine-bench`: the engine end to end on a real data set -- upsert
// throughput through the write-ahead log with the default durability (fsync per
// batch), then search recall/QPS of the collection after its seals and after a
// compaction, next to an HNSW index freshly built over the same vectors.
//
// `strata engine-bench --mixed`: search latency and recall under writes (issue 15).
// The base is bulk-loaded into one sealed, calibrated segment; the engine runs its
// background maintenance (seals, compactions) as a server does. Then two phases of
// `seconds` each: "idle", `readers` threads search (recall target, k, every query in
// turn, each thread from its own offset); "writes", the same readers while `writers`
// threads upsert batches of `batch` vectors with fsync per batch. The writers re-upsert
// base rows under their own ids with identical vectors, cycling through the base, so
// the ground truth stays valid throughout. Prints a table, then as its last line one
// JSON object (prefixed "JSON ", like the other engine-bench lines) with per-phase
// latency percentiles, recall and the writers' vectors/s.

#include <cstdint>
#include <filesystem>
#include <vector>

#include "core/status.h"
#include "engine/strata.h"
#include "tools/datasets.h"

namespace strata::tools {

struct EngineBenchConfig {
  // Engine data directory: empty = a fresh temporary one; otherwise new, empty or marked
  // by an earlier run (tools/scratch_dir.h). Removed at the end unless `keep`.
  std::filesystem::path data_dir;
  bool keep = false;
  Metric metric = Metric::kL2;
  size_t batch = 1000;             // vectors per Write
  size_t seals = 3;                // the base is written in this many sealed segments
  uint32_t k = 10;
  uint32_t M = 16;
  uint32_t ef_construction = 200;
  std::vector<uint32_t> ef_values = {16, 32, 64, 128, 256};
  size_t max_queries = 0;          // 0: all
  // --mixed (see above); `batch`, `k`, `M`, `ef_construction` and `max_queries` apply too.
  bool mixed = false;
  size_t readers = 1;              // search threads, >= 1
  size_t writers = 1;              // upsert threads, >= 1
  double seconds = 20;             // length of each phase, > 0
  double recall_target = 0.95;     // SearchOptions::recall of every search
  int insert_nice = EngineOptions{}.insert_nice;            // EngineOptions::insert_nice
  uint32_t insert_threads = EngineOptions{}.insert_threads;  // EngineOptions::insert_threads
  int maintenance_nice = EngineOptions{}.maintenance_nice;            // EngineOptions::maintenance_nice
  uint32_t maintenance_threads = EngineOptions{}.maintenance_threads;  // EngineOptions::maintenance_threads
  bool background_idle = EngineOptions{}.background_idle;              // EngineOptions::background_idle
  uint32_t memory_ef_construction = EngineOptions{}.memory_ef_construction;  // EngineOptions::memory_ef_construction
  size_t show_slowest = 0;         // print the EXPLAIN of this many slowest searches per phase
  // --mixed: write every search (phase, seconds into the phase, wall and CPU ms) to this
  // new file (an existing one is refused); empty: none.
  std::filesystem::path latency_log;
};

// Runs the mixed-load bench when config.mixed, the sequential one otherwise.
// InvalidArgument for a zero batch, readers or writers, or seconds <= 0 (--mixed).
Status RunEngineBench(const LoadedDataset& data, const EngineBenchConfig& config);

}  // namespace strata::tools
