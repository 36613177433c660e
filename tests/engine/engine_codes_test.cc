// Collections whose sealed segments carry compressed codes (CollectionSpec::codes):
// the spec persists across a reopen, seals, bulk loads and SPANN builds write
// indexes with codes, and searches at a recall target still reach it.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/vector_set.h"
#include "engine/narrow.h"
#include "engine/strata.h"
#include "index/hnsw/hnsw_index.h"
#include "index/spann/spann_index.h"
#include "storage/section_file.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

constexpr size_t kDim = 16;

fs::path TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::temp_directory_path() /
                 ("strata_engine_codes_test_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

EngineOptions Quiet() {
  EngineOptions o;
  o.background_compaction = false;
  return o;
}

// Clustered rows, ids first_id.., and the same rows kept for exact answers.
struct Rows {
  VectorSet vectors;
  std::vector<VectorId> ids;
};

Rows MakeRows(size_t n, uint64_t seed, VectorId first_id) {
  std::mt19937 rng{uint32_t(seed)};
  std::normal_distribution<float> g;
  std::vector<std::vector<float>> centers(20, std::vector<float>(kDim));
  for (auto& c : centers) {
    for (float& x : c) x = 4 * g(rng);
  }
  Rows r{*VectorSet::Create(n, kDim), {}};
  for (size_t i = 0; i < n; ++i) {
    const auto& c = centers[rng() % centers.size()];
    for (size_t j = 0; j < kDim; ++j) r.vectors.mutable_row(i)[j] = c[j] + g(rng);
    r.ids.push_back(first_id + i);
  }
  return r;
}

// Mean recall@10 of `queries` searched at `target` against exact L2 over `all`.
double RecallAt(Engine& e, const std::vector<const Rows*>& all, double target, int queries) {
  std::mt19937 rng(5);
  std::normal_distribution<float> g;
  double hit = 0, total = 0;
  for (int qi = 0; qi < queries; ++qi) {
    const Rows& from = *all[size_t(qi) % all.size()];
    const float* base = from.vectors.row(rng() % from.vectors.size());
    std::vector<float> q(kDim);
    for (size_t j = 0; j < kDim; ++j) q[j] = base[j] + 0.5f * g(rng);
    std::vector<std::pair<float, VectorId>> exact;
    for (const Rows* r : all) {
      for (size_t i = 0; i < r->vectors.size(); ++i) {
        float d = 0;
        for (size_t j = 0; j < kDim; ++j) d += (r->vectors.row(i)[j] - q[j]) * (r->vectors.row(i)[j] - q[j]);
        exact.push_back({d, r->ids[i]});
      }
    }
    std::partial_sort(exact.begin(), exact.begin() + 10, exact.end());
    std::unordered_set<VectorId> want;
    for (size_t i = 0; i < 10; ++i) want.insert(exact[i].second);
    auto got = e.Search("c", q, {.k = 10, .recall = target});
    EXPECT_TRUE(got.has_value()) << got.error().ToString();
    if (!got) return 0;
    for (const auto& nb : *got) hit += want.count(nb.id);
    total += 10;
  }
  return hit / total;
}

// Every file named `name` under `dir`.
std::vector<fs::path> FilesNamed(const fs::path& dir, const std::string& name) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.path().filename() == name) out.push_back(entry.path());
  }
  return out;
}

TEST(EngineCodes, SealedAndBulkLoadedHnswSegmentsCarryCodesAndSearchesReachTheirTarget) {
  const fs::path dir = TestDir();
  const Rows bulk = MakeRows(3000, 1, 0), written = MakeRows(2000, 2, 3000), mem = MakeRows(300, 3, 5000);
  {
    auto e = *Engine::Open(dir, Quiet());
    CollectionSpec spec{.name = "c", .dim = kDim, .metric = Metric::kL2};
    spec.hnsw_ef_construction = 100;
    spec.codes = VectorCodes::kSq8;
    spec.rerank = 24;
    ASSERT_TRUE(e->CreateCollection(spec).ok());
    ASSERT_TRUE(e->BulkLoad("c", bulk.vectors, bulk.ids).ok());
    WriteBatch b;
    for (size_t i = 0; i < written.ids.size(); ++i) {
      b.Upsert(written.ids[i], std::span<const float>(written.vectors.row(i), kDim));
    }
    ASSERT_TRUE(e->Write("c", b).ok());
    ASSERT_TRUE(e->Flush("c").ok());  // seals the written rows: a graph built with codes
    WriteBatch m;
    for (size_t i = 0; i < mem.ids.size(); ++i) m.Upsert(mem.ids[i], std::span<const float>(mem.vectors.row(i), kDim));
    ASSERT_TRUE(e->Write("c", m).ok());
  }
  auto e = *Engine::Open(dir, Quiet());
  auto info = e->DescribeCollection("c");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->spec.codes, VectorCodes::kSq8);
  EXPECT_EQ(info->spec.rerank, 24u);
  EXPECT_EQ(info->sealed_segments, 2u);
  const auto graphs = FilesNamed(dir, "index.hnsw");
  ASSERT_EQ(graphs.size(), 2u);
  for (const auto& g : graphs) {
    auto loaded = index::HnswIndex::Load(g);
    ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
    EXPECT_EQ((*loaded)->options().codes, index::CodesKind::kSq8) << g;
    EXPECT_EQ((*loaded)->options().rerank, 24u) << g;
  }
  // Calibrated on the codes they search with, so the targets hold (within the
  // planner's +-0.02; docs/BENCHMARKS.md, section 5).
  EXPECT_GE(RecallAt(*e, {&bulk, &written, &mem}, 0.95, 60), 0.93);
  EXPECT_GE(RecallAt(*e, {&bulk, &written, &mem}, 0.80, 60), 0.78);
  e.reset();
  fs::remove_all(dir);
}

// Bulk loads `rows` into a new collection "c" with SQ8 codes and a budget that makes its segment
// SPANN, opens the engine again, and returns it with that segment's SPANN figures.
std::pair<std::unique_ptr<Engine>, index::SpannStats> BulkLoadedAsSpannWithCodes(const fs::path& dir,
                                                                                const Rows& rows) {
  {
    auto e = *Engine::Open(dir, Quiet());
    CollectionSpec spec{.name = "c", .dim = kDim, .metric = Metric::kL2};
    spec.memory_budget_bytes = 1000;  // any bulk load passes it: SPANN
    spec.codes = VectorCodes::kSq8;
    EXPECT_TRUE(e->CreateCollection(spec).ok());
    EXPECT_TRUE(e->BulkLoad("c", rows.vectors, rows.ids).ok());
  }
  auto e = *Engine::Open(dir, Quiet());
  const auto spann = FilesNamed(dir, "spann");
  EXPECT_EQ(spann.size(), 1u);
  index::SpannStats st;
  if (!spann.empty()) {
    auto opened = index::SpannIndex::Open(spann[0]);
    EXPECT_TRUE(opened.has_value()) << opened.error().ToString();
    if (opened) st = (*opened)->Stats();
  }
  return {std::move(e), st};
}

TEST(EngineCodes, SpannSegmentsPastTheBudgetCarryCodes) {
  const fs::path dir = TestDir();
  const Rows bulk = MakeRows(4000, 4, 0);
  auto [e, st] = BulkLoadedAsSpannWithCodes(dir, bulk);
  EXPECT_EQ(st.codes, index::CodesKind::kSq8);
  EXPECT_FALSE(st.head_codes);  // float16 heads: the planner's targets held closer with them
  EXPECT_FALSE(st.exact_codes);
  EXPECT_GT(st.full_section_bytes, 0u);
  EXPECT_GE(RecallAt(*e, {&bulk}, 0.90, 60), 0.88);
  e.reset();
  fs::remove_all(dir);
}

// uint8 vectors (sent as upsert_typed, or bulk loaded from a .u8bin, arrive as integral floats):
// the SPANN segment keeps only their codes, which are exact, and searches still reach the target.
TEST(EngineCodes, SpannSegmentsOfIntegerVectorsKeepOnlyTheirExactCodes) {
  const fs::path dir = TestDir();
  Rows bulk = MakeRows(4000, 4, 0);
  for (size_t i = 0; i < bulk.vectors.size(); ++i) {
    float* r = bulk.vectors.mutable_row(i);
    // + 0.0f: nearbyint rounds a small negative to -0.0, which uint8 data never hold.
    for (size_t j = 0; j < kDim; ++j) r[j] = std::clamp(std::nearbyint(r[j] * 8.0f + 128.0f), 0.0f, 255.0f) + 0.0f;
  }
  auto [e, st] = BulkLoadedAsSpannWithCodes(dir, bulk);
  EXPECT_EQ(st.codes, index::CodesKind::kSq8);
  EXPECT_TRUE(st.exact_codes);
  EXPECT_EQ(st.full_section_bytes, 0u);
  // Within the 8x spread of the rows the queries' 0.5 noise is small: they stay near a row.
  EXPECT_GE(RecallAt(*e, {&bulk}, 0.90, 60), 0.88);
  auto got = e->Get("c", bulk.ids[17]);
  ASSERT_TRUE(got.has_value()) << got.error().ToString();
  EXPECT_EQ(got->vector, std::vector<float>(bulk.vectors.row(17), bulk.vectors.row(17) + kDim));
  e.reset();
  fs::remove_all(dir);
}

// A segment's records keep their vectors in the narrowest type that holds every value exactly
// (records.strata 1.4, META.element): uint8 pixels one byte a value, float16-exact values two,
// anything else float32 as before. Reads, exact scans, index searches, a reopen and a
// compaction give back the same floats.
TEST(EngineCodes, SegmentsKeepTheirVectorsInTheNarrowestExactType) {
  struct Case {
    const char* name;
    Metric metric;
    size_t bytes;  // per value in VECS
    uint16_t minor;
    float (*value)(std::mt19937&);
  };
  const Case cases[] = {
      {"uint8", Metric::kL2, 1, 4, [](std::mt19937& r) { return float(r() % 256); }},
      {"uint8 cosine", Metric::kCosine, 1, 4, [](std::mt19937& r) { return float(1 + r() % 255); }},
      {"int8", Metric::kL2, 1, 4, [](std::mt19937& r) { return float(int(r() % 256) - 128); }},
      {"float16", Metric::kL2, 2, 4, [](std::mt19937& r) { return float(int(r() % 2000) - 1000) * 0.25f; }},
      {"float32", Metric::kL2, 4, 2, [](std::mt19937& r) { return float(int(r() % 2000)) * 0.001f; }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path dir = TestDir();
    std::mt19937 rng(7);
    std::vector<std::vector<float>> rows(600, std::vector<float>(kDim));
    for (auto& r : rows) {
      for (float& x : r) x = c.value(rng);
    }
    auto e = *Engine::Open(dir, Quiet());
    ASSERT_TRUE(e->CreateCollection({.name = "c", .dim = kDim, .metric = c.metric}).ok());
    for (size_t half = 0; half < 2; ++half) {  // two sealed segments of 300 rows
      WriteBatch b;
      for (size_t i = half * 300; i < (half + 1) * 300; ++i) b.Upsert(VectorId(i), rows[i]);
      ASSERT_TRUE(e->Write("c", b).ok());
      ASSERT_TRUE(e->Flush("c").ok());
    }
    const auto check_records = [&](size_t segments, size_t rows_each) {
      const auto files = FilesNamed(dir, "records.strata");
      ASSERT_EQ(files.size(), segments);
      for (const fs::path& f : files) {
        auto sf = storage::SectionFile::Open(f, "STRSEG", 1);
        ASSERT_TRUE(sf.has_value()) << sf.error().ToString();
        EXPECT_EQ(sf->minor(), c.minor);
        auto vecs = sf->Section(storage::SectionTag("VECS"));
        ASSERT_TRUE(vecs.has_value());
        EXPECT_EQ(vecs->size(), rows_each * kDim * c.bytes);
      }
    };
    const auto check_answers = [&] {
      for (size_t i = 0; i < rows.size(); i += 37) {
        auto got = e->Get("c", VectorId(i));
        ASSERT_TRUE(got.has_value()) << got.error().ToString();
        EXPECT_EQ(got->vector, rows[i]) << "id " << i;
        for (SearchStrategy strategy : {SearchStrategy::kScan, SearchStrategy::kAuto}) {
          auto hits = e->Search("c", rows[i], {.k = 1, .ef = 200, .strategy = strategy});
          ASSERT_TRUE(hits.has_value()) << hits.error().ToString();
          ASSERT_EQ(hits->size(), 1u);
          if (c.metric == Metric::kL2) {
            EXPECT_EQ((*hits)[0].distance, 0.0f) << "id " << i;  // itself, or a row equal to it
          } else {
            EXPECT_NEAR((*hits)[0].distance, -1.0f, 1e-5f) << "id " << i;
          }
        }
      }
    };
    check_records(2, 300);
    check_answers();
    e.reset();
    e = *Engine::Open(dir, Quiet());
    check_answers();
    ASSERT_TRUE(e->Compact("c").ok());
    check_records(1, 600);
    check_answers();
    e.reset();
    fs::remove_all(dir);
  }
}

TEST(EngineCodes, ARerankWithoutCodesOrAnUnknownCodesValueIsRefused) {
  const fs::path dir = TestDir();
  auto e = *Engine::Open(dir, Quiet());
  CollectionSpec spec{.name = "c", .dim = kDim};
  spec.rerank = 10;
  Status s = e->CreateCollection(spec);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("needs codes"), std::string::npos) << s.message();
  spec.rerank = 0;
  spec.codes = static_cast<VectorCodes>(7);
  s = e->CreateCollection(spec);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("codes"), std::string::npos) << s.message();
  e.reset();
  fs::remove_all(dir);
}

// -0.0 among integer values is not an integer value (uint8 / int8 would give +0.0 back): a
// row holding it is kept as float16, which has a signed zero.
TEST(EngineNarrow, NegativeZeroIsKeptAsSuch) {
  EXPECT_TRUE(engine::HoldsExactly(ElementType::kUint8, 0.0f));
  EXPECT_FALSE(engine::HoldsExactly(ElementType::kUint8, -0.0f));
  EXPECT_TRUE(engine::HoldsExactly(ElementType::kInt8, 0.0f));
  EXPECT_FALSE(engine::HoldsExactly(ElementType::kInt8, -0.0f));
  EXPECT_TRUE(engine::HoldsExactly(ElementType::kFloat16, -0.0f));
  const float row[3] = {3.0f, -0.0f, 7.0f};
  engine::NarrowestType t;
  t.Add(row, 3);
  EXPECT_EQ(t.Narrowest(), ElementType::kFloat16);
  uint8_t narrow[6];
  ASSERT_TRUE(engine::NarrowRow(ElementType::kFloat16, row, 3, narrow));
  EXPECT_EQ(narrow[2], 0x00);
  EXPECT_EQ(narrow[3], 0x80);  // the sign bit of half -0.0
}

}  // namespace
}  // namespace strata
