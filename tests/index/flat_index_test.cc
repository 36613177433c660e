#include "index/flat/flat_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <unordered_set>

namespace strata::index {
namespace {

VectorSet RandomSet(size_t n, size_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0, 1);
  auto s = *VectorSet::Create(n, dim);
  for (size_t i = 0; i < n * dim; ++i) s.mutable_data()[i] = g(rng);
  return s;
}

// Reference: double-precision brute force, ties broken by smaller id.
std::vector<size_t> BruteForce(const VectorSet& base, const float* q, Metric metric, size_t k) {
  const size_t dim = base.dim();
  std::vector<std::pair<double, size_t>> d(base.size());
  double qn = 0;
  for (size_t j = 0; j < dim; ++j) qn += double(q[j]) * q[j];
  for (size_t i = 0; i < base.size(); ++i) {
    double s = 0, xn = 0;
    for (size_t j = 0; j < dim; ++j) {
      const double a = q[j], b = base.row(i)[j];
      s += metric == Metric::kL2 ? (a - b) * (a - b) : a * b;
      xn += b * b;
    }
    if (metric == Metric::kInnerProduct) s = -s;
    if (metric == Metric::kCosine) s = -s / std::sqrt(qn * xn);
    d[i] = {s, i};
  }
  std::sort(d.begin(), d.end());
  std::vector<size_t> ids;
  for (size_t i = 0; i < std::min(k, d.size()); ++i) ids.push_back(d[i].second);
  return ids;
}

class FlatMetricTest : public ::testing::TestWithParam<Metric> {};

TEST_P(FlatMetricTest, SearchIsExact) {
  const Metric metric = GetParam();
  auto base = RandomSet(2000, 37, 1);
  auto queries = RandomSet(20, 37, 2);
  auto index = *FlatIndex::Build(*base.Clone(), metric);
  SearchContext ctx;
  SearchParams p;
  p.k = 10;
  for (size_t q = 0; q < queries.size(); ++q) {
    auto got = *index->Search(queries[q], p, ctx);
    auto want = BruteForce(base, queries.row(q), metric, 10);
    ASSERT_EQ(got.size(), 10u);
    for (size_t j = 0; j < 10; ++j) EXPECT_EQ(got[j].id, want[j]) << "query " << q << " rank " << j;
    EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
  }
}

TEST_P(FlatMetricTest, BatchMatchesSingleQueries) {
  const Metric metric = GetParam();
  // Sizes that leave tails in every block dimension.
  auto base = RandomSet(1300, 100, 3);
  auto queries = RandomSet(300, 100, 4);
  auto index = *FlatIndex::Build(std::move(base), metric);
  FlatIndex::BatchOptions opt;
  opt.num_threads = 2;
  auto batch = *index->SearchBatch(queries, 7, opt);
  SearchContext ctx;
  SearchParams p;
  p.k = 7;
  for (size_t q = 0; q < queries.size(); ++q) {
    auto single = *index->Search(queries[q], p, ctx);
    for (size_t j = 0; j < 7; ++j) {
      EXPECT_EQ(batch[q * 7 + j].id, single[j].id) << "query " << q << " rank " << j;
      EXPECT_NEAR(batch[q * 7 + j].distance, single[j].distance,
                  1e-4f * std::max(1.0f, std::fabs(single[j].distance)));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Metrics, FlatMetricTest,
                         ::testing::Values(Metric::kL2, Metric::kInnerProduct, Metric::kCosine),
                         [](const auto& info) { return std::string(MetricName(info.param)); });

TEST(FlatIndex, FewerVectorsThanKPadsBatchAndShortensSingle) {
  auto index = *FlatIndex::Build(RandomSet(3, 4, 5), Metric::kL2);
  auto queries = RandomSet(2, 4, 6);
  auto batch = *index->SearchBatch(queries, 5, {});
  EXPECT_NE(batch[2].id, kInvalidVectorId);
  EXPECT_EQ(batch[3].id, kInvalidVectorId);
  SearchContext ctx;
  SearchParams p;
  p.k = 5;
  EXPECT_EQ(index->Search(queries[0], p, ctx)->size(), 3u);
}

TEST(FlatIndex, AddReplaceRemove) {
  auto index = *FlatIndex::Create(2, Metric::kL2);
  float a[2] = {0, 0}, b[2] = {10, 10}, c[2] = {5, 5};
  ASSERT_TRUE(index->Add(100, VectorView(a, 2)).ok());
  ASSERT_TRUE(index->Add(200, VectorView(b, 2)).ok());
  ASSERT_TRUE(index->Add(300, VectorView(c, 2)).ok());
  SearchContext ctx;
  SearchParams p;
  p.k = 1;
  float q[2] = {9, 9};
  EXPECT_EQ((*index->Search(VectorView(q, 2), p, ctx))[0].id, 200u);
  // Upsert moves 200 far away; 300 becomes nearest.
  float far[2] = {-50, -50};
  ASSERT_TRUE(index->Add(200, VectorView(far, 2)).ok());
  EXPECT_EQ(index->size(), 3u);
  EXPECT_EQ((*index->Search(VectorView(q, 2), p, ctx))[0].id, 300u);
  ASSERT_TRUE(index->Remove(300).ok());
  EXPECT_EQ(index->Remove(300).code(), StatusCode::kNotFound);
  EXPECT_EQ(index->size(), 2u);
  EXPECT_EQ((*index->Search(VectorView(q, 2), p, ctx))[0].id, 100u);
}

TEST(FlatIndex, FilterRestrictsResults) {
  class EvenIds : public IdFilter {
   public:
    bool Contains(VectorId id) const override { return id % 2 == 0; }
  } even;
  auto base = RandomSet(500, 8, 7);
  auto index = *FlatIndex::Build(std::move(base), Metric::kL2);
  auto q = RandomSet(1, 8, 8);
  SearchContext ctx;
  SearchParams p;
  p.k = 20;
  p.filter = &even;
  auto got = *index->Search(q[0], p, ctx);
  ASSERT_EQ(got.size(), 20u);
  for (const auto& n : got) EXPECT_EQ(n.id % 2, 0u);
}

TEST(FlatIndex, RejectsBadInput) {
  auto index = *FlatIndex::Create(4, Metric::kL2);
  float v[3] = {1, 2, 3};
  EXPECT_EQ(index->Add(1, VectorView(v, 3)).code(), StatusCode::kInvalidArgument);
  float nan[4] = {1, NAN, 2, 3};
  Status s = index->Add(1, VectorView(nan, 4));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  SearchContext ctx;
  SearchParams p;
  auto r = index->Search(VectorView(nan, 4), p, ctx);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("not finite"), std::string::npos);
  p.k = 0;
  float ok[4] = {1, 2, 3, 4};
  EXPECT_FALSE(index->Search(VectorView(ok, 4), p, ctx).has_value());
  EXPECT_FALSE(FlatIndex::Build(RandomSet(3, 4, 1), Metric::kL2, {1, 1, 2}).has_value());
}

}  // namespace
}  // namespace strata::index
