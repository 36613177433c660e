#pragma once
// The POSIX file layer under Strata's writers and readers (file_util, section files, block I/O,
// the WAL): errno messages, EINTR retries, and positional reads and writes that loop over short
// transfers so that callers only ever see "all of it" or an error naming the file and offset.
// Thread-safe: no shared state; callers own their descriptors.

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "core/status.h"

namespace strata::storage {

// The message for an errno value. std::strerror is not guaranteed thread-safe; this is.
std::string ErrnoMessage(int err);

// "<path>: <what>: <errno message>", as NotFound for ENOENT and ENOTDIR (the codes callers branch
// on after open or stat) and as IOError for anything else.
Status OsError(int err, std::string_view what, const std::filesystem::path& path);

// Calls `call` again for as long as it returns -1 with errno == EINTR; returns its last result
// (errno is left as that call set it). For system calls that report failure as -1.
template <typename Call>
auto RetryOnEintr(Call&& call) -> decltype(call()) {
  decltype(call()) rc;
  do {
    rc = call();
  } while (rc == -1 && errno == EINTR);
  return rc;
}

// The size of the open file `fd`: OsError when fstat fails, InvalidArgument naming `path` when it
// is not a regular file (a directory, a FIFO, a device).
Result<uint64_t> RegularFileSize(int fd, const std::filesystem::path& path);

// Writes all of `bytes` at byte `offset` of `fd` (pwrite: the file position is left alone),
// retrying on EINTR and short writes. Errors name `path` and the offset reached.
Status PwriteAll(int fd, std::span<const std::byte> bytes, uint64_t offset,
                 const std::filesystem::path& path);

// Writes `first` and then `second` contiguously at `offset` with one gather write (pwritev) where
// the kernel takes both at once, retrying on EINTR and short writes. Either may be empty.
Status PwriteAll(int fd, std::span<const std::byte> first, std::span<const std::byte> second,
                 uint64_t offset, const std::filesystem::path& path);

// Reads exactly `n` bytes at byte `offset` into `dst`, retrying on EINTR and short reads. End of
// file before `n` bytes is an IOError: callers check the range against the file size first, so
// it means the file shrank while being read.
Status PreadExact(int fd, std::byte* dst, size_t n, uint64_t offset,
                  const std::filesystem::path& path);

}  // namespace strata::storage
