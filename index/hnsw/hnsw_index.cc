#include "index/hnsw/hnsw_index.h"

#include <omp.h>
#include <sys/mman.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>

#include "core/progress.h"
#include "core/topk.h"
#include "index/distance/distance.h"
#include "index/distance/half.h"
#include "index/hnsw/hnsw_format.h"
#include "storage/section_file.h"

namespace strata::index {

namespace {

constexpr uint32_t kChunkShift = 16;
constexpr uint32_t kChunkNodes = 1u << kChunkShift;
constexpr uint32_t kMaxChunks = 1u << 16;  // 2^32 nodes in all
constexpr uint32_t kLockStripes = 1u << 14;
constexpr int kMaxLevel = 31;
constexpr size_t kHugePage = size_t(2) << 20;

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

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

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
// hot loop in a contiguous array.
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

Candidate* CandidateStorage(SearchContext& ctx, int slot, size_t n) {
  auto& w = ctx.words(slot);
  if (w.size() < n) w.resize(n);
  return reinterpret_cast<Candidate*>(w.data());
}

// Per-thread scratch for inserts (Add calls outside a SearchContext).
SearchContext& ThreadContext() {
  thread_local SearchContext ctx;
  return ctx;
}

}  // namespace

// ---------------------------------------------------------------------------
class HnswIndex::Impl {
 public:
  Impl(size_t dim, Metric metric, const HnswOptions& o)
      : dim_(dim),
        metric_(metric),
        opt_(o),
        m_(o.M),
        m0_(2 * o.M),
        ml_(1.0 / std::log(double(std::max<uint32_t>(2, o.M)))),
        chunks_(new std::atomic<char*>[kMaxChunks]),
        upper_chunks_(new std::atomic<uint32_t**>[kMaxChunks]),
        locks_(new std::mutex[kLockStripes]) {
    for (uint32_t i = 0; i < kMaxChunks; ++i) {
      chunks_[i].store(nullptr, std::memory_order_relaxed);
      upper_chunks_[i].store(nullptr, std::memory_order_relaxed);
    }
    links_bytes_ = sizeof(uint32_t) * (1 + m0_);
    vec_offset_ = links_bytes_;
    f16_ = o.encoding == VectorEncoding::kFloat16;
    vec_bytes_ = dim_ * (f16_ ? sizeof(uint16_t) : sizeof(float));
    size_t label_off = (vec_offset_ + vec_bytes_ + 7) / 8 * 8;
    label_offset_ = label_off;
    block_bytes_ = (label_offset_ + sizeof(uint64_t) + 63) / 64 * 64;
    prefetch_bytes_ = std::min<size_t>(vec_bytes_, 512);
    const DistanceKernels& k = Kernels();
    l2sq_ = k.l2sq;
    ip_ = k.ip;
    l2sq_f16_ = k.l2sq_f16;
    ip_f16_ = k.ip_f16;
    to_f16_ = k.to_f16;
    from_f16_ = k.from_f16;
  }

  ~Impl() {
    // Upper-link arrays are owned by the nodes (unless they live in a mapped file).
    if (!mapped_) {
      const uint32_t n = num_nodes_.load();
      for (uint32_t i = 0; i < n; ++i) delete[] UpperPtr(i);
    }
    for (uint32_t c = 0; c < kMaxChunks; ++c) {
      uint32_t** u = upper_chunks_[c].load();
      if (!u) break;
      delete[] u;
    }
  }

  // ---- node accessors ------------------------------------------------------
  char* Block(uint32_t i) const {
    return chunks_[i >> kChunkShift].load(std::memory_order_acquire) +
           size_t(i & (kChunkNodes - 1)) * block_bytes_;
  }
  uint32_t* Links0(uint32_t i) const { return reinterpret_cast<uint32_t*>(Block(i)); }
  // Node i's stored vector: float32 or half values (see HnswOptions::encoding).
  const char* Code(uint32_t i) const { return Block(i) + vec_offset_; }
  const float* VecF32(uint32_t i) const { return reinterpret_cast<const float*>(Code(i)); }
  const uint16_t* VecF16(uint32_t i) const { return reinterpret_cast<const uint16_t*>(Code(i)); }
  // Node i's vector as float32: in place, or decoded into `scratch` (dim floats).
  const float* VecAsFloat(uint32_t i, float* scratch) const {
    if (!f16_) return VecF32(i);
    from_f16_(VecF16(i), scratch, dim_);
    return scratch;
  }
  // Per-thread decode buffers for node-to-node distances (inserts, repairs).
  float* Scratch(int slot) const {
    thread_local std::vector<float> buf[2];
    if (buf[slot].size() < dim_) buf[slot].resize(dim_);
    return buf[slot].data();
  }
  VectorId& Label(uint32_t i) const {
    return *reinterpret_cast<VectorId*>(Block(i) + label_offset_);
  }
  uint32_t*& UpperPtr(uint32_t i) const {
    return upper_chunks_[i >> kChunkShift].load(std::memory_order_acquire)[i & (kChunkNodes - 1)];
  }
  uint32_t Header(uint32_t i) const { return LoadAcquire(Links0(i)[0]); }
  static int LevelOf(uint32_t header) { return int((header >> kLevelShift) & kLevelMask); }
  // Link list of node i at `level`: [count, ids...]. Level 0 holds 2M slots, others M.
  uint32_t* LinksAt(uint32_t i, int level) const {
    if (level == 0) return Links0(i);
    return UpperPtr(i) + size_t(level - 1) * (m_ + 1);
  }
  uint32_t CountAt(const uint32_t* list, int level) const {
    uint32_t w = LoadAcquire(list[0]);
    return level == 0 ? (w & kCountMask) : w;
  }
  uint32_t MaxLinks(int level) const { return level == 0 ? m0_ : m_; }
  std::mutex& LockOf(uint32_t i) const { return locks_[i & (kLockStripes - 1)]; }

  float Dist(const float* a, const float* b) const {
    return metric_ == Metric::kL2 ? l2sq_(a, b, dim_) : -ip_(a, b, dim_);
  }
  // Distance from a float32 vector to node i's stored vector.
  float DistTo(const float* q, uint32_t i) const {
    if (f16_) return metric_ == Metric::kL2 ? l2sq_f16_(q, VecF16(i), dim_) : -ip_f16_(q, VecF16(i), dim_);
    return Dist(q, VecF32(i));
  }

  // Reads node i's list at `level` into out (at most max entries); returns count.
  uint32_t CopyLinks(uint32_t i, int level, uint32_t* out) const {
    const uint32_t* list = LinksAt(i, level);
    uint32_t c = std::min(CountAt(list, level), MaxLinks(level));
    for (uint32_t j = 0; j < c; ++j) out[j] = LoadAcquire(list[1 + j]);
    return c;
  }
  // Replaces node i's list at `level` (caller holds LockOf(i)).
  void WriteLinks(uint32_t i, int level, const uint32_t* ids, uint32_t count) {
    uint32_t* list = LinksAt(i, level);
    for (uint32_t j = 0; j < count; ++j) StoreRelease(list[1 + j], ids[j]);
    if (level == 0) {
      uint32_t w = list[0];
      StoreRelease(list[0], (w & ~kCountMask) | count);
    } else {
      StoreRelease(list[0], count);
    }
  }

  // ---- storage growth ------------------------------------------------------
  Result<uint32_t> AllocateSlot() {
    std::lock_guard<std::mutex> g(grow_mu_);
    if (!free_.empty()) {
      uint32_t id = free_.back();
      free_.pop_back();
      return id;
    }
    uint32_t id = num_nodes_.load(std::memory_order_relaxed);
    if (id == std::numeric_limits<uint32_t>::max()) {
      return Error(ResourceExhausted("HNSW index is full (2^32 - 1 nodes)"));
    }
    STRATA_RETURN_IF_ERROR(EnsureChunk(id >> kChunkShift));
    num_nodes_.store(id + 1, std::memory_order_release);
    return id;
  }
  Status EnsureChunk(uint32_t c) {
    if (chunks_[c].load(std::memory_order_relaxed)) return Status::Ok();
    // 2 MiB aligned and advised for transparent huge pages: searches jump between
    // random nodes, and with 4 KiB pages nearly every hop also misses the TLB.
    const size_t bytes = (size_t(kChunkNodes) * block_bytes_ + kHugePage - 1) / kHugePage * kHugePage;
    std::unique_ptr<char[], AlignedFree> mem(static_cast<char*>(AlignedAlloc(bytes, kHugePage)));
    if (!mem) return ResourceExhausted("cannot allocate {} bytes for HNSW nodes", bytes);
    madvise(mem.get(), bytes, MADV_HUGEPAGE);  // advisory; failure only costs speed
    // Pages are touched only as nodes are written, so a fresh chunk costs address
    // space, not resident memory.
    upper_chunks_[c].store(new uint32_t*[kChunkNodes](), std::memory_order_release);
    chunks_[c].store(mem.get(), std::memory_order_release);
    owned_chunks_.push_back(std::move(mem));
    capacity_.store(std::max<size_t>(capacity_.load(), size_t(c + 1) * kChunkNodes),
                    std::memory_order_release);
    return Status::Ok();
  }
  Status Reserve(size_t n) {
    std::lock_guard<std::mutex> g(grow_mu_);
    for (uint32_t c = 0; size_t(c) * kChunkNodes < n; ++c) STRATA_RETURN_IF_ERROR(EnsureChunk(c));
    return Status::Ok();
  }

  int RandomLevel() {
    uint64_t r = SplitMix64(opt_.seed ^ (level_counter_.fetch_add(1) * 0xD1B54A32D192ED03ull));
    double u = (double(r >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    int level = int(-std::log(u) * ml_);
    return std::min(level, kMaxLevel);
  }

  // ---- search primitives ---------------------------------------------------
  // Greedy walk on one upper layer: moves to the closest neighbour until none is closer.
  void GreedyStep(const float* q, int level, uint32_t& cur, float& cur_dist,
                  HnswSearchStats* st) const {
    uint32_t buf[256];
    bool changed = true;
    while (changed) {
      changed = false;
      uint32_t c = CopyLinks(cur, level, buf);
      for (uint32_t j = 0; j < c; ++j) {
        float d = DistTo(q, buf[j]);
        if (st) ++st->distances;
        if (d < cur_dist) {
          cur_dist = d;
          cur = buf[j];
          changed = true;
        }
      }
      if (st) ++st->hops;
    }
  }

  // Best-first search on one layer with the sorted pool; all visited nodes are
  // candidates (tombstones included: they still route). Used by inserts and by
  // unfiltered searches when no tombstones exist.
  void SearchLayer(const float* q, uint32_t ep, float ep_dist, int level, CandidatePool& pool,
                   VisitedSet& visited, HnswSearchStats* st) const {
    const bool l2 = metric_ == Metric::kL2;
    if (f16_) {
      if (l2) SearchLayerT<true, true>(q, ep, ep_dist, level, pool, visited, st);
      else SearchLayerT<false, true>(q, ep, ep_dist, level, pool, visited, st);
    } else {
      if (l2) SearchLayerT<true, false>(q, ep, ep_dist, level, pool, visited, st);
      else SearchLayerT<false, false>(q, ep, ep_dist, level, pool, visited, st);
    }
  }
  template <bool kL2, bool kF16>
  void SearchLayerT(const float* q, uint32_t ep, float ep_dist, int level, CandidatePool& pool,
                    VisitedSet& visited, HnswSearchStats* st) const {
    visited.Insert(ep);
    pool.Insert(ep, ep_dist);
    uint32_t buf[512];
    const size_t dim = dim_;
    auto l2 = l2sq_;
    auto ip = ip_;
    auto l2h = l2sq_f16_;
    auto iph = ip_f16_;
    uint64_t dists = 0, hops = 0;
    while (pool.HasNext()) {
      const uint32_t u = pool.PopNext();
      ++hops;
      const uint32_t c = CopyLinks(u, level, buf);
      // Gather the unvisited neighbours first, then score them with the next
      // vector prefetched, so memory latency overlaps the arithmetic.
      uint32_t n = 0;
      for (uint32_t j = 0; j < c; ++j) {
        const uint32_t v = buf[j];
        if (visited.Insert(v)) buf[n++] = v;
      }
      // Start every miss at once: the memory system overlaps them, where one
      // prefetch ahead of each distance leaves most of the latency exposed.
      for (uint32_t j = 0; j < n; ++j) {
        const char* nv = Code(buf[j]);
        for (size_t off = 0; off < prefetch_bytes_; off += 64) _mm_prefetch(nv + off, _MM_HINT_T0);
      }
      for (uint32_t j = 0; j < n; ++j) {
        float d;
        if constexpr (kF16) {
          const uint16_t* vv = VecF16(buf[j]);
          d = kL2 ? l2h(q, vv, dim) : -iph(q, vv, dim);
        } else {
          const float* vv = VecF32(buf[j]);
          d = kL2 ? l2(q, vv, dim) : -ip(q, vv, dim);
        }
        ++dists;
        if (!pool.full() || d < pool.worst()) {
          pool.Insert(buf[j], d);
          // Prefetch the link list of a promising node: it is likely expanded soon.
          _mm_prefetch(reinterpret_cast<const char*>(Links0(buf[j])), _MM_HINT_T0);
        }
      }
    }
    if (st) {
      st->distances += dists;
      st->hops += hops;
    }
  }

  // Layer-0 search where only `allowed` nodes become results but every node
  // routes (hnswlib-style two heaps): keeps going until ef allowed results are
  // held and no candidate can improve them.
  template <typename Allowed>
  void SearchLayer0Filtered(const float* q, uint32_t ep, float ep_dist, size_t ef,
                            const Allowed& allowed, SearchContext& ctx,
                            std::vector<Candidate>& results, HnswSearchStats* st) const {
    VisitedSet& visited = ctx.visited();
    thread_local std::vector<Candidate> cand;  // min-heap; kept per thread so searches do not allocate
    cand.clear();
    results.clear();
    visited.Insert(ep);
    cand.push_back({ep_dist, ep});
    if (allowed(ep)) results.push_back({ep_dist, ep});
    float bound = results.size() >= ef ? results.front().dist : std::numeric_limits<float>::infinity();
    uint32_t buf[512];
    while (!cand.empty()) {
      Candidate c = cand.front();
      if (c.dist > bound && results.size() >= ef) break;
      std::pop_heap(cand.begin(), cand.end(), CloserFirst());
      cand.pop_back();
      if (st) ++st->hops;
      const uint32_t cnt = CopyLinks(c.id, 0, buf);
      // Unvisited neighbours first, their vectors prefetched together (as in SearchLayerT).
      uint32_t fresh = 0;
      for (uint32_t j = 0; j < cnt; ++j) {
        if (visited.Insert(buf[j])) buf[fresh++] = buf[j];
      }
      for (uint32_t j = 0; j < fresh; ++j) {
        const char* nv = Code(buf[j]);
        for (size_t off = 0; off < prefetch_bytes_; off += 64) _mm_prefetch(nv + off, _MM_HINT_T0);
      }
      for (uint32_t j = 0; j < fresh; ++j) {
        const uint32_t v = buf[j];
        const float d = DistTo(q, v);
        if (st) ++st->distances;
        if (results.size() < ef || d < bound) {
          cand.push_back({d, v});
          std::push_heap(cand.begin(), cand.end(), CloserFirst());
          if (allowed(v)) {
            results.push_back({d, v});
            std::push_heap(results.begin(), results.end(), FartherFirst());
            if (results.size() > ef) {
              std::pop_heap(results.begin(), results.end(), FartherFirst());
              results.pop_back();
            }
            if (results.size() >= ef) bound = results.front().dist;
          }
        }
      }
    }
    std::sort_heap(results.begin(), results.end(), FartherFirst());
  }

  // Entry point packed as (level << 32 | node); node == kInvalidNode when empty.
  static uint64_t PackEntry(uint32_t node, int level) { return uint64_t(level) << 32 | node; }

  // Descends from the entry point to `target_level` + 1.
  void Descend(const float* q, int target_level, uint32_t& cur, float& cur_dist, int& top,
               HnswSearchStats* st) const {
    uint64_t e = entry_.load(std::memory_order_acquire);
    cur = uint32_t(e);
    top = int(e >> 32);
    cur_dist = DistTo(q, cur);
    if (st) ++st->distances;
    for (int l = top; l > target_level; --l) GreedyStep(q, l, cur, cur_dist, st);
  }

  // ---- neighbour selection (paper's Algorithm 4) ---------------------------
  // `cands` sorted ascending by distance to the base node; returns up to `m`.
  void SelectNeighbors(std::vector<Candidate>& cands, uint32_t m,
                       std::vector<Candidate>& out) const {
    SelectNeighbors(cands, m, out, opt_.keep_pruned);
  }
  void SelectNeighbors(std::vector<Candidate>& cands, uint32_t m, std::vector<Candidate>& out,
                       bool keep_pruned) const {
    out.clear();
    if (cands.size() <= m) {
      out = cands;
      return;
    }
    std::vector<Candidate> pruned;
    for (const Candidate& c : cands) {
      if (out.size() >= m) break;
      bool good = true;
      const float* cv = VecAsFloat(c.id, Scratch(0));
      for (const Candidate& r : out) {
        if (DistTo(cv, r.id) < c.dist) {
          good = false;
          break;
        }
      }
      if (good) out.push_back(c); else if (keep_pruned) pruned.push_back(c);
    }
    for (size_t i = 0; i < pruned.size() && out.size() < m; ++i) out.push_back(pruned[i]);
  }

  // Adds `src` to the list of `dst` at `level`, shrinking with the heuristic when full.
  void Connect(uint32_t dst, uint32_t src, int level) {
    std::lock_guard<std::mutex> g(LockOf(dst));
    uint32_t* list = LinksAt(dst, level);
    const uint32_t cap = MaxLinks(level);
    uint32_t c = CountAt(list, level);
    for (uint32_t j = 0; j < c; ++j) {
      if (list[1 + j] == src) return;
    }
    if (c < cap) {
      StoreRelease(list[1 + c], src);
      if (level == 0) StoreRelease(list[0], (list[0] & ~kCountMask) | (c + 1));
      else StoreRelease(list[0], c + 1);
      return;
    }
    // Scratch(1): SelectNeighbors below decodes into Scratch(0).
    const float* dv = VecAsFloat(dst, Scratch(1));
    std::vector<Candidate> cands;
    cands.reserve(c + 1);
    cands.push_back({DistTo(dv, src), src});
    for (uint32_t j = 0; j < c; ++j) cands.push_back({DistTo(dv, list[1 + j]), list[1 + j]});
    std::sort(cands.begin(), cands.end());
    std::vector<Candidate> sel;
    SelectNeighbors(cands, cap, sel);
    uint32_t ids[512];
    for (size_t j = 0; j < sel.size(); ++j) ids[j] = sel[j].id;
    WriteLinks(dst, level, ids, uint32_t(sel.size()));
  }

  // ---- insert ----------------------------------------------------------------
  Result<uint32_t> Insert(VectorId label, const float* v, SearchContext& ctx) {
    STRATA_ASSIGN_OR_RETURN(uint32_t node, AllocateSlot());
    const int level = RandomLevel();
    char* block = Block(node);
    std::memset(block, 0, block_bytes_);
    if (f16_) to_f16_(v, reinterpret_cast<uint16_t*>(block + vec_offset_), dim_);
    else std::memcpy(block + vec_offset_, v, dim_ * sizeof(float));
    Label(node) = label;
    if (level > 0) {
      uint32_t* up = new uint32_t[size_t(level) * (m_ + 1)]();
      UpperPtr(node) = up;
    } else {
      UpperPtr(node) = nullptr;
    }
    StoreRelease(Links0(node)[0], uint32_t(level) << kLevelShift);

    // First node becomes the entry point.
    {
      uint64_t e = entry_.load(std::memory_order_acquire);
      if (uint32_t(e) == kInvalidNode) {
        std::lock_guard<std::mutex> g(entry_mu_);
        e = entry_.load(std::memory_order_acquire);
        if (uint32_t(e) == kInvalidNode) {
          entry_.store(PackEntry(node, level), std::memory_order_release);
          return node;
        }
      }
    }
    // The stored form (decoded when half), so that this node's distances agree
    // with the ones later computed against it.
    std::vector<float> decoded;
    const float* q = v;
    if (f16_) {
      decoded.resize(dim_);
      q = VecAsFloat(node, decoded.data());
    }
    uint32_t cur;
    float cur_dist;
    int top;
    Descend(q, level, cur, cur_dist, top, nullptr);
    const size_t ef = std::max<size_t>(opt_.ef_construction, m_);
    Candidate* storage = CandidateStorage(ctx, 0, ef);
    std::vector<Candidate> cands, selected;
    for (int l = std::min(level, top); l >= 0; --l) {
      CandidatePool pool;
      pool.Reset(storage, ef);
      ctx.visited().Reset(capacity_.load(std::memory_order_acquire));
      ctx.visited().Insert(node);
      SearchLayer(q, cur, cur_dist, l, pool, ctx.visited(), nullptr);
      cands.clear();
      for (size_t i = 0; i < pool.size(); ++i) {
        uint32_t id = pool.id(i);
        if (id != node) cands.push_back({pool.dist(i), id});
      }
      SelectNeighbors(cands, m_, selected);
      uint32_t ids[512];
      for (size_t j = 0; j < selected.size(); ++j) ids[j] = selected[j].id;
      {
        std::lock_guard<std::mutex> g(LockOf(node));
        WriteLinks(node, l, ids, uint32_t(selected.size()));
      }
      for (const Candidate& s : selected) Connect(s.id, node, l);
      if (!cands.empty()) {
        cur = cands[0].id;
        cur_dist = cands[0].dist;
      }
    }
    if (level > top) {
      std::lock_guard<std::mutex> g(entry_mu_);
      if (level > int(entry_.load() >> 32)) entry_.store(PackEntry(node, level));
    }
    return node;
  }

  // ---- members -----------------------------------------------------------
  size_t dim_;
  Metric metric_;
  HnswOptions opt_;
  uint32_t m_, m0_;
  double ml_;
  size_t links_bytes_ = 0, vec_offset_ = 0, vec_bytes_ = 0, label_offset_ = 0;
  bool f16_ = false;
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
  std::atomic<size_t> num_deleted_{0};

  // Inserts, removes and searches hold it shared; Consolidate, Save hold it exclusively.
  mutable std::shared_mutex structure_mu_;

  // Set when nodes live in a read-only mapped file.
  bool mapped_ = false;
  std::shared_ptr<void> mapping_;
};

// ===========================================================================

Status HnswOptions::Validate() const {
  if (M < 2 || M > 256) return InvalidArgument("M must be in [2, 256], got {}", M);
  if (ef_construction < 1 || ef_construction > 100000) {
    return InvalidArgument("ef_construction must be in [1, 100000], got {}", ef_construction);
  }
  if (!(consolidate_fraction > 0 && consolidate_fraction <= 1)) {
    return InvalidArgument("consolidate_fraction must be in (0, 1], got {}", consolidate_fraction);
  }
  return Status::Ok();
}

HnswIndex::HnswIndex(size_t dim, Metric metric, const HnswOptions& options)
    : dim_(dim), metric_(metric), options_(options),
      impl_(std::make_unique<Impl>(dim, metric, options)) {}

HnswIndex::~HnswIndex() = default;

Result<std::unique_ptr<HnswIndex>> HnswIndex::Create(size_t dim, Metric metric,
                                                     const HnswOptions& options) {
  if (dim == 0 || dim > 65536) return Error(InvalidArgument("dimension must be in [1, 65536], got {}", dim));
  STRATA_RETURN_IF_ERROR(options.Validate());
  return std::unique_ptr<HnswIndex>(new HnswIndex(dim, metric, options));
}

size_t HnswIndex::size() const {
  std::lock_guard<std::mutex> g(impl_->label_mu_);
  if (impl_->dense_) return impl_->dense_node_of_.size();
  return impl_->node_of_.size();
}

size_t HnswIndex::num_slots() const { return impl_->num_nodes_.load(std::memory_order_acquire); }

bool HnswIndex::Contains(VectorId id) const {
  std::lock_guard<std::mutex> g(impl_->label_mu_);
  return impl_->NodeOf(id).has_value();
}


namespace {
// Half storage holds magnitudes up to 65504; larger ones would turn into infinity.
// (Cosine vectors are normalized first, so only l2 and ip can hit this.)
bool FitsEncoding(const HnswOptions& o, Metric metric, const float* v, size_t dim) {
  if (o.encoding != VectorEncoding::kFloat16 || MetricNormalizes(metric)) return true;
  for (size_t i = 0; i < dim; ++i) {
    if (std::fabs(v[i]) > kHalfMax) return false;
  }
  return true;
}

// Copies `v` normalized when the metric asks for it; returns the pointer to use.
const float* Prepare(Metric metric, const float* v, size_t dim, std::vector<float>& buf) {
  if (!MetricNormalizes(metric)) return v;
  buf.assign(v, v + dim);
  NormalizeInPlace(buf.data(), dim);
  return buf.data();
}
}  // namespace

// The query as the graph stores vectors: normalized (in ctx's buffer) for cosine.
static const float* PrepareQuery(Metric metric, VectorView query, SearchContext& ctx) {
  if (!MetricNormalizes(metric)) return query.data;
  float* buf = ctx.QueryBuffer(query.dim);
  std::memcpy(buf, query.data, query.dim * sizeof(float));
  NormalizeInPlace(buf, query.dim);
  return buf;
}

// Tombstones `node` (caller holds structure_mu_ shared and has removed the label).
static void Tombstone(HnswIndex::Impl& impl, uint32_t node);

Status HnswIndex::Add(VectorId id, VectorView v) {
  if (impl_->mapped_) return InvalidArgument("index is memory-mapped read-only");
  if (v.dim != dim_) {
    return InvalidArgument("vector {} has dimension {}, index expects {}", id, v.dim, dim_);
  }
  if (!AllFinite(v.data, v.dim)) {
    return InvalidArgument("vector {} has a NaN or infinite component", id);
  }
  if (!FitsEncoding(options_, metric_, v.data, dim_)) {
    return InvalidArgument("vector {} has a component beyond float16's range (+-{}); this index "
                           "stores half-precision vectors", id, kHalfMax);
  }
  std::vector<float> buf;
  const float* data = Prepare(metric_, v.data, dim_, buf);
  {
    std::shared_lock<std::shared_mutex> s(impl_->structure_mu_);
    STRATA_RETURN_IF_ERROR(AddLocked(id, data));
  }
  MaybeConsolidate();
  return Status::Ok();
}

Status HnswIndex::AddLocked(VectorId id, const float* data) {
  Impl& im = *impl_;
  // Upsert: tombstone the old node of this id first.
  {
    std::lock_guard<std::mutex> g(im.label_mu_);
    auto it = im.node_of_.find(id);
    if (it != im.node_of_.end()) {
      const uint32_t old = it->second;
      im.node_of_.erase(it);
      Tombstone(im, old);
    }
  }
  STRATA_ASSIGN_OR_RETURN(uint32_t node, im.Insert(id, data, ThreadContext()));
  std::lock_guard<std::mutex> g(im.label_mu_);
  auto [it, inserted] = im.node_of_.emplace(id, node);
  if (!inserted) {
    // A concurrent upsert of the same id won the race; keep the newer node.
    Tombstone(im, it->second);
    it->second = node;
  }
  return Status::Ok();
}

Status HnswIndex::AddBatch(const VectorSet& vectors, std::span<const VectorId> ids,
                           const HnswBuildOptions& options) {
  if (impl_->mapped_) return InvalidArgument("index is memory-mapped read-only");
  const size_t n = vectors.size();
  if (n == 0) return Status::Ok();
  if (vectors.dim() != dim_) {
    return InvalidArgument("vectors have dimension {}, index expects {}", vectors.dim(), dim_);
  }
  if (!ids.empty() && ids.size() != n) {
    return InvalidArgument("{} ids given for {} vectors", ids.size(), n);
  }
  for (size_t i = 0; i < n; ++i) {
    if (!AllFinite(vectors.row(i), dim_)) {
      return InvalidArgument("vector at row {} has a NaN or infinite component", i);
    }
    if (!FitsEncoding(options_, metric_, vectors.row(i), dim_)) {
      return InvalidArgument("vector at row {} has a component beyond float16's range (+-{}); "
                             "this index stores half-precision vectors", i, kHalfMax);
    }
  }
  if (!ids.empty()) {
    std::unordered_map<VectorId, size_t> seen;
    seen.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      auto [it, ok] = seen.emplace(ids[i], i);
      if (!ok) return InvalidArgument("id {} appears at rows {} and {} of the batch", ids[i], it->second, i);
    }
  }
  auto id_of = [&](size_t i) { return ids.empty() ? VectorId(i) : ids[i]; };
  // Rows that replace an id already present tombstone its old node. Add repairs
  // tombstones and frees their slots for reuse once they pass consolidate_fraction;
  // a batch does the same between slices, each small enough that its tombstones stay
  // near that share, so that rewriting the same ids in batches of any size keeps the
  // graph proportional to the live vectors (issue 14). A batch of new ids is one slice.
  size_t replacing = 0;
  {
    std::lock_guard<std::mutex> g(impl_->label_mu_);
    for (size_t i = 0; i < n; ++i) replacing += impl_->node_of_.count(id_of(i));
    impl_->node_of_.reserve(impl_->node_of_.size() + (n - replacing));
  }
  size_t slice = n;
  if (replacing > 0) {
    // 256 rows at least, so that each parallel region has work for every thread.
    const double nodes = double(std::max<size_t>(impl_->num_nodes_.load(), n));
    slice = std::max<size_t>(256, size_t(options_.consolidate_fraction * nodes));
  }
  Progress progress("hnsw build", n, !options.progress);
  const int threads = options.num_threads > 0 ? options.num_threads : omp_get_max_threads();
  for (size_t begin = 0; begin < n; begin += slice) {
    const size_t end = std::min(n, begin + slice);
    STRATA_RETURN_IF_ERROR(AddSlice(vectors, ids, begin, end, threads, progress));
    if (replacing > 0) MaybeConsolidate();
  }
  progress.Finish();
  return Status::Ok();
}

Status HnswIndex::AddSlice(const VectorSet& vectors, std::span<const VectorId> ids, size_t begin,
                           size_t end, int threads, Progress& progress) {
  auto id_of = [&](size_t i) { return ids.empty() ? VectorId(i) : ids[i]; };
  {
    // Chunks for the rows that freed slots will not take (a fresh chunk costs address
    // space and its pointer table).
    size_t free_slots;
    {
      std::lock_guard<std::mutex> g(impl_->grow_mu_);
      free_slots = impl_->free_.size();
    }
    const size_t rows = end - begin;
    STRATA_RETURN_IF_ERROR(impl_->Reserve(impl_->num_nodes_.load() + rows - std::min(rows, free_slots)));
  }
  std::shared_lock<std::shared_mutex> s(impl_->structure_mu_);
  // The first insert into an empty graph sets the entry point; do it alone.
  size_t start = begin;
  if (uint32_t(impl_->entry_.load()) == kInvalidNode) {
    std::vector<float> buf;
    STRATA_RETURN_IF_ERROR(AddLocked(id_of(begin), Prepare(metric_, vectors.row(begin), dim_, buf)));
    start = begin + 1;
    progress.Add();
  }
  // The first error is handed over under a mutex rather than through the end of the
  // parallel region: libgomp's barrier is invisible to ThreadSanitizer.
  std::mutex error_mu;
  Status error;
  std::atomic<bool> failed{false};
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> buf;
#pragma omp for schedule(dynamic, 64)
    for (size_t i = start; i < end; ++i) {
      if (failed.load(std::memory_order_relaxed)) continue;
      Status s = AddLocked(id_of(i), Prepare(metric_, vectors.row(i), dim_, buf));
      if (!s.ok()) {
        std::lock_guard<std::mutex> g(error_mu);
        if (error.ok()) error = std::move(s);
        failed.store(true, std::memory_order_relaxed);
      }
      progress.Add();
    }
  }
  std::lock_guard<std::mutex> g(error_mu);
  return error;
}

static void Tombstone(HnswIndex::Impl& im, uint32_t node) {
  std::lock_guard<std::mutex> lk(im.LockOf(node));
  uint32_t* h = im.Links0(node);
  if (h[0] & kDeletedBit) return;
  StoreRelease(h[0], h[0] | kDeletedBit);
  im.num_deleted_.fetch_add(1, std::memory_order_release);
}

Status HnswIndex::Remove(VectorId id) {
  if (impl_->mapped_) return InvalidArgument("index is memory-mapped read-only");
  {
    std::shared_lock<std::shared_mutex> s(impl_->structure_mu_);
    std::lock_guard<std::mutex> g(impl_->label_mu_);
    auto it = impl_->node_of_.find(id);
    if (it == impl_->node_of_.end()) return NotFound("id {} is not in the index", id);
    const uint32_t node = it->second;
    impl_->node_of_.erase(it);
    Tombstone(*impl_, node);
  }
  MaybeConsolidate();
  return Status::Ok();
}

void HnswIndex::MaybeConsolidate() {
  const size_t deleted = impl_->num_deleted_.load(std::memory_order_relaxed);
  const size_t nodes = impl_->num_nodes_.load(std::memory_order_relaxed);
  if (deleted > 0 && double(deleted) > options_.consolidate_fraction * double(nodes)) {
    (void)Consolidate();
  }
}

Status HnswIndex::Consolidate() {
  if (impl_->mapped_) return InvalidArgument("index is memory-mapped read-only");
  Impl& im = *impl_;
  std::unique_lock<std::shared_mutex> x(im.structure_mu_);
  const uint32_t n = im.num_nodes_.load();
  std::vector<uint8_t> dead(n, 0);
  std::vector<uint32_t> dead_list;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t h = im.Header(i);
    if ((h & kDeletedBit) && !(h & kFreeBit)) {
      dead[i] = 1;
      dead_list.push_back(i);
    }
    if (h & kFreeBit) dead[i] = 2;
  }
  if (dead_list.empty()) return Status::Ok();

  // Re-link every live node that pointed at a removed one: its live neighbours
  // plus the live neighbours of the removed ones are the candidates, and the
  // selection heuristic picks the new list (FreshDiskANN-style repair).
#pragma omp parallel
  {
    std::vector<uint32_t> cand_ids;
    std::vector<Candidate> cands, sel;
    uint32_t buf[512], buf2[512], ids[512];
#pragma omp for schedule(dynamic, 256)
    for (uint32_t u = 0; u < n; ++u) {
      if (dead[u]) continue;
      const int top = Impl::LevelOf(im.Header(u));
      for (int l = 0; l <= top; ++l) {
        const uint32_t c = im.CopyLinks(u, l, buf);
        bool touched = false;
        for (uint32_t j = 0; j < c; ++j) touched |= dead[buf[j]] != 0;
        if (!touched) continue;
        cand_ids.clear();
        for (uint32_t j = 0; j < c; ++j) {
          const uint32_t v = buf[j];
          if (!dead[v]) {
            cand_ids.push_back(v);
          } else if (dead[v] == 1 && Impl::LevelOf(im.Header(v)) >= l) {
            const uint32_t c2 = im.CopyLinks(v, l, buf2);
            for (uint32_t t = 0; t < c2; ++t) {
              if (!dead[buf2[t]] && buf2[t] != u) cand_ids.push_back(buf2[t]);
            }
          }
        }
        std::sort(cand_ids.begin(), cand_ids.end());
        cand_ids.erase(std::unique(cand_ids.begin(), cand_ids.end()), cand_ids.end());
        const float* uv = im.VecAsFloat(u, im.Scratch(1));
        cands.clear();
        for (uint32_t v : cand_ids) cands.push_back({im.DistTo(uv, v), v});
        std::sort(cands.begin(), cands.end());
        // Keep the pruned candidates too (up to the list's capacity): a repaired
        // node has lost links it was chosen for, and the extra edges keep the
        // graph navigable where the removed nodes used to route (measured:
        // docs/BENCHMARKS.md, deletes).
        im.SelectNeighbors(cands, im.MaxLinks(l), sel, /*keep_pruned=*/true);
        for (size_t j = 0; j < sel.size(); ++j) ids[j] = sel[j].id;
        std::lock_guard<std::mutex> g(im.LockOf(u));
        im.WriteLinks(u, l, ids, uint32_t(sel.size()));
      }
    }
  }

  // A removed entry point is replaced by a live node of the highest level.
  const uint64_t e = im.entry_.load();
  if (uint32_t(e) != kInvalidNode && dead[uint32_t(e)]) {
    uint32_t best = kInvalidNode;
    int best_level = -1;
    for (uint32_t i = 0; i < n; ++i) {
      if (dead[i]) continue;
      const int l = Impl::LevelOf(im.Header(i));
      if (l > best_level) {
        best_level = l;
        best = i;
      }
    }
    im.entry_.store(Impl::PackEntry(best, best_level < 0 ? 0 : best_level));
  }
  // Free the slots; no live link points at them any more.
  std::lock_guard<std::mutex> g(im.grow_mu_);
  for (uint32_t d : dead_list) {
    delete[] im.UpperPtr(d);
    im.UpperPtr(d) = nullptr;
    StoreRelease(im.Links0(d)[0], kFreeBit);
    im.free_.push_back(d);
  }
  im.num_deleted_.store(0);
  return Status::Ok();
}

Result<std::vector<float>> HnswIndex::Get(VectorId id) const {
  std::shared_lock<std::shared_mutex> s(impl_->structure_mu_);
  std::lock_guard<std::mutex> g(impl_->label_mu_);
  const std::optional<uint32_t> node = impl_->NodeOf(id);
  if (!node) return Error(NotFound("id {} is not in the index", id));
  std::vector<float> out(dim_);
  const float* v = impl_->VecAsFloat(*node, out.data());
  if (v != out.data()) std::memcpy(out.data(), v, dim_ * sizeof(float));
  return out;
}

Result<std::vector<Neighbor>> HnswIndex::Search(VectorView query, const SearchParams& params,
                                                SearchContext& ctx) const {
  return Search(query, params, ctx, nullptr);
}

Result<std::vector<Neighbor>> HnswIndex::Search(VectorView query, const SearchParams& params,
                                                SearchContext& ctx, HnswSearchStats* stats) const {
  STRATA_RETURN_IF_ERROR(ValidateQuery(query, dim_, params));
  const Impl& im = *impl_;
  const float* q = PrepareQuery(metric_, query, ctx);
  std::shared_lock<std::shared_mutex> s(im.structure_mu_);
  std::vector<Neighbor> out;
  if (uint32_t(im.entry_.load(std::memory_order_acquire)) == kInvalidNode) return out;
  const size_t k = params.k;
  const size_t ef = std::max<size_t>(params.ef, k);
  uint32_t cur;
  float cur_dist;
  int top;
  im.Descend(q, 0, cur, cur_dist, top, stats);
  VisitedSet& visited = ctx.visited();
  visited.Reset(im.capacity_.load(std::memory_order_acquire));
  if (params.exclude != kInvalidVectorId) {
    std::optional<uint32_t> x;
    {
      std::lock_guard<std::mutex> g(im.label_mu_);
      x = im.NodeOf(params.exclude);
    }
    if (x) {
      visited.Insert(*x);  // never expanded nor returned
      if (cur == *x) {     // the descent ended on it: start from one of its neighbours
        uint32_t buf[512];
        const uint32_t c = im.CopyLinks(*x, 0, buf);
        if (c == 0) return out;
        cur = buf[0];
        cur_dist = im.DistTo(q, cur);
        if (stats) ++stats->distances;
      }
    }
  }
  const bool tombstones = im.num_deleted_.load(std::memory_order_acquire) > 0;
  if (!params.filter && !tombstones) {
    CandidatePool pool;
    pool.Reset(CandidateStorage(ctx, 0, ef), ef);
    im.SearchLayer(q, cur, cur_dist, 0, pool, visited, stats);
    const size_t m = std::min(k, pool.size());
    out.reserve(m);
    for (size_t i = 0; i < m; ++i) out.push_back({im.Label(pool.id(i)), pool.dist(i)});
  } else {
    const IdFilter* filter = params.filter;
    auto allowed = [&](uint32_t node) {
      if (im.Header(node) & (kDeletedBit | kFreeBit)) return false;
      return filter == nullptr || filter->Contains(im.Label(node));
    };
    thread_local std::vector<Candidate> results;
    im.SearchLayer0Filtered(q, cur, cur_dist, ef, allowed, ctx, results, stats);
    const size_t m = std::min(k, results.size());
    out.reserve(m);
    for (size_t i = 0; i < m; ++i) out.push_back({im.Label(results[i].id), results[i].dist});
  }
  return out;
}

Result<std::vector<Neighbor>> HnswIndex::SearchSubset(VectorView query, uint32_t k,
                                                      std::span<const VectorId> ids,
                                                      SearchContext& ctx) const {
  SearchParams p;
  p.k = k;
  STRATA_RETURN_IF_ERROR(ValidateQuery(query, dim_, p));
  const Impl& im = *impl_;
  const float* q = PrepareQuery(metric_, query, ctx);
  std::shared_lock<std::shared_mutex> s(im.structure_mu_);
  std::vector<uint32_t> nodes;
  nodes.reserve(ids.size());
  {
    std::lock_guard<std::mutex> g(im.label_mu_);
    for (VectorId id : ids) {
      if (auto node = im.NodeOf(id)) nodes.push_back(*node);
    }
  }
  TopK<uint32_t> top(k);
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (i + 2 < nodes.size()) _mm_prefetch(im.Code(nodes[i + 2]), _MM_HINT_T0);
    top.Push(im.DistTo(q, nodes[i]), nodes[i]);
  }
  std::vector<Neighbor> out;
  for (const auto& e : top.TakeSorted()) out.push_back({im.Label(e.id), e.distance});
  return out;
}

HnswStats HnswIndex::GraphStats() const {
  const Impl& im = *impl_;
  std::shared_lock<std::shared_mutex> s(im.structure_mu_);
  HnswStats st;
  const uint32_t n = im.num_nodes_.load();
  st.num_nodes = n;
  size_t live = 0, degree = 0, upper_bytes = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t h = im.Header(i);
    if (h & kFreeBit) {
      ++st.num_free;
      continue;
    }
    if (h & kDeletedBit) {
      ++st.num_deleted;
      continue;
    }
    ++live;
    degree += h & kCountMask;
    const int l = Impl::LevelOf(h);
    st.max_level = std::max(st.max_level, l);
    upper_bytes += size_t(l) * (im.m_ + 1) * sizeof(uint32_t);
  }
  st.mean_degree0 = live ? double(degree) / double(live) : 0;
  size_t map_bytes;
  {
    std::lock_guard<std::mutex> g(im.label_mu_);
    // Node of a hash map entry: key, value, next pointer and cached hash, plus a bucket slot.
    map_bytes = im.node_of_.size() * (sizeof(VectorId) + sizeof(uint32_t) + 2 * sizeof(void*)) +
                im.node_of_.bucket_count() * sizeof(void*) +
                im.dense_node_of_.capacity() * sizeof(uint32_t);
  }
  // Each chunk also has its table of upper-link pointers (zero-filled, so resident);
  // a mapped index sizes them to its nodes and has no node locks.
  size_t pointer_tables = 0;
  for (uint32_t c = 0; c < kMaxChunks && im.upper_chunks_[c].load(); ++c) {
    pointer_tables += sizeof(uint32_t*) * (im.mapped_ ? std::min<size_t>(kChunkNodes, n - size_t(c) * kChunkNodes)
                                                      : kChunkNodes);
  }
  st.memory_bytes = size_t(n) * im.block_bytes_ + upper_bytes + map_bytes + pointer_tables +
                    (im.locks_ ? kLockStripes * sizeof(std::mutex) : 0);
  return st;
}

size_t HnswIndex::EstimateMemoryBytes(size_t nodes, size_t dim, const HnswOptions& o,
                                      bool mapped_dense_ids) {
  const size_t value_bytes = o.encoding == VectorEncoding::kFloat16 ? 2 : 4;
  const size_t links = sizeof(uint32_t) * (1 + 2 * size_t(o.M));
  const size_t block = ((links + value_bytes * dim + 7) / 8 * 8 + sizeof(uint64_t) + 63) / 64 * 64;
  // A node reaches level >= l with probability M^-l: 1/(M-1) upper lists on average.
  const double upper = double(nodes) * sizeof(uint32_t) * (o.M + 1) / std::max(1.0, o.M - 1.0);
  if (mapped_dense_ids) {  // pointer tables sized to the nodes, no locks, dense id array
    return nodes * block + size_t(upper) + nodes * sizeof(uint32_t*) + nodes * sizeof(uint32_t);
  }
  const size_t chunks = (nodes + kChunkNodes - 1) / kChunkNodes;
  const size_t map = nodes * (sizeof(VectorId) + sizeof(uint32_t) + 3 * sizeof(void*));
  return nodes * block + size_t(upper) + chunks * kChunkNodes * sizeof(uint32_t*) + map +
         kLockStripes * sizeof(std::mutex);
}

IndexStats HnswIndex::Stats() const {
  HnswStats g = GraphStats();
  IndexStats s;
  s.kind = "hnsw";
  s.num_vectors = g.num_nodes - g.num_deleted - g.num_free;
  s.dim = dim_;
  s.metric = metric_;
  s.memory_bytes = g.memory_bytes;
  return s;
}

// ---------------------------------------------------------------------------
// Save / Load. File layout (docs/formats/hnsw.md): a section file with magic
// "STRHNSW", major version 1, and sections
//   META  HnswMeta below
//   NODE  num_nodes blocks of block_bytes: [header word, 2M link ids][vector][label]
//   UPPR  for each node with level L > 0, in node order: L lists of (count, M ids)
//   FREE  free slot numbers (uint32)

namespace {

using hnsw_format::kTagFree;
using hnsw_format::kTagMeta;
using hnsw_format::kTagNode;
using hnsw_format::kTagUpper;
using HnswMeta = hnsw_format::Meta;

}  // namespace

Status HnswIndex::Save(const std::filesystem::path& path) const {
  // Exclusive: a saved file is one consistent graph.
  std::unique_lock<std::shared_mutex> x(impl_->structure_mu_);
  return SaveLocked(path);
}

Status HnswIndex::SaveQuiescent(const std::filesystem::path& path) const {
  // Shared: writers are excluded by the caller, so readers may go on.
  std::shared_lock<std::shared_mutex> s(impl_->structure_mu_);
  return SaveLocked(path);
}

Status HnswIndex::SaveLocked(const std::filesystem::path& path) const {
  const Impl& im = *impl_;
  STRATA_ASSIGN_OR_RETURN(auto w, storage::SectionFileWriter::Create(path, hnsw_format::kMagic, hnsw_format::kMajor, hnsw_format::kMinor));
  const uint32_t n = im.num_nodes_.load();
  const uint64_t e = im.entry_.load();
  HnswMeta meta{};
  meta.dim = uint32_t(dim_);
  meta.metric = uint32_t(metric_);
  meta.M = options_.M;
  meta.ef_construction = options_.ef_construction;
  meta.keep_pruned = options_.keep_pruned;
  meta.encoding = uint16_t(options_.encoding);
  meta.num_nodes = n;
  meta.entry_node = uint32_t(e);
  meta.entry_level = uint32_t(e >> 32);
  meta.block_bytes = im.block_bytes_;
  meta.seed = options_.seed;
  meta.consolidate_fraction = options_.consolidate_fraction;
  meta.num_deleted = im.num_deleted_.load();
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagMeta, std::as_bytes(std::span(&meta, 1))));
  STRATA_RETURN_IF_ERROR(w.BeginSection(kTagNode));
  for (uint32_t c = 0; size_t(c) * kChunkNodes < n; ++c) {
    const size_t count = std::min<size_t>(kChunkNodes, n - size_t(c) * kChunkNodes);
    STRATA_RETURN_IF_ERROR(w.Append(im.chunks_[c].load(), count * im.block_bytes_));
  }
  STRATA_RETURN_IF_ERROR(w.EndSection());
  STRATA_RETURN_IF_ERROR(w.BeginSection(kTagUpper));
  for (uint32_t i = 0; i < n; ++i) {
    const int l = Impl::LevelOf(im.Header(i));
    if (l > 0) STRATA_RETURN_IF_ERROR(w.Append(im.UpperPtr(i), size_t(l) * (im.m_ + 1) * 4));
  }
  STRATA_RETURN_IF_ERROR(w.EndSection());
  std::vector<uint32_t> free_list;
  {
    std::lock_guard<std::mutex> g(im.grow_mu_);
    free_list = im.free_;
  }
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagFree, std::as_bytes(std::span(free_list))));
  return w.Commit();
}

Result<std::unique_ptr<HnswIndex>> HnswIndex::Load(const std::filesystem::path& path,
                                                   const HnswLoadOptions& options) {
  const std::string file = path.string();
  STRATA_ASSIGN_OR_RETURN(storage::SectionFile sf,
                          storage::SectionFile::Open(path, hnsw_format::kMagic, hnsw_format::kMajor));
  STRATA_ASSIGN_OR_RETURN(auto meta_bytes, sf.Section(kTagMeta));
  if (meta_bytes.size() != sizeof(HnswMeta)) {
    return Error(Corruption("{}: META section has {} bytes, expected {}", file, meta_bytes.size(),
                            sizeof(HnswMeta)));
  }
  HnswMeta meta;
  std::memcpy(&meta, meta_bytes.data(), sizeof meta);
  if (meta.metric > uint32_t(Metric::kCosine)) {
    return Error(Corruption("{}: META.metric {} is not a known metric", file, meta.metric));
  }
  if (meta.encoding > uint16_t(VectorEncoding::kFloat16)) {
    return Error(Corruption("{}: META.encoding {} is not a known vector encoding", file, meta.encoding));
  }
  HnswOptions opt;
  opt.M = meta.M;
  opt.ef_construction = meta.ef_construction;
  opt.keep_pruned = meta.keep_pruned != 0;
  opt.encoding = VectorEncoding(meta.encoding);
  opt.seed = meta.seed;
  opt.consolidate_fraction = meta.consolidate_fraction;
  auto created = Create(meta.dim, Metric(meta.metric), opt);
  if (!created) return Error(Corruption("{}: META: {}", file, created.error().message()));
  std::unique_ptr<HnswIndex> index = std::move(*created);
  Impl& im = *index->impl_;
  if (meta.block_bytes != im.block_bytes_) {
    return Error(Corruption("{}: META.block_bytes {} does not match dim {} and M {} (expected {})",
                            file, meta.block_bytes, meta.dim, meta.M, im.block_bytes_));
  }
  const uint32_t n = meta.num_nodes;
  if (n == std::numeric_limits<uint32_t>::max()) {
    return Error(Corruption("{}: META.num_nodes {} is out of range", file, n));
  }
  STRATA_ASSIGN_OR_RETURN(auto nodes, sf.Section(kTagNode));
  if (nodes.size() != uint64_t(n) * im.block_bytes_) {
    return Error(Corruption("{}: NODE section has {} bytes, expected {} nodes x {} bytes", file,
                            nodes.size(), n, im.block_bytes_));
  }
  STRATA_ASSIGN_OR_RETURN(auto upper, sf.Section(kTagUpper));
  STRATA_ASSIGN_OR_RETURN(auto free_bytes, sf.Section(kTagFree));
  if (free_bytes.size() % 4 != 0) {
    return Error(Corruption("{}: FREE section size {} is not a multiple of 4", file,
                            free_bytes.size()));
  }

  // Place the node blocks: mapped in place, or copied into fresh chunks.
  char* base = const_cast<char*>(reinterpret_cast<const char*>(nodes.data()));
  if (options.mmap) {
    for (uint32_t c = 0; size_t(c) * kChunkNodes < n; ++c) {
      // A mapped index never grows: each pointer table holds only its chunk's nodes.
      const size_t count = std::min<size_t>(kChunkNodes, n - size_t(c) * kChunkNodes);
      im.upper_chunks_[c].store(new uint32_t*[count]());
      im.chunks_[c].store(base + size_t(c) * kChunkNodes * im.block_bytes_);
    }
    im.capacity_.store(n);
    im.mapped_ = true;
  } else {
    STRATA_RETURN_IF_ERROR(im.Reserve(n));
    for (uint32_t c = 0; size_t(c) * kChunkNodes < n; ++c) {
      const size_t count = std::min<size_t>(kChunkNodes, n - size_t(c) * kChunkNodes);
      std::memcpy(im.chunks_[c].load(), base + size_t(c) * kChunkNodes * im.block_bytes_,
                  count * im.block_bytes_);
    }
  }
  im.num_nodes_.store(n);

  // Headers and upper lists: levels must add up to the UPPR section exactly.
  const size_t upper_words = upper.size() / 4;
  if (upper.size() % 4) return Error(Corruption("{}: UPPR size {} is not a multiple of 4", file, upper.size()));
  const uint32_t* up = reinterpret_cast<const uint32_t*>(upper.data());
  size_t pos = 0;
  size_t deleted = 0;
  int top_level = -1;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t h = im.Header(i);
    const int l = Impl::LevelOf(h);
    if ((h & ~(kCountMask | (kLevelMask << kLevelShift) | kFreeBit | kDeletedBit)) != 0) {
      return Error(Corruption("{}: node {} has unknown header bits 0x{:08x}", file, i, h));
    }
    if (h & kFreeBit) {
      if (l != 0 || (h & kCountMask) != 0) {
        return Error(Corruption("{}: free node {} has links or a level", file, i));
      }
      continue;
    }
    if (h & kDeletedBit) ++deleted;
    top_level = std::max(top_level, l);
    if (l == 0) continue;
    const size_t words = size_t(l) * (im.m_ + 1);
    if (pos + words > upper_words) {
      return Error(Corruption("{}: UPPR section ends before the upper links of node {} (level {})",
                              file, i, l));
    }
    if (options.mmap) {
      im.UpperPtr(i) = const_cast<uint32_t*>(up + pos);
    } else {
      im.UpperPtr(i) = new uint32_t[words];
      std::memcpy(im.UpperPtr(i), up + pos, words * 4);
    }
    pos += words;
  }
  if (pos != upper_words) {
    return Error(Corruption("{}: UPPR section has {} bytes, node levels account for {}", file,
                            upper.size(), pos * 4));
  }

  // Structure: link counts, ids in range, no self links, no links to free
  // slots, upper links only to nodes that exist on that level.
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t h = im.Header(i);
    if (h & kFreeBit) continue;
    const int l = Impl::LevelOf(h);
    for (int lv = 0; lv <= l; ++lv) {
      const uint32_t* list = im.LinksAt(i, lv);
      const uint32_t c = lv == 0 ? (list[0] & kCountMask) : list[0];
      if (c > im.MaxLinks(lv)) {
        return Error(Corruption("{}: node {} has {} links on level {}, at most {} allowed", file, i,
                                c, lv, im.MaxLinks(lv)));
      }
      for (uint32_t j = 0; j < c; ++j) {
        const uint32_t v = list[1 + j];
        if (v >= n) {
          return Error(Corruption("{}: node {} level {} links to node {}, beyond the {} nodes",
                                  file, i, lv, v, n));
        }
        if (v == i) return Error(Corruption("{}: node {} links to itself on level {}", file, i, lv));
        const uint32_t hv = im.Header(v);
        if (hv & kFreeBit) {
          return Error(Corruption("{}: node {} level {} links to free slot {}", file, i, lv, v));
        }
        if (Impl::LevelOf(hv) < lv) {
          return Error(Corruption("{}: node {} level {} links to node {} which has only level {}",
                                  file, i, lv, v, Impl::LevelOf(hv)));
        }
      }
    }
  }
  // Entry point.
  if (n == 0 || top_level < 0) {
    if (meta.entry_node != kInvalidNode) {
      return Error(Corruption("{}: META.entry_node {} but the graph has no live node", file,
                              meta.entry_node));
    }
  } else {
    if (meta.entry_node >= n || (im.Header(meta.entry_node) & kFreeBit)) {
      return Error(Corruption("{}: entry point {} does not exist", file, meta.entry_node));
    }
    if (int(meta.entry_level) != Impl::LevelOf(im.Header(meta.entry_node)) ||
        int(meta.entry_level) != top_level) {
      return Error(Corruption("{}: entry point {} has level {}, META says {}, highest node level is {}",
                              file, meta.entry_node, Impl::LevelOf(im.Header(meta.entry_node)),
                              meta.entry_level, top_level));
    }
    im.entry_.store(Impl::PackEntry(meta.entry_node, int(meta.entry_level)));
  }
  // Free list and labels.
  const uint32_t* fl = reinterpret_cast<const uint32_t*>(free_bytes.data());
  std::vector<bool> listed(n, false);  // a slot listed twice would be given to two inserts
  for (size_t j = 0; j < free_bytes.size() / 4; ++j) {
    if (fl[j] >= n || !(im.Header(fl[j]) & kFreeBit)) {
      return Error(Corruption("{}: FREE entry {} names slot {}, which is not a free slot", file, j,
                              fl[j]));
    }
    if (listed[fl[j]]) {
      return Error(Corruption("{}: FREE entry {} names slot {} a second time", file, j, fl[j]));
    }
    listed[fl[j]] = true;
    im.free_.push_back(fl[j]);
  }
  if (options.mmap && deleted == 0 && im.free_.empty()) {
    std::vector<uint32_t> dense(n, kInvalidNode);
    bool ok = true;
    for (uint32_t i = 0; i < n && ok; ++i) {
      const VectorId id = im.Label(i);
      ok = id < n && dense[id] == kInvalidNode;
      if (ok) dense[id] = i;
    }
    if (ok) {
      im.dense_ = true;
      im.dense_node_of_ = std::move(dense);
    }
  }
  if (!im.dense_) im.node_of_.reserve(n);
  for (uint32_t i = 0; i < n && !im.dense_; ++i) {
    const uint32_t h = im.Header(i);
    if (h & (kFreeBit | kDeletedBit)) continue;
    if (!im.node_of_.emplace(im.Label(i), i).second) {
      return Error(Corruption("{}: id {} is stored twice (nodes {} and {})", file, im.Label(i),
                              im.node_of_[im.Label(i)], i));
    }
  }
  im.num_deleted_.store(deleted);
  if (options.mmap) {
    im.mapping_ = std::make_shared<storage::SectionFile>(std::move(sf));
    im.locks_.reset();  // read-only: nothing will ever take a node lock
  }
  return index;
}

}  // namespace strata::index
