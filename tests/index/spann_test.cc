#include "index/spann/spann_index.h"
#include "tests/index/test_data.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <string>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>

#include "index/distance/distance.h"
#include "index/flat/flat_index.h"
#include "storage/block_io.h"
#include "storage/section_file.h"

namespace strata::index {
namespace {

namespace fs = std::filesystem;
using test_data::Clustered;

constexpr size_t kN = 5000;
constexpr size_t kDim = 32;
constexpr size_t kQueries = 100;

// ---------------------------------------------------------------------------
// Helpers

// The running test's directory (removed by the fixture's TearDown).
fs::path TestDirPath() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string test = std::string(info->test_suite_name()) + "_" + info->name();
  std::replace(test.begin(), test.end(), '/', '_');
  return fs::temp_directory_path() /
         ("strata_spann_test_" + test + "_" + std::to_string(::getpid()));
}

// A fresh, empty directory for the running test.
fs::path TestDir() {
  fs::path dir = TestDirPath();
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<char> ReadAll(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}

void WriteAll(const fs::path& p, const std::vector<char>& data) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(data.data(), std::streamsize(data.size()));
}

VectorSet Base() { return Clustered(kN, kDim, /*seed=*/1); }
VectorSet Queries() { return Clustered(kQueries, kDim, /*seed=*/2); }

SpannBuildOptions BuildOptions(Metric metric) {
  SpannBuildOptions o;
  o.metric = metric;
  o.cluster_size = 16;
  o.num_threads = 1;  // one thread: the same index every run (two build the heads graph in any order)
  return o;
}

// The raw section table entry for `tag` in a postings file.
storage::SectionFile::Entry SectionEntry(const fs::path& postings, const char (&tag)[5]) {
  auto sf = storage::SectionFile::Open(postings, "STRSPAN", 1, {.verify_checksums = false});
  EXPECT_TRUE(sf.has_value()) << sf.error().ToString();
  for (const auto& e : sf->entries()) {
    if (e.tag == storage::SectionTag(tag)) return e;
  }
  ADD_FAILURE() << "no section " << tag << " in " << postings;
  return {};
}

// LDIR records, as documented in docs/formats/spann.md.
struct DirRecord {
  uint64_t offset;
  uint32_t bytes;
  uint32_t count;
  uint64_t checksum;
};
static_assert(sizeof(DirRecord) == 24);

std::vector<DirRecord> ReadDirectory(const fs::path& postings) {
  auto sf = storage::SectionFile::Open(postings, "STRSPAN", 1);
  EXPECT_TRUE(sf.has_value()) << sf.error().ToString();
  auto bytes = sf->Section(storage::SectionTag("LDIR"));
  EXPECT_TRUE(bytes.has_value());
  std::vector<DirRecord> dir(bytes->size() / sizeof(DirRecord));
  std::memcpy(dir.data(), bytes->data(), dir.size() * sizeof(DirRecord));
  return dir;
}

// Rewrites a postings file the way a buggy or hostile writer would: `edit` may change the LDIR
// records and the POST bytes, and every checksum that covers them (LDIR's section checksum and
// the section table's) is recomputed, so only SpannIndex's own checks stand in the way.
template <typename Edit>
void RewriteConsistently(const fs::path& post, Edit edit) {
  std::vector<char> bytes = ReadAll(post);
  uint64_t table_offset;
  uint32_t count;
  std::memcpy(&table_offset, bytes.data() + 16, 8);
  std::memcpy(&count, bytes.data() + 24, 4);
  auto pst = SectionEntry(post, "POST");
  auto ldir = SectionEntry(post, "LDIR");
  std::vector<DirRecord> dir(ldir.size / sizeof(DirRecord));
  std::memcpy(dir.data(), bytes.data() + ldir.offset, ldir.size);
  edit(dir, reinterpret_cast<std::byte*>(bytes.data() + pst.offset));
  std::memcpy(bytes.data() + ldir.offset, dir.data(), ldir.size);
  auto checksum = [&](uint64_t off, uint64_t size) {
    return storage::SectionChecksum(
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data() + off), size));
  };
  for (uint32_t i = 0; i < count; ++i) {
    char* e = bytes.data() + table_offset + 32 * i;
    uint32_t tag;
    std::memcpy(&tag, e, 4);
    if (tag != storage::SectionTag("LDIR")) continue;
    const uint64_t c = checksum(ldir.offset, ldir.size);
    std::memcpy(e + 24, &c, 8);
  }
  const uint64_t tc = checksum(table_offset, uint64_t(count) * 32);
  std::memcpy(bytes.data() + table_offset + uint64_t(count) * 32, &tc, 8);
  WriteAll(post, bytes);
}

// The built indexes, shared by every test; tests that damage files work on a copy.
class SpannTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One directory per process: ctest runs the tests of this suite in parallel processes.
    root_ = new fs::path(fs::temp_directory_path() /
                         ("strata_spann_test_shared_" + std::to_string(::getpid())));
    fs::remove_all(*root_);
    fs::create_directories(*root_);
    for (Metric m : {Metric::kL2, Metric::kCosine}) {
      Status s = SpannIndex::Build(Base(), Dir(m), BuildOptions(m));
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(*root_, ec);
    delete root_;
    root_ = nullptr;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(TestDirPath(), ec);
  }
  static fs::path Dir(Metric m) { return *root_ / (m == Metric::kL2 ? "l2" : "cosine"); }

  // A private copy of the l2 index in this test's directory.
  static fs::path CopyOfL2() {
    fs::path dst = TestDir() / "index";
    fs::copy(Dir(Metric::kL2), dst, fs::copy_options::recursive);
    return dst;
  }

  static std::unique_ptr<SpannIndex> OpenOrDie(const fs::path& p, const SpannOpenOptions& o = {}) {
    auto idx = SpannIndex::Open(p, o);
    EXPECT_TRUE(idx.has_value()) << idx.error().ToString();
    return idx ? std::move(*idx) : nullptr;
  }

  // The shared base built with `o` into this test's `name`, opened.
  static std::unique_ptr<SpannIndex> BuiltVariant(const SpannBuildOptions& o, const std::string& name) {
    const fs::path dir = TestDir() / name;
    const Status s = SpannIndex::Build(Base(), dir, o);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return s.ok() ? OpenOrDie(dir) : nullptr;
  }

  static fs::path* root_;
};
fs::path* SpannTest::root_ = nullptr;

double RecallVsFlat(const SpannIndex& idx, Metric metric, uint32_t max_lists) {
  auto flat = *FlatIndex::Build(Base(), metric);
  VectorSet queries = Queries();
  SpannContext ctx;
  SearchContext fctx;
  SpannSearchParams p;
  p.k = 10;
  p.max_lists = max_lists;
  SearchParams fp;
  fp.k = 10;
  size_t hit = 0, total = 0;
  for (size_t q = 0; q < queries.size(); ++q) {
    auto got = idx.Search(queries[q], p, ctx);
    auto want = flat->Search(queries[q], fp, fctx);
    EXPECT_TRUE(got.has_value()) << got.error().ToString();
    EXPECT_TRUE(want.has_value());
    if (!got || !want) return 0;
    EXPECT_EQ(got->size(), 10u);
    EXPECT_TRUE(std::is_sorted(got->begin(), got->end())) << "query " << q;
    std::unordered_set<VectorId> ids;
    for (const auto& n : *got) {
      EXPECT_LT(n.id, kN);
      EXPECT_TRUE(ids.insert(n.id).second) << "duplicate id " << n.id << " in query " << q;
    }
    std::unordered_set<VectorId> w;
    for (const auto& n : *want) w.insert(n.id);
    for (const auto& n : *got) hit += w.count(n.id);
    total += want->size();
  }
  return total ? double(hit) / double(total) : 1.0;
}

// ---------------------------------------------------------------------------
// Build, Open, Search

TEST_F(SpannTest, RecallL2) {
  auto idx = OpenOrDie(Dir(Metric::kL2));
  ASSERT_NE(idx, nullptr);
  EXPECT_EQ(idx->dim(), kDim);
  EXPECT_EQ(idx->metric(), Metric::kL2);
  EXPECT_GE(RecallVsFlat(*idx, Metric::kL2, 64), 0.9);
}

TEST_F(SpannTest, RecallCosine) {
  auto idx = OpenOrDie(Dir(Metric::kCosine));
  ASSERT_NE(idx, nullptr);
  EXPECT_EQ(idx->metric(), Metric::kCosine);
  EXPECT_GE(RecallVsFlat(*idx, Metric::kCosine, 64), 0.9);
}

TEST_F(SpannTest, L2DistancesMatchFlat) {
  // A base vector is its own nearest neighbour at distance 0.
  auto idx = OpenOrDie(Dir(Metric::kL2));
  ASSERT_NE(idx, nullptr);
  VectorSet base = Base();
  SpannContext ctx;
  for (size_t i = 0; i < kN; i += 97) {
    auto r = idx->Search(base[i], {.k = 1}, ctx);
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    ASSERT_EQ(r->size(), 1u);
    EXPECT_EQ((*r)[0].id, i);
    EXPECT_NEAR((*r)[0].distance, 0.0f, 1e-4f);
  }
}

TEST_F(SpannTest, KLargerThanCandidatesReturnsWhatItHas) {
  auto idx = OpenOrDie(Dir(Metric::kL2));
  ASSERT_NE(idx, nullptr);
  VectorSet queries = Queries();
  SpannContext ctx;
  auto r = idx->Search(queries[0], {.k = 100000, .max_lists = 2, .prune_epsilon = 1e9}, ctx);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_GT(r->size(), 0u);
  EXPECT_LE(r->size(), kN);
  EXPECT_TRUE(std::is_sorted(r->begin(), r->end()));
}

TEST_F(SpannTest, QueryStatsCount) {
  auto idx = OpenOrDie(Dir(Metric::kL2));
  ASSERT_NE(idx, nullptr);
  VectorSet queries = Queries();
  SpannContext ctx;
  SpannQueryStats st;
  auto r = idx->Search(queries[0], {.k = 10, .max_lists = 8}, ctx, &st);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_GE(st.lists_read, 1u);
  EXPECT_LE(st.lists_read, 8u);
  EXPECT_EQ(st.bytes_read % 4096, 0u);
  EXPECT_GE(st.bytes_read, uint64_t(st.lists_read) * 4096);
  EXPECT_GT(st.entries_scored, 0u);
}

// ---------------------------------------------------------------------------
// Argument errors

TEST_F(SpannTest, InnerProductRefused) {
  fs::path dir = TestDir();
  Status s = SpannIndex::Build(Clustered(200, 8, 1), dir / "ip", BuildOptions(Metric::kInnerProduct));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_FALSE(fs::exists(dir / "ip"));
}

TEST_F(SpannTest, BuildIntoExistingPathIsAlreadyExists) {
  fs::path dir = TestDir();
  fs::create_directories(dir / "taken");
  Status s = SpannIndex::Build(Clustered(200, 8, 1), dir / "taken", BuildOptions(Metric::kL2));
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
  // And over a built index.
  s = SpannIndex::Build(Base(), Dir(Metric::kL2), BuildOptions(Metric::kL2));
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
  EXPECT_NE(OpenOrDie(Dir(Metric::kL2)), nullptr);
}

TEST_F(SpannTest, BuildRejectsNaN) {
  fs::path dir = TestDir();
  VectorSet base = Clustered(200, 8, 1);
  base.mutable_row(17)[3] = std::numeric_limits<float>::quiet_NaN();
  Status s = SpannIndex::Build(std::move(base), dir / "nan", BuildOptions(Metric::kL2));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_FALSE(fs::exists(dir / "nan"));
}

TEST_F(SpannTest, SearchArgumentErrors) {
  auto idx = OpenOrDie(Dir(Metric::kL2));
  ASSERT_NE(idx, nullptr);
  SpannContext ctx;
  std::vector<float> q(kDim, 0.5f);

  std::vector<float> wrong(kDim + 1, 0.5f);
  auto r = idx->Search(VectorView(wrong.data(), wrong.size()), {}, ctx);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);

  auto nan = q;
  nan[5] = std::numeric_limits<float>::quiet_NaN();
  r = idx->Search(VectorView(nan.data(), kDim), {}, ctx);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);

  auto inf = q;
  inf[0] = std::numeric_limits<float>::infinity();
  r = idx->Search(VectorView(inf.data(), kDim), {}, ctx);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);

  r = idx->Search(VectorView(q.data(), kDim), {.k = 0}, ctx);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);

  r = idx->Search(VectorView(q.data(), kDim), {.k = 10, .max_lists = 0}, ctx);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);

  // The context is still usable after the errors.
  r = idx->Search(VectorView(q.data(), kDim), {}, ctx);
  EXPECT_TRUE(r.has_value()) << r.error().ToString();
}

// ---------------------------------------------------------------------------
// Backends

void ExpectSameResults(const SpannIndex& a, const SpannIndex& b) {
  VectorSet queries = Queries();
  SpannContext ca, cb;
  SpannSearchParams p;
  p.k = 10;
  p.max_lists = 32;
  for (size_t q = 0; q < queries.size(); q += 3) {
    auto ra = a.Search(queries[q], p, ca);
    auto rb = b.Search(queries[q], p, cb);
    ASSERT_TRUE(ra.has_value()) << ra.error().ToString();
    ASSERT_TRUE(rb.has_value()) << rb.error().ToString();
    ASSERT_EQ(ra->size(), rb->size()) << "query " << q;
    for (size_t i = 0; i < ra->size(); ++i) {
      EXPECT_EQ((*ra)[i].id, (*rb)[i].id) << "query " << q << " rank " << i;
      EXPECT_EQ((*ra)[i].distance, (*rb)[i].distance) << "query " << q << " rank " << i;
    }
  }
}

TEST_F(SpannTest, IoUringAndPreadAgree) {
  if (!storage::IoQueue::Create(storage::IoBackend::kIoUring).has_value()) {
    GTEST_SKIP() << "io_uring not available here";
  }
  auto uring = OpenOrDie(Dir(Metric::kL2), {.backend = storage::IoBackend::kIoUring});
  auto pread = OpenOrDie(Dir(Metric::kL2), {.backend = storage::IoBackend::kPread});
  ASSERT_NE(uring, nullptr);
  ASSERT_NE(pread, nullptr);
  EXPECT_EQ(uring->backend(), storage::IoBackend::kIoUring);
  EXPECT_EQ(pread->backend(), storage::IoBackend::kPread);
  ExpectSameResults(*uring, *pread);
}

TEST_F(SpannTest, AutoBackendIsConcrete) {
  auto idx = OpenOrDie(Dir(Metric::kL2), {.backend = storage::IoBackend::kAuto});
  ASSERT_NE(idx, nullptr);
  EXPECT_NE(idx->backend(), storage::IoBackend::kAuto);
  auto pread = OpenOrDie(Dir(Metric::kL2), {.backend = storage::IoBackend::kPread});
  ASSERT_NE(pread, nullptr);
  ExpectSameResults(*idx, *pread);
}

TEST_F(SpannTest, DirectAndBufferedAgree) {
  for (auto backend : {storage::IoBackend::kPread, storage::IoBackend::kAuto}) {
    auto direct = OpenOrDie(Dir(Metric::kL2), {.backend = backend, .direct = true});
    auto buffered = OpenOrDie(Dir(Metric::kL2), {.backend = backend, .direct = false});
    ASSERT_NE(direct, nullptr);
    ASSERT_NE(buffered, nullptr);
    EXPECT_FALSE(buffered->direct_io());
    ExpectSameResults(*direct, *buffered);
  }
}

// ---------------------------------------------------------------------------
// Stats

TEST_F(SpannTest, Stats) {
  auto idx = OpenOrDie(Dir(Metric::kL2));
  ASSERT_NE(idx, nullptr);
  SpannStats s = idx->Stats();
  EXPECT_EQ(s.num_vectors, kN);
  EXPECT_GT(s.num_lists, 0u);
  EXPECT_GE(s.total_entries, kN);
  EXPECT_GT(s.memory_bytes, 0u);
  EXPECT_EQ(s.disk_bytes, fs::file_size(Dir(Metric::kL2) / "postings.spann"));
  EXPECT_EQ(s.raw_vector_bytes, kN * kDim * sizeof(float));
  EXPECT_LE(s.list_min, s.list_median);
  EXPECT_LE(s.list_median, s.list_p99);
  EXPECT_LE(s.list_p99, s.list_max);
  EXPECT_LE(s.list_max, 16 * 16u);  // max_list_entries defaults to 16 x cluster_size
}

TEST_F(SpannTest, HeadsFollowTheMemoryBudget) {
  // cluster_size 0: as many heads as the budget holds, and never more.
  VectorSet base = Clustered(12000, 96, 5);
  size_t lists_small = 0;
  for (double budget : {0.15, 0.3}) {
    SpannBuildOptions o;
    o.metric = Metric::kL2;
    o.num_threads = 1;
    ASSERT_EQ(o.cluster_size, 0u);  // the default
    o.memory_budget_fraction = budget;
    const fs::path dir = TestDir() / fmt::format("budget{}", budget);
    ASSERT_TRUE(SpannIndex::Build(*base.Clone(), dir, o).ok());
    auto idx = OpenOrDie(dir);
    ASSERT_NE(idx, nullptr);
    const SpannStats st = idx->Stats();
    const double share = double(st.memory_bytes) / double(st.raw_vector_bytes);
    EXPECT_LE(share, budget) << "budget " << budget;
    EXPECT_GE(share, 0.6 * budget) << "budget " << budget;  // and it is used
    if (budget == 0.15) lists_small = st.num_lists;
    else EXPECT_GT(st.num_lists, lists_small);
  }
}

TEST(SpannOptions, BudgetMustBeAFraction) {
  SpannBuildOptions o;
  o.memory_budget_fraction = 0;
  EXPECT_EQ(o.Validate().code(), StatusCode::kInvalidArgument);
  o.memory_budget_fraction = 1.5;
  EXPECT_EQ(o.Validate().code(), StatusCode::kInvalidArgument);
  o.cluster_size = 16;  // an explicit cluster size does not need the budget
  EXPECT_TRUE(o.Validate().ok());
  o.cluster_size = 1;
  EXPECT_EQ(o.Validate().code(), StatusCode::kInvalidArgument);
}

TEST_F(SpannTest, HeadsAreHalfPrecisionByDefault) {
  auto idx = OpenOrDie(Dir(Metric::kL2));
  ASSERT_NE(idx, nullptr);
  EXPECT_TRUE(idx->Stats().half_heads);
}

TEST_F(SpannTest, HeadsBeyondHalfRangeFallBackToFloat32) {
  // Scaled so that components pass 65504: half heads would overflow, so the build
  // keeps them in float32 and the index still finds exact neighbours.
  VectorSet base = Clustered(2000, 8, 3);
  VectorSet queries = Clustered(20, 8, 4);
  for (size_t i = 0; i < base.size(); ++i) {
    for (size_t j = 0; j < 8; ++j) base.mutable_row(i)[j] *= 1e5f;
  }
  for (size_t i = 0; i < queries.size(); ++i) {
    for (size_t j = 0; j < 8; ++j) queries.mutable_row(i)[j] *= 1e5f;
  }
  auto copy = *base.Clone();
  const fs::path dir = TestDir() / "big";
  ASSERT_TRUE(SpannIndex::Build(std::move(copy), dir, BuildOptions(Metric::kL2)).ok());
  auto idx = OpenOrDie(dir);
  ASSERT_NE(idx, nullptr);
  EXPECT_FALSE(idx->Stats().half_heads);
  EXPECT_FALSE(idx->Stats().half_lists);
  SpannContext ctx;
  auto got = idx->Search(base[7], SpannSearchParams{}, ctx);
  ASSERT_TRUE(got.has_value()) << got.error().ToString();
  ASSERT_FALSE(got->empty());
  EXPECT_EQ((*got)[0].id, 7u);
  EXPECT_EQ((*got)[0].distance, 0.0f);
}

TEST_F(SpannTest, HalfAndFloat32HeadsGiveSimilarRecall) {
  SpannBuildOptions o = BuildOptions(Metric::kL2);
  o.half_heads = false;
  auto full = BuiltVariant(o, "f32");
  auto half = OpenOrDie(Dir(Metric::kL2));
  ASSERT_NE(full, nullptr);
  ASSERT_NE(half, nullptr);
  EXPECT_FALSE(full->Stats().half_heads);
  EXPECT_LT(half->Stats().memory_bytes, full->Stats().memory_bytes);
  EXPECT_NEAR(RecallVsFlat(*half, Metric::kL2, 32), RecallVsFlat(*full, Metric::kL2, 32), 0.02);
}

// Heads on SQ8 codes: searched on their codes without a rerank, a recall close to half heads'
// at the same heads, and at the same memory budget more heads (the codes take half of half's
// bytes, and the heads' full vectors are not resident).
TEST_F(SpannTest, HeadCodesKeepRecallAndFitMoreHeadsInABudget) {
  SpannBuildOptions o = BuildOptions(Metric::kL2);
  o.head_codes = true;
  auto codes = BuiltVariant(o, "head_codes");
  auto half = OpenOrDie(Dir(Metric::kL2));
  ASSERT_NE(codes, nullptr);
  ASSERT_NE(half, nullptr);
  EXPECT_TRUE(codes->Stats().head_codes);
  EXPECT_FALSE(half->Stats().head_codes);
  EXPECT_EQ(SpannHeadsName(codes->Stats()), "sq8");
  EXPECT_EQ(SpannHeadsName(half->Stats()), "float16");
  EXPECT_EQ(codes->Stats().num_lists, half->Stats().num_lists);
  EXPECT_LT(codes->Stats().memory_bytes, half->Stats().memory_bytes);
  EXPECT_NEAR(RecallVsFlat(*codes, Metric::kL2, 32), RecallVsFlat(*half, Metric::kL2, 32), 0.02);

  VectorSet base = Clustered(12000, 96, 5);
  size_t lists[2] = {0, 0};
  for (bool head_codes : {false, true}) {
    SpannBuildOptions b;
    b.metric = Metric::kL2;
    b.num_threads = 1;
    b.memory_budget_fraction = 0.15;
    b.head_codes = head_codes;
    const fs::path d = TestDir() / fmt::format("budget_codes{}", head_codes);
    ASSERT_TRUE(SpannIndex::Build(*base.Clone(), d, b).ok());
    auto idx = OpenOrDie(d);
    ASSERT_NE(idx, nullptr);
    const SpannStats st = idx->Stats();
    EXPECT_LE(double(st.memory_bytes), 0.15 * double(st.raw_vector_bytes)) << "head codes " << head_codes;
    lists[head_codes] = st.num_lists;
  }
  EXPECT_GT(double(lists[1]), 1.3 * double(lists[0]));
}

TEST_F(SpannTest, Float32ListsGiveExactDistancesHalfListsClose) {
  SpannBuildOptions o = BuildOptions(Metric::kL2);
  o.half_lists = false;
  auto full = BuiltVariant(o, "f32lists");
  auto half = OpenOrDie(Dir(Metric::kL2));
  ASSERT_NE(full, nullptr);
  ASSERT_NE(half, nullptr);
  EXPECT_FALSE(full->Stats().half_lists);
  EXPECT_TRUE(half->Stats().half_lists);
  EXPECT_LT(half->Stats().disk_bytes, full->Stats().disk_bytes);
  VectorSet base = Base();
  VectorSet queries = Queries();
  const DistanceKernels& k = Kernels();
  SpannContext ctx;
  for (size_t q = 0; q < queries.size(); q += 9) {
    auto a = full->Search(queries[q], {.k = 5}, ctx);
    ASSERT_TRUE(a.has_value());
    for (const auto& n : *a) {
      const float exact = k.l2sq(queries.row(q), base.row(n.id), kDim);
      EXPECT_NEAR(n.distance, exact, 1e-5 * exact);  // summation order only
    }
    auto b = half->Search(queries[q], {.k = 5}, ctx);
    ASSERT_TRUE(b.has_value());
    for (const auto& n : *b) {
      const float exact = k.l2sq(queries.row(q), base.row(n.id), kDim);
      EXPECT_NEAR(n.distance, exact, 1e-2 * exact) << "query " << q << " id " << n.id;
    }
  }
  EXPECT_NEAR(RecallVsFlat(*half, Metric::kL2, 32), RecallVsFlat(*full, Metric::kL2, 32), 0.02);
}

TEST_F(SpannTest, LayoutMatchesFormatDoc) {
  const fs::path post = Dir(Metric::kL2) / "postings.spann";
  auto meta = SectionEntry(post, "META");
  auto pst = SectionEntry(post, "POST");
  EXPECT_EQ(meta.size, 64u);
  EXPECT_EQ(pst.offset % 4096, 0u);
  auto dir = ReadDirectory(post);
  auto idx = OpenOrDie(Dir(Metric::kL2));
  ASSERT_NE(idx, nullptr);
  ASSERT_EQ(dir.size(), idx->Stats().num_lists);
  std::vector<char> bytes = ReadAll(post);
  ASSERT_TRUE(idx->Stats().half_lists);  // the default
  const size_t entry = 4 + kDim * 2;     // id + half-precision vector
  uint64_t expect_offset = 0, total = 0;
  for (size_t l = 0; l < dir.size(); ++l) {
    const DirRecord& d = dir[l];
    EXPECT_EQ(d.offset, expect_offset) << "list " << l;
    EXPECT_EQ(d.bytes % 4096, 0u);
    EXPECT_GE(d.bytes, d.count * entry);
    auto span = std::span<const std::byte>(
        reinterpret_cast<const std::byte*>(bytes.data() + pst.offset + d.offset), d.bytes);
    EXPECT_EQ(storage::SectionChecksum(span), d.checksum) << "list " << l;
    // Ids first, all in range; zero padding at the end.
    const auto* ids = reinterpret_cast<const uint32_t*>(span.data());
    for (uint32_t j = 0; j < d.count; ++j) EXPECT_LT(ids[j], kN);
    for (size_t b = d.count * entry; b < d.bytes; ++b) {
      if (span[b] != std::byte{0}) {
        ADD_FAILURE() << "list " << l << " padding byte " << b << " is not zero";
        break;
      }
    }
    expect_offset += d.bytes;
    total += d.count;
  }
  EXPECT_EQ(expect_offset, pst.size);
  EXPECT_EQ(total, idx->Stats().total_entries);
}

// ---------------------------------------------------------------------------
// Corruption

TEST_F(SpannTest, CorruptPostingListIsReportedNotScored) {
  fs::path dir = CopyOfL2();
  const fs::path post = dir / "postings.spann";
  auto pst = SectionEntry(post, "POST");
  auto ldir = ReadDirectory(post);
  ASSERT_FALSE(ldir.empty());
  // Damage the first id of a list in the middle of the file: the list it belongs to.
  const size_t victim = ldir.size() / 2;
  ASSERT_GT(ldir[victim].count, 0u);
  std::vector<char> bytes = ReadAll(post);
  const uint64_t at = pst.offset + ldir[victim].offset + 2;  // high bytes of the first id
  std::vector<uint32_t> members(ldir[victim].count);
  std::memcpy(members.data(), bytes.data() + pst.offset + ldir[victim].offset,
              members.size() * 4);
  bytes[at] = char(bytes[at] ^ 0x5a);
  WriteAll(post, bytes);

  auto idx = OpenOrDie(dir);  // POST is not verified at open
  ASSERT_NE(idx, nullptr);
  VectorSet base = Base();
  VectorSet queries = Queries();
  std::vector<const float*> qs;
  for (uint32_t id : members) qs.push_back(base.row(id));  // these reach the damaged list
  for (size_t q = 0; q < queries.size(); ++q) qs.push_back(queries.row(q));

  SpannContext ctx;
  SpannSearchParams p;
  p.k = 10;
  p.max_lists = 256;
  p.prune_epsilon = 1e9;
  size_t failures = 0;
  const std::string want = "posting list " + std::to_string(victim) + " ";
  for (const float* q : qs) {
    auto r = idx->Search(VectorView(q, kDim), p, ctx);
    if (!r) {
      ++failures;
      EXPECT_EQ(r.error().code(), StatusCode::kCorruption) << r.error().ToString();
      EXPECT_NE(r.error().message().find(want), std::string::npos) << r.error().ToString();
      EXPECT_NE(r.error().message().find("postings.spann"), std::string::npos)
          << r.error().ToString();
      continue;
    }
    for (const auto& n : *r) EXPECT_LT(n.id, kN) << "garbage id from a corrupt list";
  }
  EXPECT_GT(failures, 0u) << "no search read the damaged list " << victim;
}

TEST_F(SpannTest, CorruptPostingPaddingIsDetected) {
  // The checksum covers the whole padded list, so damage in the padding is caught too.
  fs::path dir = CopyOfL2();
  const fs::path post = dir / "postings.spann";
  auto pst = SectionEntry(post, "POST");
  auto ldir = ReadDirectory(post);
  const DirRecord& d = ldir[0];
  const uint64_t used = d.count * (4 + kDim * 2);  // half-precision lists
  ASSERT_LT(used, d.bytes);
  std::vector<char> bytes = ReadAll(post);
  bytes[pst.offset + d.offset + d.bytes - 1] ^= 1;
  WriteAll(post, bytes);
  auto idx = OpenOrDie(dir);
  ASSERT_NE(idx, nullptr);
  VectorSet base = Base();
  uint32_t member;
  std::memcpy(&member, bytes.data() + pst.offset + d.offset, 4);
  SpannContext ctx;
  auto r = idx->Search(base[member], {.k = 10, .max_lists = 256, .prune_epsilon = 1e9}, ctx);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kCorruption);
  EXPECT_NE(r.error().message().find("posting list 0 "), std::string::npos)
      << r.error().ToString();
}

TEST_F(SpannTest, RewriteHelperKeepsAValidFile) {
  fs::path dir = CopyOfL2();
  RewriteConsistently(dir / "postings.spann", [](std::vector<DirRecord>&, std::byte*) {});
  EXPECT_NE(OpenOrDie(dir), nullptr);
}

TEST_F(SpannTest, DirectoryEntryPastPostIsRefused) {
  // An offset so large that offset + bytes wraps around 2^64 must not pass the bounds check.
  for (uint64_t offset : {~uint64_t(0) - 4095, uint64_t(1) << 62}) {
    fs::path dir = CopyOfL2();
    RewriteConsistently(dir / "postings.spann", [&](std::vector<DirRecord>& d, std::byte*) {
      d[1].offset = offset;
      d[1].bytes = 4096;
      d[1].count = 1;
    });
    auto idx = SpannIndex::Open(dir);
    ASSERT_FALSE(idx.has_value()) << "accepted list offset " << offset;
    EXPECT_EQ(idx.error().code(), StatusCode::kCorruption) << idx.error().ToString();
    EXPECT_NE(idx.error().message().find("list 1 "), std::string::npos) << idx.error().ToString();
  }
}

TEST_F(SpannTest, OutOfRangeIdWithValidChecksumIsCorruption) {
  // A list whose bytes pass the checksum but hold an id beyond n is still refused, not scored.
  fs::path dir = CopyOfL2();
  const size_t victim = 3;
  std::vector<uint32_t> members;
  RewriteConsistently(dir / "postings.spann", [&](std::vector<DirRecord>& d, std::byte* post) {
    auto* ids = reinterpret_cast<uint32_t*>(post + d[victim].offset);
    members.assign(ids, ids + d[victim].count);
    ids[0] = uint32_t(kN + 7);
    d[victim].checksum =
        storage::SectionChecksum(std::span<const std::byte>(post + d[victim].offset, d[victim].bytes));
  });
  ASSERT_FALSE(members.empty());
  auto idx = OpenOrDie(dir);
  ASSERT_NE(idx, nullptr);
  VectorSet base = Base();
  SpannContext ctx;
  size_t failures = 0;
  for (uint32_t m : members) {
    auto r = idx->Search(base[m], {.k = 10, .max_lists = 256, .prune_epsilon = 1e9}, ctx);
    if (!r) {
      ++failures;
      EXPECT_EQ(r.error().code(), StatusCode::kCorruption) << r.error().ToString();
      EXPECT_NE(r.error().message().find("posting list 3 "), std::string::npos)
          << r.error().ToString();
      continue;
    }
    for (const auto& n : *r) EXPECT_LT(n.id, kN);
  }
  EXPECT_GT(failures, 0u);
}

void ExpectOpenCorruptionAfterFlip(const fs::path& dir, const char (&tag)[5]) {
  const fs::path post = dir / "postings.spann";
  auto e = SectionEntry(post, tag);
  ASSERT_GT(e.size, 0u);
  std::vector<char> bytes = ReadAll(post);
  bytes[e.offset + e.size / 2] ^= 0x10;
  WriteAll(post, bytes);
  auto idx = SpannIndex::Open(dir);
  ASSERT_FALSE(idx.has_value()) << "opened with a damaged " << tag;
  EXPECT_EQ(idx.error().code(), StatusCode::kCorruption) << idx.error().ToString();
  EXPECT_NE(idx.error().message().find("postings.spann"), std::string::npos)
      << idx.error().ToString();
}

TEST_F(SpannTest, CorruptMetaFailsOpen) { ExpectOpenCorruptionAfterFlip(CopyOfL2(), "META"); }

TEST_F(SpannTest, CorruptDirectoryFailsOpen) { ExpectOpenCorruptionAfterFlip(CopyOfL2(), "LDIR"); }

TEST_F(SpannTest, TruncatedPostingsFailOpen) {
  const auto size = fs::file_size(Dir(Metric::kL2) / "postings.spann");
  for (uintmax_t keep : {uintmax_t(0), uintmax_t(10), uintmax_t(4096), size / 2, size - 1}) {
    fs::path dir = CopyOfL2();
    fs::resize_file(dir / "postings.spann", keep);
    auto idx = SpannIndex::Open(dir);
    ASSERT_FALSE(idx.has_value()) << "opened a postings file cut to " << keep << " bytes";
    EXPECT_NE(idx.error().message().find("postings.spann"), std::string::npos)
        << idx.error().ToString();
  }
}

TEST_F(SpannTest, MissingFilesFailOpen) {
  fs::path dir = CopyOfL2();
  fs::remove(dir / "heads.hnsw");
  auto idx = SpannIndex::Open(dir);
  ASSERT_FALSE(idx.has_value());
  EXPECT_NE(idx.error().message().find("heads.hnsw"), std::string::npos) << idx.error().ToString();

  dir = CopyOfL2();
  fs::remove(dir / "postings.spann");
  idx = SpannIndex::Open(dir);
  ASSERT_FALSE(idx.has_value());
  EXPECT_NE(idx.error().message().find("postings.spann"), std::string::npos)
      << idx.error().ToString();

  idx = SpannIndex::Open(TestDir() / "nowhere");
  ASSERT_FALSE(idx.has_value());
}

TEST_F(SpannTest, HeadsFromAnotherIndexFailOpen) {
  // heads.hnsw of a different build (another dimension) does not match the posting file.
  fs::path dir = CopyOfL2();
  fs::path other = dir.parent_path() / "other";
  Status s = SpannIndex::Build(Clustered(300, 8, 3), other, BuildOptions(Metric::kL2));
  ASSERT_TRUE(s.ok()) << s.ToString();
  fs::copy_file(other / "heads.hnsw", dir / "heads.hnsw", fs::copy_options::overwrite_existing);
  auto idx = SpannIndex::Open(dir);
  ASSERT_FALSE(idx.has_value());
  EXPECT_EQ(idx.error().code(), StatusCode::kCorruption) << idx.error().ToString();
  EXPECT_NE(idx.error().message().find("heads.hnsw"), std::string::npos) << idx.error().ToString();
}

TEST_F(SpannTest, BuildLeavesNoTemporaryDirectory) {
  fs::path dir = TestDir();
  Status s = SpannIndex::Build(Clustered(300, 8, 3), dir / "idx", BuildOptions(Metric::kL2));
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"idx"});
  names.clear();
  for (const auto& e : fs::directory_iterator(dir / "idx")) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"heads.hnsw", "postings.spann"}));
}

// ---------------------------------------------------------------------------
// Codes (issue 18): SQ8 codes in the lists, reranks from the FULL section or the lists

// Rewrites one section's bytes through `edit` and recomputes that section's checksum and the
// table's, so that only SpannIndex's own checks stand in the way.
template <typename Edit>
void RewriteSection(const fs::path& post, const char (&tag)[5], Edit edit) {
  std::vector<char> bytes = ReadAll(post);
  uint64_t table_offset;
  uint32_t count;
  std::memcpy(&table_offset, bytes.data() + 16, 8);
  std::memcpy(&count, bytes.data() + 24, 4);
  auto e = SectionEntry(post, tag);
  edit(reinterpret_cast<std::byte*>(bytes.data() + e.offset), e.size);
  auto checksum = [&](uint64_t off, uint64_t size) {
    return storage::SectionChecksum(
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data() + off), size));
  };
  for (uint32_t i = 0; i < count; ++i) {
    char* t = bytes.data() + table_offset + 32 * i;
    uint32_t got;
    std::memcpy(&got, t, 4);
    if (got != storage::SectionTag(tag)) continue;
    const uint64_t c = checksum(e.offset, e.size);
    std::memcpy(t + 24, &c, 8);
  }
  const uint64_t tc = checksum(table_offset, uint64_t(count) * 32);
  std::memcpy(bytes.data() + table_offset + uint64_t(count) * 32, &tc, 8);
  WriteAll(post, bytes);
}

// The section file header's minor version, rewritten with its checksum (section_file.md).
void SetMinorVersion(const fs::path& post, uint16_t minor) {
  std::vector<char> bytes = ReadAll(post);
  std::memcpy(bytes.data() + 10, &minor, 2);
  const uint64_t c = storage::SectionChecksum(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), 56));
  std::memcpy(bytes.data() + 56, &c, 8);
  WriteAll(post, bytes);
}

class SpannCodesTest : public SpannTest {
 protected:
  static void SetUpTestSuite() {
    SpannTest::SetUpTestSuite();
    for (Metric m : {Metric::kL2, Metric::kCosine}) {
      for (SpannRerankFrom from : {SpannRerankFrom::kFile, SpannRerankFrom::kList}) {
        SpannBuildOptions o = BuildOptions(m);
        o.codes = CodesKind::kSq8;
        o.rerank_from = from;
        Status s = SpannIndex::Build(Base(), CodesDir(m, from), o);
        ASSERT_TRUE(s.ok()) << s.ToString();
      }
    }
  }
  static fs::path CodesDir(Metric m, SpannRerankFrom from) {
    return *root_ / fmt::format("sq8_{}_{}", m == Metric::kL2 ? "l2" : "cosine",
                                SpannRerankFromName(from));
  }
  static fs::path CopyOf(const fs::path& src) {
    fs::path dst = TestDir() / "index";
    fs::copy(src, dst, fs::copy_options::recursive);
    return dst;
  }
};

TEST_F(SpannCodesTest, RecallCloseToFullVectorLists) {
  for (Metric m : {Metric::kL2, Metric::kCosine}) {
    auto plain = OpenOrDie(Dir(m));
    ASSERT_NE(plain, nullptr);
    const double want = RecallVsFlat(*plain, m, 64);
    for (SpannRerankFrom from : {SpannRerankFrom::kFile, SpannRerankFrom::kList}) {
      auto idx = OpenOrDie(CodesDir(m, from));
      ASSERT_NE(idx, nullptr);
      const double got = RecallVsFlat(*idx, m, 64);
      EXPECT_GE(got, 0.9) << MetricName(m) << " " << SpannRerankFromName(from);
      EXPECT_GE(got, want - 0.01) << MetricName(m) << " " << SpannRerankFromName(from);
    }
  }
}

TEST_F(SpannCodesTest, RerankFromFileGivesExactDistances) {
  // Reranks score float32 vectors: the distances are flat search's, to float rounding.
  for (Metric m : {Metric::kL2, Metric::kCosine}) {
    auto idx = OpenOrDie(CodesDir(m, SpannRerankFrom::kFile));
    ASSERT_NE(idx, nullptr);
    auto flat = *FlatIndex::Build(Base(), m);
    VectorSet queries = Queries();
    SpannContext ctx;
    SearchContext fctx;
    for (size_t q = 0; q < queries.size(); q += 7) {
      auto got = idx->Search(queries[q], {.k = 10, .max_lists = 64}, ctx);
      ASSERT_TRUE(got.has_value()) << got.error().ToString();
      auto want = flat->Search(queries[q], {.k = kN}, fctx);
      ASSERT_TRUE(want.has_value());
      for (const auto& n : *got) {
        const auto it = std::find_if(want->begin(), want->end(),
                                     [&](const Neighbor& w) { return w.id == n.id; });
        ASSERT_NE(it, want->end());
        EXPECT_NEAR(n.distance, it->distance, 1e-4f * std::max(1.0f, std::fabs(it->distance)))
            << MetricName(m) << " query " << q << " id " << n.id;
      }
    }
  }
}

TEST_F(SpannCodesTest, OwnVectorFoundAtDistanceZero) {
  auto idx = OpenOrDie(CodesDir(Metric::kL2, SpannRerankFrom::kFile));
  ASSERT_NE(idx, nullptr);
  VectorSet base = Base();
  SpannContext ctx;
  for (size_t i = 0; i < kN; i += 97) {
    auto r = idx->Search(base[i], {.k = 1}, ctx);
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    ASSERT_EQ(r->size(), 1u);
    EXPECT_EQ((*r)[0].id, i);
    EXPECT_NEAR((*r)[0].distance, 0.0f, 1e-4f);
  }
}

TEST_F(SpannCodesTest, DeeperRerankNeverLosesRecallAndCountsReads) {
  auto idx = OpenOrDie(CodesDir(Metric::kL2, SpannRerankFrom::kFile));
  ASSERT_NE(idx, nullptr);
  const SpannStats st = idx->Stats();
  ASSERT_GT(st.full_section_bytes, 0u);
  const uint64_t slot = st.full_section_bytes / st.num_vectors;
  VectorSet queries = Queries();
  SpannContext ctx;
  double shallow = 0, deep = 0;
  auto flat = *FlatIndex::Build(Base(), Metric::kL2);
  SearchContext fctx;
  for (size_t q = 0; q < queries.size(); ++q) {
    auto want = flat->Search(queries[q], {.k = 10}, fctx);
    ASSERT_TRUE(want.has_value());
    std::unordered_set<VectorId> w;
    for (const auto& n : *want) w.insert(n.id);
    for (uint32_t depth : {10u, 100u}) {
      SpannQueryStats qs;
      auto r = idx->Search(queries[q], {.k = 10, .max_lists = 64, .rerank = depth}, ctx, &qs);
      ASSERT_TRUE(r.has_value()) << r.error().ToString();
      EXPECT_LE(qs.reranked, depth);
      EXPECT_GE(qs.reranked, r->size());
      // One read of a slot per candidate, rounded to the file's O_DIRECT alignment.
      EXPECT_GE(qs.rerank_bytes_read, uint64_t(qs.reranked) * slot);
      EXPECT_LE(qs.rerank_bytes_read, uint64_t(qs.reranked) * (slot + 2 * 4096));
      EXPECT_GE(qs.bytes_read, qs.rerank_bytes_read + uint64_t(qs.lists_read) * 512);
      size_t hit = 0;
      for (const auto& n : *r) hit += w.count(n.id);
      (depth == 10 ? shallow : deep) += double(hit);
    }
  }
  EXPECT_GE(deep, shallow);
}

TEST_F(SpannCodesTest, BackendsAndDirectBufferedAgree) {
  const fs::path dir = CodesDir(Metric::kL2, SpannRerankFrom::kFile);
  auto a = OpenOrDie(dir, {.backend = storage::IoBackend::kPread, .direct = true});
  auto b = OpenOrDie(dir, {.backend = storage::IoBackend::kAuto, .direct = false});
  auto c = OpenOrDie(dir, {.backend = storage::IoBackend::kAuto, .direct = true});
  // As on a device with 4 KiB blocks: 512-byte lists and slots are read with their neighbours.
  auto d = OpenOrDie(dir, {.backend = storage::IoBackend::kAuto, .direct = true,
                           .min_read_alignment = 4096});
  ASSERT_TRUE(a && b && c && d);
  VectorSet queries = Queries();
  SpannContext ca, cb, cc, cd;
  for (size_t q = 0; q < queries.size(); ++q) {
    auto ra = a->Search(queries[q], {.k = 10, .max_lists = 32}, ca);
    auto rb = b->Search(queries[q], {.k = 10, .max_lists = 32}, cb);
    auto rc = c->Search(queries[q], {.k = 10, .max_lists = 32}, cc);
    SpannQueryStats sd;
    auto rd = d->Search(queries[q], {.k = 10, .max_lists = 32}, cd, &sd);
    ASSERT_TRUE(ra && rb && rc && rd);
    EXPECT_EQ(*ra, *rb) << "query " << q;
    EXPECT_EQ(*ra, *rc) << "query " << q;
    EXPECT_EQ(*ra, *rd) << "query " << q;
    if (d->direct_io()) {
      EXPECT_EQ(sd.bytes_read % 4096, 0u);
    }
  }
}

// Lists near each other in the file share a read (SpannSearchParams::merge_reads): the
// answers are those of one read per list, with fewer reads; with a gap the bytes between
// lists are read too.
TEST_F(SpannCodesTest, MergedListReadsGiveTheSameAnswersWithFewerReads) {
  for (const fs::path& dir : {CodesDir(Metric::kL2, SpannRerankFrom::kFile), Dir(Metric::kL2)}) {
    for (size_t align : {size_t(0), size_t(4096)}) {
      auto idx = OpenOrDie(dir, {.min_read_alignment = align});
      ASSERT_NE(idx, nullptr);
      VectorSet queries = Queries();
      SpannContext c1, c2, c3;
      uint64_t reads_one = 0, reads_merged = 0, reads_gap = 0, lists = 0;
      for (size_t q = 0; q < queries.size(); ++q) {
        SpannSearchParams p{.k = 10, .max_lists = 48, .prune_epsilon = 1e9};
        p.merge_reads = false;
        SpannQueryStats s1, s2, s3;
        auto one = idx->Search(queries[q], p, c1, &s1);
        p.merge_reads = true;
        p.merge_gap = 0;
        auto merged = idx->Search(queries[q], p, c2, &s2);
        p.merge_gap = 64 * 1024;
        auto gap = idx->Search(queries[q], p, c3, &s3);
        ASSERT_TRUE(one && merged && gap) << dir;
        EXPECT_EQ(*one, *merged) << dir << " query " << q;
        EXPECT_EQ(*one, *gap) << dir << " query " << q;
        EXPECT_EQ(s1.list_reads, s1.lists_read);
        EXPECT_EQ(s2.lists_read, s1.lists_read);
        EXPECT_LE(s2.list_reads, s1.list_reads);
        EXPECT_LE(s3.list_reads, s2.list_reads);
        EXPECT_GE(s2.list_reads, 1u);
        // A gap of 0 reads the union of the lists' blocks: no byte between lists, and a block
        // that two lists share (512-byte lists, 4 KiB reads) once instead of twice.
        EXPECT_LE(s2.bytes_read, s1.bytes_read);
        if (align == 0 && dir != Dir(Metric::kL2)) {
          EXPECT_EQ(s2.bytes_read, s1.bytes_read);
        }
        EXPECT_GE(s3.bytes_read, s2.bytes_read);
        EXPECT_EQ(s1.entries_scored, s2.entries_scored);
        EXPECT_EQ(s1.entries_scored, s3.entries_scored);
        reads_one += s1.list_reads;
        reads_merged += s2.list_reads;
        reads_gap += s3.list_reads;
        lists += s1.lists_read;
      }
      // 48 of the index's lists per query, siblings of the clustering stored side by side:
      // some of them touch, and a 64 KiB gap joins most.
      EXPECT_LT(reads_merged, reads_one) << dir << " alignment " << align;
      EXPECT_LT(reads_gap, reads_merged) << dir << " alignment " << align;
      EXPECT_EQ(reads_one, lists);
    }
  }
}

TEST_F(SpannCodesTest, StatsDescribeTheCodes) {
  auto file = OpenOrDie(CodesDir(Metric::kL2, SpannRerankFrom::kFile));
  auto list = OpenOrDie(CodesDir(Metric::kL2, SpannRerankFrom::kList));
  auto plain = OpenOrDie(Dir(Metric::kL2));
  ASSERT_TRUE(file && list && plain);
  const SpannStats f = file->Stats(), l = list->Stats(), p = plain->Stats();
  EXPECT_EQ(f.codes, CodesKind::kSq8);
  EXPECT_FALSE(f.full_in_lists);
  EXPECT_FALSE(f.half_lists);
  EXPECT_EQ(f.list_entry_bytes, 4 + 4 + kDim);  // id, decoded norm, code
  EXPECT_EQ(f.full_section_bytes, kN * 512u);   // 32 floats + id + checksum fit one 512-byte slot
  EXPECT_EQ(l.codes, CodesKind::kSq8);
  EXPECT_TRUE(l.full_in_lists);
  EXPECT_EQ(l.full_section_bytes, 0u);
  EXPECT_EQ(l.list_entry_bytes, 4 + 4 + kDim + 2 * kDim);  // and a half-precision vector
  EXPECT_EQ(p.codes, CodesKind::kNone);
  EXPECT_EQ(p.list_entry_bytes, 4 + 2 * kDim);
  EXPECT_EQ(p.list_alignment, 4096u);
  EXPECT_EQ(f.list_alignment, 512u);  // codes: lists packed on 512-byte boundaries
  // The same lists: the codes change what an entry holds, not the clustering (replication
  // follows the heads' HNSW, built on two threads, so it may differ by a few entries).
  EXPECT_EQ(f.num_lists, p.num_lists);
  EXPECT_NEAR(double(f.total_entries), double(p.total_entries), 0.01 * double(p.total_entries));
}

TEST_F(SpannCodesTest, LayoutMatchesFormatDoc) {
  const fs::path post = CodesDir(Metric::kL2, SpannRerankFrom::kFile) / "postings.spann";
  auto sf = storage::SectionFile::Open(post, "STRSPAN", 1);
  ASSERT_TRUE(sf.has_value()) << sf.error().ToString();
  EXPECT_EQ(sf->minor(), 3);
  // META bytes 56..59 as the format doc's table has them: codes, full, list_align, exact_codes.
  auto meta = sf->Section(storage::SectionTag("META"));
  ASSERT_TRUE(meta.has_value());
  ASSERT_EQ(meta->size(), 64u);
  EXPECT_EQ(uint8_t((*meta)[56]), 1);  // SQ8
  EXPECT_EQ(uint8_t((*meta)[57]), 1);  // FULL present
  EXPECT_EQ(uint8_t((*meta)[58]), 9);  // lists on 512-byte boundaries
  EXPECT_EQ(uint8_t((*meta)[59]), 0);  // float data: codes not exact
  auto sq8 = sf->Section(storage::SectionTag("SQ8P"));
  ASSERT_TRUE(sq8.has_value());
  EXPECT_EQ(sq8->size(), 2 * kDim * sizeof(float));
  auto full = SectionEntry(post, "FULL");
  EXPECT_EQ(full.offset % 4096, 0u);
  // Slot i: vector i (float32), the id, zeros, the checksum of everything before it.
  std::vector<char> bytes = ReadAll(post);
  VectorSet base = Base();
  for (size_t i : {size_t(0), size_t(1), kN - 1}) {
    const char* slot = bytes.data() + full.offset + i * 512;
    EXPECT_EQ(std::memcmp(slot, base.row(i), kDim * sizeof(float)), 0) << i;
    uint32_t id;
    std::memcpy(&id, slot + kDim * sizeof(float), 4);
    EXPECT_EQ(id, i);
    uint64_t sum;
    std::memcpy(&sum, slot + 504, 8);
    EXPECT_EQ(sum, storage::SectionChecksum(std::span<const std::byte>(
                       reinterpret_cast<const std::byte*>(slot), 504)));
  }
  // A list: ids, decoded norms, codes, padding to 512 bytes; lists follow one another.
  auto ldir = ReadDirectory(post);
  auto pst = SectionEntry(post, "POST");
  uint64_t expect_offset = 0;
  for (const auto& d : ldir) {
    EXPECT_EQ(d.offset, expect_offset);
    EXPECT_EQ(d.bytes % 512, 0u);
    EXPECT_EQ(d.bytes, std::max<uint64_t>(512, (uint64_t(d.count) * (8 + kDim) + 511) / 512 * 512));
    expect_offset += d.bytes;
  }
  auto idx = OpenOrDie(post.parent_path());
  ASSERT_NE(idx, nullptr);
  for (const auto& d : ldir) {
    if (d.count == 0) continue;
    EXPECT_LE(uint64_t(d.count) * (4 + 4 + kDim), d.bytes);
    uint32_t first_id;
    std::memcpy(&first_id, bytes.data() + pst.offset + d.offset, 4);
    EXPECT_LT(first_id, kN);
    float norm;
    std::memcpy(&norm, bytes.data() + pst.offset + d.offset + 4 * d.count, 4);
    float want = 0;
    for (size_t j = 0; j < kDim; ++j) want += base.row(first_id)[j] * base.row(first_id)[j];
    EXPECT_NEAR(norm, want, 0.02f * std::max(1.0f, want)) << "decoded norm of id " << first_id;
    break;
  }
}

TEST_F(SpannCodesTest, CorruptFullVectorIsReportedNotScored) {
  fs::path dir = CopyOf(CodesDir(Metric::kL2, SpannRerankFrom::kFile));
  const fs::path post = dir / "postings.spann";
  auto full = SectionEntry(post, "FULL");
  const size_t victim = 1234;
  std::vector<char> bytes = ReadAll(post);
  bytes[full.offset + victim * 512 + 5] ^= 0x21;  // inside the vector
  WriteAll(post, bytes);
  auto idx = OpenOrDie(dir);  // slots are verified on every read, not at open
  ASSERT_NE(idx, nullptr);
  VectorSet base = Base();
  SpannContext ctx;
  auto r = idx->Search(base[victim], {.k = 10}, ctx);
  ASSERT_FALSE(r.has_value()) << "scored a damaged full vector";
  EXPECT_EQ(r.error().code(), StatusCode::kCorruption) << r.error().ToString();
  EXPECT_NE(r.error().message().find("postings.spann"), std::string::npos) << r.error().ToString();
  EXPECT_NE(r.error().message().find("id 1234 "), std::string::npos) << r.error().ToString();
  // A query that does not rerank the damaged vector still answers.
  auto other = idx->Search(base[0], {.k = 10}, ctx);
  EXPECT_TRUE(other.has_value()) << other.error().ToString();
}

TEST_F(SpannCodesTest, SlotOfAnotherIdIsCorruption) {
  // A slot with a valid checksum in the wrong place (a writer's bug) is caught by its id.
  fs::path dir = CopyOf(CodesDir(Metric::kL2, SpannRerankFrom::kFile));
  const fs::path post = dir / "postings.spann";
  RewriteSection(post, "FULL", [](std::byte* p, uint64_t) {
    std::vector<std::byte> a(p + 7 * 512, p + 8 * 512);
    std::memcpy(p + 7 * 512, p + 8 * 512, 512);
    std::memcpy(p + 8 * 512, a.data(), 512);
  });
  auto idx = OpenOrDie(dir);
  ASSERT_NE(idx, nullptr);
  VectorSet base = Base();
  SpannContext ctx;
  auto r = idx->Search(base[7], {.k = 10}, ctx);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kCorruption) << r.error().ToString();
}

TEST_F(SpannCodesTest, DamagedCodeSectionsFailOpen) {
  ExpectOpenCorruptionAfterFlip(CopyOf(CodesDir(Metric::kL2, SpannRerankFrom::kFile)), "SQ8P");
  ExpectOpenCorruptionAfterFlip(CopyOf(CodesDir(Metric::kL2, SpannRerankFrom::kFile)), "META");
}

TEST_F(SpannCodesTest, InconsistentMetaFailsOpen) {
  // Checksums intact, fields wrong: unknown codes, codes without any full vectors, a FULL
  // section cut short, SQ8 parameters that are not finite.
  struct Case {
    const char* what;
    const char* tag;
    std::function<void(std::byte*, uint64_t)> edit;
  };
  const std::vector<Case> cases = {
      {"codes 7", "META", [](std::byte* m, uint64_t) { m[56] = std::byte{7}; }},
      {"full 0", "META", [](std::byte* m, uint64_t) { m[57] = std::byte{0}; }},
      {"exact codes beside a FULL section", "META", [](std::byte* m, uint64_t) { m[59] = std::byte{1}; }},
      {"exact_codes 2", "META", [](std::byte* m, uint64_t) { m[59] = std::byte{2}; }},
      {"encoding 9", "META", [](std::byte* m, uint64_t) { m[36] = std::byte{9}; }},
      {"scale NaN", "SQ8P",
       [](std::byte* p, uint64_t size) {
         const float nan = std::numeric_limits<float>::quiet_NaN();
         std::memcpy(p + size - 4, &nan, 4);
       }},
  };
  for (const Case& c : cases) {
    fs::path dir = CopyOf(CodesDir(Metric::kL2, SpannRerankFrom::kFile));
    if (std::string(c.tag) == "META") RewriteSection(dir / "postings.spann", "META", c.edit);
    else RewriteSection(dir / "postings.spann", "SQ8P", c.edit);
    auto idx = SpannIndex::Open(dir);
    ASSERT_FALSE(idx.has_value()) << c.what;
    EXPECT_EQ(idx.error().code(), StatusCode::kCorruption) << c.what << ": " << idx.error().ToString();
    EXPECT_NE(idx.error().message().find("postings.spann"), std::string::npos)
        << c.what << ": " << idx.error().ToString();
    fs::remove_all(dir);
  }
}

// Integer vectors (uint8 pixels, int8 embeddings) have codes that are the vectors themselves:
// the build keeps no other copy, and the search still returns exact distances.
VectorSet IntegerBase(size_t n, uint32_t seed) {
  VectorSet v = Clustered(n, kDim, seed);
  for (size_t i = 0; i < n; ++i) {
    float* r = v.mutable_row(i);
    // + 0.0f: nearbyint rounds a small negative to -0.0, which uint8 data never hold.
    for (size_t d = 0; d < kDim; ++d) r[d] = std::clamp(std::nearbyint(r[d] * 20.0f + 128.0f), 0.0f, 255.0f) + 0.0f;
  }
  return v;
}

TEST_F(SpannCodesTest, IntegerVectorsAreKeptOnlyAsTheirExactCodes) {
  const VectorSet base = IntegerBase(kN, 1), queries = IntegerBase(kQueries, 2);
  auto flat = *FlatIndex::Build(*base.Clone(), Metric::kL2);
  for (SpannRerankFrom from : {SpannRerankFrom::kFile, SpannRerankFrom::kList}) {
    const fs::path dir = TestDir() / fmt::format("exact_{}", SpannRerankFromName(from));
    SpannBuildOptions o = BuildOptions(Metric::kL2);
    o.codes = CodesKind::kSq8;
    o.rerank_from = from;
    ASSERT_TRUE(SpannIndex::Build(*base.Clone(), dir, o).ok());
    auto idx = OpenOrDie(dir);
    ASSERT_NE(idx, nullptr);
    const SpannStats st = idx->Stats();
    EXPECT_TRUE(st.exact_codes) << SpannRerankFromName(from);
    EXPECT_EQ(st.full_section_bytes, 0u);
    EXPECT_FALSE(st.full_in_lists);  // even when asked to rerank from the lists
    EXPECT_EQ(st.list_entry_bytes, 4u + 4u + kDim);
    auto sf = storage::SectionFile::Open(dir / "postings.spann", "STRSPAN", 1);
    ASSERT_TRUE(sf.has_value());
    EXPECT_EQ(sf->minor(), 3);
    for (const auto& e : sf->entries()) EXPECT_NE(e.tag, storage::SectionTag("FULL"));

    // Every list read (max_lists = all): the answers are flat search's, distances included.
    SpannContext ctx;
    SearchContext fctx;
    for (size_t q = 0; q < queries.size(); q += 3) {
      SpannQueryStats qs;
      auto got = idx->Search(queries[q], {.k = 10, .max_lists = 100000, .prune_epsilon = 1e9}, ctx, &qs);
      ASSERT_TRUE(got.has_value()) << got.error().ToString();
      auto want = flat->Search(queries[q], {.k = 10}, fctx);
      ASSERT_TRUE(want.has_value());
      ASSERT_EQ(got->size(), want->size());
      for (size_t i = 0; i < got->size(); ++i) {
        EXPECT_FLOAT_EQ((*got)[i].distance, (*want)[i].distance) << "query " << q << " rank " << i;
      }
      EXPECT_EQ(qs.rerank_bytes_read, 0u);  // no second round of reads
      EXPECT_GT(qs.reranked, 0u);
    }
  }
  // Normalized (cosine) vectors are not integers: their codes are not exact, FULL stays.
  const fs::path cos = TestDir() / "not_exact_cosine";
  SpannBuildOptions o = BuildOptions(Metric::kCosine);
  o.codes = CodesKind::kSq8;
  ASSERT_TRUE(SpannIndex::Build(*base.Clone(), cos, o).ok());
  auto idx = OpenOrDie(cos);
  ASSERT_NE(idx, nullptr);
  EXPECT_FALSE(idx->Stats().exact_codes);
  EXPECT_GT(idx->Stats().full_section_bytes, 0u);
}

TEST_F(SpannCodesTest, Version11FilesStillOpen) {
  // A 1.2 writer without codes writes a 1.1 file's bytes with minor 2; set the minor back
  // to 1 (and to 0, whose META.encoding was reserved and zero: float32 lists).
  fs::path dir = CopyOfL2();
  SetMinorVersion(dir / "postings.spann", 1);
  auto idx = OpenOrDie(dir);
  ASSERT_NE(idx, nullptr);
  EXPECT_EQ(idx->Stats().codes, CodesKind::kNone);
  EXPECT_GE(RecallVsFlat(*idx, Metric::kL2, 64), 0.9);

  fs::path dir10 = TestDir() / "v10";
  SpannBuildOptions o = BuildOptions(Metric::kL2);
  o.half_lists = false;
  ASSERT_TRUE(SpannIndex::Build(Base(), dir10, o).ok());
  SetMinorVersion(dir10 / "postings.spann", 0);
  auto idx10 = OpenOrDie(dir10);
  ASSERT_NE(idx10, nullptr);
  EXPECT_FALSE(idx10->Stats().half_lists);
  EXPECT_GE(RecallVsFlat(*idx10, Metric::kL2, 64), 0.9);
}

TEST_F(SpannCodesTest, LabelsAreTheIdsOfTheFullSection) {
  // With labels (the engine's held-out rows) FULL has one slot per id below the bound, and
  // reranks find each labelled vector in its own slot.
  const size_t n = 1000;
  VectorSet base = Clustered(n, kDim, 5);
  std::vector<uint32_t> labels(n);
  for (size_t i = 0; i < n; ++i) labels[i] = uint32_t(3 * i + 2);
  SpannBuildOptions o = BuildOptions(Metric::kL2);
  o.codes = CodesKind::kSq8;
  fs::path dir = TestDir() / "labels";
  ASSERT_TRUE(SpannIndex::Build(Clustered(n, kDim, 5), dir, o, labels).ok());
  auto idx = OpenOrDie(dir);
  ASSERT_NE(idx, nullptr);
  EXPECT_EQ(idx->Stats().full_section_bytes, (3 * (n - 1) + 3) * 512u);
  SpannContext ctx;
  for (size_t i = 0; i < n; i += 37) {
    auto r = idx->Search(base[i], {.k = 1, .max_lists = 16}, ctx);
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    ASSERT_EQ(r->size(), 1u);
    EXPECT_EQ((*r)[0].id, labels[i]);
    EXPECT_NEAR((*r)[0].distance, 0.0f, 1e-4f);
  }
}

TEST(SpannRerankFrom, NamesRoundTrip) {
  for (SpannRerankFrom f : {SpannRerankFrom::kFile, SpannRerankFrom::kList}) {
    auto parsed = ParseSpannRerankFrom(SpannRerankFromName(f));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, f);
  }
  EXPECT_FALSE(ParseSpannRerankFrom("disk").has_value());
}

}  // namespace
}  // namespace strata::index
