#include "index/clustering/balanced.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>

#include "core/progress.h"
#include "core/stats.h"
#include "index/clustering/clustering_internal.h"
#include "index/distance/distance.h"

namespace strata::index {
namespace {

using clustering_internal::PointSet;

// Allowed excess of the largest child over the even share ceil(n / k); also sets
// the leaf fill target max_cluster_size / (1 + kBalanceTolerance) so that a final
// split within tolerance never overflows a leaf.
constexpr double kBalanceTolerance = 0.2;
// Points sampled for k-means++ seeding of one split (k <= branching is small, so
// this is cheap and enough to find k spread-out seeds).
constexpr size_t kInitSample = 65536;
// Extra greedy passes with doubled lambda before falling back to a capped pass.
constexpr int kMaxRebalance = 32;
// Nodes at least this large are split one at a time with all threads; smaller ones
// are split concurrently, one thread each.
constexpr size_t kParallelSplitMin = 32768;
// lambda floor: with identical (or nearly identical) points the mean distance is 0
// and lambda would never grow from it by doubling.
constexpr double kMinLambda = 1e-12;

size_t TargetSize(size_t n, size_t k) {
  const size_t even = (n + k - 1) / k;
  return std::max(even, size_t(std::floor(double(even) * (1.0 + kBalanceTolerance))));
}

// Number of children for a node of n > max_cluster_size points (see balanced.h).
size_t ChooseChildren(size_t n, const BalancedClusteringOptions& options) {
  const size_t fill =
      std::max<size_t>(1, size_t(double(options.max_cluster_size) / (1.0 + kBalanceTolerance)));
  const size_t leaves = (n + fill - 1) / fill;
  const size_t branching = options.branching;
  size_t k = leaves;
  if (leaves > branching) {
    const size_t per_child = (leaves + branching - 1) / branching;
    k = (leaves + per_child - 1) / per_child;
  }
  return std::clamp<size_t>(k, 2, std::min<size_t>(branching, n));
}

// One greedy pass: points in `order` go to argmin_j dist[p][j] + lambda * sizes[j]
// (ties: smaller j), skipping clusters that already hold `cap` points. Returns the
// largest cluster size.
size_t GreedyPass(const std::vector<float>& dist, size_t k, std::span<const uint32_t> order,
                  double lambda, size_t cap, std::span<uint32_t> assignment,
                  std::vector<uint32_t>* sizes) {
  sizes->assign(k, 0);
  uint32_t* sz = sizes->data();
  for (const uint32_t p : order) {
    const float* row = dist.data() + size_t(p) * k;
    double best = std::numeric_limits<double>::infinity();
    size_t bj = k;
    for (size_t j = 0; j < k; ++j) {
      if (sz[j] >= cap) continue;
      const double cost = double(row[j]) + lambda * double(sz[j]);
      if (cost < best) {
        best = cost;
        bj = j;
      }
    }
    STRATA_CHECK(bj < k);  // cap * k >= n, so some cluster always has room
    assignment[p] = uint32_t(bj);
    ++sz[bj];
  }
  return *std::max_element(sizes->begin(), sizes->end());
}

// Splits the node whose row ids are `rows` into k children with balance-constrained
// k-means; reorders `rows` in place so that children are contiguous (in child order,
// ascending original position within a child) and returns the child sizes (k entries,
// possibly zero).
Result<std::vector<uint32_t>> Split(const VectorSet& data, std::span<uint32_t> rows, size_t k,
                                    const BalancedClusteringOptions& options, uint64_t seed,
                                    int threads) {
  const PointSet pts{&data, rows};
  const size_t n = rows.size();
  const size_t dim = data.dim();
  const bool l2 = options.metric == Metric::kL2;
  STRATA_CHECK(k >= 2 && k <= n);

  VectorSet centroids;
  STRATA_ASSIGN_OR_RETURN(centroids, VectorSet::Create(k, dim));
  clustering_internal::InitCentroids(pts, k, /*plus_plus=*/true, kInitSample, seed, threads,
                                     &centroids);

  // |x|^2 turns the kernel's |c|^2 - 2<x,c> into a true squared distance, which the
  // lambda penalty is measured against.
  std::vector<float> xnorm;
  if (l2) {
    const DistanceKernels& kern = Kernels();
    xnorm.resize(n);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t p = 0; p < n; ++p) xnorm[p] = kern.ip(pts.vec(p), pts.vec(p), dim);
  }

  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::mt19937_64 order_rng(clustering_internal::MixSeed(seed, 2));
  clustering_internal::Shuffle(order, order_rng);

  std::vector<float> dist(n * k);
  std::vector<uint32_t> assignment(n);
  std::vector<uint32_t> sizes;
  std::vector<float> own(n);
  const size_t target = TargetSize(n, k);
  double lambda = -1;
  const uint32_t rounds = std::max<uint32_t>(1, options.iterations);
  size_t largest = 0;
  for (uint32_t it = 0; it < rounds; ++it) {
    const std::vector<float> cnorms =
        l2 ? clustering_internal::SquaredNorms(centroids) : std::vector<float>();
    clustering_internal::ScanBlocks(
        pts, centroids, l2 ? cnorms.data() : nullptr, threads,
        [&](size_t p0, size_t nb, size_t c0, size_t nc, const float* tile, size_t ldo) {
          for (size_t i = 0; i < nb; ++i) {
            const float* t = tile + i * ldo;
            float* out = dist.data() + (p0 + i) * k + c0;
            // Squared L2 (clamped: rounding can make it slightly negative) or 1 - <x, c>.
            const float add = l2 ? xnorm[p0 + i] : 1.0f;
            for (size_t j = 0; j < nc; ++j) out[j] = std::max(0.0f, t[j] + add);
          }
        });
    if (lambda < 0) {
      double sum = 0;
      for (size_t p = 0; p < n; ++p) {
        const float* row = dist.data() + p * k;
        sum += *std::min_element(row, row + k);
      }
      lambda = std::max(kMinLambda, (sum / double(n)) / (double(n) / double(k)));
    }
    largest = GreedyPass(dist, k, order, lambda, n, assignment, &sizes);
    if (it + 1 == rounds) break;
    lambda = largest > target ? lambda * 2 : lambda / 2;
    lambda = std::max(lambda, kMinLambda);
    for (size_t p = 0; p < n; ++p) own[p] = dist[p * k + assignment[p]];
    clustering_internal::UpdateCentroids(pts, options.metric, threads, assignment, own, &centroids,
                                         &sizes);
  }
  // Enforce the target on the kept assignment (see balanced.h, step 4).
  for (int r = 0; r < kMaxRebalance && largest > target; ++r) {
    lambda *= 2;
    largest = GreedyPass(dist, k, order, lambda, n, assignment, &sizes);
  }
  if (largest > target) largest = GreedyPass(dist, k, order, lambda, target, assignment, &sizes);

  // Reorder rows by child (stable counting sort).
  std::vector<size_t> fill(k, 0);
  for (size_t c = 1; c < k; ++c) fill[c] = fill[c - 1] + sizes[c - 1];
  std::vector<uint32_t> original(rows.begin(), rows.end());
  for (size_t p = 0; p < n; ++p) rows[fill[assignment[p]]++] = original[p];
  return sizes;
}

struct Node {
  size_t offset = 0;  // range [offset, offset + count) of the row permutation
  size_t count = 0;
  uint64_t seed = 0;
};

}  // namespace

Result<Clustering> BalancedHierarchicalClustering(const VectorSet& data,
                                                  const BalancedClusteringOptions& options) {
  if (data.empty() || data.dim() == 0) {
    return Error(InvalidArgument("balanced clustering: data is empty"));
  }
  if (data.size() > std::numeric_limits<uint32_t>::max()) {
    return Error(InvalidArgument("balanced clustering: {} rows exceed the 32-bit row id limit",
                                 data.size()));
  }
  if (options.max_cluster_size == 0) {
    return Error(InvalidArgument("balanced clustering: max_cluster_size must be at least 1"));
  }
  if (options.branching < 2) {
    return Error(InvalidArgument("balanced clustering: branching = {} must be at least 2",
                                 options.branching));
  }
  const size_t n = data.size();
  const size_t dim = data.dim();
  for (size_t i = 0; i < n; ++i) {
    if (!AllFinite(data.row(i), dim)) {
      return Error(InvalidArgument("balanced clustering: row {} has a NaN or infinite component", i));
    }
  }
  const int threads = clustering_internal::ResolveThreads(options.num_threads);
  Progress progress("balanced clustering", n, !options.progress);

  std::vector<uint32_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0u);
  std::vector<Node> leaves;
  std::vector<Node> level;
  const Node root{0, n, options.seed};
  if (n <= options.max_cluster_size) {
    leaves.push_back(root);
  } else {
    level.push_back(root);
  }

  while (!level.empty()) {
    std::vector<Result<std::vector<uint32_t>>> splits(level.size());
    auto split = [&](size_t i, int split_threads) {
      const Node& node = level[i];
      splits[i] = Split(data, std::span<uint32_t>(perm.data() + node.offset, node.count),
                        ChooseChildren(node.count, options), options, node.seed, split_threads);
    };
    std::vector<size_t> small;
    for (size_t i = 0; i < level.size(); ++i) {
      if (level[i].count >= kParallelSplitMin) {
        split(i, threads);
      } else {
        small.push_back(i);
      }
    }
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (size_t s = 0; s < small.size(); ++s) split(small[s], 1);

    std::vector<Node> next;
    for (size_t i = 0; i < level.size(); ++i) {
      if (!splits[i].has_value()) return Error(splits[i].error());
      const std::vector<uint32_t>& sizes = *splits[i];
      size_t offset = level[i].offset;
      for (size_t c = 0; c < sizes.size(); ++c) {
        if (sizes[c] == 0) continue;
        const Node child{offset, sizes[c], clustering_internal::MixSeed(level[i].seed, 100 + c)};
        offset += sizes[c];
        if (child.count <= options.max_cluster_size) {
          leaves.push_back(child);
          progress.Add(child.count);
        } else {
          next.push_back(child);
        }
      }
    }
    level.swap(next);
  }
  progress.Finish();

  // Number clusters by position in the permutation: independent of processing order,
  // and siblings get adjacent ids.
  std::sort(leaves.begin(), leaves.end(),
            [](const Node& a, const Node& b) { return a.offset < b.offset; });
  Clustering result;
  const size_t num_clusters = leaves.size();
  STRATA_ASSIGN_OR_RETURN(result.centroids, VectorSet::Create(num_clusters, dim));
  result.assignment.resize(n);
  result.sizes.resize(num_clusters);
#pragma omp parallel num_threads(threads)
  {
    std::vector<double> acc(dim);
#pragma omp for schedule(dynamic, 64)
    for (size_t c = 0; c < num_clusters; ++c) {
      const Node& leaf = leaves[c];
      std::fill(acc.begin(), acc.end(), 0.0);
      for (size_t i = leaf.offset; i < leaf.offset + leaf.count; ++i) {
        const uint32_t row = perm[i];
        result.assignment[row] = uint32_t(c);
        const float* x = data.row(row);
        for (size_t d = 0; d < dim; ++d) acc[d] += x[d];
      }
      float* out = result.centroids.mutable_row(c);
      const double inv = 1.0 / double(leaf.count);
      for (size_t d = 0; d < dim; ++d) out[d] = float(acc[d] * inv);
      if (options.metric != Metric::kL2) NormalizeInPlace(out, dim);
      result.sizes[c] = uint32_t(leaf.count);
    }
  }
  return result;
}

SizeSummary SummarizeSizes(std::span<const uint32_t> sizes) {
  SizeSummary s;
  if (sizes.empty()) return s;
  std::vector<uint32_t> sorted(sizes.begin(), sizes.end());
  std::sort(sorted.begin(), sorted.end());
  s.count = sorted.size();
  s.min = sorted.front();
  s.max = sorted.back();
  s.median = sorted[s.count / 2];
  s.p99 = PercentileOfSorted<uint32_t>(sorted, 0.99);
  double sum = 0;
  for (const uint32_t v : sorted) sum += v;
  s.mean = sum / double(s.count);
  return s;
}

}  // namespace strata::index
