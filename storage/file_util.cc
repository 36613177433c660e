#include "storage/file_util.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string_view>
#include <utility>
#include <vector>

#include "storage/posix_file.h"

namespace strata::storage {
namespace {

// Large enough that streaming writers (fvecs rows of a few hundred bytes) make few
// syscalls, small enough not to matter next to the data being written.
constexpr size_t kWriteBufferBytes = size_t{1} << 20;

// A rename is only durable once the directory entry itself is on disk.
Status SyncDirectory(const std::filesystem::path& file) {
  std::filesystem::path dir = file.parent_path();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return OsError(errno, "open directory for fsync", dir);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some file systems do not support fsync on directories (EINVAL); there is
  // nothing more we can do there, and the data itself is already synced.
  if (rc != 0 && err != EINVAL)
    return IOError("{}: fsync directory: {}", dir.string(), ErrnoMessage(err));
  return Status::Ok();
}

// Closes `fd` and removes the temporary file; used on every failure path and by the
// destructor so that an abandoned write never leaves "<path>.tmp" behind.
void Abandon(int& fd, const std::filesystem::path& tmp_path) {
  if (fd < 0) return;
  ::close(fd);
  fd = -1;
  ::unlink(tmp_path.c_str());
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// AtomicFileWriter

Result<AtomicFileWriter> AtomicFileWriter::Open(const std::filesystem::path& path) {
  if (path.empty() || !path.has_filename()) {
    return Error(InvalidArgument("'{}': not a file path", path.string()));
  }
  AtomicFileWriter w;
  w.path_ = path;
  w.tmp_path_ = path;
  w.tmp_path_ += ".tmp";
  w.fd_ = ::open(w.tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w.fd_ < 0) return Error(OsError(errno, "cannot create temporary file", w.tmp_path_));
  return w;
}

AtomicFileWriter::AtomicFileWriter(AtomicFileWriter&& other) noexcept
    : path_(std::move(other.path_)),
      tmp_path_(std::move(other.tmp_path_)),
      fd_(std::exchange(other.fd_, -1)),
      written_(std::exchange(other.written_, 0)),
      buffer_(std::move(other.buffer_)) {}

AtomicFileWriter::~AtomicFileWriter() { Abandon(fd_, tmp_path_); }

Status AtomicFileWriter::Append(const void* data, size_t bytes) {
  if (fd_ < 0) {
    return InvalidArgument("{}: Append after Commit or after a failed write", path_.string());
  }
  if (bytes == 0) return Status::Ok();
  STRATA_CHECK(data != nullptr);
  const char* p = static_cast<const char*>(data);
  if (buffer_.size() + bytes <= kWriteBufferBytes) {
    if (buffer_.capacity() < kWriteBufferBytes) buffer_.reserve(kWriteBufferBytes);
    buffer_.append(p, bytes);
    written_ += bytes;
    return Status::Ok();
  }
  STRATA_RETURN_IF_ERROR(Flush());
  if (bytes >= kWriteBufferBytes) {
    // Large pieces go straight to the file: copying them through the buffer buys nothing.
    Status s = PwriteAll(fd_, {reinterpret_cast<const std::byte*>(p), bytes}, written_, tmp_path_);
    if (!s.ok()) {
      Abandon(fd_, tmp_path_);
      return s;
    }
  } else {
    buffer_.append(p, bytes);
  }
  written_ += bytes;
  return Status::Ok();
}

Status AtomicFileWriter::WriteAt(uint64_t offset, const void* data, size_t bytes) {
  if (fd_ < 0) {
    return InvalidArgument("{}: WriteAt after Commit or after a failed write", path_.string());
  }
  if (offset > written_ || bytes > written_ - offset) {
    return InvalidArgument(
        "{}: WriteAt of {} bytes at byte offset {} reaches past the {} bytes written so far",
        path_.string(), bytes, offset, written_);
  }
  if (bytes == 0) return Status::Ok();
  STRATA_CHECK(data != nullptr);
  // The target range may still sit in the buffer; flushing first keeps a single copy of every byte.
  STRATA_RETURN_IF_ERROR(Flush());
  Status s = PwriteAll(fd_, {static_cast<const std::byte*>(data), bytes}, offset, tmp_path_);
  if (!s.ok()) Abandon(fd_, tmp_path_);
  return s;
}

Status AtomicFileWriter::Flush() {
  if (buffer_.empty()) return Status::Ok();
  // Every write is positional: the buffer holds the bytes that end at written_.
  Status s =
      PwriteAll(fd_, std::as_bytes(std::span(buffer_)), written_ - buffer_.size(), tmp_path_);
  buffer_.clear();
  if (!s.ok()) Abandon(fd_, tmp_path_);
  return s;
}

Status AtomicFileWriter::Commit() {
  if (fd_ < 0) {
    return InvalidArgument("{}: Commit after Commit or after a failed write", path_.string());
  }
  STRATA_RETURN_IF_ERROR(Flush());
  if (::fsync(fd_) != 0) {
    Status s = IOError("{}: fsync: {}", tmp_path_.string(), ErrnoMessage(errno));
    Abandon(fd_, tmp_path_);
    return s;
  }
  // close() can report deferred write errors (e.g. on NFS), so its result matters.
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) {
    Status s = IOError("{}: close: {}", tmp_path_.string(), ErrnoMessage(errno));
    ::unlink(tmp_path_.c_str());
    return s;
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    Status s =
        IOError("{}: rename from {}: {}", path_.string(), tmp_path_.string(), ErrnoMessage(errno));
    ::unlink(tmp_path_.c_str());
    return s;
  }
  return SyncDirectory(path_);
}

Status AtomicWriteFile(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  STRATA_ASSIGN_OR_RETURN(AtomicFileWriter writer, AtomicFileWriter::Open(path));
  STRATA_RETURN_IF_ERROR(writer.Append(bytes.data(), bytes.size()));
  return writer.Commit();
}

// ---------------------------------------------------------------------------------------------
// MappedFile

Result<MappedFile> MappedFile::Open(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error(OsError(errno, "cannot open", path));
  const Result<uint64_t> size = RegularFileSize(fd, path);
  if (!size.has_value()) {
    ::close(fd);
    return Error(size.error());
  }
  MappedFile file;
  file.path_ = path;
  file.size_ = static_cast<size_t>(*size);
  if (file.size_ > 0) {
    void* p = ::mmap(nullptr, file.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      Status s =
          IOError("{}: mmap of {} bytes: {}", path.string(), file.size_, ErrnoMessage(errno));
      ::close(fd);
      return Error(std::move(s));
    }
    file.data_ = static_cast<const std::byte*>(p);
  }
  // The mapping keeps the file alive; the descriptor is no longer needed.
  ::close(fd);
  return file;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
}

Status SyncParentDirectory(const std::filesystem::path& path) { return SyncDirectory(path); }

Status CopyFileSynced(const std::filesystem::path& from, const std::filesystem::path& to,
                      uint64_t bytes, uint64_t& copied) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return OsError(errno, "open", from);
  const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) {
    const int err = errno;
    ::close(in);
    return OsError(err, "create", to);
  }
  Status st = Status::Ok();
  std::vector<char> buf(kWriteBufferBytes);
  uint64_t left = bytes;
  while (st.ok() && left > 0) {
    const ssize_t n = ::read(in, buf.data(), size_t(std::min<uint64_t>(left, buf.size())));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      st = OsError(errno, "read", from);
      break;
    }
    if (n == 0) {
      if (bytes != kWholeFile) st = IOError("{}: shorter than the {} bytes to copy", from.string(), bytes);
      break;
    }
    for (ssize_t off = 0; off < n;) {
      const ssize_t w = ::write(out, buf.data() + off, size_t(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        st = OsError(errno, "write", to);
        break;
      }
      off += w;
    }
    copied += uint64_t(n);
    if (bytes != kWholeFile) left -= uint64_t(n);
  }
  if (st.ok() && ::fsync(out) != 0) st = OsError(errno, "fsync", to);
  ::close(in);
  if (::close(out) != 0 && st.ok()) st = OsError(errno, "close", to);
  return st;
}

}  // namespace strata::storage
