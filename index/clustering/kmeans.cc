#include "index/clustering/kmeans.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>

#include "index/clustering/clustering_internal.h"
#include "index/distance/distance.h"

namespace strata::index {
namespace clustering_internal {
std::vector<float> SquaredNorms(const VectorSet& centroids) {
  const DistanceKernels& kern = Kernels();
  std::vector<float> norms(centroids.size());
  for (size_t c = 0; c < centroids.size(); ++c) {
    norms[c] = kern.ip(centroids.row(c), centroids.row(c), centroids.dim());
  }
  return norms;
}

void InitCentroids(const PointSet& pts, size_t k, bool plus_plus, size_t init_sample,
                   uint64_t seed, int threads, VectorSet* centroids) {
  const size_t n = pts.size();
  const size_t dim = pts.dim();
  STRATA_CHECK(k >= 1 && k <= n && centroids->size() == k && centroids->dim() == dim);
  std::mt19937_64 rng(MixSeed(seed, 0x1417));

  // Sample m distinct positions (partial Fisher-Yates), kept in ascending order for locality.
  const size_t m = init_sample == 0 ? n : std::min(n, std::max(init_sample, k));
  std::vector<uint32_t> sample(n);
  std::iota(sample.begin(), sample.end(), 0u);
  if (m < n) {
    for (size_t i = 0; i < m; ++i) std::swap(sample[i], sample[i + UniformIndex(rng, n - i)]);
    sample.resize(m);
    std::sort(sample.begin(), sample.end());
  }
  sample.shrink_to_fit();

  std::vector<uint8_t> chosen(m, 0);
  auto take = [&](size_t c, size_t s) {
    chosen[s] = 1;
    std::memcpy(centroids->mutable_row(c), pts.vec(sample[s]), dim * sizeof(float));
  };

  if (!plus_plus) {
    // k distinct sample points: a partial shuffle of the sample positions.
    std::vector<uint32_t> idx(m);
    std::iota(idx.begin(), idx.end(), 0u);
    for (size_t c = 0; c < k; ++c) {
      std::swap(idx[c], idx[c + UniformIndex(rng, m - c)]);
      take(c, idx[c]);
    }
    return;
  }

  // k-means++: each next seed is drawn with probability proportional to the squared
  // distance to the nearest seed so far. The total is summed sequentially so the draw
  // does not depend on the thread count.
  const DistanceKernels& kern = Kernels();
  std::vector<float> mind(m, std::numeric_limits<float>::infinity());
  take(0, UniformIndex(rng, m));
  for (size_t c = 1; c < k; ++c) {
    const float* last = centroids->row(c - 1);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t s = 0; s < m; ++s) {
      mind[s] = std::min(mind[s], kern.l2sq(pts.vec(sample[s]), last, dim));
    }
    double total = 0;
    for (size_t s = 0; s < m; ++s) total += chosen[s] ? 0.0 : double(mind[s]);
    size_t pick = m;
    if (total > 0) {
      const double u = Uniform01(rng) * total;
      double cum = 0;
      size_t last_positive = m;
      for (size_t s = 0; s < m; ++s) {
        if (chosen[s] || mind[s] <= 0) continue;
        last_positive = s;
        cum += mind[s];
        if (cum > u) {
          pick = s;
          break;
        }
      }
      if (pick == m) pick = last_positive;  // rounding at the very end of the scan
    }
    if (pick == m) {
      // Every remaining sample point coincides with a seed (duplicates): take the
      // first one not chosen yet; empty-cluster re-seeding sorts it out later.
      for (size_t s = 0; s < m; ++s) {
        if (!chosen[s]) {
          pick = s;
          break;
        }
      }
    }
    take(c, pick);
  }
}

bool UpdateCentroids(const PointSet& pts, Metric metric, int threads,
                     std::span<uint32_t> assignment, std::span<float> dist, VectorSet* centroids,
                     std::vector<uint32_t>* sizes_out) {
  const size_t n = pts.size();
  const size_t k = centroids->size();
  const size_t dim = pts.dim();
  std::vector<uint32_t>& sizes = *sizes_out;
  sizes.assign(k, 0);
  for (size_t p = 0; p < n; ++p) ++sizes[assignment[p]];

  // Members of each cluster in ascending position order (counting sort).
  std::vector<size_t> offsets(k + 1, 0);
  for (size_t c = 0; c < k; ++c) offsets[c + 1] = offsets[c] + sizes[c];
  std::vector<uint32_t> members(n);
  {
    std::vector<size_t> fill(offsets.begin(), offsets.end() - 1);
    for (size_t p = 0; p < n; ++p) members[fill[assignment[p]]++] = uint32_t(p);
  }

  // Re-seed empty clusters from the farthest point of the largest cluster. Moved
  // points keep their slot in the old cluster's member list and are skipped there
  // (their assignment no longer matches).
  std::vector<std::pair<uint32_t, uint32_t>> reseeded;  // (cluster, position)
  for (size_t j = 0; j < k; ++j) {
    if (sizes[j] != 0) continue;
    const size_t largest = std::max_element(sizes.begin(), sizes.end()) - sizes.begin();
    if (sizes[largest] < 2) break;  // cannot happen when k <= n
    size_t far = n;
    for (size_t i = offsets[largest]; i < offsets[largest + 1]; ++i) {
      const uint32_t p = members[i];
      if (assignment[p] != largest) continue;
      if (far == n || dist[p] > dist[far]) far = p;
    }
    assignment[far] = uint32_t(j);
    dist[far] = 0;
    --sizes[largest];
    sizes[j] = 1;
    reseeded.emplace_back(uint32_t(j), uint32_t(far));
  }

#pragma omp parallel num_threads(threads)
  {
    std::vector<double> acc(dim);
#pragma omp for schedule(dynamic, 1)
    for (size_t c = 0; c < k; ++c) {
      std::fill(acc.begin(), acc.end(), 0.0);
      size_t count = 0;
      for (size_t i = offsets[c]; i < offsets[c + 1]; ++i) {
        const uint32_t p = members[i];
        if (assignment[p] != c) continue;
        const float* x = pts.vec(p);
        for (size_t d = 0; d < dim; ++d) acc[d] += x[d];
        ++count;
      }
      if (count == 0) continue;  // re-seeded below
      float* out = centroids->mutable_row(c);
      const double inv = 1.0 / double(count);
      for (size_t d = 0; d < dim; ++d) out[d] = float(acc[d] * inv);
      if (metric != Metric::kL2) NormalizeInPlace(out, dim);
    }
  }
  for (const auto& [c, p] : reseeded) {
    std::memcpy(centroids->mutable_row(c), pts.vec(p), dim * sizeof(float));
  }
  return !reseeded.empty();
}

}  // namespace clustering_internal

using clustering_internal::PointSet;

Result<KMeansResult> KMeans(const VectorSet& data, std::span<const uint32_t> rows,
                            const KMeansOptions& options) {
  if (data.empty() || data.dim() == 0) return Error(InvalidArgument("k-means: data is empty"));
  if (data.size() > std::numeric_limits<uint32_t>::max()) {
    return Error(InvalidArgument("k-means: {} rows exceed the 32-bit row id limit", data.size()));
  }
  const PointSet pts{&data, rows};
  const size_t n = pts.size();
  const size_t dim = data.dim();
  const size_t k = options.k;
  if (k == 0) return Error(InvalidArgument("k-means: k must be at least 1"));
  if (k > n) return Error(InvalidArgument("k-means: k = {} exceeds the {} points", k, n));
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] >= data.size()) {
      return Error(InvalidArgument("k-means: rows[{}] = {} is out of range ({} rows)", i, rows[i],
                                   data.size()));
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (!AllFinite(pts.vec(i), dim)) {
      return Error(InvalidArgument("k-means: row {} has a NaN or infinite component",
                                   rows.empty() ? i : rows[i]));
    }
  }

  const int threads = clustering_internal::ResolveThreads(options.num_threads);
  const bool l2 = options.metric == Metric::kL2;
  const DistanceKernels& kern = Kernels();

  KMeansResult result;
  STRATA_ASSIGN_OR_RETURN(result.centroids, VectorSet::Create(k, dim));
  clustering_internal::InitCentroids(pts, k, options.kmeans_plus_plus, options.init_sample,
                                     options.seed, threads, &result.centroids);
  if (!l2) {
    for (size_t c = 0; c < k; ++c) NormalizeInPlace(result.centroids.mutable_row(c), dim);
  }

  std::vector<uint32_t>& assignment = result.assignment;
  assignment.assign(n, std::numeric_limits<uint32_t>::max());
  std::vector<uint32_t> best(n);
  std::vector<float> best_score(n);
  std::vector<float> dist(n);
  const uint32_t rounds = std::max<uint32_t>(1, options.iterations);
  for (uint32_t it = 0; it < rounds; ++it) {
    const std::vector<float> cnorms =
        l2 ? clustering_internal::SquaredNorms(result.centroids) : std::vector<float>();
    clustering_internal::ScanBlocks(
        pts, result.centroids, l2 ? cnorms.data() : nullptr, threads,
        [&](size_t p0, size_t nb, size_t c0, size_t nc, const float* tile, size_t ldo) {
          for (size_t i = 0; i < nb; ++i) {
            const float* t = tile + i * ldo;
            float bd = c0 == 0 ? std::numeric_limits<float>::infinity() : best_score[p0 + i];
            uint32_t bc = c0 == 0 ? 0 : best[p0 + i];
            for (size_t j = 0; j < nc; ++j) {
              if (t[j] < bd) {
                bd = t[j];
                bc = uint32_t(c0 + j);
              }
            }
            best_score[p0 + i] = bd;
            best[p0 + i] = bc;
          }
        });
    // Exact distance to the chosen centroid (|c|^2 - 2<x,c> + |x|^2 cancels badly
    // near a centroid), and how many points moved.
    size_t changed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : changed)
    for (size_t p = 0; p < n; ++p) {
      const uint32_t c = best[p];
      dist[p] = l2 ? kern.l2sq(pts.vec(p), result.centroids.row(c), dim) : 1.0f + best_score[p];
      changed += assignment[p] != c;
      assignment[p] = c;
    }
    const bool reseeded = clustering_internal::UpdateCentroids(
        pts, options.metric, threads, assignment, dist, &result.centroids, &result.sizes);
    double objective = 0;
    for (size_t p = 0; p < n; ++p) objective += dist[p];
    result.objective = objective;
    // Nothing moved: the update reproduced the previous centroids.
    if (changed == 0 && !reseeded) break;
  }
  return result;
}

}  // namespace strata::index
