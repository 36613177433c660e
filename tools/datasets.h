#pragma once
// Named reference data sets and where their files live in a data directory.
//
//   <data_dir>/<name>/base.fbin | base.u8bin     base vectors
//   <data_dir>/<name>/query.fbin | query.u8bin   query vectors
//   <data_dir>/<name>/gt_<metric>_k100.ibin     exact ground truth computed by `strata gt`
//
// tools/fetch_dataset.sh creates these. Thread-safe (pure functions).

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/metric.h"
#include "core/status.h"
#include "core/vector_set.h"
#include "storage/dataset_io.h"

namespace strata::tools {

struct DatasetInfo {
  std::string name;
  Metric default_metric;
  std::string description;
};

// glove-100 (cosine) and fashion-mnist (l2).
const std::vector<DatasetInfo>& KnownDatasets();
Result<DatasetInfo> FindDataset(const std::string& name);

struct DatasetPaths {
  std::filesystem::path base;
  std::filesystem::path queries;
  std::filesystem::path gt;  // for the chosen metric
};
// Resolves the files of `name` under data_dir (whichever of .fbin / .u8bin exists).
Result<DatasetPaths> ResolveDataset(const std::filesystem::path& data_dir, const std::string& name,
                                    Metric metric);
std::string GroundTruthFileName(Metric metric, size_t k);

// The loaded pieces of a benchmark run.
struct LoadedDataset {
  std::string name;
  VectorSet base;
  VectorSet queries;
  storage::GroundTruth gt;  // empty when no ground truth was loaded
};

}  // namespace strata::tools
