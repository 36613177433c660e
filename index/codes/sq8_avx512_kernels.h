#pragma once
// Internal to index/: the AVX-512 SQ8 kernels that a walk inlines (see
// hnsw_codes_avx512.cc) and that sq8_avx512.cc puts in its kernel table, written
// once. Everything here is `static inline`: each includer gets its own copy, so
// no AVX-512 body can stand in for a portable one at link time. An includer
// compiles these only where AVX-512 is enabled: in a translation unit built with
// the AVX-512 flags, or between `#pragma GCC push_options` / `target(...)` and
// `pop_options` (the VNNI kernel carries its own target attribute).

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace strata::index::sq8_avx512 {

// Horizontal sums without _mm512_reduce_add_* (whose GCC 12 header trips
// -Wuninitialized; see distance_avx512.cc).
static inline float HSum(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xFF, v, 0),
                                 _mm512_maskz_extractf32x8_ps(0xFF, v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static inline int32_t HSum(__m512i v) {
  const __m256i h = _mm256_add_epi32(_mm512_maskz_extracti32x8_epi32(0xFF, v, 0),
                                     _mm512_maskz_extracti32x8_epi32(0xFF, v, 1));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// The conversions are the all-ones zero-masking forms: the plain intrinsics build
// on _mm512_undefined_* in GCC 12's headers and trip -Wmaybe-uninitialized.
static inline __m512 ToFloat(__m128i bytes) {
  return _mm512_maskz_cvtepi32_ps(0xFFFF, _mm512_maskz_cvtepu8_epi32(0xFFFF, bytes));
}
static inline __m512 Widen16(const uint8_t* c) {
  return ToFloat(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c)));
}
static inline __m512 Widen16Masked(const uint8_t* c, __mmask16 m) { return ToFloat(_mm_maskz_loadu_epi8(m, c)); }
static inline __m512i U8To16(__m256i v) { return _mm512_maskz_cvtepu8_epi16(~__mmask32(0), v); }
static inline __m512i S8To16(__m256i v) { return _mm512_maskz_cvtepi8_epi16(~__mmask32(0), v); }

static inline float DotF32U8(const float* q, const uint8_t* c, size_t dim) {
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

static inline __mmask64 Mask64(size_t remaining) {  // remaining in [1, 63]
  return (__mmask64(1) << remaining) - 1;
}

static inline __attribute__((target("avx512vnni"))) int32_t DotS8U8Vnni(const int8_t* q, const uint8_t* c,
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

}  // namespace strata::index::sq8_avx512
