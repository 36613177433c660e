#include "engine/wal.h"

#include "storage/byte_format.h"
#include "storage/file_util.h"
#include "storage/posix_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>  // renameat2
#include <filesystem>

// For XXH3_state_t, so that a record's checksum can be computed over its two pieces (header and
// payload) from a state on the stack, without copying the payload.
#define XXH_STATIC_LINKING_ONLY
#include <fmt/core.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

namespace strata::engine {

namespace {

using storage::ErrnoMessage;
using storage::LoadLe;
using storage::OsError;
using storage::PwriteAll;
using storage::RetryOnEintr;
using storage::StoreLe;

// File header layout (docs/formats/wal.md).
constexpr char kMagic[8] = {'S', 'T', 'R', 'W', 'A', 'L', '\0', '\0'};
constexpr size_t kMagicOffset = 0;
constexpr size_t kMajorOffset = 8;
constexpr size_t kMinorOffset = 10;
constexpr size_t kReserved0Offset = 12;
constexpr size_t kFirstSequenceOffset = 16;
constexpr size_t kReserved1Offset = 24;
constexpr size_t kReserved1Bytes = 32;
constexpr size_t kHeaderChecksumOffset = 56;
static_assert(kHeaderChecksumOffset + 8 == kWalHeaderBytes);
static_assert(kReserved1Offset + kReserved1Bytes == kHeaderChecksumOffset);

// Record header layout: payload_bytes u32, type u8, 3 reserved bytes, sequence u64, checksum u64.
// The checksum covers the 16 bytes before it and then the payload.
constexpr size_t kRecPayloadBytesOffset = 0;
constexpr size_t kRecTypeOffset = 4;
constexpr size_t kRecReservedOffset = 5;
constexpr size_t kRecReservedBytes = 3;
constexpr size_t kRecSequenceOffset = 8;
constexpr size_t kRecChecksumOffset = 16;
static_assert(kRecChecksumOffset + 8 == kWalRecordHeaderBytes);

// Sequences never reach this value, so next_sequence = last + 1 cannot wrap.
constexpr uint64_t kNoSequence = std::numeric_limits<uint64_t>::max();

// ReadWal reads through a window of this size, so that a log of small records costs one pread
// per window rather than two per record, and the torn-tail search (which looks at every byte
// offset) costs one per window too. Payloads at least this large are read straight into place.
constexpr size_t kReadWindowBytes = size_t{1} << 20;

using RecordHeader = std::array<std::byte, kWalRecordHeaderBytes>;

uint64_t RecordChecksum(const std::byte* header, std::span<const std::byte> payload) {
  XXH3_state_t state;
  XXH3_INITSTATE(&state);
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, header, kRecChecksumOffset);
  if (!payload.empty()) XXH3_64bits_update(&state, payload.data(), payload.size());
  return XXH3_64bits_digest(&state);
}

bool AllZero(const std::byte* p, size_t n) {
  return std::all_of(p, p + n, [](std::byte b) { return b == std::byte{0}; });
}

// Takes the exclusive writer lock on an open WAL. Only a lock held elsewhere is an error: on file
// systems without flock the lock is skipped (best effort, as documented in wal.h).
Status LockForWriting(int fd, const std::filesystem::path& path) {
  int rc = RetryOnEintr([&] { return ::flock(fd, LOCK_EX | LOCK_NB); });
  if (rc != 0 && errno == EWOULDBLOCK) {
    return IOError("{}: the log is locked by another WAL writer", path.string());
  }
  return Status::Ok();
}

Status ValidateOptions(const WalOptions& options, const std::filesystem::path& path) {
  if (options.durability != Durability::kSync && options.durability != Durability::kInterval &&
      options.durability != Durability::kNone) {
    return InvalidArgument("{}: unknown durability {}", path.string(),
                           static_cast<int>(options.durability));
  }
  if (options.durability == Durability::kInterval && options.interval_ms == 0) {
    return InvalidArgument("{}: interval_ms must be > 0 with Durability::kInterval", path.string());
  }
  return Status::Ok();
}

// Reads [offset, offset + n) of a file of known size through a window (see kReadWindowBytes).
// Thread-compatible.
class WindowedReader {
 public:
  WindowedReader(int fd, const std::filesystem::path& path, uint64_t file_size)
      : fd_(fd), path_(path), file_size_(file_size) {}

  // Requires offset + n <= file size (checked by the caller, so a damaged length never reaches
  // here).
  Status Read(uint64_t offset, std::byte* dst, size_t n) {
    STRATA_CHECK(offset <= file_size_ && n <= file_size_ - offset);
    if (n == 0) return Status::Ok();
    if (offset >= window_offset_ && offset - window_offset_ <= window_.size() &&
        n <= window_.size() - (offset - window_offset_)) {
      std::memcpy(dst, window_.data() + (offset - window_offset_), n);
      return Status::Ok();
    }
    if (n >= kReadWindowBytes) return storage::PreadExact(fd_, dst, n, offset, path_);
    size_t fill = static_cast<size_t>(std::min<uint64_t>(kReadWindowBytes, file_size_ - offset));
    window_.resize(fill);
    window_offset_ = offset;
    Status s = storage::PreadExact(fd_, window_.data(), fill, offset, path_);
    if (!s.ok()) {
      window_.clear();
      return s;
    }
    std::memcpy(dst, window_.data(), n);
    return Status::Ok();
  }

 private:
  int fd_;
  const std::filesystem::path& path_;
  uint64_t file_size_;
  std::vector<std::byte> window_;
  uint64_t window_offset_ = 0;
};

struct ParsedRecordHeader {
  uint32_t payload_bytes;
  uint8_t type;
  bool reserved_zero;
  uint64_t sequence;
  uint64_t checksum;
};

ParsedRecordHeader ParseRecordHeader(const RecordHeader& h) {
  return {.payload_bytes = LoadLe<uint32_t>(h.data() + kRecPayloadBytesOffset),
          .type = static_cast<uint8_t>(h[kRecTypeOffset]),
          .reserved_zero = AllZero(h.data() + kRecReservedOffset, kRecReservedBytes),
          .sequence = LoadLe<uint64_t>(h.data() + kRecSequenceOffset),
          .checksum = LoadLe<uint64_t>(h.data() + kRecChecksumOffset)};
}

// Validates the 64-byte file header and returns first_sequence.
Result<uint64_t> CheckFileHeader(const std::array<std::byte, kWalHeaderBytes>& h,
                                 const std::string& name) {
  // The magic first, so that a file of another kind says so rather than "checksum mismatch".
  if (std::memcmp(h.data() + kMagicOffset, kMagic, sizeof(kMagic)) != 0) {
    return Error(Corruption("{}: not a WAL file: magic at byte 0 is {}, expected \"STRWAL\"", name,
                            storage::MagicForMessage({h.data() + kMagicOffset, sizeof(kMagic)})));
  }
  // The checksum before the version, so that a damaged version field reads as damage.
  const uint64_t stored = LoadLe<uint64_t>(h.data() + kHeaderChecksumOffset);
  const uint64_t computed = XXH3_64bits(h.data(), kHeaderChecksumOffset);
  if (stored != computed) {
    return Error(Corruption(
        "{}: WAL header checksum mismatch (stored 0x{:016x} at byte {}, computed 0x{:016x})", name,
        stored, kHeaderChecksumOffset, computed));
  }
  const uint16_t major = LoadLe<uint16_t>(h.data() + kMajorOffset);
  const uint16_t minor = LoadLe<uint16_t>(h.data() + kMinorOffset);
  if (major != kWalMajorVersion) {
    return Error(InvalidArgument(
        "{}: unsupported WAL major version {} (field at byte {}, minor {}); this build reads "
        "major {}",
        name, major, kMajorOffset, minor, kWalMajorVersion));
  }
  const uint32_t reserved0 = LoadLe<uint32_t>(h.data() + kReserved0Offset);
  if (reserved0 != 0) {
    return Error(Corruption("{}: reserved WAL header field at byte {} is 0x{:08x}, expected 0",
                            name, kReserved0Offset, reserved0));
  }
  for (size_t i = kReserved1Offset; i < kReserved1Offset + kReserved1Bytes; ++i) {
    if (h[i] != std::byte{0}) {
      return Error(Corruption("{}: reserved WAL header byte {} is 0x{:02x}, expected 0", name, i,
                              static_cast<unsigned>(h[i])));
    }
  }
  return LoadLe<uint64_t>(h.data() + kFirstSequenceOffset);
}

// The reader behind ReadWal and OpenForAppend, on an open descriptor. With keep_payloads false
// the records are verified but not kept (records stays empty; see ScanResult).
struct ScanResult {
  WalContents contents;
  uint64_t num_records = 0;
  uint64_t file_size = 0;
};

Result<ScanResult> ScanWal(int fd, const std::filesystem::path& path, uint32_t max_record_bytes,
                           bool keep_payloads, WalTail tail = WalTail::kCutTorn) {
  const std::string name = path.string();
  STRATA_ASSIGN_OR_RETURN(const uint64_t size, storage::RegularFileSize(fd, path));
  if (size < kWalHeaderBytes) {
    return Error(Corruption("{}: file is {} bytes, shorter than the {}-byte WAL header", name, size,
                            kWalHeaderBytes));
  }
  WindowedReader reader(fd, path, size);
  std::array<std::byte, kWalHeaderBytes> file_header;
  STRATA_RETURN_IF_ERROR(reader.Read(0, file_header.data(), file_header.size()));

  ScanResult result;
  result.file_size = size;
  WalContents& out = result.contents;
  STRATA_ASSIGN_OR_RETURN(out.first_sequence, CheckFileHeader(file_header, name));

  // Pass 1: the valid prefix. `problem` says why it ended, if it ended before the file did;
  // `incomplete` whether the record that ended it runs past the end of the file (what a write
  // cut short leaves), and `stale` whether it is a well-formed copy of an earlier record.
  uint64_t offset = kWalHeaderBytes;
  uint64_t expected = out.first_sequence;
  std::string problem;
  bool incomplete = false;
  bool stale = false;
  std::vector<std::byte> scratch;  // payloads that are verified but not kept
  while (offset < size) {
    const uint64_t remaining = size - offset;
    if (remaining < kWalRecordHeaderBytes) {
      problem = fmt::format("record header at offset {} is cut short ({} of {} bytes)", offset,
                            remaining, kWalRecordHeaderBytes);
      incomplete = true;
      break;
    }
    RecordHeader raw;
    STRATA_RETURN_IF_ERROR(reader.Read(offset, raw.data(), raw.size()));
    const ParsedRecordHeader h = ParseRecordHeader(raw);
    const uint64_t room = remaining - kWalRecordHeaderBytes;
    if (h.payload_bytes > room) {
      problem = fmt::format(
          "record at offset {} is cut short: it claims {} payload bytes but {} remain in the file",
          offset, h.payload_bytes, room);
      incomplete = true;
      // A write cut short leaves the header it wrote, whose length runs past the end. So does a
      // damaged length field of a complete last record -- unless the record, with the length
      // that fills the file, passes its checksum: then it is the length that is damaged.
      if (room <= max_record_bytes) {
        RecordHeader fixed = raw;
        StoreLe<uint32_t>(fixed.data() + kRecPayloadBytesOffset, static_cast<uint32_t>(room));
        scratch.resize(room);
        STRATA_RETURN_IF_ERROR(reader.Read(offset + kWalRecordHeaderBytes, scratch.data(), room));
        if (RecordChecksum(fixed.data(), scratch) == h.checksum) {
          problem = fmt::format(
              "record at offset {} claims {} payload bytes, but with the {} that remain in the "
              "file it passes its checksum: its length field is damaged",
              offset, h.payload_bytes, room);
          incomplete = false;
        }
      }
      break;
    }
    if (h.payload_bytes > max_record_bytes) {
      problem =
          fmt::format("record at offset {} claims {} payload bytes, more than max_record_bytes {} "
                      "(a reader needs a limit at least as large as the writer's)",
                      offset, h.payload_bytes, max_record_bytes);
      break;
    }
    // Both bounds are checked, so this allocation is at most min(max_record_bytes, file size).
    WalRecord record;
    std::vector<std::byte>& payload = keep_payloads ? record.payload : scratch;
    payload.resize(h.payload_bytes);
    STRATA_RETURN_IF_ERROR(
        reader.Read(offset + kWalRecordHeaderBytes, payload.data(), payload.size()));
    if (RecordChecksum(raw.data(), payload) != h.checksum) {
      problem = fmt::format("record at offset {} fails its checksum", offset);
      break;
    }
    if (!h.reserved_zero) {
      problem = fmt::format("record at offset {} has nonzero reserved bytes", offset);
      break;
    }
    if (h.sequence != expected || h.sequence == kNoSequence) {
      problem = fmt::format("record at offset {} has sequence {}, expected {}", offset, h.sequence,
                            expected);
      stale = h.sequence < expected;
      break;
    }
    if (keep_payloads) {
      record.sequence = h.sequence;
      record.type = h.type;
      out.records.push_back(std::move(record));
    }
    ++result.num_records;
    ++expected;
    offset += kWalRecordHeaderBytes + h.payload_bytes;
  }
  out.valid_bytes = offset;
  if (problem.empty()) return result;
  const uint64_t dropped = size - offset;
  const std::string salvage_hint = fmt::format(
      "nothing was cut; to open anyway, dropping the log from offset {} on ({} bytes), salvage it "
      "explicitly (EngineOptions::salvage_wal_tail; docs/formats/wal.md)",
      offset, dropped);

  // Pass 2: torn tail or damage in the middle? A crash while appending can only leave garbage
  // after the last acknowledged record, never a complete record with a later sequence. So look at
  // every byte offset from the bad record's own start (a well-formed record with a sequence gap is
  // itself proof) for a record with a valid checksum and a sequence >= `expected`. The cheap
  // filters (reserved bytes zero, lengths in bounds, sequence) reject almost every offset of
  // garbage before any hashing.
  // size >= kWalHeaderBytes > kWalRecordHeaderBytes, so the bound cannot wrap.
  for (uint64_t p = offset; p <= size - kWalRecordHeaderBytes; ++p) {
    RecordHeader raw;
    STRATA_RETURN_IF_ERROR(reader.Read(p, raw.data(), raw.size()));
    const ParsedRecordHeader h = ParseRecordHeader(raw);
    if (!h.reserved_zero || h.sequence < expected || h.payload_bytes > max_record_bytes ||
        h.payload_bytes > size - p - kWalRecordHeaderBytes) {
      continue;
    }
    scratch.resize(h.payload_bytes);
    STRATA_RETURN_IF_ERROR(reader.Read(p + kWalRecordHeaderBytes, scratch.data(), scratch.size()));
    if (RecordChecksum(raw.data(), scratch) != h.checksum) continue;
    const std::string what = fmt::format(
        "{}, but a valid record with sequence {} follows at offset {}: the log is damaged in the "
        "middle, and dropping the rest would lose acknowledged records",
        problem, h.sequence, p);
    if (tail != WalTail::kSalvage) return Error(Corruption("{}: {}; {}", name, what, salvage_hint));
    out.damaged = true;
    out.dropped_bytes = dropped;
    out.tail_problem = fmt::format("{}; salvaged: {} bytes dropped", what, dropped);
    return result;
  }

  // Pass 3: a torn write, or damage at the end? A write cut short leaves a record that runs past
  // the end of the file; a file system that extended the file but never wrote the data leaves
  // zeros. A complete record that fails its checks can hold an acknowledged write (a flipped
  // byte, a bad sector), so it is refused unless the caller salvages. A well-formed copy of an
  // earlier record (stale blocks reused by the file system) proves nothing lost.
  bool zeros = !incomplete && !stale;
  for (uint64_t p = offset; zeros && p < size;) {
    std::array<std::byte, 4096> buf;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - p));
    STRATA_RETURN_IF_ERROR(reader.Read(p, buf.data(), n));
    zeros = AllZero(buf.data(), n);
    p += n;
  }
  out.dropped_bytes = dropped;
  if (incomplete || stale || zeros) {
    out.tail_problem = zeros ? fmt::format("{}; the {} bytes from there on are all zero (a file "
                                           "extended but never written); {} bytes dropped",
                                           problem, dropped, dropped)
                             : fmt::format("{}; {} bytes dropped", problem, dropped);
    return result;
  }
  const std::string what = fmt::format(
      "{}, yet it is complete (it ends within the file): this is damage, not a torn write, and the "
      "record may hold acknowledged writes",
      problem);
  if (tail != WalTail::kSalvage) return Error(Corruption("{}: {}; {}", name, what, salvage_hint));
  out.damaged = true;
  out.tail_problem = fmt::format("{}; salvaged: {} bytes dropped", what, dropped);
  return result;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// WalWriter

WalWriter::WalWriter(std::filesystem::path path, int fd, const WalOptions& options,
                     uint64_t end_offset, uint64_t next_sequence)
    : path_(std::move(path)),
      options_(options),
      fd_(fd),
      end_offset_(end_offset),
      synced_offset_(end_offset),
      next_sequence_(next_sequence),
      next_sequence_published_(next_sequence),
      bytes_written_published_(end_offset) {
  if (options_.durability == Durability::kInterval) {
    interval_thread_ = std::thread([this] { IntervalSyncLoop(); });
  }
}

WalWriter::~WalWriter() { (void)Close(); }

Result<std::unique_ptr<WalWriter>> WalWriter::Create(const std::filesystem::path& path,
                                                     uint64_t first_sequence,
                                                     const WalOptions& options) {
  STRATA_RETURN_IF_ERROR(ValidateOptions(options, path));
  if (first_sequence == kNoSequence) {
    return Error(InvalidArgument("{}: first_sequence must be below 2^64 - 1", path.string()));
  }
  // The file is made under a temporary name and renamed into place once its header is
  // durable: a crash in between leaves "<name>.tmp" (not a log: recovery removes it), never a
  // log too short for its header.
  std::error_code exists_ec;
  if (std::filesystem::exists(std::filesystem::symlink_status(path, exists_ec))) {
    return Error(AlreadyExists("{}: a file already exists", path.string()));
  }
  const std::filesystem::path tmp = path.string() + ".tmp";
  ::unlink(tmp.c_str());  // a creation of this log cut short before: ours
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Error(OsError(errno, "cannot create WAL file", tmp));
  // From here on a failure removes the file, so that a retry does not meet AlreadyExists.
  bool renamed = false;
  auto fail = [&](Status s) {
    ::close(fd);
    ::unlink(renamed ? path.c_str() : tmp.c_str());
    return Error(std::move(s));
  };
  if (Status s = LockForWriting(fd, path); !s.ok()) return fail(std::move(s));

  std::array<std::byte, kWalHeaderBytes> header{};
  std::memcpy(header.data() + kMagicOffset, kMagic, sizeof(kMagic));
  StoreLe<uint16_t>(header.data() + kMajorOffset, kWalMajorVersion);
  StoreLe<uint16_t>(header.data() + kMinorOffset, kWalMinorVersion);
  StoreLe<uint64_t>(header.data() + kFirstSequenceOffset, first_sequence);
  StoreLe<uint64_t>(header.data() + kHeaderChecksumOffset,
                    XXH3_64bits(header.data(), kHeaderChecksumOffset));
  if (Status s = PwriteAll(fd, header, {}, 0, path); !s.ok()) return fail(std::move(s));
  if (RetryOnEintr([&] { return ::fsync(fd); }) != 0) {
    return fail(IOError("{}: fsync of the new WAL header: {}", path.string(), ErrnoMessage(errno)));
  }
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) != 0) {
    const int err = errno;
    if (err == EEXIST) return fail(AlreadyExists("{}: a file already exists", path.string()));
    return fail(OsError(err, "cannot rename the new WAL file into place", path));
  }
  renamed = true;
  if (Status s = storage::SyncParentDirectory(path); !s.ok()) return fail(std::move(s));
  return std::unique_ptr<WalWriter>(
      new WalWriter(path, fd, options, kWalHeaderBytes, first_sequence));
}

Result<std::unique_ptr<WalWriter>> WalWriter::OpenForAppend(const std::filesystem::path& path,
                                                            const WalOptions& options) {
  STRATA_RETURN_IF_ERROR(ValidateOptions(options, path));
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Error(OsError(errno, "cannot open WAL file for append", path));
  auto fail = [&](Status s) {
    ::close(fd);
    return Error(std::move(s));
  };
  // Lock before reading, so that no other writer can add records between the check and the
  // first append.
  if (Status s = LockForWriting(fd, path); !s.ok()) return fail(std::move(s));
  Result<ScanResult> scan = ScanWal(fd, path, options.max_record_bytes, /*keep_payloads=*/false);
  if (!scan.has_value()) return fail(std::move(scan).error());
  const WalContents& contents = scan->contents;
  if (contents.dropped_bytes > 0) {
    return fail(InvalidArgument(
        "{}: cannot append after a torn tail ({}); call TruncateWal(path, {}) first", path.string(),
        contents.tail_problem, contents.valid_bytes));
  }
  const uint64_t next_sequence = contents.first_sequence + scan->num_records;
  // What the file holds may sit only in the page cache (a process that crashed before syncing);
  // make it durable before anything is acknowledged after it.
  if (RetryOnEintr([&] { return ::fdatasync(fd); }) != 0) {
    return fail(IOError("{}: fdatasync on open: {}", path.string(), ErrnoMessage(errno)));
  }
  return std::unique_ptr<WalWriter>(
      new WalWriter(path, fd, options, contents.valid_bytes, next_sequence));
}

Status WalWriter::Poison(Status error) {
  if (poison_.ok()) poison_ = std::move(error);
  synced_cv_.notify_all();
  return poison_;
}

Result<uint64_t> WalWriter::Append(uint8_t type, std::span<const std::byte> payload) {
  if (payload.size() > options_.max_record_bytes) {
    return Error(InvalidArgument("{}: payload of {} bytes exceeds max_record_bytes {}",
                                 path_.string(), payload.size(), options_.max_record_bytes));
  }
  RecordHeader header{};
  StoreLe<uint32_t>(header.data() + kRecPayloadBytesOffset, static_cast<uint32_t>(payload.size()));
  header[kRecTypeOffset] = static_cast<std::byte>(type);

  std::unique_lock lock(mu_);
  if (!poison_.ok()) return Error(poison_);
  if (closing_) return Error(InvalidArgument("{}: Append after Close", path_.string()));
  if (next_sequence_ == kNoSequence) {
    return Error(OutOfRange("{}: sequence numbers are exhausted", path_.string()));
  }
  // The sequence is part of the checksummed bytes, so both are settled under the lock, in the
  // order the records land in the file.
  const uint64_t sequence = next_sequence_;
  StoreLe<uint64_t>(header.data() + kRecSequenceOffset, sequence);
  StoreLe<uint64_t>(header.data() + kRecChecksumOffset, RecordChecksum(header.data(), payload));
  Status s = PwriteAll(fd_, header, payload, end_offset_, path_);
  // A partial record may now be in the file; recovery will see it as a torn tail.
  if (!s.ok()) return Error(Poison(std::move(s)));
  end_offset_ += kWalRecordHeaderBytes + payload.size();
  ++next_sequence_;
  next_sequence_published_.store(next_sequence_, std::memory_order_release);
  bytes_written_published_.store(end_offset_, std::memory_order_release);
  if (options_.durability == Durability::kSync) {
    STRATA_RETURN_IF_ERROR(SyncUpTo(lock, end_offset_));
  }
  return sequence;
}

Status WalWriter::SyncUpTo(std::unique_lock<std::mutex>& lock, uint64_t target) {
  while (true) {
    if (!poison_.ok()) return poison_;
    if (synced_offset_ >= target) return Status::Ok();
    if (!sync_in_progress_) {
      // Leader: sync everything written so far, including records appended by threads that are
      // now waiting behind us. The mutex is released so that they can keep appending meanwhile;
      // their records then go in the next leader's fsync.
      sync_in_progress_ = true;
      const uint64_t covered = end_offset_;
      const int fd = fd_;
      lock.unlock();
      const int rc = RetryOnEintr([&] { return ::fdatasync(fd); });
      const int err = errno;
      lock.lock();
      sync_in_progress_ = false;
      if (rc != 0) {
        // After a failed fsync the kernel may have dropped the dirty pages: nothing written since
        // the last good sync can be trusted, so no record may be acknowledged any more.
        return Poison(IOError("{}: fdatasync failed with {} bytes written: {}", path_.string(),
                              covered, ErrnoMessage(err)));
      }
      synced_offset_ = std::max(synced_offset_, covered);
      fsyncs_.fetch_add(1, std::memory_order_acq_rel);
      synced_cv_.notify_all();
      continue;
    }
    synced_cv_.wait(lock);
  }
}

Status WalWriter::Sync() {
  std::unique_lock lock(mu_);
  if (!poison_.ok()) return poison_;
  if (closing_) return InvalidArgument("{}: Sync after Close", path_.string());
  return SyncUpTo(lock, end_offset_);
}

void WalWriter::IntervalSyncLoop() {
  std::unique_lock lock(mu_);
  const auto interval = std::chrono::milliseconds(options_.interval_ms);
  while (true) {
    interval_cv_.wait_for(lock, interval, [this] { return stop_interval_thread_; });
    if (stop_interval_thread_ || !poison_.ok()) return;
    // A failure poisons the writer; the next Append reports it.
    if (synced_offset_ < end_offset_) (void)SyncUpTo(lock, end_offset_);
  }
}

Status WalWriter::Close() {
  std::lock_guard close_lock(close_mu_);
  if (closed_) return close_status_;
  closed_ = true;
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    stop_interval_thread_ = true;
  }
  interval_cv_.notify_all();
  if (interval_thread_.joinable()) interval_thread_.join();

  std::unique_lock lock(mu_);
  Status s = SyncUpTo(lock, end_offset_);
  // When poisoned, another thread may still be inside fdatasync on fd_.
  synced_cv_.wait(lock, [this] { return !sync_in_progress_; });
  // close() can report deferred write errors (e.g. on NFS); it also releases the flock.
  if (::close(fd_) != 0 && s.ok()) {
    s = Poison(IOError("{}: close: {}", path_.string(), ErrnoMessage(errno)));
  }
  fd_ = -1;
  close_status_ = s;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Reading and truncating

Result<WalContents> ReadWal(const std::filesystem::path& path, uint32_t max_record_bytes,
                            WalTail tail) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error(OsError(errno, "cannot open WAL file", path));
  Result<ScanResult> scan = ScanWal(fd, path, max_record_bytes, /*keep_payloads=*/true, tail);
  ::close(fd);
  if (!scan.has_value()) return Error(std::move(scan).error());
  return std::move(scan->contents);
}

Status TruncateWal(const std::filesystem::path& path, uint64_t valid_bytes) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return OsError(errno, "cannot open WAL file to truncate", path);
  auto finish = [&](Status s) {
    if (::close(fd) != 0 && s.ok()) {
      s = IOError("{}: close after truncation: {}", path.string(), ErrnoMessage(errno));
    }
    return s;
  };
  if (Status s = LockForWriting(fd, path); !s.ok()) return finish(std::move(s));
  struct stat st;
  if (::fstat(fd, &st) != 0) return finish(OsError(errno, "fstat", path));
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (valid_bytes < kWalHeaderBytes) {
    return finish(InvalidArgument("{}: cannot truncate to {} bytes, inside the {}-byte header",
                                  path.string(), valid_bytes, kWalHeaderBytes));
  }
  if (valid_bytes > size) {
    return finish(InvalidArgument("{}: cannot truncate to {} bytes, the file has only {}",
                                  path.string(), valid_bytes, size));
  }
  if (valid_bytes == size) return finish(Status::Ok());
  if (RetryOnEintr([&] { return ::ftruncate(fd, static_cast<off_t>(valid_bytes)); }) != 0) {
    return finish(
        IOError("{}: ftruncate to {} bytes: {}", path.string(), valid_bytes, ErrnoMessage(errno)));
  }
  if (RetryOnEintr([&] { return ::fsync(fd); }) != 0) {
    return finish(IOError("{}: fsync after truncation: {}", path.string(), ErrnoMessage(errno)));
  }
  return finish(Status::Ok());
}

}  // namespace strata::engine
