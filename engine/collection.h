#pragma once
// Collection: one named set of vectors with their attributes. Internal to the
// engine (the public API is engine/strata.h). docs/DESIGN.md has the picture.
//
// A collection is a write-ahead log, a manifest (manifest.h) and an immutable
// Snapshot: the in-memory segment taking writes (memory_segment.h), at most one
// frozen in-memory segment being sealed, and the sealed segments (sealed_segment.h)
// with their delete sets. Each id is live in at most one segment.
//
// Writes. A batch is validated, appended to the log as one record (durable per the
// durability mode when Append returns), then applied: its rows are appended to the
// in-memory segment and inserted into its graph while searches go on, the rows it
// replaces or deletes are marked (in-memory rows with the batch's sequence; sealed
// rows in copies of their delete sets), and a new snapshot is published. A search
// sees all of a batch or none of it. Writers are serialized by write_mu_, so the
// log's order is the order of application and replaying the log rebuilds exactly
// what was acknowledged.
//
// Reads. Search and Get copy the current snapshot pointer (under a mutex held for
// that copy alone) and never wait for a writer or for maintenance; SPANN reads
// happen without any lock.
//
// Maintenance (Maintain, on the engine's background thread; Flush and Compact run
// the same jobs in the caller's thread). A seal freezes the in-memory segment (a
// new log file starts; writes go to a fresh in-memory segment at once), writes the
// frozen rows as a sealed segment (its graph saved relabelled, then calibrated),
// commits the manifest and publishes a snapshot without the frozen segment. The
// in-memory segment is calibrated in the background once it reaches
// kMinCalibrationRows and again whenever it has doubled; until then the planner
// borrows a sealed segment's calibration (StandInCalibration) or, with none that
// fits, uses a fixed ef (docs/PLANNER.md). Compaction merges the sealed segments without
// their dead rows, on its own thread: a seal never waits for a compaction (only for
// the other's short commit, under manifest_mu_). Lock order: compact_mu_, seal_mu_,
// manifest_mu_, write_mu_.
//
// Thread safety: all public methods may be called concurrently.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "engine/insert_thread.h"
#include "engine/manifest.h"
#include "engine/memory_segment.h"
#include "engine/sealed_segment.h"
#include "engine/segment_writer.h"
#include "engine/strata.h"
#include "engine/wal.h"

namespace strata::engine {

class Collection {
 public:
  // Creates the collection's folder (which must not exist) with an empty log.
  static Result<std::unique_ptr<Collection>> Create(const std::filesystem::path& dir, uint64_t id,
                                                    const CollectionSpec& spec,
                                                    const WalOptions& wal_options,
                                                    uint32_t memory_ef_construction = 0);
  // Opens an existing folder: maps its sealed segments and replays its logs;
  // repairs (torn tails cut, leftovers of an interrupted seal removed) are added
  // to `report`. A damaged log is Corruption, or with `salvage_wal_tail` cut at its
  // first damaged record (EngineOptions::salvage_wal_tail).
  static Result<std::unique_ptr<Collection>> Open(const std::filesystem::path& dir, uint64_t id,
                                                  const CollectionSpec& spec,
                                                  const WalOptions& wal_options,
                                                  RecoveryReport& report, bool salvage_wal_tail = false,
                                                  uint32_t memory_ef_construction = 0);
  ~Collection();

  // `resolved`, when given, receives on success the id of each operation (keyed ones as
  // resolved; kInvalidVectorId for a delete of an absent key).
  Status Write(const WriteBatch& batch, size_t max_ops, std::vector<VectorId>* resolved = nullptr);
  // Seals the in-memory segment now (a no-op when nothing was written since the
  // last seal), waiting for a maintenance job in progress.
  Status Flush();
  // See Engine::BulkLoad.
  // With `keys` (then `ids` is empty), the rows get fresh ids from the keyed range.
  Status BulkLoad(const VectorSet& vectors, std::span<const VectorId> ids,
                  std::span<const Attributes> attributes, std::span<const std::string> keys = {});
  // Seals, then merges all sealed segments into one without the deleted vectors
  // (docs/formats/engine.md); a lone segment is rewritten when it has deleted rows
  // or dead graph nodes. Searches and writes go on meanwhile; deletes that reach the
  // merged segments in between are carried over. Waits for a maintenance job in
  // progress, so that a Compact that returns OK has covered every write
  // acknowledged before it.
  Status Compact();
  // One round of background maintenance: seals what is frozen (or the in-memory
  // segment when it is over its threshold), calibrates the in-memory segment when
  // due and sealed segments that lack a calibration. Returns at once when another
  // seal runs.
  Status MaintainSeals();
  // Background compaction: compacts when WantsCompaction. Returns at once when
  // another compaction runs.
  Status MaintainCompaction();
  // Called (without locks held) when a writer froze the in-memory segment, so
  // that the seal starts at once.
  void SetMaintenanceWakeup(std::function<void()> wake) { wake_ = std::move(wake); }
  // Where a write's graph insertion runs (insert_thread.h); without one, in the writer's thread.
  void SetInsertThread(InsertThread* t, uint32_t threads) {
    insert_thread_ = t;
    insert_threads_ = threads;
  }
  // EngineOptions::progress: bulk loads and compactions report progress on stderr.
  void SetProgress(bool on) { progress_ = on; }
  // True when the engine's background maintenance should compact: at least
  // kCompactSegments sealed segments, or dead entries -- deleted rows, and graph
  // nodes beyond a segment's rows (tombstones a seal saved) -- past
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
  // String keys (api/types.h; Engine has the contracts). Each reads one snapshot.
  Result<Record> GetByKey(std::string_view key) const;
  Result<VectorId> FindKey(std::string_view key) const;
  Result<KeyPage> ListKeys(uint64_t cursor, size_t count) const;
  Result<KeyPage> ListIds(uint64_t cursor, size_t count) const;
  Result<std::vector<std::string>> RandomKeys(size_t count, uint64_t seed) const;
  // Plans and runs the query over every segment of the current snapshot (segment.h),
  // merging their top-k.
  // With `keys`, also each hit's key (empty for records written by id), and with
  // `attributes` each hit's attributes, looked up in the same snapshot once the top-k is
  // chosen.
  Result<std::vector<Neighbor>> Search(std::span<const float> query, const SearchOptions& options,
                                       Explain* explain = nullptr, std::vector<std::string>* keys = nullptr,
                                       std::vector<Attributes>* attributes = nullptr) const;
  // O(1): counts kept with the snapshot.
  CollectionInfo Info() const;
  // Filter::Warnings against the attributes of every segment of the current snapshot.
  std::vector<std::string> FilterWarnings(const Filter& filter) const;
  // Writes a consistent copy of the collection's folder to `dest` (which must not
  // exist; its parent must): the sealed segments named by the manifest in force as
  // hard links (copies across file systems), that manifest, and the logs after it up
  // to the last acknowledged batch. Seals and compactions wait at their commit
  // meanwhile; writers only for a log sync at the start; searches not at all.
  Result<SnapshotReport> SnapshotTo(const std::filesystem::path& dest);
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
  // The folder of sealed segment `id`.
  static std::filesystem::path SegmentDir(const std::filesystem::path& dir, uint64_t id);

 private:
  struct SealedEntry {
    std::shared_ptr<const SealedSegment> segment;
    std::shared_ptr<const DeleteSet> deletes;  // null: nothing deleted
    uint64_t deletes_generation = 0;           // of the persisted deletes file (0: none)
    uint64_t deleted() const { return deletes ? deletes->count : 0; }
    uint64_t live() const { return segment->rows() - deleted(); }
  };
  // What one search sees. Immutable once published.
  struct Snapshot {
    uint64_t sequence = 0;  // the last batch applied
    std::shared_ptr<MemorySegment> memory;
    uint32_t memory_rows = 0;
    uint64_t memory_live = 0;
    std::shared_ptr<MemorySegment> frozen;  // being sealed (null: none)
    uint32_t frozen_rows = 0;
    uint64_t frozen_live = 0;
    uint64_t frozen_sequence = 0;  // the last batch in it
    std::vector<SealedEntry> sealed;  // oldest first
    uint64_t live() const;
  };

  Collection(std::filesystem::path dir, uint64_t id, CollectionSpec spec, WalOptions wal_options,
             uint32_t memory_ef_construction);
  Result<std::shared_ptr<MemorySegment>> NewMemorySegment() const;
  // The current snapshot. snapshot_mu_ guards only the pointer copy (nanoseconds, no
  // work under it): std::atomic<std::shared_ptr> would do, but libstdc++ 12's lock bit
  // is invisible to ThreadSanitizer.
  std::shared_ptr<const Snapshot> snapshot() const {
    std::lock_guard<std::mutex> g(snapshot_mu_);
    return snapshot_;
  }
  void Publish(std::shared_ptr<const Snapshot> next) {
    {
      std::lock_guard<std::mutex> g(snapshot_mu_);
      snapshot_.swap(next);
    }
    // `next` (the old snapshot) is released here, outside the lock.
  }
  // Applies a batch with log sequence `sequence` and publishes it (caller holds
  // write_mu_ or is recovering). `ids`: the id of each operation, keys resolved
  // (kInvalidVectorId: a delete of an absent key, skipped); empty: the ops' own ids
  // (a batch read back from the log).
  Status Apply(const WriteBatch& batch, uint64_t sequence, std::span<const VectorId> ids = {});
  // Where a record lives in a snapshot: a memory segment's row or a sealed one's.
  struct Location {
    const MemorySegment* memory = nullptr;
    const SealedSegment* sealed = nullptr;
    uint32_t row = 0;
    explicit operator bool() const { return memory || sealed; }
  };
  // A calibration to plan an in-memory segment (`mem`: `rows` rows in the snapshot, `live`
  // of them live) with until maintenance has measured its own (docs/PLANNER.md,
  // "stand-in"): that of the largest sealed HNSW segment of `s` whose graph was built alike
  // (same M and encoding, no codes, an ef_construction no higher than `mem`'s) and that
  // holds at least `rows` rows -- a graph searched at the same ef finds at least as much of
  // a smaller set built alike from the same data. Only while `mem` is small (kStandInMaxRows
  // live rows: maintenance calibrates it at kMinCalibrationRows) and mostly live
  // (kStandInMinLiveShare of `rows`: a walk that skips many replaced rows is a filtered
  // search, which the borrowed tables do not measure). Empty (the planner's fixed, generous
  // parameters) otherwise. Any thread, on a snapshot it holds.
  struct StandIn {
    std::shared_ptr<const Calibration> calibration;  // null: none
    uint64_t segment = 0;                            // the sealed segment it was measured on
    uint64_t rows = 0;                               // that segment's rows
  };
  static constexpr uint64_t kStandInMaxRows = 4 * kMinCalibrationRows;
  static constexpr double kStandInMinLiveShare = 0.875;
  StandIn StandInCalibration(const Snapshot& s, const MemorySegment& mem, uint64_t rows, uint64_t live) const;
  Location LocateId(const Snapshot& s, VectorId id) const;
  std::vector<std::string> FilterWarningsIn(const Snapshot& s, const Filter& filter) const;
  Location LocateKey(const Snapshot& s, std::string_view key) const;
  Result<Record> ReadAt(const Location& at) const;
  // Resolves the batch's keys against the current state (caller holds write_mu_):
  // the id of every operation (see Apply), fresh ids taken from next_key_id_.
  // ResourceExhausted (nothing written) once the keyed range is spent.
  Result<std::vector<VectorId>> ResolveKeys(const WriteBatch& batch);
  // Every live keyed record of `s` with id >= `from`, at most `count` per segment; with
  // `keyed_only` false, every live record (keys empty for those written by id).
  void CollectKeyed(const Snapshot& s, VectorId from, size_t count,
                    std::vector<std::pair<VectorId, std::string>>& out, bool keyed_only = true) const;
  // Freezes the in-memory segment and starts a new log file after it (caller holds
  // write_mu_; no frozen segment may be pending). A no-op when nothing was written.
  Status FreezeLocked();
  // Backpressure (called by Write before it takes write_mu_): while a frozen segment
  // is still being sealed and the in-memory segment has reached the threshold again,
  // waits for the seal -- at most kSealWaitLimit, then goes on (and says so) -- so
  // that memory stays near two segments' worth however little CPU the seal gets
  // (EngineOptions::background_idle).
  void WaitForSealRoom();
  static constexpr std::chrono::seconds kSealWaitLimit{60};
  // Writes the frozen segment as a sealed one and commits it (caller holds seal_mu_).
  Status SealFrozen();
  // Freeze (unless a frozen segment is pending) and SealFrozen (caller holds seal_mu_).
  Status SealNow();
  // The compaction proper (caller holds compact_mu_).
  Status CompactLocked();
  // Background calibrations that are due (caller holds seal_mu_).
  void CalibrateDue();
  // Persists the delete sets of `entries` as generation `gen` (entries with none
  // get 0) and fills `listed` for the manifest (caller holds manifest_mu_).
  Status PersistDeletes(std::vector<SealedEntry>& entries, uint64_t gen,
                        std::vector<std::pair<uint64_t, uint64_t>>& listed);
  // Saves the manifest, poisoning the collection when that fails (caller holds write_mu_).
  Status CommitManifest(const CollectionManifest& m);
  // Removes deletes files of other generations than the entries' own, log files
  // before wal_first_, and `dropped` segment folders.
  void RemoveObsoleteFiles(const std::vector<SealedEntry>& entries,
                           const std::vector<std::filesystem::path>& dropped);
  void CountCalibration(double seconds) const;
  void CountIndexBuild(double seconds) const;
  void PublishWalCounters();  // caller holds write_mu_ (or is opening)
  bool OverThreshold(const Snapshot& s) const;

  const std::filesystem::path dir_;
  const uint64_t id_;
  const CollectionSpec spec_;
  const WalOptions wal_options_;
  // EngineOptions::memory_ef_construction (0: spec_.hnsw_ef_construction).
  const uint32_t memory_ef_construction_;
  mutable std::mutex write_mu_;  // one writer at a time: log order = apply order
  std::mutex compact_mu_;   // one compaction at a time
  std::mutex seal_mu_;      // one seal or calibration round at a time
  // Commits: writing a manifest and publishing the segment list it names. Guards
  // generation_, checkpoint_, wal_first_ and compacting_ after Open.
  std::mutex manifest_mu_;
  bool compacting_ = false;  // a compaction holds inputs: seals do not drop segments meanwhile
  std::mutex seal_done_mu_;                // with seal_done_cv_: WaitForSealRoom
  std::condition_variable seal_done_cv_;   // notified when a frozen segment is published sealed, and at Close
  std::atomic<bool> closing_{false};
  std::atomic<bool> seal_wait_warned_{false};
  mutable std::mutex snapshot_mu_;
  std::shared_ptr<const Snapshot> snapshot_;  // guarded by snapshot_mu_
  std::function<void()> wake_;
  InsertThread* insert_thread_ = nullptr;
  uint32_t insert_threads_ = 0;  // EngineOptions::insert_threads
  bool progress_ = false;        // EngineOptions::progress
  // Guarded by write_mu_ (wal_first_, next_segment_id_... see manifest_mu_ above).
  std::unique_ptr<WalWriter> wal_;
  uint64_t wal_bytes_before_ = 0;   // written to log files closed by freezes (this process)
  uint64_t wal_fsyncs_before_ = 0;
  uint64_t wal_first_ = 1;        // first sequence of the oldest log file still needed
  uint64_t next_segment_id_ = 1;
  uint64_t next_key_id_ = kKeyedIdBase;  // the next id a new key gets; only grows
  uint64_t generation_ = 0;       // bumped by every seal and compaction
  uint64_t checkpoint_ = 0;       // log sequence the manifest on disk has sealed up to
  bool dirty_ = false;            // something was written since the last freeze
  // The snapshot published by the last freeze: its delete sets are what the seal
  // persists (the state at the frozen sequence). Null when no seal is pending.
  std::shared_ptr<const Snapshot> frozen_at_;
  // Automatic seals: when the in-memory rows or the log reach these (raised after a failed seal).
  static constexpr uint64_t kSealLogBytes = 256ull << 20;
  static constexpr uint64_t kSealDeadRows = 1024;
  size_t seal_retry_rows_ = 0;
  uint64_t seal_retry_log_bytes_ = kSealLogBytes;
  // Published after each write and seal, so that counters never wait on write_mu_.
  std::atomic<uint64_t> wal_bytes_{0}, wal_fsyncs_{0};
  std::atomic<uint64_t> last_sequence_{0};
  // Search scratch, lent to one search at a time (ScratchLease).
  struct ScratchLease {
    explicit ScratchLease(const Collection& c);
    ~ScratchLease();
    const Collection& owner;
    std::unique_ptr<SearchScratch> scratch;
  };
  static constexpr size_t kMaxPooledScratch = 64;
  mutable std::mutex scratch_mu_;
  mutable std::vector<std::unique_ptr<SearchScratch>> scratch_pool_;
  mutable std::atomic<uint64_t> disk_reads_{0}, disk_read_bytes_{0};
  mutable std::atomic<uint64_t> calibrations_{0}, calibration_ns_{0}, index_build_ns_{0};
  Status poisoned_;  // set when the log failed: later writes are refused
};

}  // namespace strata::engine
