// AVX-512 kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mf16c; only
// called after distance.cc has checked the CPU supports them).
//
// Single pair: four independent zmm accumulators in the main loop, because one
// accumulator serializes every FMA behind the previous one (4-cycle latency) and
// leaves the FMA units mostly idle; hnswlib's kernels have exactly that single chain.
// The leftover whole 16-float blocks each get their own accumulator too, and the last
// 1..15 floats are read with a masked load (no scalar tail loop, no read past the end:
// masked-off lanes are not accessed and cannot fault).
//
// Batch: four rows at a time share each query load, giving four independent chains
// (one per row) without extra query traffic. Rows are contiguous, so the next group's
// lines are prefetched while the current group is being scored.

#include <immintrin.h>

#include <cstddef>

#include "index/distance/distance.h"
#include "index/distance/half.h"

namespace strata::index {
namespace {

// Rows scored together in the batch kernels. Four gives four FMA chains, enough to
// cover the FMA latency, while 4 accumulators + 4 row loads + 1 query load per step
// still fit comfortably in registers.
constexpr size_t kBatchRows = 4;

template <bool kL2>
inline __m512 Accumulate(__m512 acc, __m512 a, __m512 b) {
  if constexpr (kL2) {
    const __m512 diff = _mm512_sub_ps(a, b);
    return _mm512_fmadd_ps(diff, diff, acc);
  } else {
    return _mm512_fmadd_ps(a, b, acc);
  }
}

// Lanes [0, remaining) set; remaining in [1, 15].
inline __mmask16 TailMask(size_t remaining) {
  return static_cast<__mmask16>((1u << remaining) - 1u);
}

// Horizontal sum. Not _mm512_reduce_add_ps: in GCC 12 its header builds on
// _mm256_undefined_pd and trips -Wuninitialized in every caller. The all-ones masked
// extracts compile to plain vextractf32x8 and keep the build warning-free.
inline float ReduceAdd(__m512 v) {
  const __m256 halves = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xFF, v, 0),
                                      _mm512_maskz_extractf32x8_ps(0xFF, v, 1));
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(halves), _mm256_extractf128_ps(halves, 1));
  __m128 shuf = _mm_movehdup_ps(sum);  // (1, 1, 3, 3)
  sum = _mm_add_ps(sum, shuf);         // (0+1, -, 2+3, -)
  shuf = _mm_movehl_ps(shuf, sum);     // (2+3, ...)
  sum = _mm_add_ss(sum, shuf);
  return _mm_cvtss_f32(sum);
}

template <bool kL2>
inline float Pair(const float* a, const float* b, size_t dim) {
  __m512 s0 = _mm512_setzero_ps();
  __m512 s1 = _mm512_setzero_ps();
  __m512 s2 = _mm512_setzero_ps();
  __m512 s3 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 64 <= dim; i += 64) {
    s0 = Accumulate<kL2>(s0, _mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
    s1 = Accumulate<kL2>(s1, _mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
    s2 = Accumulate<kL2>(s2, _mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32));
    s3 = Accumulate<kL2>(s3, _mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48));
  }
  // At most three whole blocks remain (e.g. d = 100: 64 + 16 + 16 + 4); unrolled so
  // each lands in a different accumulator instead of a short dependent loop.
  if (i + 16 <= dim) {
    s0 = Accumulate<kL2>(s0, _mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
    i += 16;
    if (i + 16 <= dim) {
      s1 = Accumulate<kL2>(s1, _mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
      i += 16;
      if (i + 16 <= dim) {
        s2 = Accumulate<kL2>(s2, _mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        i += 16;
      }
    }
  }
  if (i < dim) {
    const __mmask16 mask = TailMask(dim - i);
    s3 =
        Accumulate<kL2>(s3, _mm512_maskz_loadu_ps(mask, a + i), _mm512_maskz_loadu_ps(mask, b + i));
  }
  return ReduceAdd(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

// Scores kBatchRows contiguous rows starting at `rows`. When `next` is not null it
// points at the following group, whose cache lines are prefetched in step with the
// loads, so that by the time that group is scored it is already in L1.
template <bool kL2>
inline void Rows4(const float* query, const float* rows, size_t dim, const float* next,
                  float* out) {
  const float* r0 = rows;
  const float* r1 = rows + dim;
  const float* r2 = rows + 2 * dim;
  const float* r3 = rows + 3 * dim;
  __m512 s0 = _mm512_setzero_ps();
  __m512 s1 = _mm512_setzero_ps();
  __m512 s2 = _mm512_setzero_ps();
  __m512 s3 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= dim; i += 16) {
    if (next != nullptr) {
      // The next group spans 4 * dim floats; 4 lines per 16-float step covers it.
      const char* p = reinterpret_cast<const char*>(next + 4 * i);
      _mm_prefetch(p, _MM_HINT_T0);
      _mm_prefetch(p + 64, _MM_HINT_T0);
      _mm_prefetch(p + 128, _MM_HINT_T0);
      _mm_prefetch(p + 192, _MM_HINT_T0);
    }
    const __m512 q = _mm512_loadu_ps(query + i);
    s0 = Accumulate<kL2>(s0, q, _mm512_loadu_ps(r0 + i));
    s1 = Accumulate<kL2>(s1, q, _mm512_loadu_ps(r1 + i));
    s2 = Accumulate<kL2>(s2, q, _mm512_loadu_ps(r2 + i));
    s3 = Accumulate<kL2>(s3, q, _mm512_loadu_ps(r3 + i));
  }
  if (i < dim) {
    const __mmask16 mask = TailMask(dim - i);
    const __m512 q = _mm512_maskz_loadu_ps(mask, query + i);
    s0 = Accumulate<kL2>(s0, q, _mm512_maskz_loadu_ps(mask, r0 + i));
    s1 = Accumulate<kL2>(s1, q, _mm512_maskz_loadu_ps(mask, r1 + i));
    s2 = Accumulate<kL2>(s2, q, _mm512_maskz_loadu_ps(mask, r2 + i));
    s3 = Accumulate<kL2>(s3, q, _mm512_maskz_loadu_ps(mask, r3 + i));
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

// Half-precision rows: 16 halves (32 bytes) widen to one zmm with vcvtph2ps. The
// all-ones masked forms, for the same GCC 12 -Wuninitialized reason as ReduceAdd.
inline __m512 Widen(__m256i h) { return _mm512_maskz_cvtph_ps(0xFFFF, h); }
inline __m512 LoadHalf16(const uint16_t* p) {
  return Widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

template <bool kL2>
inline float PairF16(const float* q, const uint16_t* v, size_t dim) {
  __m512 s0 = _mm512_setzero_ps();
  __m512 s1 = _mm512_setzero_ps();
  __m512 s2 = _mm512_setzero_ps();
  __m512 s3 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 64 <= dim; i += 64) {
    s0 = Accumulate<kL2>(s0, _mm512_loadu_ps(q + i), LoadHalf16(v + i));
    s1 = Accumulate<kL2>(s1, _mm512_loadu_ps(q + i + 16), LoadHalf16(v + i + 16));
    s2 = Accumulate<kL2>(s2, _mm512_loadu_ps(q + i + 32), LoadHalf16(v + i + 32));
    s3 = Accumulate<kL2>(s3, _mm512_loadu_ps(q + i + 48), LoadHalf16(v + i + 48));
  }
  if (i + 16 <= dim) {
    s0 = Accumulate<kL2>(s0, _mm512_loadu_ps(q + i), LoadHalf16(v + i));
    i += 16;
    if (i + 16 <= dim) {
      s1 = Accumulate<kL2>(s1, _mm512_loadu_ps(q + i), LoadHalf16(v + i));
      i += 16;
      if (i + 16 <= dim) {
        s2 = Accumulate<kL2>(s2, _mm512_loadu_ps(q + i), LoadHalf16(v + i));
        i += 16;
      }
    }
  }
  if (i < dim) {
    const __mmask16 mask = TailMask(dim - i);
    const __m512 h = Widen(_mm256_maskz_loadu_epi16(mask, v + i));
    s3 = Accumulate<kL2>(s3, _mm512_maskz_loadu_ps(mask, q + i), h);
  }
  return ReduceAdd(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

float L2SqF16(const float* q, const uint16_t* v, size_t dim) { return PairF16<true>(q, v, dim); }
float IpF16(const float* q, const uint16_t* v, size_t dim) { return PairF16<false>(q, v, dim); }

void ToF16(const float* in, uint16_t* out, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm512_maskz_cvtps_ph(0xFFFF, _mm512_loadu_ps(in + i),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), h);
  }
  for (; i < n; ++i) out[i] = FloatToHalf(in[i]);
}

void FromF16(const uint16_t* in, float* out, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, LoadHalf16(in + i));
  for (; i < n; ++i) out[i] = HalfToFloat(in[i]);
}

}  // namespace

namespace detail {
const DistanceKernels& Avx512Kernels() {
  static constexpr DistanceKernels kTable = {&L2Sq,    &Ip,    &L2SqBatch, &IpBatch,
                                             &L2SqF16, &IpF16, &ToF16,     &FromF16,
                                             SimdLevel::kAvx512};
  return kTable;
}
}  // namespace detail

}  // namespace strata::index
