#pragma once
// The planner: how one segment answers one query. Internal to the engine; the
// rules, their thresholds and the measurements behind them are in docs/PLANNER.md.
//
//   - Parameters: an explicit ef / max_lists wins; otherwise the recall target
//     (default kDefaultRecallTarget) is looked up in the segment's calibration table.
//   - A target the index cannot be predicted to reach (above every calibrated point,
//     or an uncalibrated SPANN segment): the exact scan.
//   - Without a filter: the index, unless the segment is so small that scoring
//     every live row costs less than the index search would (then an exact scan).
//   - With a filter of selectivity s matching m rows, the parameter and the cost of
//     a filtered index search come from the segment's filtered calibration tables
//     (interpolated in log s); the exact scan costs m x kScanCost; the cheaper wins.
//     Where s >= kPostFilterMinSelectivity, post-filtering (an unfiltered search
//     for 2k/s results, the non-matching dropped) competes too, at the cost of an
//     unfiltered search whose parameter finds the target share of the top k/s.
//     Without filtered tables: HNSW traversal costs about D(ef) / s (D: the calibrated
//     cost of an unfiltered search, since only one visited node in 1/s can fill the
//     result list); SPANN reads max_lists raised to param / s^kSpannListExponent (a
//     filtered top-k lies about as far out as the unfiltered top-k/s), and scans below
//     kSpannMinSelectivity.
//
// Pure functions; thread-safe.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/metric.h"
#include "core/topk.h"
#include "core/types.h"
#include "engine/calibration.h"
#include "engine/strata.h"
#include "index/distance/distance.h"

namespace strata::engine {

// Relative cost of scoring one row in an exact scan (sequential rows, no graph
// bookkeeping) against one distance computation of a graph traversal (measured:
// docs/PLANNER.md).
inline constexpr double kScanCost = 0.5;
inline constexpr double kSpannMinSelectivity = 0.05;
// Post-filtering is considered from this selectivity up (it then asks the index
// for at most 2k/s = 10k results).
inline constexpr double kPostFilterMinSelectivity = 0.2;
inline constexpr double kSpannListExponent = 1.0;
// A segment without a calibration (below kMinCalibrationRows, or not calibrated by
// maintenance yet) is searched with these (docs/PLANNER.md): ef 128 reaches recall@10
// 0.95-0.99 on the data sets measured, 64 SPANN lists about 0.93 on GloVe-100; an
// exact scan is chosen instead while it costs less.
inline constexpr uint32_t kUncalibratedEf = 128;
inline constexpr uint32_t kUncalibratedMaxLists = 64;
// Distances per HNSW search assumed per unit of ef, and bytes read per SPANN list,
// when no calibration exists.
inline constexpr double kUncalibratedDistancesPerEf = 12.0;
inline constexpr double kUncalibratedBytesPerList = 16384.0;
// Bytes of posting list read cost as much as one distance computation, for
// comparing a SPANN search with a scan (an entry of d half-precision values plus
// its id is read once and scored once).
inline constexpr double kSpannBytesPerDistance = 64.0;

enum class SegmentKind : uint8_t { kHnsw, kSpann };

struct PlanInput {
  SegmentKind kind = SegmentKind::kHnsw;
  uint64_t rows = 0;       // live rows
  uint64_t matching = 0;   // live rows matching the filter (== rows without one)
  bool filtered = false;
  uint32_t spann_lists = 0;          // SPANN: posting lists in the index
  const Calibration* calibration = nullptr;  // may be null or empty
  const SearchOptions* options = nullptr;
  double recall_target = kDefaultRecallTarget;  // resolved (0 when explicit parameters rule)
  bool want_reason = false;  // fill SegmentPlan::reason (for EXPLAIN only: formatting costs)
};

struct SegmentPlan {
  SearchStrategy strategy = SearchStrategy::kIndex;  // never kAuto
  uint32_t param = 0;        // ef or max_lists
  uint32_t post_k = 0;       // kPostFilter: results asked of the index
  double predicted_recall = 0;
  bool skip = false;         // nothing matches
  std::string reason;
};

SegmentPlan PlanSegment(const PlanInput& in);

// Milliseconds since `t` (EXPLAIN's stage times).
inline double MillisSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// Exact top-k over `count` candidates; `row(i, &id, &inv_norm)` returns the i-th
// candidate's vector as written (valid until the next call), sets its id and (cosine)
// 1/|row|; `prefetch(i)` starts loading the i-th candidate's vector. `query` is
// normalized for cosine. A template so the per-row calls inline; the vectors a few rows
// ahead are prefetched.
template <typename RowFn, typename PrefetchFn>
std::vector<Neighbor> ScanTopK(const float* query, size_t dim, Metric metric, uint32_t k, size_t count,
                               RowFn&& row, PrefetchFn&& prefetch) {
  const auto& kern = index::Kernels();
  const bool cosine = metric == Metric::kCosine;
  const bool l2 = metric == Metric::kL2;
  TopK<VectorId> top(k);
  constexpr size_t kAhead = 4;
  for (size_t i = 0; i < count; ++i) {
    if (i + kAhead < count) prefetch(i + kAhead);
    VectorId id = 0;
    float inv = 1.0f;
    const float* v = row(i, &id, &inv);
    float d = l2 ? kern.l2sq(query, v, dim) : -kern.ip(query, v, dim);
    if (cosine) d *= inv;
    top.Push(d, id);
  }
  return top.TakeSortedNeighbors();
}

}  // namespace strata::engine
