#pragma once
// `strata engine-bench`: the engine end to end on a real data set -- upsert
// throughput through the write-ahead log with the default durability (fsync per
// batch), then search recall/QPS of the collection after its seals and after a
// compaction, next to an HNSW index freshly built over the same vectors.

#include <cstdint>
#include <filesystem>
#include <vector>

#include "core/status.h"
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
};

Status RunEngineBench(const LoadedDataset& data, const EngineBenchConfig& config);

}  // namespace strata::tools
