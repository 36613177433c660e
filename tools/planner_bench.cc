#include "tools/planner_bench.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <optional>

#include "core/progress.h"
#include "core/recall.h"
#include "core/timer.h"
#include "engine/strata.h"
#include "tools/bench.h"
#include "tools/eval.h"
#include "tools/scratch_dir.h"

namespace strata::tools {
namespace fs = std::filesystem;

namespace {

std::string TagFor(double s) { return fmt::format("sel{}", s); }

struct Run {
  double recall = 0, qps = 0, mean_ms = 0;
  size_t short_answers = 0;
  std::map<std::string, size_t> strategies;  // strategy of the largest segment, per query
  uint32_t param = 0;
};

}  // namespace

Status RunPlannerBench(const LoadedDataset& data, const PlannerBenchConfig& c) {
  const size_t n = data.base.size(), dim = data.base.dim();
  const size_t nq = c.max_queries ? std::min(c.max_queries, data.queries.size()) : data.queries.size();
  STRATA_ASSIGN_OR_RETURN(RecallEvaluator eval,
                          RecallEvaluator::Create(data.base, data.queries, data.gt, c.metric, c.k));
  // Random tags: tag "sel<s>" on each vector with probability s, independently.
  std::vector<Attributes> attrs(n);
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> u(0, 1);
  for (size_t i = 0; i < n; ++i) {
    TagList tags;
    for (double s : c.selectivities) {
      if (u(rng) < s) tags.push_back(TagFor(s));
    }
    attrs[i] = {{"tags", tags}};
  }
  // Scratch space: a fresh temporary directory, or the one given if this tool may use it
  // (new, empty, or marked by an earlier run; never one whose LOCK is held).
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<ScratchDir> scratch,
                          ScratchDir::Claim(c.data_dir, "strata-planner-bench", "strata planner-bench"));
  if (c.keep) scratch->Keep();
  fmt::print("engine data directory: {}{}\n", scratch->path().string(), c.keep ? " (kept)" : "");
  EngineOptions eo;
  eo.progress = !Progress::GlobalQuiet();  // bulk loads' builds and calibrations
  STRATA_ASSIGN_OR_RETURN(auto engine, Engine::Open(scratch->path(), eo));
  const std::string rev = GitRevision();

  for (const std::string& kind : c.kinds) {
    const bool spann = kind == "spann";
    CollectionSpec spec;
    spec.name = kind;
    spec.dim = dim;
    spec.metric = c.metric;
    if (spann) spec.memory_budget_bytes = uint64_t(c.spann_memory_fraction * double(n * dim * sizeof(float)));
    spec.codes = c.codes;
    STRATA_RETURN_IF_ERROR(engine->CreateCollection(spec));
    fmt::print("\n== {} collection: {} ({} x {}, {}, codes {}), bulk load with random tags\n", kind, data.name, n,
               dim, MetricName(c.metric), VectorCodesName(c.codes));
    const EngineCounters before = engine->counters();
    Timer tl;
    STRATA_RETURN_IF_ERROR(engine->BulkLoad(kind, data.base, {}, attrs));
    const EngineCounters after = engine->counters();
    fmt::print("bulk load: {:.1f} s (index build {:.1f} s, calibration {:.1f} s)\n", tl.Seconds(),
               after.index_build_seconds - before.index_build_seconds,
               after.calibration_seconds - before.calibration_seconds);
    std::fflush(stdout);

    // SPANN's recall-target runs use sweep_queries queries spread evenly over the
    // set (the first GloVe queries are much easier than the rest), with their ground truth.
    const size_t sq = spann && c.sweep_queries ? std::min(c.sweep_queries, nq) : nq;
    VectorSet sweep_queries = *VectorSet::Create(sq, dim);
    storage::GroundTruth sweep_gt;
    sweep_gt.num_queries = sq;
    sweep_gt.k = data.gt.k;
    for (size_t i = 0; i < sq; ++i) {
      const size_t q = i * nq / sq;
      std::copy(data.queries.row(q), data.queries.row(q) + dim, sweep_queries.mutable_row(i));
      if (!data.gt.ids.empty()) sweep_gt.ids.insert(sweep_gt.ids.end(), data.gt.row(q), data.gt.row(q) + data.gt.k);
      if (!data.gt.distances.empty()) {
        sweep_gt.distances.insert(sweep_gt.distances.end(), data.gt.distances.begin() + q * data.gt.k,
                                  data.gt.distances.begin() + (q + 1) * data.gt.k);
      }
    }
    STRATA_ASSIGN_OR_RETURN(RecallEvaluator sweep_eval,
                            RecallEvaluator::Create(data.base, sweep_queries, sweep_gt, c.metric, c.k));

    auto run = [&](size_t queries, const SearchOptions& o, const std::vector<std::vector<Neighbor>>* exact,
                   bool score_gt, const VectorSet* qset = nullptr) -> Result<Run> {
      const VectorSet& Q = qset ? *qset : data.queries;
      const RecallEvaluator& ev = qset == &sweep_queries ? sweep_eval : eval;
      Run r;
      std::vector<Neighbor> results(queries * c.k);
      std::vector<std::vector<Neighbor>> got(queries);
      Timer t;
      for (size_t q = 0; q < queries; ++q) {
        STRATA_ASSIGN_OR_RETURN(got[q], engine->Search(kind, std::span<const float>(Q.row(q), dim), o));
      }
      const double secs = t.Seconds();
      // What the planner chose, from EXPLAIN of the first 50 queries (not timed).
      Explain ex;
      for (size_t q = 0; q < std::min<size_t>(50, queries); ++q) {
        STRATA_ASSIGN_OR_RETURN(auto again, engine->Search(kind, std::span<const float>(Q.row(q), dim), o, &ex));
        (void)again;
        if (ex.segments.size() > 1) {
          const auto& s = ex.segments[1];
          r.strategies[s.strategy]++;
          r.param = std::max(s.ef, s.max_lists);
        }
      }
      r.qps = double(queries) / secs;
      r.mean_ms = 1e3 * secs / double(queries);
      if (score_gt) {
        for (size_t q = 0; q < queries; ++q) {
          for (size_t j = 0; j < c.k; ++j) results[q * c.k + j] = j < got[q].size() ? got[q][j] : Neighbor{};
        }
        r.recall = ev.Recall(results, c.k, queries);
      }
      if (exact) {
        // Recall@k (core/recall.h) against the exact filtered answer with its distances; a
        // filter that matches fewer than k rows makes k the number it matches.
        double sum = 0;
        std::vector<VectorId> ids;
        for (size_t q = 0; q < queries; ++q) {
          const std::vector<Neighbor>& want = (*exact)[q];
          ids.clear();
          for (const Neighbor& nb : want) ids.push_back(nb.id);
          const std::optional<double> kth =
              want.empty() ? std::nullopt : std::optional<double>(want.back().distance);
          sum += RecallAtK({.ids = ids, .kth_distance = kth}, got[q]);
          if (got[q].size() < want.size()) ++r.short_answers;
        }
        r.recall = queries > 0 ? sum / double(queries) : 1.0;
      }
      return r;
    };

    // 1. Recall targets (SPANN: sweep_queries queries spread over the set, when set).
    fmt::print("\nrecall targets ({} queries, one thread, no filter):\n", sq);
    fmt::print("(QPS: medians of 3 alternating rounds of {} queries against the cheapest hand-set parameter "
               "reaching the same recall)\n", sq);
    fmt::print("{:>7} {:>9} {:>8} {:>10} {:>9} | {:>13} {:>10} {:>9}\n", "target", "recall", spann ? "lists" : "ef",
               "QPS", "mean ms", "hand-set best", "its QPS", "ratio");
    std::vector<Run> target_runs;
    for (double t : c.targets) {
      STRATA_ASSIGN_OR_RETURN(Run r, run(sq, {.k = c.k, .recall = t}, nullptr, true, &sweep_queries));
      target_runs.push_back(r);
    }
    // Hand-set sweep.
    const std::vector<uint32_t> grid =
        spann ? std::vector<uint32_t>{8, 16, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512, 768, 1024}
              : std::vector<uint32_t>{10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160,
                                      192, 224, 256, 320, 384, 448, 512, 640, 768};
    std::vector<std::pair<uint32_t, Run>> sweep;
    for (uint32_t p : grid) {
      if (c.targets.empty()) break;  // --targets none: filters only
      SearchOptions o{.k = c.k, .strategy = SearchStrategy::kIndex};
      if (spann) o.max_lists = p;
      else o.ef = p;
      STRATA_ASSIGN_OR_RETURN(Run r, run(sq, o, nullptr, true, &sweep_queries));
      sweep.emplace_back(p, r);
      fmt::print("JSON {{\"bench\":\"planner_sweep\",\"dataset\":\"{}\",\"kind\":\"{}\",\"param\":{},"
                 "\"recall\":{:.5f},\"qps_1t\":{:.1f},\"queries\":{},\"rev\":\"{}\"}}\n",
                 data.name, kind, p, r.recall, r.qps, sq, rev);
      if (r.recall >= 0.999) break;
    }
    for (size_t i = 0; i < c.targets.size(); ++i) {
      Run r = target_runs[i];
      // The cheapest hand-set parameter whose recall reaches the target run's: the
      // smallest such parameter of the sweep (cost grows with it).
      const std::pair<uint32_t, Run>* best = nullptr;
      for (const auto& s : sweep) {
        if (s.second.recall >= r.recall - 1e-9) {
          best = &s;
          break;
        }
      }
      // QPS side by side: the target run and the hand-set parameter alternate, 3 rounds, medians.
      double best_qps = 0;
      if (best) {
        std::vector<double> a, b;
        for (int round = 0; round < 3; ++round) {
          STRATA_ASSIGN_OR_RETURN(Run ra, run(sq, {.k = c.k, .recall = c.targets[i]}, nullptr, false, &sweep_queries));
          SearchOptions o{.k = c.k, .strategy = SearchStrategy::kIndex};
          if (spann) o.max_lists = best->first;
          else o.ef = best->first;
          STRATA_ASSIGN_OR_RETURN(Run rb, run(sq, o, nullptr, false, &sweep_queries));
          a.push_back(ra.qps);
          b.push_back(rb.qps);
        }
        std::sort(a.begin(), a.end());
        std::sort(b.begin(), b.end());
        r.qps = a[1];
        best_qps = b[1];
      }
      fmt::print("{:>7.2f} {:>9.4f} {:>8} {:>10.1f} {:>9.3f} | {:>13} {:>10} {:>9}\n", c.targets[i], r.recall,
                 r.param, r.qps, 1e3 / r.qps, best ? fmt::format("{} ({:.4f})", best->first, best->second.recall) : "-",
                 best ? fmt::format("{:.1f}", best_qps) : "-", best ? fmt::format("{:.2f}", r.qps / best_qps) : "-");
      fmt::print("JSON {{\"bench\":\"planner_recall\",\"dataset\":\"{}\",\"kind\":\"{}\",\"target\":{},"
                 "\"recall\":{:.5f},\"param\":{},\"qps_1t\":{:.1f},\"best_param\":{},\"best_qps\":{:.1f},"
                 "\"rev\":\"{}\"}}\n",
                 data.name, kind, c.targets[i], r.recall, r.param, r.qps, best ? best->first : 0, best_qps, rev);
      std::fflush(stdout);
    }

    // 2. Filters.
    const size_t fq = std::min(c.filter_queries, data.queries.size());
    // Queries spread over the whole set (the first GloVe queries are much easier than the rest).
    const size_t stride = std::max<size_t>(1, data.queries.size() / fq);
    VectorSet fqs = *VectorSet::Create(fq, dim);
    for (size_t q = 0; q < fq; ++q) {
      std::copy(data.queries.row(q * stride), data.queries.row(q * stride) + dim, fqs.mutable_row(q));
    }
    fmt::print("\nfilters ({} queries spread over the set, one thread, default recall target {}):\n", fq,
               kDefaultRecallTarget);
    fmt::print("(post-filter: the smallest of 4 parameters reaching the planner's recall, '*' when none did;\n"
               " latencies: medians of 3 passes, the three run per query in each of the 6 orders in turn)\n");
    fmt::print("{:>8} {:>9} | {:<26} {:>8} {:>6} {:>9} | {:>9} | {:>9} {:>8} {:>6}\n", "select.", "matches",
               "planner: strategy", "recall", "short", "mean ms", "scan ms", "post ms", "post rec", "param");
    for (double s : c.selectivities) {
      const std::string filter = fmt::format("tags == \"{}\"", TagFor(s));
      size_t matches = 0;
      for (const auto& a : attrs) {
        const auto& tags = std::get<TagList>(a[0].value);
        matches += std::find(tags.begin(), tags.end(), TagFor(s)) != tags.end();
      }
      // Exact answers (the scan's latency is timed below, side by side).
      std::vector<std::vector<Neighbor>> exact(fq);
      for (size_t q = 0; q < fq; ++q) {
        STRATA_ASSIGN_OR_RETURN(exact[q], engine->Search(kind, std::span<const float>(fqs.row(q), dim),
                                                         {.k = c.k, .filter = filter, .strategy = SearchStrategy::kScan}));
      }
      double scan_ms = 0;
      STRATA_ASSIGN_OR_RETURN(Run planner, run(fq, {.k = c.k, .filter = filter}, &exact, false, &fqs));
      // Post-filtering at growing parameters (from the unfiltered parameter of the
      // default target, x2, x4, x8): the smallest that reaches the planner's recall
      // (the cheapest: cost grows with the parameter), else the one with the best recall.
      STRATA_ASSIGN_OR_RETURN(Run base, run(1, {.k = c.k}, nullptr, false, &fqs));
      Run post;
      SearchOptions post_options;
      bool post_reached = false;
      for (uint32_t mult : {1u, 2u, 4u, 8u}) {
        SearchOptions o{.k = c.k, .filter = filter, .strategy = SearchStrategy::kPostFilter};
        if (spann) o.max_lists = std::max<uint32_t>(1, base.param * mult);
        else o.ef = std::max<uint32_t>(c.k, base.param * mult);
        STRATA_ASSIGN_OR_RETURN(Run p, run(fq, o, &exact, false, &fqs));
        p.param = spann ? o.max_lists : o.ef;
        if (p.recall >= planner.recall - 1e-9) {
          post = p;
          post_options = o;
          post_reached = true;
          break;
        }
        if (p.recall > post.recall) {
          post = p;
          post_options = o;
        }
      }
      // Latencies side by side: per query the planner, the scan and that post-filter run in
      // an order rotating from query to query (so that none always follows the cache-sweeping
      // post-filter), three passes; the median pass per strategy (this host's noise is larger
      // than some of the differences).
      {
        const SearchOptions opts[3] = {{.k = c.k, .filter = filter},
                                       {.k = c.k, .filter = filter, .strategy = SearchStrategy::kScan},
                                       post_options};
        // All six orders in turn: a rotation alone keeps who follows whom (the strategy after the
        // post-filter would always pay for the cache it swept).
        static constexpr size_t kOrders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
        std::vector<double> ms[3];
        for (int pass = 0; pass < 3; ++pass) {
          double total[3] = {0, 0, 0};
          for (size_t q = 0; q < fq; ++q) {
            for (size_t j = 0; j < 3; ++j) {
              const size_t which = kOrders[(q + size_t(pass)) % 6][j];
              Timer t2;
              STRATA_ASSIGN_OR_RETURN(auto r, engine->Search(kind, std::span<const float>(fqs.row(q), dim),
                                                             opts[which]));
              total[which] += t2.Seconds();
              (void)r;
            }
          }
          for (size_t j = 0; j < 3; ++j) ms[j].push_back(1e3 * total[j] / double(fq));
        }
        for (auto& v : ms) std::sort(v.begin(), v.end());
        planner.mean_ms = ms[0][1];
        scan_ms = ms[1][1];
        post.mean_ms = ms[2][1];
      }
      std::string strat;
      for (const auto& [name, count] : planner.strategies) strat += fmt::format("{}{} x{}", strat.empty() ? "" : ", ", name, count);
      fmt::print("{:>7.1f}% {:>9} | {:<26} {:>8.4f} {:>6} {:>9.3f} | {:>9.3f} | {:>9.3f} {:>8.4f} {:>5}{}\n", s * 100,
                 matches, strat, planner.recall, planner.short_answers, planner.mean_ms, scan_ms, post.mean_ms,
                 post.recall, post.param, post_reached ? " " : "*");
      std::fflush(stdout);
      fmt::print("JSON {{\"bench\":\"planner_filter\",\"dataset\":\"{}\",\"kind\":\"{}\",\"selectivity\":{},"
                 "\"matches\":{},\"recall\":{:.5f},\"short\":{},\"mean_ms\":{:.4f},\"scan_ms\":{:.4f},"
                 "\"post_ms\":{:.4f},\"post_recall\":{:.5f},\"rev\":\"{}\"}}\n",
                 data.name, kind, s, matches, planner.recall, planner.short_answers, planner.mean_ms, scan_ms,
                 post.mean_ms, post.recall, rev);
    }
    Explain ex;
    auto one = engine->Search(kind, std::span<const float>(data.queries.row(0), dim),
                              {.k = c.k, .recall = 0.95, .filter = fmt::format("tags == \"{}\"", TagFor(c.selectivities[0]))},
                              &ex);
    if (!one) return one.error();
    fmt::print("\nEXPLAIN of one query (recall 0.95, filter at {}%):\n{}", c.selectivities[0] * 100, ex.ToString());
  }
  engine.reset();  // closes the engine before the scratch directory is removed
  return Status::Ok();
}

}  // namespace strata::tools
