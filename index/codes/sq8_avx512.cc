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

namespace strata::index {
namespace {

// Horizontal sums without _mm512_reduce_add_* (whose GCC 12 header trips
// -Wuninitialized; see distance_avx512.cc).
inline float HSum(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xFF, v, 0),
                                 _mm512_maskz_extractf32x8_ps(0xFF, v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int32_t HSum(__m512i v) {
  const __m256i h = _mm256_add_epi32(_mm512_maskz_extracti32x8_epi32(0xFF, v, 0),
                                     _mm512_maskz_extracti32x8_epi32(0xFF, v, 1));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// The conversions are the all-ones zero-masking forms: the plain intrinsics build
// on _mm512_undefined_* in GCC 12's headers and trip -Wmaybe-uninitialized.
inline __m512 ToFloat(__m128i bytes) {
  return _mm512_maskz_cvtepi32_ps(0xFFFF, _mm512_maskz_cvtepu8_epi32(0xFFFF, bytes));
}
inline __m512 Widen16(const uint8_t* c) {
  return ToFloat(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c)));
}
inline __m512 Widen16Masked(const uint8_t* c, __mmask16 m) { return ToFloat(_mm_maskz_loadu_epi8(m, c)); }
inline __m512i U8To16(__m256i v) { return _mm512_maskz_cvtepu8_epi16(~__mmask32(0), v); }
inline __m512i S8To16(__m256i v) { return _mm512_maskz_cvtepi8_epi16(~__mmask32(0), v); }

float DotF32U8(const float* q, const uint8_t* c, size_t dim) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= dim; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), Widen16(c + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), Widen16(c + i + 16), s1);
  }
  if (i + 16 <= dim) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), Widen16(c + i), s0);
    i += 16;
  }
  if (i < dim) {
    const __mmask16 m = static_cast<__mmask16>((1u << (dim - i)) - 1u);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), Widen16Masked(c + i, m), s1);
  }
  return HSum(_mm512_add_ps(s0, s1));
}

inline __mmask64 Mask64(size_t remaining) {  // remaining in [1, 63]
  return (__mmask64(1) << remaining) - 1;
}

__attribute__((target("avx512vnni"))) int32_t DotS8U8Vnni(const int8_t* q, const uint8_t* c,
                                                           size_t dim) {
  __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 128 <= dim; i += 128) {
    a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(c + i), _mm512_loadu_si512(q + i));
    a1 = _mm512_dpbusd_epi32(a1, _mm512_loadu_si512(c + i + 64), _mm512_loadu_si512(q + i + 64));
  }
  if (i + 64 <= dim) {
    a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(c + i), _mm512_loadu_si512(q + i));
    i += 64;
  }
  if (i < dim) {
    const __mmask64 m = Mask64(dim - i);
    a1 = _mm512_dpbusd_epi32(a1, _mm512_maskz_loadu_epi8(m, c + i), _mm512_maskz_loadu_epi8(m, q + i));
  }
  return HSum(_mm512_add_epi32(a0, a1));
}

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
