#pragma once
// Collection: one named set of vectors with their attributes. Internal to the
// engine (the public API is engine/strata.h).
//
// Segments. Writes go to one in-memory segment (an HNSW graph plus the records
// as written); once it holds spec.seal_threshold vectors (or on Flush) it is
// sealed: written to disk as a SealedSegment (segment.h), the collection's
// manifest replaced atomically to name it, and the log restarted after it. Each
// id is live in at most one segment: an upsert or delete of an id held by a
// sealed segment marks it in that segment's deleted set, persisted at the next
// seal (until then the log holds the delete).
//
// Writes: a batch is validated, appended to the log as one record (durable per
// the durability mode when Append returns), then applied in memory. Writes and
// seals are serialized by write_mu_, so the log's order is the order of
// application and replaying the log rebuilds exactly what was acknowledged.
//
// Reads: Search and Get take apply_mu_ shared; applying a batch and swapping
// in a sealed segment take it exclusively (writing the segment's files does not),
// so a reader sees every batch entirely or not at all.
//
// Thread safety: all public methods may be called concurrently.

#include <atomic>
#include <filesystem>
#include <memory>
#include <condition_variable>
#include <utility>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "engine/fair_shared_mutex.h"
#include "engine/segment.h"
#include "engine/strata.h"
#include "engine/wal.h"
#include "index/hnsw/hnsw_index.h"

namespace strata::engine {

class Collection {
 public:
  // Creates the collection's folder (which must not exist) with an empty log.
  static Result<std::unique_ptr<Collection>> Create(const std::filesystem::path& dir, uint64_t id,
                                                    const CollectionSpec& spec,
                                                    const WalOptions& wal_options);
  // Opens an existing folder: maps its sealed segments and replays its log;
  // repairs (torn tails cut, leftovers of an interrupted seal removed) are added
  // to `report`. A damaged log is Corruption, or with `salvage_wal_tail` cut at its
  // first damaged record (EngineOptions::salvage_wal_tail).
  static Result<std::unique_ptr<Collection>> Open(const std::filesystem::path& dir, uint64_t id,
                                                  const CollectionSpec& spec,
                                                  const WalOptions& wal_options,
                                                  RecoveryReport& report, bool salvage_wal_tail = false);
  ~Collection();

  Status Write(const WriteBatch& batch, size_t max_ops);
  // Seals the in-memory segment now (a no-op when nothing was written since the last seal).
  Status Flush();
  // See Engine::BulkLoad.
  Status BulkLoad(const VectorSet& vectors, std::span<const VectorId> ids,
                  std::span<const Attributes> attributes);
  // Seals, then merges all sealed segments into one without the deleted vectors
  // (docs/formats/engine.md); a lone segment is rewritten when it has deleted rows
  // or dead graph nodes. Searches and writes go on meanwhile (writes wait only
  // for the seal and the final swap); deletes that reach the merged segments in
  // between are carried over. A call while another compaction runs returns at once.
  Status Compact();
  // True when the engine's background maintenance should compact: at least
  // kCompactSegments sealed segments, or dead entries -- deleted rows, and graph
  // nodes beyond a segment's rows (tombstones and free slots a seal saved) -- past
  // kCompactDeletedShare of all entries, even in a lone segment.
  bool WantsCompaction() const;
  // Dead entries (deleted or replaced rows, graph nodes saved beyond the rows) over all
  // entries of the sealed segments; 0 when there are none.
  double DeadShare() const;
  // A flush that leaves at least this share of dead entries also compacts (issue 14 D1:
  // disk and memory stay proportional to the live rows after a flush, however the
  // rows were rewritten).
  static constexpr double kFlushCompactDeadShare = 0.5;
  static constexpr size_t kCompactSegments = 4;
  static constexpr double kCompactDeletedShare = 0.2;
  Result<Record> Get(VectorId id) const;
  // Plans and runs the query over every segment (planner.h), merging their top-k.
  Result<std::vector<Neighbor>> Search(std::span<const float> query, const SearchOptions& options,
                                       Explain* explain = nullptr) const;
  CollectionInfo Info() const;
  uint64_t wal_bytes() const;
  uint64_t wal_fsyncs() const;
  uint64_t disk_reads() const { return disk_reads_.load(std::memory_order_relaxed); }
  uint64_t disk_read_bytes() const { return disk_read_bytes_.load(std::memory_order_relaxed); }
  // Segment maintenance so far (this process): calibrations measured (sealed and
  // in-memory segments), their seconds, and seconds spent building indexes (bulk
  // load and compaction; a seal saves a graph built by the writes).
  uint64_t calibrations() const { return calibrations_.load(std::memory_order_relaxed); }
  double calibration_seconds() const { return 1e-9 * double(calibration_ns_.load(std::memory_order_relaxed)); }
  double index_build_seconds() const { return 1e-9 * double(index_build_ns_.load(std::memory_order_relaxed)); }
  const std::filesystem::path& dir() const { return dir_; }
  const CollectionSpec& spec() const { return spec_; }
  uint64_t id() const { return id_; }
  // Stops taking writes and closes the log (syncing it).
  Status Close();

  // The log file that starts at `first_sequence`.
  static std::filesystem::path WalPath(const std::filesystem::path& dir, uint64_t first_sequence = 1);

 private:
  Collection(std::filesystem::path dir, uint64_t id, CollectionSpec spec, WalOptions wal_options);
  Result<std::unique_ptr<index::HnswIndex>> NewGraph() const;
  // Applies a decoded batch to memory (caller holds write_mu_ or is recovering).
  Status Apply(const WriteBatch& batch);
  // Marks `id` deleted in the sealed segment that holds it live, if any (caller
  // holds apply_mu_ exclusively).
  void DeleteFromSealed(VectorId id);
  Status SealLocked();  // caller holds write_mu_
  // Writes rows (sorted by id) as segment `sid` in `sdir`: records and an HNSW
  // graph, or SPANN past the memory budget. Caller holds write_mu_.
  // `times` gets the seconds spent building the index and calibrating it here.
  struct WriteTimes {
    double index_build_seconds = 0;
    double calibration_seconds = 0;
  };
  Status WriteSegment(const std::filesystem::path& sdir, std::span<const SealedSegment::Row> rows,
                      WriteTimes& times);
  // Adds to the maintenance counters.
  void CountCalibration(double seconds) const;
  void CountIndexBuild(double seconds) const;
  // SaveManifest, poisoning the collection when it fails (caller holds write_mu_).
  Status CommitManifest(uint64_t checkpoint, uint64_t wal_first, uint64_t next_segment, uint64_t generation,
                        const std::vector<std::pair<uint64_t, uint64_t>>& segments);
  Status SaveManifest(uint64_t checkpoint, uint64_t wal_first, uint64_t next_segment, uint64_t generation,
                      const std::vector<std::pair<uint64_t, uint64_t>>& segments) const;

  struct Stored {
    std::vector<float> vector;
    Attributes attributes;
    uint32_t row = 0;  // in mem_row_ids_ / mem_attrs_
    float inv_norm = 1;  // cosine: 1/|vector|, for exact scans
  };
  // Adds or replaces `id` in the in-memory segment's records and attribute index
  // (caller holds apply_mu_ exclusively).
  void StoreRecord(VectorId id, std::vector<float> vector, Attributes attributes);
  // Renumbers the in-memory rows once replaced and deleted ones outnumber the live
  // ones, so that rewriting the same ids does not grow mem_row_ids_ and mem_attrs_
  // (caller holds apply_mu_ exclusively).
  void MaybeRenumberMemoryRows();
  // The in-memory segment's part of a search (caller holds apply_mu_ shared).
  Result<std::vector<Neighbor>> SearchMemory(VectorView query, const float* normalized, const Filter* filter,
                                             const SearchOptions& options, double recall_target,
                                             index::SearchContext& ctx, SegmentExplain* explain) const;
  // The in-memory graph's calibration, measured again once the segment has doubled
  // since (caller holds apply_mu_ shared).
  std::shared_ptr<const Calibration> MemoryCalibration() const;

  const std::filesystem::path dir_;
  const uint64_t id_;
  const CollectionSpec spec_;
  const WalOptions wal_options_;
  mutable std::mutex write_mu_;         // one writer or seal at a time: log order = apply order
  mutable FairSharedMutex apply_mu_;    // readers shared; applying a batch or a seal exclusive
  // The in-memory segment (guarded by apply_mu_).
  std::unordered_map<VectorId, Stored> records_;
  std::unique_ptr<index::HnswIndex> hnsw_;
  std::vector<VectorId> mem_row_ids_;  // row -> id (rows of replaced or deleted records stay, dead)
  AttributeIndex mem_attrs_;
  // The in-memory graph's calibration and the size it was measured at.
  mutable std::mutex mem_calibration_mu_;
  mutable std::shared_ptr<const Calibration> mem_calibration_;
  mutable size_t mem_calibration_rows_ = 0;
  mutable uint64_t mem_calibration_epoch_ = 0;
  uint64_t mem_epoch_ = 1;  // bumped when a seal replaces the in-memory graph (guarded by apply_mu_)
  // Sealed segments, oldest first (guarded by apply_mu_; deleted sets too).
  std::vector<std::unique_ptr<SealedSegment>> sealed_;
  // Guarded by write_mu_.
  std::unique_ptr<WalWriter> wal_;
  uint64_t wal_bytes_before_ = 0;   // written to log files since closed by seals (this process)
  uint64_t wal_fsyncs_before_ = 0;
  // Published after each write and seal, so that counters never wait on write_mu_.
  std::atomic<uint64_t> wal_bytes_{0}, wal_fsyncs_{0};
  void PublishWalCounters();  // caller holds write_mu_ (or is opening)
  uint64_t wal_first_ = 1;        // first sequence of the current log file
  uint64_t next_segment_id_ = 1;
  uint64_t generation_ = 0;       // bumped by every seal and compaction
  uint64_t checkpoint_ = 0;       // log sequence the manifest on disk has sealed up to
  // (entries, dead entries) of the sealed segments; apply_mu_ held.
  std::pair<size_t, size_t> SealedEntriesLocked() const;
  bool compacting_ = false;       // a compaction is between its phases
  std::condition_variable compaction_done_;  // with write_mu_: compacting_ went false
  bool dirty_ = false;            // something was written since the last seal
  // Automatic seals: when records_ or the log reach these (raised after a failed seal).
  static constexpr uint64_t kSealLogBytes = 256ull << 20;
  size_t seal_retry_size_ = 0;
  uint64_t seal_retry_log_bytes_ = kSealLogBytes;
  std::atomic<uint64_t> last_sequence_{0};
  mutable std::atomic<uint64_t> disk_reads_{0}, disk_read_bytes_{0};
  mutable std::atomic<uint64_t> calibrations_{0}, calibration_ns_{0}, index_build_ns_{0};
  Status poisoned_;  // set when the log failed: later writes are refused
};

}  // namespace strata::engine
