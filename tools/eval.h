#pragma once
// Recall evaluation against ground truth with the base vectors at hand: the rule of
// core/recall.h (ann-benchmarks' ties at the k-th distance count), with every distance
// recomputed in double precision from the vectors rather than taken from the search, so an
// index that reports approximate distances is judged on the exact ones.
//
// Thread-compatible: build once, then Recall() may be called concurrently.

#include <cstdint>
#include <vector>

#include "core/metric.h"
#include "core/types.h"
#include "core/vector_set.h"
#include "storage/dataset_io.h"

namespace strata::tools {

class RecallEvaluator {
 public:
  // `base` and `queries` are the raw (un-normalized) vectors; gt ids index rows of base.
  // Fails when gt has fewer rows than queries or fewer than k columns, or an id is out of range.
  static Result<RecallEvaluator> Create(const VectorSet& base, const VectorSet& queries,
                                        const storage::GroundTruth& gt, Metric metric, size_t k);

  // Mean recall@k of `results` (row-major, `stride` neighbours per query, the
  // first k used; ids are base rows) over the first `num_queries` queries.
  double Recall(const std::vector<Neighbor>& results, size_t stride, size_t num_queries) const;
  // Recall@k of one query's result list.
  double QueryRecall(size_t q, const Neighbor* result, size_t count) const;
  // Fraction of queries whose top-k id set equals the ground truth's exactly.
  double ExactSetAgreement(const std::vector<Neighbor>& results, size_t stride,
                           size_t num_queries) const;

  size_t k() const { return k_; }

 private:
  RecallEvaluator(const VectorSet& base, const VectorSet& queries, const storage::GroundTruth& gt,
                  Metric metric, size_t k)
      : base_(&base), queries_(&queries), gt_(&gt), metric_(metric), k_(k) {}
  double ExactDistance(size_t q, size_t row) const;

  const VectorSet* base_;
  const VectorSet* queries_;
  const storage::GroundTruth* gt_;
  Metric metric_;
  size_t k_;
  std::vector<double> kth_distance_;  // per query, exact distance of the true k-th neighbour
};

}  // namespace strata::tools
