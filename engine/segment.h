#pragma once
// SealedSegment: an immutable slice of a collection on disk -- its records
// (ids, vectors as written, attributes) and the index over them, an HNSW graph
// or a SPANN index -- plus the set of its ids deleted since it was sealed.
//
// Files in the segment's folder (docs/formats/engine.md):
//   records.strata   section file "STRSEG": META, IDS (sorted u64), VECS (f32, in id
//                    order), AOFF (u64 offsets into ATTR, count + 1), ATTR (attribute blobs)
//   index.hnsw       HNSW segments: the graph, labelled with the same ids (hnsw.md)
//   spann/           SPANN segments: the index over rows 0..n-1 in id order (spann.md)
//   deletes-<g>.ids  section file "STRDEL": DELS (sorted u64), written when a seal or
//                    compaction persists the deletes of generation g
//
// Thread safety: the records and the graph are immutable after Open/Write and may
// be read from any number of threads. The deleted set is guarded by the owning
// collection (its apply lock), not here.

#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <unordered_set>
#include <vector>

#include "engine/strata.h"
#include "index/hnsw/hnsw_index.h"
#include "index/spann/spann_index.h"
#include "storage/section_file.h"

namespace strata::engine {

class SealedSegment {
 public:
  enum class Kind : uint32_t { kHnsw = 0, kSpann = 1 };
  struct Row {
    VectorId id;
    const float* vector;  // dim floats
    const Attributes* attributes;
  };
  // Writes records.strata into `dir` (created; must not exist), for an index of
  // `kind` that the caller then writes beside it (GraphPath / SpannPath).
  // `rows` must be sorted by id with no duplicates.
  static Status WriteRecords(const std::filesystem::path& dir, size_t dim, Metric metric, Kind kind,
                             std::span<const Row> rows);
  static std::filesystem::path GraphPath(const std::filesystem::path& dir) { return dir / "index.hnsw"; }
  static std::filesystem::path SpannPath(const std::filesystem::path& dir) { return dir / "spann"; }
  // Opens a segment; an HNSW graph is searched from a read-only mapping, a SPANN
  // index reads its lists from disk.
  static Result<std::unique_ptr<SealedSegment>> Open(const std::filesystem::path& dir, uint64_t id,
                                                     size_t dim);

  // Persists `ids` (sorted) as deletes-<generation>.ids, atomically.
  static Status WriteDeletes(const std::filesystem::path& dir, uint64_t generation,
                             const std::vector<VectorId>& ids);
  static Result<std::vector<VectorId>> ReadDeletes(const std::filesystem::path& dir, uint64_t generation);
  static std::filesystem::path DeletesPath(const std::filesystem::path& dir, uint64_t generation);

  uint64_t id() const { return id_; }
  size_t rows() const { return ids_.size(); }
  const std::filesystem::path& dir() const { return dir_; }
  // Row of `id`, if the segment holds it (deleted or not).
  std::optional<size_t> Find(VectorId id) const;
  std::span<const VectorId> ids() const { return ids_; }
  Result<Record> Read(size_t row) const;
  const float* vector(size_t row) const { return vectors_ + row * dim_; }
  Kind kind() const { return kind_; }
  // Top-k of the live (not deleted) ids; the caller holds the collection's apply
  // lock shared. Thread-safe otherwise.
  // SPANN segments add what they read to `io`.
  Result<std::vector<Neighbor>> Search(VectorView query, const SearchOptions& options,
                                       index::SearchContext& ctx, index::SpannContext& sctx,
                                       index::SpannQueryStats* io = nullptr) const;
  size_t memory_bytes() const;

  // Deleted ids (a subset of ids()); guarded by the collection's apply lock.
  std::unordered_set<VectorId> deleted;
  uint64_t deletes_generation = 0;  // generation of the persisted deletes file (0: none)

 private:
  SealedSegment() = default;
  std::filesystem::path dir_;
  uint64_t id_ = 0;
  size_t dim_ = 0;
  std::unique_ptr<storage::SectionFile> records_;
  std::span<const VectorId> ids_;
  const float* vectors_ = nullptr;
  std::span<const uint64_t> attr_offsets_;
  std::span<const std::byte> attrs_;
  Kind kind_ = Kind::kHnsw;
  std::unique_ptr<index::HnswIndex> graph_;
  std::unique_ptr<index::SpannIndex> spann_;
};

}  // namespace strata::engine
