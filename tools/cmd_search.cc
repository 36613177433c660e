#include <algorithm>
#include <span>
#include <thread>
#include <vector>

#include <fmt/core.h>

#include "core/recall.h"
#include "core/stats.h"
#include "core/timer.h"
#include "engine/strata.h"
#include "index/hnsw/hnsw_index.h"
#include "index/spann/spann_index.h"
#include "storage/block_io.h"
#include "storage/dataset_io.h"
#include "tools/commands.h"
#include "tools/eval.h"

namespace strata::tools::cmd {
namespace {

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

}  // namespace

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
  auto queries = ReadQueries(queries_path, max_queries);
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
  auto queries = ReadQueries(queries_path, max_queries);
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

int RunEngineSearch(const EngineSearchArgs& a, const std::string& queries_path, uint32_t k, size_t max_queries,
                    size_t show, const std::string& gt_path) {
  SearchOptions o;
  o.k = k;
  o.recall = a.recall;
  o.ef = a.ef;
  o.max_lists = a.max_lists;
  o.filter = a.filter;
  auto strategy = ParseSearchStrategy(a.strategy);
  if (!strategy) return Fail(strategy.error().WithContext("--strategy"));
  o.strategy = *strategy;
  Timer load_timer;
  auto engine = Engine::Open(a.dir);
  if (!engine) return Fail(engine.error());
  const double load_s = load_timer.Seconds();
  auto queries = ReadQueries(queries_path, max_queries);
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

}  // namespace strata::tools::cmd
