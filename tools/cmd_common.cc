#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include <fmt/core.h>

#include "index/distance/distance.h"
#include "storage/dataset_io.h"
#include "tools/commands.h"
#include "tools/gt_cache.h"

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

Result<JsonSink> JsonSink::Open(bool given, const std::string& path) {
  JsonSink sink;
  sink.enabled_ = given;
  if (given && !path.empty()) {
    STRATA_RETURN_IF_ERROR(CheckOutputPath(path, "--json"));
    sink.file_ = std::fopen(path.c_str(), "a");
    if (!sink.file_) return Error(IOError("--json {}: cannot open for appending", path));
  }
  return sink;
}

JsonSink::JsonSink(JsonSink&& other) noexcept : enabled_(other.enabled_), file_(other.file_) {
  other.file_ = nullptr;
}

JsonSink::~JsonSink() {
  if (file_) std::fclose(file_);
}

void JsonSink::Emit(const nlohmann::json& j) {
  if (!enabled_) return;
  const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::FILE* out = file_ ? file_ : stdout;
  std::fprintf(out, "%s\n", line.c_str());
  std::fflush(out);
}

Status CheckOutputPath(const std::string& path, const std::string& what) {
  namespace fs = std::filesystem;
  if (path.empty()) return InvalidArgument("{}: empty path", what);
  std::error_code ec;
  if (fs::is_directory(path, ec)) return InvalidArgument("{} {}: is a directory", what, path);
  const fs::path parent = fs::path(path).has_parent_path() ? fs::path(path).parent_path() : fs::path(".");
  if (!fs::is_directory(parent, ec)) {
    return InvalidArgument("{} {}: folder {} does not exist", what, path, parent.string());
  }
  if (::access(parent.c_str(), W_OK) != 0) {
    return InvalidArgument("{} {}: folder {} is not writable", what, path, parent.string());
  }
  return Status::Ok();
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
  STRATA_ASSIGN_OR_RETURN(data.base, ReadVectorFile(a.base));
  STRATA_ASSIGN_OR_RETURN(data.queries, ReadQueries(a.queries, a.max_queries));
  if (data.base.dim() != data.queries.dim()) {
    return Error(InvalidArgument("{} has dimension {} but {} has {}", a.base, data.base.dim(), a.queries,
                                 data.queries.dim()));
  }
  if (!a.gt.empty()) {
    STRATA_ASSIGN_OR_RETURN(data.gt, storage::ReadGroundTruth(a.gt));
  }
  return data;
}

Result<LoadedDataset> LoadBenchData(DataArgs& a, Metric& metric, uint32_t k) {
  const bool gt_given = !a.gt.empty();
  STRATA_ASSIGN_OR_RETURN(metric, ResolveDataArgs(a, true));
  // A named data set's own ground truth when it is there; otherwise (and with --base and
  // --queries but no --gt) exact ground truth computed once and cached (tools/gt_cache.h).
  std::error_code ec;
  if (!gt_given && !a.gt.empty() && !std::filesystem::exists(a.gt, ec)) a.gt.clear();
  STRATA_ASSIGN_OR_RETURN(LoadedDataset data, LoadData(a));
  if (a.gt.empty()) {
    STRATA_ASSIGN_OR_RETURN(std::filesystem::path gt,
                            EnsureGroundTruth(data.base, a.base, data.queries, a.queries, metric, k));
    a.gt = gt.string();
    STRATA_ASSIGN_OR_RETURN(data.gt, storage::ReadGroundTruth(a.gt));
  }
  return data;
}

Result<VectorSet> ReadVectorFile(const std::string& path, const storage::ReadOptions& options) {
  STRATA_ASSIGN_OR_RETURN(storage::DatasetShape shape, storage::ProbeVectors(path));
  if (shape.format == storage::DatasetFormat::kNpy && shape.value_type != "float32") {
    fmt::print(stderr, "strata: {} holds {} values; converted to float32\n", path, shape.value_type);
  }
  return storage::ReadVectors(path, options);
}

Result<VectorSet> ReadQueries(const std::string& path, size_t max_queries) {
  storage::ReadOptions options;
  if (max_queries) options.max_rows = max_queries;
  return ReadVectorFile(path, options);
}

}  // namespace strata::tools::cmd
