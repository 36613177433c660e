#include "engine/wal.h"

#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "storage/section_file.h"
#include "tests/storage/test_util.h"

namespace strata::engine {
namespace {

namespace fs = std::filesystem;
using storage::SectionChecksum;
using storage::testing::ReadRawFile;
using storage::testing::TempDir;
using storage::testing::WriteRawFile;

// Layout offsets, as documented in docs/formats/wal.md.
constexpr size_t kMajorAt = 8;
constexpr size_t kMinorAt = 10;
constexpr size_t kReserved0At = 12;
constexpr size_t kFirstSequenceAt = 16;
constexpr size_t kReserved1At = 24;
constexpr size_t kHeaderChecksumAt = 56;
constexpr size_t kRecPayloadBytesAt = 0;
constexpr size_t kRecTypeAt = 4;
constexpr size_t kRecSequenceAt = 8;
constexpr size_t kRecChecksumAt = 16;

WalOptions NoSync() {
  WalOptions o;
  o.durability = Durability::kNone;
  return o;
}

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

struct Written {
  uint64_t sequence;
  uint8_t type;
  std::string payload;
  uint64_t offset;  // of the record in the file
};

// Writes `payloads` to a new log at `path` (no fsyncs) and returns what went where.
std::vector<Written> WriteLog(const fs::path& path, uint64_t first_sequence,
                              const std::vector<std::string>& payloads) {
  auto w = WalWriter::Create(path, first_sequence, NoSync());
  EXPECT_TRUE(w.has_value()) << w.error().ToString();
  if (!w.has_value()) return {};
  std::vector<Written> out;
  for (size_t i = 0; i < payloads.size(); ++i) {
    const uint64_t offset = (*w)->bytes_written();
    const auto type = static_cast<uint8_t>(i * 37 + 1);
    auto seq = (*w)->Append(type, AsBytes(payloads[i]));
    EXPECT_TRUE(seq.has_value()) << seq.error().ToString();
    out.push_back({seq.value_or(0), type, payloads[i], offset});
  }
  EXPECT_TRUE((*w)->Close().ok());
  return out;
}

std::vector<std::string> FivePayloads() {
  return {Pattern(40, 1), Pattern(0, 2), Pattern(300, 3), Pattern(77, 4), Pattern(64, 5)};
}

void ExpectRecords(const WalContents& c, const std::vector<Written>& expected, size_t count) {
  ASSERT_EQ(c.records.size(), count);
  for (size_t i = 0; i < count; ++i) {
    EXPECT_EQ(c.records[i].sequence, expected[i].sequence) << i;
    EXPECT_EQ(c.records[i].type, expected[i].type) << i;
    EXPECT_EQ(AsString(c.records[i].payload), expected[i].payload) << i;
  }
}

// ---------------------------------------------------------------------------------------------
// Round trips

TEST(Wal, RoundTripsManyRecordsOfVariedSizesAndTypes) {
  TempDir dir;
  const fs::path path = dir / "000001.wal";
  std::vector<std::string> payloads;
  std::mt19937 rng(42);
  for (int i = 0; i < 600; ++i) {
    size_t n = (i % 7 == 0) ? 0 : rng() % (i % 50 == 0 ? 20000 : 300);
    payloads.push_back(Pattern(n, static_cast<uint32_t>(i)));
  }
  // One payload larger than the reader's 1 MiB window, read straight into place.
  payloads.push_back(Pattern((size_t{3} << 19) + 5, 999));
  payloads.push_back("");
  std::vector<Written> written = WriteLog(path, 0, payloads);

  auto c = ReadWal(path);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->first_sequence, 0u);
  ExpectRecords(*c, written, written.size());
  EXPECT_EQ(c->valid_bytes, fs::file_size(path));
  EXPECT_EQ(c->dropped_bytes, 0u);
  EXPECT_TRUE(c->tail_problem.empty());
  std::set<uint8_t> types;
  for (const WalRecord& r : c->records) types.insert(r.type);
  EXPECT_GT(types.size(), 200u);
}

// A log is made under "<name>.tmp" and renamed into place once its header is durable: nothing is
// left under the temporary name, a temporary file left by a creation cut short is replaced, and
// an existing log is never overwritten.
TEST(Wal, CreateRenamesTheLogIntoPlaceAndNeverOverwritesOne) {
  TempDir dir;
  const fs::path path = dir / "00000000000000000005.wal";
  const fs::path tmp = path.string() + ".tmp";
  std::ofstream(tmp) << "left by a creation cut short";
  auto w = WalWriter::Create(path, 5);
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  EXPECT_FALSE(fs::exists(tmp));
  ASSERT_TRUE((*w)->Append(1, AsBytes(std::string("abc"))).has_value());
  ASSERT_TRUE((*w)->Close().ok());
  auto again = WalWriter::Create(path, 5);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), StatusCode::kAlreadyExists);
  auto c = ReadWal(path);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  ASSERT_EQ(c->records.size(), 1u);
  EXPECT_EQ(c->records[0].sequence, 5u);
}

TEST(Wal, EmptyLogReadsCleanly) {
  TempDir dir;
  const fs::path path = dir / "empty.wal";
  auto w = WalWriter::Create(path, 77);
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  EXPECT_EQ((*w)->next_sequence(), 77u);
  EXPECT_EQ((*w)->bytes_written(), kWalHeaderBytes);
  EXPECT_EQ((*w)->path(), path);
  ASSERT_TRUE((*w)->Close().ok());
  EXPECT_EQ(fs::file_size(path), kWalHeaderBytes);

  auto c = ReadWal(path);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->first_sequence, 77u);
  EXPECT_TRUE(c->records.empty());
  EXPECT_EQ(c->valid_bytes, kWalHeaderBytes);
  EXPECT_EQ(c->dropped_bytes, 0u);
}

TEST(Wal, SequencesCountFromFirstSequence) {
  TempDir dir;
  const fs::path path = dir / "seq.wal";
  auto w = WalWriter::Create(path, 1'000'000'007, NoSync());
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  for (uint64_t i = 0; i < 10; ++i) {
    // The first payload is a default (null) span.
    const std::string payload = Pattern(i, 1);
    auto seq = (*w)->Append(3, i == 0 ? std::span<const std::byte>() : AsBytes(payload));
    ASSERT_TRUE(seq.has_value()) << seq.error().ToString();
    EXPECT_EQ(*seq, 1'000'000'007 + i);
    EXPECT_EQ((*w)->next_sequence(), 1'000'000'008 + i);
  }
  ASSERT_TRUE((*w)->Close().ok());
  auto c = ReadWal(path);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->first_sequence, 1'000'000'007u);
  ASSERT_EQ(c->records.size(), 10u);
  for (uint64_t i = 0; i < 10; ++i) EXPECT_EQ(c->records[i].sequence, 1'000'000'007 + i);
}

TEST(Wal, OpenForAppendContinuesSequences) {
  TempDir dir;
  const fs::path path = dir / "append.wal";
  std::vector<Written> written = WriteLog(path, 500, {"a", "bb", "ccc"});
  const uint64_t size = fs::file_size(path);

  auto w = WalWriter::OpenForAppend(path, NoSync());
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  EXPECT_EQ((*w)->next_sequence(), 503u);
  EXPECT_EQ((*w)->bytes_written(), size);
  EXPECT_EQ((*w)->fsyncs(), 0u);
  auto seq = (*w)->Append(9, AsBytes("dddd"));
  ASSERT_TRUE(seq.has_value()) << seq.error().ToString();
  EXPECT_EQ(*seq, 503u);
  EXPECT_EQ((*w)->bytes_written(), size + kWalRecordHeaderBytes + 4);
  ASSERT_TRUE((*w)->Close().ok());

  auto c = ReadWal(path);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  written.push_back({503, 9, "dddd", size});
  ExpectRecords(*c, written, 4);
}

TEST(Wal, FileLayoutMatchesTheFormatPage) {
  TempDir dir;
  const fs::path path = dir / "layout.wal";
  WriteLog(path, 0x0102030405060708, {"hello", ""});
  const std::string f = ReadRawFile(path);
  ASSERT_EQ(f.size(), 64u + (24 + 5) + 24);
  EXPECT_EQ(f.substr(0, 8), std::string("STRWAL\0\0", 8));
  EXPECT_EQ(Get<uint16_t>(f, kMajorAt), 1);
  EXPECT_EQ(Get<uint16_t>(f, kMinorAt), 0);
  EXPECT_EQ(Get<uint32_t>(f, kReserved0At), 0u);
  EXPECT_EQ(Get<uint64_t>(f, kFirstSequenceAt), 0x0102030405060708u);
  EXPECT_EQ(f.substr(kReserved1At, 32), std::string(32, '\0'));
  EXPECT_EQ(Get<uint64_t>(f, kHeaderChecksumAt), SectionChecksum(AsBytes(f).first(56)));

  size_t at = 64;
  EXPECT_EQ(Get<uint32_t>(f, at + kRecPayloadBytesAt), 5u);
  EXPECT_EQ(static_cast<uint8_t>(f[at + kRecTypeAt]), 1);
  EXPECT_EQ(f.substr(at + 5, 3), std::string(3, '\0'));
  EXPECT_EQ(Get<uint64_t>(f, at + kRecSequenceAt), 0x0102030405060708u);
  EXPECT_EQ(Get<uint64_t>(f, at + kRecChecksumAt),
            SectionChecksum(AsBytes(f.substr(at, 16) + "hello")));
  EXPECT_EQ(f.substr(at + 24, 5), "hello");
  at += 29;
  EXPECT_EQ(Get<uint32_t>(f, at + kRecPayloadBytesAt), 0u);
  EXPECT_EQ(static_cast<uint8_t>(f[at + kRecTypeAt]), 38);
  EXPECT_EQ(Get<uint64_t>(f, at + kRecSequenceAt), 0x0102030405060709u);
  EXPECT_EQ(Get<uint64_t>(f, at + kRecChecksumAt), SectionChecksum(AsBytes(f.substr(at, 16))));
}

// ---------------------------------------------------------------------------------------------
// Durability modes

class WalDurability : public ::testing::TestWithParam<Durability> {};

TEST_P(WalDurability, RoundTrips) {
  TempDir dir;
  const fs::path path = dir / "mode.wal";
  WalOptions options;
  options.durability = GetParam();
  options.interval_ms = 10;
  auto w = WalWriter::Create(path, 1, options);
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  EXPECT_EQ((*w)->fsyncs(), 0u);
  constexpr int kRecords = 20;
  for (int i = 0; i < kRecords; ++i) {
    auto seq = (*w)->Append(static_cast<uint8_t>(i), AsBytes(Pattern(i * 10, i)));
    ASSERT_TRUE(seq.has_value()) << seq.error().ToString();
    if (GetParam() == Durability::kSync) {
      // One thread: every Append needs its own fsync.
      EXPECT_EQ((*w)->fsyncs(), static_cast<uint64_t>(i + 1));
    }
    if (GetParam() == Durability::kNone) {
      EXPECT_EQ((*w)->fsyncs(), 0u);
    }
  }
  if (GetParam() == Durability::kInterval) {
    // The background thread syncs within interval_ms; allow a generous second on a loaded machine.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while ((*w)->fsyncs() == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    EXPECT_GT((*w)->fsyncs(), 0u);
  }
  if (GetParam() == Durability::kNone) {
    ASSERT_TRUE((*w)->Sync().ok());
    EXPECT_EQ((*w)->fsyncs(), 1u);
    // Nothing new since: no second fsync.
    ASSERT_TRUE((*w)->Sync().ok());
    EXPECT_EQ((*w)->fsyncs(), 1u);
  }
  ASSERT_TRUE((*w)->Close().ok());

  auto c = ReadWal(path);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  ASSERT_EQ(c->records.size(), static_cast<size_t>(kRecords));
  for (int i = 0; i < kRecords; ++i) {
    EXPECT_EQ(c->records[i].sequence, static_cast<uint64_t>(i + 1));
    EXPECT_EQ(c->records[i].type, i);
    EXPECT_EQ(AsString(c->records[i].payload), Pattern(i * 10, i));
  }
}

INSTANTIATE_TEST_SUITE_P(AllModes, WalDurability,
                         ::testing::Values(Durability::kSync, Durability::kInterval,
                                           Durability::kNone),
                         [](const auto& info) {
                           switch (info.param) {
                             case Durability::kSync:
                               return std::string("Sync");
                             case Durability::kInterval:
                               return std::string("Interval");
                             case Durability::kNone:
                               return std::string("None");
                           }
                           return std::string("Unknown");
                         });

TEST(Wal, IntervalModeNeedsAPositiveInterval) {
  TempDir dir;
  WalOptions options;
  options.durability = Durability::kInterval;
  options.interval_ms = 0;
  auto w = WalWriter::Create(dir / "x.wal", 0, options);
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code(), StatusCode::kInvalidArgument) << w.error().ToString();
  EXPECT_FALSE(fs::exists(dir / "x.wal"));
}

// ---------------------------------------------------------------------------------------------
// Group commit and concurrency

std::string ThreadPayload(int thread, int i) {
  return fmt::format("t{}i{}:", thread, i) + Pattern(static_cast<size_t>((thread * 31 + i) % 97),
                                                     static_cast<uint32_t>(thread * 1000 + i));
}

TEST(Wal, GroupCommitGivesConcurrentAppendsDistinctConsecutiveSequences) {
  TempDir dir;
  const fs::path path = dir / "group.wal";
  constexpr int kThreads = 8;
  constexpr int kPerThread = 200;
  constexpr uint64_t kFirst = 10;
  auto w = WalWriter::Create(path, kFirst);  // kSync
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  WalWriter& writer = **w;

  // sequences[t][i]: what thread t's i-th Append returned.
  std::vector<std::vector<uint64_t>> sequences(kThreads, std::vector<uint64_t>(kPerThread, 0));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string payload = ThreadPayload(t, i);
        auto seq = writer.Append(static_cast<uint8_t>(t), AsBytes(payload));
        if (!seq.has_value()) {
          ++failures;
          return;
        }
        sequences[t][i] = *seq;
        // A reader of the metrics, concurrently with the writers.
        (void)writer.fsyncs();
        (void)writer.bytes_written();
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  const uint64_t fsyncs = writer.fsyncs();
  EXPECT_GE(fsyncs, 1u);
  // Most likely far fewer (appends share fsyncs), but the scheduler decides; no flaky bound.
  EXPECT_LE(fsyncs, static_cast<uint64_t>(kThreads * kPerThread));
  ::testing::Test::RecordProperty("fsyncs", static_cast<int>(fsyncs));
  EXPECT_EQ(writer.next_sequence(), kFirst + kThreads * kPerThread);
  ASSERT_TRUE(writer.Close().ok());

  std::set<uint64_t> all;
  for (int t = 0; t < kThreads; ++t) {
    // Each thread's own appends are ordered.
    EXPECT_TRUE(std::is_sorted(sequences[t].begin(), sequences[t].end()));
    all.insert(sequences[t].begin(), sequences[t].end());
  }
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(*all.begin(), kFirst);
  EXPECT_EQ(*all.rbegin(), kFirst + kThreads * kPerThread - 1);

  auto c = ReadWal(path);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  ASSERT_EQ(c->records.size(), static_cast<size_t>(kThreads * kPerThread));
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const WalRecord& r = c->records[sequences[t][i] - kFirst];
      ASSERT_EQ(r.sequence, sequences[t][i]);
      EXPECT_EQ(r.type, t);
      EXPECT_EQ(AsString(r.payload), ThreadPayload(t, i));
    }
  }
}

TEST(Wal, SyncAndCloseRaceWithAppendsSafely) {
  TempDir dir;
  const fs::path path = dir / "race.wal";
  WalOptions options;
  options.durability = Durability::kInterval;
  options.interval_ms = 1;
  auto w = WalWriter::Create(path, 0, options);
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  WalWriter& writer = **w;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> acknowledged{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        auto seq = writer.Append(1, AsBytes(ThreadPayload(t, i)));
        if (!seq.has_value()) {
          // Only Close may stop an appender.
          EXPECT_EQ(seq.error().code(), StatusCode::kInvalidArgument) << seq.error().ToString();
          return;
        }
        ++acknowledged;
      }
    });
  }
  threads.emplace_back([&] {
    while (!stop.load()) {
      Status s = writer.Sync();
      if (!s.ok()) {
        EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
        return;
      }
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (acknowledged.load() < 300 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  // Close while the others are still appending and syncing.
  ASSERT_TRUE(writer.Close().ok());
  stop = true;
  for (auto& th : threads) th.join();
  EXPECT_TRUE(writer.Close().ok());  // idempotent

  auto c = ReadWal(path);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->records.size(), acknowledged.load());
  EXPECT_EQ(c->records.size(), writer.next_sequence());
  EXPECT_EQ(c->dropped_bytes, 0u);
}

// ---------------------------------------------------------------------------------------------
// Torn tails

TEST(Wal, TornLastRecordAtEveryLengthKeepsEarlierRecords) {
  TempDir dir;
  const fs::path path = dir / "torn.wal";
  std::vector<Written> written = WriteLog(path, 100, FivePayloads());
  const std::string full = ReadRawFile(path);
  const uint64_t last = written.back().offset;

  // Every cut inside the last record: inside its 24-byte header and inside its payload.
  for (uint64_t cut = last + 1; cut < full.size(); ++cut) {
    SCOPED_TRACE(cut);
    WriteRawFile(path, std::string_view(full).substr(0, cut));
    auto c = ReadWal(path);
    ASSERT_TRUE(c.has_value()) << c.error().ToString();
    ExpectRecords(*c, written, 4);
    EXPECT_EQ(c->valid_bytes, last);
    EXPECT_EQ(c->dropped_bytes, cut - last);
    EXPECT_FALSE(c->tail_problem.empty());
    EXPECT_NE(c->tail_problem.find(fmt::format("offset {}", last)), std::string::npos)
        << c->tail_problem;
    EXPECT_NE(c->tail_problem.find(fmt::format("{} bytes dropped", cut - last)), std::string::npos)
        << c->tail_problem;

    // Appending is refused until the tail is cut off.
    auto refused = WalWriter::OpenForAppend(path, NoSync());
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(refused.error().message().find("TruncateWal"), std::string::npos);

    ASSERT_TRUE(TruncateWal(path, c->valid_bytes).ok());
    EXPECT_EQ(fs::file_size(path), last);
    auto w = WalWriter::OpenForAppend(path, NoSync());
    ASSERT_TRUE(w.has_value()) << w.error().ToString();
    auto seq = (*w)->Append(7, AsBytes("again"));
    ASSERT_TRUE(seq.has_value()) << seq.error().ToString();
    EXPECT_EQ(*seq, 104u);
    ASSERT_TRUE((*w)->Close().ok());
    auto again = ReadWal(path);
    ASSERT_TRUE(again.has_value()) << again.error().ToString();
    ASSERT_EQ(again->records.size(), 5u);
    EXPECT_EQ(AsString(again->records[4].payload), "again");
    EXPECT_EQ(again->dropped_bytes, 0u);
  }
  // A cut exactly at the record boundary is a clean, shorter log.
  WriteRawFile(path, std::string_view(full).substr(0, last));
  auto c = ReadWal(path);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  ExpectRecords(*c, written, 4);
  EXPECT_EQ(c->dropped_bytes, 0u);
  EXPECT_TRUE(c->tail_problem.empty());
}

// Issue 14, R4: a complete last record that fails its checks may hold an acknowledged write; it
// is damage, not a torn write, and is refused naming the file and the offset.
TEST(Wal, FlippedByteInLastRecordIsRefusedNamingFileAndOffset) {
  TempDir dir;
  const fs::path path = dir / "flip_last.wal";
  std::vector<Written> written = WriteLog(path, 0, FivePayloads());
  const std::string full = ReadRawFile(path);
  const uint64_t last = written.back().offset;
  for (uint64_t at = last; at < full.size(); ++at) {
    SCOPED_TRACE(at);
    std::string damaged = full;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x40);
    WriteRawFile(path, damaged);
    auto c = ReadWal(path);
    ASSERT_FALSE(c.has_value()) << c->tail_problem;
    EXPECT_EQ(c.error().code(), StatusCode::kCorruption) << c.error().ToString();
    const std::string& m = c.error().message();
    EXPECT_NE(m.find(path.string()), std::string::npos) << m;
    EXPECT_NE(m.find(fmt::format("record at offset {}", last)), std::string::npos) << m;
    EXPECT_NE(m.find("not a torn write"), std::string::npos) << m;
    EXPECT_NE(m.find("salvage"), std::string::npos) << m;
    if (at > last && at < last + 4) {  // the length grown past the end (its byte 0 is 64 ^ 0x40 = 0)
      EXPECT_NE(m.find("length field is damaged"), std::string::npos) << m;
    }
    // Nothing was cut, and a writer cannot continue after it either.
    EXPECT_EQ(fs::file_size(path), full.size());
    auto w = WalWriter::OpenForAppend(path, NoSync());
    ASSERT_FALSE(w.has_value());
    EXPECT_EQ(w.error().code(), StatusCode::kCorruption);
  }
}

TEST(Wal, SalvageCutsAtTheDamagedRecord) {
  TempDir dir;
  const fs::path path = dir / "salvage.wal";
  std::vector<Written> written = WriteLog(path, 10, FivePayloads());
  std::string damaged = ReadRawFile(path);
  const uint64_t last = written.back().offset;
  damaged[last + kWalRecordHeaderBytes + 5] ^= 0x01;  // the last record's payload
  WriteRawFile(path, damaged);
  ASSERT_FALSE(ReadWal(path).has_value());
  auto c = ReadWal(path, kDefaultMaxWalRecordBytes, WalTail::kSalvage);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  ExpectRecords(*c, written, 4);
  EXPECT_TRUE(c->damaged);
  EXPECT_EQ(c->valid_bytes, last);
  EXPECT_EQ(c->dropped_bytes, damaged.size() - last);
  EXPECT_NE(c->tail_problem.find("salvaged"), std::string::npos) << c->tail_problem;
  ASSERT_TRUE(TruncateWal(path, c->valid_bytes).ok());
  auto w = WalWriter::OpenForAppend(path, NoSync());
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  EXPECT_EQ((*w)->next_sequence(), 14u);

  // Damage in the middle: salvage also cuts at the first bad record, dropping the valid ones
  // after it, and says so.
  written = WriteLog(dir / "middle.wal", 0, FivePayloads());
  damaged = ReadRawFile(dir / "middle.wal");
  damaged[written[1].offset + kRecChecksumAt] ^= 0x01;
  WriteRawFile(dir / "middle.wal", damaged);
  auto m = ReadWal(dir / "middle.wal", kDefaultMaxWalRecordBytes, WalTail::kSalvage);
  ASSERT_TRUE(m.has_value()) << m.error().ToString();
  ExpectRecords(*m, written, 1);
  EXPECT_TRUE(m->damaged);
  EXPECT_NE(m->tail_problem.find("sequence 2 follows"), std::string::npos) << m->tail_problem;
  // A torn tail read with kSalvage is not damage.
  written = WriteLog(dir / "torn.wal", 0, FivePayloads());
  const std::string torn = ReadRawFile(dir / "torn.wal");
  WriteRawFile(dir / "torn.wal", std::string_view(torn).substr(0, torn.size() - 3));
  auto t = ReadWal(dir / "torn.wal", kDefaultMaxWalRecordBytes, WalTail::kSalvage);
  ASSERT_TRUE(t.has_value()) << t.error().ToString();
  EXPECT_FALSE(t->damaged);
  ExpectRecords(*t, written, 4);
}

TEST(Wal, GarbageAfterValidRecordsIsATornTail) {
  TempDir dir;
  const fs::path path = dir / "garbage.wal";
  std::vector<Written> written = WriteLog(path, 3, FivePayloads());
  const std::string full = ReadRawFile(path);
  std::mt19937 rng(7);
  for (size_t n : {1, 23, 24, 25, 100, 5000, 70000}) {
    SCOPED_TRACE(n);
    std::string garbage(n, '\0');
    for (char& ch : garbage) ch = static_cast<char>(rng());
    WriteRawFile(path, full + garbage);
    auto c = ReadWal(path);
    ASSERT_TRUE(c.has_value()) << c.error().ToString();
    ExpectRecords(*c, written, 5);
    EXPECT_EQ(c->valid_bytes, full.size());
    EXPECT_EQ(c->dropped_bytes, n);
    EXPECT_FALSE(c->tail_problem.empty());
  }
  // Zeros, as a file system may leave after a crash that extended the file.
  WriteRawFile(path, full + std::string(4096, '\0'));
  auto c = ReadWal(path);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  ExpectRecords(*c, written, 5);
  EXPECT_EQ(c->dropped_bytes, 4096u);
}

TEST(Wal, StaleCopyOfTheLastRecordIsATornTail) {
  // A well-formed record whose sequence is not beyond the last good one proves nothing lost.
  TempDir dir;
  const fs::path path = dir / "stale.wal";
  std::vector<Written> written = WriteLog(path, 0, FivePayloads());
  const std::string full = ReadRawFile(path);
  WriteRawFile(path, full + full.substr(written.back().offset));
  auto c = ReadWal(path);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  ExpectRecords(*c, written, 5);
  EXPECT_NE(c->tail_problem.find("has sequence 4, expected 5"), std::string::npos)
      << c->tail_problem;
}

// ---------------------------------------------------------------------------------------------
// Damage in the middle of the log

TEST(Wal, FlippedByteInAMiddleRecordIsCorruption) {
  TempDir dir;
  const fs::path path = dir / "flip_middle.wal";
  std::vector<Written> written = WriteLog(path, 0, FivePayloads());
  const std::string full = ReadRawFile(path);
  // Record 2 (300-byte payload): every byte of its header (length, type, reserved, sequence,
  // checksum) and of its payload.
  const uint64_t begin = written[2].offset;
  const uint64_t end = written[3].offset;
  for (uint64_t at = begin; at < end; ++at) {
    SCOPED_TRACE(at);
    std::string damaged = full;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x01);
    WriteRawFile(path, damaged);
    auto c = ReadWal(path);
    ASSERT_FALSE(c.has_value());
    EXPECT_EQ(c.error().code(), StatusCode::kCorruption) << c.error().ToString();
    const std::string& m = c.error().message();
    EXPECT_NE(m.find(path.string()), std::string::npos) << m;
    EXPECT_NE(m.find(fmt::format("record at offset {}", begin)), std::string::npos) << m;
    EXPECT_NE(m.find("sequence 3"), std::string::npos) << m;
  }
}

TEST(Wal, FlippedPayloadAndChecksumOfTheFirstRecordAreCorruption) {
  TempDir dir;
  const fs::path path = dir / "flip_first.wal";
  std::vector<Written> written = WriteLog(path, 0, FivePayloads());
  const std::string full = ReadRawFile(path);
  for (uint64_t at : {written[0].offset + kRecChecksumAt + 3, written[0].offset + 30}) {
    std::string damaged = full;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x80);
    WriteRawFile(path, damaged);
    auto c = ReadWal(path);
    ASSERT_FALSE(c.has_value());
    EXPECT_EQ(c.error().code(), StatusCode::kCorruption) << c.error().ToString();
    EXPECT_NE(c.error().message().find("sequence 1"), std::string::npos) << c.error().ToString();
  }
}

TEST(Wal, MissingRecordIsCorruption) {
  // Record 2 spliced out: record 3 is well-formed but breaks the sequence.
  TempDir dir;
  const fs::path path = dir / "gap.wal";
  std::vector<Written> written = WriteLog(path, 0, FivePayloads());
  const std::string full = ReadRawFile(path);
  WriteRawFile(path, full.substr(0, written[2].offset) + full.substr(written[3].offset));
  auto c = ReadWal(path);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), StatusCode::kCorruption) << c.error().ToString();
  EXPECT_NE(c.error().message().find("has sequence 3, expected 2"), std::string::npos)
      << c.error().ToString();
}

TEST(Wal, RecordLongerThanTheReadersLimitIsRefused) {
  // A complete record is never dropped as torn, even when the reader's limit is too small.
  TempDir dir;
  const fs::path path = dir / "limit.wal";
  std::vector<Written> written = WriteLog(path, 0, {Pattern(10, 1), Pattern(1000, 2)});
  auto refused = ReadWal(path, 500);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), StatusCode::kCorruption);
  EXPECT_NE(refused.error().message().find("more than max_record_bytes 500"), std::string::npos)
      << refused.error().ToString();
  auto c = ReadWal(path, 500, WalTail::kSalvage);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  ExpectRecords(*c, written, 1);
  // With a record after it, the same limit reveals damage rather than dropping data.
  WriteLog(dir / "limit2.wal", 0, {Pattern(10, 1), Pattern(1000, 2), Pattern(10, 3)});
  auto c2 = ReadWal(dir / "limit2.wal", 500);
  ASSERT_FALSE(c2.has_value());
  EXPECT_EQ(c2.error().code(), StatusCode::kCorruption) << c2.error().ToString();
}

// ---------------------------------------------------------------------------------------------
// Damaged file header

TEST(Wal, EveryFlippedHeaderByteIsCorruption) {
  TempDir dir;
  const fs::path path = dir / "header.wal";
  WriteLog(path, 5, {"x"});
  const std::string full = ReadRawFile(path);
  for (size_t at = 0; at < kWalHeaderBytes; ++at) {
    SCOPED_TRACE(at);
    std::string damaged = full;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x10);
    WriteRawFile(path, damaged);
    auto c = ReadWal(path);
    ASSERT_FALSE(c.has_value());
    EXPECT_EQ(c.error().code(), StatusCode::kCorruption) << c.error().ToString();
    EXPECT_NE(c.error().message().find(path.string()), std::string::npos);
  }
}

TEST(Wal, HeaderShorterThan64BytesIsCorruption) {
  TempDir dir;
  const fs::path path = dir / "short.wal";
  WriteLog(path, 0, {});
  const std::string full = ReadRawFile(path);
  for (size_t n = 0; n < kWalHeaderBytes; ++n) {
    SCOPED_TRACE(n);
    WriteRawFile(path, std::string_view(full).substr(0, n));
    auto c = ReadWal(path);
    ASSERT_FALSE(c.has_value());
    EXPECT_EQ(c.error().code(), StatusCode::kCorruption) << c.error().ToString();
    EXPECT_NE(c.error().message().find(path.string()), std::string::npos);
    EXPECT_NE(c.error().message().find("64-byte WAL header"), std::string::npos);
    EXPECT_FALSE(WalWriter::OpenForAppend(path, NoSync()).has_value());
  }
}

TEST(Wal, WrongMagicIsCorruptionNamingTheMagic) {
  TempDir dir;
  const fs::path path = dir / "magic.wal";
  WriteLog(path, 0, {"x"});
  std::string f = ReadRawFile(path);
  std::memcpy(f.data(), "STRHNSW\0", 8);
  FixHeaderChecksum(f);
  WriteRawFile(path, f);
  auto c = ReadWal(path);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), StatusCode::kCorruption);
  EXPECT_NE(c.error().message().find(path.string()), std::string::npos);
  EXPECT_NE(c.error().message().find("STRHNSW"), std::string::npos) << c.error().ToString();
}

TEST(Wal, UnknownMajorVersionIsRefused) {
  TempDir dir;
  const fs::path path = dir / "major.wal";
  WriteLog(path, 0, {"x"});
  std::string f = ReadRawFile(path);
  Put<uint16_t>(f, kMajorAt, 2);
  FixHeaderChecksum(f);
  WriteRawFile(path, f);
  auto c = ReadWal(path);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.error().message().find(path.string()), std::string::npos);
  EXPECT_NE(c.error().message().find("major version 2"), std::string::npos) << c.error().ToString();
  // A newer minor is fine.
  Put<uint16_t>(f, kMajorAt, 1);
  Put<uint16_t>(f, kMinorAt, 9);
  FixHeaderChecksum(f);
  WriteRawFile(path, f);
  auto ok = ReadWal(path);
  ASSERT_TRUE(ok.has_value()) << ok.error().ToString();
  EXPECT_EQ(ok->records.size(), 1u);
}

TEST(Wal, NonzeroReservedHeaderFieldsAreCorruption) {
  TempDir dir;
  const fs::path path = dir / "reserved.wal";
  WriteLog(path, 0, {"x"});
  const std::string full = ReadRawFile(path);
  for (size_t at : {kReserved0At, kReserved0At + 3, kReserved1At, kReserved1At + 31}) {
    SCOPED_TRACE(at);
    std::string f = full;
    f[at] = 1;
    FixHeaderChecksum(f);
    WriteRawFile(path, f);
    auto c = ReadWal(path);
    ASSERT_FALSE(c.has_value());
    EXPECT_EQ(c.error().code(), StatusCode::kCorruption) << c.error().ToString();
    // The 4-byte field is named by its first byte, the 32 reserved bytes one by one.
    const size_t named = at < kFirstSequenceAt ? kReserved0At : at;
    EXPECT_NE(c.error().message().find(fmt::format("byte {} ", named)), std::string::npos)
        << c.error().ToString();
  }
}

// ---------------------------------------------------------------------------------------------
// Writer errors

TEST(Wal, OversizedPayloadIsInvalidArgumentAndTheWriterStaysUsable) {
  TempDir dir;
  const fs::path path = dir / "big.wal";
  WalOptions options = NoSync();
  options.max_record_bytes = 100;
  auto w = WalWriter::Create(path, 0, options);
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  auto big = (*w)->Append(1, AsBytes(Pattern(101, 1)));
  ASSERT_FALSE(big.has_value());
  EXPECT_EQ(big.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(big.error().message().find(path.string()), std::string::npos);
  auto fits = (*w)->Append(1, AsBytes(Pattern(100, 1)));
  ASSERT_TRUE(fits.has_value()) << fits.error().ToString();
  EXPECT_EQ(*fits, 0u);
  ASSERT_TRUE((*w)->Close().ok());
  auto c = ReadWal(path, 100);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->records.size(), 1u);
}

TEST(Wal, CreateOnAnExistingPathIsAlreadyExists) {
  TempDir dir;
  const fs::path path = dir / "exists.wal";
  WriteRawFile(path, "precious");
  auto w = WalWriter::Create(path, 0);
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(w.error().message().find(path.string()), std::string::npos);
  EXPECT_EQ(ReadRawFile(path), "precious");
}

TEST(Wal, MissingFilesAndDirectoriesAreNotFound) {
  TempDir dir;
  EXPECT_EQ(ReadWal(dir / "nope.wal").error().code(), StatusCode::kNotFound);
  EXPECT_EQ(WalWriter::OpenForAppend(dir / "nope.wal").error().code(), StatusCode::kNotFound);
  EXPECT_EQ(WalWriter::Create(dir / "no_dir" / "x.wal", 0).error().code(), StatusCode::kNotFound);
  EXPECT_EQ(TruncateWal(dir / "nope.wal", 64).code(), StatusCode::kNotFound);
}

TEST(Wal, AppendAndSyncAfterCloseAreRefused) {
  TempDir dir;
  const fs::path path = dir / "closed.wal";
  auto w = WalWriter::Create(path, 0, NoSync());
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  ASSERT_TRUE((*w)->Append(1, AsBytes("a")).has_value());
  ASSERT_TRUE((*w)->Close().ok());
  EXPECT_EQ((*w)->fsyncs(), 1u);  // Close synced the record
  EXPECT_TRUE((*w)->Close().ok());
  EXPECT_EQ((*w)->fsyncs(), 1u);
  auto after = (*w)->Append(1, AsBytes("b"));
  ASSERT_FALSE(after.has_value());
  EXPECT_EQ(after.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->Sync().code(), StatusCode::kInvalidArgument);
}

TEST(Wal, DestructorClosesAndRecordsSurvive) {
  TempDir dir;
  const fs::path path = dir / "dtor.wal";
  {
    auto w = WalWriter::Create(path, 0, NoSync());
    ASSERT_TRUE(w.has_value()) << w.error().ToString();
    ASSERT_TRUE((*w)->Append(1, AsBytes("kept")).has_value());
  }
  auto c = ReadWal(path);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  ASSERT_EQ(c->records.size(), 1u);
  EXPECT_EQ(AsString(c->records[0].payload), "kept");
  // The lock went with the writer.
  auto w = WalWriter::OpenForAppend(path, NoSync());
  EXPECT_TRUE(w.has_value()) << w.error().ToString();
}

TEST(Wal, OnlyOneWriterAtATime) {
  TempDir dir;
  const fs::path path = dir / "locked.wal";
  auto first = WalWriter::Create(path, 0, NoSync());
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  auto second = WalWriter::OpenForAppend(path, NoSync());
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), StatusCode::kIOError);
  EXPECT_NE(second.error().message().find("locked"), std::string::npos);
  EXPECT_EQ(TruncateWal(path, 64).code(), StatusCode::kIOError);
  // Readers are not locked out.
  EXPECT_TRUE(ReadWal(path).has_value());
  ASSERT_TRUE((*first)->Close().ok());
  auto third = WalWriter::OpenForAppend(path, NoSync());
  EXPECT_TRUE(third.has_value()) << third.error().ToString();
}

TEST(Wal, TruncateWalChecksItsArgument) {
  TempDir dir;
  const fs::path path = dir / "trunc.wal";
  WriteLog(path, 0, {"abc"});
  const uint64_t size = fs::file_size(path);
  EXPECT_EQ(TruncateWal(path, 63).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(TruncateWal(path, size + 1).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(TruncateWal(path, size).ok());
  EXPECT_EQ(fs::file_size(path), size);
  EXPECT_TRUE(TruncateWal(path, 64).ok());
  EXPECT_EQ(fs::file_size(path), 64u);
}

TEST(Wal, FailedWritePoisonsTheWriter) {
  TempDir dir;
  const fs::path path = dir / "poison.wal";
  auto w = WalWriter::Create(path, 0, NoSync());
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  ASSERT_TRUE((*w)->Append(1, AsBytes("before")).has_value());

  // Make writes past 1000 bytes fail with EFBIG (rather than kill the process with SIGXFSZ).
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 1000;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
  auto failed = (*w)->Append(2, AsBytes(Pattern(2000, 1)));
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  std::signal(SIGXFSZ, old_handler);

  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code(), StatusCode::kIOError);
  EXPECT_NE(failed.error().message().find(path.string()), std::string::npos);
  // Poisoned: the same error from now on, even though writes would succeed again.
  auto later = (*w)->Append(3, AsBytes("after"));
  ASSERT_FALSE(later.has_value());
  EXPECT_EQ(later.error().message(), failed.error().message());
  EXPECT_EQ((*w)->Sync().message(), failed.error().message());
  EXPECT_EQ((*w)->Close().message(), failed.error().message());
  EXPECT_EQ((*w)->next_sequence(), 1u);

  // The partial record is a torn tail; the acknowledged one is intact.
  auto c = ReadWal(path);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  ASSERT_EQ(c->records.size(), 1u);
  EXPECT_EQ(AsString(c->records[0].payload), "before");
  EXPECT_GT(c->dropped_bytes, 0u);
}

}  // namespace
}  // namespace strata::engine
