#pragma once
// SealedSegment: an immutable slice of a collection on disk -- its records
// (ids, vectors as written, attributes) and the index over them, an HNSW graph
// or a SPANN index -- plus the set of its ids deleted since it was sealed.
//
// Files in the segment's folder (docs/formats/engine.md):
//   records.strata   section file "STRSEG": META, IDS (sorted u64), VECS (f32, in id
//                    order), AOFF (u64 offsets into ATTR, count + 1), ATTR (attribute blobs),
//                    SIDE (optional, u32 rows a SPANN index leaves out)
//   index.hnsw       HNSW segments: the graph, labelled with the same ids (hnsw.md)
//   spann/           SPANN segments: the index over rows 0..n-1 in id order (spann.md),
//                    labelled with row numbers, except the SIDE rows of records.strata
//   deletes-<g>.ids  section file "STRDEL": DELS (sorted u64), written when a seal or
//                    compaction persists the deletes of generation g
//   calibration.strata  recall per ef / max_lists measured on the segment (calibration.h)
//
// At open the attributes are indexed in memory (attribute_index.h) for filters.
//
// Thread safety: the records, the graph and the attribute index are immutable
// after Open and may be read from any number of threads. The deleted set is
// guarded by the owning collection (its apply lock), not here. The calibration is
// loaded or measured once, under its own mutex.

#include <algorithm>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_set>
#include <vector>

#include "engine/attribute_index.h"
#include "engine/calibration.h"
#include "engine/filter.h"
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
  // `graph_labels_rows`: the HNSW graph written beside it labels its nodes with
  // row numbers (0..n-1) instead of ids (compaction and bulk load do; a seal saves
  // the in-memory graph, labelled with ids).
  // `side_rows` (SPANN, ascending): rows left out of the index -- truly held-out
  // calibration queries (a query that is also an indexed row predicts a recall
  // 0.02-0.05 off the mark) -- which every search scores exactly instead.
  static Status WriteRecords(const std::filesystem::path& dir, size_t dim, Metric metric, Kind kind,
                             std::span<const Row> rows, bool graph_labels_rows = false,
                             std::span<const uint32_t> side_rows = {});
  static std::filesystem::path GraphPath(const std::filesystem::path& dir) { return dir / "index.hnsw"; }
  static std::filesystem::path SpannPath(const std::filesystem::path& dir) { return dir / "spann"; }
  static std::filesystem::path CalibrationPath(const std::filesystem::path& dir) {
    return dir / "calibration.strata";
  }
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
  // One query against this segment: evaluates the filter on the attribute index,
  // plans (planner.h) and runs the plan. Returns the segment's top-k live matching
  // rows as ids; fills `explain` when given. The caller holds the collection's
  // apply lock shared; thread-safe otherwise. SPANN segments add what they read to `io`.
  struct Query {
    VectorView query;               // as given (indexes normalize for cosine themselves)
    const float* normalized;        // normalized for cosine (the same as query otherwise)
    const Filter* filter = nullptr; // null: none
    const std::string* filter_key = nullptr;  // the filter's canonical text: caches its rows
    const SearchOptions* options = nullptr;
    double recall_target = 0;       // resolved target (0: explicit parameters)
  };
  Result<std::vector<Neighbor>> Search(const Query& q, index::SearchContext& ctx, index::SpannContext& sctx,
                                       SegmentExplain* explain, index::SpannQueryStats* io) const;
  // Measures the calibration table and writes calibration.strata (called on a
  // freshly written segment before the manifest names it; a no-op when the writer
  // already measured it, with truly held-out queries, and Open loaded it).
  // `seconds`, when given: how long measuring took (0 for the no-op).
  Status CalibrateAndSave(size_t queries = 300, double* seconds = nullptr);
  // The calibration (loaded at open, or measured now and saved when missing).
  const Calibration& calibration() const;
  const AttributeIndex& attribute_index() const { return attr_index_; }
  Metric metric() const { return metric_; }
  size_t live_rows() const { return ids_.size() - deleted_.size(); }
  // Graph nodes beyond the rows: tombstones and free slots that a seal saved with
  // the in-memory graph (0 for SPANN and for graphs built from the rows). Cheap.
  size_t dead_index_nodes() const {
    return graph_ ? graph_->num_slots() - std::min(graph_->num_slots(), rows()) : 0;
  }

  // Marks `id` deleted when the segment holds it live; returns whether it did.
  bool MarkDeleted(VectorId id);
  bool IsDeleted(VectorId id) const { return deleted_.count(id) > 0; }
  const std::unordered_set<VectorId>& deleted() const { return deleted_; }
  size_t deleted_count() const { return deleted_.size(); }
  size_t memory_bytes() const;

  uint64_t deletes_generation = 0;  // generation of the persisted deletes file (0: none)

 private:
  SealedSegment() = default;
  Result<Calibration> Measure(size_t queries) const;
  // The rows matching `filter` (deleted ones included) and their count, from a
  // small cache of recent filters keyed by their canonical text (rows and
  // attributes never change; tenant filters repeat).
  std::pair<std::shared_ptr<const RowBitmap>, size_t> MatchingRows(const Filter& filter,
                                                                   const std::string* key) const;
  static constexpr size_t kFilterCacheEntries = 16;
  struct CachedFilter {
    std::string key;
    std::shared_ptr<const RowBitmap> bits;
    size_t count;
  };
  mutable std::mutex filter_cache_mu_;
  mutable std::list<CachedFilter> filter_cache_;
  // Rows the index may return: live and (when `match`) matching.
  struct RowFilter;
  std::filesystem::path dir_;
  uint64_t id_ = 0;
  size_t dim_ = 0;
  std::unique_ptr<storage::SectionFile> records_;
  std::span<const VectorId> ids_;
  const float* vectors_ = nullptr;
  std::span<const uint64_t> attr_offsets_;
  std::span<const std::byte> attrs_;
  Kind kind_ = Kind::kHnsw;
  Metric metric_ = Metric::kL2;
  uint32_t spann_lists_ = 0;        // SPANN: posting lists (from Stats() at open)
  size_t spann_memory_bytes_ = 0;
  bool graph_labels_rows_ = false;
  std::vector<uint32_t> side_rows_;  // SPANN: rows not in the index, scanned by every search
  std::vector<float> inv_norms_;  // cosine: 1/|row| of each stored vector
  AttributeIndex attr_index_;
  // Deleted ids (a subset of ids()) and their rows; guarded by the collection's apply lock.
  std::unordered_set<VectorId> deleted_;
  RowBitmap dead_rows_;
  mutable std::mutex calibration_mu_;
  mutable std::optional<Calibration> calibration_;
  std::unique_ptr<index::HnswIndex> graph_;
  std::unique_ptr<index::SpannIndex> spann_;
};

}  // namespace strata::engine
