#pragma once
// SealedSegment: an immutable slice of a collection on disk -- its records
// (ids, vectors as written, attributes) and the HNSW graph over them -- plus the
// set of its ids deleted since it was sealed.
//
// Files in the segment's folder (docs/formats/engine.md):
//   records.strata   section file "STRSEG": META, IDS (sorted u64), VECS (f32, in id
//                    order), AOFF (u64 offsets into ATTR, count + 1), ATTR (attribute blobs)
//   index.hnsw       the graph, labelled with the same ids (hnsw.md)
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
#include "storage/section_file.h"

namespace strata::engine {

class SealedSegment {
 public:
  struct Row {
    VectorId id;
    const std::vector<float>* vector;
    const Attributes* attributes;
  };
  // Writes records.strata and index.hnsw into `dir` (created; must not exist).
  // `rows` must be sorted by id with no duplicates.
  static Status Write(const std::filesystem::path& dir, size_t dim, Metric metric,
                      std::span<const Row> rows, const index::HnswIndex& graph);
  // Opens a segment written by Write; the graph is searched from a read-only mapping.
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
  const index::HnswIndex& graph() const { return *graph_; }
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
  std::unique_ptr<index::HnswIndex> graph_;
};

}  // namespace strata::engine
