// HNSW with SQ8 codes (HnswOptions::codes): recall against the exact index, exact
// distances after the rerank, the file format (round trips, mapped full vectors,
// older files), and the errors of an untrained or read-only index.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include <unistd.h>

#include "index/filter.h"
#include "index/flat/flat_index.h"
#include "index/hnsw/hnsw_format.h"
#include "index/hnsw/hnsw_index.h"
#include "storage/section_file.h"
#include "tests/index/test_data.h"
#include "tests/temp_path.h"

namespace strata::index {
namespace {

using test_data::Clustered;

constexpr size_t kDim = 48;
constexpr uint32_t kK = 10;

std::filesystem::path TempPath(const std::string& name) {
  return test_support::TestTempPath("strata_hnsw_codes_test", name);
}

std::unique_ptr<HnswIndex> BuildCodes(const VectorSet& base, Metric metric, uint32_t rerank = 0) {
  HnswOptions opt;
  opt.codes = CodesKind::kSq8;
  opt.rerank = rerank;
  auto index = *HnswIndex::Create(base.dim(), metric, opt);
  HnswBuildOptions b;
  b.num_threads = 2;
  Status s = index->AddBatch(base, {}, b);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return index;
}

// Mean recall@k against the exact index, and every returned distance checked
// against the exact one of its id (the rerank's full-precision score).
double RecallAndExactDistances(const HnswIndex& index, const FlatIndex& exact,
                               const VectorSet& queries, uint32_t ef, uint32_t rerank = 0) {
  SearchContext ctx, ectx;
  SearchParams p;
  p.k = kK;
  p.ef = ef;
  p.rerank = rerank;
  SearchParams all = p;
  all.k = uint32_t(exact.size());
  size_t hit = 0, total = 0;
  for (size_t q = 0; q < queries.size(); ++q) {
    auto got = index.Search(queries[q], p, ctx);
    auto want = exact.Search(queries[q], p, ectx);
    EXPECT_TRUE(got.has_value() && want.has_value());
    if (!got || !want) return 0;
    EXPECT_EQ(got->size(), kK);
    EXPECT_TRUE(std::is_sorted(got->begin(), got->end(),
                               [](const Neighbor& a, const Neighbor& b) { return a.distance < b.distance; }));
    std::unordered_set<VectorId> w;
    for (const auto& n : *want) w.insert(n.id);
    for (const auto& n : *got) hit += w.count(n.id);
    total += want->size();
    if (q < 5) {  // distances are the full vectors' (exact to float rounding)
      auto every = *exact.Search(queries[q], all, ectx);
      for (const auto& n : *got) {
        auto it = std::find_if(every.begin(), every.end(), [&](const Neighbor& e) { return e.id == n.id; });
        if (it == every.end()) {
          ADD_FAILURE() << "id " << n.id << " is not in the index";
          continue;
        }
        EXPECT_NEAR(n.distance, it->distance, 1e-4f * (1 + std::fabs(it->distance)));
      }
    }
  }
  return double(hit) / double(total);
}

class HnswCodesTest : public ::testing::TestWithParam<Metric> {};

TEST_P(HnswCodesTest, RecallWithRerankMeetsFloor) {
  auto base = Clustered(3000, kDim, 5);
  auto queries = Clustered(100, kDim, 6);
  auto exact = *FlatIndex::Build(*base.Clone(), GetParam());
  auto index = BuildCodes(base, GetParam());
  EXPECT_GE(RecallAndExactDistances(*index, *exact, queries, 64), 0.93);
  // A short rerank still returns k results.
  EXPECT_GE(RecallAndExactDistances(*index, *exact, queries, 64, kK), 0.85);
}

// Long codes (from 256 dimensions, on a CPU with VNNI) are walked with an int8 query:
// the same floor, with exact distances after the rerank, read or refined.
TEST_P(HnswCodesTest, LongCodesMeetTheFloorToo) {
  constexpr size_t kLong = 320;
  auto base = Clustered(1500, kLong, 15);
  auto queries = Clustered(40, kLong, 16);
  auto exact = *FlatIndex::Build(*base.Clone(), GetParam());
  auto index = BuildCodes(base, GetParam());
  EXPECT_GE(RecallAndExactDistances(*index, *exact, queries, 64), 0.93);
  auto path = TempPath("long.hnsw");
  ASSERT_TRUE(index->Save(path).ok());
  HnswLoadOptions lo;
  lo.refined_codes = true;
  auto refined = *HnswIndex::Load(path, lo);
  SearchContext a, b;
  SearchParams p;
  p.k = kK;
  p.ef = 64;
  size_t same = 0;
  for (size_t q = 0; q < queries.size(); ++q) {
    auto x = *index->Search(queries[q], p, a);
    auto y = *refined->Search(queries[q], p, b);
    ASSERT_EQ(x.size(), y.size());
    std::unordered_set<VectorId> ids;
    for (const auto& n : x) ids.insert(n.id);
    for (const auto& n : y) same += ids.count(n.id);
  }
  EXPECT_GE(double(same) / double(queries.size() * kK), 0.98);
  std::filesystem::remove(path);
}

INSTANTIATE_TEST_SUITE_P(Metrics, HnswCodesTest,
                         ::testing::Values(Metric::kL2, Metric::kInnerProduct, Metric::kCosine),
                         [](const auto& info) { return std::string(MetricName(info.param)); });

TEST(HnswCodes, SaveLoadRoundTripsInMemoryMappedAndFullVectorsMappedOrRead) {
  auto base = Clustered(1500, kDim, 7);
  auto queries = Clustered(30, kDim, 8);
  auto index = BuildCodes(base, Metric::kCosine, 24);
  auto path = TempPath("codes.hnsw");
  ASSERT_TRUE(index->Save(path).ok());
  HnswLoadOptions in_memory, mapped, full_mapped, full_read, full_read_sync;
  mapped.mmap = true;
  full_mapped.map_full_vectors = true;
  full_read.read_full_vectors = true;  // one batch per rerank (io_uring where allowed)
  full_read_sync.read_full_vectors = true;
  full_read_sync.full_vector_io = storage::IoBackend::kPread;  // one pread per vector
  for (const HnswLoadOptions& lo : {in_memory, mapped, full_mapped, full_read, full_read_sync}) {
    auto loaded = HnswIndex::Load(path, lo);
    ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
    EXPECT_EQ((*loaded)->options().codes, CodesKind::kSq8);
    EXPECT_EQ((*loaded)->options().rerank, 24u);
    const HnswStats st = (*loaded)->GraphStats();
    EXPECT_EQ(st.full_vector_bytes, base.size() * kDim * sizeof(float));
    EXPECT_EQ(st.full_vectors_mapped, lo.mmap || lo.map_full_vectors || lo.read_full_vectors);
    SearchContext a, b;
    SearchParams p;
    p.k = kK;
    p.ef = 48;
    for (size_t q = 0; q < queries.size(); ++q) {
      auto x = *index->Search(queries[q], p, a);
      auto y = *(*loaded)->Search(queries[q], p, b);
      ASSERT_EQ(x.size(), y.size());
      for (size_t i = 0; i < x.size(); ++i) {
        EXPECT_EQ(x[i].id, y[i].id);
        EXPECT_EQ(x[i].distance, y[i].distance);
      }
    }
    auto got = (*loaded)->Get(3);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, *index->Get(3));  // the full vector, not the decoded code
  }
}

TEST(HnswCodes, RefinedCodesRerankInMemoryWithinTheirBound) {
  auto base = Clustered(2000, kDim, 21);
  auto queries = Clustered(50, kDim, 22);
  for (Metric metric : {Metric::kL2, Metric::kCosine}) {
    auto index = BuildCodes(base, metric);
    auto path = TempPath("refined.hnsw");
    ASSERT_TRUE(index->Save(path).ok());
    HnswLoadOptions lo;
    lo.refined_codes = true;
    auto loaded = HnswIndex::Load(path, lo);
    ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
    const HnswStats st = (*loaded)->GraphStats();
    EXPECT_EQ(st.refined_code_bytes, base.size() * (Sq8Encoder::RefinementBytes(kDim) +
                                                    (metric == Metric::kL2 ? sizeof(float) : 0)));
    EXPECT_TRUE(st.full_vectors_mapped);
    EXPECT_GE(st.memory_bytes, st.refined_code_bytes);
    // Searches never touch the full vectors: with the file cut off inside them, every
    // search still answers (a read rerank would fail, as the test above shows).
    const auto size = std::filesystem::file_size(path);
    std::filesystem::resize_file(path, size / 2);
    auto exact = *FlatIndex::Build(*base.Clone(), metric);
    SearchContext a, b, e;
    SearchParams p;
    p.k = kK;
    p.ef = 64;
    SearchParams all = p;
    all.k = uint32_t(base.size());
    size_t same = 0, total = 0;
    for (size_t q = 0; q < queries.size(); ++q) {
      auto full = *index->Search(queries[q], p, a);
      auto refined = (*loaded)->Search(queries[q], p, b);
      ASSERT_TRUE(refined.has_value()) << refined.error().ToString();
      ASSERT_EQ(refined->size(), full.size());
      std::unordered_set<VectorId> f;
      for (const auto& n : full) f.insert(n.id);
      for (const auto& n : *refined) same += f.count(n.id);
      total += full.size();
      // Each distance is close to the exact one (the refined codes' error is a
      // fourteenth of the plain codes').
      auto every = *exact->Search(queries[q], all, e);
      for (const auto& n : *refined) {
        auto it = std::find_if(every.begin(), every.end(), [&](const Neighbor& x) { return x.id == n.id; });
        ASSERT_NE(it, every.end());
        // Measured: at most 0.0009 (L2) and 0.0001 (cosine) here; plain SQ8 codes
        // are off by up to 0.014 and 0.0013.
        EXPECT_NEAR(n.distance, it->distance, 0.003f * (1 + std::fabs(it->distance)));
      }
    }
    // The same neighbours as reranking on the full vectors, but for near-ties.
    // (0.998 and 0.994 here; reranking on the plain codes: 0.978 and 0.954.)
    EXPECT_GE(double(same) / double(total), 0.98) << MetricName(metric);
    EXPECT_FALSE((*loaded)->Add(9000, base[0]).ok());  // read-only, as with mapped vectors
    std::filesystem::remove(path);
  }
}

TEST(HnswCodes, MappedFullVectorsMakeTheIndexReadOnly) {
  auto base = Clustered(300, kDim, 9);
  auto index = BuildCodes(base, Metric::kL2);
  auto path = TempPath("codes.hnsw");
  ASSERT_TRUE(index->Save(path).ok());
  HnswLoadOptions lo;
  lo.map_full_vectors = true;
  auto loaded = *HnswIndex::Load(path, lo);
  EXPECT_FALSE(loaded->Add(5000, base[0]).ok());
  EXPECT_FALSE(loaded->Remove(1).ok());
  HnswLoadOptions ro;
  ro.read_full_vectors = true;
  EXPECT_FALSE((*HnswIndex::Load(path, ro))->Add(5000, base[0]).ok());
  // Loaded into memory, the same file takes inserts.
  auto writable = *HnswIndex::Load(path);
  EXPECT_TRUE(writable->Add(5000, base[0]).ok());
  SearchContext ctx;
  SearchParams p;
  p.k = 2;
  auto r = *writable->Search(base[0], p, ctx);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].distance, 0.0f);
}

TEST(HnswCodes, ARerankReadThatFailsIsAnIOErrorNamingTheNode) {
  auto base = Clustered(600, kDim, 11);
  auto index = BuildCodes(base, Metric::kL2);
  auto path = TempPath("codes.hnsw");
  ASSERT_TRUE(index->Save(path).ok());
  for (storage::IoBackend io : {storage::IoBackend::kAuto, storage::IoBackend::kPread}) {
    HnswLoadOptions lo;
    lo.read_full_vectors = true;
    lo.full_vector_io = io;
    auto loaded = *HnswIndex::Load(path, lo);
    // Cut the file off inside the FULL section: the reranks' reads come back short.
    const auto size = std::filesystem::file_size(path);
    std::filesystem::resize_file(path, size / 2);
    SearchContext ctx;
    SearchParams p;
    p.k = kK;
    p.ef = 64;
    p.rerank = 64;  // reaches nodes whose vectors were cut off
    auto r = loaded->Search(base[599], p, ctx);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), StatusCode::kIOError) << r.error().ToString();
    EXPECT_NE(r.error().message().find("for a rerank"), std::string::npos);
    std::filesystem::resize_file(path, size);  // zeros: no longer short, for the next backend
    ASSERT_TRUE(index->Save(path).ok());
  }
}

TEST(HnswCodes, AddBeforeAnyBatchIsAnError) {
  HnswOptions opt;
  opt.codes = CodesKind::kSq8;
  auto index = *HnswIndex::Create(kDim, Metric::kL2, opt);
  std::vector<float> v(kDim, 1.0f);
  Status s = index->Add(1, VectorView{v.data(), kDim});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("AddBatch"), std::string::npos);
}

TEST(HnswCodes, CodesNeedFloat32FullVectors) {
  HnswOptions opt;
  opt.codes = CodesKind::kSq8;
  opt.encoding = VectorEncoding::kFloat16;
  EXPECT_FALSE(HnswIndex::Create(kDim, Metric::kL2, opt).has_value());
}

TEST(HnswCodes, SearchPastATombstoneGivesExactDistances) {
  auto base = Clustered(800, kDim, 10);
  auto index = BuildCodes(base, Metric::kL2);
  ASSERT_TRUE(index->Remove(0).ok());
  SearchContext ctx;
  SearchParams p;
  p.k = 1;
  p.ef = 32;
  auto r = *index->Search(base[1], p, ctx);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].id, 1u);
  EXPECT_EQ(r[0].distance, 0.0f);
}

// Rewrites `from` as a file of format minor `minor`, sections copied unchanged.
void RewriteMinor(const std::filesystem::path& from, const std::filesystem::path& to, uint16_t minor) {
  auto sf = *storage::SectionFile::Open(from, hnsw_format::kMagic, hnsw_format::kMajor);
  auto w = *storage::SectionFileWriter::Create(to, hnsw_format::kMagic, hnsw_format::kMajor, minor);
  for (const auto& e : sf.entries()) ASSERT_TRUE(w.AddSection(e.tag, *sf.Section(e.tag)).ok());
  ASSERT_TRUE(w.Commit().ok());
}

TEST(HnswCodes, FormatOneOneFilesStillOpen) {
  // A 1.1 file is a 1.2 file without codes, under minor 1.
  auto base = Clustered(400, kDim, 11);
  HnswBuildOptions b;
  auto index = *HnswIndex::Create(kDim, Metric::kL2);
  ASSERT_TRUE(index->AddBatch(base, {}, b).ok());
  auto path = TempPath("new.hnsw");
  ASSERT_TRUE(index->Save(path).ok());
  auto old = TempPath("old.hnsw");
  RewriteMinor(path, old, 1);
  auto loaded = HnswIndex::Load(old);
  ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
  EXPECT_EQ((*loaded)->options().codes, CodesKind::kNone);
  EXPECT_EQ((*loaded)->size(), base.size());
}

// A saved codes index (200 clustered rows, L2) written again as `name` with each section's bytes
// passed through `edit(tag, bytes)` (checksums recomputed: only Load's own checks stand in the way).
std::filesystem::path RewrittenCodesIndex(
    const std::string& name,
    const std::function<std::vector<std::byte>(uint32_t, std::span<const std::byte>)>& edit) {
  auto index = BuildCodes(Clustered(200, kDim, 12), Metric::kL2);
  auto path = TempPath("codes.hnsw");
  EXPECT_TRUE(index->Save(path).ok());
  auto sf = *storage::SectionFile::Open(path, hnsw_format::kMagic, hnsw_format::kMajor);
  auto out = TempPath(name);
  auto w = *storage::SectionFileWriter::Create(out, hnsw_format::kMagic, hnsw_format::kMajor,
                                               hnsw_format::kMinor);
  for (const auto& e : sf.entries()) EXPECT_TRUE(w.AddSection(e.tag, edit(e.tag, *sf.Section(e.tag))).ok());
  EXPECT_TRUE(w.Commit().ok());
  return out;
}

TEST(HnswCodes, MissingOrShortFullSectionIsCorruption) {
  auto out = RewrittenCodesIndex("short.hnsw", [](uint32_t tag, std::span<const std::byte> bytes) {
    if (tag == hnsw_format::kTagFull) bytes = bytes.first(bytes.size() - 4);
    return std::vector<std::byte>(bytes.begin(), bytes.end());
  });
  auto loaded = HnswIndex::Load(out);
  ASSERT_FALSE(loaded.has_value());
  EXPECT_EQ(loaded.error().code(), StatusCode::kCorruption);
  EXPECT_NE(loaded.error().message().find("FULL"), std::string::npos);
}

// `index` saved as `name` and loaded with its full vectors read by pread, then the file cut off
// inside them: a search that read a full vector would fail.
std::unique_ptr<HnswIndex> SavedWithFullVectorsCut(const HnswIndex& index, const std::string& name) {
  auto path = TempPath(name);
  EXPECT_TRUE(index.Save(path).ok());
  HnswLoadOptions lo;
  lo.read_full_vectors = true;
  lo.full_vector_io = storage::IoBackend::kPread;
  auto loaded = HnswIndex::Load(path, lo);
  EXPECT_TRUE(loaded.has_value()) << loaded.error().ToString();
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  return loaded ? std::move(*loaded) : nullptr;
}

// `n` clustered rows scaled and rounded to integers in [0, 255] (uint8 pixels).
VectorSet PixelRows(size_t n, uint32_t seed) {
  VectorSet base = Clustered(n, kDim, seed);
  for (size_t i = 0; i < base.size(); ++i) {
    float* r = base.mutable_row(i);
    // + 0.0f: nearbyint rounds a small negative to -0.0, which uint8 data never hold.
    for (size_t d = 0; d < kDim; ++d) r[d] = std::clamp(std::nearbyint(r[d] * 20.0f + 128.0f), 0.0f, 255.0f) + 0.0f;
  }
  return base;
}

// Integer vectors (uint8 pixels under L2) get codes that are their values: searches rerank on
// the decoded codes and never read a full vector, with exact distances. The index says so
// after Save/Load; a vector that is not an integer one ends it; float data never have it.
TEST(HnswCodes, IntegerVectorsRerankOnTheirExactCodes) {
  VectorSet base = PixelRows(600, 11);
  auto index = BuildCodes(base, Metric::kL2);
  EXPECT_TRUE(index->GraphStats().exact_codes);
  auto loaded = SavedWithFullVectorsCut(*index, "exact.hnsw");
  ASSERT_NE(loaded, nullptr);
  EXPECT_TRUE(loaded->GraphStats().exact_codes);
  const DistanceKernels& kern = Kernels();
  SearchContext ctx;
  // Every distance is the exact one. The graph is built on two threads, so which rows it
  // reaches differs from run to run: a row's finding itself is counted, not required of each
  // (a row that lost its in-edges in a concurrent build is the graph's miss, not the codes').
  size_t queries = 0, found_itself = 0;
  for (size_t q = 0; q < base.size(); q += 13) {
    auto r = loaded->Search(base[q], {.k = kK, .ef = 64, .rerank = 64}, ctx);
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    ASSERT_EQ(r->size(), kK);
    ++queries;
    if ((*r)[0].distance == 0.0f) ++found_itself;  // itself (or a row equal to it)
    for (const Neighbor& n : *r) {
      EXPECT_EQ(n.distance, kern.l2sq(base.row(q), base.row(n.id), kDim)) << "query " << q << " id " << n.id;
    }
  }
  EXPECT_GE(found_itself * 10, queries * 9) << found_itself << " of " << queries << " rows found themselves";
  // A vector with a fraction: its code is not its vector, so reranks read full vectors again.
  std::vector<float> frac(kDim, 130.5f);
  ASSERT_TRUE(index->Add(10000, VectorView(frac.data(), kDim)).ok());
  EXPECT_FALSE(index->GraphStats().exact_codes);
  EXPECT_FALSE(BuildCodes(Clustered(200, kDim, 3), Metric::kL2)->GraphStats().exact_codes);
}

// codes_only (SPANN's head search): the walk's best k with their codes' distances, no rerank --
// a search whose full vectors are cut off still answers, close to the exact distances, where a
// reranking one fails to read them.
TEST(HnswCodes, CodesOnlySearchNeverReadsFullVectors) {
  VectorSet base = Clustered(2000, kDim, 21);
  VectorSet queries = Clustered(40, kDim, 22);
  auto index = BuildCodes(base, Metric::kL2);
  EXPECT_FALSE(index->GraphStats().exact_codes);
  auto loaded = SavedWithFullVectorsCut(*index, "codes_only.hnsw");
  ASSERT_NE(loaded, nullptr);
  auto exact = *FlatIndex::Build(*base.Clone(), Metric::kL2);
  SearchContext ctx, ectx;
  SearchParams p{.k = kK, .ef = 64};
  {
    auto r = loaded->Search(queries[0], p, ctx);  // a rerank reads the (cut) full vectors
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), StatusCode::kIOError);
  }
  p.codes_only = true;
  size_t hit = 0;
  for (size_t q = 0; q < queries.size(); ++q) {
    auto got = loaded->Search(queries[q], p, ctx);
    ASSERT_TRUE(got.has_value()) << got.error().ToString();
    ASSERT_EQ(got->size(), kK);
    EXPECT_TRUE(std::is_sorted(got->begin(), got->end(),
                               [](const Neighbor& a, const Neighbor& b) { return a.distance < b.distance; }));
    auto want = *exact->Search(queries[q], {.k = kK}, ectx);
    std::unordered_set<VectorId> w;
    for (const auto& n : want) w.insert(n.id);
    for (const Neighbor& n : *got) {
      hit += w.count(n.id);
      // An estimate: within a few percent of the exact squared distance.
      const float d = Kernels().l2sq(queries.row(q), base.row(n.id), kDim);
      EXPECT_NEAR(n.distance, d, 0.03f * d + 1e-3f) << "query " << q << " id " << n.id;
    }
  }
  EXPECT_GE(double(hit) / double(kK * queries.size()), 0.85);
}

// Filtered searches and searches past tombstones walk the codes too and rerank the best
// allowed candidates: exact distances, a recall close to the exact filtered answer, nothing
// filtered out or deleted returned, and no full vector read beyond the rerank's (a codes_only
// search of an index whose full vectors are cut off still answers; an integer index's reranks
// decode the codes).
TEST(HnswCodes, FilteredAndTombstonedSearchesWalkTheCodes) {
  VectorSet base = Clustered(3000, kDim, 31);
  VectorSet queries = Clustered(60, kDim, 32);
  auto index = BuildCodes(base, Metric::kL2);
  BitmapFilter quarter(base.size());
  for (VectorId id = 0; id < base.size(); id += 4) quarter.Set(id);
  const DistanceKernels& kern = Kernels();
  // Exact answers over the allowed ids, by brute force.
  auto exact = [&](const float* q, const IdFilter& allowed) {
    std::vector<Neighbor> all;
    for (VectorId id = 0; id < base.size(); ++id) {
      if (allowed.Contains(id)) all.push_back({id, kern.l2sq(q, base.row(id), kDim)});
    }
    std::sort(all.begin(), all.end(), [](const Neighbor& a, const Neighbor& b) { return a.distance < b.distance; });
    all.resize(std::min<size_t>(kK, all.size()));
    return all;
  };
  auto recall_of = [&](const HnswIndex& idx, const IdFilter& allowed, const IdFilter* filter) {
    SearchContext ctx;
    size_t hit = 0, total = 0;
    for (size_t q = 0; q < queries.size(); ++q) {
      auto got = idx.Search(queries[q], {.k = kK, .ef = 64, .filter = filter}, ctx);
      EXPECT_TRUE(got.has_value()) << got.error().ToString();
      if (!got) return 0.0;
      std::unordered_set<VectorId> want;
      for (const Neighbor& n : exact(queries.row(q), allowed)) want.insert(n.id);
      for (const Neighbor& n : *got) {
        EXPECT_TRUE(allowed.Contains(n.id)) << "id " << n.id;
        EXPECT_NEAR(n.distance, kern.l2sq(queries.row(q), base.row(n.id), kDim), 1e-3f * (1 + n.distance));
        hit += want.count(n.id);
      }
      total += want.size();
    }
    return double(hit) / double(total);
  };
  EXPECT_GE(recall_of(*index, quarter, &quarter), 0.9);
  // Tombstones: every third id removed.
  BitmapFilter live(base.size());
  for (VectorId id = 0; id < base.size(); ++id) {
    if (id % 3 == 0) ASSERT_TRUE(index->Remove(id).ok());
    else live.Set(id);
  }
  EXPECT_GE(recall_of(*index, live, nullptr), 0.9);
  // Only neighbours closer than max_distance, as without codes.
  {
    SearchContext ctx;
    auto first = *index->Search(queries[0], {.k = kK, .ef = 64}, ctx);
    ASSERT_EQ(first.size(), kK);
    const float bound = first[4].distance;
    auto bounded = *index->Search(queries[0], {.k = kK, .ef = 64, .max_distance = bound}, ctx);
    ASSERT_FALSE(bounded.empty());
    for (const Neighbor& n : bounded) EXPECT_LT(n.distance, bound);
  }
  // With the full vectors cut off: a filtered codes_only search answers (code distances),
  // a reranking one fails to read them.
  auto cut = SavedWithFullVectorsCut(*BuildCodes(base, Metric::kL2), "filtered_cut.hnsw");
  ASSERT_NE(cut, nullptr);
  SearchContext ctx;
  auto only = cut->Search(queries[0], {.k = kK, .ef = 64, .filter = &quarter, .codes_only = true}, ctx);
  ASSERT_TRUE(only.has_value()) << only.error().ToString();
  ASSERT_EQ(only->size(), kK);
  for (const Neighbor& n : *only) EXPECT_TRUE(quarter.Contains(n.id));
  auto reranked = cut->Search(queries[0], {.k = kK, .ef = 64, .filter = &quarter}, ctx);
  ASSERT_FALSE(reranked.has_value());
  EXPECT_EQ(reranked.error().code(), StatusCode::kIOError);
  // Integer vectors: the filtered rerank decodes the exact codes, no full vector read.
  VectorSet pixels = *base.Clone();
  for (size_t i = 0; i < pixels.size(); ++i) {
    float* r = pixels.mutable_row(i);
    // + 0.0f: nearbyint rounds a small negative to -0.0, which uint8 data never hold.
    for (size_t d = 0; d < kDim; ++d) r[d] = std::clamp(std::nearbyint(r[d] * 20.0f + 128.0f), 0.0f, 255.0f) + 0.0f;
  }
  auto exact_cut = SavedWithFullVectorsCut(*BuildCodes(pixels, Metric::kL2), "filtered_exact.hnsw");
  ASSERT_NE(exact_cut, nullptr);
  auto decoded = exact_cut->Search(pixels[8], {.k = kK, .ef = 64, .filter = &quarter}, ctx);
  ASSERT_TRUE(decoded.has_value()) << decoded.error().ToString();
  ASSERT_FALSE(decoded->empty());
  EXPECT_EQ((*decoded)[0].distance, 0.0f);  // row 8 itself, allowed (8 % 4 == 0)
}

TEST(HnswCodes, UnknownCodeFlagsAreCorruption) {
  auto out = RewrittenCodesIndex("flags.hnsw", [](uint32_t tag, std::span<const std::byte> bytes) {
    std::vector<std::byte> b(bytes.begin(), bytes.end());
    if (tag == hnsw_format::kTagCodes) b[12] = std::byte{4};  // CodesMeta::flags: an unknown bit
    return b;
  });
  auto loaded = HnswIndex::Load(out);
  ASSERT_FALSE(loaded.has_value());
  EXPECT_EQ(loaded.error().code(), StatusCode::kCorruption);
  EXPECT_NE(loaded.error().message().find("flags"), std::string::npos) << loaded.error().ToString();
}

// kFullOmitted must come with kCodesExact and without a FULL section.
TEST(HnswCodes, OmittedFullVectorsFlagsAreChecked) {
  for (uint8_t flags : {uint8_t(2), uint8_t(3)}) {
    auto out = RewrittenCodesIndex("omitted.hnsw", [&](uint32_t tag, std::span<const std::byte> bytes) {
      std::vector<std::byte> b(bytes.begin(), bytes.end());
      if (tag == hnsw_format::kTagCodes) b[12] = std::byte{flags};
      return b;
    });
    auto loaded = HnswIndex::Load(out);
    ASSERT_FALSE(loaded.has_value()) << int(flags);
    EXPECT_EQ(loaded.error().code(), StatusCode::kCorruption);
    EXPECT_NE(loaded.error().message().find(flags == 2 ? "not exact" : "FULL section"), std::string::npos)
        << loaded.error().ToString();
  }
}

// Exact codes are the vectors: the file keeps no FULL section, and every way of loading it
// answers as the index that was saved -- searches, Get and SearchSubset with exact values and
// distances. A writable load can take a vector that is not an integer one, after which the
// file keeps full vectors again.
TEST(HnswCodes, ExactCodesFilesKeepNoFullVectors) {
  VectorSet base = PixelRows(900, 31);
  auto index = BuildCodes(base, Metric::kL2);
  ASSERT_TRUE(index->GraphStats().exact_codes);
  auto path = TempPath("exact.hnsw");
  ASSERT_TRUE(index->Save(path).ok());
  {
    auto sf = *storage::SectionFile::Open(path, hnsw_format::kMagic, hnsw_format::kMajor);
    EXPECT_FALSE(sf.Has(hnsw_format::kTagFull));
    auto cb = *sf.Section(hnsw_format::kTagCodes);
    hnsw_format::CodesMeta cm;
    std::memcpy(&cm, cb.data(), sizeof cm);
    EXPECT_EQ(cm.flags, hnsw_format::kCodesExact | hnsw_format::kFullOmitted);
  }
  const DistanceKernels& kern = Kernels();
  HnswLoadOptions in_memory, mapped, full_mapped, full_read, refined;
  mapped.mmap = true;
  full_mapped.map_full_vectors = true;
  full_read.read_full_vectors = true;
  refined.refined_codes = true;
  for (const HnswLoadOptions& lo : {in_memory, mapped, full_mapped, full_read, refined}) {
    SCOPED_TRACE(lo.mmap ? "mmap" : lo.map_full_vectors ? "map_full" : lo.read_full_vectors ? "read_full"
                                                      : lo.refined_codes ? "refined" : "in memory");
    auto loaded = HnswIndex::Load(path, lo);
    ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
    const HnswStats st = (*loaded)->GraphStats();
    EXPECT_TRUE(st.exact_codes);
    const bool read_only = lo.mmap || lo.map_full_vectors || lo.read_full_vectors || lo.refined_codes;
    EXPECT_EQ(st.full_vector_bytes, read_only ? 0 : base.size() * kDim * sizeof(float));
    EXPECT_EQ(st.refined_code_bytes, 0u);
    SearchContext a, b;
    for (size_t q = 0; q < base.size(); q += 37) {
      auto x = *index->Search(base[q], {.k = kK, .ef = 48}, a);
      auto y = (*loaded)->Search(base[q], {.k = kK, .ef = 48}, b);
      ASSERT_TRUE(y.has_value()) << y.error().ToString();
      ASSERT_EQ(x.size(), y->size());
      for (size_t i = 0; i < x.size(); ++i) {
        EXPECT_EQ(x[i].id, (*y)[i].id);
        EXPECT_EQ(x[i].distance, (*y)[i].distance);
      }
      auto got = (*loaded)->Get(VectorId(q));
      ASSERT_TRUE(got.has_value());
      EXPECT_TRUE(std::equal(got->begin(), got->end(), base.row(q))) << "row " << q;
    }
    std::vector<VectorId> subset = {3, 50, 51, 700, 899};
    auto sub = (*loaded)->SearchSubset(base[50], 3, subset, b);
    ASSERT_TRUE(sub.has_value()) << sub.error().ToString();
    ASSERT_EQ(sub->size(), 3u);
    EXPECT_EQ((*sub)[0].id, 50u);
    for (const Neighbor& n : *sub) EXPECT_EQ(n.distance, kern.l2sq(base.row(50), base.row(n.id), kDim));
  }
  // Writable: a vector with a fraction joins; codes are no longer exact, so FULL is written.
  auto writable = *HnswIndex::Load(path);
  std::vector<float> frac(kDim, 130.5f);
  ASSERT_TRUE(writable->Add(5000, VectorView(frac.data(), kDim)).ok());
  EXPECT_FALSE(writable->GraphStats().exact_codes);
  auto again = TempPath("again.hnsw");
  ASSERT_TRUE(writable->Save(again).ok());
  EXPECT_TRUE(storage::SectionFile::Open(again, hnsw_format::kMagic, hnsw_format::kMajor)->Has(hnsw_format::kTagFull));
  // One more node, and the float32 copy of all of them.
  EXPECT_GE(std::filesystem::file_size(again), std::filesystem::file_size(path) + base.size() * kDim * sizeof(float));
  HnswLoadOptions lo;
  lo.map_full_vectors = true;
  auto reloaded = HnswIndex::Load(again, lo);
  ASSERT_TRUE(reloaded.has_value()) << reloaded.error().ToString();
  EXPECT_EQ(*(*reloaded)->Get(5000), frac);
  auto row7 = *(*reloaded)->Get(7);
  EXPECT_TRUE(std::equal(row7.begin(), row7.end(), base.row(7)));
  SearchContext ctx;
  auto r = (*reloaded)->Search(VectorView(frac.data(), kDim), {.k = 1, .ef = 32}, ctx);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].id, 5000u);
  EXPECT_EQ((*r)[0].distance, 0.0f);
}

}  // namespace
}  // namespace strata::index
