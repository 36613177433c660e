#include "storage/section_file.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "storage/file_util.h"
#include "tests/storage/test_util.h"

namespace strata::storage {
namespace {

namespace fs = std::filesystem;
using testing::ReadRawFile;
using testing::TempDir;
using testing::WriteRawFile;

constexpr std::string_view kMagic = "STRTEST";
constexpr uint32_t kMeta = SectionTag("META");
constexpr uint32_t kEmpty = SectionTag("EMPT");
constexpr uint32_t kData = SectionTag("DATA");
constexpr uint32_t kTail = SectionTag("TAIL");

// Header field offsets, as documented in docs/formats/section_file.md.
constexpr size_t kMajorAt = 8;
constexpr size_t kMinorAt = 10;
constexpr size_t kFlagsAt = 12;
constexpr size_t kTableOffsetAt = 16;
constexpr size_t kCountAt = 24;
constexpr size_t kReservedAt = 28;
constexpr size_t kFileSizeAt = 32;
constexpr size_t kHeaderChecksumAt = 56;
// Table entry field offsets.
constexpr size_t kEntryBytes = 32;
constexpr size_t kEntryTagAt = 0;
constexpr size_t kEntryReservedAt = 4;
constexpr size_t kEntryOffsetAt = 8;
constexpr size_t kEntrySizeAt = 16;

std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

std::string AsString(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// Deterministic bytes with no long runs of zeros, so a flipped byte always changes content.
std::string Pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>((x >> 24) | 1);
  }
  return s;
}

template <typename T>
T Get(const std::string& file, size_t at) {
  T v;
  std::memcpy(&v, file.data() + at, sizeof(T));
  return v;
}

template <typename T>
void Put(std::string& file, size_t at, T v) {
  std::memcpy(file.data() + at, &v, sizeof(T));
}

void FixHeaderChecksum(std::string& file) {
  Put<uint64_t>(file, kHeaderChecksumAt, SectionChecksum(AsBytes(file).first(kHeaderChecksumAt)));
}

size_t EntryAt(const std::string& file, size_t index) {
  return Get<uint64_t>(file, kTableOffsetAt) + index * kEntryBytes;
}

void FixTableChecksum(std::string& file) {
  const uint64_t table = Get<uint64_t>(file, kTableOffsetAt);
  const uint64_t bytes = uint64_t{Get<uint32_t>(file, kCountAt)} * kEntryBytes;
  Put<uint64_t>(file, table + bytes, SectionChecksum(AsBytes(file).subspan(table, bytes)));
}

// Writes the file used by most tests: four sections, one of them empty, one crossing a page
// boundary, and returns their contents.
struct Sample {
  std::string meta = Pattern(100, 1);
  std::string data = Pattern(300, 2);
  std::string tail = Pattern(5000, 3);
};

Sample WriteSample(const fs::path& path, uint16_t major = 1, uint16_t minor = 0) {
  Sample s;
  auto w = SectionFileWriter::Create(path, kMagic, major, minor);
  EXPECT_TRUE(w.has_value()) << w.error().ToString();
  EXPECT_TRUE(w->AddSection(kMeta, AsBytes(s.meta)).ok());
  EXPECT_TRUE(w->AddSection(kEmpty, {}).ok());
  EXPECT_TRUE(w->AddSection(kData, AsBytes(s.data)).ok());
  EXPECT_TRUE(w->AddSection(kTail, AsBytes(s.tail)).ok());
  Status st = w->Commit();
  EXPECT_TRUE(st.ok()) << st.ToString();
  return s;
}

// Expects `r` to fail with `code`, with a message naming the file and containing `needle`.
template <typename T>
void ExpectError(const Result<T>& r, StatusCode code, const fs::path& path,
                 std::string_view needle) {
  ASSERT_FALSE(r.has_value()) << "expected an error containing '" << needle << "'";
  EXPECT_EQ(r.error().code(), code) << r.error().ToString();
  EXPECT_NE(r.error().message().find(path.string()), std::string::npos) << r.error().ToString();
  EXPECT_NE(r.error().message().find(needle), std::string::npos) << r.error().ToString();
}

Result<SectionFile> OpenSample(const fs::path& path) { return SectionFile::Open(path, kMagic, 1); }

// Rewrites `path` with `file` and opens it.
Result<SectionFile> Reopen(const fs::path& path, const std::string& file) {
  WriteRawFile(path, file);
  return OpenSample(path);
}

// ---------------------------------------------------------------------------------------------
// Tags

TEST(SectionTagTest, BytesOnDiskReadAsTheFourCharacters) {
  constexpr uint32_t tag = SectionTag("META");
  char bytes[4];
  std::memcpy(bytes, &tag, 4);
  EXPECT_EQ(std::string(bytes, 4), "META");
}

TEST(SectionTagTest, NameIsTextWhenPrintableAndHexOtherwise) {
  EXPECT_EQ(SectionTagName(SectionTag("META")), "META");
  EXPECT_EQ(SectionTagName(0x0000ff01u), "0x0000ff01");
}

// ---------------------------------------------------------------------------------------------
// Round trips

TEST(SectionFileTest, RoundTripsSectionsIncludingEmptyAndLarge) {
  TempDir dir;
  const fs::path path = dir / "a.sf";
  const std::string small = Pattern(1000, 7);
  // Several MB, streamed in pieces whose size is not a multiple of anything in the format.
  const std::string large = Pattern(5 * 1024 * 1024 + 333, 8);
  {
    auto w = SectionFileWriter::Create(path, kMagic, 1, 2);
    ASSERT_TRUE(w.has_value()) << w.error().ToString();
    ASSERT_TRUE(w->AddSection(kMeta, AsBytes(small)).ok());
    ASSERT_TRUE(w->BeginSection(kEmpty).ok());
    ASSERT_TRUE(w->EndSection().ok());
    ASSERT_TRUE(w->BeginSection(kData).ok());
    for (size_t at = 0; at < large.size(); at += 123457) {
      const size_t n = std::min<size_t>(123457, large.size() - at);
      ASSERT_TRUE(w->Append(large.data() + at, n).ok());
    }
    ASSERT_TRUE(w->EndSection().ok());
    ASSERT_TRUE(w->AddSection(kTail, AsBytes("x")).ok());
    Status s = w->Commit();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  auto f = OpenSample(path);
  ASSERT_TRUE(f.has_value()) << f.error().ToString();
  EXPECT_EQ(f->major(), 1);
  EXPECT_EQ(f->minor(), 2);
  EXPECT_EQ(f->path(), path);
  EXPECT_EQ(f->file_size(), fs::file_size(path));
  EXPECT_TRUE(f->Has(kMeta));
  EXPECT_TRUE(f->Has(kEmpty));
  EXPECT_FALSE(f->Has(SectionTag("NONE")));
  EXPECT_EQ(AsString(*f->Section(kMeta)), small);
  EXPECT_TRUE(f->Section(kEmpty)->empty());
  EXPECT_EQ(AsString(*f->Section(kData)), large);
  EXPECT_EQ(AsString(*f->Section(kTail)), "x");

  const auto& entries = f->entries();
  ASSERT_EQ(entries.size(), 4u);
  const uint32_t tags[] = {kMeta, kEmpty, kData, kTail};
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(entries[i].tag, tags[i]);
    EXPECT_EQ(entries[i].offset % kSectionAlignment, 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(f->Section(tags[i])->data()) % kSectionAlignment, 0u);
    EXPECT_EQ(entries[i].checksum, SectionChecksum(*f->Section(tags[i])));
    EXPECT_TRUE(f->VerifySection(tags[i]).ok());
  }
}

TEST(SectionFileTest, FileWithNoSectionsRoundTrips) {
  TempDir dir;
  const fs::path path = dir / "none.sf";
  auto w = SectionFileWriter::Create(path, kMagic, 1, 0);
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE(w->Commit().ok());
  auto f = OpenSample(path);
  ASSERT_TRUE(f.has_value()) << f.error().ToString();
  EXPECT_TRUE(f->entries().empty());
  EXPECT_EQ(f->file_size(), kSectionFileHeaderBytes + 8);
}

TEST(SectionFileTest, LayoutMatchesDocumentation) {
  TempDir dir;
  const fs::path path = dir / "a.sf";
  const Sample s = WriteSample(path, 3, 9);
  const std::string file = ReadRawFile(path);
  EXPECT_EQ(file.substr(0, 8), std::string("STRTEST\0", 8));
  EXPECT_EQ(Get<uint16_t>(file, kMajorAt), 3);
  EXPECT_EQ(Get<uint16_t>(file, kMinorAt), 9);
  EXPECT_EQ(Get<uint32_t>(file, kFlagsAt), 0u);
  EXPECT_EQ(Get<uint32_t>(file, kCountAt), 4u);
  EXPECT_EQ(Get<uint64_t>(file, kFileSizeAt), file.size());
  EXPECT_EQ(Get<uint64_t>(file, kHeaderChecksumAt), SectionChecksum(AsBytes(file).first(56)));
  // Sections at 4096, 8192 (empty), 8192, 12288; the table right after the last one, 8-aligned.
  EXPECT_EQ(file.substr(4096, s.meta.size()), s.meta);
  EXPECT_EQ(file.substr(8192, s.data.size()), s.data);
  EXPECT_EQ(file.substr(12288, s.tail.size()), s.tail);
  const uint64_t table = Get<uint64_t>(file, kTableOffsetAt);
  EXPECT_EQ(table, 12288 + 5000u);
  EXPECT_EQ(file.size(), table + 4 * kEntryBytes + 8);
  EXPECT_EQ(Get<uint32_t>(file, table + kEntryTagAt), kMeta);
  EXPECT_EQ(Get<uint64_t>(file, table + kEntryOffsetAt), 4096u);
  EXPECT_EQ(Get<uint64_t>(file, table + kEntrySizeAt), 100u);
  // Padding is zeros.
  EXPECT_EQ(file.substr(64, 4096 - 64), std::string(4096 - 64, '\0'));
  EXPECT_EQ(file.substr(4196, 8192 - 4196), std::string(8192 - 4196, '\0'));
}

TEST(SectionFileTest, MinorVersionIsReadable) {
  TempDir dir;
  const fs::path path = dir / "a.sf";
  WriteSample(path, 1, 42);
  auto f = OpenSample(path);
  ASSERT_TRUE(f.has_value()) << f.error().ToString();
  EXPECT_EQ(f->minor(), 42);
}

TEST(SectionFileTest, MissingSectionIsNotFound) {
  TempDir dir;
  const fs::path path = dir / "a.sf";
  WriteSample(path);
  auto f = OpenSample(path);
  ASSERT_TRUE(f.has_value());
  ExpectError(f->Section(SectionTag("NONE")), StatusCode::kNotFound, path, "'NONE'");
  Status s = f->VerifySection(SectionTag("NONE"));
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
}

TEST(SectionFileTest, UncommittedWriterLeavesNoFile) {
  TempDir dir;
  const fs::path path = dir / "a.sf";
  {
    auto w = SectionFileWriter::Create(path, kMagic, 1, 0);
    ASSERT_TRUE(w.has_value());
    ASSERT_TRUE(w->AddSection(kMeta, AsBytes("abc")).ok());
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(SectionFileTest, CommitReplacesExistingFile) {
  TempDir dir;
  const fs::path path = dir / "a.sf";
  WriteSample(path);
  auto w = SectionFileWriter::Create(path, kMagic, 1, 0);
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE(w->AddSection(kData, AsBytes("new")).ok());
  ASSERT_TRUE(w->Commit().ok());
  auto f = OpenSample(path);
  ASSERT_TRUE(f.has_value());
  EXPECT_FALSE(f->Has(kMeta));
  EXPECT_EQ(AsString(*f->Section(kData)), "new");
}

TEST(SectionFileTest, ConcurrentReadersSeeTheSameBytes) {
  TempDir dir;
  const fs::path path = dir / "a.sf";
  const Sample s = WriteSample(path);
  auto f = OpenSample(path);
  ASSERT_TRUE(f.has_value());
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      int good = 0;
      for (int i = 0; i < 50; ++i) {
        good += f->VerifySection(kTail).ok() && AsString(*f->Section(kTail)) == s.tail;
      }
      ok[t] = good;
    });
  }
  for (auto& th : threads) th.join();
  for (int good : ok) EXPECT_EQ(good, 50);
}

// ---------------------------------------------------------------------------------------------
// Writer misuse

TEST(SectionFileWriterTest, RejectsMagicLongerThanEightBytes) {
  TempDir dir;
  auto w = SectionFileWriter::Create(dir / "a.sf", "NINEBYTES", 1, 0);
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(SectionFileWriter::Create(dir / "b.sf", "", 1, 0).has_value());
}

TEST(SectionFileWriterTest, BeginSectionWhileOneIsOpenFails) {
  TempDir dir;
  auto w = SectionFileWriter::Create(dir / "a.sf", kMagic, 1, 0);
  ASSERT_TRUE(w->BeginSection(kMeta).ok());
  Status s = w->BeginSection(kData);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'META'"), std::string::npos) << s.ToString();
}

TEST(SectionFileWriterTest, ReusedTagFails) {
  TempDir dir;
  auto w = SectionFileWriter::Create(dir / "a.sf", kMagic, 1, 0);
  ASSERT_TRUE(w->AddSection(kMeta, AsBytes("a")).ok());
  Status s = w->BeginSection(kMeta);
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(s.message().find("'META'"), std::string::npos) << s.ToString();
}

TEST(SectionFileWriterTest, AppendAndEndWithoutOpenSectionFail) {
  TempDir dir;
  auto w = SectionFileWriter::Create(dir / "a.sf", kMagic, 1, 0);
  EXPECT_EQ(w->Append("a", 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w->EndSection().code(), StatusCode::kInvalidArgument);
}

TEST(SectionFileWriterTest, CommitWithOpenSectionFails) {
  TempDir dir;
  const fs::path path = dir / "a.sf";
  auto w = SectionFileWriter::Create(path, kMagic, 1, 0);
  ASSERT_TRUE(w->BeginSection(kMeta).ok());
  EXPECT_EQ(w->Commit().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(path));
}

TEST(SectionFileWriterTest, CallsAfterCommitFail) {
  TempDir dir;
  auto w = SectionFileWriter::Create(dir / "a.sf", kMagic, 1, 0);
  ASSERT_TRUE(w->Commit().ok());
  EXPECT_EQ(w->BeginSection(kMeta).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w->Commit().code(), StatusCode::kInvalidArgument);
}

// AtomicFileWriter::WriteAt exists for this format's header; tested here with its only user.
TEST(AtomicFileWriterWriteAtTest, OverwritesBufferedAndFlushedBytes) {
  TempDir dir;
  const fs::path path = dir / "a.bin";
  auto w = AtomicFileWriter::Open(path);
  ASSERT_TRUE(w.has_value());
  const std::string big(3 << 20, 'b');  // larger than the write buffer: goes straight to disk
  ASSERT_TRUE(w->Append("0123456789", 10).ok());
  ASSERT_TRUE(w->Append(big.data(), big.size()).ok());
  ASSERT_TRUE(w->Append("tail", 4).ok());  // still buffered
  ASSERT_TRUE(w->WriteAt(2, "XY", 2).ok());
  ASSERT_TRUE(w->WriteAt(10 + big.size() + 1, "AI", 2).ok());
  EXPECT_EQ(w->bytes_written(), 14 + big.size());
  ASSERT_TRUE(w->Append("!", 1).ok());
  ASSERT_TRUE(w->Commit().ok());
  EXPECT_EQ(ReadRawFile(path), "01XY456789" + big + "tAIl!");
}

TEST(AtomicFileWriterWriteAtTest, RejectsRangePastWrittenBytes) {
  TempDir dir;
  auto w = AtomicFileWriter::Open(dir / "a.bin");
  ASSERT_TRUE(w->Append("abc", 3).ok());
  EXPECT_EQ(w->WriteAt(2, "xy", 2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w->WriteAt(std::numeric_limits<uint64_t>::max(), "x", 1).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(w->WriteAt(3, "", 0).ok());
}

// ---------------------------------------------------------------------------------------------
// Validation on Open

class SectionFileCorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_ / "c.sf";
    sample_ = WriteSample(path_);
    file_ = ReadRawFile(path_);
  }
  // Applies `edit` to the header, fixes the header checksum so the edit is what gets detected.
  Result<SectionFile> WithHeader(auto edit) {
    std::string f = file_;
    edit(f);
    FixHeaderChecksum(f);
    return Reopen(path_, f);
  }
  // Same for table entry `index`, fixing the table checksum.
  Result<SectionFile> WithEntry(size_t index, auto edit) {
    std::string f = file_;
    edit(f, EntryAt(f, index));
    FixTableChecksum(f);
    return Reopen(path_, f);
  }

  TempDir dir_;
  fs::path path_;
  Sample sample_;
  std::string file_;
};

TEST_F(SectionFileCorruptionTest, ShorterThanHeader) {
  for (size_t n : {0, 1, 63}) {
    ExpectError(Reopen(path_, file_.substr(0, n)), StatusCode::kCorruption, path_,
                "shorter than the 64-byte header");
  }
}

TEST_F(SectionFileCorruptionTest, WrongMagicSaysFoundAndExpected) {
  auto f = SectionFile::Open(path_, "STRHNSW", 1);
  ExpectError(f, StatusCode::kInvalidArgument, path_, "found \"STRTEST\", expected \"STRHNSW\"");
}

TEST_F(SectionFileCorruptionTest, UnsupportedMajorSaysFoundAndSupported) {
  auto f = SectionFile::Open(path_, kMagic, 2);
  ExpectError(f, StatusCode::kInvalidArgument, path_, "unsupported major version 1");
  EXPECT_NE(f.error().message().find("reads major version 2"), std::string::npos);
}

TEST_F(SectionFileCorruptionTest, NewerMajorInFileIsUnsupported) {
  auto f = WithHeader([](std::string& s) { Put<uint16_t>(s, kMajorAt, 7); });
  ExpectError(f, StatusCode::kInvalidArgument, path_, "unsupported major version 7");
}

TEST_F(SectionFileCorruptionTest, HeaderChecksumMismatch) {
  std::string f = file_;
  f[kFileSizeAt] ^= 1;
  ExpectError(Reopen(path_, f), StatusCode::kCorruption, path_, "header checksum mismatch");
}

TEST_F(SectionFileCorruptionTest, UnknownFlagsAreUnsupported) {
  auto f = WithHeader([](std::string& s) { Put<uint32_t>(s, kFlagsAt, 4); });
  ExpectError(f, StatusCode::kInvalidArgument, path_, "flags 0x00000004 (field at byte 12)");
}

TEST_F(SectionFileCorruptionTest, NonzeroReservedHeaderField) {
  ExpectError(WithHeader([](std::string& s) { Put<uint32_t>(s, kReservedAt, 1); }),
              StatusCode::kCorruption, path_, "reserved header field at byte 28");
  ExpectError(WithHeader([](std::string& s) { s[50] = 1; }), StatusCode::kCorruption, path_,
              "reserved header byte 50");
}

TEST_F(SectionFileCorruptionTest, TruncatedFile) {
  ExpectError(Reopen(path_, file_.substr(0, file_.size() - 1)), StatusCode::kCorruption, path_,
              "truncated");
}

TEST_F(SectionFileCorruptionTest, ExtendedFile) {
  ExpectError(Reopen(path_, file_ + "junk"), StatusCode::kCorruption, path_, "extended");
}

TEST_F(SectionFileCorruptionTest, TableOffsetPastEnd) {
  ExpectError(WithHeader([](std::string& s) {
                Put<uint64_t>(s, kTableOffsetAt, Get<uint64_t>(s, kTableOffsetAt) + 4096);
              }),
              StatusCode::kCorruption, path_, "section table at byte");
}

TEST_F(SectionFileCorruptionTest, TableOffsetNearOverflow) {
  ExpectError(WithHeader([](std::string& s) {
                Put<uint64_t>(s, kTableOffsetAt, std::numeric_limits<uint64_t>::max() - 7);
              }),
              StatusCode::kCorruption, path_, "section table at byte");
}

TEST_F(SectionFileCorruptionTest, HugeSectionCountIsRejectedBeforeAllocating) {
  ExpectError(WithHeader([](std::string& s) { Put<uint32_t>(s, kCountAt, 0xffffffffu); }),
              StatusCode::kCorruption, path_, "4294967295 entries");
}

TEST_F(SectionFileCorruptionTest, TableOffsetMisalignedOrInsideHeader) {
  ExpectError(WithHeader([](std::string& s) {
                Put<uint64_t>(s, kTableOffsetAt, Get<uint64_t>(s, kTableOffsetAt) - 4);
              }),
              StatusCode::kCorruption, path_, "section table offset");
  ExpectError(WithHeader([](std::string& s) { Put<uint64_t>(s, kTableOffsetAt, 8); }),
              StatusCode::kCorruption, path_, "section table offset 8");
}

TEST_F(SectionFileCorruptionTest, TableChecksumMismatch) {
  std::string f = file_;
  f[EntryAt(f, 2) + kEntrySizeAt] ^= 1;
  ExpectError(Reopen(path_, f), StatusCode::kCorruption, path_, "section table checksum mismatch");
}

TEST_F(SectionFileCorruptionTest, SectionOutsideFile) {
  ExpectError(
      WithEntry(3, [](std::string& s, size_t e) { Put<uint64_t>(s, e + kEntrySizeAt, 1 << 20); }),
      StatusCode::kCorruption, path_, "section 'TAIL'");
  ExpectError(WithEntry(3,
                        [](std::string& s, size_t e) {
                          Put<uint64_t>(s, e + kEntrySizeAt, std::numeric_limits<uint64_t>::max());
                        }),
              StatusCode::kCorruption, path_, "does not fit before the section table");
  ExpectError(
      WithEntry(3, [](std::string& s,
                      size_t e) { Put<uint64_t>(s, e + kEntryOffsetAt, uint64_t{1} << 62); }),
      StatusCode::kCorruption, path_, "does not fit before the section table");
}

TEST_F(SectionFileCorruptionTest, OverlappingSections) {
  // DATA grows into TAIL.
  ExpectError(
      WithEntry(2, [](std::string& s, size_t e) { Put<uint64_t>(s, e + kEntrySizeAt, 4097); }),
      StatusCode::kCorruption, path_, "section 'TAIL'");
  // TAIL moved onto DATA.
  ExpectError(
      WithEntry(3, [](std::string& s, size_t e) { Put<uint64_t>(s, e + kEntryOffsetAt, 8192); }),
      StatusCode::kCorruption, path_, "overlaps or precedes section 'DATA'");
  // META moved onto the header.
  ExpectError(
      WithEntry(0, [](std::string& s, size_t e) { Put<uint64_t>(s, e + kEntryOffsetAt, 0); }),
      StatusCode::kCorruption, path_, "overlaps the 64-byte header");
}

TEST_F(SectionFileCorruptionTest, UnalignedSection) {
  ExpectError(
      WithEntry(1, [](std::string& s, size_t e) { Put<uint64_t>(s, e + kEntryOffsetAt, 8193); }),
      StatusCode::kCorruption, path_, "not 4096-aligned");
}

TEST_F(SectionFileCorruptionTest, DuplicateTags) {
  ExpectError(
      WithEntry(3, [](std::string& s, size_t e) { Put<uint32_t>(s, e + kEntryTagAt, kMeta); }),
      StatusCode::kCorruption, path_, "duplicate section tag 'META'");
}

TEST_F(SectionFileCorruptionTest, NonzeroReservedEntryField) {
  ExpectError(
      WithEntry(1, [](std::string& s, size_t e) { Put<uint32_t>(s, e + kEntryReservedAt, 9); }),
      StatusCode::kCorruption, path_, "reserved field");
}

TEST_F(SectionFileCorruptionTest, SectionChecksumMismatchNamesTag) {
  std::string f = file_;
  f[12288 + 4321] ^= 0x10;
  ExpectError(Reopen(path_, f), StatusCode::kCorruption, path_,
              "checksum mismatch in section 'TAIL'");
}

TEST_F(SectionFileCorruptionTest, LazyOpenDefersSectionChecksums) {
  std::string f = file_;
  f[8192 + 5] ^= 0x10;
  WriteRawFile(path_, f);
  auto opened = SectionFile::Open(path_, kMagic, 1, SectionFileOptions{.verify_checksums = false});
  ASSERT_TRUE(opened.has_value()) << opened.error().ToString();
  EXPECT_TRUE(opened->VerifySection(kMeta).ok());
  Status s = opened->VerifySection(kData);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("'DATA'"), std::string::npos) << s.ToString();
}

// Flips every byte of a small file in turn. A flip must be reported as an error, except in the
// zero padding between header, sections and table, which no checksum covers; there Open may
// succeed, and then the sections must be intact.
TEST_F(SectionFileCorruptionTest, EveryByteFlipFailsCleanlyOrHitsPadding) {
  auto good = OpenSample(path_);
  ASSERT_TRUE(good.has_value());
  std::vector<std::pair<uint64_t, uint64_t>> padding;  // [begin, end)
  uint64_t end = kSectionFileHeaderBytes;
  for (const auto& e : good->entries()) {
    padding.emplace_back(end, e.offset);
    end = e.offset + e.size;
  }
  padding.emplace_back(end, Get<uint64_t>(file_, kTableOffsetAt));
  auto in_padding = [&](size_t pos) {
    for (auto [b, e] : padding) {
      if (pos >= b && pos < e) return true;
    }
    return false;
  };

  // Patching one byte in place keeps the sweep fast enough for every build (ASan included).
  std::fstream io(path_, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(io.good());
  auto poke = [&](size_t pos, char c) {
    io.seekp(static_cast<std::streamoff>(pos));
    io.put(c);
    io.flush();
    ASSERT_TRUE(io.good());
  };
  size_t detected = 0;
  for (size_t pos = 0; pos < file_.size(); ++pos) {
    poke(pos, static_cast<char>(file_[pos] ^ 0x5a));
    auto r = OpenSample(path_);
    poke(pos, file_[pos]);
    if (r.has_value()) {
      ASSERT_TRUE(in_padding(pos)) << "flip at byte " << pos << " went unnoticed";
      ASSERT_EQ(AsString(*r->Section(kTail)), sample_.tail);
      ASSERT_EQ(AsString(*r->Section(kMeta)), sample_.meta);
      continue;
    }
    ++detected;
    const StatusCode code = r.error().code();
    ASSERT_TRUE(code == StatusCode::kCorruption || code == StatusCode::kInvalidArgument)
        << pos << ": " << r.error().ToString();
    ASSERT_NE(r.error().message().find(path_.string()), std::string::npos) << r.error().ToString();
  }
  EXPECT_GE(detected, kSectionFileHeaderBytes + 100 + 300 + 5000 + 4 * kEntryBytes + 8);
}

TEST_F(SectionFileCorruptionTest, EveryTruncationFailsCleanly) {
  for (size_t n = file_.size(); n-- > 0;) {
    fs::resize_file(path_, n);
    auto r = OpenSample(path_);
    ASSERT_FALSE(r.has_value()) << "truncated to " << n << " bytes";
    ASSERT_EQ(r.error().code(), StatusCode::kCorruption) << n << ": " << r.error().ToString();
    ASSERT_NE(r.error().message().find(path_.string()), std::string::npos);
  }
}

}  // namespace
}  // namespace strata::storage
