#pragma once
// Internal to index/hnsw: the walk of a search on SQ8 codes (greedy descent of
// the upper layers, best-first on layer 0), written once and instantiated twice:
//   hnsw_codes.cc         with the kernel table's function pointers (any CPU);
//   hnsw_codes_avx512.cc  with the AVX-512 kernels inlined into the walk, which
//                         then runs as one AVX-512 function (chosen at run time
//                         where the kernel table is AVX-512's).
// The walk is SearchLayerT of hnsw_search.cc with the distance to a code, kept
// apart so the float path stays as it is measured.
//
// Everything here has internal linkage (an unnamed namespace): each translation
// unit keeps its own copy, compiled for its own target.

#include <xmmintrin.h>

#include <algorithm>
#include <cstdint>
#include <optional>

#include "index/hnsw/hnsw_graph.h"

namespace strata::index {
namespace hnsw_detail {

// The layer-0 walk and the greedy descent of SearchCodes: fills `pool` with the
// ef best nodes found (by code distance). Defined in hnsw_codes_avx512.cc, for a
// kernel table whose level is AVX-512 (and, with the int8 query, that has VNNI).
void WalkCodesAvx512(const HnswIndex::Impl& im, const Sq8Query& pq, uint32_t cur, float cur_dist,
                     int top, std::optional<uint32_t> exclude, CandidatePool& pool,
                     VisitedSet& visited, HnswSearchStats* st);
// Whether WalkCodesAvx512 serves this kernel table and query mode.
inline bool WalkCodesAvx512Serves(const Sq8Kernels& k, Sq8QueryMode mode) {
  return k.level == SimdLevel::kAvx512 && (mode == Sq8QueryMode::kFloat || k.vnni);
}

namespace {

inline void PrefetchLines(const char* p, size_t bytes) {
  const uintptr_t first = reinterpret_cast<uintptr_t>(p) & ~uintptr_t(63);
  const uintptr_t last = reinterpret_cast<uintptr_t>(p) + bytes;
  for (uintptr_t a = first; a < last; a += 64) _mm_prefetch(reinterpret_cast<const char*>(a), _MM_HINT_T0);
}

// Dot: float operator()(const Sq8Query&, const uint8_t* code, size_t dim), the
// query-by-code dot product without the bias (q' . code).
template <bool kL2, class Dot>
struct CodeScorer {
  Dot dot;
  const Sq8Query& q;
  size_t dim;
  float operator()(const uint8_t* code, float norm2) const {
    const float ip = q.bias + dot(q, code, dim);
    if constexpr (kL2) return q.q_norm2 - 2.0f * ip + norm2;
    else return -ip;
  }
};

template <bool kL2, class Dot>
inline void WalkCodes(const HnswIndex::Impl& im, const Sq8Query& pq, Dot dot, uint32_t cur,
                      float cur_dist, int top, std::optional<uint32_t> exclude,
                      CandidatePool& pool, VisitedSet& visited, HnswSearchStats* st) {
  const CodeScorer<kL2, Dot> score{dot, pq, im.dim_};
  auto dist = [&](uint32_t i) { return score(im.Sq8Code(i), kL2 ? im.CodeNorm2(i) : 0.0f); };
  uint64_t dists = 0, hops = 0;
  uint32_t buf[512];
  // Upper layers: greedy.
  for (int l = top; l > 0; --l) {
    bool changed = true;
    while (changed) {
      changed = false;
      const uint32_t c = im.CopyLinks(cur, l, buf);
      for (uint32_t j = 0; j < c; ++j) {
        const float d = dist(buf[j]);
        ++dists;
        if (d < cur_dist) {
          cur_dist = d;
          cur = buf[j];
          changed = true;
        }
      }
      ++hops;
    }
  }
  if (exclude) {
    visited.Insert(*exclude);  // never expanded nor returned
    if (cur == *exclude) {     // the descent ended on it: start from one of its neighbours
      const uint32_t c = im.CopyLinks(cur, 0, buf);
      if (c == 0) return;
      cur = buf[0];
      cur_dist = dist(cur);
      ++dists;
    }
  }
  // Layer 0: best-first over the sorted pool, every unvisited neighbour's code
  // prefetched before any is scored (as SearchLayerT does with vectors).
  visited.Insert(cur);
  pool.Insert(cur, cur_dist);
  const size_t pf = im.prefetch_bytes_;
  while (pool.HasNext()) {
    const uint32_t u = pool.PopNext();
    ++hops;
    // The next node to expand, most likely: its link list loads while this one's
    // neighbours are scored.
    if (pool.HasNext()) {
      PrefetchLines(reinterpret_cast<const char*>(im.Links0(pool.PeekNext())), im.links_bytes_);
    }
    const uint32_t c = im.CopyLinks(u, 0, buf);
    uint32_t n = 0;
    for (uint32_t j = 0; j < c; ++j) {
      if (visited.Insert(buf[j])) buf[n++] = buf[j];
    }
    for (uint32_t j = 0; j < n; ++j) PrefetchLines(im.Code(buf[j]), pf);
    // Speculation: the node most likely expanded next is the pool's best
    // unexpanded one as it stands now (u's neighbours may still displace it). Its
    // unvisited neighbours' codes start loading now, while u's are scored, so the
    // next hop finds them in cache instead of waiting a memory latency for its
    // first one. A wrong guess costs only bandwidth (GloVe-100, refined codes,
    // ef 192: +18% QPS, median of five alternations; docs/BENCHMARKS.md, section 10).
    if (pool.HasNext()) {
      const uint32_t* lv = im.Links0(pool.PeekNext());
      const uint32_t cv = std::min(im.CountAt(lv, 0), im.m0_);
      for (uint32_t j = 0; j < cv; ++j) {
        const uint32_t w = hnsw_detail::LoadAcquire(lv[1 + j]);
        if (!visited.Test(w)) PrefetchLines(im.Code(w), pf);
      }
    }
    for (uint32_t j = 0; j < n; ++j) {
      const float d = dist(buf[j]);
      ++dists;
      if (!pool.full() || d < pool.worst()) {
        pool.Insert(buf[j], d);
        _mm_prefetch(reinterpret_cast<const char*>(im.Links0(buf[j])), _MM_HINT_T0);
      }
    }
  }
  if (st) {
    st->distances += dists;
    st->hops += hops;
  }
}

}  // namespace
}  // namespace hnsw_detail
}  // namespace strata::index
