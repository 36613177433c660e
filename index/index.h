#pragma once
// The interface every Strata index answers: search with per-call parameters,
// statistics, and (for mutable indexes) add and remove.
//
// Query-specific settings (k, ef, filter, ...) are never stored on an index;
// they travel in SearchParams with each call. Scratch space lives in a
// SearchContext owned by the calling thread, never in index members, so a
// const index can be searched from many threads at once.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "core/metric.h"
#include "core/status.h"
#include "core/types.h"
#include "core/vector_set.h"

namespace strata::index {

// Restricts results to ids for which Contains() is true. Implementations must be
// safe to call from several threads at once.
class IdFilter {
 public:
  virtual ~IdFilter() = default;
  virtual bool Contains(VectorId id) const = 0;
};

struct SearchParams {
  uint32_t k = 10;
  uint32_t ef = 64;                  // HNSW: size of the dynamic candidate list (>= k used)
  const IdFilter* filter = nullptr;  // optional; not owned
  // HNSW: a node held out of this search entirely -- neither expanded nor returned,
  // as if it were not in the graph (used to calibrate with held-out queries).
  VectorId exclude = kInvalidVectorId;
  // HNSW with codes: candidates re-scored with full vectors (>= k used); 0 = the
  // index's default (HnswOptions::rerank; 0 there too: 2k).
  uint32_t rerank = 0;
  // HNSW with codes: no rerank -- the best k of the walk's ef-list come back with
  // their codes' distances (estimates: SQ8 rounds each coordinate by up to half a step), and
  // no full vector is touched. SPANN's head search uses it when its heads carry codes.
  bool codes_only = false;
  // HNSW, filtered searches (a filter, or deleted nodes): only neighbours closer than this
  // are wanted -- another part of the query (a segment searched before) already holds k that
  // are this close. Such a walk, which otherwise goes on until it holds ef allowed nodes
  // however far that is (a region whose nodes were all deleted: thousands of nodes), then
  // ends once it has walked as far as an unfiltered search would and no candidate is
  // closer than this. Infinity: no bound.
  float max_distance = std::numeric_limits<float>::infinity();
};

// Epoch-tagged visited marks: Reset() is O(1) except once every 65535 searches.
class VisitedSet {
 public:
  // Prepares for a new search over ids < n.
  void Reset(size_t n) {
    if (tags_.size() < n) {
      tags_.assign(n + n / 4 + 1024, 0);
      epoch_ = 0;
    }
    if (++epoch_ == 0) {
      std::fill(tags_.begin(), tags_.end(), 0);
      epoch_ = 1;
    }
  }
  // Whether i is marked; ids beyond the size given to Reset count as marked, as in Insert.
  bool Test(uint32_t i) const { return i >= tags_.size() || tags_[i] == epoch_; }
  // Marks i; returns true when it was not marked before. Ids beyond the size
  // given to Reset (nodes created by a concurrent insert after the search
  // began) count as visited, so such a search simply does not see them.
  bool Insert(uint32_t i) {
    if (i >= tags_.size() || tags_[i] == epoch_) return false;
    tags_[i] = epoch_;
    return true;
  }
  const uint16_t* tag_address(uint32_t i) const { return tags_.data() + i; }

 private:
  std::vector<uint16_t> tags_;
  uint16_t epoch_ = 0;
};

// What one index kind keeps in a SearchContext between calls (HNSW: its candidate
// pool and heaps, hnsw/hnsw_scratch.h): a typed object, created by
// SearchContext::scratch<T>(), instead of raw buffers cast to the kind's types.
class IndexScratch {
 public:
  virtual ~IndexScratch() = default;
};

// Per-thread scratch. Indexes keep what they need in it (grown on demand and
// reused), so searches do not allocate on the hot path. Thread-compatible: one
// context per thread.
class SearchContext {
 public:
  SearchContext() = default;
  SearchContext(const SearchContext&) = delete;
  SearchContext& operator=(const SearchContext&) = delete;

  // Aligned float scratch of at least n floats, reused between calls.
  float* Floats(size_t n);
  // A copy of the query (e.g. normalized for cosine), reused between calls.
  float* QueryBuffer(size_t dim) { return query_.size() >= dim ? query_.data() : Grow(dim); }
  VisitedSet& visited() { return visited_; }
  // The scratch of index kind T (derived from IndexScratch), created on first use and
  // reused by later calls. It holds one kind at a time: handing the context to
  // another kind replaces it.
  template <typename T>
  T& scratch() {
    static_assert(std::is_base_of_v<IndexScratch, T>);
    if (scratch_kind_ != &kScratchKind<T>) {
      scratch_ = std::make_unique<T>();
      scratch_kind_ = &kScratchKind<T>;
    }
    return static_cast<T&>(*scratch_);
  }

 private:
  float* Grow(size_t dim) {
    query_.resize(dim);
    return query_.data();
  }
  std::unique_ptr<float[], AlignedFree> floats_;
  size_t floats_size_ = 0;
  std::vector<float> query_;
  VisitedSet visited_;
  // One address per scratch type (an inline variable: the same in every translation
  // unit), so scratch<T>() checks the kind with a pointer comparison.
  template <typename T>
  static constexpr char kScratchKind = 0;
  std::unique_ptr<IndexScratch> scratch_;
  const char* scratch_kind_ = nullptr;
};

struct IndexStats {
  std::string kind;          // "flat", "hnsw", ...
  size_t num_vectors = 0;
  size_t dim = 0;
  Metric metric = Metric::kL2;
  size_t memory_bytes = 0;   // resident bytes of the index (vectors, graph, ids)
  size_t disk_bytes = 0;     // bytes on disk (0 for in-memory indexes)
};

// Thread-safe for concurrent Search and Stats; see each implementation for writes.
class Index {
 public:
  virtual ~Index() = default;
  // Nearest first; at most params.k results (fewer when fewer vectors match).
  // Errors: dimension mismatch, NaN/Inf in the query, k == 0.
  virtual Result<std::vector<Neighbor>> Search(VectorView query, const SearchParams& params,
                                               SearchContext& ctx) const = 0;
  virtual IndexStats Stats() const = 0;
  virtual size_t dim() const = 0;
  virtual Metric metric() const = 0;
  virtual size_t size() const = 0;
};

class MutableIndex : public Index {
 public:
  // Inserts, or replaces the vector of an existing id.
  virtual Status Add(VectorId id, VectorView v) = 0;
  // NotFound when the id is absent.
  virtual Status Remove(VectorId id) = 0;
};

// Validates a query against an index's dimension: InvalidArgument naming what is wrong.
Status ValidateQuery(VectorView query, size_t dim, const SearchParams& params);

}  // namespace strata::index
