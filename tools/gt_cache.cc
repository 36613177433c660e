#include "tools/gt_cache.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <system_error>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "index/flat/flat_index.h"
#include "storage/file_util.h"

namespace strata::tools {
namespace fs = std::filesystem;
namespace {

constexpr char kCreator[] = "strata ground-truth cache";

fs::path SidecarPath(const fs::path& gt) { return fs::path(gt.string() + ".strata.json"); }

// What a cache was computed from; equal inputs give an equal object.
Result<nlohmann::json> Inputs(const std::string& base_path, const std::string& queries_path, Metric metric) {
  nlohmann::json j;
  j["creator"] = kCreator;
  j["metric"] = MetricName(metric);
  for (const auto& [key, path] : {std::pair{"base", base_path}, std::pair{"queries", queries_path}}) {
    std::error_code ec;
    const fs::path abs = fs::absolute(path, ec);
    const auto size = fs::file_size(path, ec);
    if (ec) return Error(IOError("{}: {}", path, ec.message()));
    const auto mtime = fs::last_write_time(path, ec);
    if (ec) return Error(IOError("{}: {}", path, ec.message()));
    j[key] = {{"path", abs.lexically_normal().string()},
              {"bytes", size},
              {"mtime_ns", std::chrono::duration_cast<std::chrono::nanoseconds>(mtime.time_since_epoch()).count()}};
  }
  return j;
}

}  // namespace

Result<storage::GroundTruth> ComputeGroundTruth(const VectorSet& base, const VectorSet& queries, Metric metric,
                                                uint32_t k, int threads) {
  if (base.dim() != queries.dim()) {
    return Error(InvalidArgument("base vectors have dimension {}, queries {}", base.dim(), queries.dim()));
  }
  STRATA_ASSIGN_OR_RETURN(VectorSet copy, base.Clone());
  STRATA_ASSIGN_OR_RETURN(auto flat, index::FlatIndex::Build(std::move(copy), metric));
  index::FlatIndex::BatchOptions opt;
  opt.num_threads = threads;
  opt.progress = true;
  STRATA_ASSIGN_OR_RETURN(std::vector<Neighbor> result, flat->SearchBatch(queries, k, opt));
  storage::GroundTruth gt;
  gt.num_queries = queries.size();
  gt.k = std::min<size_t>(k, base.size());
  gt.ids.resize(gt.num_queries * gt.k);
  gt.distances.resize(gt.num_queries * gt.k);
  for (size_t q = 0; q < gt.num_queries; ++q) {
    for (size_t j = 0; j < gt.k; ++j) {
      const Neighbor& n = result[q * k + j];
      gt.ids[q * gt.k + j] = int32_t(n.id);
      gt.distances[q * gt.k + j] = n.distance;
    }
  }
  return gt;
}

uint32_t CachedGroundTruthK(uint32_t k) { return std::max<uint32_t>(k, 100); }

fs::path GroundTruthCachePath(const fs::path& base_path, const fs::path& queries_path, Metric metric, uint32_t k) {
  const fs::path dir = base_path.has_parent_path() ? base_path.parent_path() : fs::path(".");
  return dir / fmt::format("{}.{}.gt_{}_k{}.ibin", base_path.stem().string(), queries_path.stem().string(),
                           MetricName(metric), CachedGroundTruthK(k));
}

Result<fs::path> EnsureGroundTruth(const VectorSet& base, const std::string& base_path, const VectorSet& queries,
                                   const std::string& queries_path, Metric metric, uint32_t k) {
  const fs::path path = GroundTruthCachePath(base_path, queries_path, metric, k);
  const fs::path sidecar = SidecarPath(path);
  const uint32_t cache_k = CachedGroundTruthK(k);
  STRATA_ASSIGN_OR_RETURN(nlohmann::json inputs, Inputs(base_path, queries_path, metric));
  std::error_code ec;
  const bool have_gt = fs::exists(path, ec);
  nlohmann::json recorded;
  bool ours = false;
  if (fs::exists(sidecar, ec)) {
    std::ifstream in(sidecar);
    recorded = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    ours = recorded.is_object() && recorded.value("creator", "") == kCreator;
  }
  if (have_gt && !ours) {
    return Error(AlreadyExists("{} exists but was not written by strata's ground-truth cache (no {}); "
                               "give it with --gt if it is the ground truth of {} and {}, or move it away",
                               path.string(), sidecar.filename().string(), base_path, queries_path));
  }
  if (have_gt && ours) {
    nlohmann::json same = recorded;
    same.erase("k");
    same.erase("rows");
    same.erase("note");
    if (same == inputs && recorded.value("k", 0u) >= std::min<size_t>(k, base.size()) &&
        recorded.value("rows", size_t{0}) >= queries.size()) {
      fmt::print(stderr, "strata: ground truth from the cache {}\n", path.string());
      return path;
    }
  }
  fmt::print(stderr, "strata: no ground truth given; computing the exact top-{} ({}) of {} queries over {} vectors "
             "into {}\n", cache_k, MetricName(metric), queries.size(), base.size(), path.string());
  STRATA_ASSIGN_OR_RETURN(storage::GroundTruth gt, ComputeGroundTruth(base, queries, metric, cache_k));
  // The sidecar goes first: a crash between the two leaves a sidecar naming a missing or
  // stale file of ours (recomputed next time), never our file without its sidecar.
  nlohmann::json meta = inputs;
  meta["k"] = gt.k;
  meta["rows"] = gt.num_queries;
  meta["note"] = "written by strata; removing this and the .ibin next to it is safe";
  const std::string text = meta.dump(2) + "\n";
  {
    STRATA_ASSIGN_OR_RETURN(storage::AtomicFileWriter w, storage::AtomicFileWriter::Open(sidecar));
    STRATA_RETURN_IF_ERROR(w.Append(text.data(), text.size()));
    STRATA_RETURN_IF_ERROR(w.Commit());
  }
  STRATA_RETURN_IF_ERROR(storage::WriteGroundTruth(path, gt));
  return path;
}

}  // namespace strata::tools
