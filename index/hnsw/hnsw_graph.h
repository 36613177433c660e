#pragma once
// Internal to index/hnsw: HnswIndex::Impl, the graph store (node blocks, links,
// labels, slot allocation) and the declarations of the algorithm around it, which
// is defined by topic:
//   hnsw_graph.cc   the store: layout, growth, statistics, Get
//   hnsw_search.cc  greedy descent and layer searches; Search, SearchSubset
//   hnsw_insert.cc  inserts, neighbour selection, deletes and graph repair
//   hnsw_file.cc    Save, and Load with its structural checks (docs/formats/hnsw.md)
//   hnsw_codes.cc   compressed codes: training, encoding, layer-0 search on codes
//                   and the rerank with full vectors
//
// Thread safety is HnswIndex's (hnsw_index.h): node lists are read with acquire
// loads while writers store them under the node's striped lock (LockOf); labels
// are guarded by label_mu_, the free list and chunk growth by grow_mu_, and the
// structure as a whole by structure_mu_ (shared for inserts, removes and
// searches, exclusive for Consolidate and Save).

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "core/vector_set.h"
#include "index/codes/sq8.h"
#include "index/distance/distance.h"
#include "index/hnsw/hnsw_format.h"
#include "index/hnsw/hnsw_index.h"
#include "index/hnsw/hnsw_scratch.h"

namespace strata::index {

namespace hnsw_detail {

inline constexpr uint32_t kChunkShift = 16;
inline constexpr uint32_t kChunkNodes = 1u << kChunkShift;
inline constexpr uint32_t kMaxChunks = 1u << 16;  // 2^32 nodes in all
inline constexpr uint32_t kLockStripes = 1u << 14;
inline constexpr int kMaxLevel = 31;

using hnsw_format::kCountMask;
using hnsw_format::kDeletedBit;
using hnsw_format::kFreeBit;
using hnsw_format::kLevelMask;
using hnsw_format::kLevelShift;

// Link words are read while other threads may rewrite them; atomic_ref keeps
// that well-defined (and visible to ThreadSanitizer) at the cost of a plain
// load/store on x86. The const_cast is for read-only mapped files: a load never writes.
inline uint32_t LoadAcquire(const uint32_t& w) {
  return std::atomic_ref<uint32_t>(const_cast<uint32_t&>(w)).load(std::memory_order_acquire);
}
inline void StoreRelease(uint32_t& w, uint32_t v) {
  std::atomic_ref<uint32_t>(w).store(v, std::memory_order_release);
}

}  // namespace hnsw_detail

class HnswIndex::Impl {
 public:
  using Candidate = hnsw_detail::Candidate;
  using CandidatePool = hnsw_detail::CandidatePool;
  using HnswScratch = hnsw_detail::HnswScratch;

  Impl(size_t dim, Metric metric, const HnswOptions& o);
  ~Impl();

  // ---- node accessors (hot: kept inline) ----------------------------------
  char* Block(uint32_t i) const {
    return chunks_[i >> hnsw_detail::kChunkShift].load(std::memory_order_acquire) +
           size_t(i & (hnsw_detail::kChunkNodes - 1)) * block_bytes_;
  }
  uint32_t* Links0(uint32_t i) const { return reinterpret_cast<uint32_t*>(Block(i)); }
  // Node i's stored vector: float32 or half values (see HnswOptions::encoding), or
  // with codes (sq8_) its SQ8 code, the full float32 vector living in full_chunks_.
  const char* Code(uint32_t i) const { return Block(i) + vec_offset_; }
  const float* FullVec(uint32_t i) const {
    return full_chunks_[i >> hnsw_detail::kChunkShift].load(std::memory_order_acquire) +
           size_t(i & (hnsw_detail::kChunkNodes - 1)) * dim_;
  }
  // Node i's float32 vector in place (never with full_absent_: see VecAsFloat).
  const float* VecF32(uint32_t i) const {
    return sq8_ ? FullVec(i) : reinterpret_cast<const float*>(Code(i));
  }
  // Where node i's float vector (or half vector, or the code that stands for it) starts,
  // for prefetching.
  const char* VecPtr(uint32_t i) const {
    return sq8_ && !full_absent_ ? reinterpret_cast<const char*>(FullVec(i)) : Code(i);
  }
  const uint8_t* Sq8Code(uint32_t i) const { return reinterpret_cast<const uint8_t*>(Code(i)); }
  // |x^|^2 of node i's code (the L2 term of Sq8Distance).
  float CodeNorm2(uint32_t i) const { return *reinterpret_cast<const float*>(Block(i) + norm_offset_); }
  // Inserts, removes and consolidation need writable node blocks and full vectors.
  bool ReadOnly() const { return mapped_ || full_mapped_; }
  const uint16_t* VecF16(uint32_t i) const { return reinterpret_cast<const uint16_t*>(Code(i)); }
  // Node i's vector as float32: in place, or decoded into `scratch` (dim floats) -- from
  // half values, or from an exact code where the file kept no full vectors (full_absent_).
  const float* VecAsFloat(uint32_t i, float* scratch) const {
    if (full_absent_) {
      sq8_enc_.Decode(Sq8Code(i), scratch);
      return scratch;
    }
    if (!f16_) return VecF32(i);
    from_f16_(VecF16(i), scratch, dim_);
    return scratch;
  }
  VectorId& Label(uint32_t i) const {
    return *reinterpret_cast<VectorId*>(Block(i) + label_offset_);
  }
  uint32_t*& UpperPtr(uint32_t i) const {
    return upper_chunks_[i >> hnsw_detail::kChunkShift].load(
        std::memory_order_acquire)[i & (hnsw_detail::kChunkNodes - 1)];
  }
  uint32_t Header(uint32_t i) const { return hnsw_detail::LoadAcquire(Links0(i)[0]); }
  static int LevelOf(uint32_t header) {
    return int((header >> hnsw_detail::kLevelShift) & hnsw_detail::kLevelMask);
  }
  // Link list of node i at `level`: [count, ids...]. Level 0 holds 2M slots, others M.
  uint32_t* LinksAt(uint32_t i, int level) const {
    if (level == 0) return Links0(i);
    return UpperPtr(i) + size_t(level - 1) * (m_ + 1);
  }
  uint32_t CountAt(const uint32_t* list, int level) const {
    uint32_t w = hnsw_detail::LoadAcquire(list[0]);
    return level == 0 ? (w & hnsw_detail::kCountMask) : w;
  }
  uint32_t MaxLinks(int level) const { return level == 0 ? m0_ : m_; }
  std::mutex& LockOf(uint32_t i) const { return locks_[i & (hnsw_detail::kLockStripes - 1)]; }

  float Dist(const float* a, const float* b) const {
    return metric_ == Metric::kL2 ? l2sq_(a, b, dim_) : -ip_(a, b, dim_);
  }
  // Distance from a float32 vector to node i's stored vector (not with full_absent_:
  // decode with VecAsFloat).
  float DistTo(const float* q, uint32_t i) const {
    if (f16_) return metric_ == Metric::kL2 ? l2sq_f16_(q, VecF16(i), dim_) : -ip_f16_(q, VecF16(i), dim_);
    return Dist(q, VecF32(i));
  }

  // Reads node i's list at `level` into out (at most max entries); returns count.
  uint32_t CopyLinks(uint32_t i, int level, uint32_t* out) const {
    const uint32_t* list = LinksAt(i, level);
    uint32_t c = std::min(CountAt(list, level), MaxLinks(level));
    for (uint32_t j = 0; j < c; ++j) out[j] = hnsw_detail::LoadAcquire(list[1 + j]);
    return c;
  }
  // Replaces node i's list at `level` (caller holds LockOf(i)).
  void WriteLinks(uint32_t i, int level, const uint32_t* ids, uint32_t count) {
    uint32_t* list = LinksAt(i, level);
    for (uint32_t j = 0; j < count; ++j) hnsw_detail::StoreRelease(list[1 + j], ids[j]);
    if (level == 0) {
      uint32_t w = list[0];
      hnsw_detail::StoreRelease(list[0], (w & ~hnsw_detail::kCountMask) | count);
    } else {
      hnsw_detail::StoreRelease(list[0], count);
    }
  }

  // Entry point packed as (level << 32 | node); node == kInvalidNode when empty.
  static uint64_t PackEntry(uint32_t node, int level) { return uint64_t(level) << 32 | node; }

  // Node of `id` (caller holds label_mu_).
  std::optional<uint32_t> NodeOf(VectorId id) const {
    if (dense_) {
      if (id < dense_node_of_.size()) return dense_node_of_[id];
      return std::nullopt;
    }
    auto it = node_of_.find(id);
    if (it == node_of_.end()) return std::nullopt;
    return it->second;
  }

  // ---- storage growth (hnsw_graph.cc) ---------------------------------------
  // A free slot, or a new one at the end (its chunk allocated when needed).
  Result<uint32_t> AllocateSlot();
  // Chunks for node slots [0, n).
  Status Reserve(size_t n);

  // ---- search primitives (hnsw_search.cc) -----------------------------------
  // Greedy walk on one upper layer: moves to the closest neighbour until none is closer.
  void GreedyStep(const float* q, int level, uint32_t& cur, float& cur_dist,
                  HnswSearchStats* st) const;
  // Best-first search on one layer with the sorted pool; all visited nodes are
  // candidates (tombstones included: they still route). Used by inserts and by
  // unfiltered searches when no tombstones exist.
  void SearchLayer(const float* q, uint32_t ep, float ep_dist, int level, CandidatePool& pool,
                   VisitedSet& visited, HnswSearchStats* st) const;
  // Layer-0 search where only `allowed` nodes become results but every node
  // routes (hnswlib-style two heaps): keeps going until ef allowed results are
  // held and no candidate can improve them -- or, with a finite `max_distance`
  // (SearchParams::max_distance), once it has walked as far as an unfiltered search
  // would and no candidate is closer than max_distance. Results (only nodes closer
  // than max_distance) land in scratch.results, nearest first. `score(node)` is the
  // query's distance to a node (its vector, or its code), `addr(node)` where that
  // node's scored bytes start (prefetched).
  template <typename Allowed, typename Score, typename Addr>
  void SearchLayer0Filtered(uint32_t ep, float ep_dist, size_t ef, float max_distance,
                            const Allowed& allowed, const Score& score, const Addr& addr,
                            VisitedSet& visited, HnswScratch& scratch, HnswSearchStats* st) const;
  // Descends from the entry point to `target_level` + 1.
  void Descend(const float* q, int target_level, uint32_t& cur, float& cur_dist, int& top,
               HnswSearchStats* st) const;

  // ---- codes (hnsw_codes.cc) ------------------------------------------------
  // Trains the SQ8 encoder on up to kCodesTrainRows of `rows` (as stored: normalized
  // for cosine) unless it is trained already. Thread-safe (train_mu_).
  Status TrainCodes(const VectorSet& rows);
  bool codes_trained() const { return codes_trained_.load(std::memory_order_acquire); }
  // Writes node's code, its norm and its full vector (caller owns the fresh node).
  void EncodeNode(uint32_t node, const float* v);
  // Search of an index with codes (no filter, no tombstones): descent and layer 0
  // on codes, then the best `rerank` of the ef-list re-scored with full vectors
  // (or with the refined codes, HnswLoadOptions::refined_codes); `codes_only`: no
  // rerank, the best k with their codes' distances (SearchParams::codes_only).
  // Returns nearest first (at most k), labels not yet mapped: (distance, node).
  // IOError when a full vector cannot be read (read_full_vectors).
  Status SearchCodes(const float* q, size_t k, size_t ef, size_t rerank, std::optional<uint32_t> exclude,
                     VisitedSet& visited, HnswScratch& scratch, HnswSearchStats* st,
                     bool codes_only = false) const;
  // A filtered search (params.filter, or tombstones) on codes: descent and the filtered
  // layer-0 walk on codes, then RerankCodes of the best allowed (or, codes_only, their
  // code distances); results closer than params.max_distance, in scratch.rerank.
  Status SearchCodesFiltered(const float* q, const SearchParams& params, size_t k, size_t ef, size_t rerank,
                             std::optional<uint32_t> exclude, VisitedSet& visited, HnswScratch& scratch,
                             HnswSearchStats* st) const;
  // Candidates a rerank re-scores when the search does not say: this many per result
  // (GloVe-100: no recall lost against reranking the whole ef-list; hnsw_codes.cc).
  static constexpr size_t kAutoRerankPerK = 2;
  // Re-scores the nodes `ids` (nearest by code first) for `q` -- decoded exact codes,
  // refined codes, or full vectors read or mapped -- and leaves the best k in
  // scratch.rerank, nearest first. IOError when a full vector cannot be read.
  Status RerankCodes(const float* q, size_t k, std::span<const uint32_t> ids, HnswScratch& scratch,
                     HnswSearchStats* st) const;
  // The query's distance to node i's code (SQ8 estimate).
  float CodeDist(const Sq8Query& pq, uint32_t i) const {
    return Sq8Distance(*sq8k_, pq, Sq8Code(i), CodeNorm2(i), dim_);
  }
  // Greedy descent on codes from the entry point to layer 1's best node.
  void DescendCodes(const Sq8Query& pq, uint32_t& cur, float& cur_dist, HnswSearchStats* st) const;
  // Reads the full vectors of `ids` from full_file_ into scratch.full_read (row i =
  // ids[i]), as one batch on the scratch's IoQueue.
  Status ReadFullVectors(std::span<const uint32_t> ids, HnswScratch& scratch) const;

  // ---- inserts (hnsw_insert.cc) ----------------------------------------------
  int RandomLevel();
  // The paper's Algorithm 4: `cands` sorted ascending by distance to the base
  // node; returns up to `m` in `out` (keep_pruned: the options', or as given).
  void SelectNeighbors(std::vector<Candidate>& cands, uint32_t m, std::vector<Candidate>& out,
                       HnswScratch& scratch) const;
  void SelectNeighbors(std::vector<Candidate>& cands, uint32_t m, std::vector<Candidate>& out,
                       bool keep_pruned, HnswScratch& scratch) const;
  // Adds `src` to the list of `dst` at `level`, shrinking with the heuristic when full.
  void Connect(uint32_t dst, uint32_t src, int level, HnswScratch& scratch);
  // Stores `v` under `label` in a new node and links it in; returns the node.
  Result<uint32_t> Insert(VectorId label, const float* v, SearchContext& ctx);

  // ---- members -------------------------------------------------------------
  size_t dim_;
  Metric metric_;
  HnswOptions opt_;
  uint32_t m_, m0_;
  double ml_;
  size_t links_bytes_ = 0, vec_offset_ = 0, vec_bytes_ = 0, label_offset_ = 0;
  bool f16_ = false;
  // Codes: node blocks hold [links][SQ8 code][|x^|^2][label]; full vectors apart.
  bool sq8_ = false;
  size_t norm_offset_ = 0;
  Sq8Encoder sq8_enc_;                       // immutable once codes_trained_
  std::atomic<bool> codes_trained_{false};
  // Every node ever encoded decodes from its code to exactly its vector (EncodeNode clears it
  // for good at the first that does not): integer data, Sq8Encoder's steps of 1. Searches on
  // codes then need no full vector for their rerank. Saved as CodesMeta::flags bit 0.
  std::atomic<bool> codes_exact_{true};
  std::mutex train_mu_;
  const Sq8Kernels* sq8k_ = nullptr;
  // Float queries against byte codes below kInt8QueryMinDim dimensions (GloVe-100:
  // 9-13% more QPS than the int8 VNNI query at the same recall), int8 from there
  // where the CPU has VNNI (Fashion-MNIST, d = 784: 25% more); docs/BENCHMARKS.md,
  // section 10. Between 100 and 784 the crossover is not measured.
  static constexpr size_t kInt8QueryMinDim = 256;
  Sq8QueryMode sq8_mode_ = Sq8QueryMode::kFloat;
  std::unique_ptr<std::atomic<float*>[]> full_chunks_;  // per chunk: kChunkNodes x dim floats
  std::vector<std::unique_ptr<char[], AlignedFree>> owned_full_;  // guarded by grow_mu_
  bool full_mapped_ = false;  // full vectors read from the mapped file (read-only index)
  // A read-only index loaded from a file that kept no full vectors (exact codes:
  // CodesMeta::flags kFullOmitted): full_chunks_ stay empty, and what needs a node's
  // vector decodes its code (VecAsFloat; searches rerank on decoded codes anyway). A
  // writable load decodes every code into full_chunks_ instead.
  bool full_absent_ = false;
  // HnswLoadOptions::read_full_vectors: reranks read from this file (buffered), at
  // full_file_offset_ (the FULL section), through the searcher's IoQueue.
  std::shared_ptr<storage::BlockFile> full_file_;
  uint64_t full_file_offset_ = 0;
  storage::IoBackend full_io_ = storage::IoBackend::kAuto;
  // HnswLoadOptions::refined_codes: each node's 4-bit refinement of its code
  // (refine_bytes_ a node, node-major; immutable after Load). Reranks score these
  // instead of the full vectors.
  std::vector<uint8_t> refine_;
  size_t refine_bytes_ = 0;
  std::vector<float> refine_norm2_;  // L2 only: |x~|^2 of each node's refined code
  size_t block_bytes_ = 0;
  size_t prefetch_bytes_ = 0;  // how much of a vector SearchLayer prefetches
  float (*l2sq_)(const float*, const float*, size_t) = nullptr;
  float (*l2sq_f16_)(const float*, const uint16_t*, size_t) = nullptr;
  float (*ip_f16_)(const float*, const uint16_t*, size_t) = nullptr;
  void (*to_f16_)(const float*, uint16_t*, size_t) = nullptr;
  void (*from_f16_)(const uint16_t*, float*, size_t) = nullptr;
  float (*ip_)(const float*, const float*, size_t) = nullptr;

  std::unique_ptr<std::atomic<char*>[]> chunks_;
  std::unique_ptr<std::atomic<uint32_t**>[]> upper_chunks_;  // per chunk: node -> upper links
  std::vector<std::unique_ptr<char[], AlignedFree>> owned_chunks_;  // guarded by grow_mu_
  std::unique_ptr<std::mutex[]> locks_;
  std::atomic<uint32_t> num_nodes_{0};
  // Node slots backed by chunks. Visited sets are sized to it, not to num_nodes_:
  // a concurrent insert may link a node created after a search started.
  std::atomic<size_t> capacity_{0};
  std::atomic<uint64_t> entry_{PackEntry(kInvalidNode, 0)};
  std::atomic<uint64_t> level_counter_{0};
  mutable std::mutex grow_mu_;
  std::vector<uint32_t> free_;  // guarded by grow_mu_
  std::mutex entry_mu_;

  // Labels: id -> node, guarded by label_mu_.
  mutable std::mutex label_mu_;
  std::unordered_map<VectorId, uint32_t> node_of_;
  // A mapped (read-only) index whose ids are a permutation of 0..n-1 with no
  // tombstone or free slot -- SPANN's heads -- keeps a dense array instead of the
  // hash map (4 bytes per node instead of about 40).
  bool dense_ = false;
  std::vector<uint32_t> dense_node_of_;
  std::atomic<size_t> num_deleted_{0};

  // Inserts, removes and searches hold it shared; Consolidate, Save hold it exclusively.
  mutable std::shared_mutex structure_mu_;

  // Set when nodes live in a read-only mapped file.
  bool mapped_ = false;
  std::shared_ptr<void> mapping_;

 private:
  Status EnsureChunk(uint32_t c);  // caller holds grow_mu_
  template <bool kL2, bool kF16>
  void SearchLayerT(const float* q, uint32_t ep, float ep_dist, int level, CandidatePool& pool,
                    VisitedSet& visited, HnswSearchStats* st) const;
};

}  // namespace strata::index
