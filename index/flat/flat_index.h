#pragma once
// FlatIndex: exact k-nearest-neighbour search by scanning every vector.
//
// It is the oracle for every recall test and the engine behind `strata gt`.
// Single queries stream the rows through the one-query batch kernel; batches of
// queries (SearchBatch) are cut into blocks of queries x blocks of rows and
// scored with the multi-query block kernel (index/distance/block.h), which is
// bound by arithmetic rather than memory bandwidth, in parallel with OpenMP.
//
// L2 batches are scored as |x|^2 - 2<q,x> (+|q|^2) and then the best k + 32
// candidates are re-ranked with the direct (a-b)^2 kernel, so the reported
// distances and order are those of the exact kernel. Cosine vectors are
// normalized on insert and queries at search time.
//
// Thread safety: Search, SearchBatch and Stats are const and may run
// concurrently; Add and Remove need exclusive access (thread-compatible).

#include <memory>
#include <unordered_map>
#include <vector>

#include "index/index.h"

namespace strata::index {

class FlatIndex final : public MutableIndex {
 public:
  static Result<std::unique_ptr<FlatIndex>> Create(size_t dim, Metric metric);
  // Takes ownership of `vectors`; ids are 0..n-1 unless `ids` (one per row) is given.
  // Rejects NaN/Inf components and duplicate ids.
  static Result<std::unique_ptr<FlatIndex>> Build(VectorSet vectors, Metric metric,
                                                  std::vector<VectorId> ids = {});

  Result<std::vector<Neighbor>> Search(VectorView query, const SearchParams& params,
                                       SearchContext& ctx) const override;

  struct BatchOptions {
    int num_threads = 0;   // 0 = OpenMP default (all cores)
    bool progress = false; // report progress on stderr
  };
  // Exact top-k of every query: nq * k neighbours, row-major, nearest first. When the
  // index holds fewer than k vectors the tail of each row has id kInvalidVectorId.
  Result<std::vector<Neighbor>> SearchBatch(const VectorSet& queries, uint32_t k,
                                            const BatchOptions& options) const;

  Status Add(VectorId id, VectorView v) override;
  Status Remove(VectorId id) override;

  IndexStats Stats() const override;
  size_t dim() const override { return dim_; }
  Metric metric() const override { return metric_; }
  size_t size() const override { return vectors_.size(); }
  const VectorSet& vectors() const { return vectors_; }
  VectorId id_at(size_t row) const { return ids_[row]; }

 private:
  FlatIndex(size_t dim, Metric metric) : dim_(dim), metric_(metric) {}
  float RowNorm(size_t row) const;

  size_t dim_;
  Metric metric_;
  VectorSet vectors_;
  std::vector<VectorId> ids_;                     // row -> id
  std::vector<float> sq_norms_;                   // row -> |x|^2 (L2 only)
  std::unordered_map<VectorId, size_t> row_of_;   // id -> row
};

}  // namespace strata::index
