#include "engine/segment.h"

#include <algorithm>
#include <chrono>

namespace strata::engine {

Result<std::vector<Neighbor>> SearchSegment(const Segment& seg, const SegmentQuery& q, SearchScratch& scratch,
                                            SegmentExplain* explain, index::SpannQueryStats* io) {
  const SearchOptions& o = *q.options;
  auto t0 = std::chrono::steady_clock::now();
  // 1. The filter: the live matching rows (cached by the segment where it can).
  std::shared_ptr<const RowBitmap> match;
  const uint64_t live = seg.live_rows();
  uint64_t matching = live;
  double estimated = 1.0;
  if (q.filter) {
    if (explain) estimated = seg.EstimateSelectivity(*q.filter);  // EXPLAIN only
    MatchingRows m = seg.Match(*q.filter, q.filter_key);
    match = std::move(m.rows);
    matching = m.count;
  }
  SegmentExplain ex;
  if (explain) ex.segment = seg.name();
  ex.kind = seg.kind() == SegmentKind::kHnsw ? "hnsw" : "spann";
  ex.filter_ms = q.filter ? MillisSince(t0) : 0.0;
  // 2. The plan.
  PlanInput in;
  in.kind = seg.kind();
  in.rows = live;
  in.matching = matching;
  in.filtered = q.filter != nullptr;
  in.spann_lists = seg.spann_lists();
  in.calibration = seg.calibration();
  in.options = &o;
  in.recall_target = q.recall_target;
  in.want_reason = explain != nullptr;
  const SegmentPlan plan = PlanSegment(in);
  ex.rows = live;
  ex.matching = matching;
  ex.estimated_selectivity = estimated;
  ex.actual_selectivity = live ? double(matching) / double(live) : 0.0;
  ex.predicted_recall = plan.predicted_recall;
  ex.reason = plan.reason;
  if (explain && in.calibration) {
    if (std::string origin = seg.calibration_origin(); !origin.empty()) ex.reason += "; " + origin;
  }
  // 3. Run it.
  t0 = std::chrono::steady_clock::now();
  std::vector<Neighbor> out;  // rows until the end
  auto scan = [&] {
    std::vector<uint32_t> rows;
    rows.reserve(matching);
    if (match) {
      match->ForEach([&](uint32_t r) { rows.push_back(r); });
    } else {
      seg.LiveRows(rows);
    }
    ex.distances += rows.size();
    std::vector<float> buf(seg.dim());
    return ScanTopK(
        q.normalized, seg.dim(), seg.metric(), o.k, rows.size(),
        [&](size_t i, VectorId* row, float* inv) {
          *row = rows[i];
          *inv = seg.inv_norm(rows[i]);
          return seg.vector(rows[i], buf.data());
        },
        [&](size_t i) { seg.PrefetchVector(rows[i]); });
  };
  if (plan.skip) {
    ex.strategy = "skipped";
  } else if (plan.strategy == SearchStrategy::kScan) {
    ex.strategy = "scan";
    out = scan();
  } else {
    const bool post = plan.strategy == SearchStrategy::kPostFilter;
    ex.strategy = post ? "post-filter" : (match ? "filtered index" : "index");
    const uint32_t want = post ? plan.post_k : o.k;
    STRATA_ASSIGN_OR_RETURN(out, seg.IndexSearch(q, want, plan.param, post ? nullptr : match.get(), scratch, ex, io));
    if (post) std::erase_if(out, [&](const Neighbor& nb) { return !match->Test(uint32_t(nb.id)); });
    if (out.size() > o.k) out.resize(o.k);
    // A filtered search that came back short although k rows match: the exact scan.
    if (match && out.size() < std::min<uint64_t>(o.k, matching) && o.strategy == SearchStrategy::kAuto) {
      ex.strategy = "index, then scan";
      out = scan();
    }
  }
  for (Neighbor& nb : out) nb.id = seg.id(uint32_t(nb.id));
  ex.search_ms = MillisSince(t0);
  ex.results = out.size();
  if (explain) *explain = std::move(ex);
  return out;
}

}  // namespace strata::engine
