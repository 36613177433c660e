#include "storage/file_util.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/storage/test_util.h"

namespace strata::storage {
namespace {

namespace fs = std::filesystem;
using testing::ReadRawFile;
using testing::TempDir;
using testing::WriteRawFile;

std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

fs::path TmpOf(const fs::path& p) {
  fs::path t = p;
  t += ".tmp";
  return t;
}

TEST(AtomicWriteFileTest, WritesAndReplaces) {
  TempDir dir;
  const fs::path path = dir / "a.bin";
  ASSERT_TRUE(AtomicWriteFile(path, AsBytes("first")).ok());
  EXPECT_EQ(ReadRawFile(path), "first");
  ASSERT_TRUE(AtomicWriteFile(path, AsBytes("second, longer")).ok());
  EXPECT_EQ(ReadRawFile(path), "second, longer");
  EXPECT_FALSE(fs::exists(TmpOf(path)));
}

TEST(AtomicWriteFileTest, EmptyContent) {
  TempDir dir;
  const fs::path path = dir / "empty.bin";
  ASSERT_TRUE(AtomicWriteFile(path, {}).ok());
  EXPECT_TRUE(fs::exists(path));
  EXPECT_EQ(fs::file_size(path), 0u);
}

TEST(AtomicFileWriterTest, CommitProducesFile) {
  TempDir dir;
  const fs::path path = dir / "out.bin";
  auto writer = AtomicFileWriter::Open(path);
  ASSERT_TRUE(writer.has_value()) << writer.error().ToString();
  ASSERT_TRUE(writer->Append("hello ", 6).ok());
  ASSERT_TRUE(writer->Append("world", 5).ok());
  EXPECT_EQ(writer->bytes_written(), 11u);
  // Nothing is visible under the final name before Commit.
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::exists(TmpOf(path)));
  Status s = writer->Commit();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ReadRawFile(path), "hello world");
  EXPECT_FALSE(fs::exists(TmpOf(path)));
}

TEST(AtomicFileWriterTest, DestroyWithoutCommitLeavesNothing) {
  TempDir dir;
  const fs::path path = dir / "abandoned.bin";
  {
    auto writer = AtomicFileWriter::Open(path);
    ASSERT_TRUE(writer.has_value());
    ASSERT_TRUE(writer->Append("partial", 7).ok());
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(TmpOf(path)));
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(AtomicFileWriterTest, DestroyWithoutCommitKeepsOldFile) {
  TempDir dir;
  const fs::path path = dir / "keep.bin";
  WriteRawFile(path, "old contents");
  {
    auto writer = AtomicFileWriter::Open(path);
    ASSERT_TRUE(writer.has_value());
    ASSERT_TRUE(writer->Append("new", 3).ok());
  }
  EXPECT_EQ(ReadRawFile(path), "old contents");
  EXPECT_FALSE(fs::exists(TmpOf(path)));
}

TEST(AtomicFileWriterTest, LargeAndSmallAppendsKeepOrder) {
  TempDir dir;
  const fs::path path = dir / "big.bin";
  // Pieces straddle the internal buffer size (1 MiB) in both directions.
  std::string expected;
  auto writer = AtomicFileWriter::Open(path);
  ASSERT_TRUE(writer.has_value());
  const size_t sizes[] = {10, 3 << 20, 7, (1 << 20) - 3, 5, 1 << 20, 1, 700000, 700000};
  char fill = 'a';
  for (size_t n : sizes) {
    std::string piece(n, fill++);
    ASSERT_TRUE(writer->Append(piece.data(), piece.size()).ok());
    expected += piece;
  }
  EXPECT_EQ(writer->bytes_written(), expected.size());
  ASSERT_TRUE(writer->Commit().ok());
  EXPECT_EQ(ReadRawFile(path), expected);
}

TEST(AtomicFileWriterTest, UseAfterCommitIsAnError) {
  TempDir dir;
  const fs::path path = dir / "twice.bin";
  auto writer = AtomicFileWriter::Open(path);
  ASSERT_TRUE(writer.has_value());
  ASSERT_TRUE(writer->Commit().ok());
  EXPECT_EQ(writer->Append("x", 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(writer->Commit().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(fs::exists(path));
}

TEST(AtomicFileWriterTest, MovedWriterCommits) {
  TempDir dir;
  const fs::path path = dir / "moved.bin";
  auto opened = AtomicFileWriter::Open(path);
  ASSERT_TRUE(opened.has_value());
  ASSERT_TRUE(opened->Append("abc", 3).ok());
  AtomicFileWriter moved(std::move(*opened));
  ASSERT_TRUE(moved.Append("def", 3).ok());
  ASSERT_TRUE(moved.Commit().ok());
  EXPECT_EQ(ReadRawFile(path), "abcdef");
}

TEST(AtomicFileWriterTest, MissingDirectoryIsNotFound) {
  TempDir dir;
  auto writer = AtomicFileWriter::Open(dir / "no_such_dir" / "x.bin");
  ASSERT_FALSE(writer.has_value());
  EXPECT_EQ(writer.error().code(), StatusCode::kNotFound);
  EXPECT_NE(writer.error().message().find("no_such_dir"), std::string::npos);
}

TEST(AtomicFileWriterTest, EmptyPathIsInvalid) {
  auto writer = AtomicFileWriter::Open("");
  ASSERT_FALSE(writer.has_value());
  EXPECT_EQ(writer.error().code(), StatusCode::kInvalidArgument);
}

TEST(MappedFileTest, MapsContents) {
  TempDir dir;
  const fs::path path = dir / "m.bin";
  WriteRawFile(path, "mapped bytes");
  auto file = MappedFile::Open(path);
  ASSERT_TRUE(file.has_value()) << file.error().ToString();
  ASSERT_EQ(file->size(), 12u);
  EXPECT_EQ(std::memcmp(file->data(), "mapped bytes", 12), 0);
  EXPECT_EQ(file->bytes().size(), 12u);
  EXPECT_EQ(file->path(), path);
}

TEST(MappedFileTest, EmptyFileMapsToEmptySpan) {
  TempDir dir;
  const fs::path path = dir / "empty.bin";
  WriteRawFile(path, "");
  auto file = MappedFile::Open(path);
  ASSERT_TRUE(file.has_value());
  EXPECT_EQ(file->size(), 0u);
  EXPECT_TRUE(file->bytes().empty());
}

TEST(MappedFileTest, MissingFileIsNotFound) {
  TempDir dir;
  auto file = MappedFile::Open(dir / "missing.bin");
  ASSERT_FALSE(file.has_value());
  EXPECT_EQ(file.error().code(), StatusCode::kNotFound);
  EXPECT_NE(file.error().message().find("missing.bin"), std::string::npos);
}

TEST(MappedFileTest, DirectoryIsInvalidArgument) {
  TempDir dir;
  auto file = MappedFile::Open(dir.path());
  ASSERT_FALSE(file.has_value());
  EXPECT_EQ(file.error().code(), StatusCode::kInvalidArgument);
}

TEST(MappedFileTest, MoveKeepsMapping) {
  TempDir dir;
  WriteRawFile(dir / "a.bin", "aaaa");
  WriteRawFile(dir / "b.bin", "bb");
  auto a = MappedFile::Open(dir / "a.bin");
  auto b = MappedFile::Open(dir / "b.bin");
  ASSERT_TRUE(a.has_value() && b.has_value());
  MappedFile moved(std::move(*a));
  EXPECT_EQ(moved.size(), 4u);
  EXPECT_EQ(a->size(), 0u);
  EXPECT_EQ(a->data(), nullptr);
  moved = std::move(*b);  // unmaps a.bin's mapping
  ASSERT_EQ(moved.size(), 2u);
  EXPECT_EQ(std::memcmp(moved.data(), "bb", 2), 0);
}

TEST(CopyFileSyncedTest, CopiesAllOrAPrefixAndCounts) {
  TempDir dir;
  WriteRawFile(dir / "src", "0123456789");
  uint64_t copied = 5;  // added to, not reset
  ASSERT_TRUE(CopyFileSynced(dir / "src", dir / "all", kWholeFile, copied).ok());
  EXPECT_EQ(ReadRawFile(dir / "all"), "0123456789");
  EXPECT_EQ(copied, 15u);
  ASSERT_TRUE(CopyFileSynced(dir / "src", dir / "head", 4, copied).ok());
  EXPECT_EQ(ReadRawFile(dir / "head"), "0123");
  EXPECT_EQ(copied, 19u);
  ASSERT_TRUE(CopyFileSynced(dir / "src", dir / "none", 0, copied).ok());
  EXPECT_EQ(ReadRawFile(dir / "none"), "");
}

TEST(CopyFileSyncedTest, NeverOverwritesAndNamesWhatFailed) {
  TempDir dir;
  WriteRawFile(dir / "src", "new");
  WriteRawFile(dir / "dst", "old");
  uint64_t copied = 0;
  Status s = CopyFileSynced(dir / "src", dir / "dst", kWholeFile, copied);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("dst"), std::string::npos) << s.message();
  EXPECT_EQ(ReadRawFile(dir / "dst"), "old");
  s = CopyFileSynced(dir / "missing", dir / "other", kWholeFile, copied);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("missing"), std::string::npos) << s.message();
  EXPECT_FALSE(fs::exists(dir / "other"));
  // A prefix longer than the file: an error, not a short copy reported as whole.
  s = CopyFileSynced(dir / "src", dir / "long", 10, copied);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("shorter"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace strata::storage
