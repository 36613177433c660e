#include "storage/posix_file.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <system_error>

namespace strata::storage {

std::string ErrnoMessage(int err) {
  return std::error_code(err, std::generic_category()).message();
}

Status OsError(int err, std::string_view what, const std::filesystem::path& path) {
  if (err == ENOENT || err == ENOTDIR) {
    return NotFound("{}: {}: {}", path.string(), what, ErrnoMessage(err));
  }
  return IOError("{}: {}: {}", path.string(), what, ErrnoMessage(err));
}

Result<uint64_t> RegularFileSize(int fd, const std::filesystem::path& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Error(OsError(errno, "fstat", path));
  if (!S_ISREG(st.st_mode)) return Error(InvalidArgument("{}: not a regular file", path.string()));
  return static_cast<uint64_t>(st.st_size);
}

Status PwriteAll(int fd, std::span<const std::byte> bytes, uint64_t offset,
                 const std::filesystem::path& path) {
  return PwriteAll(fd, bytes, {}, offset, path);
}

Status PwriteAll(int fd, std::span<const std::byte> first, std::span<const std::byte> second,
                 uint64_t offset, const std::filesystem::path& path) {
  iovec iov[2] = {{const_cast<std::byte*>(first.data()), first.size()},
                  {const_cast<std::byte*>(second.data()), second.size()}};
  iovec* cur = iov;
  int count = 2;
  uint64_t pos = offset;
  while (count > 0) {
    if (cur->iov_len == 0) {
      ++cur;
      --count;
      continue;
    }
    const ssize_t n = ::pwritev(fd, cur, count, static_cast<off_t>(pos));
    if (n < 0) {
      if (errno == EINTR) continue;
      return IOError("{}: write failed at byte offset {}: {}", path.string(), pos,
                     ErrnoMessage(errno));
    }
    if (n == 0) return IOError("{}: write made no progress at byte offset {}", path.string(), pos);
    pos += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (left > 0) {
      if (left >= cur->iov_len) {
        left -= cur->iov_len;
        ++cur;
        --count;
      } else {
        cur->iov_base = static_cast<char*>(cur->iov_base) + left;
        cur->iov_len -= left;
        left = 0;
      }
    }
  }
  return Status::Ok();
}

Status PreadExact(int fd, std::byte* dst, size_t n, uint64_t offset,
                  const std::filesystem::path& path) {
  while (n > 0) {
    const ssize_t got = ::pread(fd, dst, n, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      return IOError("{}: read of {} bytes at byte offset {} failed: {}", path.string(), n, offset,
                     ErrnoMessage(errno));
    }
    if (got == 0) {
      return IOError(
          "{}: file ended at byte offset {} while {} more bytes were expected (was it "
          "truncated while being read?)",
          path.string(), offset, n);
    }
    dst += got;
    n -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return Status::Ok();
}

}  // namespace strata::storage
