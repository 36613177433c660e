#pragma once
// Distance kernels: squared L2 and inner product over float32 vectors (and a
// float32 query against half-precision stored vectors).
//
// Three implementations of every kernel -- a scalar reference, AVX2+FMA and
// AVX-512 -- each compiled in its own translation unit with its own ISA flags,
// so the project as a whole runs on any x86-64. The best level the CPU supports
// is chosen once, on first call of Kernels(), and called through plain function
// pointers (no virtual call or std::function per distance).
//
// Cosine is not a kernel: vectors are normalized once (at insert and at query
// time) and scored with inner product. See core/metric.h.
//
// All kernels accept unaligned pointers and any dim >= 1. Thread-safe: the
// tables are immutable after initialization.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/metric.h"

namespace strata::index {

enum class SimdLevel : uint8_t { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

std::string_view SimdLevelName(SimdLevel level);
// "scalar", "avx2", "avx512", or "auto" (= best supported).
Result<SimdLevel> ParseSimdLevel(std::string_view name);

struct DistanceKernels {
  // One pair.
  float (*l2sq)(const float* a, const float* b, size_t dim);
  float (*ip)(const float* a, const float* b, size_t dim);  // plain dot product, not negated
  // One query against n contiguous rows (row i at rows + i * dim): out[i].
  void (*l2sq_batch)(const float* query, const float* rows, size_t n, size_t dim, float* out);
  void (*ip_batch)(const float* query, const float* rows, size_t n, size_t dim, float* out);
  // A float32 query against one vector stored as IEEE half (binary16) values.
  float (*l2sq_f16)(const float* query, const uint16_t* v, size_t dim);
  float (*ip_f16)(const float* query, const uint16_t* v, size_t dim);
  // Conversions, rounding to nearest even (see half.h for the scalar rules).
  void (*to_f16)(const float* in, uint16_t* out, size_t n);
  void (*from_f16)(const uint16_t* in, float* out, size_t n);
  SimdLevel level;
};

// Best level this CPU supports (or the level forced by SetSimdOverride).
const DistanceKernels& Kernels();
// A specific level; falls back to the best supported level below it.
const DistanceKernels& KernelsFor(SimdLevel level);
// True when this CPU (and this build) can run `level`.
bool SimdSupported(SimdLevel level);
SimdLevel BestSimdLevel();
// Forces Kernels() to a level (for --simd); must be called before the first search.
Status SetSimdOverride(SimdLevel level);

// Metric-aware distance where smaller is closer: l2sq for kL2, -ip otherwise.
// (Cosine inputs must already be normalized.)
inline float Distance(const DistanceKernels& k, Metric m, const float* a, const float* b,
                      size_t dim) {
  return m == Metric::kL2 ? k.l2sq(a, b, dim) : -k.ip(a, b, dim);
}
inline float Distance(const DistanceKernels& k, Metric m, const float* a, const uint16_t* b,
                      size_t dim) {
  return m == Metric::kL2 ? k.l2sq_f16(a, b, dim) : -k.ip_f16(a, b, dim);
}

// Per-level tables, defined in distance_{scalar,avx2,avx512}.cc.
namespace detail {
const DistanceKernels& ScalarKernels();
const DistanceKernels& Avx2Kernels();
const DistanceKernels& Avx512Kernels();
}  // namespace detail

}  // namespace strata::index
