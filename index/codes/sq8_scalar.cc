// SQ8 scalar reference kernels: plain loops summed in index order (compiled without
// -mfma, like distance_scalar.cc), the ground truth the SIMD levels are tested against.

#include <cstddef>
#include <cstdint>

#include "index/codes/sq8.h"

namespace strata::index {
namespace {

float DotF32U8(const float* q, const uint8_t* c, size_t dim) {
  float sum = 0.0f;
  for (size_t i = 0; i < dim; ++i) sum += q[i] * float(c[i]);
  return sum;
}

int32_t DotS8U8(const int8_t* q, const uint8_t* c, size_t dim) {
  int32_t sum = 0;
  for (size_t i = 0; i < dim; ++i) sum += int32_t(q[i]) * int32_t(c[i]);
  return sum;
}

void Decode(const uint8_t* c, const float* lo, const float* scale, float* out, size_t dim) {
  for (size_t i = 0; i < dim; ++i) out[i] = lo[i] + scale[i] * float(c[i]);
}

}  // namespace

namespace detail {
const Sq8Kernels& Sq8ScalarKernels() {
  static constexpr Sq8Kernels kTable = {&DotF32U8, &DotS8U8, &Decode, SimdLevel::kScalar, false};
  return kTable;
}
}  // namespace detail

}  // namespace strata::index
