#pragma once
// The container format for every file Strata writes: a 64-byte header (magic, version, section
// table location, checksum), then sections each starting on a 4096-byte boundary so O_DIRECT can
// read them, then a section table with one XXH3-64 checksum per section and one for the table
// itself. The byte layout and the checks a reader makes are documented in
// docs/formats/section_file.md.
//
// A file kind (HNSW index, SPANN postings, ...) picks its magic, its major/minor version and the
// tags of its sections; this layer knows nothing about what the sections hold.
//
//   STRATA_ASSIGN_OR_RETURN(auto w, SectionFileWriter::Create(path, "STRHNSW", 1, 0));
//   STRATA_RETURN_IF_ERROR(w.AddSection(SectionTag("META"), meta_bytes));
//   STRATA_RETURN_IF_ERROR(w.BeginSection(SectionTag("VECS")));
//   for (...) STRATA_RETURN_IF_ERROR(w.Append(chunk.data(), chunk.size()));
//   STRATA_RETURN_IF_ERROR(w.EndSection());
//   STRATA_RETURN_IF_ERROR(w.Commit());
//
//   STRATA_ASSIGN_OR_RETURN(auto f, SectionFile::Open(path, "STRHNSW", 1));
//   STRATA_ASSIGN_OR_RETURN(std::span<const std::byte> meta, f.Section(SectionTag("META")));

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "storage/file_util.h"

// xxhash's streaming state, kept opaque so that xxhash.h stays private to strata_storage.
struct XXH3_state_s;

namespace strata::storage {

// Sizes fixed by the format (see docs/formats/section_file.md).
inline constexpr size_t kSectionFileHeaderBytes = 64;
inline constexpr size_t kSectionFileMagicBytes = 8;
// Every section starts at a multiple of this, the largest logical block size O_DIRECT needs.
inline constexpr uint64_t kSectionAlignment = 4096;

// Builds a tag from four characters, stored so that the four bytes on disk read in order:
// SectionTag("META") appears as "META" in a hex dump.
constexpr uint32_t SectionTag(const char (&s)[5]) {
  return static_cast<uint32_t>(static_cast<uint8_t>(s[0])) |
         static_cast<uint32_t>(static_cast<uint8_t>(s[1])) << 8 |
         static_cast<uint32_t>(static_cast<uint8_t>(s[2])) << 16 |
         static_cast<uint32_t>(static_cast<uint8_t>(s[3])) << 24;
}

// "META" when all four bytes are printable ASCII, otherwise hex such as "0x0000ff01".
std::string SectionTagName(uint32_t tag);

// The checksum used throughout the format (XXH3, 64-bit, seed 0). Exposed so that tools such as
// `strata inspect` and tests can recompute what the reader checks.
uint64_t SectionChecksum(std::span<const std::byte> bytes);

// Writes a section file in one pass, so that multi-gigabyte sections never have to be in memory at
// once: each section is checksummed as it streams through. The file is built as "<path>.tmp" and
// only Commit moves it into place (fsync, rename, fsync of the directory); a writer destroyed
// without a successful Commit leaves nothing at `path` and removes the temporary file.
// After any failed write, or after Commit, every call returns an error.
// Thread-compatible: one thread at a time.
class SectionFileWriter {
 public:
  // `magic`: 1 to 8 bytes naming the file kind, zero padded to 8 on disk.
  // Errors: InvalidArgument for a bad magic or path, IOError/NotFound when the temporary file
  // cannot be created.
  static Result<SectionFileWriter> Create(const std::filesystem::path& path, std::string_view magic,
                                          uint16_t major, uint16_t minor);

  SectionFileWriter(SectionFileWriter&&) noexcept;
  SectionFileWriter& operator=(SectionFileWriter&&) = delete;
  ~SectionFileWriter();

  // Pads with zeros to the next 4096-byte boundary and opens a section there.
  // InvalidArgument if a section is already open; AlreadyExists if `tag` was used before.
  Status BeginSection(uint32_t tag);
  // Appends to the open section. InvalidArgument if none is open.
  Status Append(const void* data, size_t bytes);
  // Closes the open section, recording its size and checksum. InvalidArgument if none is open.
  Status EndSection();
  // BeginSection + Append + EndSection.
  Status AddSection(uint32_t tag, std::span<const std::byte> data);
  // Writes the section table and the header, then makes the file durable and visible at `path`.
  // InvalidArgument if a section is still open.
  Status Commit();

  const std::filesystem::path& path() const { return path_; }

 private:
  struct Entry {
    uint32_t tag;
    uint64_t offset;
    uint64_t size;
    uint64_t checksum;
  };
  struct HashStateDeleter {
    void operator()(XXH3_state_s* state) const;
  };

  SectionFileWriter(std::filesystem::path path, AtomicFileWriter file);
  Status CheckUsable(std::string_view op) const;
  // Appends through file_, marking the writer unusable if the write fails.
  Status Write(const void* data, size_t bytes);

  std::filesystem::path path_;
  AtomicFileWriter file_;
  char magic_[kSectionFileMagicBytes] = {};
  uint16_t major_ = 0;
  uint16_t minor_ = 0;
  std::vector<Entry> entries_;
  std::unique_ptr<XXH3_state_s, HashStateDeleter> hash_;
  bool section_open_ = false;
  // Set by Commit and by any failed write; the underlying file is gone or finished either way.
  bool finished_ = false;
};

struct SectionFileOptions {
  // Verify every section's checksum in Open. Turn off to open huge files quickly and call
  // VerifySection on the sections actually used (the header and the table are always verified).
  bool verify_checksums = true;
};

// A section file opened for reading: the file is memory-mapped read-only and sections are spans
// into the mapping, valid as long as this object lives.
// Immutable after Open; safe for any number of concurrent readers.
class SectionFile {
 public:
  // Raw section table entry, for `strata inspect`.
  struct Entry {
    uint32_t tag;
    uint64_t offset;  // byte offset in the file, a multiple of kSectionAlignment
    uint64_t size;    // bytes
    uint64_t checksum;
  };

  // Opens and validates `path`. Every failure is a Status whose message names the file and the
  // offending byte offset, field or section; nothing is read out of bounds and nothing is
  // allocated from a size that was not checked against the file size first.
  // Errors: InvalidArgument for a file of another kind (magic), an unsupported major version or
  // unknown header flags; Corruption for anything damaged (too short, checksums, sizes, offsets,
  // overlapping or duplicate sections); NotFound/IOError from the file system.
  // Any minor version of `supported_major` is accepted: minor versions only add sections.
  static Result<SectionFile> Open(const std::filesystem::path& path, std::string_view magic,
                                  uint16_t supported_major, const SectionFileOptions& options = {});

  SectionFile(SectionFile&&) noexcept = default;
  SectionFile& operator=(SectionFile&&) noexcept = default;

  uint16_t major() const { return major_; }
  uint16_t minor() const { return minor_; }
  bool Has(uint32_t tag) const { return Find(tag) != nullptr; }
  // The bytes of section `tag`. NotFound, naming the file and the tag, when it is absent.
  Result<std::span<const std::byte>> Section(uint32_t tag) const;
  // Recomputes the checksum of section `tag`: Corruption on mismatch, NotFound when absent.
  Status VerifySection(uint32_t tag) const;
  const std::filesystem::path& path() const { return file_.path(); }
  size_t file_size() const { return file_.size(); }
  // In file order (ascending offset).
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  explicit SectionFile(MappedFile file) : file_(std::move(file)) {}
  const Entry* Find(uint32_t tag) const;
  Status ParseTable(uint64_t table_offset, uint32_t section_count);

  MappedFile file_;
  uint16_t major_ = 0;
  uint16_t minor_ = 0;
  std::vector<Entry> entries_;
  // Indexes into entries_, sorted by tag, for binary search.
  std::vector<uint32_t> by_tag_;
};

}  // namespace strata::storage
