// HNSW writes: inserting a node (level draw, layer searches, the neighbour
// selection heuristic, reverse links), upserts and batches, tombstones, and the
// repair that consolidates them.

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "core/progress.h"
#include "index/distance/half.h"
#include "index/hnsw/hnsw_graph.h"

namespace strata::index {

using hnsw_detail::Candidate;
using hnsw_detail::CandidatePool;
using hnsw_detail::HnswScratch;
using hnsw_detail::kCountMask;
using hnsw_detail::kDeletedBit;
using hnsw_detail::kFreeBit;
using hnsw_detail::kLevelShift;
using hnsw_detail::kMaxLevel;
using hnsw_detail::StoreRelease;

namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Per-thread scratch for inserts (Add calls outside a SearchContext).
SearchContext& ThreadContext() {
  thread_local SearchContext ctx;
  return ctx;
}

// Half storage holds magnitudes up to 65504; larger ones would turn into infinity.
// (Cosine vectors are normalized first, so only l2 and ip can hit this.)
bool FitsEncoding(const HnswOptions& o, Metric metric, const float* v, size_t dim) {
  if (o.encoding != VectorEncoding::kFloat16 || MetricNormalizes(metric)) return true;
  for (size_t i = 0; i < dim; ++i) {
    if (std::fabs(v[i]) > kHalfMax) return false;
  }
  return true;
}

// Copies `v` normalized when the metric asks for it; returns the pointer to use.
const float* Prepare(Metric metric, const float* v, size_t dim, std::vector<float>& buf) {
  if (!MetricNormalizes(metric)) return v;
  buf.assign(v, v + dim);
  NormalizeInPlace(buf.data(), dim);
  return buf.data();
}

// Tombstones `node` (caller holds structure_mu_ shared and has removed the label).
void Tombstone(HnswIndex::Impl& im, uint32_t node) {
  std::lock_guard<std::mutex> lk(im.LockOf(node));
  uint32_t* h = im.Links0(node);
  if (h[0] & kDeletedBit) return;
  StoreRelease(h[0], h[0] | kDeletedBit);
  im.num_deleted_.fetch_add(1, std::memory_order_release);
}

}  // namespace

int HnswIndex::Impl::RandomLevel() {
  uint64_t r = SplitMix64(opt_.seed ^ (level_counter_.fetch_add(1) * 0xD1B54A32D192ED03ull));
  double u = (double(r >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  int level = int(-std::log(u) * ml_);
  return std::min(level, kMaxLevel);
}

void HnswIndex::Impl::SelectNeighbors(std::vector<Candidate>& cands, uint32_t m,
                                      std::vector<Candidate>& out, HnswScratch& scratch) const {
  SelectNeighbors(cands, m, out, opt_.keep_pruned, scratch);
}

void HnswIndex::Impl::SelectNeighbors(std::vector<Candidate>& cands, uint32_t m,
                                      std::vector<Candidate>& out, bool keep_pruned,
                                      HnswScratch& scratch) const {
  out.clear();
  if (cands.size() <= m) {
    out = cands;
    return;
  }
  std::vector<Candidate> pruned;
  for (const Candidate& c : cands) {
    if (out.size() >= m) break;
    bool good = true;
    const float* cv = VecAsFloat(c.id, HnswScratch::Sized(scratch.candidate_vec, dim_));
    for (const Candidate& r : out) {
      if (DistTo(cv, r.id) < c.dist) {
        good = false;
        break;
      }
    }
    if (good) out.push_back(c); else if (keep_pruned) pruned.push_back(c);
  }
  for (size_t i = 0; i < pruned.size() && out.size() < m; ++i) out.push_back(pruned[i]);
}

void HnswIndex::Impl::Connect(uint32_t dst, uint32_t src, int level, HnswScratch& scratch) {
  std::lock_guard<std::mutex> g(LockOf(dst));
  uint32_t* list = LinksAt(dst, level);
  const uint32_t cap = MaxLinks(level);
  uint32_t c = CountAt(list, level);
  for (uint32_t j = 0; j < c; ++j) {
    if (list[1 + j] == src) return;
  }
  if (c < cap) {
    StoreRelease(list[1 + c], src);
    if (level == 0) StoreRelease(list[0], (list[0] & ~kCountMask) | (c + 1));
    else StoreRelease(list[0], c + 1);
    return;
  }
  // base_vec: SelectNeighbors below decodes into candidate_vec.
  const float* dv = VecAsFloat(dst, HnswScratch::Sized(scratch.base_vec, dim_));
  std::vector<Candidate> cands;
  cands.reserve(c + 1);
  cands.push_back({DistTo(dv, src), src});
  for (uint32_t j = 0; j < c; ++j) cands.push_back({DistTo(dv, list[1 + j]), list[1 + j]});
  std::sort(cands.begin(), cands.end());
  std::vector<Candidate> sel;
  SelectNeighbors(cands, cap, sel, scratch);
  uint32_t ids[512];
  for (size_t j = 0; j < sel.size(); ++j) ids[j] = sel[j].id;
  WriteLinks(dst, level, ids, uint32_t(sel.size()));
}

Result<uint32_t> HnswIndex::Impl::Insert(VectorId label, const float* v, SearchContext& ctx) {
  STRATA_ASSIGN_OR_RETURN(uint32_t node, AllocateSlot());
  const int level = RandomLevel();
  char* block = Block(node);
  std::memset(block, 0, block_bytes_);
  if (sq8_) EncodeNode(node, v);
  else if (f16_) to_f16_(v, reinterpret_cast<uint16_t*>(block + vec_offset_), dim_);
  else std::memcpy(block + vec_offset_, v, dim_ * sizeof(float));
  Label(node) = label;
  if (level > 0) {
    uint32_t* up = new uint32_t[size_t(level) * (m_ + 1)]();
    UpperPtr(node) = up;
  } else {
    UpperPtr(node) = nullptr;
  }
  StoreRelease(Links0(node)[0], uint32_t(level) << kLevelShift);

  // First node becomes the entry point.
  {
    uint64_t e = entry_.load(std::memory_order_acquire);
    if (uint32_t(e) == kInvalidNode) {
      std::lock_guard<std::mutex> g(entry_mu_);
      e = entry_.load(std::memory_order_acquire);
      if (uint32_t(e) == kInvalidNode) {
        entry_.store(PackEntry(node, level), std::memory_order_release);
        return node;
      }
    }
  }
  // The stored form (decoded when half), so that this node's distances agree
  // with the ones later computed against it.
  std::vector<float> decoded;
  const float* q = v;
  if (f16_) {
    decoded.resize(dim_);
    q = VecAsFloat(node, decoded.data());
  }
  uint32_t cur;
  float cur_dist;
  int top;
  Descend(q, level, cur, cur_dist, top, nullptr);
  const size_t ef = std::max<size_t>(opt_.ef_construction, m_);
  HnswScratch& scratch = ctx.scratch<HnswScratch>();
  Candidate* storage = scratch.Pool(ef);
  std::vector<Candidate> cands, selected;
  for (int l = std::min(level, top); l >= 0; --l) {
    CandidatePool pool;
    pool.Reset(storage, ef);
    ctx.visited().Reset(capacity_.load(std::memory_order_acquire));
    ctx.visited().Insert(node);
    SearchLayer(q, cur, cur_dist, l, pool, ctx.visited(), nullptr);
    cands.clear();
    for (size_t i = 0; i < pool.size(); ++i) {
      uint32_t id = pool.id(i);
      if (id != node) cands.push_back({pool.dist(i), id});
    }
    SelectNeighbors(cands, m_, selected, scratch);
    uint32_t ids[512];
    for (size_t j = 0; j < selected.size(); ++j) ids[j] = selected[j].id;
    {
      std::lock_guard<std::mutex> g(LockOf(node));
      WriteLinks(node, l, ids, uint32_t(selected.size()));
    }
    for (const Candidate& s : selected) Connect(s.id, node, l, scratch);
    if (!cands.empty()) {
      cur = cands[0].id;
      cur_dist = cands[0].dist;
    }
  }
  if (level > top) {
    std::lock_guard<std::mutex> g(entry_mu_);
    if (level > int(entry_.load() >> 32)) entry_.store(PackEntry(node, level));
  }
  return node;
}

Status HnswIndex::Add(VectorId id, VectorView v) {
  if (impl_->ReadOnly()) return InvalidArgument("index is memory-mapped read-only");
  if (v.dim != dim_) {
    return InvalidArgument("vector {} has dimension {}, index expects {}", id, v.dim, dim_);
  }
  if (!AllFinite(v.data, v.dim)) {
    return InvalidArgument("vector {} has a NaN or infinite component", id);
  }
  if (!FitsEncoding(options_, metric_, v.data, dim_)) {
    return InvalidArgument("vector {} has a component beyond float16's range (+-{}); this index "
                           "stores half-precision vectors", id, kHalfMax);
  }
  if (impl_->sq8_ && !impl_->codes_trained()) {
    return InvalidArgument("vector {}: this index keeps SQ8 codes, whose encoder is trained by "
                           "the first AddBatch; add a batch first", id);
  }
  std::vector<float> buf;
  const float* data = Prepare(metric_, v.data, dim_, buf);
  {
    std::shared_lock<std::shared_mutex> s(impl_->structure_mu_);
    STRATA_RETURN_IF_ERROR(AddLocked(id, data));
  }
  MaybeConsolidate();
  return Status::Ok();
}

Status HnswIndex::AddLocked(VectorId id, const float* data) {
  Impl& im = *impl_;
  // Upsert: tombstone the old node of this id first.
  {
    std::lock_guard<std::mutex> g(im.label_mu_);
    auto it = im.node_of_.find(id);
    if (it != im.node_of_.end()) {
      const uint32_t old = it->second;
      im.node_of_.erase(it);
      Tombstone(im, old);
    }
  }
  STRATA_ASSIGN_OR_RETURN(uint32_t node, im.Insert(id, data, ThreadContext()));
  std::lock_guard<std::mutex> g(im.label_mu_);
  auto [it, inserted] = im.node_of_.emplace(id, node);
  if (!inserted) {
    // A concurrent upsert of the same id won the race; keep the newer node.
    Tombstone(im, it->second);
    it->second = node;
  }
  return Status::Ok();
}

Status HnswIndex::AddBatch(const VectorSet& vectors, std::span<const VectorId> ids,
                           const HnswBuildOptions& options) {
  if (impl_->ReadOnly()) return InvalidArgument("index is memory-mapped read-only");
  const size_t n = vectors.size();
  if (n == 0) return Status::Ok();
  if (vectors.dim() != dim_) {
    return InvalidArgument("vectors have dimension {}, index expects {}", vectors.dim(), dim_);
  }
  if (!ids.empty() && ids.size() != n) {
    return InvalidArgument("{} ids given for {} vectors", ids.size(), n);
  }
  for (size_t i = 0; i < n; ++i) {
    if (!AllFinite(vectors.row(i), dim_)) {
      return InvalidArgument("vector at row {} has a NaN or infinite component", i);
    }
    if (!FitsEncoding(options_, metric_, vectors.row(i), dim_)) {
      return InvalidArgument("vector at row {} has a component beyond float16's range (+-{}); "
                             "this index stores half-precision vectors", i, kHalfMax);
    }
  }
  if (!ids.empty()) {
    std::unordered_map<VectorId, size_t> seen;
    seen.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      auto [it, ok] = seen.emplace(ids[i], i);
      if (!ok) return InvalidArgument("id {} appears at rows {} and {} of the batch", ids[i], it->second, i);
    }
  }
  if (impl_->sq8_) STRATA_RETURN_IF_ERROR(impl_->TrainCodes(vectors));
  auto id_of = [&](size_t i) { return ids.empty() ? VectorId(i) : ids[i]; };
  // Rows that replace an id already present tombstone its old node. Add repairs
  // tombstones and frees their slots for reuse once they pass consolidate_fraction;
  // a batch does the same between slices, each small enough that its tombstones stay
  // near that share, so that rewriting the same ids in batches of any size keeps the
  // graph proportional to the live vectors (issue 14). A batch of new ids is one slice.
  size_t replacing = 0;
  {
    std::lock_guard<std::mutex> g(impl_->label_mu_);
    for (size_t i = 0; i < n; ++i) replacing += impl_->node_of_.count(id_of(i));
    impl_->node_of_.reserve(impl_->node_of_.size() + (n - replacing));
  }
  size_t slice = n;
  if (replacing > 0) {
    // 256 rows at least, so that each parallel region has work for every thread.
    const double nodes = double(std::max<size_t>(impl_->num_nodes_.load(), n));
    slice = std::max<size_t>(256, size_t(options_.consolidate_fraction * nodes));
  }
  Progress progress("hnsw build", n, !options.progress);
  const int threads = options.num_threads > 0 ? options.num_threads : omp_get_max_threads();
  for (size_t begin = 0; begin < n; begin += slice) {
    const size_t end = std::min(n, begin + slice);
    STRATA_RETURN_IF_ERROR(AddSlice(vectors, ids, begin, end, threads, progress));
    if (replacing > 0) MaybeConsolidate();
  }
  progress.Finish();
  return Status::Ok();
}

Status HnswIndex::AddSlice(const VectorSet& vectors, std::span<const VectorId> ids, size_t begin,
                           size_t end, int threads, Progress& progress) {
  auto id_of = [&](size_t i) { return ids.empty() ? VectorId(i) : ids[i]; };
  {
    // Chunks for the rows that freed slots will not take (a fresh chunk costs address
    // space and its pointer table).
    size_t free_slots;
    {
      std::lock_guard<std::mutex> g(impl_->grow_mu_);
      free_slots = impl_->free_.size();
    }
    const size_t rows = end - begin;
    STRATA_RETURN_IF_ERROR(impl_->Reserve(impl_->num_nodes_.load() + rows - std::min(rows, free_slots)));
  }
  std::shared_lock<std::shared_mutex> s(impl_->structure_mu_);
  // The first insert into an empty graph sets the entry point; do it alone.
  size_t start = begin;
  if (uint32_t(impl_->entry_.load()) == kInvalidNode) {
    std::vector<float> buf;
    STRATA_RETURN_IF_ERROR(AddLocked(id_of(begin), Prepare(metric_, vectors.row(begin), dim_, buf)));
    start = begin + 1;
    progress.Add();
  }
  // The first error is handed over under a mutex rather than through the end of the
  // parallel region: libgomp's barrier is invisible to ThreadSanitizer.
  std::mutex error_mu;
  Status error;
  std::atomic<bool> failed{false};
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> buf;
#pragma omp for schedule(dynamic, 64)
    for (size_t i = start; i < end; ++i) {
      if (failed.load(std::memory_order_relaxed)) continue;
      Status s = AddLocked(id_of(i), Prepare(metric_, vectors.row(i), dim_, buf));
      if (!s.ok()) {
        std::lock_guard<std::mutex> g(error_mu);
        if (error.ok()) error = std::move(s);
        failed.store(true, std::memory_order_relaxed);
      }
      progress.Add();
    }
  }
  std::lock_guard<std::mutex> g(error_mu);
  return error;
}

Status HnswIndex::Remove(VectorId id) {
  if (impl_->ReadOnly()) return InvalidArgument("index is memory-mapped read-only");
  {
    std::shared_lock<std::shared_mutex> s(impl_->structure_mu_);
    std::lock_guard<std::mutex> g(impl_->label_mu_);
    auto it = impl_->node_of_.find(id);
    if (it == impl_->node_of_.end()) return NotFound("id {} is not in the index", id);
    const uint32_t node = it->second;
    impl_->node_of_.erase(it);
    Tombstone(*impl_, node);
  }
  MaybeConsolidate();
  return Status::Ok();
}

void HnswIndex::MaybeConsolidate() {
  const size_t deleted = impl_->num_deleted_.load(std::memory_order_relaxed);
  const size_t nodes = impl_->num_nodes_.load(std::memory_order_relaxed);
  if (deleted > 0 && double(deleted) > options_.consolidate_fraction * double(nodes)) {
    (void)Consolidate();
  }
}

Status HnswIndex::Consolidate() {
  if (impl_->ReadOnly()) return InvalidArgument("index is memory-mapped read-only");
  Impl& im = *impl_;
  std::unique_lock<std::shared_mutex> x(im.structure_mu_);
  const uint32_t n = im.num_nodes_.load();
  std::vector<uint8_t> dead(n, 0);
  std::vector<uint32_t> dead_list;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t h = im.Header(i);
    if ((h & kDeletedBit) && !(h & kFreeBit)) {
      dead[i] = 1;
      dead_list.push_back(i);
    }
    if (h & kFreeBit) dead[i] = 2;
  }
  if (dead_list.empty()) return Status::Ok();

  // Re-link every live node that pointed at a removed one: its live neighbours
  // plus the live neighbours of the removed ones are the candidates, and the
  // selection heuristic picks the new list (FreshDiskANN-style repair).
#pragma omp parallel
  {
    std::vector<uint32_t> cand_ids;
    std::vector<Candidate> cands, sel;
    HnswScratch scratch;  // this worker's own
    uint32_t buf[512], buf2[512], ids[512];
#pragma omp for schedule(dynamic, 256)
    for (uint32_t u = 0; u < n; ++u) {
      if (dead[u]) continue;
      const int top = Impl::LevelOf(im.Header(u));
      for (int l = 0; l <= top; ++l) {
        const uint32_t c = im.CopyLinks(u, l, buf);
        bool touched = false;
        for (uint32_t j = 0; j < c; ++j) touched |= dead[buf[j]] != 0;
        if (!touched) continue;
        cand_ids.clear();
        for (uint32_t j = 0; j < c; ++j) {
          const uint32_t v = buf[j];
          if (!dead[v]) {
            cand_ids.push_back(v);
          } else if (dead[v] == 1 && Impl::LevelOf(im.Header(v)) >= l) {
            const uint32_t c2 = im.CopyLinks(v, l, buf2);
            for (uint32_t t = 0; t < c2; ++t) {
              if (!dead[buf2[t]] && buf2[t] != u) cand_ids.push_back(buf2[t]);
            }
          }
        }
        std::sort(cand_ids.begin(), cand_ids.end());
        cand_ids.erase(std::unique(cand_ids.begin(), cand_ids.end()), cand_ids.end());
        const float* uv = im.VecAsFloat(u, HnswScratch::Sized(scratch.base_vec, im.dim_));
        cands.clear();
        for (uint32_t v : cand_ids) cands.push_back({im.DistTo(uv, v), v});
        std::sort(cands.begin(), cands.end());
        // Keep the pruned candidates too (up to the list's capacity): a repaired
        // node has lost links it was chosen for, and the extra edges keep the
        // graph navigable where the removed nodes used to route (measured:
        // docs/BENCHMARKS.md, deletes).
        im.SelectNeighbors(cands, im.MaxLinks(l), sel, /*keep_pruned=*/true, scratch);
        for (size_t j = 0; j < sel.size(); ++j) ids[j] = sel[j].id;
        std::lock_guard<std::mutex> g(im.LockOf(u));
        im.WriteLinks(u, l, ids, uint32_t(sel.size()));
      }
    }
  }

  // A removed entry point is replaced by a live node of the highest level.
  const uint64_t e = im.entry_.load();
  if (uint32_t(e) != kInvalidNode && dead[uint32_t(e)]) {
    uint32_t best = kInvalidNode;
    int best_level = -1;
    for (uint32_t i = 0; i < n; ++i) {
      if (dead[i]) continue;
      const int l = Impl::LevelOf(im.Header(i));
      if (l > best_level) {
        best_level = l;
        best = i;
      }
    }
    im.entry_.store(Impl::PackEntry(best, best_level < 0 ? 0 : best_level));
  }
  // Free the slots; no live link points at them any more.
  std::lock_guard<std::mutex> g(im.grow_mu_);
  for (uint32_t d : dead_list) {
    delete[] im.UpperPtr(d);
    im.UpperPtr(d) = nullptr;
    StoreRelease(im.Links0(d)[0], kFreeBit);
    im.free_.push_back(d);
  }
  im.num_deleted_.store(0);
  return Status::Ok();
}

}  // namespace strata::index
