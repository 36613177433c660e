#include "storage/section_file.h"

#include <fmt/core.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "storage/byte_format.h"

namespace strata::storage {

namespace {

// Header layout (docs/formats/section_file.md). Magic, versions and the checksum position are
// fixed for every major version, so any reader can tell "newer version" from "damaged".
constexpr size_t kMagicOffset = 0;
constexpr size_t kMajorOffset = 8;
constexpr size_t kMinorOffset = 10;
constexpr size_t kFlagsOffset = 12;
constexpr size_t kTableOffsetOffset = 16;
constexpr size_t kSectionCountOffset = 24;
constexpr size_t kReserved0Offset = 28;
constexpr size_t kFileSizeOffset = 32;
constexpr size_t kReserved1Offset = 40;
constexpr size_t kReserved1Bytes = 16;
constexpr size_t kHeaderChecksumOffset = 56;
static_assert(kHeaderChecksumOffset + 8 == kSectionFileHeaderBytes);

// Table entry: tag u32, reserved u32, offset u64, size u64, checksum u64.
constexpr size_t kEntryBytes = 32;
// The table starts on an 8-byte boundary so its 64-bit fields are naturally aligned in a mapping.
constexpr uint64_t kTableAlignment = 8;

// A page of zeros, the most padding ever needed at once.
constexpr std::byte kZeros[kSectionAlignment] = {};

uint64_t RoundUp(uint64_t n, uint64_t align) { return (n + align - 1) / align * align; }

// Magic as the caller means it: up to 8 bytes, zero padded. False if it does not fit.
bool PadMagic(std::string_view magic, char (&out)[kSectionFileMagicBytes]) {
  if (magic.empty() || magic.size() > kSectionFileMagicBytes) return false;
  std::memset(out, 0, sizeof(out));
  std::memcpy(out, magic.data(), magic.size());
  return true;
}

}  // namespace

std::string SectionTagName(uint32_t tag) {
  std::string name(4, '\0');
  for (int i = 0; i < 4; ++i) {
    unsigned char c = static_cast<unsigned char>(tag >> (8 * i));
    if (c < 0x20 || c >= 0x7f) return fmt::format("0x{:08x}", tag);
    name[i] = static_cast<char>(c);
  }
  return name;
}

uint64_t SectionChecksum(std::span<const std::byte> bytes) {
  return XXH3_64bits(bytes.data(), bytes.size());
}

// ---------------------------------------------------------------------------------------------
// SectionFileWriter

void SectionFileWriter::HashStateDeleter::operator()(XXH3_state_s* state) const {
  XXH3_freeState(state);
}

SectionFileWriter::SectionFileWriter(std::filesystem::path path, AtomicFileWriter file)
    : path_(std::move(path)), file_(std::move(file)) {}

SectionFileWriter::SectionFileWriter(SectionFileWriter&& other) noexcept
    : path_(std::move(other.path_)),
      file_(std::move(other.file_)),
      major_(other.major_),
      minor_(other.minor_),
      entries_(std::move(other.entries_)),
      hash_(std::move(other.hash_)),
      section_open_(std::exchange(other.section_open_, false)),
      finished_(std::exchange(other.finished_, true)) {
  std::memcpy(magic_, other.magic_, sizeof(magic_));
}

// AtomicFileWriter's destructor removes the temporary file if Commit never succeeded.
SectionFileWriter::~SectionFileWriter() = default;

Result<SectionFileWriter> SectionFileWriter::Create(const std::filesystem::path& path,
                                                    std::string_view magic, uint16_t major,
                                                    uint16_t minor) {
  char padded[kSectionFileMagicBytes];
  if (!PadMagic(magic, padded)) {
    return Error(InvalidArgument("{}: magic must be 1 to {} bytes, got {}", path.string(),
                                 kSectionFileMagicBytes, magic.size()));
  }
  std::unique_ptr<XXH3_state_s, HashStateDeleter> hash(XXH3_createState());
  if (hash == nullptr) {
    return Error(ResourceExhausted("{}: cannot allocate checksum state", path.string()));
  }
  STRATA_ASSIGN_OR_RETURN(AtomicFileWriter file, AtomicFileWriter::Open(path));
  SectionFileWriter w(path, std::move(file));
  std::memcpy(w.magic_, padded, sizeof(padded));
  w.major_ = major;
  w.minor_ = minor;
  w.hash_ = std::move(hash);
  // The header depends on where the table ends up, so reserve its bytes now and fill them in
  // at Commit (AtomicFileWriter::WriteAt).
  STRATA_RETURN_IF_ERROR(w.Write(kZeros, kSectionFileHeaderBytes));
  return w;
}

Status SectionFileWriter::CheckUsable(std::string_view op) const {
  if (finished_) {
    return InvalidArgument("{}: {} after Commit or after a failed write", path_.string(), op);
  }
  return Status::Ok();
}

Status SectionFileWriter::Write(const void* data, size_t bytes) {
  Status s = file_.Append(data, bytes);
  if (!s.ok()) finished_ = true;
  return s;
}

Status SectionFileWriter::BeginSection(uint32_t tag) {
  STRATA_RETURN_IF_ERROR(CheckUsable("BeginSection"));
  if (section_open_) {
    return InvalidArgument("{}: BeginSection('{}') while section '{}' is still open",
                           path_.string(), SectionTagName(tag),
                           SectionTagName(entries_.back().tag));
  }
  for (const Entry& e : entries_) {
    if (e.tag == tag) {
      return AlreadyExists("{}: section '{}' was already written", path_.string(),
                           SectionTagName(tag));
    }
  }
  if (entries_.size() == UINT32_MAX) {
    return InvalidArgument("{}: too many sections (the count is a uint32)", path_.string());
  }
  const uint64_t offset = RoundUp(file_.bytes_written(), kSectionAlignment);
  STRATA_RETURN_IF_ERROR(Write(kZeros, offset - file_.bytes_written()));
  if (XXH3_64bits_reset(hash_.get()) != XXH_OK) {
    finished_ = true;
    return Internal("{}: cannot reset checksum state", path_.string());
  }
  entries_.push_back(Entry{.tag = tag, .offset = offset, .size = 0, .checksum = 0});
  section_open_ = true;
  return Status::Ok();
}

Status SectionFileWriter::Append(const void* data, size_t bytes) {
  STRATA_RETURN_IF_ERROR(CheckUsable("Append"));
  if (!section_open_) return InvalidArgument("{}: Append with no open section", path_.string());
  if (bytes == 0) return Status::Ok();
  STRATA_RETURN_IF_ERROR(Write(data, bytes));
  if (XXH3_64bits_update(hash_.get(), data, bytes) != XXH_OK) {
    finished_ = true;
    return Internal("{}: checksum update failed", path_.string());
  }
  entries_.back().size += bytes;
  return Status::Ok();
}

Status SectionFileWriter::EndSection() {
  STRATA_RETURN_IF_ERROR(CheckUsable("EndSection"));
  if (!section_open_) {
    return InvalidArgument("{}: EndSection with no open section", path_.string());
  }
  entries_.back().checksum = XXH3_64bits_digest(hash_.get());
  section_open_ = false;
  return Status::Ok();
}

Status SectionFileWriter::AddSection(uint32_t tag, std::span<const std::byte> data) {
  STRATA_RETURN_IF_ERROR(BeginSection(tag));
  STRATA_RETURN_IF_ERROR(Append(data.data(), data.size()));
  return EndSection();
}

Status SectionFileWriter::Commit() {
  STRATA_RETURN_IF_ERROR(CheckUsable("Commit"));
  if (section_open_) {
    return InvalidArgument("{}: Commit while section '{}' is still open", path_.string(),
                           SectionTagName(entries_.back().tag));
  }
  const uint64_t table_offset = RoundUp(file_.bytes_written(), kTableAlignment);
  STRATA_RETURN_IF_ERROR(Write(kZeros, table_offset - file_.bytes_written()));

  std::vector<std::byte> table(entries_.size() * kEntryBytes + 8);
  for (size_t i = 0; i < entries_.size(); ++i) {
    std::byte* p = table.data() + i * kEntryBytes;
    StoreLe<uint32_t>(p, entries_[i].tag);
    StoreLe<uint32_t>(p + 4, 0);
    StoreLe<uint64_t>(p + 8, entries_[i].offset);
    StoreLe<uint64_t>(p + 16, entries_[i].size);
    StoreLe<uint64_t>(p + 24, entries_[i].checksum);
  }
  const size_t entries_bytes = entries_.size() * kEntryBytes;
  StoreLe<uint64_t>(table.data() + entries_bytes,
                    SectionChecksum(std::span(table.data(), entries_bytes)));
  STRATA_RETURN_IF_ERROR(Write(table.data(), table.size()));

  std::byte header[kSectionFileHeaderBytes] = {};
  std::memcpy(header + kMagicOffset, magic_, sizeof(magic_));
  StoreLe<uint16_t>(header + kMajorOffset, major_);
  StoreLe<uint16_t>(header + kMinorOffset, minor_);
  StoreLe<uint32_t>(header + kFlagsOffset, 0);
  StoreLe<uint64_t>(header + kTableOffsetOffset, table_offset);
  StoreLe<uint32_t>(header + kSectionCountOffset, static_cast<uint32_t>(entries_.size()));
  StoreLe<uint64_t>(header + kFileSizeOffset, file_.bytes_written());
  StoreLe<uint64_t>(header + kHeaderChecksumOffset,
                    SectionChecksum(std::span(header, kHeaderChecksumOffset)));
  Status s = file_.WriteAt(0, header, sizeof(header));
  if (s.ok()) s = file_.Commit();
  finished_ = true;
  return s;
}

// ---------------------------------------------------------------------------------------------
// SectionFile

Result<SectionFile> SectionFile::Open(const std::filesystem::path& path, std::string_view magic,
                                      uint16_t supported_major, const SectionFileOptions& options) {
  char expected_magic[kSectionFileMagicBytes];
  if (!PadMagic(magic, expected_magic)) {
    return Error(InvalidArgument("{}: magic must be 1 to {} bytes, got {}", path.string(),
                                 kSectionFileMagicBytes, magic.size()));
  }
  STRATA_ASSIGN_OR_RETURN(MappedFile mapped, MappedFile::Open(path));
  SectionFile f(std::move(mapped));
  const std::string name = path.string();
  const std::byte* data = f.file_.data();
  const uint64_t actual_size = f.file_.size();

  if (actual_size < kSectionFileHeaderBytes) {
    return Error(Corruption("{}: file is {} bytes, shorter than the {}-byte header", name,
                            actual_size, kSectionFileHeaderBytes));
  }
  // Magic first: a file of another kind should be reported as such, not as damaged.
  char found_magic[kSectionFileMagicBytes];
  std::memcpy(found_magic, data + kMagicOffset, sizeof(found_magic));
  if (std::memcmp(found_magic, expected_magic, sizeof(found_magic)) != 0) {
    return Error(InvalidArgument("{}: wrong magic at byte 0: found {}, expected {}", name,
                                 MagicForMessage(std::as_bytes(std::span(found_magic))),
                                 MagicForMessage(std::as_bytes(std::span(expected_magic)))));
  }
  // Checksum before version, so that a damaged version field reads as damage.
  const uint64_t stored_header_checksum = LoadLe<uint64_t>(data + kHeaderChecksumOffset);
  const uint64_t header_checksum = SectionChecksum(std::span(data, kHeaderChecksumOffset));
  if (stored_header_checksum != header_checksum) {
    return Error(Corruption(
        "{}: header checksum mismatch: field at byte {} is 0x{:016x}, bytes 0..{} hash to "
        "0x{:016x}",
        name, kHeaderChecksumOffset, stored_header_checksum, kHeaderChecksumOffset - 1,
        header_checksum));
  }
  f.major_ = LoadLe<uint16_t>(data + kMajorOffset);
  f.minor_ = LoadLe<uint16_t>(data + kMinorOffset);
  if (f.major_ != supported_major) {
    return Error(InvalidArgument(
        "{}: unsupported major version {} (field at byte {}, minor {}); this build reads major "
        "version {}",
        name, f.major_, kMajorOffset, f.minor_, supported_major));
  }
  const uint32_t flags = LoadLe<uint32_t>(data + kFlagsOffset);
  if (flags != 0) {
    return Error(InvalidArgument("{}: unsupported header flags 0x{:08x} (field at byte {})", name,
                                 flags, kFlagsOffset));
  }
  const uint32_t reserved0 = LoadLe<uint32_t>(data + kReserved0Offset);
  if (reserved0 != 0) {
    return Error(Corruption("{}: reserved header field at byte {} is 0x{:08x}, expected 0", name,
                            kReserved0Offset, reserved0));
  }
  for (size_t i = 0; i < kReserved1Bytes; ++i) {
    if (data[kReserved1Offset + i] != std::byte{0}) {
      return Error(Corruption("{}: reserved header byte {} is 0x{:02x}, expected 0", name,
                              kReserved1Offset + i,
                              static_cast<unsigned>(data[kReserved1Offset + i])));
    }
  }
  const uint64_t header_file_size = LoadLe<uint64_t>(data + kFileSizeOffset);
  if (header_file_size != actual_size) {
    return Error(Corruption(
        "{}: header says the file is {} bytes (field at byte {}) but it is {} bytes; the file "
        "was {}",
        name, header_file_size, kFileSizeOffset, actual_size,
        actual_size < header_file_size ? "truncated" : "extended"));
  }
  STRATA_RETURN_IF_ERROR(f.ParseTable(LoadLe<uint64_t>(data + kTableOffsetOffset),
                                      LoadLe<uint32_t>(data + kSectionCountOffset)));
  if (options.verify_checksums) {
    for (const Entry& e : f.entries_) STRATA_RETURN_IF_ERROR(f.VerifySection(e.tag));
  }
  return f;
}

Status SectionFile::ParseTable(uint64_t table_offset, uint32_t section_count) {
  const std::string name = path().string();
  const uint64_t size = file_.size();
  if (table_offset < kSectionFileHeaderBytes || table_offset % kTableAlignment != 0) {
    return Corruption(
        "{}: section table offset {} (field at byte {}) must be a multiple of {} "
        "past the {}-byte header",
        name, table_offset, kTableOffsetOffset, kTableAlignment, kSectionFileHeaderBytes);
  }
  // section_count < 2^32, so this cannot overflow a uint64.
  const uint64_t table_bytes = uint64_t{section_count} * kEntryBytes + 8;
  // The table is the last thing in the file. Comparing without adding avoids overflow for a
  // crafted offset, and bounds section_count by the file size before anything is allocated.
  if (table_offset > size || size - table_offset != table_bytes) {
    return Corruption(
        "{}: section table at byte {} (field at byte {}) with {} entries (field at byte {}) "
        "needs {} bytes and must end the file, but the file is {} bytes",
        name, table_offset, kTableOffsetOffset, section_count, kSectionCountOffset, table_bytes,
        size);
  }
  const std::byte* table = file_.data() + table_offset;
  const uint64_t entries_bytes = table_bytes - 8;
  const uint64_t stored_table_checksum = LoadLe<uint64_t>(table + entries_bytes);
  const uint64_t table_checksum = SectionChecksum(std::span(table, entries_bytes));
  if (stored_table_checksum != table_checksum) {
    return Corruption(
        "{}: section table checksum mismatch: field at byte {} is 0x{:016x}, "
        "bytes {}..{} hash to 0x{:016x}",
        name, table_offset + entries_bytes, stored_table_checksum, table_offset,
        table_offset + entries_bytes - 1, table_checksum);
  }

  entries_.reserve(section_count);
  uint64_t previous_end = kSectionFileHeaderBytes;
  for (uint32_t i = 0; i < section_count; ++i) {
    const std::byte* p = table + uint64_t{i} * kEntryBytes;
    const uint64_t entry_at = table_offset + uint64_t{i} * kEntryBytes;
    Entry e{.tag = LoadLe<uint32_t>(p),
            .offset = LoadLe<uint64_t>(p + 8),
            .size = LoadLe<uint64_t>(p + 16),
            .checksum = LoadLe<uint64_t>(p + 24)};
    const std::string tag = SectionTagName(e.tag);
    const uint32_t reserved = LoadLe<uint32_t>(p + 4);
    if (reserved != 0) {
      return Corruption(
          "{}: section table entry {} ('{}', at byte {}): reserved field is "
          "0x{:08x}, expected 0",
          name, i, tag, entry_at + 4, reserved);
    }
    if (e.offset % kSectionAlignment != 0) {
      return Corruption(
          "{}: section '{}' (table entry {} at byte {}) starts at byte {}, which is "
          "not {}-aligned",
          name, tag, i, entry_at, e.offset, kSectionAlignment);
    }
    if (e.offset > table_offset || e.size > table_offset - e.offset) {
      return Corruption(
          "{}: section '{}' (table entry {} at byte {}) at byte {} with {} bytes "
          "does not fit before the section table at byte {}",
          name, tag, i, entry_at, e.offset, e.size, table_offset);
    }
    // Sections are listed in file order; a section starting before the previous one ends
    // overlaps it (or the header, for the first section).
    if (e.offset < previous_end) {
      if (i == 0) {
        return Corruption(
            "{}: section '{}' (table entry 0 at byte {}) at byte {} overlaps the "
            "{}-byte header",
            name, tag, entry_at, e.offset, kSectionFileHeaderBytes);
      }
      const Entry& prev = entries_.back();
      return Corruption(
          "{}: section '{}' (table entry {} at byte {}) at bytes [{}, {}) overlaps "
          "or precedes section '{}' at bytes [{}, {})",
          name, tag, i, entry_at, e.offset, e.offset + e.size, SectionTagName(prev.tag),
          prev.offset, prev.offset + prev.size);
    }
    previous_end = e.offset + e.size;
    entries_.push_back(e);
  }

  by_tag_.resize(entries_.size());
  for (uint32_t i = 0; i < by_tag_.size(); ++i) by_tag_[i] = i;
  std::sort(by_tag_.begin(), by_tag_.end(),
            [&](uint32_t a, uint32_t b) { return entries_[a].tag < entries_[b].tag; });
  for (size_t i = 1; i < by_tag_.size(); ++i) {
    const Entry& a = entries_[by_tag_[i - 1]];
    const Entry& b = entries_[by_tag_[i]];
    if (a.tag == b.tag) {
      return Corruption("{}: duplicate section tag '{}' (sections at bytes {} and {})", name,
                        SectionTagName(a.tag), std::min(a.offset, b.offset),
                        std::max(a.offset, b.offset));
    }
  }
  return Status::Ok();
}

const SectionFile::Entry* SectionFile::Find(uint32_t tag) const {
  auto it = std::lower_bound(by_tag_.begin(), by_tag_.end(), tag,
                             [&](uint32_t index, uint32_t t) { return entries_[index].tag < t; });
  if (it == by_tag_.end() || entries_[*it].tag != tag) return nullptr;
  return &entries_[*it];
}

Result<std::span<const std::byte>> SectionFile::Section(uint32_t tag) const {
  const Entry* e = Find(tag);
  if (e == nullptr) {
    return Error(NotFound("{}: no section '{}'", path().string(), SectionTagName(tag)));
  }
  // Open checked offset + size against the file size.
  return std::span<const std::byte>(file_.data() + e->offset, e->size);
}

Status SectionFile::VerifySection(uint32_t tag) const {
  const Entry* e = Find(tag);
  if (e == nullptr) return NotFound("{}: no section '{}'", path().string(), SectionTagName(tag));
  const uint64_t checksum = SectionChecksum(std::span(file_.data() + e->offset, e->size));
  if (checksum != e->checksum) {
    return Corruption(
        "{}: checksum mismatch in section '{}' (bytes [{}, {})): table says "
        "0x{:016x}, contents hash to 0x{:016x}",
        path().string(), SectionTagName(tag), e->offset, e->offset + e->size, e->checksum,
        checksum);
  }
  return Status::Ok();
}

}  // namespace strata::storage
