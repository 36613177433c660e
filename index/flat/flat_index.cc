#include "index/flat/flat_index.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/progress.h"
#include "core/topk.h"
#include "index/distance/block.h"
#include "index/distance/distance.h"

namespace strata::index {
namespace {

// Block sizes for SearchBatch. kQueryBlock queries share each packed tile of
// rows (packing cost / kQueryBlock); kRowBlock rows per scores tile keep the
// tile (kQueryBlock x kRowBlock floats = 512 KiB) within L2.
constexpr size_t kQueryBlock = 256;
constexpr size_t kRowBlock = 512;
// Rows per chunk for single-query scans.
constexpr size_t kScanChunk = 1024;
// Extra L2 candidates re-ranked with the direct kernel (see class comment).
constexpr size_t kRerankMargin = 32;

}  // namespace

Result<std::unique_ptr<FlatIndex>> FlatIndex::Create(size_t dim, Metric metric) {
  if (dim == 0) return Error(InvalidArgument("dimension must be > 0"));
  std::unique_ptr<FlatIndex> index(new FlatIndex(dim, metric));
  STRATA_ASSIGN_OR_RETURN(index->vectors_, VectorSet::Create(0, dim));
  return index;
}

Result<std::unique_ptr<FlatIndex>> FlatIndex::Build(VectorSet vectors, Metric metric,
                                                    std::vector<VectorId> ids) {
  if (vectors.dim() == 0) return Error(InvalidArgument("vector set has dimension 0"));
  const size_t n = vectors.size();
  if (!ids.empty() && ids.size() != n) {
    return Error(InvalidArgument("{} ids given for {} vectors", ids.size(), n));
  }
  for (size_t i = 0; i < n; ++i) {
    if (!AllFinite(vectors.row(i), vectors.dim())) {
      return Error(InvalidArgument("vector {} has a NaN or infinite component", i));
    }
  }
  std::unique_ptr<FlatIndex> index(new FlatIndex(vectors.dim(), metric));
  if (ids.empty()) {
    ids.resize(n);
    for (size_t i = 0; i < n; ++i) ids[i] = i;
  }
  index->row_of_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (!index->row_of_.emplace(ids[i], i).second) {
      return Error(InvalidArgument("duplicate id {} at row {}", ids[i], i));
    }
  }
  if (MetricNormalizes(metric)) vectors.NormalizeRows();
  index->vectors_ = std::move(vectors);
  index->ids_ = std::move(ids);
  if (metric == Metric::kL2) {
    index->sq_norms_.resize(n);
    for (size_t i = 0; i < n; ++i) index->sq_norms_[i] = index->RowNorm(i);
  }
  return index;
}

float FlatIndex::RowNorm(size_t row) const {
  const float* r = vectors_.row(row);
  return Kernels().ip(r, r, dim_);
}

Status FlatIndex::Add(VectorId id, VectorView v) {
  if (v.dim != dim_) return InvalidArgument("vector has dimension {}, index expects {}", v.dim, dim_);
  if (!AllFinite(v.data, v.dim)) return InvalidArgument("vector {} has a NaN or infinite component", id);
  auto it = row_of_.find(id);
  size_t row;
  if (it != row_of_.end()) {
    row = it->second;
    std::memcpy(vectors_.mutable_row(row), v.data, dim_ * sizeof(float));
  } else {
    STRATA_RETURN_IF_ERROR(vectors_.Append(v));
    row = vectors_.size() - 1;
    ids_.push_back(id);
    row_of_.emplace(id, row);
    if (metric_ == Metric::kL2) sq_norms_.push_back(0);
  }
  if (MetricNormalizes(metric_)) NormalizeInPlace(vectors_.mutable_row(row), dim_);
  if (metric_ == Metric::kL2) sq_norms_[row] = RowNorm(row);
  return Status::Ok();
}

Status FlatIndex::Remove(VectorId id) {
  auto it = row_of_.find(id);
  if (it == row_of_.end()) return NotFound("id {} is not in the index", id);
  const size_t row = it->second;
  const size_t last = vectors_.size() - 1;
  row_of_.erase(it);
  if (row != last) {
    // Move the last row into the hole so rows stay contiguous.
    std::memcpy(vectors_.mutable_row(row), vectors_.row(last), dim_ * sizeof(float));
    ids_[row] = ids_[last];
    row_of_[ids_[row]] = row;
    if (metric_ == Metric::kL2) sq_norms_[row] = sq_norms_[last];
  }
  ids_.pop_back();
  if (metric_ == Metric::kL2) sq_norms_.pop_back();
  vectors_.Truncate(last);
  return Status::Ok();
}

Result<std::vector<Neighbor>> FlatIndex::Search(VectorView query, const SearchParams& params,
                                                SearchContext& ctx) const {
  STRATA_RETURN_IF_ERROR(ValidateQuery(query, dim_, params));
  const DistanceKernels& kern = Kernels();
  const float* q = query.data;
  if (MetricNormalizes(metric_)) {
    float* buf = ctx.QueryBuffer(dim_);
    std::memcpy(buf, query.data, dim_ * sizeof(float));
    NormalizeInPlace(buf, dim_);
    q = buf;
  }
  float* scores = ctx.Floats(kScanChunk);
  TopK<size_t> top(params.k);
  const size_t n = vectors_.size();
  for (size_t r0 = 0; r0 < n; r0 += kScanChunk) {
    const size_t nr = std::min(kScanChunk, n - r0);
    if (metric_ == Metric::kL2) {
      kern.l2sq_batch(q, vectors_.row(r0), nr, dim_, scores);
    } else {
      kern.ip_batch(q, vectors_.row(r0), nr, dim_, scores);
      for (size_t i = 0; i < nr; ++i) scores[i] = -scores[i];
    }
    float thr = top.threshold();
    for (size_t i = 0; i < nr; ++i) {
      if (scores[i] > thr) continue;
      if (params.filter && !params.filter->Contains(ids_[r0 + i])) continue;
      top.Push(scores[i], r0 + i);
      thr = top.threshold();
    }
  }
  std::vector<Neighbor> out;
  out.reserve(top.size());
  for (const auto& e : top.TakeSorted()) out.push_back({ids_[e.id], e.distance});
  return out;
}

Result<std::vector<Neighbor>> FlatIndex::SearchBatch(const VectorSet& queries, uint32_t k,
                                                     const BatchOptions& options) const {
  if (queries.dim() != dim_) {
    return Error(InvalidArgument("queries have dimension {}, index expects {}", queries.dim(), dim_));
  }
  if (k == 0) return Error(InvalidArgument("k must be at least 1"));
  const size_t nq = queries.size();
  for (size_t q = 0; q < nq; ++q) {
    if (!AllFinite(queries.row(q), dim_)) {
      return Error(InvalidArgument("query {} has a NaN or infinite component", q));
    }
  }
  const size_t n = vectors_.size();
  std::vector<Neighbor> result(nq * size_t(k));
  if (nq == 0) return result;

  // Normalized copy of the queries for cosine; otherwise scan them in place.
  VectorSet normalized;
  const VectorSet* qs = &queries;
  if (MetricNormalizes(metric_)) {
    STRATA_ASSIGN_OR_RETURN(normalized, queries.Clone());
    normalized.NormalizeRows();
    qs = &normalized;
  }

  const DistanceKernels& kern = Kernels();
  const BlockKernels& block = GetBlockKernels();
  const bool l2 = metric_ == Metric::kL2;
  const size_t keep = l2 ? std::min(n, size_t(k) + kRerankMargin) : std::min(n, size_t(k));
  const size_t num_blocks = (nq + kQueryBlock - 1) / kQueryBlock;
  const int threads = options.num_threads > 0 ? options.num_threads : omp_get_max_threads();
  Progress progress("exact search", nq, !options.progress);

#pragma omp parallel num_threads(threads)
  {
    // Per-thread scratch, allocated once per thread (allocation failure aborts via CHECK:
    // it is a few hundred KiB).
    std::unique_ptr<float[], AlignedFree> scores(
        static_cast<float*>(AlignedAlloc(kQueryBlock * kRowBlock * sizeof(float))));
    std::unique_ptr<float[], AlignedFree> scratch(static_cast<float*>(
        AlignedAlloc(std::max<size_t>(1, block.scratch_floats(dim_)) * sizeof(float))));
    STRATA_CHECK(scores && scratch);
    std::vector<TopK<uint32_t>> tops(kQueryBlock);

#pragma omp for schedule(dynamic, 1)
    for (size_t b = 0; b < num_blocks; ++b) {
      const size_t q0 = b * kQueryBlock;
      const size_t nqb = std::min(kQueryBlock, nq - q0);
      for (size_t i = 0; i < nqb; ++i) tops[i].Reset(keep);
      for (size_t r0 = 0; r0 < n; r0 += kRowBlock) {
        const size_t nr = std::min(kRowBlock, n - r0);
        block.ip_block(qs->row(q0), nqb, vectors_.row(r0), nr, dim_, scores.get(), kRowBlock,
                       scratch.get());
        for (size_t i = 0; i < nqb; ++i) {
          TopK<uint32_t>& top = tops[i];
          const float* s = scores.get() + i * kRowBlock;
          float thr = top.threshold();
          if (l2) {
            const float* norms = sq_norms_.data() + r0;
            for (size_t j = 0; j < nr; ++j) {
              const float d = norms[j] - 2.0f * s[j];
              if (d < thr) {
                top.Push(d, uint32_t(r0 + j));
                thr = top.threshold();
              }
            }
          } else {
            for (size_t j = 0; j < nr; ++j) {
              const float d = -s[j];
              if (d < thr) {
                top.Push(d, uint32_t(r0 + j));
                thr = top.threshold();
              }
            }
          }
        }
      }
      for (size_t i = 0; i < nqb; ++i) {
        auto sorted = tops[i].TakeSorted();
        if (l2) {
          // Re-rank the candidates with the direct kernel: exact distances and order.
          const float* qv = qs->row(q0 + i);
          for (auto& e : sorted) e.distance = kern.l2sq(qv, vectors_.row(e.id), dim_);
          std::sort(sorted.begin(), sorted.end());
        }
        Neighbor* out = result.data() + (q0 + i) * k;
        for (size_t j = 0; j < k; ++j) {
          out[j] = j < sorted.size() ? Neighbor{ids_[sorted[j].id], sorted[j].distance}
                                     : Neighbor{kInvalidVectorId, 0.0f};
        }
      }
      progress.Add(nqb);
    }
  }
  progress.Finish();
  return result;
}

IndexStats FlatIndex::Stats() const {
  IndexStats s;
  s.kind = "flat";
  s.num_vectors = vectors_.size();
  s.dim = dim_;
  s.metric = metric_;
  s.memory_bytes = vectors_.size_bytes() + ids_.capacity() * sizeof(VectorId) +
                   sq_norms_.capacity() * sizeof(float) +
                   row_of_.size() * (sizeof(VectorId) + sizeof(size_t) + 2 * sizeof(void*));
  return s;
}

}  // namespace strata::index
