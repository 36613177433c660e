#include "storage/block_io.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace strata::storage {
namespace {

namespace fs = std::filesystem;

constexpr size_t kBlock = kBlockAlignment;
constexpr size_t kFileBytes = size_t{1} << 20;

// Every byte depends on its position, so a read from the wrong offset never matches.
uint8_t PatternByte(uint64_t pos) {
  return static_cast<uint8_t>((pos * 0x9E3779B97F4A7C15ull) >> 56);
}

// A fresh directory, removed on destruction. Under the system temp dir unless STRATA_TEST_DIR
// names another base: /tmp may be tmpfs, which refuses O_DIRECT before Linux 6.6, and BlockFile
// falls back to buffered reads, so run once with STRATA_TEST_DIR on a disk-backed file system to
// test O_DIRECT.
class TestDir {
 public:
  TestDir() {
    static std::atomic<int> counter{0};
    const char* env = std::getenv("STRATA_TEST_DIR");
    const fs::path base =
        env != nullptr && *env != '\0' ? fs::path(env) : fs::temp_directory_path();
    std::string name =
        "strata_block_io_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    if (const auto* info = ::testing::UnitTest::GetInstance()->current_test_info()) {
      name += "_";
      name += info->name();
    }
    for (char& c : name) {
      if (c == '/') c = '_';  // parameterized test names
    }
    path_ = base / name;
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TestDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;
  fs::path operator/(std::string_view name) const { return path_ / name; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void WritePatternFile(const fs::path& path, size_t bytes) {
  std::string data(bytes, '\0');
  for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<char>(PatternByte(i));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

// Which bytes of `buffer` differ from the file's content at `offset`; -1 when none.
int64_t FirstMismatch(const std::byte* buffer, uint64_t offset, size_t length) {
  for (size_t i = 0; i < length; ++i) {
    if (static_cast<uint8_t>(buffer[i]) != PatternByte(offset + i)) return static_cast<int64_t>(i);
  }
  return -1;
}

// Runs a batch and returns the status of each request, checking that on_done is called exactly
// once per request.
std::vector<Status> RunBatch(IoQueue& queue, const BlockFile& file,
                             std::span<const ReadRequest> requests, Status* batch_status) {
  std::vector<Status> statuses(requests.size(), Internal("on_done never called"));
  std::vector<int> calls(requests.size(), 0);
  *batch_status = queue.ReadBatch(file, requests, [&](size_t i, const Status& s) {
    ASSERT_LT(i, requests.size());
    ++calls[i];
    statuses[i] = s;
  });
  if (batch_status->ok()) {
    for (size_t i = 0; i < calls.size(); ++i) EXPECT_EQ(calls[i], 1) << "request " << i;
  }
  return statuses;
}

// `count` random block-aligned requests of 1..4 blocks inside a file of `file_bytes`, each with its
// own slice of `buffer`.
std::vector<ReadRequest> RandomRequests(size_t count, size_t file_bytes, AlignedBuffer& buffer,
                                        uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t file_blocks = file_bytes / kBlock;
  std::byte* base = buffer.Get(count * 4 * kBlock);
  std::vector<ReadRequest> requests;
  for (size_t i = 0; i < count; ++i) {
    const size_t first = rng() % file_blocks;
    const size_t blocks = std::min<size_t>(1 + rng() % 4, file_blocks - first);
    requests.push_back(
        {first * kBlock, static_cast<uint32_t>(blocks * kBlock), base + i * 4 * kBlock});
  }
  return requests;
}

// Null when the kernel refuses io_uring here; the caller skips.
std::unique_ptr<IoQueue> MakeQueue(IoBackend backend, uint32_t queue_depth = 64) {
  auto queue = IoQueue::Create(backend, queue_depth);
  if (!queue.has_value()) return nullptr;
  return std::move(*queue);
}

// ---------------------------------------------------------------------------------------------
// Every backend against the same expectations.

class IoQueueTest : public ::testing::TestWithParam<IoBackend> {
 protected:
  void SetUp() override {
    queue_ = MakeQueue(GetParam());
    if (queue_ == nullptr) {
      GTEST_SKIP() << IoBackendName(GetParam())
                   << " unavailable: " << IoQueue::Create(GetParam()).error().ToString();
    }
    ASSERT_EQ(queue_->backend(), GetParam());
    path_ = dir_ / "data.bin";
    ASSERT_NO_FATAL_FAILURE(WritePatternFile(path_, kFileBytes));
    auto file = BlockFile::Open(path_, {});
    ASSERT_TRUE(file.has_value()) << file.error().ToString();
    file_ = std::move(*file);
    RecordProperty("direct", file_->direct() ? "yes" : "no");
  }

  TestDir dir_;
  fs::path path_;
  std::unique_ptr<IoQueue> queue_;
  std::shared_ptr<BlockFile> file_;
};

INSTANTIATE_TEST_SUITE_P(Backends, IoQueueTest,
                         ::testing::Values(IoBackend::kPread, IoBackend::kIoUring),
                         [](const auto& info) { return std::string(IoBackendName(info.param)); });

TEST_P(IoQueueTest, ReadsRandomAlignedBlocks) {
  AlignedBuffer buffer;
  const auto requests = RandomRequests(200, kFileBytes, buffer, 1);
  Status batch;
  const auto statuses = RunBatch(*queue_, *file_, requests, &batch);
  ASSERT_TRUE(batch.ok()) << batch.ToString();
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE(statuses[i].ok()) << statuses[i].ToString();
    EXPECT_EQ(FirstMismatch(static_cast<std::byte*>(requests[i].buffer), requests[i].offset,
                            requests[i].length),
              -1)
        << "request " << i << " offset " << requests[i].offset;
  }
}

TEST_P(IoQueueTest, BatchLargerThanQueueDepth) {
  auto queue = MakeQueue(GetParam(), /*queue_depth=*/4);
  ASSERT_NE(queue, nullptr);
  AlignedBuffer buffer;
  const auto requests = RandomRequests(101, kFileBytes, buffer, 2);
  Status batch;
  const auto statuses = RunBatch(*queue, *file_, requests, &batch);
  ASSERT_TRUE(batch.ok()) << batch.ToString();
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE(statuses[i].ok()) << statuses[i].ToString();
    EXPECT_EQ(FirstMismatch(static_cast<std::byte*>(requests[i].buffer), requests[i].offset,
                            requests[i].length),
              -1)
        << "request " << i;
  }
}

TEST_P(IoQueueTest, ReadPastEndOfFileFailsOnlyThatRequest) {
  AlignedBuffer buffer;
  std::byte* b = buffer.Get(8 * kBlock);
  const std::vector<ReadRequest> requests = {
      {0, kBlock, b},                                     // fine
      {kFileBytes, kBlock, b + kBlock},                   // wholly past the end
      {kFileBytes - kBlock, 2 * kBlock, b + 2 * kBlock},  // straddles the end
      {5 * kBlock, kBlock, b + 4 * kBlock},               // fine
  };
  Status batch;
  const auto statuses = RunBatch(*queue_, *file_, requests, &batch);
  ASSERT_TRUE(batch.ok()) << batch.ToString();
  EXPECT_TRUE(statuses[0].ok()) << statuses[0].ToString();
  EXPECT_TRUE(statuses[3].ok()) << statuses[3].ToString();
  EXPECT_EQ(FirstMismatch(b + 4 * kBlock, 5 * kBlock, kBlock), -1);
  for (size_t i : {1, 2}) {
    EXPECT_EQ(statuses[i].code(), StatusCode::kOutOfRange) << statuses[i].ToString();
    const std::string& msg = statuses[i].message();
    EXPECT_NE(msg.find(path_.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("offset " + std::to_string(requests[i].offset)), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(requests[i].length) + " bytes"), std::string::npos) << msg;
  }
  EXPECT_NE(statuses[2].message().find("after 4096 bytes"), std::string::npos)
      << statuses[2].message();
}

TEST_P(IoQueueTest, FileTailShorterThanABlockIsOutOfRange) {
  const fs::path path = dir_ / "short.bin";
  ASSERT_NO_FATAL_FAILURE(WritePatternFile(path, 10000));
  auto file = BlockFile::Open(path, {});
  ASSERT_TRUE(file.has_value()) << file.error().ToString();
  AlignedBuffer buffer;
  const std::vector<ReadRequest> requests = {{0, 3 * kBlock, buffer.Get(3 * kBlock)}};
  Status batch;
  const auto statuses = RunBatch(*queue_, **file, requests, &batch);
  ASSERT_TRUE(batch.ok()) << batch.ToString();
  EXPECT_EQ(statuses[0].code(), StatusCode::kOutOfRange) << statuses[0].ToString();
  EXPECT_NE(statuses[0].message().find("after 10000 bytes"), std::string::npos)
      << statuses[0].message();
  // The bytes that were there arrived anyway.
  EXPECT_EQ(FirstMismatch(buffer.Get(0), 0, 10000), -1);
}

TEST_P(IoQueueTest, CountsReadsAndBytes) {
  AlignedBuffer buffer;
  std::byte* b = buffer.Get(8 * kBlock);
  const std::vector<ReadRequest> requests = {
      {0, kBlock, b}, {8 * kBlock, 2 * kBlock, b + kBlock}, {kFileBytes, kBlock, b + 4 * kBlock}};
  Status batch;
  RunBatch(*queue_, *file_, requests, &batch);
  ASSERT_TRUE(batch.ok()) << batch.ToString();
  EXPECT_EQ(queue_->counters().reads, 2u);  // the read past the end does not count
  EXPECT_EQ(queue_->counters().bytes, 3 * kBlock);
  EXPECT_GT(queue_->counters().wait_ns, 0u);
  RunBatch(*queue_, *file_, std::span(requests).first(1), &batch);
  EXPECT_EQ(queue_->counters().reads, 3u);
  EXPECT_EQ(queue_->counters().bytes, 4 * kBlock);
  queue_->ResetCounters();
  EXPECT_EQ(queue_->counters().reads, 0u);
  EXPECT_EQ(queue_->counters().bytes, 0u);
  EXPECT_EQ(queue_->counters().wait_ns, 0u);
}

TEST_P(IoQueueTest, UnalignedRequestOnDirectFileIsInvalidArgument) {
  if (!file_->direct()) GTEST_SKIP() << "O_DIRECT refused by the file system under " << dir_.path();
  AlignedBuffer buffer;
  std::byte* b = buffer.Get(4 * kBlock);
  const std::vector<std::vector<ReadRequest>> batches = {
      {{0, kBlock, b}, {100, kBlock, b + kBlock}},         // offset
      {{0, kBlock, b}, {kBlock, 100, b + kBlock}},         // length
      {{0, kBlock, b}, {kBlock, kBlock, b + kBlock + 1}},  // buffer
  };
  for (const auto& requests : batches) {
    int calls = 0;
    Status s = queue_->ReadBatch(*file_, requests, [&](size_t, const Status&) { ++calls; });
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find("request 1"), std::string::npos) << s.message();
    EXPECT_EQ(calls, 0) << "nothing may be submitted when a request is invalid";
  }
  EXPECT_EQ(queue_->counters().reads, 0u);
}

TEST_P(IoQueueTest, BufferedFileAllowsUnalignedReads) {
  auto file = BlockFile::Open(path_, {.direct = false});
  ASSERT_TRUE(file.has_value()) << file.error().ToString();
  EXPECT_FALSE((*file)->direct());
  std::vector<std::byte> a(1000), b(5000);
  const std::vector<ReadRequest> requests = {{123, 1000, a.data()},
                                             {kFileBytes - 5000, 5000, b.data()}};
  Status batch;
  const auto statuses = RunBatch(*queue_, **file, requests, &batch);
  ASSERT_TRUE(batch.ok()) << batch.ToString();
  ASSERT_TRUE(statuses[0].ok()) << statuses[0].ToString();
  ASSERT_TRUE(statuses[1].ok()) << statuses[1].ToString();
  EXPECT_EQ(FirstMismatch(a.data(), 123, a.size()), -1);
  EXPECT_EQ(FirstMismatch(b.data(), kFileBytes - 5000, b.size()), -1);
}

TEST_P(IoQueueTest, MalformedRequestIsInvalidArgument) {
  AlignedBuffer buffer;
  std::byte* b = buffer.Get(kBlock);
  const std::vector<std::vector<ReadRequest>> batches = {
      {{0, kBlock, nullptr}},
      {{0, 0, b}},
      {{UINT64_MAX - 10, kBlock, b}},
  };
  for (const auto& requests : batches) {
    int calls = 0;
    Status s = queue_->ReadBatch(*file_, requests, [&](size_t, const Status&) { ++calls; });
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_EQ(calls, 0);
  }
}

TEST_P(IoQueueTest, EmptyBatchIsOk) {
  int calls = 0;
  Status s = queue_->ReadBatch(*file_, {}, [&](size_t, const Status&) { ++calls; });
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(calls, 0);
}

TEST_P(IoQueueTest, ThreadsShareOneFileWithAQueueEach) {
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto queue = MakeQueue(GetParam(), 8);
      if (queue == nullptr) {
        ++failures;
        return;
      }
      AlignedBuffer buffer;
      const auto requests = RandomRequests(64, kFileBytes, buffer, 100 + t);
      Status s = queue->ReadBatch(*file_, requests, [&](size_t i, const Status& st) {
        if (!st.ok() || FirstMismatch(static_cast<std::byte*>(requests[i].buffer),
                                      requests[i].offset, requests[i].length) != -1) {
          ++failures;
        }
      });
      if (!s.ok()) ++failures;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

// ---------------------------------------------------------------------------------------------

TEST(IoQueue, BackendsReturnIdenticalResults) {
  auto ring = MakeQueue(IoBackend::kIoUring, 16);
  if (ring == nullptr) GTEST_SKIP() << "io_uring unavailable";
  auto pread = MakeQueue(IoBackend::kPread, 16);
  ASSERT_NE(pread, nullptr);
  TestDir dir;
  const size_t file_bytes = kFileBytes + 1234;  // a partial last block
  ASSERT_NO_FATAL_FAILURE(WritePatternFile(dir / "data.bin", file_bytes));
  auto file = BlockFile::Open(dir / "data.bin", {});
  ASSERT_TRUE(file.has_value()) << file.error().ToString();

  AlignedBuffer ring_buffer, pread_buffer;
  auto requests = RandomRequests(300, file_bytes + 3 * kBlock, ring_buffer, 7);  // some past EOF
  auto pread_requests = requests;
  for (size_t i = 0; i < requests.size(); ++i) {
    const size_t slice = static_cast<std::byte*>(requests[i].buffer) - ring_buffer.Get(0);
    pread_requests[i].buffer = pread_buffer.Get(ring_buffer.capacity()) + slice;
  }
  std::memset(ring_buffer.Get(0), 0, ring_buffer.capacity());
  std::memset(pread_buffer.Get(0), 0, pread_buffer.capacity());

  Status ring_batch, pread_batch;
  const auto ring_statuses = RunBatch(*ring, **file, requests, &ring_batch);
  const auto pread_statuses = RunBatch(*pread, **file, pread_requests, &pread_batch);
  ASSERT_TRUE(ring_batch.ok()) << ring_batch.ToString();
  ASSERT_TRUE(pread_batch.ok()) << pread_batch.ToString();
  size_t failed = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(ring_statuses[i].ToString(), pread_statuses[i].ToString()) << "request " << i;
    if (!ring_statuses[i].ok()) {
      ++failed;
      continue;
    }
    EXPECT_EQ(std::memcmp(requests[i].buffer, pread_requests[i].buffer, requests[i].length), 0)
        << "request " << i;
  }
  EXPECT_GT(failed, 0u) << "the batch was meant to include reads past the end";
  EXPECT_LT(failed, requests.size());
  EXPECT_EQ(ring->counters().reads, pread->counters().reads);
  EXPECT_EQ(ring->counters().bytes, pread->counters().bytes);
}

TEST(IoQueue, CreateChecksQueueDepth) {
  for (IoBackend b : {IoBackend::kAuto, IoBackend::kIoUring, IoBackend::kPread}) {
    EXPECT_EQ(IoQueue::Create(b, 0).error().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(IoQueue::Create(b, 100000).error().code(), StatusCode::kInvalidArgument);
  }
}

TEST(IoQueue, AutoPicksAConcreteBackend) {
  auto queue = IoQueue::Create(IoBackend::kAuto, 8);
  ASSERT_TRUE(queue.has_value()) << queue.error().ToString();
  EXPECT_NE((*queue)->backend(), IoBackend::kAuto);
  EXPECT_EQ((*queue)->queue_depth(), 8u);
  // When io_uring works, auto must use it.
  if (IoQueue::Create(IoBackend::kIoUring, 8).has_value()) {
    EXPECT_EQ((*queue)->backend(), IoBackend::kIoUring);
  }
}

TEST(BlockIoBackend, NamesRoundTrip) {
  for (IoBackend b : {IoBackend::kAuto, IoBackend::kIoUring, IoBackend::kPread}) {
    auto parsed = ParseIoBackend(IoBackendName(b));
    ASSERT_TRUE(parsed.has_value()) << IoBackendName(b);
    EXPECT_EQ(*parsed, b);
  }
  EXPECT_EQ(IoBackendName(IoBackend::kIoUring), "io_uring");
}

TEST(BlockIoBackend, UnknownNameIsInvalidArgument) {
  for (std::string_view name : {"", "uring", "IO_URING", "pread ", "mmap"}) {
    auto parsed = ParseIoBackend(name);
    ASSERT_FALSE(parsed.has_value()) << name;
    EXPECT_EQ(parsed.error().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.error().message().find("io_uring"), std::string::npos);
  }
}

// ---------------------------------------------------------------------------------------------

TEST(BlockFile, MissingFileIsNotFound) {
  TestDir dir;
  auto file = BlockFile::Open(dir / "missing.bin", {});
  ASSERT_FALSE(file.has_value());
  EXPECT_EQ(file.error().code(), StatusCode::kNotFound) << file.error().ToString();
  EXPECT_NE(file.error().message().find("missing.bin"), std::string::npos);
}

TEST(BlockFile, DirectoryIsInvalidArgument) {
  TestDir dir;
  auto file = BlockFile::Open(dir.path(), {});
  ASSERT_FALSE(file.has_value());
  EXPECT_EQ(file.error().code(), StatusCode::kInvalidArgument) << file.error().ToString();
}

TEST(BlockFile, ReportsSizePathAndMode) {
  TestDir dir;
  ASSERT_NO_FATAL_FAILURE(WritePatternFile(dir / "a.bin", 12345));
  auto buffered = BlockFile::Open(dir / "a.bin", {.direct = false});
  ASSERT_TRUE(buffered.has_value()) << buffered.error().ToString();
  EXPECT_EQ((*buffered)->size(), 12345u);
  EXPECT_EQ((*buffered)->path(), dir / "a.bin");
  EXPECT_FALSE((*buffered)->direct());
  EXPECT_GE((*buffered)->fd(), 0);
  // direct() depends on the file system; either way the file opens.
  auto direct = BlockFile::Open(dir / "a.bin", {});
  ASSERT_TRUE(direct.has_value()) << direct.error().ToString();
  EXPECT_EQ((*direct)->size(), 12345u);
  RecordProperty("direct", (*direct)->direct() ? "yes" : "no");
}

TEST(BlockFile, DropCacheSucceeds) {
  TestDir dir;
  ASSERT_NO_FATAL_FAILURE(WritePatternFile(dir / "a.bin", kFileBytes));
  for (bool direct : {false, true}) {
    auto file = BlockFile::Open(dir / "a.bin", {.direct = direct});
    ASSERT_TRUE(file.has_value()) << file.error().ToString();
    Status s = (*file)->DropCache();
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
}

// ---------------------------------------------------------------------------------------------

TEST(BlockAlignedBuffer, AlignedAndGrowsOnDemand) {
  AlignedBuffer buffer;
  EXPECT_EQ(buffer.capacity(), 0u);
  std::byte* p = buffer.Get(1);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kBlockAlignment, 0u);
  EXPECT_EQ(buffer.capacity(), kBlockAlignment);
  EXPECT_EQ(buffer.Get(kBlockAlignment), p) << "fits: no reallocation";
  p = buffer.Get(3 * kBlockAlignment + 1);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kBlockAlignment, 0u);
  EXPECT_GE(buffer.capacity(), 4 * kBlockAlignment);
  EXPECT_EQ(buffer.capacity() % kBlockAlignment, 0u);
  std::memset(p, 0xab, buffer.capacity());  // all of it is usable (ASan checks)
  EXPECT_EQ(buffer.Get(10), p);

  AlignedBuffer moved(std::move(buffer));
  EXPECT_EQ(moved.Get(0), p);
  EXPECT_EQ(buffer.capacity(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty
  buffer = std::move(moved);
  EXPECT_EQ(buffer.Get(0), p);
}

}  // namespace
}  // namespace strata::storage
