#pragma once
// Block I/O: how SPANN reads posting lists from SSD.
//
// Three pieces, split the way DiskANN splits its aligned file reader from its search scratch:
//   - BlockFile   an open file, shared by every searching thread (immutable after Open).
//   - IoQueue     a per-thread queue that reads a batch of blocks at once; io_uring when the kernel
//                 allows it, a pread loop otherwise. Both give identical results.
//   - AlignedBuffer  4096-aligned scratch for O_DIRECT reads, kept in the search context.
// SPANN issues all the posting lists of one query as one ReadBatch, so a deep queue keeps the SSD
// busy while the CPU only pays one submit and a few waits. See docs/io.md.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <utility>

#include "core/status.h"

namespace strata::storage {

// O_DIRECT needs offsets, lengths and buffers aligned to the device's logical block size. 4096 is
// the largest logical block size in common use, so a 4096-aligned layout works on every device.
inline constexpr size_t kBlockAlignment = 4096;

enum class IoBackend : uint8_t {
  kAuto,     // io_uring when available, else pread
  kIoUring,  // io_uring only; IoQueue::Create fails when the kernel refuses it
  kPread,    // one pread at a time; works everywhere
};

// "auto", "io_uring", "pread".
std::string_view IoBackendName(IoBackend backend);
// Inverse of IoBackendName; anything else is InvalidArgument.
Result<IoBackend> ParseIoBackend(std::string_view name);

// An open file for block reads. Immutable after Open and thread-safe: share one (through the
// shared_ptr) between all threads, each with its own IoQueue. The file must not change size while
// it is open.
class BlockFile {
 public:
  struct Options {
    // Open with O_DIRECT so reads bypass the page cache. When the file system refuses O_DIRECT
    // (tmpfs before Linux 6.6, some FUSE and overlay set-ups) the file is opened for buffered
    // reads instead and direct() is false.
    bool direct = true;
    // A direct file's alignment() is at least this (a power of two up to kBlockAlignment): a
    // reader can then be tested as it runs on a device with 4 KiB logical blocks.
    size_t min_alignment = 0;
  };

  // Errors: NotFound when the path does not exist, InvalidArgument when it is not a regular file,
  // IOError otherwise.
  static Result<std::shared_ptr<BlockFile>> Open(const std::filesystem::path& path,
                                                 const Options& options);

  ~BlockFile();
  BlockFile(const BlockFile&) = delete;
  BlockFile& operator=(const BlockFile&) = delete;

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }
  // True when reads bypass the page cache; requests must then be aligned (see ReadRequest).
  bool direct() const { return direct_; }
  // The alignment a direct read needs (offset, length and buffer): the file system's own where
  // statx reports it (STATX_DIOALIGN, Linux 6.1+: 512 on most disks), kept within 512..4096, and
  // kBlockAlignment where it does not. 1 for a buffered file. Layouts written to be read with
  // O_DIRECT on any device still use kBlockAlignment; a reader of small records (SPANN's rerank
  // reads, one vector each) asks for only this much.
  size_t alignment() const { return alignment_; }
  const std::filesystem::path& path() const { return path_; }

  // Drops this file's pages from the page cache (posix_fadvise DONTNEED), so that a benchmark of
  // buffered reads starts cold. Harmless on a direct file.
  Status DropCache() const;

 private:
  BlockFile(std::filesystem::path path, int fd, uint64_t size, bool direct, size_t alignment)
      : path_(std::move(path)), fd_(fd), size_(size), direct_(direct), alignment_(alignment) {}

  std::filesystem::path path_;
  int fd_;
  uint64_t size_;
  bool direct_;
  size_t alignment_;
};

// One read. The buffer is borrowed: it must stay valid until ReadBatch returns.
struct ReadRequest {
  uint64_t offset = 0;     // multiple of BlockFile::alignment() when the file is direct
  uint32_t length = 0;     // > 0; multiple of BlockFile::alignment() when the file is direct
  void* buffer = nullptr;  // BlockFile::alignment()-aligned when the file is direct
};

// A per-thread I/O queue. Thread-compatible: use one per thread (SPANN keeps one in each search
// context); it may read from any number of BlockFiles.
class IoQueue {
 public:
  // kAuto probes io_uring (io_uring_queue_init) and falls back to pread when the kernel, a
  // seccomp policy or a memlock limit refuses it; the fallback is logged once per process (spdlog
  // logger "storage"). kIoUring fails instead of falling back: Unimplemented when io_uring is not
  // available or not permitted, ResourceExhausted when the ring cannot be allocated.
  // queue_depth: at most this many reads in flight at once, 1..4096; InvalidArgument otherwise.
  static Result<std::unique_ptr<IoQueue>> Create(IoBackend backend, uint32_t queue_depth = 64);

  virtual ~IoQueue();
  IoQueue(const IoQueue&) = delete;
  IoQueue& operator=(const IoQueue&) = delete;

  // kIoUring or kPread, never kAuto.
  virtual IoBackend backend() const = 0;
  uint32_t queue_depth() const { return queue_depth_; }

  // Reads every request, keeping up to queue_depth reads in flight, and calls on_done(i, status)
  // once for each request i as its read completes, in completion order, on the calling thread.
  // Partial reads are retried; a read that reaches end of file before `length` bytes is
  // OutOfRange, an OS error is IOError; both are reported to on_done with a message naming the
  // file, offset and length, and the other requests go on.
  //
  // Before anything is submitted every request is checked: a null buffer, a zero length, an
  // offset + length that overflows, or (on a direct file) an offset, length or buffer that is not
  // aligned to the file's alignment() returns InvalidArgument naming the request, and on_done is never called.
  // Otherwise returns OK once on_done has been called for every request (per-request failures go
  // to on_done only). If the kernel ever refuses an io_uring submission for good, the queue waits
  // for the reads already in flight, logs a warning, and reads the rest of this batch and all
  // later ones with pread; callers see no difference but speed.
  //
  // on_done must not throw, and must not call ReadBatch on this queue.
  virtual Status ReadBatch(const BlockFile& file, std::span<const ReadRequest> requests,
                           const std::function<void(size_t index, const Status&)>& on_done) = 0;

  // What this queue has done since it was created or last reset; for `strata bench` (I/O wait per
  // query) and SPANN's EXPLAIN.
  struct Counters {
    uint64_t reads = 0;    // requests that completed successfully
    uint64_t bytes = 0;    // bytes those requests read
    uint64_t wait_ns = 0;  // wall time blocked in the kernel on reads: pread calls, or io_uring
                           // submits and completion waits; excludes validation and on_done
  };
  const Counters& counters() const { return counters_; }
  void ResetCounters() { counters_ = Counters{}; }

 protected:
  explicit IoQueue(uint32_t queue_depth) : queue_depth_(queue_depth) {}

  // Checks every request as described at ReadBatch.
  static Status ValidateRequests(const BlockFile& file, std::span<const ReadRequest> requests);

  uint32_t queue_depth_;
  Counters counters_;
};

// A kBlockAlignment-aligned heap buffer that grows on demand, for O_DIRECT reads. Keep one per
// thread (in the search context) so that steady-state queries allocate nothing.
// Thread-compatible; movable, not copyable.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes) { Get(bytes); }
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();

  // Returns at least `bytes` bytes (at least kBlockAlignment, never null), aligned to
  // kBlockAlignment. Growing reallocates and does not keep the old contents; pointers from
  // earlier calls are then invalid.
  std::byte* Get(size_t bytes);
  // Bytes usable from the last Get without reallocating; always a multiple of kBlockAlignment.
  size_t capacity() const { return capacity_; }

 private:
  std::byte* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace strata::storage
