#pragma once
// HnswIndex: the in-memory layered proximity graph of Malkov & Yashunin,
// "Efficient and robust approximate nearest neighbor search using Hierarchical
// Navigable Small World graphs" (TPAMI 2018).
//
// Layout. Every node owns one fixed-size block: its layer-0 link list (a count
// and up to 2M neighbour slots) followed by its vector, so expanding a node and
// scoring it touch adjacent cache lines. Blocks live in chunks of 2^16 nodes
// that never move, so the index grows without a capacity limit and without
// invalidating pointers that concurrent searches hold. Upper-layer links (about
// 1/M of the nodes have any) are kept apart.
//
// Search. Greedy descent through the upper layers, then an ef-bounded
// best-first search on layer 0 over a sorted candidate pool; visited marks are
// epoch-tagged and come from the caller's SearchContext, so the hot path does not
// allocate. k, ef and the filter are per-call parameters; nothing query-specific
// is stored on the index.
//
// Deletes. Remove() and an upsert of a present id (Add, AddBatch) tombstone a
// node at once (it is never returned again); once tombstones pass
// `consolidate_fraction` of the nodes, the graph is repaired: each live node
// that linked to a removed one is re-linked by the selection heuristic over its
// live neighbours and theirs, and the freed slots are reused by later inserts.
//
// Thread safety: Search, Stats and Get may run concurrently with each other and
// with Add, AddBatch and Remove, from any number of threads. Add, AddBatch and
// Remove may run concurrently with each other (per-node striped locks).
// Consolidate (also run by Add, AddBatch and Remove past the threshold), Save and
// Build take the index exclusively (they wait for running writers and searches).
// A memory-mapped index (LoadOptions::mmap or map_full_vectors) is read-only.
//
// Codes (HnswOptions::codes = kSq8). Node blocks then hold an SQ8 code of the
// vector (index/codes/sq8.h: one byte per dimension) instead of the vector, and
// the full float32 vectors live apart (in memory, or mapped from the file). A
// search descends and walks layer 0 on the codes -- a filtered one, or one past
// tombstones, with the filtered walk (only allowed nodes become results) -- then
// re-scores the best `rerank` candidates with the full vectors and returns those
// distances. Inserts and SearchSubset use the full vectors. The encoder is trained by the first AddBatch
// (per-dimension range of up to 100,000 of its rows); Add before that is an error.
// While every node's code decodes to exactly its vector (integer data, such as uint8
// pixels under L2: steps of 1), the rerank decodes the candidates' codes instead of
// reading their full vectors (HnswStats::exact_codes; saved with the index).

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "index/codes/sq8.h"
#include "index/index.h"
#include "storage/block_io.h"

namespace strata {
class Progress;
}
namespace strata::storage {
class MappedFile;
}

namespace strata::index {

// How node vectors are stored. kFloat16 (IEEE half, rounded to nearest) halves
// their memory; queries stay float32 and are scored against the stored halves.
// Components must lie within +-65504 (cosine vectors always do).
enum class VectorEncoding : uint8_t { kFloat32 = 0, kFloat16 = 1 };

struct HnswOptions {
  uint32_t M = 16;                  // links per node on upper layers; 2M on layer 0
  uint32_t ef_construction = 200;   // candidate list size while inserting
  bool keep_pruned = false;         // fill lists up to M with pruned candidates (paper's option)
  uint64_t seed = 42;               // level generator seed
  double consolidate_fraction = 0.1;  // repair the graph when tombstones pass this share
  VectorEncoding encoding = VectorEncoding::kFloat32;
  // Compressed codes to traverse with (float32 full vectors are kept for the rerank).
  CodesKind codes = CodesKind::kNone;
  // With codes: how many of the ef-list are re-scored with full vectors when the
  // search does not say (SearchParams::rerank); 0 = automatic, 2k (measured on
  // GloVe-100: no recall lost against reranking the whole ef-list; docs/BENCHMARKS.md,
  // section 10). At least k are always reranked.
  uint32_t rerank = 0;
  Status Validate() const;
};

struct HnswBuildOptions {
  int num_threads = 0;     // 0 = OpenMP default
  bool progress = false;   // report on stderr
};

struct HnswLoadOptions {
  bool mmap = false;  // map the file read-only instead of copying it into memory
  // With codes: copy the graph and codes into memory but map the full vectors
  // (touched only by reranks; the index is then read-only). Ignored without codes.
  bool map_full_vectors = false;
  // With codes: as map_full_vectors, but reranks read the full vectors with pread
  // instead of through the mapping, so they never enter this process's resident
  // set (the kernel's page cache still holds what was read). Ignored without codes.
  bool read_full_vectors = false;
  // With read_full_vectors: how a rerank reads its candidates' vectors. kAuto (and
  // kIoUring) submits all of one query's reads at once through the caller's
  // SearchContext (storage::IoQueue: one io_uring submission, falling back to pread
  // where the kernel refuses io_uring); kPread reads them one pread at a time.
  storage::IoBackend full_vector_io = storage::IoBackend::kAuto;
  // With codes: keep a 4-bit refinement of every code in memory (half a byte per
  // dimension: 16.6 MB for GloVe-100's 331,479 x 100) and rerank on the refined
  // codes (each coordinate within step / 28 of the stored value, exact where the code is)
  // instead of the full vectors, which searches then never touch; the index is
  // read-only, the full vectors mapped as with map_full_vectors (Get and SearchSubset
  // still read them there).
  // Distances returned are the refined codes'. Computed while loading, from the
  // file's full vectors; ignored without codes.
  bool refined_codes = false;
};

struct HnswStats {
  size_t num_nodes = 0;        // slots in use, including tombstones
  size_t num_deleted = 0;      // tombstones not yet consolidated
  size_t num_free = 0;         // freed slots awaiting reuse
  int max_level = 0;
  double mean_degree0 = 0;     // mean layer-0 out-degree of live nodes
  size_t memory_bytes = 0;     // resident: blocks, links, maps; full vectors when in memory
  size_t full_vector_bytes = 0;  // with codes: the full vectors (in memory or mapped)
  bool full_vectors_mapped = false;
  size_t refined_code_bytes = 0;  // HnswLoadOptions::refined_codes, and their norms for L2 (in memory_bytes)
  // With codes: every node's code decodes to exactly its vector (integer data within steps of
  // 1: Sq8Encoder), so a search reranks on decoded codes and never reads the full vectors.
  bool exact_codes = false;
};

// Counters of one search (for EXPLAIN and tests).
struct HnswSearchStats {
  uint64_t distances = 0;
  uint64_t hops = 0;
};

class HnswIndex final : public MutableIndex {
 public:
  static Result<std::unique_ptr<HnswIndex>> Create(size_t dim, Metric metric,
                                                   const HnswOptions& options = {});
  // Bulk insert of rows (ids given, or 0..n-1), in parallel. Ids already present
  // are replaced as by Add; their tombstones are repaired and the slots reused
  // between slices of the batch, so rewriting ids in batches of any size keeps the
  // graph proportional to the live vectors.
  Status AddBatch(const VectorSet& vectors, std::span<const VectorId> ids,
                  const HnswBuildOptions& options = {});

  Result<std::vector<Neighbor>> Search(VectorView query, const SearchParams& params,
                                       SearchContext& ctx) const override;
  // Same, and fills `stats` with what the search cost.
  Result<std::vector<Neighbor>> Search(VectorView query, const SearchParams& params,
                                       SearchContext& ctx, HnswSearchStats* stats) const;

  Status Add(VectorId id, VectorView v) override;
  Status Remove(VectorId id) override;
  // Repairs links around tombstones and frees their slots (see class comment).
  Status Consolidate();
  bool Contains(VectorId id) const;
  // The stored vector of `id` (normalized for cosine; rounded when stored as half).
  Result<std::vector<float>> Get(VectorId id) const;

  // Exact search restricted to `ids` (absent ids are skipped): the path for
  // filters so selective that graph traversal would visit far more nodes.
  Result<std::vector<Neighbor>> SearchSubset(VectorView query, uint32_t k,
                                             std::span<const VectorId> ids,
                                             SearchContext& ctx) const;

  Status Save(const std::filesystem::path& path) const;
  // Save for a caller that guarantees no Add, Remove or Consolidate runs meanwhile
  // (e.g. it holds its own writer lock): searches go on while the file is written,
  // instead of waiting for the exclusive lock Save takes.
  Status SaveQuiescent(const std::filesystem::path& path) const;
  // SaveQuiescent with every label mapped through `relabel` (indexed by the label;
  // labels must be below relabel.size()); a node whose label maps to
  // kInvalidVectorId is saved as a tombstone (it still routes, is never returned).
  // For the engine's seal: its in-memory graph is labelled with memory rows, the
  // sealed segment's with the rows of its records file.
  Status SaveRelabeled(const std::filesystem::path& path, std::span<const VectorId> relabel) const;
  static Result<std::unique_ptr<HnswIndex>> Load(const std::filesystem::path& path,
                                                 const HnswLoadOptions& options = {});

  IndexStats Stats() const override;
  HnswStats GraphStats() const;
  // Resident bytes that Stats() would report for `nodes` nodes of dimension `dim`
  // (expected upper links; the dense id array of a mapped index with ids
  // 0..nodes-1 when `mapped_dense_ids`, else the hash map).
  static size_t EstimateMemoryBytes(size_t nodes, size_t dim, const HnswOptions& options,
                                    bool mapped_dense_ids);
  size_t dim() const override { return dim_; }
  Metric metric() const override { return metric_; }
  size_t size() const override;  // live vectors
  // Node slots in use, live or not: size() plus tombstones and free slots. Cheap
  // (a counter), unlike GraphStats.
  size_t num_slots() const;
  const HnswOptions& options() const { return options_; }

  ~HnswIndex() override;

  class Impl;  // the graph store: hnsw_graph.h

 private:
  Status AddLocked(VectorId id, const float* data);
  // Rows [begin, end) of an AddBatch, in parallel under structure_mu_ shared.
  Status AddSlice(const VectorSet& vectors, std::span<const VectorId> ids, size_t begin, size_t end,
                  int threads, Progress& progress);
  // Caller holds structure_mu_; `relabel`: see SaveRelabeled (empty: labels as they are).
  Status SaveLocked(const std::filesystem::path& path, std::span<const VectorId> relabel = {}) const;
  void MaybeConsolidate();
  HnswIndex(size_t dim, Metric metric, const HnswOptions& options);
  size_t dim_;
  Metric metric_;
  HnswOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::index
