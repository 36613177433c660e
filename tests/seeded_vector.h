#pragma once
// Deterministic test vectors, shared by the client's integration tests
// (tests/client/integration_util.h) and the cluster tests (tests/cluster/cluster_fixture.h).
//
// Thread-safe: a pure function.

#include <cstdint>
#include <vector>

namespace strata::test_vectors {

// `dim` components in [-1, 1), a pure function of `seed` (splitmix64).
inline std::vector<float> SeededVector(uint64_t seed, uint32_t dim) {
  std::vector<float> v(dim);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  for (uint32_t i = 0; i < dim; ++i) {
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    v[i] = float(double(z >> 11) / double(1ull << 53) * 2.0 - 1.0);
  }
  return v;
}

}  // namespace strata::test_vectors
