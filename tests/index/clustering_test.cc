#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "index/clustering/balanced.h"
#include "index/clustering/kmeans.h"

namespace strata::index {
namespace {

// `clusters` Gaussian blobs (unit variance) whose centres are spread with scale
// `spread`; labels[i] is the blob of row i.
VectorSet Blobs(size_t n, size_t dim, size_t clusters, float spread, uint32_t seed,
                std::vector<uint32_t>* labels = nullptr) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0, 1);
  std::vector<float> centers(clusters * dim);
  for (float& c : centers) c = spread * g(rng);
  auto s = *VectorSet::Create(n, dim);
  if (labels) labels->resize(n);
  for (size_t i = 0; i < n; ++i) {
    const size_t c = i % clusters;
    if (labels) (*labels)[i] = uint32_t(c);
    float* row = s.mutable_row(i);
    for (size_t j = 0; j < dim; ++j) row[j] = centers[c * dim + j] + g(rng);
  }
  return s;
}

VectorSet Uniform(size_t n, size_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0, 1);
  auto s = *VectorSet::Create(n, dim);
  for (size_t i = 0; i < n * dim; ++i) s.mutable_data()[i] = u(rng);
  return s;
}

bool SameFloats(const VectorSet& a, const VectorSet& b) {
  return a.size() == b.size() && a.dim() == b.dim() &&
         std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

std::vector<uint32_t> Counts(const std::vector<uint32_t>& assignment, size_t k) {
  std::vector<uint32_t> counts(k, 0);
  for (uint32_t c : assignment) {
    EXPECT_LT(c, k);
    if (c < k) ++counts[c];
  }
  return counts;
}

double SquaredL2(const float* a, const float* b, size_t dim) {
  double s = 0;
  for (size_t j = 0; j < dim; ++j) s += (double(a[j]) - b[j]) * (double(a[j]) - b[j]);
  return s;
}

// ---------------------------------------------------------------- k-means

TEST(KMeans, RecoversWellSeparatedClusters) {
  std::vector<uint32_t> labels;
  const VectorSet data = Blobs(4000, 16, 8, 50.0f, 7, &labels);
  KMeansOptions opt;
  opt.k = 8;
  auto r = KMeans(data, {}, opt);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  // Each true blob maps to exactly one k-means cluster, and the map is a bijection.
  std::map<uint32_t, uint32_t> blob_to_cluster;
  for (size_t i = 0; i < data.size(); ++i) {
    auto [it, inserted] = blob_to_cluster.emplace(labels[i], r->assignment[i]);
    ASSERT_EQ(it->second, r->assignment[i]) << "blob " << labels[i] << " split, row " << i;
  }
  std::set<uint32_t> clusters;
  for (const auto& [blob, cluster] : blob_to_cluster) clusters.insert(cluster);
  EXPECT_EQ(clusters.size(), 8u);
}

TEST(KMeans, MoreIterationsLowerTheObjective) {
  const VectorSet data = Blobs(5000, 16, 16, 3.0f, 11);
  KMeansOptions opt;
  opt.k = 32;
  opt.iterations = 1;
  auto one = KMeans(data, {}, opt);
  opt.iterations = 12;
  auto many = KMeans(data, {}, opt);
  ASSERT_TRUE(one.has_value() && many.has_value());
  EXPECT_LT(many->objective, one->objective);
}

TEST(KMeans, ObjectiveBoundsDistanceToReturnedCentroids) {
  const VectorSet data = Blobs(3000, 8, 10, 3.0f, 12);
  KMeansOptions opt;
  opt.k = 20;
  auto r = KMeans(data, {}, opt);
  ASSERT_TRUE(r.has_value());
  // The returned centroids are the means of the assignment, so they can only do better.
  double recomputed = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    recomputed += SquaredL2(data.row(i), r->centroids.row(r->assignment[i]), data.dim());
  }
  EXPECT_LE(recomputed, r->objective * (1 + 1e-5));
  EXPECT_GT(recomputed, 0.5 * r->objective);
  EXPECT_EQ(Counts(r->assignment, opt.k), r->sizes);
}

TEST(KMeans, DeterministicForSeedAndThreadCount) {
  const VectorSet data = Blobs(6000, 16, 12, 3.0f, 13);
  KMeansOptions opt;
  opt.k = 40;
  opt.seed = 99;
  opt.num_threads = 1;
  auto a = KMeans(data, {}, opt);
  auto b = KMeans(data, {}, opt);
  opt.num_threads = 2;
  auto c = KMeans(data, {}, opt);
  ASSERT_TRUE(a.has_value() && b.has_value() && c.has_value());
  EXPECT_EQ(a->assignment, b->assignment);
  EXPECT_EQ(a->assignment, c->assignment);
  EXPECT_TRUE(SameFloats(a->centroids, c->centroids));
  EXPECT_EQ(a->objective, c->objective);
}

TEST(KMeans, ExplicitRowListMatchesAllRows) {
  const VectorSet data = Blobs(2000, 12, 6, 3.0f, 14);
  std::vector<uint32_t> rows(data.size());
  std::iota(rows.begin(), rows.end(), 0u);
  KMeansOptions opt;
  opt.k = 10;
  auto all = KMeans(data, {}, opt);
  auto listed = KMeans(data, rows, opt);
  ASSERT_TRUE(all.has_value() && listed.has_value());
  EXPECT_EQ(all->assignment, listed->assignment);
  EXPECT_TRUE(SameFloats(all->centroids, listed->centroids));
}

TEST(KMeans, ClustersOnlyTheListedRows) {
  std::vector<uint32_t> labels;
  const VectorSet data = Blobs(3000, 8, 6, 50.0f, 15, &labels);
  // Rows of blobs 0 and 1 only.
  std::vector<uint32_t> rows;
  for (uint32_t i = 0; i < data.size(); ++i) {
    if (labels[i] < 2) rows.push_back(i);
  }
  KMeansOptions opt;
  opt.k = 2;
  auto r = KMeans(data, rows, opt);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->assignment.size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const uint32_t flip = labels[rows[i]] != labels[rows[0]] ? 1u : 0u;
    EXPECT_EQ(r->assignment[i], r->assignment[0] ^ flip);
  }
}

TEST(KMeans, EmptyClustersAreReseeded) {
  // 60 distinct points, each three times, and k close to n: k-means++ runs out of
  // distinct seeds, so duplicate centroids leave clusters empty.
  const VectorSet distinct = Uniform(60, 4, 16);
  auto data = *VectorSet::Create(180, 4);
  for (size_t i = 0; i < 180; ++i) {
    std::memcpy(data.mutable_row(i), distinct.row(i % 60), 4 * sizeof(float));
  }
  for (bool plus_plus : {true, false}) {
    KMeansOptions opt;
    opt.k = 170;
    opt.kmeans_plus_plus = plus_plus;
    auto r = KMeans(data, {}, opt);
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->sizes.size(), 170u);
    EXPECT_EQ(Counts(r->assignment, 170), r->sizes);
    for (uint32_t s : r->sizes) EXPECT_GE(s, 1u);
    EXPECT_EQ(std::accumulate(r->sizes.begin(), r->sizes.end(), size_t{0}), 180u);
  }
}

TEST(KMeans, KEqualsNGivesSingletons) {
  const VectorSet data = Uniform(50, 3, 17);
  KMeansOptions opt;
  opt.k = 50;
  auto r = KMeans(data, {}, opt);
  ASSERT_TRUE(r.has_value());
  for (uint32_t s : r->sizes) EXPECT_EQ(s, 1u);
  EXPECT_NEAR(r->objective, 0.0, 1e-6);
}

TEST(KMeans, CosineCentroidsHaveUnitNorm) {
  VectorSet data = Blobs(3000, 16, 8, 3.0f, 18);
  data.NormalizeRows();
  for (Metric m : {Metric::kCosine, Metric::kInnerProduct}) {
    KMeansOptions opt;
    opt.k = 16;
    opt.metric = m;
    auto r = KMeans(data, {}, opt);
    ASSERT_TRUE(r.has_value());
    for (size_t c = 0; c < r->centroids.size(); ++c) {
      double norm = 0;
      for (size_t j = 0; j < data.dim(); ++j) norm += double(r->centroids.row(c)[j]) * r->centroids.row(c)[j];
      EXPECT_NEAR(std::sqrt(norm), 1.0, 1e-5);
    }
    EXPECT_GE(r->objective, 0.0);
  }
}

TEST(KMeans, RejectsInvalidArguments) {
  const VectorSet data = Uniform(100, 4, 19);
  KMeansOptions opt;
  opt.k = 0;
  EXPECT_EQ(KMeans(data, {}, opt).error().code(), StatusCode::kInvalidArgument);
  opt.k = 101;
  EXPECT_EQ(KMeans(data, {}, opt).error().code(), StatusCode::kInvalidArgument);
  opt.k = 3;
  const std::vector<uint32_t> two_rows = {1, 2};
  EXPECT_EQ(KMeans(data, two_rows, opt).error().code(), StatusCode::kInvalidArgument);
  const std::vector<uint32_t> bad_row = {1, 2, 3, 100};
  EXPECT_EQ(KMeans(data, bad_row, opt).error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(KMeans(VectorSet(), {}, opt).error().code(), StatusCode::kInvalidArgument);
  auto empty = *VectorSet::Create(0, 4);
  EXPECT_EQ(KMeans(empty, {}, opt).error().code(), StatusCode::kInvalidArgument);
  auto nan = *data.Clone();
  nan.mutable_row(7)[2] = std::nanf("");
  EXPECT_EQ(KMeans(nan, {}, opt).error().code(), StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------- balanced

void ExpectValidClustering(const Clustering& c, size_t n, size_t max_size) {
  ASSERT_EQ(c.assignment.size(), n);
  ASSERT_EQ(c.centroids.size(), c.sizes.size());
  EXPECT_EQ(Counts(c.assignment, c.sizes.size()), c.sizes);  // every row exactly once
  EXPECT_EQ(std::accumulate(c.sizes.begin(), c.sizes.end(), size_t{0}), n);
  for (uint32_t s : c.sizes) {
    EXPECT_GE(s, 1u);
    EXPECT_LE(s, max_size);
  }
}

TEST(BalancedClustering, EveryClusterWithinMaxSize) {
  const VectorSet data = Blobs(20000, 16, 16, 3.0f, 21);
  BalancedClusteringOptions opt;
  opt.max_cluster_size = 64;
  auto r = BalancedHierarchicalClustering(data, opt);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  ExpectValidClustering(*r, data.size(), 64);
  const SizeSummary s = SummarizeSizes(r->sizes);
  EXPECT_GE(s.median, 64u / 4);
  EXPECT_GE(s.mean, 64.0 / 3);
}

TEST(BalancedClustering, CentroidsAreMeansOfMembers) {
  const VectorSet data = Blobs(3000, 8, 5, 3.0f, 22);
  BalancedClusteringOptions opt;
  opt.max_cluster_size = 100;
  auto r = BalancedHierarchicalClustering(data, opt);
  ASSERT_TRUE(r.has_value());
  std::vector<double> sums(r->sizes.size() * 8, 0.0);
  for (size_t i = 0; i < data.size(); ++i) {
    for (size_t j = 0; j < 8; ++j) sums[r->assignment[i] * 8 + j] += data.row(i)[j];
  }
  for (size_t c = 0; c < r->sizes.size(); ++c) {
    for (size_t j = 0; j < 8; ++j) {
      EXPECT_NEAR(r->centroids.row(c)[j], sums[c * 8 + j] / r->sizes[c], 1e-4);
    }
  }
}

TEST(BalancedClustering, UniformDataGivesEvenSizes) {
  const VectorSet data = Uniform(10000, 16, 23);
  BalancedClusteringOptions opt;
  opt.max_cluster_size = 64;
  auto r = BalancedHierarchicalClustering(data, opt);
  ASSERT_TRUE(r.has_value());
  ExpectValidClustering(*r, data.size(), 64);
  const SizeSummary s = SummarizeSizes(r->sizes);
  EXPECT_GE(s.median, 64u / 4);
  EXPECT_GE(s.min, 64u / 8);
}

TEST(BalancedClustering, DeterministicAcrossThreadCounts) {
  const VectorSet data = Blobs(20000, 16, 16, 3.0f, 24);
  BalancedClusteringOptions opt;
  opt.max_cluster_size = 64;
  opt.seed = 5;
  opt.num_threads = 1;
  auto a = BalancedHierarchicalClustering(data, opt);
  opt.num_threads = 2;
  auto b = BalancedHierarchicalClustering(data, opt);
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(a->assignment, b->assignment);
  EXPECT_EQ(a->sizes, b->sizes);
  EXPECT_TRUE(SameFloats(a->centroids, b->centroids));
}

TEST(BalancedClustering, CosineCentroidsHaveUnitNorm) {
  VectorSet data = Blobs(5000, 16, 8, 3.0f, 25);
  data.NormalizeRows();
  BalancedClusteringOptions opt;
  opt.max_cluster_size = 50;
  opt.metric = Metric::kCosine;
  auto r = BalancedHierarchicalClustering(data, opt);
  ASSERT_TRUE(r.has_value());
  ExpectValidClustering(*r, data.size(), 50);
  for (size_t c = 0; c < r->centroids.size(); ++c) {
    double norm = 0;
    for (size_t j = 0; j < data.dim(); ++j) norm += double(r->centroids.row(c)[j]) * r->centroids.row(c)[j];
    EXPECT_NEAR(std::sqrt(norm), 1.0, 1e-5);
  }
}

TEST(BalancedClustering, SmallDataIsOneCluster) {
  const VectorSet data = Uniform(40, 4, 26);
  BalancedClusteringOptions opt;
  opt.max_cluster_size = 64;
  auto r = BalancedHierarchicalClustering(data, opt);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->sizes, std::vector<uint32_t>{40});
  ExpectValidClustering(*r, 40, 64);
}

TEST(BalancedClustering, IdenticalPointsStillSplit) {
  auto data = *VectorSet::Create(1000, 4);
  for (size_t i = 0; i < 1000; ++i) std::fill_n(data.mutable_row(i), 4, 0.5f);
  BalancedClusteringOptions opt;
  opt.max_cluster_size = 32;
  auto r = BalancedHierarchicalClustering(data, opt);
  ASSERT_TRUE(r.has_value());
  ExpectValidClustering(*r, 1000, 32);
}

TEST(BalancedClustering, MaxSizeOneGivesSingletons) {
  const VectorSet data = Uniform(300, 4, 27);
  BalancedClusteringOptions opt;
  opt.max_cluster_size = 1;
  opt.branching = 4;
  auto r = BalancedHierarchicalClustering(data, opt);
  ASSERT_TRUE(r.has_value());
  ExpectValidClustering(*r, 300, 1);
  EXPECT_EQ(r->sizes.size(), 300u);
}

TEST(BalancedClustering, RejectsInvalidArguments) {
  const VectorSet data = Uniform(100, 4, 28);
  BalancedClusteringOptions opt;
  EXPECT_EQ(BalancedHierarchicalClustering(VectorSet(), opt).error().code(),
            StatusCode::kInvalidArgument);
  opt.max_cluster_size = 0;
  EXPECT_EQ(BalancedHierarchicalClustering(data, opt).error().code(),
            StatusCode::kInvalidArgument);
  opt.max_cluster_size = 10;
  opt.branching = 1;
  EXPECT_EQ(BalancedHierarchicalClustering(data, opt).error().code(),
            StatusCode::kInvalidArgument);
  opt.branching = 16;
  auto nan = *data.Clone();
  nan.mutable_row(3)[0] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(BalancedHierarchicalClustering(nan, opt).error().code(),
            StatusCode::kInvalidArgument);
}

TEST(SummarizeSizes, ReportsOrderStatistics) {
  std::vector<uint32_t> sizes(100);
  std::iota(sizes.begin(), sizes.end(), 1u);  // 1..100
  std::reverse(sizes.begin(), sizes.end());
  const SizeSummary s = SummarizeSizes(sizes);
  EXPECT_EQ(s.count, 100u);
  EXPECT_EQ(s.min, 1u);
  EXPECT_EQ(s.max, 100u);
  EXPECT_EQ(s.median, 51u);
  EXPECT_EQ(s.p99, 99u);
  EXPECT_DOUBLE_EQ(s.mean, 50.5);
  EXPECT_EQ(SummarizeSizes({}).count, 0u);
}

}  // namespace
}  // namespace strata::index
