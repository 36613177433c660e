#pragma once
// Lloyd's k-means over the rows of a VectorSet, with k-means++ seeding.
//
// Used to pick SPANN's posting-list centroids (see balanced.h) and, later, IVF
// coarse quantizers. It runs on millions of rows, so the assignment step is a
// blocked matrix product: 256 points at a time against up to 512 centroids with
// the multi-query block kernel (index/distance/block.h), L2 scored as
// |c|^2 - 2<x, c> (|x|^2 is constant per point and does not change the argmin),
// OpenMP over point blocks.
//
// Determinism: for a given seed the result is bit-identical whatever the thread
// count. Point blocks are fixed by position (not by thread), and every reduction
// runs in a fixed order: each centroid is the double-precision sum of its members
// in ascending position order, and the objective is summed sequentially.
//
// Empty clusters: after each assignment, every empty cluster (in index order) is
// re-seeded with the point farthest from its centroid in the currently largest
// cluster (ties: smaller cluster index, then smaller position); that point moves
// to the empty cluster, whose centroid becomes the point.
//
// Thread-safety: KMeans is a pure function of its arguments; concurrent calls
// are safe. It uses up to `num_threads` OpenMP threads.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/metric.h"
#include "core/status.h"
#include "core/vector_set.h"

namespace strata::index {

struct KMeansOptions {
  uint32_t k = 0;
  // Assignment + update rounds (at least one is run). Stops early when an
  // assignment changes nothing.
  uint32_t iterations = 16;
  uint64_t seed = 1;
  // k-means++ (D^2 sampling) seeding; otherwise k distinct sample points at random.
  bool kmeans_plus_plus = true;
  // Points sampled (without replacement, seeded) for the initialisation; 0 = all.
  // Raised to k when smaller.
  size_t init_sample = 65536;
  int num_threads = 0;  // 0 = omp_get_max_threads()
  Metric metric = Metric::kL2;
};

struct KMeansResult {
  VectorSet centroids;               // k x dim; means of the final assignment
  std::vector<uint32_t> assignment;  // per clustered point (position in `rows`) -> cluster
  std::vector<uint32_t> sizes;       // k entries, all >= 1
  // Sum over points of the distance to the centroid used in the last assignment:
  // squared L2 for kL2, 1 - <x, c> for kInnerProduct and kCosine. (The returned
  // centroids, the means of that assignment, can only lower it.)
  double objective = 0;
};

// Clusters the rows of `data` listed in `rows` (all rows when empty); assignment[i]
// is the cluster of rows[i] (or of row i). For kCosine and kInnerProduct the data
// are expected normalized (the caller normalizes, this function does not copy the
// data) and centroids are re-normalized each iteration (spherical k-means).
//
// Errors (InvalidArgument): empty data or empty dimension, k == 0, k greater than
// the number of points, a row index out of range, more than 2^32 - 1 rows, a NaN
// or infinite component in a clustered row.
Result<KMeansResult> KMeans(const VectorSet& data, std::span<const uint32_t> rows,
                            const KMeansOptions& options);

}  // namespace strata::index
