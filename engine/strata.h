#pragma once
// Strata, embedded: the one header an application includes.
//
//   auto engine = strata::Engine::Open("./strata-data");            // creates it when empty
//   if (!engine) return engine.error();                               // a Status naming the file
//   strata::Status s = (*engine)->CreateCollection({.name = "docs", .dim = 100,
//                                                   .metric = strata::Metric::kCosine});
//   strata::WriteBatch batch;
//   batch.Upsert(42, vector, {{"lang", std::string("en")}});
//   s = (*engine)->Write("docs", batch);                              // durable when it returns OK
//   auto hits = (*engine)->Search("docs", query, {.k = 10});          // Result<vector<Neighbor>>
//
// Data directory: a MANIFEST (the catalog, replaced atomically) and one folder
// per collection holding its sealed segments, their manifest and its write-ahead
// log (docs/formats/engine.md). Opening recovers: sealed segments are mapped, the
// log after the last seal is replayed, and a torn tail (a write cut by a crash)
// is reported with the bytes dropped and cut; a damaged log record is refused
// (see EngineOptions::salvage_wal_tail).
//
// The value types (CollectionSpec, CollectionInfo, SearchOptions, Record, Explain,
// Attributes) are the vocabulary the client shares (api/, DESIGN.md); this header adds
// what only the embedded engine has.
//
// Records have u64 ids; a record may instead be written by a string key (1..1024
// bytes, any bytes): the engine then gives it an id of its own from the keyed range
// (ids from 2^63, which upserts by id refuse), keeps it when the key is written
// again, and never reuses it. Keyed and id-only records live side by side; search
// results carry each hit's key (SearchWithKeys). api/types.h has the whole rule.
//
//   batch.UpsertByKey("doc:17", vector, {{"lang", std::string("en")}});
//   auto rec = (*engine)->GetByKey("docs", "doc:17");                 // rec->id is the engine's
//   auto keyed = (*engine)->SearchWithKeys("docs", query, {.k = 10});  // hits with their keys
//
// Thread safety: every Engine method may be called from any number of threads
// at once. Writes to one collection are applied in the order their log records
// were written; a search sees each batch entirely or not at all.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "api/attributes.h"
#include "api/explain.h"
#include "api/types.h"
#include "core/metric.h"
#include "core/status.h"
#include "core/types.h"
#include "core/vector_set.h"
#include "engine/attributes.h"
#include "engine/durability.h"
#include "engine/metrics.h"
#include "engine/write_batch.h"

namespace strata {
namespace engine {
class Collection;
class Filter;
}  // namespace engine

using engine::WriteBatch;

struct EngineOptions {
  Durability durability = Durability::kSync;
  uint32_t sync_interval_ms = 100;
  size_t max_batch_ops = 100000;          // larger batches are refused
  size_t max_batch_bytes = 256u << 20;    // encoded size of one batch (one log record), 1 KiB..256 MiB
  // A background maintenance thread (nice 10) seals in-memory segments that reached
  // their threshold (woken by the write that froze one) and calibrates in-memory
  // segments as they grow; with background_compaction another (nice 19) compacts a
  // collection once it has 4 sealed segments or a fifth of its sealed rows are
  // deleted. Both look every maintenance_interval_ms. Searches never calibrate.
  bool background_compaction = true;
  uint32_t maintenance_interval_ms = 1000;
  // Searches come first: a write batch is inserted into the in-memory graph on an
  // engine thread at this CPU nice value (0..19), the writer waiting for it, so that
  // on a busy machine the kernel runs searches before insert work and their latency
  // holds while writes go on. -1: in the writer's own thread, at its priority.
  int insert_nice = 10;
  // Threads that insert one batch into the graph (0: all cores). Fewer leave cores to
  // searches at the cost of write throughput (docs/BENCHMARKS.md section 8).
  uint32_t insert_threads = 0;
  // Caps the ef_construction of the in-memory segment's graph, the one writes are inserted
  // into (0: the collection's hnsw_ef_construction). Inserting costs about proportionally
  // to it, so a lower value takes writes faster; the graph is calibrated like any other, so
  // recall targets still hold, its searches visiting more nodes. A seal keeps the graph as
  // the sealed segment's: only a compaction (4 sealed segments, or a fifth of the rows
  // deleted; or `compact`) rebuilds those rows at the collection's value, so with few
  // seals the cheaper graph stays (docs/BENCHMARKS.md section 8 has the measured trade).
  uint32_t memory_ef_construction = 0;
  // The maintenance thread's CPU nice value (0..19) and the threads its calibrations
  // use (0: all cores). The compaction thread runs at nice 19.
  int maintenance_nice = 10;
  uint32_t maintenance_threads = 0;
  // Run the insert, maintenance and compaction threads under SCHED_IDLE (the nice
  // values are then ignored): the kernel gives them only what the application's
  // threads leave, at the cost of write throughput on a busy machine.
  bool background_idle = false;
  // CPUs the insert, maintenance and compaction threads (and their OpenMP teams) are
  // confined to; empty: any. Leaving a core to searches is what keeps a search's tail
  // latency while writes and maintenance run (docs/RELIABILITY.md, issue 14 R1, run 13):
  // neither nice nor SCHED_IDLE does, because a woken search still waits up to a scheduler
  // tick for a core that background work holds. engine::ParseCpuList reads "1-3" or "auto"
  // (every allowed CPU but the lowest). Open refuses a CPU this process may not run on.
  std::vector<int> background_cpus{};
  // Salvage at open: a log whose records fail their checks although they are
  // complete -- damage, not a torn write -- makes Open fail with Corruption naming
  // the file and the offset, because those records may have been acknowledged. With
  // this set, Open instead cuts such a log at its first damaged record, dropping it
  // and everything after it, and reports what it dropped (RecoveryReport). Set it
  // for one open, after reading that error; never leave it on (docs/RELIABILITY.md).
  bool salvage_wal_tail = false;
  // Progress with an ETA on stderr (core/progress.h: only on a terminal, one summary line
  // each otherwise) for the long work a caller waits for: BulkLoad's index build and
  // calibration, and Compact's. For command-line tools; a server leaves it off.
  bool progress = false;
};

// A filter expression parsed and checked once (Engine::PrepareFilter), for searches
// that repeat it: SearchOptions::prepared_filter saves parsing it on every call.
// Engine-only: api/types.h declares it for SearchOptions; the wire carries filter text.
// Immutable; any number of threads may use one at once.
class PreparedFilter {
 public:
  // The canonical form of the expression (what EXPLAIN shows).
  const std::string& text() const { return text_; }

 private:
  friend class Engine;
  friend class engine::Collection;
  std::shared_ptr<const engine::Filter> filter_;
  std::string text_;
};

// What opening the data directory found and repaired.
struct RecoveryReport {
  size_t collections = 0;
  uint64_t batches_replayed = 0;
  uint64_t torn_bytes_dropped = 0;  // cut from log tails (writes never acknowledged)
  // Cut from damaged logs at EngineOptions::salvage_wal_tail's request (these may
  // have held acknowledged writes).
  uint64_t salvaged_bytes_dropped = 0;
  std::vector<std::string> notes;   // one line per repair, naming the file
};

// Counters and histograms kept by the engine (for the server's metrics endpoint).
struct EngineCounters {
  uint64_t write_batches = 0;
  uint64_t upserts = 0;
  uint64_t deletes = 0;
  uint64_t searches = 0;
  uint64_t gets = 0;
  uint64_t wal_bytes = 0;        // bytes of log files written or opened by this process
  uint64_t wal_fsyncs = 0;       // log fsyncs made by this process
  uint64_t vectors = 0;          // live vectors in all collections
  uint64_t memory_bytes = 0;     // resident bytes of all collections' indexes and records
  uint64_t disk_reads = 0;       // posting lists read by searches of SPANN segments
  uint64_t disk_read_bytes = 0;
  // Segment maintenance by this process (bulk load, seal, compaction, and the
  // in-memory segment's calibration): calibrations measured and their seconds, and
  // seconds spent building indexes (bulk load and compaction).
  uint64_t calibrations = 0;
  double calibration_seconds = 0;
  double index_build_seconds = 0;
  HistogramSnapshot search_latency;  // Engine::Search, seconds
  HistogramSnapshot write_latency;   // Engine::Write (through the durability point), seconds
};

// What Engine::Snapshot wrote.
struct SnapshotReport {
  uint64_t sequence = 0;      // the last write batch (log sequence) in the snapshot; 0: none
  uint64_t segments = 0;      // sealed segments in it
  uint64_t files_linked = 0;  // immutable files hard-linked
  uint64_t files_copied = 0;  // files copied (logs; segment files across file systems)
  uint64_t bytes_copied = 0;
};

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> Open(const std::filesystem::path& dir,
                                              const EngineOptions& options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  Status CreateCollection(const CollectionSpec& spec);
  // Removes the collection and its files. NotFound when absent.
  Status DropCollection(const std::string& name);
  std::vector<CollectionInfo> ListCollections() const;
  Result<CollectionInfo> DescribeCollection(const std::string& name) const;

  // Applies the batch atomically; in kSync mode it is on disk when this returns OK.
  // Invalid input (wrong dimension, NaN, bad attributes, too many operations) is
  // refused as a whole with InvalidArgument and nothing is written.
  // `ids`, when given, receives on success the id of each operation, in order: a keyed
  // upsert's id as the engine found or assigned it (kInvalidVectorId for a delete of a key
  // that was absent); what a cluster's primary replica tells the others (docs/CLUSTER.md).
  Status Write(const std::string& collection, const WriteBatch& batch, std::vector<VectorId>* ids = nullptr);
  Status Upsert(const std::string& collection, VectorId id, std::span<const float> vector,
                Attributes attributes = {});
  Status Delete(const std::string& collection, VectorId id);

  // ---- String keys (api/types.h states the rule) ----
  // Every method here may be called from any number of threads at once, with each
  // other and with every other method; each reads one snapshot, so it sees a write
  // batch entirely or not at all. InvalidArgument for a key that is empty or longer
  // than kMaxKeyBytes; NotFound for a missing collection.
  //
  // Writes by key: upsert replaces the live record with that key (keeping its id)
  // or creates one with a fresh id from the keyed range; delete is a no-op when no
  // live record has the key. Batches mixing ids and keys go through Write. A new key
  // once every id of the keyed range was given out is ResourceExhausted.
  Status UpsertByKey(const std::string& collection, std::string_view key, std::span<const float> vector,
                     Attributes attributes = {});
  Status DeleteByKey(const std::string& collection, std::string_view key);
  // The live record with this key (Record::key set); NotFound when there is none.
  Result<Record> GetByKey(const std::string& collection, std::string_view key) const;
  // The id of the live record with this key (cheaper than GetByKey: no vector copied);
  // NotFound when there is none. For membership tests (VISMEMBER).
  Result<VectorId> FindKey(const std::string& collection, std::string_view key) const;
  // Search, with each hit's key (empty for records written by id), looked up once the
  // top-k is chosen (costs nothing for hits written by id); with options.with_attributes,
  // each hit's attributes too, from the same snapshot (one lookup per hit).
  Result<std::vector<KeyedNeighbor>> SearchWithKeys(const std::string& collection, std::span<const float> query,
                                                    const SearchOptions& options = {},
                                                    Explain* explain = nullptr) const;
  // SearchBatch's rows with keys; the same rules as SearchBatch over a buffer.
  Result<std::vector<std::vector<KeyedNeighbor>>> SearchBatchWithKeys(const std::string& collection,
                                                                      std::span<const float> queries, size_t dim,
                                                                      const SearchOptions& options = {},
                                                                      size_t threads = 0) const;
  // Lists live keyed records in the order of their ids, at most `count` (1..100000)
  // per call, from `cursor` (0: the start; then the page's next_cursor, until it is
  // 0). A record live for the whole listing is returned exactly once (its id never
  // changes); one written or deleted meanwhile may or may not be. The cost of a call
  // is O(count + log n) per sealed segment plus a pass over the in-memory rows.
  // For SCAN / KEYS.
  Result<KeyPage> ListKeys(const std::string& collection, uint64_t cursor, size_t count) const;
  // Lists every live record's id (and its key; empty for one written by id) in id order, as
  // ListKeys does for keys: at most `count` (1..100000) per call, from `cursor` (0: the
  // start; then the page's next_cursor, until it is 0), with the same guarantees. For a
  // cluster replica's catch-up (cluster/catch_up.h).
  Result<KeyPage> ListIds(const std::string& collection, uint64_t cursor, size_t count) const;
  // Up to `count` (1..100000) distinct keys of live records, picked at random (seeded
  // by `seed`), fewer only when fewer keyed records are live. For VRANDMEMBER.
  Result<std::vector<std::string>> RandomKeys(const std::string& collection, size_t count,
                                              uint64_t seed) const;
  // BulkLoad by key: rows of `vectors` with `keys` (distinct, valid) and `attributes`
  // (empty: none); the engine assigns their ids from the keyed range, in row order.
  Status BulkLoadByKey(const std::string& collection, const VectorSet& vectors,
                       std::span<const std::string> keys, std::span<const Attributes> attributes = {});

  // Lowers the calling thread to the engine's background priority (nice 19, or SCHED_IDLE
  // with background_idle) and confines it to background_cpus, as the engine's own
  // maintenance threads are: for an application thread that does background work through
  // the engine (a cluster node's catch-up). Call it before the thread's first OpenMP
  // parallel region. Best effort; the error says what the kernel refused.
  Status RunAsBackground() const;

  // Seals the collection's in-memory segment to disk now and cuts its log. When at
  // least half of what the sealed segments hold is dead (deleted rows, rows replaced by
  // later upserts), it then compacts too, so that a flush leaves disk and memory
  // proportional to the live rows.
  Status Flush(const std::string& collection);
  // Seals the in-memory segment to disk now and cuts the log, without Flush's compaction: a
  // copy of the collection's files taken next (Snapshot) is then nearly all sealed segments,
  // which open without replaying a log (a cluster replica's catch-up: cluster/shard_copy.h).
  // Writes go on meanwhile (into a new in-memory segment).
  Status Seal(const std::string& collection);
  // Loads an empty collection in one go: rows of `vectors` with `ids` (empty:
  // 0..n-1) and `attributes` (empty: none), written straight into one sealed
  // segment -- HNSW, or SPANN past spec.memory_budget_bytes -- without going
  // through the log. Durable when it returns; all or nothing. InvalidArgument for
  // a non-empty collection, wrong dimension, NaN, duplicate or reserved ids (kInvalidVectorId and the
  // keyed range from kKeyedIdBase).
  Status BulkLoad(const std::string& collection, const VectorSet& vectors,
                  std::span<const VectorId> ids = {}, std::span<const Attributes> attributes = {});
  // Seals, then merges every sealed segment into one, dropping deleted vectors
  // (SPANN when past spec.memory_budget_bytes). Searches and writes go on
  // meanwhile. Waits for a compaction of it already running, then compacts what
  // that one did not cover.
  Status Compact(const std::string& collection);

  // A consistent copy of one collection, taken while writes go on: `dest` becomes an
  // engine data directory holding that collection alone, exactly as it was after the
  // batch numbered SnapshotReport::sequence (every write acknowledged before the call
  // is in it; writes acknowledged after it may or may not be, whole batches only).
  // Immutable segment files are hard-linked (copied when `dest` is on another file
  // system), the log is copied up to that batch; everything is fsynced, built in a
  // temporary folder next to `dest` and renamed into place, so that `dest` appears
  // whole or not at all. Open it with Engine::Open (it is a data directory) or copy
  // it into a new one (`strata restore`). AlreadyExists when `dest` exists: nothing
  // is ever overwritten. Searches never wait; writes wait for one log sync; seals and
  // compactions of the collection wait at their commit until the copy is done.
  Result<SnapshotReport> Snapshot(const std::string& collection, const std::filesystem::path& dest);

  // A new, empty folder of the engine's own for a caller's temporary files, named
  // `purpose`-XXXXXX (letters, digits, '-', '_') under the data directory's "scratch"
  // folder: on the engine's file system, so that Snapshot may write into it (hard links)
  // and ReplaceCollection may move a collection out of it. The caller removes it when done;
  // whatever is left there is removed when the engine next opens (the "scratch" folder holds the
  // marker `.strata-scratch`; one without it is not the engine's: left alone, and
  // MakeScratchDir refuses it with AlreadyExists).
  Result<std::filesystem::path> MakeScratchDir(std::string_view purpose);
  // Puts the collection of `snapshot` (a data directory holding one collection, as Snapshot
  // writes it, on this engine's file system: a folder from MakeScratchDir) in the place of
  // collection `name` in one step: its folder is moved (not copied) into the data directory
  // and opened (its log replayed), listed durably in the catalog, then swapped in for
  // searches and writes; the replaced collection's files are removed. NotFound when `name`
  // does not exist (a drop that comes first wins; one that comes during the call waits for it
  // and drops the copy). Its spec is the snapshot's, named `name`; it must have the replaced
  // one's dimension and metric (InvalidArgument otherwise). Returns the vectors it holds.
  // `before_swap`, when given, runs once the copy is open (its log replayed), just before it
  // is listed; its error cancels the replacement (nothing changes). A write to `name` that
  // runs after it may land in the replaced collection and be lost: the caller keeps writers
  // out from there on (a cluster replica's catch-up holds its live writes back from
  // `before_swap` on: cluster/catch_up.h). Other creates, drops and replacements wait for
  // `before_swap`: it must not call them. Thread-safe; calls for one `name` one at a time.
  Result<uint64_t> ReplaceCollection(const std::string& name, const std::filesystem::path& snapshot,
                                     const std::function<Status()>& before_swap = {});

  // The live record with this id (Record::key set when it was written by key).
  Result<Record> Get(const std::string& collection, VectorId id) const;
  // The k nearest live vectors matching options.filter, nearest first. With `explain`, also what
  // the planner chose per segment and what it cost.
  Result<std::vector<Neighbor>> Search(const std::string& collection, std::span<const float> query,
                                       const SearchOptions& options = {}, Explain* explain = nullptr) const;
  // Many queries (rows of `queries`) in one call, spread over `threads` threads (0: all cores);
  // the same results as searching them one by one. Fails as a whole on the first bad query.
  Result<std::vector<std::vector<Neighbor>>> SearchBatch(const std::string& collection,
                                                         const VectorSet& queries,
                                                         const SearchOptions& options = {},
                                                         size_t threads = 0) const;
  // The same over a caller's buffer, without copying it: `queries` holds whole
  // rows of `dim` floats (InvalidArgument otherwise). A filter is parsed once.
  Result<std::vector<std::vector<Neighbor>>> SearchBatch(const std::string& collection,
                                                         std::span<const float> queries, size_t dim,
                                                         const SearchOptions& options = {},
                                                         size_t threads = 0) const;
  // Why `filter` may match nothing in `collection` although it parses: attributes
  // that no record has, comparisons with a type an attribute never held (the same
  // messages as Explain::warnings; empty when none). InvalidArgument for a filter
  // that does not parse.
  Result<std::vector<std::string>> FilterWarnings(const std::string& collection, std::string_view filter) const;
  // Parses and checks a filter expression once, for SearchOptions::prepared_filter.
  static Result<PreparedFilter> PrepareFilter(std::string_view expression);

  const RecoveryReport& recovery() const;
  EngineCounters counters() const;
  const std::filesystem::path& dir() const;


 private:
  class Impl;  // engine.cc
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata
