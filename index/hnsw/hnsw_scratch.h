#pragma once
// Internal to index/hnsw: the candidate types of HNSW searches and inserts, and
// HnswScratch, the typed scratch they keep in the caller's SearchContext (grown on
// demand, reused, so the hot path does not allocate).
//
// Thread-compatible: a scratch belongs to one thread at a time, like the
// SearchContext that holds it; readers never share one.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "index/codes/sq8.h"
#include "index/index.h"
#include "storage/block_io.h"

namespace strata::index::hnsw_detail {

struct Candidate {
  float dist;
  uint32_t id;
  bool operator<(const Candidate& o) const { return dist < o.dist || (dist == o.dist && id < o.id); }
};
struct FartherFirst {  // max-heap on distance
  bool operator()(const Candidate& a, const Candidate& b) const { return a < b; }
};
struct CloserFirst {  // min-heap on distance
  bool operator()(const Candidate& a, const Candidate& b) const { return b < a; }
};

// Sorted candidate pool of fixed capacity (the ef-list of the paper): entries
// ascending by distance, each flagged once expanded; `cur_` is the first
// unexpanded entry. One structure replaces the paper's two heaps and keeps the
// hot loop in a contiguous array. It borrows its storage (HnswScratch::Pool).
class CandidatePool {
 public:
  void Reset(Candidate* storage, size_t capacity) {
    data_ = storage;
    capacity_ = capacity;
    size_ = 0;
    cur_ = 0;
  }
  size_t size() const { return size_; }
  bool full() const { return size_ == capacity_; }
  float worst() const { return data_[size_ - 1].dist; }
  // Inserts unless the pool is full and `dist` is no better than the worst.
  void Insert(uint32_t id, float dist) {
    if (size_ == capacity_ && !(dist < data_[size_ - 1].dist)) return;
    size_t lo = 0, hi = size_;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (data_[mid].dist <= dist) lo = mid + 1; else hi = mid;
    }
    // Shift the tail right by one (an inline loop: the moves are short and a
    // libc call per insert showed up in profiles).
    for (size_t i = (size_ == capacity_ ? size_ - 1 : size_); i > lo; --i) data_[i] = data_[i - 1];
    data_[lo] = Candidate{dist, id};
    if (size_ < capacity_) ++size_;
    if (lo < cur_) cur_ = lo;
  }
  bool HasNext() const { return cur_ < size_; }
  // The candidate PopNext would return now (HasNext() must hold).
  uint32_t PeekNext() const { return data_[cur_].id; }
  // Returns the closest unexpanded candidate and marks it expanded.
  uint32_t PopNext() {
    uint32_t id = data_[cur_].id;
    data_[cur_].id = id | kExpanded;
    while (cur_ < size_ && (data_[cur_].id & kExpanded)) ++cur_;
    return id;
  }
  uint32_t id(size_t i) const { return data_[i].id & ~kExpanded; }
  float dist(size_t i) const { return data_[i].dist; }

  static constexpr uint32_t kExpanded = 1u << 31;

 private:
  Candidate* data_ = nullptr;
  size_t capacity_ = 0, size_ = 0, cur_ = 0;
};

// What HNSW keeps in a SearchContext (ctx.scratch<HnswScratch>()); Consolidate's
// worker threads each make their own.
struct HnswScratch final : IndexScratch {
  // Storage of at least n pool entries (the ef-list of a layer search).
  Candidate* Pool(size_t n) {
    if (pool.size() < n) pool.resize(n);
    return pool.data();
  }
  // A decode buffer of at least dim floats (half-precision vectors, decoded for
  // node-to-node distances).
  static float* Sized(std::vector<float>& buf, size_t dim) {
    if (buf.size() < dim) buf.resize(dim);
    return buf.data();
  }

  std::vector<Candidate> pool;
  // Filtered layer-0 search: the nodes still to expand (min-heap) and the allowed
  // results so far (max-heap).
  std::vector<Candidate> frontier;
  std::vector<Candidate> results;
  std::vector<float> beam;  // filtered search with max_distance: the ef nearest visited
  // Decoded vectors: of the candidate SelectNeighbors weighs, and of the node whose
  // list Connect or Consolidate rebuilds (which then calls SelectNeighbors).
  std::vector<float> candidate_vec;
  std::vector<float> base_vec;
  // Searches on codes: the prepared query and the candidates being reranked.
  Sq8Query sq8_query;
  std::vector<uint32_t> rerank_ids;  // codes: the candidates a rerank re-scores
  std::vector<Candidate> rerank;
  // Reranks with read_full_vectors: the candidates' vectors (r x dim floats), their
  // read requests, and this searcher's I/O queue (created on the first such rerank;
  // one io_uring per search context, never per thread behind the caller's back).
  std::vector<float> full_read;
  // Reranks on refined codes: a candidate's refinement, one byte a dimension.
  std::vector<uint8_t> refinement;
  std::vector<storage::ReadRequest> full_requests;
  std::unique_ptr<storage::IoQueue> io;
};

}  // namespace strata::index::hnsw_detail
