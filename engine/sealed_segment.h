#pragma once
// SealedSegment: an immutable slice of a collection on disk -- its records
// (ids, vectors as written, attributes) and the index over them, an HNSW graph
// or a SPANN index.
//
// Files in the segment's folder (docs/formats/engine.md):
//   records.strata   section file "STRSEG": META, IDS (sorted u64), VECS (in id order, in
//                    the narrowest element type that holds every value exactly: uint8,
//                    int8, float16 or float32; META.element, version 1.4), AOFF (u64 offsets into ATTR, count + 1), ATTR (attribute blobs),
//                    SIDE (optional, u32 rows a SPANN index leaves out), and when any row
//                    has a string key (version 1.3) KOFF (u64 offsets into KEYS, count + 1),
//                    KEYS (the keys' bytes), KORD (u32 keyed rows in key order)
//   index.hnsw       HNSW segments: the graph, labelled with ids (older seals) or
//                    with rows (META.graph_labels; hnsw.md)
//   spann/           SPANN segments: the index over rows 0..n-1 in id order (spann.md),
//                    labelled with row numbers, except the SIDE rows of records.strata
//   deletes-<g>.ids  section file "STRDEL": DELS (sorted u64), written when a seal or
//                    compaction persists the deletes of generation g
//   calibration.strata  recall per ef / max_lists measured on the segment (calibration.h)
//
// At open the attributes are indexed in memory (attribute_index.h) for filters.
//
// Deletes are not part of the segment: a snapshot pairs it with a DeleteSet (the
// rows deleted since it was sealed), which writers replace copy-on-write.
//
// Thread safety: immutable after Open, except the calibration, which maintenance
// may measure and publish once (atomically) while searches run; any number of
// threads may read and search a segment at once.

#include <algorithm>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/element.h"
#include "engine/attribute_index.h"
#include "engine/calibration.h"
#include "engine/filter.h"
#include "engine/segment.h"
#include "engine/strata.h"
#include "index/hnsw/hnsw_index.h"
#include "index/spann/spann_index.h"
#include "storage/section_file.h"

namespace strata::engine {

class SealedSegment;

// The rows of a sealed segment deleted since it was sealed. Immutable once a
// snapshot holds it: a writer copies it, marks rows and publishes the copy.
struct DeleteSet {
  RowBitmap rows;  // size: the segment's rows
  uint64_t count = 0;
  // The deleted ids, ascending (rows are in id order).
  std::vector<VectorId> Ids(const SealedSegment& segment) const;
};

class SealedSegment {
 public:
  enum class Kind : uint32_t { kHnsw = 0, kSpann = 1 };
  struct Row {
    VectorId id;
    const float* vector;  // dim floats
    const Attributes* attributes;
    std::string_view key{};  // empty: written by id
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
  // The row's attributes alone (a search's with_attributes); Corruption when they do not decode.
  Result<Attributes> ReadAttributes(size_t row) const;
  // The row's key (empty: written by id); a view of the mapped file, valid while the
  // segment lives.
  std::string_view key(size_t row) const {
    return key_offsets_.empty() ? std::string_view()
                                : std::string_view(reinterpret_cast<const char*>(keys_.data()) + key_offsets_[row],
                                                   key_offsets_[row + 1] - key_offsets_[row]);
  }
  // Row with `key`, if the segment holds it (deleted or not): a binary search of KORD.
  std::optional<size_t> FindKey(std::string_view key) const;
  // The row's vector as written: a pointer into the mapped file when the segment stores
  // float32, else the row widened into `buf` (dim floats), which it returns.
  const float* vector(size_t row, float* buf) const {
    if (element_ == ElementType::kFloat32) return float32_row(row);
    WidenRow(element_, vecs_.data() + row * row_bytes_, dim_, buf);
    return buf;
  }
  // The row in the mapped file, of a segment that stores float32 (element() == kFloat32).
  const float* float32_row(size_t row) const { return reinterpret_cast<const float*>(vecs_.data()) + row * dim_; }
  // Starts loading the row's stored vector into the cache.
  void PrefetchVector(size_t row) const {
    const char* p = reinterpret_cast<const char*>(vecs_.data()) + row * row_bytes_;
    for (size_t off = 0; off < row_bytes_; off += 64) __builtin_prefetch(p + off);
  }
  // How VECS stores the vectors (float32 for segments written before 1.4).
  ElementType element() const { return element_; }
  Kind kind() const { return kind_; }
  // Measures the calibration table and writes calibration.strata (called on a
  // freshly written segment before the manifest names it; a no-op when the writer
  // already measured it, with truly held-out queries, and Open loaded it).
  // `seconds`, when given: how long measuring took (0 for the no-op).
  Status CalibrateAndSave(size_t queries = 300, double* seconds = nullptr, bool progress = false);
  // The calibration, loaded at open or measured by CalibrateAndSave; null until then
  // (a segment written before calibration existed, until maintenance measures it).
  std::shared_ptr<const Calibration> calibration() const { return std::atomic_load(&calibration_); }
  // The HNSW graph's build options (null for SPANN).
  const index::HnswOptions* graph_options() const { return graph_ ? &graph_->options() : nullptr; }
  const AttributeIndex& attribute_index() const { return attr_index_; }
  Metric metric() const { return metric_; }
  // Graph nodes beyond the rows: tombstones and free slots that a seal saved with
  // the in-memory graph (0 for SPANN and for graphs built from the rows). Cheap.
  size_t dead_index_nodes() const {
    return graph_ ? graph_->num_slots() - std::min(graph_->num_slots(), rows()) : 0;
  }

  // Resident bytes, computed at open (the deletes are counted by their owner).
  size_t memory_bytes() const { return memory_bytes_; }

  // What the index returns for `q` at `param`, as rows (see Segment::IndexSearch):
  // live per `deletes` (null: none deleted) and, with `allowed`, set there.
  Result<std::vector<Neighbor>> IndexSearch(const SegmentQuery& q, uint32_t want, uint32_t param,
                                            const DeleteSet* deletes, const RowBitmap* allowed,
                                            SearchScratch& scratch, SegmentExplain& ex,
                                            index::SpannQueryStats* io) const;
  // The rows matching `filter` (deleted ones included) and their count, from a
  // small cache of recent filters keyed by their canonical text (rows and
  // attributes never change; tenant filters repeat).
  std::pair<std::shared_ptr<const RowBitmap>, size_t> FilterRows(const Filter& filter,
                                                                   const std::string* key) const;
  float inv_norm(size_t row) const { return inv_norms_.empty() ? 1.0f : inv_norms_[row]; }
  uint32_t spann_lists() const { return spann_lists_; }
  size_t dim() const { return dim_; }

  // This segment as a snapshot sees it, with `deletes` (null: none).
  class View;

 private:
  SealedSegment() = default;
  Result<Calibration> Measure(size_t queries, bool progress = false) const;
  static constexpr size_t kFilterCacheEntries = 16;
  struct CachedFilter {
    std::string key;
    std::shared_ptr<const RowBitmap> bits;
    size_t count;
  };
  mutable std::mutex filter_cache_mu_;
  mutable std::list<CachedFilter> filter_cache_;
  // Which labels the index may return (labels are rows or ids).
  struct RowFilter;
  std::filesystem::path dir_;
  uint64_t id_ = 0;
  size_t dim_ = 0;
  std::unique_ptr<storage::SectionFile> records_;
  std::span<const VectorId> ids_;
  std::span<const std::byte> vecs_;  // VECS: rows x row_bytes_
  ElementType element_ = ElementType::kFloat32;
  size_t row_bytes_ = 0;
  std::span<const uint64_t> attr_offsets_;
  std::span<const std::byte> attrs_;
  Kind kind_ = Kind::kHnsw;
  Metric metric_ = Metric::kL2;
  uint32_t spann_lists_ = 0;        // SPANN: posting lists (from Stats() at open)
  size_t spann_memory_bytes_ = 0;
  size_t memory_bytes_ = 0;  // computed at open
  bool graph_labels_rows_ = false;
  std::span<const uint64_t> key_offsets_;  // empty: no keys
  std::span<const std::byte> keys_;
  std::span<const uint32_t> key_order_;
  // Reads and checks KOFF / KEYS / KORD when present (Open).
  Status LoadKeys(const std::filesystem::path& path);
  std::vector<uint32_t> side_rows_;  // SPANN: rows not in the index, scanned by every search
  std::vector<float> inv_norms_;  // cosine: 1/|row| of each stored vector
  AttributeIndex attr_index_;
  std::shared_ptr<const Calibration> calibration_;  // std::atomic_load / atomic_store
  std::unique_ptr<index::HnswIndex> graph_;
  std::unique_ptr<index::SpannIndex> spann_;
};

class SealedSegment::View final : public Segment {
 public:
  View(const SealedSegment& segment, const DeleteSet* deletes, std::shared_ptr<const Calibration> calibration)
      : seg_(segment), deletes_(deletes), calibration_(std::move(calibration)) {}
  std::string name() const override;
  SegmentKind kind() const override {
    return seg_.kind() == Kind::kHnsw ? SegmentKind::kHnsw : SegmentKind::kSpann;
  }
  uint32_t row_bound() const override { return uint32_t(seg_.rows()); }
  uint64_t live_rows() const override { return seg_.rows() - (deletes_ ? deletes_->count : 0); }
  bool IsLive(uint32_t row) const override { return !deletes_ || !deletes_->rows.Test(row); }
  void LiveRows(std::vector<uint32_t>& out) const override;
  VectorId id(uint32_t row) const override { return seg_.ids()[row]; }
  const float* vector(uint32_t row, float* buf) const override { return seg_.vector(row, buf); }
  void PrefetchVector(uint32_t row) const override { seg_.PrefetchVector(row); }
  float inv_norm(uint32_t row) const override { return seg_.inv_norm(row); }
  const Calibration* calibration() const override { return calibration_.get(); }
  uint32_t spann_lists() const override { return seg_.spann_lists(); }
  MatchingRows Match(const Filter& filter, const std::string* key) const override;
  uint8_t AttributeKinds(std::string_view name) const override {
    return seg_.attribute_index().KindsOf(name);
  }
  double EstimateSelectivity(const Filter& filter) const override {
    return seg_.attribute_index().EstimateSelectivity(filter);
  }
  Result<std::vector<Neighbor>> IndexSearch(const SegmentQuery& q, uint32_t want, uint32_t param,
                                            const RowBitmap* allowed, SearchScratch& scratch, SegmentExplain& ex,
                                            index::SpannQueryStats* io) const override {
    return seg_.IndexSearch(q, want, param, deletes_, allowed, scratch, ex, io);
  }
  size_t dim() const override { return seg_.dim(); }
  Metric metric() const override { return seg_.metric(); }

 private:
  const SealedSegment& seg_;
  const DeleteSet* deletes_;
  std::shared_ptr<const Calibration> calibration_;
};

}  // namespace strata::engine
