// Scalar reference for the multi-query block kernel: a plain triple loop,
// accumulating in index order so integer-valued inputs give exact results.
#include "index/distance/block.h"

namespace strata::index::detail {
namespace {

void IpBlockScalar(const float* queries, size_t nq, const float* rows, size_t n, size_t dim,
                   float* out, size_t ldo, float* /*scratch*/) {
  for (size_t q = 0; q < nq; ++q) {
    const float* qv = queries + q * dim;
    for (size_t i = 0; i < n; ++i) {
      const float* r = rows + i * dim;
      float s = 0;
      for (size_t j = 0; j < dim; ++j) s += qv[j] * r[j];
      out[q * ldo + i] = s;
    }
  }
}

size_t ScratchScalar(size_t) { return 0; }

}  // namespace

const BlockKernels& ScalarBlockKernels() {
  static const BlockKernels k{IpBlockScalar, ScratchScalar, SimdLevel::kScalar};
  return k;
}

}  // namespace strata::index::detail
