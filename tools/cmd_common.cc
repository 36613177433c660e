#include <filesystem>

#include <fmt/core.h>

#include "index/distance/distance.h"
#include "storage/dataset_io.h"
#include "tools/commands.h"

namespace strata::tools::cmd {

int Fail(const Status& s) {
  fmt::print(stderr, "strata: error: {}\n", s.ToString());
  return 1;
}

// Fills base/queries paths and metric from --dataset when given.
Result<Metric> ResolveDataArgs(DataArgs& a, bool need_gt_default) {
  Metric metric = Metric::kL2;
  bool metric_set = false;
  if (!a.metric.empty()) {
    STRATA_ASSIGN_OR_RETURN(metric, ParseMetric(a.metric));
    metric_set = true;
  }
  if (!a.dataset.empty()) {
    STRATA_ASSIGN_OR_RETURN(tools::DatasetInfo info, tools::FindDataset(a.dataset));
    if (!metric_set) metric = info.default_metric;
    STRATA_ASSIGN_OR_RETURN(tools::DatasetPaths paths,
                            tools::ResolveDataset(a.data_dir, a.dataset, metric));
    if (a.base.empty()) a.base = paths.base.string();
    if (a.queries.empty()) a.queries = paths.queries.string();
    if (a.gt.empty() && need_gt_default) a.gt = paths.gt.string();
    return metric;
  }
  if (a.base.empty() || a.queries.empty()) {
    return Error(InvalidArgument("give --dataset, or both --base and --queries"));
  }
  if (!metric_set) return Error(InvalidArgument("--metric is required with --base/--queries"));
  return metric;
}

Status SetSimd(const std::string& simd) {
  if (simd.empty() || simd == "auto") return Status::Ok();
  STRATA_ASSIGN_OR_RETURN(index::SimdLevel level, index::ParseSimdLevel(simd));
  return index::SetSimdOverride(level);
}

// Reads base, queries and ground truth named by resolved data arguments.
Result<tools::LoadedDataset> LoadData(const DataArgs& a) {
  tools::LoadedDataset data;
  data.name = a.dataset.empty() ? std::filesystem::path(a.base).stem().string() : a.dataset;
  STRATA_ASSIGN_OR_RETURN(data.base, storage::ReadVectors(a.base));
  STRATA_ASSIGN_OR_RETURN(data.queries, ReadQueries(a.queries, a.max_queries));
  STRATA_ASSIGN_OR_RETURN(data.gt, storage::ReadGroundTruth(a.gt));
  if (data.base.dim() != data.queries.dim()) {
    return Error(InvalidArgument("{} has dimension {} but {} has {}", a.base, data.base.dim(), a.queries,
                                 data.queries.dim()));
  }
  return data;
}

Result<LoadedDataset> LoadBenchData(DataArgs& a, Metric& metric) {
  STRATA_ASSIGN_OR_RETURN(metric, ResolveDataArgs(a, true));
  if (a.gt.empty()) return Error(InvalidArgument("--gt is required with --base/--queries"));
  return LoadData(a);
}

Result<VectorSet> ReadQueries(const std::string& path, size_t max_queries) {
  storage::ReadOptions options;
  if (max_queries) options.max_rows = max_queries;
  return storage::ReadVectors(path, options);
}

}  // namespace strata::tools::cmd
