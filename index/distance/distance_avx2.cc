// AVX2 + FMA kernels (compiled with -mavx2 -mfma -mf16c; only called after distance.cc has
// checked the CPU supports all three).
//
// Same shape as the AVX-512 level: four independent ymm accumulators in the main
// loop so that FMAs do not wait on each other, leftover whole 8-float blocks spread
// over the accumulators, and the last 1..7 floats read with a masked load
// (_mm256_maskload_ps does not touch masked-off lanes, so it never reads past the end
// of the vector). Batch kernels score four rows per query load and prefetch the next
// group of rows.

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "index/distance/distance.h"
#include "index/distance/half.h"

namespace strata::index {
namespace {

constexpr size_t kBatchRows = 4;

template <bool kL2>
inline __m256 Accumulate(__m256 acc, __m256 a, __m256 b) {
  if constexpr (kL2) {
    const __m256 diff = _mm256_sub_ps(a, b);
    return _mm256_fmadd_ps(diff, diff, acc);
  } else {
    return _mm256_fmadd_ps(a, b, acc);
  }
}

// Loading 8 ints at kMaskSource + 8 - r gives r all-ones lanes then 8 - r zero lanes.
alignas(64) constexpr int32_t kMaskSource[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                 0,  0,  0,  0,  0,  0,  0,  0};

// Lanes [0, remaining) set; remaining in [1, 7].
inline __m256i TailMask(size_t remaining) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskSource + 8 - remaining));
}

inline float ReduceAdd(__m256 v) {
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  __m128 shuf = _mm_movehdup_ps(sum);  // (1, 1, 3, 3)
  sum = _mm_add_ps(sum, shuf);         // (0+1, -, 2+3, -)
  shuf = _mm_movehl_ps(shuf, sum);     // (2+3, ...)
  sum = _mm_add_ss(sum, shuf);
  return _mm_cvtss_f32(sum);
}

template <bool kL2>
inline float Pair(const float* a, const float* b, size_t dim) {
  __m256 s0 = _mm256_setzero_ps();
  __m256 s1 = _mm256_setzero_ps();
  __m256 s2 = _mm256_setzero_ps();
  __m256 s3 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= dim; i += 32) {
    s0 = Accumulate<kL2>(s0, _mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    s1 = Accumulate<kL2>(s1, _mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
    s2 = Accumulate<kL2>(s2, _mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
    s3 = Accumulate<kL2>(s3, _mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));
  }
  // At most three whole blocks remain; each goes to its own accumulator.
  if (i + 8 <= dim) {
    s0 = Accumulate<kL2>(s0, _mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    i += 8;
    if (i + 8 <= dim) {
      s1 = Accumulate<kL2>(s1, _mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
      i += 8;
      if (i + 8 <= dim) {
        s2 = Accumulate<kL2>(s2, _mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        i += 8;
      }
    }
  }
  if (i < dim) {
    const __m256i mask = TailMask(dim - i);
    s3 = Accumulate<kL2>(s3, _mm256_maskload_ps(a + i, mask), _mm256_maskload_ps(b + i, mask));
  }
  return ReduceAdd(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

// Scores kBatchRows contiguous rows; prefetches the group at `next` when not null.
template <bool kL2>
inline void Rows4(const float* query, const float* rows, size_t dim, const float* next,
                  float* out) {
  const float* r0 = rows;
  const float* r1 = rows + dim;
  const float* r2 = rows + 2 * dim;
  const float* r3 = rows + 3 * dim;
  __m256 s0 = _mm256_setzero_ps();
  __m256 s1 = _mm256_setzero_ps();
  __m256 s2 = _mm256_setzero_ps();
  __m256 s3 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= dim; i += 8) {
    if (next != nullptr) {
      // The next group spans 4 * dim floats = 128 bytes per 8-float step: two lines.
      const char* p = reinterpret_cast<const char*>(next + 4 * i);
      _mm_prefetch(p, _MM_HINT_T0);
      _mm_prefetch(p + 64, _MM_HINT_T0);
    }
    const __m256 q = _mm256_loadu_ps(query + i);
    s0 = Accumulate<kL2>(s0, q, _mm256_loadu_ps(r0 + i));
    s1 = Accumulate<kL2>(s1, q, _mm256_loadu_ps(r1 + i));
    s2 = Accumulate<kL2>(s2, q, _mm256_loadu_ps(r2 + i));
    s3 = Accumulate<kL2>(s3, q, _mm256_loadu_ps(r3 + i));
  }
  if (i < dim) {
    const __m256i mask = TailMask(dim - i);
    const __m256 q = _mm256_maskload_ps(query + i, mask);
    s0 = Accumulate<kL2>(s0, q, _mm256_maskload_ps(r0 + i, mask));
    s1 = Accumulate<kL2>(s1, q, _mm256_maskload_ps(r1 + i, mask));
    s2 = Accumulate<kL2>(s2, q, _mm256_maskload_ps(r2 + i, mask));
    s3 = Accumulate<kL2>(s3, q, _mm256_maskload_ps(r3 + i, mask));
  }
  out[0] = ReduceAdd(s0);
  out[1] = ReduceAdd(s1);
  out[2] = ReduceAdd(s2);
  out[3] = ReduceAdd(s3);
}

template <bool kL2>
inline void Batch(const float* query, const float* rows, size_t n, size_t dim, float* out) {
  size_t i = 0;
  for (; i + kBatchRows <= n; i += kBatchRows) {
    const bool has_next = i + 2 * kBatchRows <= n;
    Rows4<kL2>(query, rows + i * dim, dim, has_next ? rows + (i + kBatchRows) * dim : nullptr,
               out + i);
  }
  for (; i < n; ++i) out[i] = Pair<kL2>(query, rows + i * dim, dim);
}

float L2Sq(const float* a, const float* b, size_t dim) { return Pair<true>(a, b, dim); }
float Ip(const float* a, const float* b, size_t dim) { return Pair<false>(a, b, dim); }
void L2SqBatch(const float* query, const float* rows, size_t n, size_t dim, float* out) {
  Batch<true>(query, rows, n, dim, out);
}
void IpBatch(const float* query, const float* rows, size_t n, size_t dim, float* out) {
  Batch<false>(query, rows, n, dim, out);
}

// Half-precision rows: 8 halves (16 bytes) widen to one ymm with F16C's vcvtph2ps.
inline __m256 LoadHalf8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

template <bool kL2>
inline float PairF16(const float* q, const uint16_t* v, size_t dim) {
  __m256 s0 = _mm256_setzero_ps();
  __m256 s1 = _mm256_setzero_ps();
  __m256 s2 = _mm256_setzero_ps();
  __m256 s3 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= dim; i += 32) {
    s0 = Accumulate<kL2>(s0, _mm256_loadu_ps(q + i), LoadHalf8(v + i));
    s1 = Accumulate<kL2>(s1, _mm256_loadu_ps(q + i + 8), LoadHalf8(v + i + 8));
    s2 = Accumulate<kL2>(s2, _mm256_loadu_ps(q + i + 16), LoadHalf8(v + i + 16));
    s3 = Accumulate<kL2>(s3, _mm256_loadu_ps(q + i + 24), LoadHalf8(v + i + 24));
  }
  for (; i + 8 <= dim; i += 8) s0 = Accumulate<kL2>(s0, _mm256_loadu_ps(q + i), LoadHalf8(v + i));
  float sum = ReduceAdd(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < dim; ++i) {  // 1..7 left: a 16-byte load here could read past the vector
    const float x = HalfToFloat(v[i]);
    sum += kL2 ? (q[i] - x) * (q[i] - x) : q[i] * x;
  }
  return sum;
}

float L2SqF16(const float* q, const uint16_t* v, size_t dim) { return PairF16<true>(q, v, dim); }
float IpF16(const float* q, const uint16_t* v, size_t dim) { return PairF16<false>(q, v, dim); }

void ToF16(const float* in, uint16_t* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h =
        _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  for (; i < n; ++i) out[i] = FloatToHalf(in[i]);
}

void FromF16(const uint16_t* in, float* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, LoadHalf8(in + i));
  for (; i < n; ++i) out[i] = HalfToFloat(in[i]);
}

}  // namespace

namespace detail {
const DistanceKernels& Avx2Kernels() {
  static constexpr DistanceKernels kTable = {&L2Sq,    &Ip,    &L2SqBatch, &IpBatch,
                                             &L2SqF16, &IpF16, &ToF16,     &FromF16,
                                             SimdLevel::kAvx2};
  return kTable;
}
}  // namespace detail

}  // namespace strata::index
