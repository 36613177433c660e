#include "engine/segment_calibration.h"

#include <algorithm>
#include <optional>

namespace strata::engine {

size_t CalibrationQueries(size_t rows, SegmentKind kind) {
  const size_t most = kind == SegmentKind::kSpann ? 150 : 300;
  return std::min(most, std::max<size_t>(100, rows / 50));
}

namespace {

// Visible and, with `allowed`, an allowed calibration row.
class CalibrationFilter final : public index::IdFilter {
 public:
  CalibrationFilter(const HnswCalibrationTarget& t, const std::function<bool(size_t)>* allowed)
      : t_(t), allowed_(allowed) {}
  bool Contains(VectorId label) const override {
    if (t_.visible && !t_.visible->Contains(label)) return false;
    if (!allowed_) return true;
    const size_t row = t_.row_of_label(label);
    return row != SIZE_MAX && (*allowed_)(row);
  }

 private:
  const HnswCalibrationTarget& t_;
  const std::function<bool(size_t)>* allowed_;
};

}  // namespace

decltype(CalibrationSource::search) HnswCalibrationSearch(HnswCalibrationTarget target) {
  return [t = std::move(target)](const float* q, uint32_t k, uint32_t ef, size_t self,
                                 const std::function<bool(size_t)>* allowed,
                                 double* cost) -> Result<std::vector<Neighbor>> {
    thread_local index::SearchContext ctx;
    index::SearchParams p;
    p.k = k;
    p.ef = std::max(ef, k);
    if (self != SIZE_MAX) p.exclude = t.label_of_row(self);
    std::optional<CalibrationFilter> filter;
    if (allowed || t.visible) {
      filter.emplace(t, allowed);
      p.filter = &*filter;
    }
    index::HnswSearchStats st;
    STRATA_ASSIGN_OR_RETURN(auto out, t.graph->Search(VectorView(q, t.graph->dim()), p, ctx, &st));
    *cost += double(st.distances);
    return out;
  };
}

void SetUpHnswCalibration(CalibrationSource& src, const HnswCalibrationTarget& target) {
  src.grid = HnswCalibrationGrid();
  src.scan_cost_per_row = kScanCost;
  src.id = target.label_of_row;
  src.search = HnswCalibrationSearch(target);
}

}  // namespace strata::engine
