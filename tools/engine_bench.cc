#include "tools/engine_bench.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>

#include "core/timer.h"
#include "engine/strata.h"
#include "index/hnsw/hnsw_index.h"
#include "tools/bench.h"
#include "tools/eval.h"
#include "tools/scratch_dir.h"

namespace strata::tools {
namespace fs = std::filesystem;

namespace {

struct Point {
  double recall = 0, qps = 0, mean_ms = 0;
};

// One thread, one query at a time, every query scored.
template <typename SearchFn>
Result<Point> Measure(const RecallEvaluator& eval, size_t nq, uint32_t k,
                      SearchFn&& search) {
  std::vector<Neighbor> results(nq * k);
  Timer t;
  for (size_t q = 0; q < nq; ++q) {
    STRATA_ASSIGN_OR_RETURN(std::vector<Neighbor> r, search(q));
    for (size_t j = 0; j < k; ++j) results[q * k + j] = j < r.size() ? r[j] : Neighbor{};
  }
  const double s = t.Seconds();
  return Point{eval.Recall(results, k, nq), double(nq) / s, 1000.0 * s / double(nq)};
}

}  // namespace

Status RunEngineBench(const LoadedDataset& data, const EngineBenchConfig& c) {
  const size_t n = data.base.size(), dim = data.base.dim();
  const size_t nq = c.max_queries ? std::min(c.max_queries, data.queries.size()) : data.queries.size();
  STRATA_ASSIGN_OR_RETURN(RecallEvaluator eval,
                          RecallEvaluator::Create(data.base, data.queries, data.gt, c.metric, c.k));
  // Scratch space: a fresh temporary directory, or the one given if this tool may use it
  // (new, empty, or marked by an earlier run; never one whose LOCK is held).
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<ScratchDir> scratch,
                          ScratchDir::Claim(c.data_dir, "strata-engine-bench", "strata engine-bench"));
  if (c.keep) scratch->Keep();
  fmt::print("engine data directory: {}{}\n", scratch->path().string(), c.keep ? " (kept)" : "");
  STRATA_ASSIGN_OR_RETURN(auto engine, Engine::Open(scratch->path()));
  CollectionSpec spec;
  spec.name = "bench";
  spec.dim = dim;
  spec.metric = c.metric;
  spec.hnsw_M = c.M;
  spec.hnsw_ef_construction = c.ef_construction;
  spec.seal_threshold = (n + c.seals - 1) / std::max<size_t>(1, c.seals);
  STRATA_RETURN_IF_ERROR(engine->CreateCollection(spec));

  // 1. Upserts, batches of c.batch, durability kSync (the default).
  fmt::print("engine-bench {}: {} x {} ({}), batches of {}, durability sync, seal every {} vectors\n",
             data.name, n, dim, MetricName(c.metric), c.batch, spec.seal_threshold);
  Timer tw;
  for (size_t start = 0; start < n; start += c.batch) {
    WriteBatch b;
    const size_t end = std::min(n, start + c.batch);
    for (size_t i = start; i < end; ++i) {
      b.Upsert(i, std::span<const float>(data.base.row(i), dim));
    }
    STRATA_RETURN_IF_ERROR(engine->Write("bench", b));
  }
  STRATA_RETURN_IF_ERROR(engine->Flush("bench"));
  const double write_s = tw.Seconds();
  const EngineCounters counters = engine->counters();
  STRATA_ASSIGN_OR_RETURN(CollectionInfo info, engine->DescribeCollection("bench"));
  auto quantile = [](const HistogramSnapshot& h, double q) {
    uint64_t target = uint64_t(std::ceil(q * double(h.count))), seen = 0;
    for (size_t i = 0; i < h.counts.size(); ++i) {
      seen += h.counts[i];
      if (seen >= target) return i < h.upper_bounds_seconds.size() ? h.upper_bounds_seconds[i] * 1e3 : INFINITY;
    }
    return double(INFINITY);
  };
  fmt::print("upserts: {} vectors in {:.1f} s = {:.0f} vectors/s ({} batches, {} fsyncs, write latency "
             "p50 <= {:.1f} ms, p99 <= {:.1f} ms by histogram bucket; includes {} seals)\n",
             n, write_s, double(n) / write_s, counters.write_batches, counters.wal_fsyncs,
             quantile(counters.write_latency, 0.5), quantile(counters.write_latency, 0.99),
             info.sealed_segments);

  // 2. Search: sealed segments, then after compaction, then a fresh HNSW.
  fmt::print("\n{:<34} {:>6} {:>10} {:>10} {:>9}\n", "index", "ef", "recall@" + std::to_string(c.k), "QPS(1t)",
             "mean ms");
  auto sweep = [&](const std::string& label, auto&& search_at) -> Status {
    for (uint32_t ef : c.ef_values) {
      STRATA_ASSIGN_OR_RETURN(Point p, Measure(eval, nq, c.k, [&](size_t q) { return search_at(q, ef); }));
      fmt::print("{:<34} {:>6} {:>10.4f} {:>10.1f} {:>9.3f}\n", label, ef, p.recall, p.qps, p.mean_ms);
      fmt::print("JSON {{\"bench\":\"engine\",\"index\":\"{}\",\"ef\":{},\"recall\":{:.5f},\"qps_1t\":{:.1f},"
                 "\"mean_ms\":{:.4f},\"dataset\":\"{}\",\"rev\":\"{}\"}}\n",
                 label, ef, p.recall, p.qps, p.mean_ms, data.name, GitRevision());
    }
    return Status::Ok();
  };
  auto engine_search = [&](size_t q, uint32_t ef) {
    return engine->Search("bench", std::span<const float>(data.queries.row(q), dim), {.k = c.k, .ef = ef});
  };
  STRATA_RETURN_IF_ERROR(sweep(fmt::format("engine, {} sealed segments", info.sealed_segments), engine_search));
  Timer tc;
  STRATA_RETURN_IF_ERROR(engine->Compact("bench"));
  const double compact_s = tc.Seconds();
  STRATA_ASSIGN_OR_RETURN(info, engine->DescribeCollection("bench"));
  STRATA_RETURN_IF_ERROR(sweep("engine, after compaction", engine_search));
  fmt::print("compaction: {:.1f} s into {} segment(s)\n", compact_s, info.sealed_segments);

  index::HnswOptions ho;
  ho.M = c.M;
  ho.ef_construction = c.ef_construction;
  STRATA_ASSIGN_OR_RETURN(auto fresh, index::HnswIndex::Create(dim, c.metric, ho));
  Timer tb;
  STRATA_RETURN_IF_ERROR(fresh->AddBatch(data.base, {}));
  const double fresh_s = tb.Seconds();
  index::SearchContext ctx;
  STRATA_RETURN_IF_ERROR(sweep("fresh HNSW", [&](size_t q, uint32_t ef) {
    index::SearchParams p;
    p.k = c.k;
    p.ef = std::max(ef, c.k);
    return fresh->Search(data.queries[q], p, ctx);
  }));
  fmt::print("fresh HNSW build: {:.1f} s\n", fresh_s);
  engine.reset();  // closes the engine before the scratch directory is removed
  return Status::Ok();
}

}  // namespace strata::tools
