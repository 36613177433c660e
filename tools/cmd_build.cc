#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "api/attribute_rows.h"
#include "core/progress.h"
#include "core/timer.h"
#include "engine/strata.h"
#include "index/distance/distance.h"
#include "index/hnsw/hnsw_index.h"
#include "index/spann/spann_index.h"
#include "storage/dataset_io.h"
#include "tools/commands.h"

namespace strata::tools::cmd {

int RunBuildInto(DataArgs a, const tools::TargetOptions& topt, const BuildIntoArgs& into, bool json) {
  auto metric = ResolveDataArgs(a, false);
  if (!metric && a.base.empty()) return Fail(metric.error());
  if (!metric) {
    if (a.metric.empty()) return Fail(InvalidArgument("--metric is required with --base"));
    metric = ParseMetric(a.metric);
    if (!metric) return Fail(metric.error());
  }
  auto base = ReadVectorFile(a.base);
  if (!base) return Fail(base.error());
  std::vector<VectorId> ids;
  std::vector<Attributes> attrs;
  if (!into.attributes.empty()) {
    // The format strata-cli upsert --attributes reads too (api/attribute_rows.h).
    auto rows = ReadAttributeRows(into.attributes);
    if (!rows) return Fail(rows.error());
    if (rows->size() != base->size()) {
      return Fail(InvalidArgument("{} has {} rows, {} has {} vectors", into.attributes, rows->size(), a.base,
                                  base->size()));
    }
    bool any_id = false;
    for (size_t row = 0; row < rows->size(); ++row) {
      any_id |= (*rows)[row].id.has_value();
      ids.push_back((*rows)[row].id.value_or(VectorId(row)));
      attrs.push_back(std::move((*rows)[row].attributes));
    }
    if (!any_id) ids.clear();
  }
  EngineOptions eo;
  eo.progress = !Progress::GlobalQuiet();  // the index build and calibration of the load
  auto engine = Engine::Open(into.data_dir, eo);
  if (!engine) return Fail(engine.error());
  CollectionSpec spec;
  spec.name = into.collection;
  spec.dim = base->dim();
  spec.metric = *metric;
  spec.hnsw_M = topt.M;
  spec.hnsw_ef_construction = topt.ef_construction;
  spec.memory_budget_bytes = into.memory_budget_bytes;
  // --codes / --rerank become the collection's: its bulk-loaded segment and every later
  // seal and compaction carry them (--rerank-from stays the SPANN file's default, file).
  spec.codes = topt.codes == "sq8" ? VectorCodes::kSq8 : VectorCodes::kNone;  // checked by the CLI
  spec.rerank = spec.codes == VectorCodes::kNone ? 0 : topt.rerank;
  if (Status s = (*engine)->CreateCollection(spec); !s.ok()) return Fail(s);
  fmt::print(stderr, "loading {} x {} ({}) into collection '{}' of {}\n", base->size(), base->dim(),
             MetricName(*metric), into.collection, into.data_dir);
  Timer t;
  Status s = (*engine)->BulkLoad(into.collection, *base, ids, attrs);
  if (!s.ok()) {
    (void)(*engine)->DropCollection(into.collection);  // nothing half-made stays behind
    return Fail(s);
  }
  auto info = (*engine)->DescribeCollection(into.collection);
  if (!info) return Fail(info.error());
  const bool spann = std::filesystem::exists(std::filesystem::path(into.data_dir) / "collections" /
                                             std::to_string(info->id) / "seg-1" / "spann");
  const EngineCounters counters = (*engine)->counters();
  if (json) {
    fmt::print("{}\n", nlohmann::ordered_json{{"command", "build"},
                                              {"into", into.data_dir},
                                              {"collection", into.collection},
                                              {"index", spann ? "spann" : "hnsw"},
                                              {"vectors", info->num_vectors},
                                              {"seconds", t.Seconds()},
                                              {"index_build_seconds", counters.index_build_seconds},
                                              {"calibration_seconds", counters.calibration_seconds},
                                              {"memory_bytes", info->memory_bytes}}
                           .dump());
    return 0;
  }
  fmt::print("loaded {} vectors into '{}' ({}) in {:.1f} s (index build {:.1f} s, calibration {:.1f} s); "
             "{:.1f} MiB in memory\n", info->num_vectors, into.collection, spann ? "SPANN" : "HNSW", t.Seconds(),
             counters.index_build_seconds, counters.calibration_seconds, info->memory_bytes / 1048576.0);
  return 0;
}

int RunBuild(DataArgs a, const std::string& kind, const tools::TargetOptions& topt, int threads,
             const std::string& out, bool json) {
  if (kind != "hnsw" && kind != "spann") {
    return Fail(InvalidArgument("--index {}: only hnsw and spann indexes are built into files", kind));
  }
  Metric metric;
  if (!a.dataset.empty()) {
    auto info = tools::FindDataset(a.dataset);
    if (!info) return Fail(info.error());
    auto m = a.metric.empty() ? Result<Metric>(info->default_metric) : ParseMetric(a.metric);
    if (!m) return Fail(m.error());
    metric = *m;
    auto paths = tools::ResolveDataset(a.data_dir, a.dataset, metric);
    if (!paths) return Fail(paths.error());
    if (a.base.empty()) a.base = paths->base.string();
  } else {
    if (a.base.empty()) return Fail(InvalidArgument("give --dataset or --base"));
    if (a.metric.empty()) return Fail(InvalidArgument("--metric is required with --base"));
    auto m = ParseMetric(a.metric);
    if (!m) return Fail(m.error());
    metric = *m;
  }
  auto base = ReadVectorFile(a.base);
  if (!base) return Fail(base.error());
  if (kind == "spann") {
    const index::SpannBuildOptions so = tools::SpannOptionsFrom(topt, metric, threads);
    const size_t n = base->size(), dim = base->dim();
    fmt::print(stderr, "building spann over {} x {} ({}) into {}\n", n, dim, MetricName(metric), out);
    Timer t;
    if (Status s = index::SpannIndex::Build(std::move(*base), out, so); !s.ok()) return Fail(s);
    const double build_s = t.Seconds();
    auto idx = index::SpannIndex::Open(out);
    if (!idx) return Fail(idx.error());
    auto st = (*idx)->Stats();
    if (json) {
      fmt::print("{}\n", nlohmann::ordered_json{{"command", "build"}, {"index", "spann"}, {"out", out},
                                                {"vectors", n}, {"seconds", build_s}, {"lists", st.num_lists},
                                                {"entries_per_vector", double(st.total_entries) / double(n)},
                                                {"memory_bytes", st.memory_bytes}, {"disk_bytes", st.disk_bytes},
                                                {"peak_rss_bytes", tools::PeakRssBytes()}}
                             .dump());
      return 0;
    }
    fmt::print("built spann over {} vectors in {:.1f} s: {} lists (entries min/median/p99/max "
               "{}/{}/{}/{}), {:.2f} entries per vector; in memory {:.1f} MiB ({:.1f}% of the raw "
               "vectors), on disk {:.1f} MiB; peak RSS {:.1f} MiB\n",
               n, build_s, st.num_lists, st.list_min, st.list_median, st.list_p99, st.list_max,
               double(st.total_entries) / double(n), st.memory_bytes / 1048576.0,
               100.0 * double(st.memory_bytes) / double(st.raw_vector_bytes),
               st.disk_bytes / 1048576.0, double(tools::PeakRssBytes()) / 1048576.0);
    return 0;
  }
  const index::HnswOptions ho = tools::HnswOptionsFrom(topt);
  auto idx = index::HnswIndex::Create(base->dim(), metric, ho);
  if (!idx) return Fail(idx.error());
  index::HnswBuildOptions bo;
  bo.num_threads = threads;
  bo.progress = true;
  fmt::print(stderr, "building hnsw (M={}, ef_construction={}) over {} x {} ({}), simd {}\n", ho.M,
             ho.ef_construction, base->size(), base->dim(), MetricName(metric),
             index::SimdLevelName(index::Kernels().level));
  Timer t;
  if (Status s = (*idx)->AddBatch(*base, {}, bo); !s.ok()) return Fail(s);
  const double build_s = t.Seconds();
  if (Status s = (*idx)->Save(out); !s.ok()) return Fail(s);
  auto gs = (*idx)->GraphStats();
  if (json) {
    fmt::print("{}\n", nlohmann::ordered_json{{"command", "build"}, {"index", "hnsw"}, {"out", out},
                                              {"vectors", gs.num_nodes}, {"seconds", build_s},
                                              {"memory_bytes", gs.memory_bytes}, {"max_level", gs.max_level},
                                              {"mean_degree0", gs.mean_degree0}}
                           .dump());
    return 0;
  }
  fmt::print("built {} vectors in {:.1f} s; saved to {} ({:.1f} MiB in memory, max level {}, mean "
             "layer-0 degree {:.1f})\n",
             gs.num_nodes, build_s, out, double(gs.memory_bytes) / (1 << 20), gs.max_level,
             gs.mean_degree0);
  return 0;
}

}  // namespace strata::tools::cmd
