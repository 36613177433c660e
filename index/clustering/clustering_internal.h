#pragma once
// Building blocks shared by kmeans.cc and balanced.cc. Not a public interface:
// arguments are assumed validated (finite data, k <= number of points, rows in range).

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <span>
#include <vector>

#include "core/metric.h"
#include "core/vector_set.h"
#include "index/distance/block.h"

namespace strata::index::clustering_internal {

// The points being clustered: rows[i] of data, or row i when rows is empty.
// "Position" below always means the index i into this list.
struct PointSet {
  const VectorSet* data = nullptr;
  std::span<const uint32_t> rows;

  size_t size() const { return rows.empty() ? data->size() : rows.size(); }
  size_t dim() const { return data->dim(); }
  const float* vec(size_t i) const { return data->row(rows.empty() ? i : rows[i]); }
};

// Block sizes for the assignment scans (same reasoning as FlatIndex::SearchBatch):
// kPointBlock points share each packed tile of centroids, and a tile of
// kPointBlock x kCentroidBlock scores (512 KiB at most) stays within L2.
inline constexpr size_t kPointBlock = 256;
inline constexpr size_t kCentroidBlock = 512;

inline int ResolveThreads(int num_threads) {
  return num_threads > 0 ? num_threads : omp_get_max_threads();
}

// splitmix64: derives independent seeds (per split, per child, per purpose).
inline uint64_t MixSeed(uint64_t seed, uint64_t salt) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (salt + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Uniform double in [0, 1) from 53 random bits (std::uniform_real_distribution's
// output is implementation-defined; this is the same everywhere).
inline double Uniform01(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

// Uniform integer in [0, n) by multiply-shift (n > 0; bias below 2^-32 for n < 2^32).
inline size_t UniformIndex(std::mt19937_64& rng, size_t n) {
  return size_t((static_cast<unsigned __int128>(rng()) * n) >> 64);
}

// Seeded Fisher-Yates shuffle, same on every standard library (std::shuffle is not).
inline void Shuffle(std::span<uint32_t> v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[UniformIndex(rng, i)]);
}

// Squared norms of the centroids (for L2 scoring as |c|^2 - 2<x, c>).
std::vector<float> SquaredNorms(const VectorSet& centroids);

// Scans every point against every centroid with the block kernel, in parallel over
// blocks of kPointBlock points (block b = positions [b * kPointBlock, ...), fixed
// regardless of thread count). For each block and each chunk of up to
// kCentroidBlock centroids, calls
//   visit(p0, nb, c0, nc, tile, ldo)
// where tile[i * ldo + j] is the partial distance of point p0 + i to centroid c0 + j:
// |c|^2 - 2<x, c> when `cnorms` is given (L2), else -<x, c>. Chunks of one block
// are visited in order by one thread; `visit` may write per-position state freely.
template <typename Visit>
void ScanBlocks(const PointSet& pts, const VectorSet& centroids, const float* cnorms, int threads,
                Visit&& visit) {
  const size_t n = pts.size();
  const size_t k = centroids.size();
  const size_t dim = pts.dim();
  const BlockKernels& block = GetBlockKernels();
  const size_t ldo = std::min(k, kCentroidBlock);
  const size_t num_blocks = (n + kPointBlock - 1) / kPointBlock;
  const bool contiguous = pts.rows.empty();
#pragma omp parallel num_threads(threads)
  {
    // Per-thread scratch, sized to this problem (small splits use small tiles).
    std::unique_ptr<float[], AlignedFree> tile(
        static_cast<float*>(AlignedAlloc(kPointBlock * ldo * sizeof(float))));
    std::unique_ptr<float[], AlignedFree> scratch(static_cast<float*>(
        AlignedAlloc(std::max<size_t>(1, block.scratch_floats(dim)) * sizeof(float))));
    std::unique_ptr<float[], AlignedFree> gathered(
        contiguous ? nullptr
                   : static_cast<float*>(AlignedAlloc(kPointBlock * dim * sizeof(float))));
    STRATA_CHECK(tile && scratch && (contiguous || gathered));
#pragma omp for schedule(dynamic, 1)
    for (size_t b = 0; b < num_blocks; ++b) {
      const size_t p0 = b * kPointBlock;
      const size_t nb = std::min(kPointBlock, n - p0);
      const float* x;
      if (contiguous) {
        x = pts.data->row(p0);
      } else {
        // Gather the block's rows so the kernel sees a contiguous query matrix.
        for (size_t i = 0; i < nb; ++i) {
          std::memcpy(gathered.get() + i * dim, pts.vec(p0 + i), dim * sizeof(float));
        }
        x = gathered.get();
      }
      for (size_t c0 = 0; c0 < k; c0 += kCentroidBlock) {
        const size_t nc = std::min(kCentroidBlock, k - c0);
        block.ip_block(x, nb, centroids.row(c0), nc, dim, tile.get(), ldo, scratch.get());
        for (size_t i = 0; i < nb; ++i) {
          float* t = tile.get() + i * ldo;
          if (cnorms != nullptr) {
            for (size_t j = 0; j < nc; ++j) t[j] = cnorms[c0 + j] - 2.0f * t[j];
          } else {
            for (size_t j = 0; j < nc; ++j) t[j] = -t[j];
          }
        }
        visit(p0, nb, c0, nc, static_cast<const float*>(tile.get()), ldo);
      }
    }
  }
}

// Fills `centroids` (k x dim, already sized) with k seeds drawn from a seeded sample
// of up to `init_sample` points (0 = all, raised to k): k-means++ D^2 sampling (on
// squared L2) or, without it, k distinct sample points at random.
void InitCentroids(const PointSet& pts, size_t k, bool plus_plus, size_t init_sample,
                   uint64_t seed, int threads, VectorSet* centroids);

// Given an assignment (position -> cluster) and each point's distance to its
// centroid, re-seeds empty clusters (see kmeans.h; moved points get distance 0),
// then sets every centroid to the mean of its members (double sums in ascending
// position order, parallel over centroids), normalized unless metric is kL2.
// Fills sizes (k entries). Returns true when any cluster was re-seeded.
bool UpdateCentroids(const PointSet& pts, Metric metric, int threads,
                     std::span<uint32_t> assignment, std::span<float> dist,
                     VectorSet* centroids, std::vector<uint32_t>* sizes);

}  // namespace strata::index::clustering_internal
