#include <algorithm>
#include <filesystem>
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
#include "tools/gt_cache.h"

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

// The first `q.show` queries' results: "query q: id(distance) ..." lines, or with --json one
// {"query", "ids", "distances"} object each.
void ShowResults(const std::vector<Neighbor>& all, const QueryArgs& q, size_t nq, JsonSink& json) {
  const size_t k = q.k, count = std::min(q.show, nq);
  for (size_t i = 0; i < count; ++i) {
    std::vector<VectorId> ids;
    std::vector<float> distances;
    for (size_t j = 0; j < k && all[i * k + j].id != kInvalidVectorId; ++j) {
      ids.push_back(all[i * k + j].id);
      distances.push_back(all[i * k + j].distance);
    }
    json.Emit({{"query", i}, {"ids", ids}, {"distances", distances}});
    if (!json.text()) continue;
    fmt::print("query {}:", i);
    for (size_t j = 0; j < ids.size(); ++j) fmt::print(" {}({:.4f})", ids[j], distances[j]);
    fmt::print("\n");
  }
}

// --gt as given, or for "auto" the cached exact ground truth of --base (computed first when
// there is none).
Result<std::string> GroundTruthPath(const QueryArgs& q, const VectorSet& queries, Metric metric) {
  if (q.gt != "auto") return q.gt;
  if (q.base.empty()) return Error(InvalidArgument("--gt auto needs --base (the vectors the index holds)"));
  STRATA_ASSIGN_OR_RETURN(VectorSet base, ReadVectorFile(q.base));
  if (base.dim() != queries.dim()) {
    return Error(InvalidArgument("{} has dimension {}, {} has {}", q.base, base.dim(), q.queries, queries.dim()));
  }
  STRATA_ASSIGN_OR_RETURN(std::filesystem::path p, EnsureGroundTruth(base, q.base, queries, q.queries, metric, q.k));
  return p.string();
}

// Reads a ground-truth file that must cover nq queries k deep.
Result<storage::GroundTruth> ReadCoveringTruth(const std::string& path, size_t nq, size_t k) {
  STRATA_ASSIGN_OR_RETURN(storage::GroundTruth gt, storage::ReadGroundTruth(path));
  if (gt.num_queries < nq || gt.k < k) {
    return Error(InvalidArgument("{}: ground truth has {} queries x {}, need {} x {}", path, gt.num_queries, gt.k,
                                 nq, k));
  }
  return gt;
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

int RunSpannSearch(const std::string& index_path, const SpannSearchArgs& a, const QueryArgs& q) {
  auto json = JsonSink::Open(q.json, q.json_path);
  if (!json) return Fail(json.error());
  index::SpannOpenOptions oo;
  auto backend = storage::ParseIoBackend(a.io);
  if (!backend) return Fail(backend.error());
  oo.backend = *backend;
  oo.direct = a.direct;
  Timer load_timer;
  auto idx = index::SpannIndex::Open(index_path, oo);
  if (!idx) return Fail(idx.error());
  const double load_s = load_timer.Seconds();
  auto queries = ReadQueries(q.queries, q.max_queries);
  if (!queries) return Fail(queries.error());
  const uint32_t k = q.k;
  index::SpannSearchParams p;
  p.k = k;
  p.max_lists = a.max_lists;
  p.prune_epsilon = a.prune_epsilon;
  p.head_ef = a.head_ef;
  p.rerank = a.rerank;
  if (a.rerank && (*idx)->codes() == index::CodesKind::kNone) {
    return Fail(InvalidArgument("--rerank: {} has no codes (build it with --codes sq8)", index_path));
  }
  const uint32_t max_lists = a.max_lists;
  const double prune_epsilon = a.prune_epsilon;
  index::SpannContext ctx;
  index::SpannQueryStats qs;
  auto run = RunQueries(*queries, k, [&](VectorView v) { return (*idx)->Search(v, p, ctx, &qs); });
  if (!run) return Fail(run.error());
  const std::vector<Neighbor>& all = run->results;
  std::vector<double>& lat = run->latency_ms;
  const double secs = run->seconds;
  const size_t nq = queries->size();
  ShowResults(all, q, nq, *json);
  std::sort(lat.begin(), lat.end());
  auto st = (*idx)->Stats();
  nlohmann::json summary = {{"index", "spann"},
                            {"queries", nq},
                            {"k", k},
                            {"max_lists", max_lists},
                            {"prune_epsilon", prune_epsilon},
                            {"head_ef", a.head_ef ? std::max(a.head_ef, max_lists) : 2 * max_lists},
                            {"rerank", a.rerank},
                            {"qps_1t", nq / secs},
                            {"mean_ms", secs * 1e3 / nq},
                            {"p99_ms", PercentileOfSorted<double>(lat, 0.99)},
                            {"lists_per_query", double(qs.lists_read) / nq},
                            {"kib_read_per_query", double(qs.bytes_read) / 1024.0 / nq},
                            {"io_wait_ms_per_query", double(qs.io_wait_ns) / 1e6 / nq},
                            {"open_s", load_s},
                            {"memory_bytes", st.memory_bytes}};
  if (json->text()) {
    fmt::print("{} queries, k={}, max_lists={}, prune_epsilon={}: {:.1f} QPS on one thread, mean "
               "{:.3f} ms, p99 {:.3f} ms; {:.1f} lists and {:.1f} KiB read per query, I/O wait {:.3f} "
               "ms per query ({}, {}); index opened in {:.2f} s, {:.1f} MiB in memory\n",
               nq, k, max_lists, prune_epsilon, nq / secs, secs * 1e3 / nq,
               PercentileOfSorted<double>(lat, 0.99),
               double(qs.lists_read) / nq, double(qs.bytes_read) / 1024.0 / nq,
               double(qs.io_wait_ns) / 1e6 / nq, storage::IoBackendName((*idx)->backend()),
               (*idx)->direct_io() ? "O_DIRECT" : "buffered", load_s, st.memory_bytes / 1048576.0);
  }
  if (!q.gt.empty()) {
    auto path = GroundTruthPath(q, *queries, (*idx)->metric());
    if (!path) return Fail(path.error());
    auto gt = ReadCoveringTruth(*path, nq, k);
    if (!gt) return Fail(gt.error());
    const double recall = IdRecall(all, k, *gt, nq);
    summary["recall"] = recall;
    if (json->text()) fmt::print("recall@{} = {:.4f}\n", k, recall);
  }
  summary["peak_rss_mb"] = double(tools::PeakRssBytes()) / 1048576.0;
  if (json->text()) fmt::print("peak RSS {:.1f} MiB\n", double(tools::PeakRssBytes()) / 1048576.0);
  json->Emit(summary);
  return 0;
}

int RunSearch(const std::string& index_path, uint32_t ef, bool mmap, bool refined_codes, const QueryArgs& q) {
  auto json = JsonSink::Open(q.json, q.json_path);
  if (!json) return Fail(json.error());
  index::HnswLoadOptions lo;
  lo.mmap = mmap;
  lo.refined_codes = refined_codes;
  Timer load_timer;
  auto idx = index::HnswIndex::Load(index_path, lo);
  if (!idx) return Fail(idx.error());
  if (refined_codes && (*idx)->options().codes == index::CodesKind::kNone) {
    return Fail(InvalidArgument("--refined-codes: {} has no codes (build it with --codes sq8)", index_path));
  }
  const double load_s = load_timer.Seconds();
  auto queries = ReadQueries(q.queries, q.max_queries);
  if (!queries) return Fail(queries.error());
  if (queries->dim() != (*idx)->dim()) {
    return Fail(InvalidArgument("{} has dimension {}, index {} has {}", q.queries, queries->dim(), index_path,
                                (*idx)->dim()));
  }
  const uint32_t k = q.k;
  index::SearchParams p;
  p.k = k;
  p.ef = ef;
  index::SearchContext ctx;
  auto run = RunQueries(*queries, k, [&](VectorView v) { return (*idx)->Search(v, p, ctx); });
  if (!run) return Fail(run.error());
  const std::vector<Neighbor>& all = run->results;
  const double secs = run->seconds;
  const size_t nq = queries->size();
  ShowResults(all, q, nq, *json);
  nlohmann::json summary = {{"index", "hnsw"},          {"queries", nq},   {"k", k},
                            {"ef", ef},                 {"qps_1t", nq / secs}, {"mean_ms", secs * 1e3 / nq},
                            {"open_s", load_s},         {"mmap", mmap},
                            {"refined_codes", refined_codes},
                            {"index_memory_mb", double((*idx)->GraphStats().memory_bytes) / 1048576.0}};
  if (json->text()) {
    fmt::print("{} queries, k={}, ef={}: {:.1f} QPS on one thread ({:.3f} ms mean); index opened "
               "in {:.2f} s{}\n",
               nq, k, ef, nq / secs, secs * 1e3 / nq, load_s,
               refined_codes ? " (refined codes)" : (mmap ? " (mapped)" : ""));
  }
  if (!q.gt.empty()) {
    if (q.base.empty()) return Fail(InvalidArgument("--gt needs --base (for tie-aware recall)"));
    auto path = GroundTruthPath(q, *queries, (*idx)->metric());
    if (!path) return Fail(path.error());
    auto base = ReadVectorFile(q.base);
    if (!base) return Fail(base.error());
    auto gt = storage::ReadGroundTruth(*path);
    if (!gt) return Fail(gt.error());
    auto ev = tools::RecallEvaluator::Create(*base, *queries, *gt, (*idx)->metric(), k);
    if (!ev) return Fail(ev.error());
    const double recall = ev->Recall(all, k, nq);
    summary["recall"] = recall;
    if (json->text()) fmt::print("recall@{} = {:.4f}\n", k, recall);
  }
  json->Emit(summary);
  return 0;
}

int RunEngineSearch(const EngineSearchArgs& a, const QueryArgs& q) {
  auto json = JsonSink::Open(q.json, q.json_path);
  if (!json) return Fail(json.error());
  const uint32_t k = q.k;
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
  auto info = (*engine)->DescribeCollection(a.collection);
  if (!info) return Fail(info.error());
  auto queries = ReadQueries(q.queries, q.max_queries);
  if (!queries) return Fail(queries.error());
  const size_t nq = queries->size();
  Explain ex;
  size_t qi = 0;
  auto run = RunQueries(*queries, k, [&](VectorView v) {
    return (*engine)->Search(a.collection, std::span<const float>(v.data, v.dim), o,
                             a.explain && qi++ < q.show ? &ex : nullptr);
  });
  if (!run) return Fail(run.error());
  ShowResults(run->results, q, nq, *json);
  nlohmann::json summary = {{"index", "engine"},          {"collection", a.collection},
                            {"queries", nq},              {"k", k},
                            {"qps_1t", nq / run->seconds}, {"mean_ms", run->seconds * 1e3 / nq},
                            {"open_s", load_s}};
  if (json->text()) {
    fmt::print("{} queries, k={}: {:.1f} QPS on one thread ({:.3f} ms mean); engine opened in {:.2f} s\n", nq, k,
               nq / run->seconds, run->seconds * 1e3 / nq, load_s);
  }
  if (a.threads != 1) {
    // In-process throughput on several threads (the server benchmark's reference).
    Timer bt;
    auto batch = (*engine)->SearchBatch(a.collection, *queries, o, size_t(std::max(a.threads, 0)));
    if (!batch) return Fail(batch.error());
    const double secs = bt.Seconds();
    const int used = a.threads > 0 ? a.threads : int(std::thread::hardware_concurrency());
    summary["threads"] = used;
    summary["qps"] = nq / secs;
    if (json->text()) {
      fmt::print("{} queries, k={}: {:.1f} QPS on {} threads (Engine::SearchBatch)\n", nq, k, nq / secs, used);
      fmt::print("JSON {{\"bench\":\"engine_search\",\"collection\":\"{}\",\"threads\":{},\"qps\":{:.1f},"
                 "\"qps_1t\":{:.1f},\"queries\":{}}}\n", a.collection, used, nq / secs, nq / run->seconds, nq);
    }
  }
  if (a.explain) {
    const size_t which = std::min(q.show, nq) - 1;
    if (json->enabled()) json->Emit({{"explain_query", which}, {"explain", nlohmann::json::parse(ex.ToJson())}});
    if (json->text()) fmt::print("EXPLAIN (query {}):\n{}", which, ex.ToString());
  }
  if (!q.gt.empty()) {
    auto path = GroundTruthPath(q, *queries, info->spec.metric);
    if (!path) return Fail(path.error());
    auto gt = ReadCoveringTruth(*path, nq, k);
    if (!gt) return Fail(gt.error());
    const double recall = IdRecall(run->results, k, *gt, nq);
    summary["recall"] = recall;
    if (json->text()) fmt::print("recall@{} = {:.4f} (ids only)\n", k, recall);
  }
  json->Emit(summary);
  return 0;
}

}  // namespace strata::tools::cmd
