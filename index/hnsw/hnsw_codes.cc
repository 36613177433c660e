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

#include "index/hnsw/hnsw_graph.h"

namespace strata::index {

using hnsw_detail::Candidate;
using hnsw_detail::CandidatePool;
using hnsw_detail::HnswScratch;

namespace {
// Rows the encoder is trained on: an evenly spaced sample of the first batch.
// Per-dimension min/max settle long before this (GloVe-100: the same range from
// 10,000 rows up to all 331,479 within 1%).
constexpr size_t kCodesTrainRows = 100000;

// Rerank depth when neither the search nor the index sets one (Impl::kAutoRerankPerK):
// 2k candidates. On GloVe-100 (all 10,000 queries, k = 10) reranking 15, 20, 40 or the
// whole ef-list gave the same recall@10 at ef 64, 128 and 768 (12: -0.0007 at ef 128);
// see docs/BENCHMARKS.md, section 10.

inline void PrefetchLines(const char* p, size_t bytes) {
  const uintptr_t first = reinterpret_cast<uintptr_t>(p) & ~uintptr_t(63);
  const uintptr_t last = reinterpret_cast<uintptr_t>(p) + bytes;
  for (uintptr_t a = first; a < last; a += 64) _mm_prefetch(reinterpret_cast<const char*>(a), _MM_HINT_T0);
}
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
  if (!sq8_enc_.Reproduces(v, code)) codes_exact_.store(false, std::memory_order_relaxed);
  const float norm2 = sq8_enc_.DecodedNorm2(code);
  std::memcpy(Block(node) + norm_offset_, &norm2, sizeof norm2);
}

namespace {

// The walk of one layer on codes: SearchLayerT of hnsw_search.cc with the
// distance to a code. Kept apart so the float path stays as it is measured.
template <bool kL2, bool kInt8>
struct CodeScorer {
  const Sq8Kernels& k;
  const Sq8Query& q;
  size_t dim;
  float operator()(const uint8_t* code, float norm2) const {
    const float dot = kInt8 ? float(k.dot_s8_u8(q.qi.data(), code, dim)) * q.qi_step
                            : k.dot_f32_u8(q.qs.data(), code, dim);
    const float ip = q.bias + dot;
    if constexpr (kL2) return q.q_norm2 - 2.0f * ip + norm2;
    else return -ip;
  }
};

// Upper layers, greedy: from `cur` at layer `top` down to layer 1's best node.
template <typename Dist>
void GreedyUpperLayers(const HnswIndex::Impl& im, const Dist& dist, int top, uint32_t& cur, float& cur_dist,
                       uint64_t& dists, uint64_t& hops) {
  uint32_t buf[512];
  for (int l = top; l > 0; --l) {
    bool changed = true;
    while (changed) {
      changed = false;
      const uint32_t c = im.CopyLinks(cur, l, buf);
      for (uint32_t j = 0; j < c; ++j) {
        const float d = dist(buf[j]);
        ++dists;
        if (d < cur_dist) {
          cur_dist = d;
          cur = buf[j];
          changed = true;
        }
      }
      ++hops;
    }
  }
}

template <bool kL2, bool kInt8>
void WalkCodes(const HnswIndex::Impl& im, const Sq8Query& pq, uint32_t cur, float cur_dist,
               int top, std::optional<uint32_t> exclude, CandidatePool& pool, VisitedSet& visited,
               HnswSearchStats* st) {
  const CodeScorer<kL2, kInt8> score{*im.sq8k_, pq, im.dim_};
  auto dist = [&](uint32_t i) { return score(im.Sq8Code(i), kL2 ? im.CodeNorm2(i) : 0.0f); };
  uint64_t dists = 0, hops = 0;
  uint32_t buf[512];
  GreedyUpperLayers(im, dist, top, cur, cur_dist, dists, hops);
  if (exclude) {
    visited.Insert(*exclude);  // never expanded nor returned
    if (cur == *exclude) {     // the descent ended on it: start from one of its neighbours
      const uint32_t c = im.CopyLinks(cur, 0, buf);
      if (c == 0) return;
      cur = buf[0];
      cur_dist = dist(cur);
      ++dists;
    }
  }
  // Layer 0: best-first over the sorted pool, every unvisited neighbour's code
  // prefetched before any is scored (as SearchLayerT does with vectors).
  visited.Insert(cur);
  pool.Insert(cur, cur_dist);
  const size_t pf = im.prefetch_bytes_;
  while (pool.HasNext()) {
    const uint32_t u = pool.PopNext();
    ++hops;
    // The next node to expand, most likely: its link list loads while this one's
    // neighbours are scored.
    if (pool.HasNext()) {
      PrefetchLines(reinterpret_cast<const char*>(im.Links0(pool.PeekNext())), im.links_bytes_);
    }
    const uint32_t c = im.CopyLinks(u, 0, buf);
    uint32_t n = 0;
    for (uint32_t j = 0; j < c; ++j) {
      if (visited.Insert(buf[j])) buf[n++] = buf[j];
    }
    for (uint32_t j = 0; j < n; ++j) PrefetchLines(im.Code(buf[j]), pf);
    // Speculation: the node most likely expanded next is the pool's best
    // unexpanded one as it stands now (u's neighbours may still displace it). Its
    // unvisited neighbours' codes start loading now, while u's are scored, so the
    // next hop finds them in cache instead of waiting a memory latency for its
    // first one. A wrong guess costs only bandwidth (GloVe-100, refined codes,
    // ef 192: +18% QPS, median of five alternations; docs/BENCHMARKS.md, section 10).
    if (pool.HasNext()) {
      const uint32_t* lv = im.Links0(pool.PeekNext());
      const uint32_t cv = std::min(im.CountAt(lv, 0), im.m0_);
      for (uint32_t j = 0; j < cv; ++j) {
        const uint32_t w = hnsw_detail::LoadAcquire(lv[1 + j]);
        if (!visited.Test(w)) PrefetchLines(im.Code(w), pf);
      }
    }
    for (uint32_t j = 0; j < n; ++j) {
      const float d = dist(buf[j]);
      ++dists;
      if (!pool.full() || d < pool.worst()) {
        pool.Insert(buf[j], d);
        _mm_prefetch(reinterpret_cast<const char*>(im.Links0(buf[j])), _MM_HINT_T0);
      }
    }
  }
  if (st) {
    st->distances += dists;
    st->hops += hops;
  }
}

}  // namespace

Status HnswIndex::Impl::ReadFullVectors(std::span<const uint32_t> ids, HnswScratch& scratch) const {
  const size_t r = ids.size();
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
    req.offset = full_file_offset_ + uint64_t(ids[i]) * bytes;
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
    return IOError("reading the full vector of node {} for a rerank: {}", ids[failed_at],
                   failed.ToString());
  }
  return Status::Ok();
}

void HnswIndex::Impl::DescendCodes(const Sq8Query& pq, uint32_t& cur, float& cur_dist,
                                   HnswSearchStats* st) const {
  const uint64_t e = entry_.load(std::memory_order_acquire);
  cur = uint32_t(e);
  cur_dist = CodeDist(pq, cur);
  uint64_t dists = 1, hops = 0;
  GreedyUpperLayers(*this, [&](uint32_t i) { return CodeDist(pq, i); }, int(e >> 32), cur, cur_dist, dists, hops);
  if (st) {
    st->distances += dists;
    st->hops += hops;
  }
}

Status HnswIndex::Impl::SearchCodes(const float* q, size_t k, size_t ef, size_t rerank,
                                    std::optional<uint32_t> exclude, VisitedSet& visited,
                                    HnswScratch& scratch, HnswSearchStats* st, bool codes_only) const {
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
  if (l2 && i8) WalkCodes<true, true>(*this, pq, ep, ep_dist, top, exclude, pool, visited, st);
  else if (l2) WalkCodes<true, false>(*this, pq, ep, ep_dist, top, exclude, pool, visited, st);
  else if (i8) WalkCodes<false, true>(*this, pq, ep, ep_dist, top, exclude, pool, visited, st);
  else WalkCodes<false, false>(*this, pq, ep, ep_dist, top, exclude, pool, visited, st);

  if (codes_only) {  // the walk's own distances, the pool already in order
    const size_t m = std::min(k, pool.size());
    out.reserve(m);
    for (size_t i = 0; i < m; ++i) out.push_back({pool.dist(i), pool.id(i)});
    return Status::Ok();
  }
  // Rerank: the best r of the ef-list.
  const size_t r = std::min(pool.size(), std::max(k, rerank == 0 ? kAutoRerankPerK * k : rerank));
  std::vector<uint32_t>& ids = scratch.rerank_ids;
  ids.resize(r);
  for (size_t i = 0; i < r; ++i) ids[i] = pool.id(i);
  return RerankCodes(q, k, ids, scratch, st);
}

Status HnswIndex::Impl::RerankCodes(const float* q, size_t k, std::span<const uint32_t> ids,
                                    HnswScratch& scratch, HnswSearchStats* st) const {
  // All of the candidates' lines are requested before the first is scored.
  std::vector<Candidate>& out = scratch.rerank;
  out.clear();
  const Sq8Query& pq = scratch.sq8_query;  // prepared by the walk
  const size_t r = ids.size();
  out.reserve(r);
  if (codes_exact_.load(std::memory_order_relaxed)) {
    // Every code is its vector: decode the candidates (in the node blocks the walk just
    // read) instead of touching a full vector, for distances free of the codes' rounding.
    float* v = HnswScratch::Sized(scratch.full_read, dim_);
    for (size_t i = 0; i < r; ++i) {
      const uint32_t id = ids[i];
      sq8_enc_.Decode(Sq8Code(id), v);
      out.push_back({Dist(q, v), id});
    }
  } else if (!refine_.empty()) {
    // Refined codes in memory: no full vector is touched.
    const uint8_t* rf = refine_.data();
    for (size_t i = 0; i < r; ++i) {
      PrefetchLines(reinterpret_cast<const char*>(rf + size_t(ids[i]) * refine_bytes_), refine_bytes_);
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
      const uint32_t id = ids[i];
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
    STRATA_RETURN_IF_ERROR(ReadFullVectors(ids, scratch));
    const float* vecs = scratch.full_read.data();
    for (size_t i = 0; i < r; ++i) out.push_back({Dist(q, vecs + i * dim_), ids[i]});
  } else {
    for (size_t i = 0; i < r; ++i) {
      PrefetchLines(reinterpret_cast<const char*>(FullVec(ids[i])), dim_ * sizeof(float));
    }
    for (size_t i = 0; i < r; ++i) {
      const uint32_t id = ids[i];
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
