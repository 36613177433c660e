#pragma once
// `strata planner-bench`: the planner on a real data set, for an HNSW and a
// SPANN collection bulk-loaded into the engine with random tags:
//   1. recall targets (0.90, 0.95, 0.99): measured recall@k and QPS of
//      search(recall = t), next to a sweep of hand-set ef / max_lists, and the QPS
//      of the cheapest hand-set parameter reaching the same recall;
//   2. filters at selectivities 50%, 10%, 1%, 0.1%: recall against exact filtered
//      search, short answers, and mean latency of the planner's choice next to the
//      exact scan of the matching rows and unfiltered search with post-filtering.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "api/types.h"
#include "core/status.h"
#include "tools/datasets.h"

namespace strata::tools {

struct PlannerBenchConfig {
  // Engine data directory: empty = a fresh temporary one; otherwise new, empty or marked
  // by an earlier run (tools/scratch_dir.h). Removed at the end unless `keep`.
  std::filesystem::path data_dir;
  bool keep = false;
  Metric metric = Metric::kL2;
  std::vector<std::string> kinds = {"hnsw", "spann"};
  VectorCodes codes = VectorCodes::kNone;  // the collections' sealed segments' codes
  std::vector<double> targets = {0.90, 0.95, 0.99};
  std::vector<double> selectivities = {0.5, 0.1, 0.01, 0.001};
  uint32_t k = 10;
  size_t max_queries = 0;          // recall-target queries (0: all)
  size_t sweep_queries = 0;        // hand-set sweep queries for SPANN (0: max_queries)
  size_t filter_queries = 300;     // queries per selectivity
  double spann_memory_fraction = 0.2;  // SPANN collection: memory budget as a share of raw vectors
};

Status RunPlannerBench(const LoadedDataset& data, const PlannerBenchConfig& config);

}  // namespace strata::tools
