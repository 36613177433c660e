#include "storage/block_io.h"

#include <fcntl.h>
#include <liburing.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "storage/posix_file.h"

namespace strata::storage {
namespace {

// io_uring accepts up to 32768 SQ entries, but a deeper queue than an NVMe device's own queue buys
// nothing and pins memory; 4096 is far above what SPANN asks for (one query's posting lists).
constexpr uint32_t kMaxQueueDepth = 4096;

// One logger per module (STYLE.md). Another part of the program may have registered "storage"
// first; then that one is used.
std::shared_ptr<spdlog::logger> Logger() {
  static const std::shared_ptr<spdlog::logger> logger = [] {
    if (auto existing = spdlog::get("storage")) return existing;
    try {
      return spdlog::stderr_color_mt("storage");
    } catch (const spdlog::spdlog_ex&) {  // registered by another thread in between
      return spdlog::get("storage");
    }
  }();
  return logger;
}

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

bool IsAligned(uint64_t v, uint64_t alignment) { return v % alignment == 0; }

// The file system's O_DIRECT alignment (statx STATX_DIOALIGN), within 512..kBlockAlignment;
// kBlockAlignment when the kernel or file system does not say.
size_t DirectAlignment(int fd) {
  struct statx st {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &st) != 0 || !(st.stx_mask & STATX_DIOALIGN) ||
      st.stx_dio_offset_align == 0) {
    return kBlockAlignment;
  }
  const size_t a = std::max<size_t>(st.stx_dio_offset_align, st.stx_dio_mem_align);
  if (a > kBlockAlignment || (a & (a - 1)) != 0) return kBlockAlignment;
  return std::max<size_t>(a, 512);
}

// The outcome of one read(2)-like result for a request that has `done` bytes so far.
enum class Step { kDone, kRetry, kFailed };

// Shared by both backends so that they report identical statuses. `res` is the byte count, or
// -errno. A short read that stops before end of file is retried for the remaining bytes (the
// kernel may split large or interrupted reads); one that reaches end of file is an error, since
// callers ask for exactly the bytes their format says are there.
Step Advance(const BlockFile& file, const ReadRequest& r, int64_t res, uint32_t& done,
             Status* status) {
  if (res < 0) {
    const int err = static_cast<int>(-res);
    if (err == EINTR || err == EAGAIN) return Step::kRetry;
    *status = IOError("{}: read of {} bytes at offset {} failed after {} bytes: {}",
                      file.path().string(), r.length, r.offset, done, ErrnoMessage(err));
    return Step::kFailed;
  }
  done += static_cast<uint32_t>(res);
  if (done >= r.length) return Step::kDone;
  if (res == 0 || r.offset + done >= file.size()) {
    *status = OutOfRange(
        "{}: read of {} bytes at offset {} reached end of file after {} bytes "
        "(file size {})",
        file.path().string(), r.length, r.offset, done, file.size());
    return Step::kFailed;
  }
  return Step::kRetry;
}

// Reads one request with pread from byte `done` on (non-zero when the ring read part of it),
// retrying EINTR and partial reads.
Status PreadFrom(const BlockFile& file, const ReadRequest& r, uint32_t done,
                 IoQueue::Counters& counters) {
  auto* buffer = static_cast<std::byte*>(r.buffer);
  Status status;
  while (true) {
    const uint64_t start = NowNs();
    const ssize_t n =
        ::pread(file.fd(), buffer + done, r.length - done, static_cast<off_t>(r.offset + done));
    const int err = errno;
    counters.wait_ns += NowNs() - start;
    switch (Advance(file, r, n < 0 ? -int64_t{err} : int64_t{n}, done, &status)) {
      case Step::kDone:
        ++counters.reads;
        counters.bytes += r.length;
        return Status::Ok();
      case Step::kFailed:
        return status;
      case Step::kRetry:
        break;
    }
  }
}

// ---------------------------------------------------------------------------------------------

class PreadQueue final : public IoQueue {
 public:
  explicit PreadQueue(uint32_t queue_depth) : IoQueue(queue_depth) {}
  IoBackend backend() const override { return IoBackend::kPread; }

  Status ReadBatch(const BlockFile& file, std::span<const ReadRequest> requests,
                   const std::function<void(size_t, const Status&)>& on_done) override {
    STRATA_RETURN_IF_ERROR(ValidateRequests(file, requests));
    for (size_t i = 0; i < requests.size(); ++i)
      on_done(i, PreadFrom(file, requests[i], 0, counters_));
    return Status::Ok();
  }
};

// ---------------------------------------------------------------------------------------------

class IoUringQueue final : public IoQueue {
 public:
  static Result<std::unique_ptr<IoUringQueue>> Create(uint32_t queue_depth) {
    std::unique_ptr<IoUringQueue> queue(new IoUringQueue(queue_depth));
    // The ring's SQ holds queue_depth entries and its CQ twice that (the default), so the CQ can
    // never overflow: at most queue_depth reads are ever in flight.
    const int ret = io_uring_queue_init(queue_depth, &queue->ring_, 0);
    if (ret < 0) {
      const int err = -ret;
      if (err == ENOSYS || err == EPERM || err == EACCES) {
        return Error(Unimplemented("io_uring is not available: {}", ErrnoMessage(err)));
      }
      if (err == ENOMEM) {
        return Error(ResourceExhausted(
            "io_uring ring of {} entries could not be allocated: {} (RLIMIT_MEMLOCK too low?)",
            queue_depth, ErrnoMessage(err)));
      }
      return Error(IOError("io_uring_queue_init({}) failed: {}", queue_depth, ErrnoMessage(err)));
    }
    queue->ring_ok_ = true;
    // IORING_OP_READ arrived in Linux 5.6, together with opcode probing; an older kernel would
    // accept the ring and then fail every read with EINVAL.
    io_uring_probe* probe = io_uring_get_probe_ring(&queue->ring_);
    const bool has_read = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_READ);
    if (probe != nullptr) io_uring_free_probe(probe);
    if (!has_read) {
      return Error(Unimplemented("io_uring lacks IORING_OP_READ (Linux older than 5.6)"));
    }
    return queue;
  }

  ~IoUringQueue() override {
    if (ring_ok_) io_uring_queue_exit(&ring_);
  }

  IoBackend backend() const override { return IoBackend::kIoUring; }

  Status ReadBatch(const BlockFile& file, std::span<const ReadRequest> requests,
                   const std::function<void(size_t, const Status&)>& on_done) override;

 private:
  explicit IoUringQueue(uint32_t queue_depth) : IoQueue(queue_depth) {}

  // Waits for at least one completion, then handles every completion the ring holds: calls
  // on_done for finished requests and queues short reads in retry_.
  void Reap(const BlockFile& file, std::span<const ReadRequest> requests,
            const std::function<void(size_t, const Status&)>& on_done);

  io_uring ring_{};
  bool ring_ok_ = false;
  // Per-batch scratch, kept to avoid allocating per query.
  std::vector<uint32_t> done_;  // bytes read so far, per request
  std::vector<size_t> retry_;   // requests whose read came back short, to resubmit
  std::vector<size_t> staged_;  // requests prepared in the SQ, not yet accepted by the kernel
  size_t in_flight_ = 0;        // accepted by the kernel, completion not yet seen
  size_t completed_ = 0;        // on_done called
};

void IoUringQueue::Reap(const BlockFile& file, std::span<const ReadRequest> requests,
                        const std::function<void(size_t, const Status&)>& on_done) {
  io_uring_cqe* cqe = nullptr;
  const uint64_t start = NowNs();
  int ret;
  do {
    ret = io_uring_wait_cqe(&ring_, &cqe);
  } while (ret == -EINTR || ret == -EAGAIN || ret == -ETIME);
  counters_.wait_ns += NowNs() - start;
  // Reads still in flight own the caller's buffers: returning now would let the kernel write
  // into memory the caller may already have freed. A wait that fails for good means the ring is
  // broken (a kernel or liburing bug), so there is no safe way out but to stop.
  if (ret < 0) {
    Logger()->critical("io_uring_wait_cqe failed with {} reads in flight: {}", in_flight_,
                       ErrnoMessage(-ret));
    STRATA_CHECK(ret == 0);
  }

  unsigned head;
  unsigned seen = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    --in_flight_;
    const size_t i = static_cast<size_t>(io_uring_cqe_get_data64(cqe));
    const ReadRequest& r = requests[i];
    Status status;
    switch (Advance(file, r, cqe->res, done_[i], &status)) {
      case Step::kDone:
        ++counters_.reads;
        counters_.bytes += r.length;
        ++completed_;
        on_done(i, Status::Ok());
        break;
      case Step::kFailed:
        ++completed_;
        on_done(i, status);
        break;
      case Step::kRetry:
        retry_.push_back(i);
        break;
    }
  }
  io_uring_cq_advance(&ring_, seen);
}

Status IoUringQueue::ReadBatch(const BlockFile& file, std::span<const ReadRequest> requests,
                               const std::function<void(size_t, const Status&)>& on_done) {
  STRATA_RETURN_IF_ERROR(ValidateRequests(file, requests));
  const size_t n = requests.size();
  if (!ring_ok_) {  // an earlier submit failed for good; see below
    for (size_t i = 0; i < n; ++i) on_done(i, PreadFrom(file, requests[i], 0, counters_));
    return Status::Ok();
  }
  done_.assign(n, 0);
  retry_.clear();
  staged_.clear();
  in_flight_ = 0;
  completed_ = 0;
  size_t next = 0;
  int submit_error = 0;

  while (completed_ < n) {
    // Fill the SQ, retries first so that a short read does not wait behind the rest of the batch.
    while (in_flight_ + staged_.size() < queue_depth_ && (!retry_.empty() || next < n)) {
      size_t i;
      if (!retry_.empty()) {
        i = retry_.back();
        retry_.pop_back();
      } else {
        i = next++;
      }
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      // The SQ has queue_depth entries and in_flight + staged never exceeds queue_depth.
      STRATA_CHECK(sqe != nullptr);
      const ReadRequest& r = requests[i];
      io_uring_prep_read(sqe, file.fd(), static_cast<std::byte*>(r.buffer) + done_[i],
                         r.length - done_[i], r.offset + done_[i]);
      io_uring_sqe_set_data64(sqe, i);
      staged_.push_back(i);
    }
    if (!staged_.empty()) {
      const uint64_t start = NowNs();
      const int ret = io_uring_submit(&ring_);
      counters_.wait_ns += NowNs() - start;
      if (ret >= 0) {
        // The kernel consumes the SQ in order.
        const size_t accepted = std::min(static_cast<size_t>(ret), staged_.size());
        staged_.erase(staged_.begin(), staged_.begin() + static_cast<ptrdiff_t>(accepted));
        in_flight_ += accepted;
        if (accepted == 0 && in_flight_ == 0) {  // no progress possible; never expected
          submit_error = EAGAIN;
          break;
        }
      } else if (ret == -EINTR) {
        continue;
      } else if ((ret == -EAGAIN || ret == -EBUSY) && in_flight_ > 0) {
        // Out of kernel resources for now: let some reads finish, then submit again.
      } else {
        submit_error = -ret;
        break;
      }
    }
    if (in_flight_ > 0) Reap(file, requests, on_done);
  }
  if (submit_error == 0) return Status::Ok();

  // The kernel refused a submission for good. Drain the reads it accepted, then drop the ring
  // (which also discards the SQEs it never took) and read the rest, now and in later batches,
  // with pread, so that the caller still gets every read.
  Logger()->warn("io_uring submit failed: {}; this queue falls back to pread",
                 ErrnoMessage(submit_error));
  while (in_flight_ > 0) Reap(file, requests, on_done);
  io_uring_queue_exit(&ring_);
  ring_ok_ = false;
  std::vector<size_t> rest(staged_.begin(), staged_.end());
  rest.insert(rest.end(), retry_.begin(), retry_.end());
  for (size_t i : rest) on_done(i, PreadFrom(file, requests[i], done_[i], counters_));
  for (size_t i = next; i < n; ++i) on_done(i, PreadFrom(file, requests[i], 0, counters_));
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::string_view IoBackendName(IoBackend backend) {
  switch (backend) {
    case IoBackend::kAuto:
      return "auto";
    case IoBackend::kIoUring:
      return "io_uring";
    case IoBackend::kPread:
      return "pread";
  }
  return "unknown";
}

Result<IoBackend> ParseIoBackend(std::string_view name) {
  for (IoBackend b : {IoBackend::kAuto, IoBackend::kIoUring, IoBackend::kPread}) {
    if (name == IoBackendName(b)) return b;
  }
  return Error(InvalidArgument("unknown I/O backend '{}': expected auto, io_uring or pread", name));
}

// ---------------------------------------------------------------------------------------------

Result<std::shared_ptr<BlockFile>> BlockFile::Open(const std::filesystem::path& path,
                                                   const Options& options) {
  const int flags = O_RDONLY | O_CLOEXEC;
  bool direct = options.direct;
  int fd = ::open(path.c_str(), flags | (direct ? O_DIRECT : 0));
  if (fd < 0 && direct && errno == EINVAL) {  // tmpfs before 6.6 refuses O_DIRECT at open
    direct = false;
    fd = ::open(path.c_str(), flags);
  }
  if (fd < 0) return Error(OsError(errno, "open", path));
  const Result<uint64_t> size = RegularFileSize(fd, path);
  if (!size.has_value()) {
    ::close(fd);
    return Error(size.error());
  }
  if (direct && *size > 0) {
    // Some file systems (FUSE, some overlays) accept O_DIRECT at open and refuse it at read
    // time; one aligned probe read finds out here rather than on a query.
    AlignedBuffer probe(kBlockAlignment);
    const ssize_t n =
        RetryOnEintr([&] { return ::pread(fd, probe.Get(kBlockAlignment), kBlockAlignment, 0); });
    if (n < 0 && errno == EINVAL) {
      ::close(fd);
      direct = false;
      fd = ::open(path.c_str(), flags);
      if (fd < 0) return Error(OsError(errno, "open", path));
    }
  }
  const size_t alignment =
      direct ? std::min(std::max(DirectAlignment(fd), options.min_alignment), kBlockAlignment) : 1;
  return std::shared_ptr<BlockFile>(new BlockFile(path, fd, *size, direct, alignment));
}

BlockFile::~BlockFile() { ::close(fd_); }

Status BlockFile::DropCache() const {
  // posix_fadvise returns the error number rather than setting errno.
  const int err = ::posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED);
  if (err != 0)
    return IOError("{}: posix_fadvise(DONTNEED): {}", path_.string(), ErrnoMessage(err));
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<IoQueue>> IoQueue::Create(IoBackend backend, uint32_t queue_depth) {
  if (queue_depth == 0 || queue_depth > kMaxQueueDepth) {
    return Error(InvalidArgument("queue_depth {} must be in 1..{}", queue_depth, kMaxQueueDepth));
  }
  if (backend == IoBackend::kPread) return std::make_unique<PreadQueue>(queue_depth);
  auto ring = IoUringQueue::Create(queue_depth);
  if (ring.has_value()) return std::unique_ptr<IoQueue>(std::move(*ring));
  if (backend == IoBackend::kIoUring) return Error(ring.error());
  static std::once_flag logged;
  std::call_once(logged, [&] {
    Logger()->warn("io_uring unavailable, block reads use pread: {}", ring.error().ToString());
  });
  return std::make_unique<PreadQueue>(queue_depth);
}

IoQueue::~IoQueue() = default;

Status IoQueue::ValidateRequests(const BlockFile& file, std::span<const ReadRequest> requests) {
  for (size_t i = 0; i < requests.size(); ++i) {
    const ReadRequest& r = requests[i];
    if (r.buffer == nullptr) {
      return InvalidArgument("{}: request {} (offset {}, length {}) has a null buffer",
                             file.path().string(), i, r.offset, r.length);
    }
    if (r.length == 0) {
      return InvalidArgument("{}: request {} (offset {}) has length 0", file.path().string(), i,
                             r.offset);
    }
    if (r.offset > std::numeric_limits<uint64_t>::max() - r.length ||
        r.offset + r.length > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
      return InvalidArgument("{}: request {} (offset {}, length {}) overflows the file offset",
                             file.path().string(), i, r.offset, r.length);
    }
    const uint64_t a = file.alignment();
    if (file.direct() && !(IsAligned(r.offset, a) && IsAligned(r.length, a) &&
                           IsAligned(reinterpret_cast<uintptr_t>(r.buffer), a))) {
      return InvalidArgument(
          "{}: request {} (offset {}, length {}, buffer {}) is not {}-aligned, which O_DIRECT "
          "requires",
          file.path().string(), i, r.offset, r.length, r.buffer, a);
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), capacity_(std::exchange(other.capacity_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::operator delete (data_, std::align_val_t{kBlockAlignment});
    data_ = std::exchange(other.data_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

AlignedBuffer::~AlignedBuffer() {
  if (data_ != nullptr) ::operator delete (data_, std::align_val_t{kBlockAlignment});
}

std::byte* AlignedBuffer::Get(size_t bytes) {
  if (data_ != nullptr && bytes <= capacity_) return data_;
  auto round_up = [](size_t v) {
    STRATA_CHECK(v <= std::numeric_limits<size_t>::max() - (kBlockAlignment - 1));
    return (v + kBlockAlignment - 1) / kBlockAlignment * kBlockAlignment;
  };
  // Grow by at least half again, so that slowly growing requests reallocate O(log n) times.
  size_t capacity =
      std::max({round_up(bytes), kBlockAlignment, round_up(capacity_ + capacity_ / 2)});
  if (data_ != nullptr) ::operator delete (data_, std::align_val_t{kBlockAlignment});
  data_ = nullptr;
  capacity_ = 0;
  data_ = static_cast<std::byte*>(::operator new (capacity, std::align_val_t{kBlockAlignment}));
  capacity_ = capacity;
  return data_;
}

}  // namespace strata::storage
