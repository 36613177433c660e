#include "tools/eval.h"

#include <algorithm>
#include <cmath>

#include "core/recall.h"

namespace strata::tools {

Result<RecallEvaluator> RecallEvaluator::Create(const VectorSet& base, const VectorSet& queries,
                                                const storage::GroundTruth& gt, Metric metric,
                                                size_t k) {
  if (k == 0) return Error(InvalidArgument("recall k must be at least 1"));
  if (gt.num_queries < queries.size()) {
    return Error(InvalidArgument("ground truth has {} rows for {} queries", gt.num_queries,
                                 queries.size()));
  }
  if (gt.k < k) {
    return Error(InvalidArgument("ground truth has {} neighbours per query, recall@{} needs {}",
                                 gt.k, k, k));
  }
  if (base.dim() != queries.dim()) {
    return Error(InvalidArgument("base dimension {} differs from query dimension {}", base.dim(),
                                 queries.dim()));
  }
  for (size_t q = 0; q < queries.size(); ++q) {
    for (size_t j = 0; j < k; ++j) {
      int32_t id = gt.row(q)[j];
      if (id < 0 || size_t(id) >= base.size()) {
        return Error(InvalidArgument("ground truth row {} holds id {}, base has {} vectors", q, id,
                                     base.size()));
      }
    }
  }
  RecallEvaluator ev(base, queries, gt, metric, k);
  ev.kth_distance_.resize(queries.size());
  for (size_t q = 0; q < queries.size(); ++q) {
    double worst = -INFINITY;
    for (size_t j = 0; j < k; ++j) worst = std::max(worst, ev.ExactDistance(q, gt.row(q)[j]));
    ev.kth_distance_[q] = worst;
  }
  return ev;
}

double RecallEvaluator::ExactDistance(size_t q, size_t row) const {
  const float* a = queries_->row(q);
  const float* b = base_->row(row);
  const size_t dim = queries_->dim();
  if (metric_ == Metric::kL2) {
    double s = 0;
    for (size_t i = 0; i < dim; ++i) {
      double d = double(a[i]) - b[i];
      s += d * d;
    }
    return s;
  }
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < dim; ++i) {
    dot += double(a[i]) * b[i];
    na += double(a[i]) * a[i];
    nb += double(b[i]) * b[i];
  }
  if (metric_ == Metric::kCosine) {
    double denom = std::sqrt(na) * std::sqrt(nb);
    return denom > 0 ? -dot / denom : 0.0;
  }
  return -dot;
}

double RecallEvaluator::QueryRecall(size_t q, const Neighbor* result, size_t count) const {
  std::vector<VectorId> truth(k_);
  std::copy(gt_->row(q), gt_->row(q) + k_, truth.begin());
  // The returned neighbours with their distances recomputed exactly (ids outside the base set,
  // padding included, can be no hit: an infinite distance).
  std::vector<Neighbor> exact(result, result + std::min(count, k_));
  for (Neighbor& nb : exact) {
    nb.distance = nb.id < base_->size() ? float(ExactDistance(q, size_t(nb.id))) : INFINITY;
  }
  return RecallAtK({.ids = truth, .kth_distance = kth_distance_[q]}, exact);
}

double RecallEvaluator::Recall(const std::vector<Neighbor>& results, size_t stride,
                               size_t num_queries) const {
  if (num_queries == 0) return 0;
  double sum = 0;
  for (size_t q = 0; q < num_queries; ++q) sum += QueryRecall(q, results.data() + q * stride, stride);
  return sum / double(num_queries);
}

double RecallEvaluator::ExactSetAgreement(const std::vector<Neighbor>& results, size_t stride,
                                          size_t num_queries) const {
  if (num_queries == 0) return 0;
  size_t agree = 0;
  std::vector<int64_t> a(k_), b(k_);
  for (size_t q = 0; q < num_queries; ++q) {
    for (size_t j = 0; j < k_; ++j) {
      a[j] = j < stride ? int64_t(results[q * stride + j].id) : -1;
      b[j] = gt_->row(q)[j];
    }
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    if (a == b) ++agree;
  }
  return double(agree) / double(num_queries);
}

}  // namespace strata::tools
