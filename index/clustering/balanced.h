#pragma once
// Balanced hierarchical clustering: SPANN's posting-list partition.
//
// SPANN (Chen et al., "SPANN: Highly-efficient Billion-scale Approximate Nearest
// Neighbor Search", NeurIPS 2021, section 3.1) keeps posting lists short and of
// similar length, because query latency is set by the longest lists read. It
// recursively splits the data with a balance-constrained k-means until every
// cluster is small enough. This is that algorithm:
//
// Recursion. A node with n > max_cluster_size points is split into k children,
// with k chosen so the leaves come out nearly full: with leaf capacity
// f = floor(max_cluster_size / (1 + tol)) and L = ceil(n / f) leaves needed,
// k = L when L <= branching, else k = ceil(L / ceil(L / branching)) (<= branching),
// so each child needs a whole number of further leaves. Children of size
// <= max_cluster_size are final; larger ones are split again. tol = 0.2.
//
// One split (balance-constrained k-means on the node's rows):
//   1. k-means++ seeding on up to 65536 of the node's points.
//   2. Each iteration: distances d(x, c_j) from every point to every centroid are
//      computed in parallel (block kernel; squared L2, or 1 - <x, c> for ip and
//      cosine). Then one sequential greedy pass over the points in a fixed, seeded
//      shuffled order assigns x to argmin_j d(x, c_j) + lambda * |C_j|, where |C_j|
//      counts the points already assigned to j in this pass (ties: smaller j).
//      Centroids are then moved to the means of their clusters (re-normalized for
//      ip and cosine; empty clusters re-seeded as in kmeans.h).
//   3. lambda starts, in the first iteration, at
//        lambda = (mean over points of min_j d(x, c_j)) / (n / k)
//      (so a cluster of average size costs about one average distance), floored
//      at 1e-12 so identical points still spread. After each greedy pass, with
//      target = max(ceil(n/k), floor(ceil(n/k) * (1 + tol))): lambda *= 2 if the
//      largest cluster exceeds target, else lambda /= 2.
//   4. The last pass's assignment is kept only if its largest cluster is within
//      target; otherwise lambda is doubled and the greedy pass repeated (on the
//      same distances) up to 32 times, and if that still fails a capacity-capped
//      greedy pass (no cluster above target) is used. So every split makes
//      progress and each child holds at most target points.
//
// Determinism: results depend only on the data and options.seed, not on thread
// count or scheduling. Each split's seed is derived from its parent's seed and its
// child index (splitmix64); nodes of one level are split in parallel (large ones
// one at a time with all threads, small ones concurrently one thread each), and
// clusters are numbered by their position in the final row permutation.
//
// Memory: one permutation of the row ids (4 bytes per row) plus, per split in
// flight, n x k floats of distances and a few 4-byte arrays of n. The data are
// never copied.
//
// Thread-safety: pure functions; concurrent calls are safe.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/metric.h"
#include "core/status.h"
#include "core/vector_set.h"

namespace strata::index {

struct BalancedClusteringOptions {
  size_t max_cluster_size = 64;
  uint32_t branching = 16;  // most children per split (>= 2)
  uint32_t iterations = 10;  // balanced k-means iterations per split (at least one pass)
  uint64_t seed = 1;
  int num_threads = 0;  // 0 = omp_get_max_threads()
  // kCosine and kInnerProduct expect normalized data (the caller normalizes).
  Metric metric = Metric::kL2;
  bool progress = false;  // points finalized / total on stderr (core/progress.h)
};

struct Clustering {
  VectorSet centroids;               // one row per cluster: the mean of its members
                                     // (unit-normalized for kCosine and kInnerProduct)
  std::vector<uint32_t> assignment;  // row -> cluster
  std::vector<uint32_t> sizes;       // per cluster, each in [1, max_cluster_size]
};

// Partitions all rows of `data` into clusters of at most options.max_cluster_size
// rows. Errors (InvalidArgument): empty data, max_cluster_size == 0, branching < 2,
// more than 2^32 - 1 rows, a NaN or infinite component.
Result<Clustering> BalancedHierarchicalClustering(const VectorSet& data,
                                                  const BalancedClusteringOptions& options);

// Distribution of cluster sizes. median = sorted[count / 2]; p99 = the 99th percentile by
// core/stats.h (nearest rank, sorted[ceil(0.99 * count) - 1]). All zero for an empty span.
struct SizeSummary {
  size_t count = 0, min = 0, median = 0, p99 = 0, max = 0;
  double mean = 0;
};
SizeSummary SummarizeSizes(std::span<const uint32_t> sizes);

}  // namespace strata::index
