#pragma once
// The write-ahead log: one file per log segment, holding opaque records that the engine encodes
// itself (a 1-byte type plus a payload), each numbered with a sequence that grows by exactly 1.
// The byte layout and every check the reader makes are in docs/formats/wal.md.
//
// Recovery, in the LevelDB style: a torn tail -- a last record cut short by a crash in the middle
// of a write, or zeros where the file was extended but never written -- is cut and reported. A
// record that is complete (it ends within the file) but fails its checks is damage, not a torn
// write, wherever it is: it may hold acknowledged records, so reading refuses it (Corruption naming
// the file and offset) unless the caller explicitly salvages (WalTail::kSalvage), which cuts the
// log there.
//
//   STRATA_ASSIGN_OR_RETURN(WalContents wal, ReadWal(path));
//   for (const WalRecord& r : wal.records) Replay(r);
//   if (wal.dropped_bytes > 0) {
//     log->warn("{}: {}", path.string(), wal.tail_problem);
//     STRATA_RETURN_IF_ERROR(TruncateWal(path, wal.valid_bytes));
//   }
//   STRATA_ASSIGN_OR_RETURN(auto writer, WalWriter::OpenForAppend(path, options));
//   STRATA_ASSIGN_OR_RETURN(uint64_t seq, writer->Append(kBatch, batch_bytes));

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "engine/durability.h"

namespace strata::engine {

// Sizes fixed by the format (docs/formats/wal.md).
inline constexpr size_t kWalHeaderBytes = 64;
inline constexpr size_t kWalRecordHeaderBytes = 24;
inline constexpr uint16_t kWalMajorVersion = 1;
inline constexpr uint16_t kWalMinorVersion = 0;
inline constexpr uint32_t kDefaultMaxWalRecordBytes = 256u << 20;

// When Append may return, relative to the record reaching stable storage (engine/durability.h).
using strata::Durability;

struct WalOptions {
  Durability durability = Durability::kSync;
  // Background sync period for kInterval; must be > 0 in that mode.
  uint32_t interval_ms = 100;
  // Largest payload Append accepts, and the largest one ReadWal believes (a length beyond it is
  // damage). Readers must use a limit at least as large as the writer's.
  uint32_t max_record_bytes = kDefaultMaxWalRecordBytes;
};

// Appends records to one WAL file.
//
// Thread-safe: any number of threads may call Append, Sync and the accessors concurrently.
// Records are written in sequence order under a mutex; with kSync, one of the waiting appenders
// (the leader) runs fdatasync for everything written so far, without the mutex, while the others
// append behind it and then wait on a condition variable until the synced offset covers their
// record (leader/follower group commit).
//
// Failure model: after any failed write or fsync the writer is poisoned and every later Append,
// Sync or Close returns that same error. An Append that returned an error may or may not have
// reached the disk (a write can be partial, a failed fsync leaves the page cache in an unknown
// state); recovery with ReadWal decides. No record is ever acknowledged after one that failed.
//
// Only one writer may hold a file: Create and OpenForAppend take an exclusive flock(2) on it,
// released by Close (best effort: file systems without flock are not protected).
class WalWriter {
 public:
  // Creates a new log at `path` whose first record will have sequence `first_sequence`.
  // The header is written and fsynced, and the parent directory fsynced, before this returns.
  // Errors: AlreadyExists if `path` exists; InvalidArgument for bad options or
  // first_sequence == UINT64_MAX (sequences never wrap); NotFound if the directory is missing;
  // IOError otherwise. On failure nothing is left at `path`.
  static Result<std::unique_ptr<WalWriter>> Create(const std::filesystem::path& path,
                                                   uint64_t first_sequence,
                                                   const WalOptions& options = {});

  // Opens an existing log to append after its last record; next_sequence() continues from it.
  // The whole file is verified as ReadWal does (with options.max_record_bytes) and then fsynced,
  // so that records a crashed process wrote but never synced are durable before new ones follow.
  // Errors: whatever ReadWal returns; InvalidArgument if the file has a torn tail (recovery must
  // call TruncateWal first) or for bad options; IOError if another writer holds the file.
  static Result<std::unique_ptr<WalWriter>> OpenForAppend(const std::filesystem::path& path,
                                                          const WalOptions& options = {});

  WalWriter(const WalWriter&) = delete;
  WalWriter& operator=(const WalWriter&) = delete;
  // Closes, ignoring errors (call Close to see them).
  ~WalWriter();

  // Appends one record and returns its sequence. `type` is the caller's: the log stores it and
  // gives it back, every value 0..255 is allowed. Returns according to options().durability.
  // Errors: InvalidArgument if the payload exceeds max_record_bytes (the writer stays usable) or
  // after Close; OutOfRange once the sequence would reach UINT64_MAX; the poisoning error after
  // any failed write or fsync (see the class comment).
  Result<uint64_t> Append(uint8_t type, std::span<const std::byte> payload);

  // Makes every record appended so far durable (fdatasync unless nothing was written since the
  // last one). Errors: the poisoning error; InvalidArgument after Close.
  Status Sync();

  // Syncs, stops the background thread and closes the file. Idempotent: later calls return the
  // result of the first. Appends waiting for a sync when Close runs are completed by its sync.
  Status Close();

  // Sequence the next Append will get.
  uint64_t next_sequence() const {
    return next_sequence_published_.load(std::memory_order_acquire);
  }
  // Length of the log file: header and all records, including those present before
  // OpenForAppend. Grows by kWalRecordHeaderBytes + payload size with each Append.
  uint64_t bytes_written() const {
    return bytes_written_published_.load(std::memory_order_acquire);
  }
  // fdatasync calls made to make records durable since this writer was opened (the sync of the
  // header in Create and the one in OpenForAppend are not counted).
  uint64_t fsyncs() const { return fsyncs_.load(std::memory_order_acquire); }
  const std::filesystem::path& path() const { return path_; }
  const WalOptions& options() const { return options_; }

 private:
  WalWriter(std::filesystem::path path, int fd, const WalOptions& options, uint64_t end_offset,
            uint64_t next_sequence);
  // Returns once synced_offset_ >= target, running fdatasync itself when no other thread is.
  // Called and returns with `lock` held on mu_; releases it around the fdatasync.
  Status SyncUpTo(std::unique_lock<std::mutex>& lock, uint64_t target);
  // Sets the poisoning error (first one wins) and wakes every waiter. Needs mu_.
  Status Poison(Status error);
  // Body of the kInterval background thread.
  void IntervalSyncLoop();

  const std::filesystem::path path_;
  const WalOptions options_;

  std::mutex mu_;
  // Signalled whenever synced_offset_ grows, a sync finishes or the writer is poisoned.
  std::condition_variable synced_cv_;
  // Wakes the kInterval thread early, to stop.
  std::condition_variable interval_cv_;
  int fd_ = -1;                        // guarded by mu_; -1 once closed
  uint64_t end_offset_ = 0;            // guarded by mu_: bytes in the file
  uint64_t synced_offset_ = 0;         // guarded by mu_: bytes known durable
  uint64_t next_sequence_ = 0;         // guarded by mu_
  bool sync_in_progress_ = false;      // guarded by mu_: a leader is in fdatasync
  bool closing_ = false;               // guarded by mu_: Close has started; no more Appends
  bool stop_interval_thread_ = false;  // guarded by mu_
  Status poison_;                      // guarded by mu_
  std::mutex close_mu_;                // serialises Close calls
  bool closed_ = false;                // guarded by close_mu_
  Status close_status_;                // guarded by close_mu_
  std::thread interval_thread_;

  // Copies of the guarded counters for lock-free reads by metrics.
  std::atomic<uint64_t> next_sequence_published_{0};
  std::atomic<uint64_t> bytes_written_published_{0};
  std::atomic<uint64_t> fsyncs_{0};
};

struct WalRecord {
  uint64_t sequence = 0;
  uint8_t type = 0;
  std::vector<std::byte> payload;
};

struct WalContents {
  // From the header; records[i].sequence == first_sequence + i.
  uint64_t first_sequence = 0;
  std::vector<WalRecord> records;
  // Length of the valid prefix: the header and every record returned. Equals the file size when
  // the file ended cleanly.
  uint64_t valid_bytes = 0;
  // Bytes after the valid prefix (a torn tail), 0 when the file ended cleanly.
  uint64_t dropped_bytes = 0;
  // Why the tail was dropped, e.g. "record at offset 123 is cut short: ...; 57 bytes dropped".
  // Empty when the file ended cleanly.
  std::string tail_problem;
  // True when what was dropped is damage, not a torn write (only with WalTail::kSalvage): the
  // dropped bytes may have held acknowledged records.
  bool damaged = false;
};

// What ReadWal may drop after the valid prefix.
enum class WalTail : uint8_t {
  // A torn tail only: a record that runs past the end of the file, a tail of zeros, or a
  // well-formed stale copy of an earlier record. Any complete record that fails its checks is
  // Corruption.
  kCutTorn,
  // Also damage: the log is cut at the first record that fails its checks, wherever it is, and
  // everything from there on is dropped (WalContents::damaged). For explicit salvage only.
  kSalvage,
};

// Reads and verifies every record of the log at `path`.
//
// A record that is cut short, fails its checksum, claims a payload longer than max_record_bytes or
// than the rest of the file, has nonzero reserved bytes, or breaks the sequence ends the valid
// prefix. What follows is then classified (docs/formats/wal.md):
//   - damage in the middle: the rest of the file holds, at some byte offset from the bad record's
//     start, a well-formed record (valid checksum) with a sequence beyond the last good one;
//   - a torn tail: the bad record runs past the end of the file (a write cut short; unless, with
//     the length that fills the file, it passes its checksum -- a damaged length field), or
//     everything from it on is zero bytes, or it is a well-formed record with an earlier sequence;
//   - damage at the end: anything else, i.e. a complete record that fails its checks.
// A torn tail is reported in dropped_bytes and tail_problem, and the records before it returned.
// Damage is Corruption naming the file and the bad record's offset, because dropping it could lose
// acknowledged records -- unless `tail` is kSalvage: then it is dropped like a torn tail and
// reported with WalContents::damaged.
//
// Errors: Corruption naming the file for a damaged header (too short, wrong magic, checksum,
// reserved fields) or damaged records (above); InvalidArgument for a major version this build
// cannot read; NotFound/IOError from the file system. Nothing is allocated before its size has
// been checked against the file size and max_record_bytes.
Result<WalContents> ReadWal(const std::filesystem::path& path,
                            uint32_t max_record_bytes = kDefaultMaxWalRecordBytes,
                            WalTail tail = WalTail::kCutTorn);

// Cuts the log at `path` to `valid_bytes` and fsyncs it; recovery calls this with
// WalContents::valid_bytes after ReadWal reported a torn tail (or a salvaged one). It does not
// re-verify the records.
// Errors: InvalidArgument if valid_bytes is smaller than the header or larger than the file;
// IOError if a writer holds the file; NotFound/IOError from the file system.
Status TruncateWal(const std::filesystem::path& path, uint64_t valid_bytes);

}  // namespace strata::engine
