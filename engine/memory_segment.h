#pragma once
// MemorySegment: the mutable segment of a collection, which takes its writes.
//
// Rows. Every upsert appends a row (id, key, vector as written, attributes); a row is
// never changed afterwards except for the sequence at which it stopped being live
// (replaced by a later upsert of its id, or deleted). Rows live in chunks that
// never move, reached through a table that grows by copy (old tables are kept until
// the segment dies), so a reader indexes rows without a lock while the writer
// appends.
//
// Visibility. A snapshot (collection.h) sees the rows below its row limit whose
// removal sequence is above its own sequence. A write batch appends its rows past
// every published limit and marks the rows it replaces with its own sequence, so a
// search sees all of a batch or none of it: exactly when a snapshot that covers it
// is published.
//
// Index. An HNSW graph labelled with rows. Searches and inserts run at once
// (hnsw_index.h); a search's filter drops rows its snapshot does not see, so rows
// being inserted route but are never returned. Replaced rows stay in the graph
// until the segment is sealed (the collection seals once the rows, live or not,
// reach its threshold).
//
// Thread safety: one writer at a time (the owning collection's write lock) may call
// the writer methods; readers (View, RowAt, Calibrate) may run concurrently with
// it and with each other. The id map, the key map and the attribute index are guarded by a
// shared mutex that the writer holds exclusively only while it books a batch's rows
// into them (no graph work, no I/O); the graph and the rows need no lock.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/attribute_index.h"
#include "engine/calibration.h"
#include "engine/segment.h"
#include "engine/write_batch.h"
#include "index/hnsw/hnsw_index.h"

namespace strata::engine {

class MemorySegment {
 public:
  static constexpr uint32_t kNoRow = UINT32_MAX;
  static constexpr uint64_t kLive = UINT64_MAX;  // removal sequence of a live row

  static Result<std::shared_ptr<MemorySegment>> Create(size_t dim, Metric metric,
                                                       const index::HnswOptions& graph_options);
  ~MemorySegment();

  // ---- Writer (one at a time) ----
  // A new upsert of `id` (with `key`, empty when written by id): appends its row (not
  // visible until published) after `prev` (the id's previous row here, or kNoRow).
  // Returns the row.
  uint32_t AppendRow(VectorId id, std::string_view key, std::span<const float> vector,
                     const Attributes& attributes, uint32_t prev);
  // Books rows [begin, end) into the id map and the attribute index, then inserts
  // them into the graph (on `threads` threads when many; 0: all cores).
  Status IndexRows(uint32_t begin, uint32_t end, uint32_t threads = 0);
  // The id's latest row here (live or not), or kNoRow.
  uint32_t LatestRow(VectorId id) const;
  // Whether `row` is live for the writer (no removal recorded yet).
  bool LiveNow(uint32_t row) const { return removed_at(row) == kLive; }
  // Records that `row` stopped being live at `sequence`.
  void Remove(uint32_t row, uint64_t sequence);
  // Rows appended (live or not) and live for the writer.
  uint32_t rows() const { return rows_.load(std::memory_order_acquire); }
  uint64_t live_now() const { return live_; }

  // ---- Readers ----
  // This segment as a snapshot sees it: rows below `limit` not removed at or
  // before `sequence` (`live` of them, counted by the writer when it published).
  class View;
  // The row of `id` that a snapshot (limit, sequence) sees live, if any.
  std::optional<uint32_t> RowAt(VectorId id, uint32_t limit, uint64_t sequence) const;
  // The row with `key` that a snapshot (limit, sequence) sees live, if any.
  std::optional<uint32_t> RowAtKey(std::string_view key, uint32_t limit, uint64_t sequence) const;
  // The row's key (empty: written by id).
  const std::string& key(uint32_t row) const { return chunk(row).keys[row & mask_]; }
  VectorId id(uint32_t row) const { return chunk(row).ids[row & mask_]; }
  const float* vector(uint32_t row) const { return &chunk(row).vectors[size_t(row & mask_) * dim_]; }
  float inv_norm(uint32_t row) const { return chunk(row).inv_norms[row & mask_]; }
  const Attributes& attributes(uint32_t row) const { return chunk(row).attributes[row & mask_]; }
  uint64_t removed_at(uint32_t row) const { return chunk(row).removed[row & mask_].load(std::memory_order_relaxed); }
  uint32_t prev(uint32_t row) const { return chunk(row).prev[row & mask_]; }
  const index::HnswIndex& graph() const { return *graph_; }
  size_t dim() const { return dim_; }
  Metric metric() const { return metric_; }

  // The calibration measured by Calibrate (null before), and the live rows it was
  // measured at.
  std::shared_ptr<const Calibration> calibration() const { return std::atomic_load(&calibration_); }
  uint64_t calibrated_rows() const { return calibrated_rows_.load(std::memory_order_relaxed); }
  // Measures the calibration on `view` (maintenance; never from a search) and
  // publishes it. Returns the seconds spent. Thread-compatible with itself.
  Result<double> Calibrate(const View& view);

  // Resident bytes: rows, graph, maps (approximate).
  size_t memory_bytes() const;

 private:
  MemorySegment(size_t dim, Metric metric);
  struct Chunk {
    Chunk(size_t rows, size_t dim);
    std::unique_ptr<VectorId[]> ids;
    std::unique_ptr<float[]> vectors;
    std::unique_ptr<float[]> inv_norms;
    std::unique_ptr<Attributes[]> attributes;
    std::unique_ptr<uint32_t[]> prev;
    std::unique_ptr<std::string[]> keys;
    std::unique_ptr<uint32_t[]> key_prev;  // the key's previous row here (kNoRow: none)
    std::unique_ptr<std::atomic<uint64_t>[]> removed;
  };
  struct Table {
    size_t capacity = 0;  // chunks
    std::unique_ptr<Chunk*[]> chunks;
  };
  const Chunk& chunk(uint32_t row) const {
    return *table_.load(std::memory_order_acquire)->chunks[row >> shift_];
  }
  Chunk& mutable_chunk(uint32_t row) { return *table_.load(std::memory_order_relaxed)->chunks[row >> shift_]; }

  const size_t dim_;
  const Metric metric_;
  uint32_t shift_ = 0;  // rows per chunk = 1 << shift_
  uint32_t mask_ = 0;
  std::atomic<Table*> table_{nullptr};
  std::vector<std::unique_ptr<Table>> tables_;   // writer: every table made (readers may hold old ones)
  std::vector<std::unique_ptr<Chunk>> chunks_;   // writer: owns the chunks
  std::atomic<uint32_t> rows_{0};
  uint64_t live_ = 0;      // writer
  std::unique_ptr<index::HnswIndex> graph_;
  // Guarded by map_mu_ (writer exclusive while booking, readers shared).
  mutable std::shared_mutex map_mu_;
  std::unordered_map<VectorId, uint32_t> latest_;  // id -> its latest row
  AttributeIndex attrs_;
  uint32_t booked_ = 0;    // rows booked into latest_ and attrs_
  std::unordered_map<VectorId, uint32_t> pending_;  // writer: rows appended, not booked yet
  // Keys: key -> its latest row (guarded by map_mu_), and the writer's unbooked ones.
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, uint32_t, KeyHash, std::equal_to<>> latest_key_;
  std::unordered_map<std::string, uint32_t, KeyHash, std::equal_to<>> pending_keys_;
  uint32_t LatestKeyRow(std::string_view key) const;  // writer
  std::atomic<uint64_t> key_bytes_{0};  // bytes of keys held (memory_bytes)
  std::atomic<uint32_t> keyed_rows_{0};
  std::shared_ptr<const Calibration> calibration_;  // std::atomic_load / atomic_store
  std::atomic<uint64_t> calibrated_rows_{0};
};

class MemorySegment::View final : public Segment {
 public:
  // `name`: what EXPLAIN calls it ("memory", or "memory (sealing)" for a frozen one).
  View(const MemorySegment& segment, uint32_t limit, uint64_t sequence, uint64_t live,
       std::shared_ptr<const Calibration> calibration, const char* name = "memory")
      : seg_(segment), limit_(limit), sequence_(sequence), live_(live), calibration_(std::move(calibration)),
        name_(name) {}
  std::string name() const override { return name_; }
  SegmentKind kind() const override { return SegmentKind::kHnsw; }
  uint32_t row_bound() const override { return limit_; }
  uint64_t live_rows() const override { return live_; }
  bool IsLive(uint32_t row) const override { return row < limit_ && seg_.removed_at(row) > sequence_; }
  void LiveRows(std::vector<uint32_t>& out) const override;
  VectorId id(uint32_t row) const override { return seg_.id(row); }
  const float* vector(uint32_t row, float*) const override { return seg_.vector(row); }
  void PrefetchVector(uint32_t row) const override {
    const char* p = reinterpret_cast<const char*>(seg_.vector(row));
    for (size_t off = 0; off < seg_.dim() * sizeof(float); off += 64) __builtin_prefetch(p + off);
  }
  float inv_norm(uint32_t row) const override { return seg_.inv_norm(row); }
  const Calibration* calibration() const override { return calibration_.get(); }
  std::string calibration_origin() const override;
  // Plans with `calibration`, measured on sealed segment `segment` of `rows` rows (EXPLAIN
  // says so), while this one has none of its own. By the view's owner, before searching.
  View& WithStandIn(std::shared_ptr<const Calibration> calibration, uint64_t segment, uint64_t rows) {
    calibration_ = std::move(calibration);
    stand_in_segment_ = segment;
    stand_in_rows_ = rows;
    return *this;
  }
  MatchingRows Match(const Filter& filter, const std::string* key) const override;
  double EstimateSelectivity(const Filter& filter) const override;
  uint8_t AttributeKinds(std::string_view name) const override;
  Result<std::vector<Neighbor>> IndexSearch(const SegmentQuery& q, uint32_t want, uint32_t param,
                                            const RowBitmap* allowed, SearchScratch& scratch, SegmentExplain& ex,
                                            index::SpannQueryStats* io) const override;
  size_t dim() const override { return seg_.dim(); }
  Metric metric() const override { return seg_.metric(); }

 private:
  const MemorySegment& seg_;
  uint32_t limit_;
  uint64_t sequence_;
  uint64_t live_;
  std::shared_ptr<const Calibration> calibration_;
  uint64_t stand_in_segment_ = 0, stand_in_rows_ = 0;  // WithStandIn (rows 0: none)
  const char* name_;
};

}  // namespace strata::engine
