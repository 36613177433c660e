#pragma once
// Small file helpers shared by every writer and reader in Strata.
// Thread-safe (no shared state).

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

#include "core/status.h"

namespace strata::storage {

// Writes `bytes` to path atomically: "<path>.tmp", fsync, rename, fsync of the directory.
// A crash leaves either the old file or the new one, never a mix.
Status AtomicWriteFile(const std::filesystem::path& path, std::span<const std::byte> bytes);

// Makes the directory entry of `path` durable: fsyncs the directory holding it
// (after creating a file or folder that must survive a crash).
Status SyncParentDirectory(const std::filesystem::path& path);

// Copies the first `bytes` of `from` (all of it: kWholeFile) into `to`, a file it
// creates (O_EXCL: an existing file is never overwritten), fsynced before it returns;
// adds the bytes written to `copied`. IOError naming the file on failure, and then `to`
// may hold part of the data (the caller created it and removes it). The directory entry
// is not synced: call SyncParentDirectory once the folder is complete.
inline constexpr uint64_t kWholeFile = UINT64_MAX;
Status CopyFileSynced(const std::filesystem::path& from, const std::filesystem::path& to,
                      uint64_t bytes, uint64_t& copied);

// Streaming variant for large outputs: write pieces with Append, then Commit.
// If Commit is never called the temporary file is removed. Thread-compatible.
class AtomicFileWriter {
 public:
  static Result<AtomicFileWriter> Open(const std::filesystem::path& path);
  AtomicFileWriter(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter& operator=(AtomicFileWriter&&) = delete;
  ~AtomicFileWriter();

  Status Append(const void* data, size_t bytes);
  // Overwrites bytes that were already appended, e.g. a header whose fields are only known once
  // everything after it is written. [offset, offset + bytes) must lie within bytes_written();
  // bytes_written() does not change and later Appends continue at the end.
  Status WriteAt(uint64_t offset, const void* data, size_t bytes);
  uint64_t bytes_written() const { return written_; }
  // Flushes, fsyncs, renames into place and fsyncs the directory.
  Status Commit();

 private:
  AtomicFileWriter() = default;
  std::filesystem::path path_;
  std::filesystem::path tmp_path_;
  int fd_ = -1;
  uint64_t written_ = 0;
  std::string buffer_;
  Status Flush();
};

// Read-only memory mapping of a whole file. Empty files map to an empty span.
// Immutable after Open; safe to read from many threads.
class MappedFile {
 public:
  static Result<MappedFile> Open(const std::filesystem::path& path);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

 private:
  MappedFile() = default;
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace strata::storage
