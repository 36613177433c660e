// SQ8 AVX-512 kernels (compiled with the AVX-512 flags of index/distance; called
// only after the CPU check there). Tails are masked loads, never a scalar loop
// and never a read past the end. The int8 kernel comes twice: with AVX512_VNNI
// (vpdpbusd: 64 byte products summed into 16 int32 lanes per instruction; only
// that function is compiled for VNNI, through a target attribute, and it is
// called only when the CPU has VNNI) and with AVX-512 BW (widen to 16 bits, vpmaddwd).

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "index/codes/sq8.h"
#include "index/codes/sq8_avx512_kernels.h"

namespace strata::index {
namespace {

using sq8_avx512::DotF32U8;
using sq8_avx512::DotS8U8Vnni;
using sq8_avx512::S8To16;
using sq8_avx512::U8To16;
using sq8_avx512::Widen16;
using sq8_avx512::Widen16Masked;
using sq8_avx512::HSum;

int32_t DotS8U8Bw(const int8_t* q, const uint8_t* c, size_t dim) {
  __m512i acc = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 32 <= dim; i += 32) {
    const __m512i cw = U8To16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + i)));
    const __m512i qw = S8To16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i)));
    acc = _mm512_add_epi32(acc, _mm512_madd_epi16(cw, qw));
  }
  if (i < dim) {
    const __mmask32 m = static_cast<__mmask32>((uint64_t(1) << (dim - i)) - 1);
    const __m512i cw = U8To16(_mm256_maskz_loadu_epi8(m, c + i));
    const __m512i qw = S8To16(_mm256_maskz_loadu_epi8(m, q + i));
    acc = _mm512_add_epi32(acc, _mm512_madd_epi16(cw, qw));
  }
  return HSum(acc);
}

void Decode(const uint8_t* c, const float* lo, const float* scale, float* out, size_t dim) {
  size_t i = 0;
  // Multiply then add (no FMA), rounding exactly as the scalar reference does.
  for (; i + 16 <= dim; i += 16) {
    const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(scale + i), Widen16(c + i));
    _mm512_storeu_ps(out + i, _mm512_add_ps(_mm512_loadu_ps(lo + i), x));
  }
  if (i < dim) {
    const __mmask16 m = static_cast<__mmask16>((1u << (dim - i)) - 1u);
    const __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, scale + i), Widen16Masked(c + i, m));
    _mm512_mask_storeu_ps(out + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, lo + i), x));
  }
}

}  // namespace

namespace detail {
const Sq8Kernels& Sq8Avx512Kernels() {
  static constexpr Sq8Kernels kTable = {&DotF32U8, &DotS8U8Bw, &Decode, SimdLevel::kAvx512, false};
  return kTable;
}
const Sq8Kernels& Sq8Avx512VnniKernels() {
  static constexpr Sq8Kernels kTable = {&DotF32U8, &DotS8U8Vnni, &Decode, SimdLevel::kAvx512, true};
  return kTable;
}
}  // namespace detail

}  // namespace strata::index
