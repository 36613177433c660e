// AVX2+FMA multi-query block kernel (compiled with -mavx2 -mfma).
//
// Same scheme as the AVX-512 version with 16-row tiles: 6 queries x 16 rows =
// 12 ymm accumulators, leaving registers for the two row loads and a broadcast
// (16 ymm registers in all).
#include <immintrin.h>

#include <algorithm>

#include "index/distance/block.h"

namespace strata::index::detail {
namespace {

constexpr size_t kWidth = 16;
constexpr int kQueries = 6;

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
                        size_t nr) {
  __m256 acc0[Q], acc1[Q];
  for (int i = 0; i < Q; ++i) {
    acc0[i] = _mm256_setzero_ps();
    acc1[i] = _mm256_setzero_ps();
  }
  for (size_t j = 0; j < dim; ++j) {
    const __m256 x0 = _mm256_load_ps(packed + j * kWidth);
    const __m256 x1 = _mm256_load_ps(packed + j * kWidth + 8);
    for (int i = 0; i < Q; ++i) {
      const __m256 b = _mm256_broadcast_ss(q + i * dim + j);
      acc0[i] = _mm256_fmadd_ps(b, x0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(b, x1, acc1[i]);
    }
  }
  if (nr == kWidth) {
    for (int i = 0; i < Q; ++i) {
      _mm256_storeu_ps(out + i * ldo, acc0[i]);
      _mm256_storeu_ps(out + i * ldo + 8, acc1[i]);
    }
  } else {
    alignas(32) float tmp[kWidth];
    for (int i = 0; i < Q; ++i) {
      _mm256_store_ps(tmp, acc0[i]);
      _mm256_store_ps(tmp + 8, acc1[i]);
      std::copy(tmp, tmp + nr, out + i * ldo);
    }
  }
}

using MicroFn = void (*)(const float*, size_t, const float*, float*, size_t, size_t);
constexpr MicroFn kMicro[kQueries + 1] = {nullptr,        MicroKernel<1>, MicroKernel<2>,
                                          MicroKernel<3>, MicroKernel<4>, MicroKernel<5>,
                                          MicroKernel<6>};

void IpBlockAvx2(const float* queries, size_t nq, const float* rows, size_t n, size_t dim,
                 float* out, size_t ldo, float* scratch) {
  for (size_t r0 = 0; r0 < n; r0 += kWidth) {
    const size_t nr = std::min(kWidth, n - r0);
    PackRows(rows + r0 * dim, nr, dim, scratch);
    size_t q0 = 0;
    for (; q0 + kQueries <= nq; q0 += kQueries) {
      MicroKernel<kQueries>(queries + q0 * dim, dim, scratch, out + q0 * ldo + r0, ldo, nr);
    }
    if (q0 < nq) kMicro[nq - q0](queries + q0 * dim, dim, scratch, out + q0 * ldo + r0, ldo, nr);
  }
}

size_t ScratchAvx2(size_t dim) { return dim * kWidth; }

}  // namespace

const BlockKernels& Avx2BlockKernels() {
  static const BlockKernels k{IpBlockAvx2, ScratchAvx2, SimdLevel::kAvx2};
  return k;
}

}  // namespace strata::index::detail
