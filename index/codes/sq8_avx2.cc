// SQ8 AVX2 kernels (compiled with -mavx2 -mfma -mf16c; called only after the CPU
// check of index/distance). Bytes are widened (vpmovzxbd / vpmovzxbw) and
// multiplied in float or with vpmaddwd, whose 16-bit products of a byte code and
// an int8 query cannot overflow (vpmaddubsw's saturating pair sums could).

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "index/codes/sq8.h"

namespace strata::index {
namespace {

inline float HSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int32_t HSum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

inline __m256 Widen8(const uint8_t* c) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(c));
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
}

float DotF32U8(const float* q, const uint8_t* c, size_t dim) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= dim; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), Widen8(c + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), Widen8(c + i + 8), s1);
  }
  if (i + 8 <= dim) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), Widen8(c + i), s0);
    i += 8;
  }
  float sum = HSum(_mm256_add_ps(s0, s1));
  for (; i < dim; ++i) sum += q[i] * float(c[i]);
  return sum;
}

int32_t DotS8U8(const int8_t* q, const uint8_t* c, size_t dim) {
  __m256i acc = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 16 <= dim; i += 16) {
    const __m256i cw = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + i)));
    const __m256i qw = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(cw, qw));
  }
  int32_t sum = HSum(acc);
  for (; i < dim; ++i) sum += int32_t(q[i]) * int32_t(c[i]);
  return sum;
}

void Decode(const uint8_t* c, const float* lo, const float* scale, float* out, size_t dim) {
  size_t i = 0;
  // Multiply then add (no FMA), rounding exactly as the scalar reference does.
  for (; i + 8 <= dim; i += 8) {
    const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(scale + i), Widen8(c + i));
    _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(lo + i), x));
  }
  for (; i < dim; ++i) out[i] = lo[i] + scale[i] * float(c[i]);
}

}  // namespace

namespace detail {
const Sq8Kernels& Sq8Avx2Kernels() {
  static constexpr Sq8Kernels kTable = {&DotF32U8, &DotS8U8, &Decode, SimdLevel::kAvx2, false};
  return kTable;
}
}  // namespace detail

}  // namespace strata::index
