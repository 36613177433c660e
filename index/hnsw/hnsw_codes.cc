// HNSW on compressed codes: training the SQ8 encoder, encoding a node, and the
// search that walks the graph on codes and reranks with full vectors.
//
// Why this shape: a layer-0 search spends its time waiting for the memory of the
// nodes it scores. A node block with a 100-byte code instead of a 400-byte vector
// (GloVe-100) is 4 cache lines instead of 9, so each hop waits for less, and the
// block array shrinks to what fits the memory budget. The codes' error only
// reorders near-ties; re-scoring the ef-list's best candidates with the full
// vectors (a few dozen 400-byte reads per query) restores the exact order, and
// so, but for rare near-ties, does re-scoring them on refined codes held in memory
// (HnswLoadOptions::refined_codes: 50 more bytes a node for GloVe-100, no reads).

#include <xmmintrin.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "index/hnsw/hnsw_codes_walk.h"

namespace strata::index {

using hnsw_detail::Candidate;
using hnsw_detail::CandidatePool;
using hnsw_detail::HnswScratch;
using hnsw_detail::PrefetchLines;
using hnsw_detail::WalkCodes;

namespace {
// Rows the encoder is trained on: an evenly spaced sample of the first batch.
// Per-dimension min/max settle long before this (GloVe-100: the same range from
// 10,000 rows up to all 331,479 within 1%).
constexpr size_t kCodesTrainRows = 100000;

// Rerank depth when neither the search nor the index sets one: 2k candidates.
// On GloVe-100 (all 10,000 queries, k = 10) reranking 15, 20, 40 or the whole
// ef-list gave the same recall@10 at ef 64, 128 and 768 (12: -0.0007 at ef 128);
// see docs/BENCHMARKS.md, section 10.
constexpr size_t kAutoRerankPerK = 2;

// The walk's dot products through the kernel table (any CPU).
struct TableFloatDot {
  const Sq8Kernels* k;
  float operator()(const Sq8Query& q, const uint8_t* code, size_t dim) const {
    return k->dot_f32_u8(q.qs.data(), code, dim);
  }
};
struct TableInt8Dot {
  const Sq8Kernels* k;
  float operator()(const Sq8Query& q, const uint8_t* code, size_t dim) const {
    return float(k->dot_s8_u8(q.qi.data(), code, dim)) * q.qi_step;
  }
};
}  // namespace

Status HnswIndex::Impl::TrainCodes(const VectorSet& rows) {
  if (codes_trained()) return Status::Ok();
  std::lock_guard<std::mutex> g(train_mu_);
  if (codes_trained()) return Status::Ok();
  const size_t n = rows.size();
  const size_t m = std::min(n, kCodesTrainRows);
  std::vector<float> sample(m * dim_);
  for (size_t j = 0; j < m; ++j) {
    float* dst = &sample[j * dim_];
    std::memcpy(dst, rows.row(j * n / m), dim_ * sizeof(float));
    if (MetricNormalizes(metric_)) NormalizeInPlace(dst, dim_);  // trained as stored
  }
  STRATA_ASSIGN_OR_RETURN(sq8_enc_, Sq8Encoder::Train(sample.data(), m, dim_));
  codes_trained_.store(true, std::memory_order_release);
  return Status::Ok();
}

void HnswIndex::Impl::EncodeNode(uint32_t node, const float* v) {
  std::memcpy(const_cast<float*>(FullVec(node)), v, dim_ * sizeof(float));
  uint8_t* code = reinterpret_cast<uint8_t*>(Block(node) + vec_offset_);
  sq8_enc_.Encode(v, code);
  const float norm2 = sq8_enc_.DecodedNorm2(code);
  std::memcpy(Block(node) + norm_offset_, &norm2, sizeof norm2);
}

Status HnswIndex::Impl::ReadFullVectors(const CandidatePool& pool, size_t r,
                                        HnswScratch& scratch) const {
  using storage::IoBackend;
  const IoBackend have = scratch.io ? scratch.io->backend() : IoBackend::kAuto;
  if (!scratch.io || (full_io_ == IoBackend::kPread && have != IoBackend::kPread) ||
      (full_io_ == IoBackend::kIoUring && have != IoBackend::kIoUring)) {
    // Deep enough for the default rerank (2k) of any k up to 32; longer reranks are
    // read in rounds of this many.
    STRATA_ASSIGN_OR_RETURN(scratch.io, storage::IoQueue::Create(full_io_, 64));
  }
  const size_t bytes = dim_ * sizeof(float);
  float* buf = HnswScratch::Sized(scratch.full_read, r * dim_);
  scratch.full_requests.resize(r);
  for (size_t i = 0; i < r; ++i) {
    storage::ReadRequest& req = scratch.full_requests[i];
    req.offset = full_file_offset_ + uint64_t(pool.id(i)) * bytes;
    req.length = uint32_t(bytes);
    req.buffer = buf + i * dim_;
  }
  Status failed;
  size_t failed_at = 0;
  STRATA_RETURN_IF_ERROR(scratch.io->ReadBatch(
      *full_file_, std::span<const storage::ReadRequest>(scratch.full_requests.data(), r),
      [&](size_t i, const Status& s) {
        if (!s.ok() && failed.ok()) {
          failed = s;
          failed_at = i;
        }
      }));
  if (!failed.ok()) {
    return IOError("reading the full vector of node {} for a rerank: {}", pool.id(failed_at),
                   failed.ToString());
  }
  return Status::Ok();
}

Status HnswIndex::Impl::SearchCodes(const float* q, size_t k, size_t ef, size_t rerank,
                                    std::optional<uint32_t> exclude, VisitedSet& visited,
                                    HnswScratch& scratch, HnswSearchStats* st) const {
  std::vector<Candidate>& out = scratch.rerank;
  out.clear();
  const uint64_t e = entry_.load(std::memory_order_acquire);
  if (uint32_t(e) == kInvalidNode) return Status::Ok();
  Sq8Query& pq = scratch.sq8_query;
  sq8_enc_.PrepareQuery(q, metric_, sq8_mode_, pq);
  const uint32_t ep = uint32_t(e);
  const int top = int(e >> 32);
  const float ep_dist = Sq8Distance(*sq8k_, pq, Sq8Code(ep), CodeNorm2(ep), dim_);
  if (st) ++st->distances;
  CandidatePool pool;
  pool.Reset(scratch.Pool(ef), ef);
  const bool l2 = metric_ == Metric::kL2, i8 = sq8_mode_ == Sq8QueryMode::kInt8;
  if (hnsw_detail::WalkCodesAvx512Serves(*sq8k_, pq.mode)) {
    hnsw_detail::WalkCodesAvx512(*this, pq, ep, ep_dist, top, exclude, pool, visited, st);
  } else if (l2 && i8) {
    WalkCodes<true>(*this, pq, TableInt8Dot{sq8k_}, ep, ep_dist, top, exclude, pool, visited, st);
  } else if (l2) {
    WalkCodes<true>(*this, pq, TableFloatDot{sq8k_}, ep, ep_dist, top, exclude, pool, visited, st);
  } else if (i8) {
    WalkCodes<false>(*this, pq, TableInt8Dot{sq8k_}, ep, ep_dist, top, exclude, pool, visited, st);
  } else {
    WalkCodes<false>(*this, pq, TableFloatDot{sq8k_}, ep, ep_dist, top, exclude, pool, visited, st);
  }

  // Rerank: the best r of the ef-list, scored with full vectors, all of their
  // lines requested before the first is scored.
  const size_t r = std::min(pool.size(), std::max(k, rerank == 0 ? kAutoRerankPerK * k : rerank));
  out.reserve(r);
  if (!refine_.empty()) {
    // Refined codes in memory: no full vector is touched.
    const uint8_t* rf = refine_.data();
    for (size_t i = 0; i < r; ++i) {
      PrefetchLines(reinterpret_cast<const char*>(rf + size_t(pool.id(i)) * refine_bytes_), refine_bytes_);
    }
    // Without decoding: with qs = q * scale (the prepared query), a refined code's
    //   q . x~ = bias + qs . code + (qs . r - 7 sum(qs)) / 14,
    // two float-by-byte dot products once the nibbles are spread to bytes; for L2,
    // |q - x~|^2 = |q|^2 - 2 q . x~ + |x~|^2 with |x~|^2 kept per node.
    float sum_qs = 0;
    for (size_t d = 0; d < dim_; ++d) sum_qs += pq.qs[d];
    if (scratch.refinement.size() < dim_ + 1) scratch.refinement.resize(dim_ + 1);
    uint8_t* nib = scratch.refinement.data();
    for (size_t i = 0; i < r; ++i) {
      const uint32_t id = pool.id(i);
      const uint8_t* packed = rf + size_t(id) * refine_bytes_;
      for (size_t j = 0; j < refine_bytes_; ++j) nib[j] = packed[j] & 15u;
      for (size_t j = 0; j < refine_bytes_; ++j) nib[refine_bytes_ + j] = packed[j] >> 4;
      const float ip = pq.bias + sq8k_->dot_f32_u8(pq.qs.data(), Sq8Code(id), dim_) +
                       (sq8k_->dot_f32_u8(pq.qs.data(), nib, dim_) - 7.0f * sum_qs) * (1.0f / 14.0f);
      out.push_back({metric_ == Metric::kL2 ? pq.q_norm2 - 2.0f * ip + refine_norm2_[id] : -ip, id});
    }
  } else if (full_file_) {
    // Read, not mapped: the vectors pass through the page cache but never become
    // pages of this process. All r reads go to the kernel as one batch (one
    // io_uring submission; reads of cached pages complete inside it), which costs
    // less than r system calls; see docs/BENCHMARKS.md, section 10.
    STRATA_RETURN_IF_ERROR(ReadFullVectors(pool, r, scratch));
    const float* vecs = scratch.full_read.data();
    for (size_t i = 0; i < r; ++i) out.push_back({Dist(q, vecs + i * dim_), pool.id(i)});
  } else {
    for (size_t i = 0; i < r; ++i) {
      PrefetchLines(reinterpret_cast<const char*>(FullVec(pool.id(i))), dim_ * sizeof(float));
    }
    for (size_t i = 0; i < r; ++i) {
      const uint32_t id = pool.id(i);
      out.push_back({Dist(q, FullVec(id)), id});
    }
  }
  if (st) st->distances += r;
  const size_t m = std::min(k, out.size());
  std::partial_sort(out.begin(), out.begin() + m, out.end());
  out.resize(m);
  return Status::Ok();
}

}  // namespace strata::index
