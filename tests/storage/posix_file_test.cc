#include "storage/posix_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <string>

#include "storage/byte_format.h"
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

// Owns a descriptor for the length of a test.
class Fd {
 public:
  Fd(const fs::path& path, int flags) : fd_(::open(path.c_str(), flags | O_CLOEXEC, 0644)) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

TEST(ByteFormat, StoreLeWritesLeastSignificantByteFirst) {
  std::array<std::byte, 9> buf{};
  StoreLe<uint64_t>(buf.data() + 1, 0x0102030405060708ull);  // unaligned on purpose
  EXPECT_EQ(buf[0], std::byte{0});
  for (int i = 0; i < 8; ++i) EXPECT_EQ(buf[1 + i], std::byte(8 - i)) << i;
  StoreLe<uint16_t>(buf.data(), 0xabcd);
  EXPECT_EQ(buf[0], std::byte{0xcd});
  EXPECT_EQ(buf[1], std::byte{0xab});
}

TEST(ByteFormat, LoadLeReadsWhatStoreLeWrote) {
  std::array<std::byte, 16> buf{};
  StoreLe<uint32_t>(buf.data() + 3, 0xdeadbeefu);
  StoreLe<int64_t>(buf.data() + 7, -5);
  EXPECT_EQ(LoadLe<uint32_t>(buf.data() + 3), 0xdeadbeefu);
  EXPECT_EQ(LoadLe<int64_t>(buf.data() + 7), -5);
  const std::byte raw[2] = {std::byte{0x34}, std::byte{0x12}};
  EXPECT_EQ(LoadLe<uint16_t>(raw), 0x1234);
}

TEST(ByteFormat, MagicForMessageQuotesDropsTrailingZerosAndEscapes) {
  const std::string_view magic("STR\x01\"\0\0\0", 8);
  EXPECT_EQ(MagicForMessage(AsBytes(magic)), "\"STR\\x01\\x22\"");
  EXPECT_EQ(MagicForMessage(AsBytes(std::string_view("\0\0", 2))), "\"\"");
  EXPECT_EQ(MagicForMessage(AsBytes(std::string_view("A\0B\0", 4))), "\"A\\x00B\"");
}

TEST(PosixFile, OsErrorIsNotFoundForMissingPathsAndIOErrorOtherwise) {
  const Status missing = OsError(ENOENT, "open", "/no/such");
  EXPECT_EQ(missing.code(), StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("/no/such: open: "), std::string::npos) << missing.ToString();
  EXPECT_EQ(OsError(ENOTDIR, "open", "/x").code(), StatusCode::kNotFound);
  const Status denied = OsError(EACCES, "open", "/x");
  EXPECT_EQ(denied.code(), StatusCode::kIOError);
  EXPECT_NE(denied.message().find(ErrnoMessage(EACCES)), std::string::npos);
}

TEST(PosixFile, RetryOnEintrRepeatsOnlyInterruptedCalls) {
  int calls = 0;
  const int rc = RetryOnEintr([&] {
    ++calls;
    errno = calls < 3 ? EINTR : 0;
    return calls < 3 ? -1 : 7;
  });
  EXPECT_EQ(rc, 7);
  EXPECT_EQ(calls, 3);
  calls = 0;
  const ssize_t failed = RetryOnEintr([&]() -> ssize_t {
    ++calls;
    errno = EIO;
    return -1;
  });
  EXPECT_EQ(failed, -1);
  EXPECT_EQ(calls, 1);
}

TEST(PosixFile, RegularFileSizeIsTheSizeAndRefusesADirectory) {
  TempDir dir;
  const fs::path path = dir / "five";
  WriteRawFile(path, "12345");
  Fd file(path, O_RDONLY);
  ASSERT_GE(file.get(), 0);
  const Result<uint64_t> size = RegularFileSize(file.get(), path);
  ASSERT_TRUE(size.has_value()) << size.error().ToString();
  EXPECT_EQ(*size, 5u);
  Fd folder(dir.path(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(folder.get(), 0);
  const Result<uint64_t> refused = RegularFileSize(folder.get(), dir.path());
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.error().message().find("not a regular file"), std::string::npos);
}

TEST(PosixFile, PwriteAllWritesBothPiecesAtTheOffsetAndPreadExactReadsThem) {
  TempDir dir;
  const fs::path path = dir / "f";
  WriteRawFile(path, "0123456789");
  {
    Fd fd(path, O_RDWR);
    ASSERT_GE(fd.get(), 0);
    ASSERT_TRUE(PwriteAll(fd.get(), AsBytes("ab"), AsBytes("cde"), 3, path).ok());
    ASSERT_TRUE(PwriteAll(fd.get(), AsBytes("XY"), 12, path).ok());  // past the end: extends
    ASSERT_TRUE(PwriteAll(fd.get(), {}, {}, 0, path).ok());
    std::array<std::byte, 5> got{};
    ASSERT_TRUE(PreadExact(fd.get(), got.data(), got.size(), 3, path).ok());
    EXPECT_EQ(std::memcmp(got.data(), "abcde", 5), 0);
  }
  EXPECT_EQ(ReadRawFile(path), std::string("012abcde89\0\0XY", 14));
}

TEST(PosixFile, PreadExactPastEndOfFileIsIOErrorNamingFileAndOffset) {
  TempDir dir;
  const fs::path path = dir / "short";
  WriteRawFile(path, "abc");
  Fd fd(path, O_RDONLY);
  ASSERT_GE(fd.get(), 0);
  std::array<std::byte, 4> got{};
  const Status s = PreadExact(fd.get(), got.data(), got.size(), 1, path);
  EXPECT_EQ(s.code(), StatusCode::kIOError);
  EXPECT_NE(s.message().find(path.string()), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("byte offset 3"), std::string::npos) << s.ToString();
}

TEST(PosixFile, PwriteAllOnAReadOnlyDescriptorIsIOError) {
  TempDir dir;
  const fs::path path = dir / "ro";
  WriteRawFile(path, "abc");
  Fd fd(path, O_RDONLY);
  ASSERT_GE(fd.get(), 0);
  const Status s = PwriteAll(fd.get(), AsBytes("x"), 0, path);
  EXPECT_EQ(s.code(), StatusCode::kIOError);
  EXPECT_NE(s.message().find(path.string()), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace strata::storage
