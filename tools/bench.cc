#include "tools/bench.h"

#include "tools/scratch_dir.h"

#include <omp.h>
#include <unistd.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <cstdio>
#include <fstream>

#include <fmt/core.h>

#include "core/stats.h"
#include "core/timer.h"
#include "index/distance/distance.h"
#include "index/flat/flat_index.h"
#include "index/hnsw/hnsw_index.h"
#include "index/spann/spann_index.h"
#include "tools/eval.h"
#include "tools/scratch_dir.h"

namespace strata::tools {
namespace {

class FlatTarget final : public BenchTarget {
 public:
  std::string name() const override { return "flat"; }
  Status Build(const VectorSet& base, Metric metric, int) override {
    STRATA_ASSIGN_OR_RETURN(VectorSet copy, base.Clone());
    STRATA_ASSIGN_OR_RETURN(index_, index::FlatIndex::Build(std::move(copy), metric));
    return Status::Ok();
  }
  std::vector<SweepPoint> Sweep(uint32_t k) const override {
    index::SearchParams p;
    p.k = k;
    return {SweepPoint{p, nlohmann::json::object()}};
  }
  Result<std::vector<Neighbor>> Search(VectorView query, const index::SearchParams& params,
                                       index::SearchContext& ctx) const override {
    return index_->Search(query, params, ctx);
  }
  bool HasBatch() const override { return true; }
  Result<std::vector<Neighbor>> SearchBatch(const VectorSet& queries,
                                            const index::SearchParams& params,
                                            int threads) const override {
    index::FlatIndex::BatchOptions opt;
    opt.num_threads = threads;
    return index_->SearchBatch(queries, params.k, opt);
  }
  // A scan of the whole base per query: a few hundred queries give stable latencies.
  size_t DefaultSingleThreadQueries() const override { return 200; }
  index::IndexStats Stats() const override { return index_->Stats(); }

 private:
  std::unique_ptr<index::FlatIndex> index_;
};

class HnswTarget final : public BenchTarget {
 public:
  explicit HnswTarget(const TargetOptions& o) : opt_(o) {}
  std::string name() const override { return "hnsw"; }
  bool Loads() const override { return !opt_.load_path.empty(); }
  Status Build(const VectorSet& base, Metric metric, int threads) override {
    const index::HnswOptions ho = HnswOptionsFrom(opt_);
    if (!opt_.load_path.empty()) {
      index::HnswLoadOptions lo;
      lo.mmap = opt_.mmap;
      lo.refined_codes = opt_.refined_codes;
      STRATA_ASSIGN_OR_RETURN(index_, index::HnswIndex::Load(opt_.load_path, lo));
      if (index_->dim() != base.dim()) {
        return InvalidArgument("{}: index has dimension {}, data set has {}", opt_.load_path,
                               index_->dim(), base.dim());
      }
      return Status::Ok();
    }
    STRATA_ASSIGN_OR_RETURN(index_, index::HnswIndex::Create(base.dim(), metric, ho));
    index::HnswBuildOptions bo;
    bo.num_threads = threads;
    bo.progress = true;
    STRATA_RETURN_IF_ERROR(index_->AddBatch(base, {}, bo));
    if (!opt_.save_path.empty()) STRATA_RETURN_IF_ERROR(index_->Save(opt_.save_path));
    return Status::Ok();
  }
  std::vector<SweepPoint> Sweep(uint32_t k) const override {
    std::vector<SweepPoint> pts;
    for (uint32_t ef : opt_.ef_values) {
      if (ef < k) continue;
      index::SearchParams p;
      p.k = k;
      p.ef = ef;
      pts.push_back({p, nlohmann::json{{"ef", ef}}});
    }
    return pts;
  }
  Result<std::vector<Neighbor>> Search(VectorView query, const index::SearchParams& params,
                                       index::SearchContext& ctx) const override {
    return index_->Search(query, params, ctx);
  }
  index::IndexStats Stats() const override { return index_->Stats(); }

 private:
  TargetOptions opt_;
  std::unique_ptr<index::HnswIndex> index_;
};

class SpannTarget final : public BenchTarget {
 public:
  explicit SpannTarget(const TargetOptions& o) : opt_(o) {}
  std::string name() const override { return "spann"; }
  bool Loads() const override { return !opt_.load_path.empty(); }
  Status Build(const VectorSet& base, Metric metric, int threads) override {
    if (!opt_.load_path.empty()) {
      path_ = opt_.load_path;
    } else {
      if (opt_.save_path.empty()) {
        // A fresh temporary directory of our own, removed with this target (tools/scratch_dir.h).
        STRATA_ASSIGN_OR_RETURN(scratch_, ScratchDir::Claim({}, "strata-spann-bench", "strata bench"));
        path_ = scratch_->path() / "index.spann";
      } else {
        path_ = opt_.save_path;  // SpannIndex::Build refuses an existing path
      }
      const index::SpannBuildOptions bo = SpannOptionsFrom(opt_, metric, threads);
      STRATA_ASSIGN_OR_RETURN(VectorSet copy, base.Clone());
      STRATA_RETURN_IF_ERROR(index::SpannIndex::Build(std::move(copy), path_, bo));
    }
    index::SpannOpenOptions oo;
    STRATA_ASSIGN_OR_RETURN(oo.backend, storage::ParseIoBackend(opt_.io_backend));
    oo.direct = opt_.direct_io;
    STRATA_ASSIGN_OR_RETURN(index_, index::SpannIndex::Open(path_, oo));
    auto st = index_->Stats();
    fmt::print(stderr,
               "spann: {} lists (entries min/median/p99/max {}/{}/{}/{}), {:.2f} entries per "
               "vector, memory {:.1f} MiB = {:.1f}% of the raw vectors ({} heads), disk {:.1f} "
               "MiB ({} lists{}), io {} {}\n",
               st.num_lists, st.list_min, st.list_median, st.list_p99, st.list_max,
               double(st.total_entries) / double(st.num_vectors), st.memory_bytes / 1048576.0,
               100.0 * double(st.memory_bytes) / double(st.raw_vector_bytes),
               index::SpannHeadsName(st), st.disk_bytes / 1048576.0,
               st.codes != index::CodesKind::kNone ? "sq8" : st.half_lists ? "float16" : "float32",
               st.codes == index::CodesKind::kNone ? std::string()
               : st.exact_codes   ? std::string(", exact codes: no other copy of the vectors")
               : st.full_in_lists ? fmt::format(" + {} vectors in the lists for reranks",
                                                st.half_lists ? "float16" : "float32")
                                  : fmt::format(", reranks read float32 vectors from a {:.1f} MiB "
                                                "FULL section", st.full_section_bytes / 1048576.0),
               storage::IoBackendName(index_->backend()),
               index_->direct_io() ? "O_DIRECT" : "buffered");
    return Status::Ok();
  }
  std::vector<SweepPoint> Sweep(uint32_t k) const override {
    std::vector<SweepPoint> pts;
    for (uint32_t m : opt_.max_lists) {
      SweepPoint p;
      p.params.k = k;
      p.params.ef = m;  // carries max_lists through the generic parameter struct
      p.description = {{"max_lists", m}, {"prune_epsilon", opt_.prune_epsilon}};
      pts.push_back(p);
    }
    return pts;
  }
  Result<std::vector<Neighbor>> Search(VectorView query, const index::SearchParams& params,
                                       index::SearchContext&) const override {
    thread_local index::SpannContext ctx;
    index::SpannSearchParams sp;
    sp.k = params.k;
    sp.max_lists = params.ef;
    sp.prune_epsilon = opt_.prune_epsilon;
    sp.rerank = opt_.rerank;
    index::SpannQueryStats qs;
    auto r = index_->Search(query, sp, ctx, &qs);
    lists_ += qs.lists_read;
    bytes_ += qs.bytes_read;
    wait_ns_ += qs.io_wait_ns;
    rerank_bytes_ += qs.rerank_bytes_read;
    return r;
  }
  void ResetCounters() override {
    lists_ = 0;
    bytes_ = 0;
    wait_ns_ = 0;
    rerank_bytes_ = 0;
  }
  nlohmann::json Counters(size_t queries) const override {
    const double q = double(std::max<size_t>(queries, 1));
    return {{"lists_per_query", double(lists_) / q},
            {"kib_read_per_query", double(bytes_) / 1024.0 / q},
            {"io_wait_ms_per_query", double(wait_ns_) / 1e6 / q},
            {"rerank_kib_read_per_query", double(rerank_bytes_) / 1024.0 / q}};
  }
  size_t DefaultSingleThreadQueries() const override { return 0; }
  index::IndexStats Stats() const override {
    auto st = index_->Stats();
    index::IndexStats s;
    s.kind = "spann";
    s.num_vectors = st.num_vectors;
    s.dim = index_->dim();
    s.metric = index_->metric();
    s.memory_bytes = st.memory_bytes;
    s.disk_bytes = st.disk_bytes;
    return s;
  }

 private:
  TargetOptions opt_;
  std::unique_ptr<ScratchDir> scratch_;  // declared before index_: removed after it is closed
  std::filesystem::path path_;
  std::unique_ptr<index::SpannIndex> index_;
  mutable std::atomic<uint64_t> lists_{0}, bytes_{0}, wait_ns_{0}, rerank_bytes_{0};
};

double Mean(const std::vector<double>& v) {
  if (v.empty()) return 0;
  double sum = 0;
  for (double x : v) sum += x;
  return sum / double(v.size());
}

}  // namespace

index::HnswOptions HnswOptionsFrom(const TargetOptions& o) {
  index::HnswOptions h;
  h.M = o.M;
  h.ef_construction = o.ef_construction;
  h.codes = o.codes == "sq8" ? index::CodesKind::kSq8 : index::CodesKind::kNone;  // checked by the CLI
  h.rerank = o.rerank;
  return h;
}

index::SpannBuildOptions SpannOptionsFrom(const TargetOptions& o, Metric metric, int threads) {
  index::SpannBuildOptions s;
  s.metric = metric;
  s.cluster_size = o.cluster_size;
  s.memory_budget_fraction = o.memory_budget;
  s.replicas = o.replicas;
  s.closure_epsilon = o.closure_epsilon;
  s.rng_factor = o.rng_factor;
  s.head_vectors = o.head_vectors;
  s.head_M = o.head_M;
  s.half_heads = o.half_heads;
  s.head_codes = o.head_codes || (o.codes == "sq8" && !o.no_head_codes);
  s.half_lists = o.half_lists;
  s.max_list_entries = o.list_cap;
  s.codes = o.codes == "sq8" ? index::CodesKind::kSq8 : index::CodesKind::kNone;  // checked by the CLI
  s.rerank_from = o.rerank_from == "list" ? index::SpannRerankFrom::kList : index::SpannRerankFrom::kFile;
  s.rerank = o.rerank;
  s.num_threads = threads;
  s.progress = true;
  return s;
}

Result<std::unique_ptr<BenchTarget>> MakeBenchTarget(const std::string& kind,
                                                     const TargetOptions& options) {
  if (kind == "flat") return std::unique_ptr<BenchTarget>(new FlatTarget());
  if (kind == "hnsw") return std::unique_ptr<BenchTarget>(new HnswTarget(options));
  if (kind == "spann") return std::unique_ptr<BenchTarget>(new SpannTarget(options));
  return Error(InvalidArgument("unknown index kind '{}' (available: flat, hnsw, spann)", kind));
}

size_t PeakRssBytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return size_t(ru.ru_maxrss) * 1024;
}

extern const char* const kGitRevision;  // git_rev.cc, generated at build time
std::string GitRevision() { return kGitRevision; }

Result<std::vector<BenchPointResult>> RunBench(BenchTarget& target, const LoadedDataset& data,
                                               const BenchConfig& config) {
  const int threads = config.threads > 0 ? config.threads : omp_get_max_threads();
  const size_t nq = data.queries.size();
  if (nq == 0) return Error(InvalidArgument("no queries"));
  if (data.gt.num_queries == 0) return Error(InvalidArgument("no ground truth loaded"));
  STRATA_ASSIGN_OR_RETURN(RecallEvaluator eval,
                          RecallEvaluator::Create(data.base, data.queries, data.gt, config.metric,
                                                  config.k));

  // A target given a saved index opens it instead of building (item 4 of issue 13: no
  // "building" then).
  fmt::print(stderr, "{} {} over {} x {} ({}) ...\n", target.Loads() ? "opening" : "building", target.name(),
             data.base.size(), data.base.dim(), MetricName(config.metric));
  Timer build_timer;
  STRATA_RETURN_IF_ERROR(target.Build(data.base, config.metric, threads));
  const double build_s = build_timer.Seconds();
  const index::IndexStats stats = target.Stats();

  size_t single_n = config.single_thread_queries == SIZE_MAX ? target.DefaultSingleThreadQueries()
                                                             : config.single_thread_queries;
  if (single_n == 0 || single_n > nq) single_n = nq;

  std::FILE* json_file = nullptr;
  if (!config.json_out.empty()) {
    json_file = std::fopen(config.json_out.c_str(), "a");
    if (!json_file) return Error(IOError("{}: cannot open for appending", config.json_out));
  }

  if (config.text) fmt::print("\n{:<10} {:<24} {:>9} {:>11} {:>11} {:>9} {:>9} {:>9} {:>9} {:>12} {:>12}\n", "index",
             "params", "recall@" + std::to_string(config.k), "QPS(1t)",
             fmt::format("QPS({}t)", threads), "mean ms", "p50 ms", "p95 ms", "p99 ms",
             fmt::format("mean ms {}t", threads), fmt::format("p99 ms {}t", threads));

  std::vector<BenchPointResult> out;
  for (const SweepPoint& point : target.Sweep(config.k)) {
    // One thread, one query at a time: latency distribution.
    target.ResetCounters();
    std::vector<double> lat_ms(single_n);
    index::SearchContext ctx;
    Timer t1;
    for (size_t q = 0; q < single_n; ++q) {
      Timer tq;
      auto r = target.Search(data.queries[q], point.params, ctx);
      lat_ms[q] = tq.Millis();
      if (!r) return Error(r.error().WithContext(fmt::format("query {}", q)));
    }
    const double qps1 = double(single_n) / t1.Seconds();
    const nlohmann::json counters = target.Counters(single_n);

    // All threads over every query; these results are scored. Per-query latency
    // is kept too (where queries run one by one), under load from every thread.
    std::vector<Neighbor> results(nq * config.k);
    std::vector<double> lat_all_ms;
    Timer tn;
    if (target.HasBatch()) {
      STRATA_ASSIGN_OR_RETURN(results, target.SearchBatch(data.queries, point.params, threads));
    } else {
      std::vector<Status> errors(threads);
      lat_all_ms.resize(nq);
#pragma omp parallel num_threads(threads)
      {
        index::SearchContext tctx;
#pragma omp for schedule(dynamic, 16)
        for (size_t q = 0; q < nq; ++q) {
          Timer tq;
          auto r = target.Search(data.queries[q], point.params, tctx);
          lat_all_ms[q] = tq.Millis();
          if (!r) {
            errors[omp_get_thread_num()] = r.error();
            continue;
          }
          for (size_t j = 0; j < config.k; ++j) {
            results[q * config.k + j] = j < r->size() ? (*r)[j] : Neighbor{};
          }
        }
      }
      for (const Status& s : errors) STRATA_RETURN_IF_ERROR(s);
    }
    const double qps_all = double(nq) / tn.Seconds();
    const double recall = eval.Recall(results, config.k, nq);

    nlohmann::json j;
    j["dataset"] = config.dataset_label;
    j["index"] = target.name();
    j["metric"] = MetricName(config.metric);
    j["params"] = point.description;
    j["k"] = config.k;
    j["recall"] = recall;
    j["qps_1t"] = qps1;
    j["qps_all"] = qps_all;
    j["threads"] = threads;
    j["mean_ms"] = Mean(lat_ms);
    j["p50_ms"] = Percentile<double>(lat_ms, 0.50);
    j["p95_ms"] = Percentile<double>(lat_ms, 0.95);
    j["p99_ms"] = Percentile<double>(lat_ms, 0.99);
    j["single_thread_queries"] = single_n;
    if (!lat_all_ms.empty()) {
      j["mean_ms_all"] = Mean(lat_all_ms);
      j["p99_ms_all"] = Percentile<double>(lat_all_ms, 0.99);
    }
    j["num_queries"] = nq;
    j["num_base"] = data.base.size();
    j["dim"] = data.base.dim();
    j["build_s"] = build_s;  // with --load: the time to open the saved index
    if (target.Loads()) j["loaded"] = true;
    j["index_bytes"] = stats.memory_bytes;
    j["peak_rss_mb"] = double(PeakRssBytes()) / (1 << 20);
    j["simd"] = index::SimdLevelName(index::Kernels().level);
    j["rev"] = GitRevision();
    for (auto it = counters.begin(); it != counters.end(); ++it) j[it.key()] = it.value();

    const std::string line = j.dump();
    if (json_file) std::fprintf(json_file, "%s\n", line.c_str());
    if (!config.text) {
      fmt::print("{}\n", line);
      std::fflush(stdout);
      out.push_back({std::move(j), recall});
      continue;
    }
    std::string params = point.description.empty() ? "-" : point.description.dump();
    const auto all_cell = [&](const char* key) {
      return j.contains(key) ? fmt::format("{:.3f}", j[key].get<double>()) : std::string("-");
    };
    fmt::print("{:<10} {:<24} {:>9.4f} {:>11.1f} {:>11.1f} {:>9.3f} {:>9.3f} {:>9.3f} {:>9.3f} {:>12} {:>12}",
               target.name(), params, recall, qps1, qps_all, j["mean_ms"].get<double>(),
               j["p50_ms"].get<double>(), j["p95_ms"].get<double>(), j["p99_ms"].get<double>(),
               all_cell("mean_ms_all"), all_cell("p99_ms_all"));
    for (auto it = counters.begin(); it != counters.end(); ++it) {
      fmt::print("  {} {:.2f}", it.key(), it.value().get<double>());
    }
    fmt::print("\n");
    fmt::print("JSON {}\n", line);
    out.push_back({std::move(j), recall});
  }
  if (config.text) fmt::print("build {:.2f} s, index {:.1f} MiB, peak RSS {:.1f} MiB, simd {}\n", build_s,
             double(stats.memory_bytes) / (1 << 20), double(PeakRssBytes()) / (1 << 20),
             index::SimdLevelName(index::Kernels().level));
  if (json_file) std::fclose(json_file);
  return out;
}

}  // namespace strata::tools
