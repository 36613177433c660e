#pragma once
// Seeded synthetic data shared by the index tests.

#include <random>
#include <vector>

#include "core/vector_set.h"

namespace strata::index::test_data {

// Gaussian clusters: `clusters` centres drawn from `center_seed`, points around them.
// Base vectors and queries built with the same centre seed share the clusters, so the
// nearest neighbours of a query are well separated from the rest and recall is meaningful.
inline VectorSet Clustered(size_t n, size_t dim, uint32_t seed, uint32_t center_seed = 1000,
                           size_t clusters = 16) {
  std::mt19937 crng(center_seed);
  std::normal_distribution<float> g(0, 1);
  std::vector<float> centers(clusters * dim);
  for (float& c : centers) c = 3.0f * g(crng);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, clusters - 1);
  auto s = *VectorSet::Create(n, dim);
  for (size_t i = 0; i < n; ++i) {
    const float* c = centers.data() + pick(rng) * dim;
    float* row = s.mutable_row(i);
    for (size_t j = 0; j < dim; ++j) row[j] = c[j] + g(rng);
  }
  return s;
}

}  // namespace strata::index::test_data
