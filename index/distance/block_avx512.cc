// AVX-512 multi-query block kernel (compiled with -mavx512f and friends).
//
// Rows are packed 32 at a time into a transposed tile (dim x 32 floats), so
// that for each dimension j two aligned loads give the j-th component of 32
// rows. A micro-kernel then holds 8 queries x 32 rows = 16 zmm accumulators:
// per j, 2 loads + 8 broadcasts feed 16 independent FMAs, which keeps both FMA
// ports busy without a horizontal reduction at the end.
#include <immintrin.h>

#include <algorithm>

#include "index/distance/block.h"

namespace strata::index::detail {
namespace {

constexpr size_t kWidth = 32;  // rows per packed tile
constexpr int kQueries = 8;    // queries per micro-kernel call

// scratch[j * 32 + r] = rows[r * dim + j]; rows past nr are zero.
void PackRows(const float* rows, size_t nr, size_t dim, float* scratch) {
  if (nr < kWidth) std::fill(scratch, scratch + dim * kWidth, 0.0f);
  for (size_t r = 0; r < nr; ++r) {
    const float* src = rows + r * dim;
    float* dst = scratch + r;
    for (size_t j = 0; j < dim; ++j) dst[j * kWidth] = src[j];
  }
}

template <int Q>
inline void MicroKernel(const float* q, size_t dim, const float* packed, float* out, size_t ldo,
                        __mmask16 m0, __mmask16 m1) {
  __m512 acc0[Q], acc1[Q];
  for (int i = 0; i < Q; ++i) {
    acc0[i] = _mm512_setzero_ps();
    acc1[i] = _mm512_setzero_ps();
  }
  for (size_t j = 0; j < dim; ++j) {
    const __m512 x0 = _mm512_load_ps(packed + j * kWidth);
    const __m512 x1 = _mm512_load_ps(packed + j * kWidth + 16);
    for (int i = 0; i < Q; ++i) {
      const __m512 b = _mm512_set1_ps(q[i * dim + j]);
      acc0[i] = _mm512_fmadd_ps(b, x0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(b, x1, acc1[i]);
    }
  }
  for (int i = 0; i < Q; ++i) {
    _mm512_mask_storeu_ps(out + i * ldo, m0, acc0[i]);
    _mm512_mask_storeu_ps(out + i * ldo + 16, m1, acc1[i]);
  }
}

using MicroFn = void (*)(const float*, size_t, const float*, float*, size_t, __mmask16, __mmask16);
constexpr MicroFn kMicro[kQueries + 1] = {nullptr,         MicroKernel<1>, MicroKernel<2>,
                                          MicroKernel<3>,  MicroKernel<4>, MicroKernel<5>,
                                          MicroKernel<6>,  MicroKernel<7>, MicroKernel<8>};

void IpBlockAvx512(const float* queries, size_t nq, const float* rows, size_t n, size_t dim,
                   float* out, size_t ldo, float* scratch) {
  for (size_t r0 = 0; r0 < n; r0 += kWidth) {
    const size_t nr = std::min(kWidth, n - r0);
    PackRows(rows + r0 * dim, nr, dim, scratch);
    const __mmask16 m0 = nr >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? __mmask16(0xFFFF)
                         : nr > 16 ? __mmask16((1u << (nr - 16)) - 1)
                                   : __mmask16(0);
    size_t q0 = 0;
    for (; q0 + kQueries <= nq; q0 += kQueries) {
      MicroKernel<kQueries>(queries + q0 * dim, dim, scratch, out + q0 * ldo + r0, ldo, m0, m1);
    }
    if (q0 < nq) {
      kMicro[nq - q0](queries + q0 * dim, dim, scratch, out + q0 * ldo + r0, ldo, m0, m1);
    }
  }
}

size_t ScratchAvx512(size_t dim) { return dim * kWidth; }

}  // namespace

const BlockKernels& Avx512BlockKernels() {
  static const BlockKernels k{IpBlockAvx512, ScratchAvx512, SimdLevel::kAvx512};
  return k;
}

}  // namespace strata::index::detail
