// The walk on SQ8 codes with the AVX-512 kernels inlined (hnsw_codes_walk.h).
//
// Why: the portable walk calls its kernel through the table's function pointer
// for every neighbour scored; here the kernel is part of the walk, so the
// prepared query stays in registers' reach and the call and its spills go. GloVe-100
// with refined codes, ef 192: see docs/BENCHMARKS.md, section 10.
//
// How it stays portable: this file is compiled with the project's common flags.
// Only the kernels (between push_options and pop_options) and the two entry
// functions below (target attributes) are AVX-512 code; `flatten` inlines the
// walk and everything it calls into them, while any out-of-line copy of a shared
// inline function this file emits is compiled for the common target. The entry
// is called only where the kernel table is AVX-512's, which the CPU check of
// index/distance grants (WalkCodesAvx512Serves).

#include "index/hnsw/hnsw_codes_walk.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")
#include "index/codes/sq8_avx512_kernels.h"
#pragma GCC pop_options

namespace strata::index::hnsw_detail {
namespace {

struct FloatDot {
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))) float operator()(
      const Sq8Query& q, const uint8_t* code, size_t dim) const {
    return sq8_avx512::DotF32U8(q.qs.data(), code, dim);
  }
};
struct Int8VnniDot {
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,avx512vnni"))) float operator()(
      const Sq8Query& q, const uint8_t* code, size_t dim) const {
    return float(sq8_avx512::DotS8U8Vnni(q.qi.data(), code, dim)) * q.qi_step;
  }
};

template <bool kL2, class Dot>
__attribute__((flatten, target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))) void Walk(
    const HnswIndex::Impl& im, const Sq8Query& pq, uint32_t cur, float cur_dist, int top,
    std::optional<uint32_t> exclude, CandidatePool& pool, VisitedSet& visited, HnswSearchStats* st) {
  WalkCodes<kL2>(im, pq, Dot{}, cur, cur_dist, top, exclude, pool, visited, st);
}
template <bool kL2>
__attribute__((flatten, target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,avx512vnni"))) void WalkVnni(
    const HnswIndex::Impl& im, const Sq8Query& pq, uint32_t cur, float cur_dist, int top,
    std::optional<uint32_t> exclude, CandidatePool& pool, VisitedSet& visited, HnswSearchStats* st) {
  WalkCodes<kL2>(im, pq, Int8VnniDot{}, cur, cur_dist, top, exclude, pool, visited, st);
}

}  // namespace

void WalkCodesAvx512(const HnswIndex::Impl& im, const Sq8Query& pq, uint32_t cur, float cur_dist,
                     int top, std::optional<uint32_t> exclude, CandidatePool& pool,
                     VisitedSet& visited, HnswSearchStats* st) {
  const bool l2 = pq.metric == Metric::kL2;
  if (pq.mode == Sq8QueryMode::kInt8) {
    if (l2) WalkVnni<true>(im, pq, cur, cur_dist, top, exclude, pool, visited, st);
    else WalkVnni<false>(im, pq, cur, cur_dist, top, exclude, pool, visited, st);
  } else if (l2) {
    Walk<true, FloatDot>(im, pq, cur, cur_dist, top, exclude, pool, visited, st);
  } else {
    Walk<false, FloatDot>(im, pq, cur, cur_dist, top, exclude, pool, visited, st);
  }
}

}  // namespace strata::index::hnsw_detail
