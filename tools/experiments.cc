#include "tools/experiments.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <optional>
#include <random>
#include <unordered_set>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "core/recall.h"
#include "core/timer.h"
#include "index/distance/distance.h"
#include "index/filter.h"
#include "index/flat/flat_index.h"
#include "index/hnsw/hnsw_index.h"
#include "tools/eval.h"

namespace strata::tools {
namespace {

class JsonSink {
 public:
  explicit JsonSink(const std::string& path) {
    if (!path.empty()) f_ = std::fopen(path.c_str(), "a");
  }
  ~JsonSink() {
    if (f_) std::fclose(f_);
  }
  void Emit(const nlohmann::json& j) {
    const std::string line = j.dump();
    fmt::print("JSON {}\n", line);
    if (f_) std::fprintf(f_, "%s\n", line.c_str());
  }

 private:
  std::FILE* f_ = nullptr;
};

Result<std::unique_ptr<index::HnswIndex>> BuildHnsw(const VectorSet& base,
                                                    std::span<const VectorId> ids,
                                                    const ScenarioConfig& c, double* seconds) {
  index::HnswOptions o;
  o.M = c.M;
  o.ef_construction = c.ef_construction;
  STRATA_ASSIGN_OR_RETURN(auto idx, index::HnswIndex::Create(base.dim(), c.metric, o));
  index::HnswBuildOptions bo;
  bo.num_threads = c.threads;
  bo.progress = true;
  Timer t;
  STRATA_RETURN_IF_ERROR(idx->AddBatch(base, ids, bo));
  *seconds = t.Seconds();
  return idx;
}

struct SweepResult {
  double recall = 0;
  double qps = 0;
  size_t min_results = SIZE_MAX;
  size_t forbidden = 0;  // results that must not appear (removed, or not matching)
};

// Exact top-k per query (row-major, k per query) as the truth for `Score`.
struct Truth {
  size_t k = 0;
  std::vector<Neighbor> rows;
};

// Recall@k (core/recall.h) of one result list against exact neighbours with distances; the
// truth row ends early (kInvalidVectorId) when fewer than k rows qualify.
double RecallAgainst(const Neighbor* truth, size_t k, const std::vector<Neighbor>& got) {
  std::vector<VectorId> ids;
  for (size_t j = 0; j < k && truth[j].id != kInvalidVectorId; ++j) ids.push_back(truth[j].id);
  const std::optional<double> kth =
      ids.empty() ? std::nullopt : std::optional<double>(truth[ids.size() - 1].distance);
  return RecallAtK({.ids = ids, .kth_distance = kth}, got);
}

}  // namespace

Status RunDeleteScenario(const LoadedDataset& data, double fraction, const ScenarioConfig& c) {
  if (!(fraction > 0 && fraction < 1)) {
    return InvalidArgument("--deletes must be in (0, 1), got {}", fraction);
  }
  JsonSink sink(c.json_out);
  const size_t n = data.base.size();
  const size_t nq = std::min(c.max_queries ? c.max_queries : data.queries.size(), data.queries.size());
  double build_full_s = 0;
  fmt::print(stderr, "deletes: building hnsw over all {} vectors\n", n);
  STRATA_ASSIGN_OR_RETURN(auto full, BuildHnsw(data.base, {}, c, &build_full_s));

  std::vector<VectorId> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(c.seed);
  std::shuffle(order.begin(), order.end(), rng);
  const size_t removed = size_t(double(n) * fraction);
  std::vector<uint8_t> gone(n, 0);
  Timer rt;
  for (size_t i = 0; i < removed; ++i) {
    STRATA_RETURN_IF_ERROR(full->Remove(order[i]));
    gone[order[i]] = 1;
  }
  const double remove_s = rt.Seconds();

  // The remaining vectors, with their original ids, for the exact truth and a fresh build.
  std::vector<VectorId> kept_ids;
  STRATA_ASSIGN_OR_RETURN(VectorSet kept, VectorSet::Create(0, data.base.dim()));
  STRATA_RETURN_IF_ERROR(kept.Reserve(n - removed));
  for (size_t i = 0; i < n; ++i) {
    if (gone[i]) continue;
    kept_ids.push_back(i);
    STRATA_RETURN_IF_ERROR(kept.Append(data.base[i]));
  }
  STRATA_ASSIGN_OR_RETURN(VectorSet kept_copy, kept.Clone());
  STRATA_ASSIGN_OR_RETURN(auto flat, index::FlatIndex::Build(std::move(kept_copy), c.metric, kept_ids));
  STRATA_ASSIGN_OR_RETURN(VectorSet queries, data.queries.Clone());
  queries.Truncate(nq);
  index::FlatIndex::BatchOptions bo;
  bo.num_threads = c.threads;
  STRATA_ASSIGN_OR_RETURN(auto truth, flat->SearchBatch(queries, c.k, bo));
  double build_fresh_s = 0;
  fmt::print(stderr, "deletes: building a fresh index over the remaining {} vectors\n", kept.size());
  STRATA_ASSIGN_OR_RETURN(auto fresh, BuildHnsw(kept, kept_ids, c, &build_fresh_s));
  auto gs = full->GraphStats();

  fmt::print("\ndeletes: removed {} of {} ({:.0f}%) in {:.2f} s; after: {} live, {} tombstones, {} "
             "free slots; fresh build on the rest {:.1f} s\n",
             removed, n, fraction * 100, remove_s, full->size(), gs.num_deleted, gs.num_free,
             build_fresh_s);
  // Measured twice: as Remove() left it (tombstones below the automatic
  // consolidation threshold still in the graph), and after an explicit Consolidate().
  for (int phase = 0; phase < 2; ++phase) {
    if (phase == 1) {
      Timer ct;
      STRATA_RETURN_IF_ERROR(full->Consolidate());
      fmt::print("\nafter Consolidate() ({:.2f} s):\n", ct.Seconds());
    }
    fmt::print("{:>6} {:>14} {:>14} {:>10} {:>12} {:>12} {:>10}\n", "ef", "recall(after)",
               "recall(fresh)", "delta", "QPS(after)", "QPS(fresh)", "removed-hit");
    index::SearchContext ctx;
    for (uint32_t ef : c.ef_values) {
      if (ef < c.k) continue;
      index::SearchParams p;
      p.k = c.k;
      p.ef = ef;
      double rec[2] = {0, 0}, qps[2] = {0, 0};
      size_t bad = 0;
      index::HnswIndex* idx[2] = {full.get(), fresh.get()};
      for (int which = 0; which < 2; ++which) {
        Timer t;
        double sum = 0;
        for (size_t q = 0; q < nq; ++q) {
          STRATA_ASSIGN_OR_RETURN(auto r, idx[which]->Search(queries[q], p, ctx));
          sum += RecallAgainst(truth.data() + q * c.k, c.k, r);
          if (which == 0) {
            for (const auto& nb : r) bad += gone[nb.id];
          }
        }
        qps[which] = double(nq) / t.Seconds();
        rec[which] = sum / double(nq);
      }
      fmt::print("{:>6} {:>14.4f} {:>14.4f} {:>+10.4f} {:>12.0f} {:>12.0f} {:>10}\n", ef, rec[0],
                 rec[1], rec[0] - rec[1], qps[0], qps[1], bad);
      sink.Emit({{"scenario", "deletes"}, {"dataset", c.dataset_label}, {"fraction", fraction},
                 {"consolidated", phase == 1}, {"ef", ef}, {"k", c.k},
                 {"recall_after_deletes", rec[0]}, {"recall_fresh", rec[1]},
                 {"qps_after_deletes", qps[0]}, {"qps_fresh", qps[1]},
                 {"removed_ids_returned", bad}, {"num_queries", nq}, {"remove_s", remove_s},
                 {"rev", GitRevision()}});
      if (bad) return Internal("{} removed ids were returned at ef {}", bad, ef);
    }
  }
  return Status::Ok();
}

Status RunFilterScenario(const LoadedDataset& data, const std::vector<double>& selectivities,
                         const ScenarioConfig& c) {
  JsonSink sink(c.json_out);
  const size_t n = data.base.size();
  const size_t nq = std::min(c.max_queries ? c.max_queries : data.queries.size(), data.queries.size());
  double build_s = 0;
  STRATA_ASSIGN_OR_RETURN(auto hnsw, BuildHnsw(data.base, {}, c, &build_s));
  STRATA_ASSIGN_OR_RETURN(VectorSet copy, data.base.Clone());
  STRATA_ASSIGN_OR_RETURN(auto flat, index::FlatIndex::Build(std::move(copy), c.metric));
  const int threads = c.threads > 0 ? c.threads : omp_get_max_threads();

  fmt::print("\nfilters: {} queries, k={}, hnsw built in {:.1f} s\n", nq, c.k, build_s);
  fmt::print("{:>8} {:>9} {:<10} {:>6} {:>9} {:>10} {:>10} {:>12}\n", "select.", "matches",
             "strategy", "ef", "recall", "QPS", "mean ms", "short lists");
  for (double s : selectivities) {
    if (!(s > 0 && s <= 1)) return InvalidArgument("selectivity must be in (0, 1], got {}", s);
    index::BitmapFilter filter(n);
    std::mt19937_64 rng(c.seed + uint64_t(s * 1e6));
    std::bernoulli_distribution pick(s);
    for (size_t i = 0; i < n; ++i) {
      if (pick(rng)) filter.Set(i);
    }
    const size_t matches = filter.Count();
    const std::vector<VectorId> ids = filter.Ids();
    // Exact filtered truth.
    std::vector<Neighbor> truth(nq * c.k, Neighbor{});
    std::vector<Status> errs(threads);
#pragma omp parallel num_threads(threads)
    {
      index::SearchContext tctx;
      index::SearchParams p;
      p.k = c.k;
      p.filter = &filter;
#pragma omp for schedule(dynamic, 8)
      for (size_t q = 0; q < nq; ++q) {
        auto r = flat->Search(data.queries[q], p, tctx);
        if (!r) {
          errs[omp_get_thread_num()] = r.error();
          continue;
        }
        std::copy(r->begin(), r->end(), truth.begin() + q * c.k);
      }
    }
    for (const Status& e : errs) STRATA_RETURN_IF_ERROR(e);

    auto report = [&](const char* strategy, uint32_t ef, double recall, double qps, size_t shortl) {
      fmt::print("{:>8.3f} {:>9} {:<10} {:>6} {:>9.4f} {:>10.0f} {:>10.3f} {:>12}\n", s, matches,
                 strategy, ef, recall, qps, 1e3 / qps, shortl);
      sink.Emit({{"scenario", "filters"}, {"dataset", c.dataset_label}, {"selectivity", s},
                 {"matches", matches}, {"strategy", strategy}, {"ef", ef}, {"k", c.k},
                 {"recall", recall}, {"qps_1t", qps}, {"short_result_lists", shortl},
                 {"num_queries", nq}, {"rev", GitRevision()}});
    };
    index::SearchContext ctx;
    const size_t want = std::min<size_t>(c.k, matches);
    // Exact scan of the matching ids.
    {
      Timer t;
      double sum = 0;
      size_t shortl = 0;
      for (size_t q = 0; q < nq; ++q) {
        STRATA_ASSIGN_OR_RETURN(auto r, hnsw->SearchSubset(data.queries[q], c.k, ids, ctx));
        sum += RecallAgainst(truth.data() + q * c.k, c.k, r);
        shortl += r.size() < want;
      }
      report("subset", 0, sum / double(nq), double(nq) / t.Seconds(), shortl);
    }
    // Filtered traversal.
    for (uint32_t ef : c.ef_values) {
      if (ef < c.k) continue;
      index::SearchParams p;
      p.k = c.k;
      p.ef = ef;
      p.filter = &filter;
      Timer t;
      double sum = 0;
      size_t shortl = 0, wrong = 0;
      for (size_t q = 0; q < nq; ++q) {
        STRATA_ASSIGN_OR_RETURN(auto r, hnsw->Search(data.queries[q], p, ctx));
        sum += RecallAgainst(truth.data() + q * c.k, c.k, r);
        shortl += r.size() < want;
        for (const auto& nb : r) wrong += !filter.Contains(nb.id);
      }
      if (wrong) return Internal("{} results outside the filter at ef {}", wrong, ef);
      report("traversal", ef, sum / double(nq), double(nq) / t.Seconds(), shortl);
    }
  }
  return Status::Ok();
}

}  // namespace strata::tools
