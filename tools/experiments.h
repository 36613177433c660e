#pragma once
// Scenario benchmarks for `strata bench`, beyond the plain recall/QPS sweep:
//   deletes: remove a random share of an HNSW index and compare its recall with
//            an index built fresh on what remains, at the same ef;
//   filters: random tags at given selectivities; filtered graph traversal and the
//            exact scan of the matching ids, each scored against exact filtered search.
// Both print a table and one JSON line per measured point.

#include <cstdint>
#include <vector>

#include "core/metric.h"
#include "core/status.h"
#include "tools/bench.h"
#include "tools/datasets.h"

namespace strata::tools {

struct ScenarioConfig {
  std::string dataset_label;
  Metric metric = Metric::kL2;
  uint32_t k = 10;
  int threads = 0;
  uint32_t M = 16;
  uint32_t ef_construction = 200;
  std::vector<uint32_t> ef_values;
  size_t max_queries = 1000;  // queries scored per point (exact filtered truth is costly)
  uint64_t seed = 7;
  std::string json_out;
};

Status RunDeleteScenario(const LoadedDataset& data, double fraction, const ScenarioConfig& config);
Status RunFilterScenario(const LoadedDataset& data, const std::vector<double>& selectivities,
                         const ScenarioConfig& config);

}  // namespace strata::tools
