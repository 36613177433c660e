// SpannIndex::Search: nearest heads, query-aware pruning, one batch of posting-list
// reads scored as they complete, and with codes the rerank (from the list's full
// vectors, or a second batch of reads of FULL slots). Build and Open: spann_index.cc.

#include <algorithm>
#include <cstring>

#include "core/topk.h"
#include "index/distance/distance.h"
#include "index/spann/spann_format.h"
#include "index/spann/spann_index.h"
#include "storage/section_file.h"

namespace strata::index {

using spann_format::kPostingsFile;
using spann_format::PadTo;

namespace {
// Reads a query keeps in flight: enough for every list read of a query at recall 0.95 (about
// 100-130 after merging) to be submitted at once. GloVe-100 with codes, 128 lists, O_DIRECT: 32
// in flight took 25% longer than 64; 128 and 256 about 4% less than 64 (median of four and six
// alternations; docs/BENCHMARKS.md, section 12).
constexpr uint32_t kSpannQueueDepth = 128;
}  // namespace

Result<std::vector<Neighbor>> SpannIndex::Search(VectorView query, const SpannSearchParams& p,
                                                 SpannContext& ctx, SpannQueryStats* stats) const {
  if (query.dim != dim_) {
    return Error(InvalidArgument("query has dimension {}, index expects {}", query.dim, dim_));
  }
  if (p.k == 0) return Error(InvalidArgument("k must be at least 1"));
  if (p.max_lists == 0) return Error(InvalidArgument("max_lists must be at least 1"));
  if (!AllFinite(query.data, query.dim)) {
    return Error(InvalidArgument("query has a NaN or infinite component"));
  }
  ctx.query.assign(query.data, query.data + dim_);
  if (MetricNormalizes(metric_)) NormalizeInPlace(ctx.query.data(), dim_);
  const float* q = ctx.query.data();

  // Nearest heads, then query-aware pruning.
  SearchParams hp;
  hp.k = p.max_lists;
  hp.ef = p.head_ef ? std::max(p.head_ef, p.max_lists) : 2 * p.max_lists;
  hp.codes_only = true;  // heads with codes: their codes' distances, the full vectors untouched
  STRATA_ASSIGN_OR_RETURN(auto heads, heads_->Search(VectorView(q, dim_), hp, ctx.head_ctx));
  if (heads.empty()) return std::vector<Neighbor>{};
  // Pruning is relative to the nearest head; a query equal to a head's vector (a
  // stored vector searched for its neighbours) measures from the next head instead,
  // or it would read that one list alone.
  float reference = heads[0].distance;
  for (size_t i = 0; i < heads.size() && reference <= 1e-6f; ++i) reference = heads[i].distance;
  const float limit = std::max(reference, 1e-12f) * float(1.0 + p.prune_epsilon);
  size_t nlists = 0;
  while (nlists < heads.size() && heads[nlists].distance <= limit) ++nlists;

  // A list is read as the blocks that hold it: itself where the file's O_DIRECT alignment is
  // no coarser than the lists' (always for 4096-aligned lists), else the aligned blocks around
  // it. Lists close together in the file share a read (SpannSearchParams::merge_reads);
  // `list_at[i]` is where list i starts in the buffer.
  const uint64_t fa = std::max<uint64_t>(file_->alignment(), 1);
  const auto lo_of = [&](size_t i) { return lists_[heads[i].id].offset / fa * fa; };
  const auto hi_of = [&](size_t i) {
    const ListEntry& l = lists_[heads[i].id];
    return PadTo(l.offset + l.bytes, fa);
  };
  std::vector<uint32_t>& order = ctx.order;
  order.resize(nlists);
  for (size_t i = 0; i < nlists; ++i) order[i] = uint32_t(i);
  if (p.merge_reads) {
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
      return lists_[heads[a].id].offset < lists_[heads[b].id].offset;
    });
  }
  std::vector<storage::ReadRequest>& reqs = ctx.requests;
  std::vector<uint32_t>& read_end = ctx.read_end;
  reqs.clear();
  read_end.clear();
  uint64_t total = 0;
  for (size_t o = 0; o < nlists;) {
    const uint64_t lo = lo_of(order[o]);
    uint64_t hi = hi_of(order[o]);
    size_t e = o + 1;
    while (p.merge_reads && e < nlists && lo_of(order[e]) <= hi + p.merge_gap &&
           std::max(hi, hi_of(order[e])) - lo <= kSpannMaxMergedRead) {
      hi = std::max(hi, hi_of(order[e]));
      ++e;
    }
    reqs.push_back({lo, uint32_t(hi - lo), nullptr});
    read_end.push_back(uint32_t(e));
    total += hi - lo;
    o = e;
  }
  std::byte* base = ctx.buffer.Get(total);
  ctx.list_at.resize(nlists);
  uint64_t pos = 0;
  for (size_t r = 0; r < reqs.size(); ++r) {
    reqs[r].buffer = base + pos;
    for (size_t o = r ? read_end[r - 1] : 0; o < read_end[r]; ++o) {
      ctx.list_at[order[o]] = pos + (lists_[heads[order[o]].id].offset - reqs[r].offset);
    }
    pos += reqs[r].length;
  }
  if (!ctx.io || ctx.io->backend() != backend_) {
    STRATA_ASSIGN_OR_RETURN(ctx.io, storage::IoQueue::Create(backend_, kSpannQueueDepth));
  }
  ctx.seen.Reset(num_vectors_);
  const bool codes = codes_ == CodesKind::kSq8;
  // With codes the first round keeps `depth` candidates by code distance, packed as
  // (request << 32 | entry) so that a rerank from the list finds the entry again.
  uint32_t depth = p.k;
  if (codes) {
    depth = p.rerank ? p.rerank : rerank_ ? rerank_ : SpannDefaultRerank(p.k);
    depth = std::max(depth, p.k);
    sq8_.PrepareQuery(q, Metric::kL2, Sq8QueryMode::kFloat, ctx.sq8_query);
  }
  TopK<uint64_t> top(depth);
  Status first_error;
  uint64_t entries = 0;
  const DistanceKernels& kern = Kernels();
  const Sq8Kernels& sk = Sq8KernelsActive();
  const size_t value_bytes = half_lists_ ? sizeof(uint16_t) : sizeof(float);
  const uint64_t wait_before = ctx.io->counters().wait_ns;
  // Scores list i (heads order) once its read is in.
  const auto score_list = [&](size_t i) {
    const uint32_t list = uint32_t(heads[i].id);
    const ListEntry& l = lists_[list];
    auto* bytes = base + ctx.list_at[i];
    if (storage::SectionChecksum(std::span<const std::byte>(bytes, l.bytes)) != l.checksum) {
      first_error = Corruption("{}: posting list {} (offset {}, {} bytes) fails its checksum",
                               (path_ / kPostingsFile).string(), list, l.offset, l.bytes);
      return;
    }
    const auto* ids = reinterpret_cast<const uint32_t*>(bytes);
    if (ctx.scores.size() < l.count) ctx.scores.resize(l.count);
    if (codes) {
      const auto* norms = reinterpret_cast<const float*>(bytes + size_t(l.count) * sizeof(uint32_t));
      const auto* c = reinterpret_cast<const uint8_t*>(norms + l.count);
      for (uint32_t j = 0; j < l.count; ++j) {
        ctx.scores[j] = Sq8Distance(sk, ctx.sq8_query, c + size_t(j) * dim_, norms[j], dim_);
      }
    } else {
      const std::byte* vecs = bytes + size_t(l.count) * sizeof(uint32_t);
      if (half_lists_) {
        const auto* h = reinterpret_cast<const uint16_t*>(vecs);
        for (uint32_t j = 0; j < l.count; ++j) ctx.scores[j] = kern.l2sq_f16(q, h + size_t(j) * dim_, dim_);
      } else {
        kern.l2sq_batch(q, reinterpret_cast<const float*>(vecs), l.count, dim_, ctx.scores.data());
      }
    }
    for (uint32_t j = 0; j < l.count; ++j) {
      if (ids[j] >= num_vectors_) {
        first_error = Corruption("posting list {} holds id {} beyond {} vectors", list, ids[j],
                                 num_vectors_);
        return;
      }
      if (ctx.scores[j] < top.threshold() && (!p.filter || p.filter->Contains(ids[j])) &&
          ctx.seen.Insert(ids[j])) {
        top.Push(ctx.scores[j], codes ? (uint64_t(i) << 32 | j) : ids[j]);
      }
    }
    entries += l.count;
  };
  STRATA_RETURN_IF_ERROR(ctx.io->ReadBatch(*file_, reqs, [&](size_t r, const Status& s) {
    if (!first_error.ok()) return;
    if (!s.ok()) {
      first_error = s;
      return;
    }
    for (size_t o = r ? read_end[r - 1] : 0; o < read_end[r] && first_error.ok(); ++o) {
      score_list(order[o]);
    }
  }));
  STRATA_RETURN_IF_ERROR(first_error);
  uint64_t rerank_bytes = 0;
  uint32_t reranked = 0;
  std::vector<Neighbor> out;
  const auto emit = [&](std::vector<TopK<uint64_t>::Entry> sorted) {
    for (const auto& e : sorted) {
      // On the unit sphere |a-b|^2 = 2 - 2cos: report -cos like every cosine index.
      const float d = MetricNormalizes(metric_) ? e.distance * 0.5f - 1.0f : e.distance;
      out.push_back({VectorId(e.id), d});
    }
  };
  if (!codes) {
    emit(top.TakeSorted());
  } else {
    auto cands = top.TakeSorted();
    reranked = uint32_t(cands.size());
    TopK<uint64_t> best(p.k);
    const auto id_of = [&](uint64_t packed) {
      const size_t i = packed >> 32;
      return reinterpret_cast<const uint32_t*>(base + ctx.list_at[i])[uint32_t(packed)];
    };
    if (exact_codes_) {
      // The codes are the vectors: decode each candidate's code from its list (already read)
      // and score it as a full vector, for distances free of the codes' dot-product rounding.
      ctx.decoded.resize(dim_);
      for (const auto& e : cands) {
        const size_t i = e.id >> 32, j = uint32_t(e.id);
        const uint32_t count = lists_[heads[i].id].count;
        const auto* code = reinterpret_cast<const uint8_t*>(base + ctx.list_at[i] +
                                                            size_t(count) * (sizeof(uint32_t) + sizeof(float))) +
                           size_t(j) * dim_;
        sq8_.Decode(code, ctx.decoded.data());
        best.Push(kern.l2sq(q, ctx.decoded.data(), dim_), id_of(e.id));
      }
    } else if (list_vectors_) {
      for (const auto& e : cands) {
        const size_t i = e.id >> 32, j = uint32_t(e.id);
        const uint32_t count = lists_[heads[i].id].count;
        const std::byte* vecs = base + ctx.list_at[i] +
                                size_t(count) * (sizeof(uint32_t) + sizeof(float) + dim_);
        const std::byte* v = vecs + j * dim_ * value_bytes;
        const float d = half_lists_ ? kern.l2sq_f16(q, reinterpret_cast<const uint16_t*>(v), dim_)
                                    : kern.l2sq(q, reinterpret_cast<const float*>(v), dim_);
        best.Push(d, id_of(e.id));
      }
    } else if (!cands.empty()) {
      // Second round: one read per candidate's FULL slot, all submitted at once, each as
      // small as the file's O_DIRECT alignment allows (512 bytes on most disks).
      const uint64_t a = std::max<uint64_t>(file_->alignment(), 1);
      std::vector<storage::ReadRequest>& rr = ctx.rerank_requests;
      rr.resize(cands.size());
      std::vector<uint64_t>& where = ctx.candidates;  // slot offset within each read
      where.resize(cands.size());
      uint64_t total_r = 0;
      for (size_t c = 0; c < cands.size(); ++c) {
        const uint64_t off = full_offset_ + uint64_t(id_of(cands[c].id)) * full_slot_;
        const uint64_t lo = off / a * a, hi = (off + full_slot_ + a - 1) / a * a;
        rr[c] = {lo, uint32_t(hi - lo), nullptr};
        where[c] = off - lo;
        total_r += hi - lo;
      }
      std::byte* rb = ctx.rerank_buffer.Get(total_r);
      uint64_t pos_r = 0;
      for (auto& r : rr) {
        r.buffer = rb + pos_r;
        pos_r += r.length;
      }
      STRATA_RETURN_IF_ERROR(ctx.io->ReadBatch(*file_, rr, [&](size_t c, const Status& s) {
        if (!first_error.ok()) return;
        if (!s.ok()) {
          first_error = s;
          return;
        }
        const uint32_t id = id_of(cands[c].id);
        const std::byte* slot = static_cast<const std::byte*>(rr[c].buffer) + where[c];
        uint64_t sum;
        uint32_t stored_id;
        std::memcpy(&sum, slot + full_slot_ - 8, sizeof sum);
        std::memcpy(&stored_id, slot + dim_ * sizeof(float), sizeof stored_id);
        if (storage::SectionChecksum(std::span<const std::byte>(slot, full_slot_ - 8)) != sum ||
            stored_id != id) {
          first_error = Corruption("{}: the full vector of id {} (FULL slot at offset {}) fails "
                                   "its checksum",
                                   (path_ / kPostingsFile).string(), id, rr[c].offset + where[c]);
          return;
        }
        best.Push(kern.l2sq(q, reinterpret_cast<const float*>(slot), dim_), id);
      }));
      STRATA_RETURN_IF_ERROR(first_error);
      rerank_bytes = total_r;
    }
    emit(best.TakeSorted());
  }
  if (stats) {
    stats->lists_read += uint32_t(nlists);
    stats->list_reads += uint32_t(reqs.size());
    // `total`: the bytes of the list reads, as submitted (aligned blocks).
    stats->bytes_read += total + rerank_bytes;
    stats->rerank_bytes_read += rerank_bytes;
    stats->reranked += reranked;
    stats->entries_scored += entries;
    stats->io_wait_ns += ctx.io->counters().wait_ns - wait_before;
  }
  return out;
}

}  // namespace strata::index
