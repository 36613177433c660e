// Scalar reference kernels.
//
// These are the ground truth the SIMD levels are tested against, so they stay
// deliberately plain: one float accumulator, summed in index order. This file is
// compiled without -mfma and under ISO C++ (so -ffp-contract=off), and GCC does not
// reorder float reductions without -ffast-math, so the loops below are exactly the
// sums they appear to be. On integer-valued inputs every partial sum is an exactly
// representable integer, which is what lets the tests demand bit-equal results
// from the SIMD levels whatever order they add in.

#include <cstddef>

#include "index/distance/distance.h"
#include "index/distance/half.h"

namespace strata::index {
namespace {

float L2Sq(const float* a, const float* b, size_t dim) {
  float sum = 0.0f;
  for (size_t i = 0; i < dim; ++i) {
    const float diff = a[i] - b[i];
    sum += diff * diff;
  }
  return sum;
}

float Ip(const float* a, const float* b, size_t dim) {
  float sum = 0.0f;
  for (size_t i = 0; i < dim; ++i) sum += a[i] * b[i];
  return sum;
}

void L2SqBatch(const float* query, const float* rows, size_t n, size_t dim, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = L2Sq(query, rows + i * dim, dim);
}

void IpBatch(const float* query, const float* rows, size_t n, size_t dim, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = Ip(query, rows + i * dim, dim);
}

float L2SqF16(const float* q, const uint16_t* v, size_t dim) {
  float sum = 0.0f;
  for (size_t i = 0; i < dim; ++i) {
    const float diff = q[i] - HalfToFloat(v[i]);
    sum += diff * diff;
  }
  return sum;
}

float IpF16(const float* q, const uint16_t* v, size_t dim) {
  float sum = 0.0f;
  for (size_t i = 0; i < dim; ++i) sum += q[i] * HalfToFloat(v[i]);
  return sum;
}

void ToF16(const float* in, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = FloatToHalf(in[i]);
}

void FromF16(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = HalfToFloat(in[i]);
}

}  // namespace

namespace detail {
const DistanceKernels& ScalarKernels() {
  static constexpr DistanceKernels kTable = {&L2Sq,    &Ip,    &L2SqBatch, &IpBatch,
                                             &L2SqF16, &IpF16, &ToF16,     &FromF16,
                                             SimdLevel::kScalar};
  return kTable;
}
}  // namespace detail

}  // namespace strata::index
