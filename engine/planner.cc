#include "engine/planner.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "index/distance/distance.h"

namespace strata::engine {
SegmentPlan PlanSegment(const PlanInput& in) {
  const SearchOptions& o = *in.options;
  SegmentPlan plan;
  const uint32_t k = o.k;
  if (in.matching == 0) {
    plan.skip = true;
    plan.reason = in.filtered ? "no live row matches the filter" : "no live rows";
    return plan;
  }
  const bool hnsw = in.kind == SegmentKind::kHnsw;
  const bool calibrated = in.calibration && !in.calibration->empty();
  // 1. The index parameter and what it is predicted to cost and reach.
  const uint32_t explicit_param = hnsw ? o.ef : o.max_lists;
  double cost = 0;  // distances (HNSW) or bytes (SPANN) of one unfiltered index search
  bool reachable = true;  // the calibrated index reaches the target
  if (explicit_param > 0 || in.recall_target <= 0) {
    plan.param = hnsw ? std::max(explicit_param, k) : std::max<uint32_t>(explicit_param, 1);
    if (calibrated) {
      const auto at = in.calibration->At(plan.param, k);
      cost = at.cost;
    }
    if (in.want_reason) plan.reason = fmt::format("explicit {}={}", hnsw ? "ef" : "max_lists", plan.param);
  } else if (calibrated) {
    const auto c = in.calibration->For(in.recall_target, k, hnsw);
    reachable = c.reachable;
    plan.param = c.param;
    plan.predicted_recall = c.predicted_recall;
    cost = c.cost;
    if (in.want_reason) plan.reason = c.reachable ? fmt::format("recall {:.3f} -> {}={} (calibrated {:.3f})", in.recall_target,
                                            hnsw ? "ef" : "max_lists", c.param, c.predicted_recall)
                              : fmt::format("recall {:.3f} is above the calibrated maximum {:.3f}: {}={}",
                                            in.recall_target, c.predicted_recall, hnsw ? "ef" : "max_lists",
                                            c.param);
  } else {
    // No calibration (a segment too small to measure, or not measured yet: maintenance
    // calibrates in the background, a search never does): fixed, generous parameters.
    plan.param = hnsw ? std::max<uint32_t>(k, kUncalibratedEf)
                      : std::max<uint32_t>(std::min<uint32_t>(in.spann_lists, kUncalibratedMaxLists), 1);
    plan.reason = "uncalibrated segment: fixed parameters";
  }
  // Scan rather than search when the index cannot be predicted to reach the target:
  // a target above every calibrated point (only the exact scan delivers it).
  const bool target_param = explicit_param == 0 && in.recall_target > 0;
  const bool unpredictable = target_param && calibrated && !reachable;
  if (hnsw && plan.param > kMaxSearchEf) plan.param = kMaxSearchEf;
  if (!hnsw && in.spann_lists > 0) plan.param = std::min(plan.param, in.spann_lists);
  if (cost <= 0) cost = hnsw ? kUncalibratedDistancesPerEf * plan.param : kUncalibratedBytesPerList * plan.param;
  // Index cost in distance units.
  const double index_distances = hnsw ? cost : cost / kSpannBytesPerDistance;
  const double s = in.rows ? double(in.matching) / double(in.rows) : 1.0;
  const double scan_cost = kScanCost * double(in.matching);

  // 2. Forced strategies.
  if (o.strategy == SearchStrategy::kScan) {
    plan.strategy = SearchStrategy::kScan;
    plan.predicted_recall = 1.0;
    plan.reason = "scan forced";
    return plan;
  }
  if (o.strategy == SearchStrategy::kPostFilter && in.filtered) {
    plan.strategy = SearchStrategy::kPostFilter;
    // Twice the expected number of results holding k matches: a post-filter that
    // asks for only k/s comes back short about half the time.
    plan.post_k = uint32_t(std::min<double>(std::ceil(2.0 * k / std::max(s, 1e-9)), double(kMaxSearchK)));
    plan.post_k = std::max(plan.post_k, k);
    if (hnsw) plan.param = std::max(plan.param, plan.post_k);
    if (in.want_reason) plan.reason += fmt::format("; post-filter forced: {} results asked of the index", plan.post_k);
    return plan;
  }
  if (o.strategy == SearchStrategy::kIndex || o.strategy == SearchStrategy::kPostFilter) {
    plan.strategy = SearchStrategy::kIndex;
    if (!hnsw && in.filtered) {
      plan.param = std::min<uint32_t>(
          in.spann_lists, uint32_t(std::ceil(plan.param / std::pow(std::max(s, 1e-9), kSpannListExponent))));
    }
    plan.reason += "; index forced";
    return plan;
  }

  // 3. The planner's choice.
  if (unpredictable) {
    plan.strategy = SearchStrategy::kScan;
    plan.predicted_recall = 1.0;
    if (in.want_reason) plan.reason += "; the index cannot be predicted to reach the target: exact scan";
    return plan;
  }
  if (!in.filtered) {
    if (scan_cost <= index_distances) {
      plan.strategy = SearchStrategy::kScan;
      plan.predicted_recall = 1.0;
      if (in.want_reason) {
        plan.reason = fmt::format("{} rows: an exact scan ({:.0f}) costs less than the index ({:.0f})", in.rows,
                                  scan_cost, index_distances);
      }
    } else {
      plan.strategy = SearchStrategy::kIndex;
    }
    return plan;
  }
  // Filtered: the parameter and the cost of a filtered index search, from the
  // filtered calibration tables when the parameter is not explicit.
  Calibration::Choice filtered;
  if (calibrated && explicit_param == 0 && in.recall_target > 0) {
    filtered = in.calibration->ForFiltered(in.recall_target, k, s, hnsw,
                                           hnsw ? Calibration::kFilteredMarginHnsw : Calibration::kFilteredMarginSpann);
  }
  // Post-filtering -- an unfiltered search asked for post_k results, the
  // non-matching ones dropped -- where matches are common: the k matching answers
  // lie about k/s deep in the unfiltered order, so the parameter must find the
  // target share of the top k/s (Calibration::ForDepth).
  SegmentPlan post;
  double post_cost = 0;
  if (calibrated && target_param && s >= kPostFilterMinSelectivity) {
    // The filtered margin too: per-query recall of a post-filter varies like a filtered search's
    // (measured: SPANN at 50% landed at 0.949 for a 0.95 target without it).
    const double margin = hnsw ? Calibration::kFilteredMarginHnsw : Calibration::kFilteredMarginSpann;
    const auto c = in.calibration->ForDepth(std::min(1.0, in.recall_target + margin), uint32_t(std::ceil(k / s)),
                                            hnsw);
    if (c.reachable) {
      post.strategy = SearchStrategy::kPostFilter;
      post.post_k = std::max(k, uint32_t(std::min<double>(std::ceil(2.0 * k / s), double(kMaxSearchK))));
      post.param = hnsw ? std::min<uint32_t>(std::max(c.param, post.post_k), kMaxSearchEf)
                        : std::min<uint32_t>(c.param, std::max<uint32_t>(in.spann_lists, 1));
      post.predicted_recall = c.predicted_recall;
      post_cost = hnsw ? in.calibration->At(post.param, 10).cost
                       : in.calibration->At(post.param, 10).cost / kSpannBytesPerDistance;
    }
  }
  auto choose_post = [&](double index_cost) {
    if (post.post_k == 0 || post_cost >= index_cost || post_cost >= scan_cost) return false;
    if (in.want_reason) {
      post.reason = fmt::format("selectivity {:.4f}: post-filter, {} results of an unfiltered search at {}={} "
                                "({:.0f}) under the filtered index ({:.0f}) and a scan ({:.0f})",
                                s, post.post_k, hnsw ? "ef" : "max_lists", post.param, post_cost, index_cost,
                                scan_cost);
    }
    plan = std::move(post);
    return true;
  };
  if (hnsw) {
    double traversal = index_distances / std::max(s, 1e-9);
    if (filtered.param > 0) {
      plan.param = std::min<uint32_t>(filtered.param, kMaxSearchEf);
      plan.predicted_recall = filtered.predicted_recall;
      traversal = filtered.cost;
    }
    if (choose_post(filtered.param > 0 && !filtered.reachable ? HUGE_VAL : traversal)) return plan;
    if (scan_cost <= traversal || (filtered.param > 0 && !filtered.reachable)) {
      plan.strategy = SearchStrategy::kScan;
      plan.predicted_recall = 1.0;
      if (in.want_reason) {
        plan.reason = fmt::format("selectivity {:.4f}: scan of {} rows ({:.0f}) under filtered traversal ({:.0f})",
                                  s, in.matching, scan_cost, traversal);
      }
    } else {
      plan.strategy = SearchStrategy::kIndex;
      if (in.want_reason) {
        plan.reason += fmt::format("; selectivity {:.4f}: filtered traversal at ef={} ({:.0f}{}) under a scan "
                                   "({:.0f})", s, plan.param, traversal,
                                   filtered.param > 0 ? ", filtered calibration" : "", scan_cost);
      }
    }
    return plan;
  }
  // SPANN.
  uint32_t lists = std::min<uint32_t>(
      std::max<uint32_t>(in.spann_lists, 1),
      uint32_t(std::ceil(plan.param / std::pow(std::max(s, 1e-9), kSpannListExponent))));
  double spann_cost = index_distances * double(lists) / std::max<uint32_t>(plan.param, 1);
  bool too_selective = s < kSpannMinSelectivity;
  if (filtered.param > 0) {
    lists = std::min<uint32_t>(std::max<uint32_t>(in.spann_lists, 1), filtered.param);
    spann_cost = filtered.cost / kSpannBytesPerDistance;
    plan.predicted_recall = filtered.predicted_recall;
    too_selective = !filtered.reachable;
  }
  if (choose_post(too_selective ? HUGE_VAL : spann_cost)) return plan;
  if (too_selective || scan_cost <= spann_cost) {
    plan.strategy = SearchStrategy::kScan;
    plan.predicted_recall = 1.0;
    if (in.want_reason) {
      plan.reason = fmt::format("selectivity {:.4f}: scan of {} rows ({:.0f}) under filtered SPANN with {} lists "
                                "({:.0f}{})", s, in.matching, scan_cost, lists, spann_cost,
                                too_selective ? ", target out of its reach" : "");
    }
  } else {
    plan.strategy = SearchStrategy::kIndex;
    if (in.want_reason) {
      plan.reason += fmt::format("; selectivity {:.4f}: filtered SPANN, max_lists {}{}", s, lists,
                                 filtered.param > 0 ? " (filtered calibration)" : "");
    }
    plan.param = lists;
  }
  return plan;
}

}  // namespace strata::engine
