// HNSW searches: greedy descent through the upper layers, the ef-bounded
// best-first search of one layer (unfiltered) or of layer 0 with a filter and
// tombstones, and the exact scan of a subset.

#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include "core/topk.h"
#include "index/hnsw/hnsw_graph.h"

namespace strata::index {

using hnsw_detail::Candidate;
using hnsw_detail::CandidatePool;
using hnsw_detail::CloserFirst;
using hnsw_detail::FartherFirst;
using hnsw_detail::HnswScratch;
using hnsw_detail::kDeletedBit;
using hnsw_detail::kFreeBit;

void HnswIndex::Impl::GreedyStep(const float* q, int level, uint32_t& cur, float& cur_dist,
                                 HnswSearchStats* st) const {
  uint32_t buf[256];
  bool changed = true;
  while (changed) {
    changed = false;
    uint32_t c = CopyLinks(cur, level, buf);
    for (uint32_t j = 0; j < c; ++j) {
      float d = DistTo(q, buf[j]);
      if (st) ++st->distances;
      if (d < cur_dist) {
        cur_dist = d;
        cur = buf[j];
        changed = true;
      }
    }
    if (st) ++st->hops;
  }
}

void HnswIndex::Impl::SearchLayer(const float* q, uint32_t ep, float ep_dist, int level,
                                  CandidatePool& pool, VisitedSet& visited,
                                  HnswSearchStats* st) const {
  const bool l2 = metric_ == Metric::kL2;
  if (f16_) {
    if (l2) SearchLayerT<true, true>(q, ep, ep_dist, level, pool, visited, st);
    else SearchLayerT<false, true>(q, ep, ep_dist, level, pool, visited, st);
  } else {
    if (l2) SearchLayerT<true, false>(q, ep, ep_dist, level, pool, visited, st);
    else SearchLayerT<false, false>(q, ep, ep_dist, level, pool, visited, st);
  }
}

template <bool kL2, bool kF16>
void HnswIndex::Impl::SearchLayerT(const float* q, uint32_t ep, float ep_dist, int level,
                                   CandidatePool& pool, VisitedSet& visited,
                                   HnswSearchStats* st) const {
  visited.Insert(ep);
  pool.Insert(ep, ep_dist);
  uint32_t buf[512];
  const size_t dim = dim_;
  auto l2 = l2sq_;
  auto ip = ip_;
  auto l2h = l2sq_f16_;
  auto iph = ip_f16_;
  uint64_t dists = 0, hops = 0;
  // With codes this walk (inserts) reads the full vectors.
  const size_t pf_bytes = sq8_ ? std::min<size_t>(dim_ * sizeof(float), 512) : prefetch_bytes_;
  while (pool.HasNext()) {
    const uint32_t u = pool.PopNext();
    ++hops;
    const uint32_t c = CopyLinks(u, level, buf);
    // Gather the unvisited neighbours first, then score them with the next
    // vector prefetched, so memory latency overlaps the arithmetic.
    uint32_t n = 0;
    for (uint32_t j = 0; j < c; ++j) {
      const uint32_t v = buf[j];
      if (visited.Insert(v)) buf[n++] = v;
    }
    // Start every miss at once: the memory system overlaps them, where one
    // prefetch ahead of each distance leaves most of the latency exposed.
    for (uint32_t j = 0; j < n; ++j) {
      const char* nv = VecPtr(buf[j]);
      for (size_t off = 0; off < pf_bytes; off += 64) _mm_prefetch(nv + off, _MM_HINT_T0);
    }
    for (uint32_t j = 0; j < n; ++j) {
      float d;
      if constexpr (kF16) {
        const uint16_t* vv = VecF16(buf[j]);
        d = kL2 ? l2h(q, vv, dim) : -iph(q, vv, dim);
      } else {
        const float* vv = VecF32(buf[j]);
        d = kL2 ? l2(q, vv, dim) : -ip(q, vv, dim);
      }
      ++dists;
      if (!pool.full() || d < pool.worst()) {
        pool.Insert(buf[j], d);
        // Prefetch the link list of a promising node: it is likely expanded soon.
        _mm_prefetch(reinterpret_cast<const char*>(Links0(buf[j])), _MM_HINT_T0);
      }
    }
  }
  if (st) {
    st->distances += dists;
    st->hops += hops;
  }
}

template <typename Allowed, typename Score, typename Addr>
void HnswIndex::Impl::SearchLayer0Filtered(uint32_t ep, float ep_dist, size_t ef, float max_distance,
                                           const Allowed& allowed, const Score& score, const Addr& addr,
                                           VisitedSet& visited, HnswScratch& scratch,
                                           HnswSearchStats* st) const {
  std::vector<Candidate>& cand = scratch.frontier;  // min-heap
  std::vector<Candidate>& results = scratch.results;
  cand.clear();
  results.clear();
  visited.Insert(ep);
  cand.push_back({ep_dist, ep});
  // (Unbounded, nothing is dropped by distance: not even a distance that overflowed.)
  const bool bounded = max_distance < std::numeric_limits<float>::infinity();
  if ((!bounded || ep_dist < max_distance) && allowed(ep)) results.push_back({ep_dist, ep});
  // `bound`: the ef-th allowed result once there are ef (infinity until then); nothing past
  // it is expanded or kept. With a finite max_distance, `beam` holds the ef nearest nodes
  // visited, allowed or not -- what an unfiltered search would end on -- and the walk also
  // ends once the nearest candidate lies past both that beam and max_distance: it has done
  // an unfiltered search's work, and what lies farther is not wanted.
  float bound = results.size() >= ef ? results.front().dist : std::numeric_limits<float>::infinity();
  std::vector<float>& beam = scratch.beam;  // max-heap of distances
  beam.clear();
  if (bounded) beam.push_back(ep_dist);
  uint32_t buf[512];
  while (!cand.empty()) {
    Candidate c = cand.front();
    if (c.dist > bound && results.size() >= ef) break;
    if (bounded && c.dist > max_distance && beam.size() >= ef && c.dist > beam.front()) break;
    std::pop_heap(cand.begin(), cand.end(), CloserFirst());
    cand.pop_back();
    if (st) ++st->hops;
    const uint32_t cnt = CopyLinks(c.id, 0, buf);
    // Unvisited neighbours first, their vectors prefetched together (as in SearchLayerT).
    uint32_t fresh = 0;
    for (uint32_t j = 0; j < cnt; ++j) {
      if (visited.Insert(buf[j])) buf[fresh++] = buf[j];
    }
    for (uint32_t j = 0; j < fresh; ++j) {
      const char* nv = addr(buf[j]);
      for (size_t off = 0; off < prefetch_bytes_; off += 64) _mm_prefetch(nv + off, _MM_HINT_T0);
    }
    for (uint32_t j = 0; j < fresh; ++j) {
      const uint32_t v = buf[j];
      const float d = score(v);
      if (st) ++st->distances;
      if (bounded && (beam.size() < ef || d < beam.front())) {
        beam.push_back(d);
        std::push_heap(beam.begin(), beam.end());
        if (beam.size() > ef) {
          std::pop_heap(beam.begin(), beam.end());
          beam.pop_back();
        }
      }
      if (results.size() < ef || d < bound) {
        cand.push_back({d, v});
        std::push_heap(cand.begin(), cand.end(), CloserFirst());
        if ((!bounded || d < max_distance) && allowed(v)) {
          results.push_back({d, v});
          std::push_heap(results.begin(), results.end(), FartherFirst());
          if (results.size() > ef) {
            std::pop_heap(results.begin(), results.end(), FartherFirst());
            results.pop_back();
          }
          if (results.size() >= ef) bound = results.front().dist;
        }
      }
    }
  }
  std::sort_heap(results.begin(), results.end(), FartherFirst());
}

void HnswIndex::Impl::Descend(const float* q, int target_level, uint32_t& cur, float& cur_dist,
                              int& top, HnswSearchStats* st) const {
  uint64_t e = entry_.load(std::memory_order_acquire);
  cur = uint32_t(e);
  top = int(e >> 32);
  cur_dist = DistTo(q, cur);
  if (st) ++st->distances;
  for (int l = top; l > target_level; --l) GreedyStep(q, l, cur, cur_dist, st);
}

// ===========================================================================

namespace {
// The query as the graph stores vectors: normalized (in ctx's buffer) for cosine.
const float* PrepareQuery(Metric metric, VectorView query, SearchContext& ctx) {
  if (!MetricNormalizes(metric)) return query.data;
  float* buf = ctx.QueryBuffer(query.dim);
  std::memcpy(buf, query.data, query.dim * sizeof(float));
  NormalizeInPlace(buf, query.dim);
  return buf;
}
}  // namespace

Result<std::vector<Neighbor>> HnswIndex::Search(VectorView query, const SearchParams& params,
                                                SearchContext& ctx) const {
  return Search(query, params, ctx, nullptr);
}

// A filtered search (a filter, or tombstones) of an index with codes: the descent and the
// filtered layer-0 walk on codes, then the rerank of the best allowed candidates (as an
// unfiltered search's), so that neither touches a full vector beyond the rerank's. Leaves
// the result in scratch.rerank, nearest first, as SearchCodes does.
Status HnswIndex::Impl::SearchCodesFiltered(const float* q, const SearchParams& params, size_t k, size_t ef,
                                            size_t rerank, std::optional<uint32_t> exclude, VisitedSet& visited,
                                            HnswScratch& scratch, HnswSearchStats* stats) const {
  const Impl& im = *this;
  scratch.rerank.clear();
  Sq8Query& pq = scratch.sq8_query;
  im.sq8_enc_.PrepareQuery(q, im.metric_, im.sq8_mode_, pq);
  uint32_t cur;
  float cur_dist;
  im.DescendCodes(pq, cur, cur_dist, stats);
  if (exclude) {
    visited.Insert(*exclude);  // never expanded nor returned
    if (cur == *exclude) {     // the descent ended on it: start from one of its neighbours
      uint32_t buf[512];
      const uint32_t c = im.CopyLinks(cur, 0, buf);
      if (c == 0) return Status::Ok();
      cur = buf[0];
      cur_dist = im.CodeDist(pq, cur);
      if (stats) ++stats->distances;
    }
  }
  const IdFilter* filter = params.filter;
  auto allowed = [&](uint32_t node) {
    if (im.Header(node) & (kDeletedBit | kFreeBit)) return false;
    return filter == nullptr || filter->Contains(im.Label(node));
  };
  // The walk compares code estimates with max_distance (an exact distance): a margin keeps
  // a node whose estimate lies a little past it; the rerank's exact distances decide.
  const float bound = params.max_distance + 0.05f * std::fabs(params.max_distance) + 1e-6f;
  im.SearchLayer0Filtered(
      cur, cur_dist, ef, bound, allowed, [&](uint32_t v) { return im.CodeDist(pq, v); },
      [&](uint32_t v) { return im.Code(v); }, visited, scratch, stats);
  const std::vector<Candidate>& found = scratch.results;  // nearest (by code) first
  if (params.codes_only) {
    for (size_t i = 0; i < std::min(k, found.size()); ++i) scratch.rerank.push_back(found[i]);
    return Status::Ok();
  }
  const size_t r = std::min(found.size(), std::max(k, rerank == 0 ? kAutoRerankPerK * k : rerank));
  std::vector<uint32_t>& ids = scratch.rerank_ids;
  ids.resize(r);
  for (size_t i = 0; i < r; ++i) ids[i] = found[i].id;
  STRATA_RETURN_IF_ERROR(im.RerankCodes(q, k, ids, scratch, stats));
  // Only neighbours closer than max_distance are wanted (SearchParams::max_distance).
  if (params.max_distance < std::numeric_limits<float>::infinity()) {
    std::erase_if(scratch.rerank, [&](const Candidate& c) { return !(c.dist < params.max_distance); });
  }
  return Status::Ok();
}

Result<std::vector<Neighbor>> HnswIndex::Search(VectorView query, const SearchParams& params,
                                                SearchContext& ctx, HnswSearchStats* stats) const {
  STRATA_RETURN_IF_ERROR(ValidateQuery(query, dim_, params));
  const Impl& im = *impl_;
  const float* q = PrepareQuery(metric_, query, ctx);
  std::shared_lock<std::shared_mutex> s(im.structure_mu_);
  std::vector<Neighbor> out;
  if (uint32_t(im.entry_.load(std::memory_order_acquire)) == kInvalidNode) return out;
  const size_t k = params.k;
  const size_t ef = std::max<size_t>(params.ef, k);
  const bool tombstones = im.num_deleted_.load(std::memory_order_acquire) > 0;
  if (im.sq8_ && im.codes_trained()) {
    VisitedSet& visited = ctx.visited();
    visited.Reset(im.capacity_.load(std::memory_order_acquire));
    std::optional<uint32_t> x;
    if (params.exclude != kInvalidVectorId) {
      std::lock_guard<std::mutex> g(im.label_mu_);
      x = im.NodeOf(params.exclude);
    }
    HnswScratch& scratch = ctx.scratch<HnswScratch>();
    const size_t rerank = params.rerank ? params.rerank : options_.rerank;
    if (!params.filter && !tombstones) {
      STRATA_RETURN_IF_ERROR(im.SearchCodes(q, k, ef, rerank, x, visited, scratch, stats, params.codes_only));
    } else {
      STRATA_RETURN_IF_ERROR(im.SearchCodesFiltered(q, params, k, ef, rerank, x, visited, scratch, stats));
    }
    out.reserve(scratch.rerank.size());
    for (const Candidate& c : scratch.rerank) out.push_back({im.Label(c.id), c.dist});
    return out;
  }
  uint32_t cur;
  float cur_dist;
  int top;
  im.Descend(q, 0, cur, cur_dist, top, stats);
  VisitedSet& visited = ctx.visited();
  visited.Reset(im.capacity_.load(std::memory_order_acquire));
  if (params.exclude != kInvalidVectorId) {
    std::optional<uint32_t> x;
    {
      std::lock_guard<std::mutex> g(im.label_mu_);
      x = im.NodeOf(params.exclude);
    }
    if (x) {
      visited.Insert(*x);  // never expanded nor returned
      if (cur == *x) {     // the descent ended on it: start from one of its neighbours
        uint32_t buf[512];
        const uint32_t c = im.CopyLinks(*x, 0, buf);
        if (c == 0) return out;
        cur = buf[0];
        cur_dist = im.DistTo(q, cur);
        if (stats) ++stats->distances;
      }
    }
  }
  if (!params.filter && !tombstones) {
    CandidatePool pool;
    pool.Reset(ctx.scratch<HnswScratch>().Pool(ef), ef);
    im.SearchLayer(q, cur, cur_dist, 0, pool, visited, stats);
    const size_t m = std::min(k, pool.size());
    out.reserve(m);
    for (size_t i = 0; i < m; ++i) out.push_back({im.Label(pool.id(i)), pool.dist(i)});
  } else {
    const IdFilter* filter = params.filter;
    auto allowed = [&](uint32_t node) {
      if (im.Header(node) & (kDeletedBit | kFreeBit)) return false;
      return filter == nullptr || filter->Contains(im.Label(node));
    };
    HnswScratch& scratch = ctx.scratch<HnswScratch>();
    im.SearchLayer0Filtered(
        cur, cur_dist, ef, params.max_distance, allowed, [&](uint32_t v) { return im.DistTo(q, v); },
        [&](uint32_t v) { return im.VecPtr(v); }, visited, scratch, stats);
    const std::vector<Candidate>& results = scratch.results;
    const size_t m = std::min(k, results.size());
    out.reserve(m);
    for (size_t i = 0; i < m; ++i) out.push_back({im.Label(results[i].id), results[i].dist});
  }
  return out;
}

Result<std::vector<Neighbor>> HnswIndex::SearchSubset(VectorView query, uint32_t k,
                                                      std::span<const VectorId> ids,
                                                      SearchContext& ctx) const {
  SearchParams p;
  p.k = k;
  STRATA_RETURN_IF_ERROR(ValidateQuery(query, dim_, p));
  const Impl& im = *impl_;
  const float* q = PrepareQuery(metric_, query, ctx);
  std::shared_lock<std::shared_mutex> s(im.structure_mu_);
  std::vector<uint32_t> nodes;
  nodes.reserve(ids.size());
  {
    std::lock_guard<std::mutex> g(im.label_mu_);
    for (VectorId id : ids) {
      if (auto node = im.NodeOf(id)) nodes.push_back(*node);
    }
  }
  TopK<uint32_t> top(k);
  if (im.full_absent_) {
    // No full vectors kept (exact codes): the decoded code is the vector.
    float* v = HnswScratch::Sized(ctx.scratch<HnswScratch>().base_vec, dim_);
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (i + 2 < nodes.size()) _mm_prefetch(im.VecPtr(nodes[i + 2]), _MM_HINT_T0);
      top.Push(im.Dist(q, im.VecAsFloat(nodes[i], v)), nodes[i]);
    }
  } else {
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (i + 2 < nodes.size()) _mm_prefetch(im.VecPtr(nodes[i + 2]), _MM_HINT_T0);
      top.Push(im.DistTo(q, nodes[i]), nodes[i]);
    }
  }
  std::vector<Neighbor> out;
  for (const auto& e : top.TakeSorted()) out.push_back({im.Label(e.id), e.distance});
  return out;
}

}  // namespace strata::index
