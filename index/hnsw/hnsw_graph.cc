// The HNSW graph store: node block layout, chunk growth and slot allocation, and
// the HnswIndex calls that only read the store (sizes, Get, statistics).

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "index/hnsw/hnsw_graph.h"

namespace strata::index {

using hnsw_detail::kChunkNodes;
using hnsw_detail::kChunkShift;
using hnsw_detail::kCountMask;
using hnsw_detail::kDeletedBit;
using hnsw_detail::kFreeBit;
using hnsw_detail::kLockStripes;
using hnsw_detail::kMaxChunks;

namespace {
constexpr size_t kHugePage = size_t(2) << 20;
}  // namespace

HnswIndex::Impl::Impl(size_t dim, Metric metric, const HnswOptions& o)
    : dim_(dim),
      metric_(metric),
      opt_(o),
      m_(o.M),
      m0_(2 * o.M),
      ml_(1.0 / std::log(double(std::max<uint32_t>(2, o.M)))),
      chunks_(new std::atomic<char*>[kMaxChunks]),
      upper_chunks_(new std::atomic<uint32_t**>[kMaxChunks]),
      locks_(new std::mutex[kLockStripes]) {
  for (uint32_t i = 0; i < kMaxChunks; ++i) {
    chunks_[i].store(nullptr, std::memory_order_relaxed);
    upper_chunks_[i].store(nullptr, std::memory_order_relaxed);
  }
  links_bytes_ = sizeof(uint32_t) * (1 + m0_);
  vec_offset_ = links_bytes_;
  f16_ = o.encoding == VectorEncoding::kFloat16;
  sq8_ = o.codes == CodesKind::kSq8;
  if (sq8_) {
    // [links][code: dim bytes][|x^|^2 float][label]: the code and its norm are
    // what a search reads of a node besides its links.
    vec_bytes_ = dim_;
    norm_offset_ = (vec_offset_ + vec_bytes_ + 3) / 4 * 4;
    label_offset_ = (norm_offset_ + sizeof(float) + 7) / 8 * 8;
    prefetch_bytes_ = std::min<size_t>(norm_offset_ + sizeof(float) - vec_offset_, 1024);
    full_chunks_.reset(new std::atomic<float*>[hnsw_detail::kMaxChunks]);
    for (uint32_t i = 0; i < hnsw_detail::kMaxChunks; ++i) full_chunks_[i].store(nullptr);
    sq8k_ = &Sq8KernelsActive();
    // Long codes are scored with an int8 query where the CPU has VNNI (64 byte
    // products an instruction); short ones with the float query. Measured on one
    // thread at the same recall: GloVe-100 (d = 100) float 9% faster at ef 128,
    // Fashion-MNIST (d = 784) int8 25% faster at ef 16 (docs/BENCHMARKS.md, section 10).
    if (sq8k_->vnni && dim_ >= kInt8QueryMinDim) sq8_mode_ = Sq8QueryMode::kInt8;
  } else {
    vec_bytes_ = dim_ * (f16_ ? sizeof(uint16_t) : sizeof(float));
    label_offset_ = (vec_offset_ + vec_bytes_ + 7) / 8 * 8;
    prefetch_bytes_ = std::min<size_t>(vec_bytes_, 512);
  }
  block_bytes_ = (label_offset_ + sizeof(uint64_t) + 63) / 64 * 64;
  const DistanceKernels& k = Kernels();
  l2sq_ = k.l2sq;
  ip_ = k.ip;
  l2sq_f16_ = k.l2sq_f16;
  ip_f16_ = k.ip_f16;
  to_f16_ = k.to_f16;
  from_f16_ = k.from_f16;
}

HnswIndex::Impl::~Impl() {
  // Upper-link arrays are owned by the nodes (unless they live in a mapped file).
  if (!mapped_) {
    const uint32_t n = num_nodes_.load();
    for (uint32_t i = 0; i < n; ++i) delete[] UpperPtr(i);
  }
  for (uint32_t c = 0; c < kMaxChunks; ++c) {
    uint32_t** u = upper_chunks_[c].load();
    if (!u) break;
    delete[] u;
  }
}

Result<uint32_t> HnswIndex::Impl::AllocateSlot() {
  std::lock_guard<std::mutex> g(grow_mu_);
  if (!free_.empty()) {
    uint32_t id = free_.back();
    free_.pop_back();
    return id;
  }
  uint32_t id = num_nodes_.load(std::memory_order_relaxed);
  if (id == std::numeric_limits<uint32_t>::max()) {
    return Error(ResourceExhausted("HNSW index is full (2^32 - 1 nodes)"));
  }
  STRATA_RETURN_IF_ERROR(EnsureChunk(id >> kChunkShift));
  num_nodes_.store(id + 1, std::memory_order_release);
  return id;
}

Status HnswIndex::Impl::EnsureChunk(uint32_t c) {
  if (chunks_[c].load(std::memory_order_relaxed)) return Status::Ok();
  // 2 MiB aligned and advised for transparent huge pages: searches jump between
  // random nodes, and with 4 KiB pages nearly every hop also misses the TLB.
  const size_t bytes = (size_t(kChunkNodes) * block_bytes_ + kHugePage - 1) / kHugePage * kHugePage;
  std::unique_ptr<char[], AlignedFree> mem(static_cast<char*>(AlignedAlloc(bytes, kHugePage)));
  if (!mem) return ResourceExhausted("cannot allocate {} bytes for HNSW nodes", bytes);
  madvise(mem.get(), bytes, MADV_HUGEPAGE);  // advisory; failure only costs speed
  // Pages are touched only as nodes are written, so a fresh chunk costs address
  // space, not resident memory.
  if (sq8_ && !full_mapped_) {
    // Full vectors of the chunk's nodes: read by inserts and reranks only.
    const size_t fbytes = (size_t(kChunkNodes) * dim_ * sizeof(float) + kHugePage - 1) / kHugePage * kHugePage;
    std::unique_ptr<char[], AlignedFree> full(static_cast<char*>(AlignedAlloc(fbytes, kHugePage)));
    if (!full) return ResourceExhausted("cannot allocate {} bytes for HNSW full vectors", fbytes);
    madvise(full.get(), fbytes, MADV_HUGEPAGE);
    full_chunks_[c].store(reinterpret_cast<float*>(full.get()), std::memory_order_release);
    owned_full_.push_back(std::move(full));
  }
  upper_chunks_[c].store(new uint32_t*[kChunkNodes](), std::memory_order_release);
  chunks_[c].store(mem.get(), std::memory_order_release);
  owned_chunks_.push_back(std::move(mem));
  capacity_.store(std::max<size_t>(capacity_.load(), size_t(c + 1) * kChunkNodes),
                  std::memory_order_release);
  return Status::Ok();
}

Status HnswIndex::Impl::Reserve(size_t n) {
  std::lock_guard<std::mutex> g(grow_mu_);
  for (uint32_t c = 0; size_t(c) * kChunkNodes < n; ++c) STRATA_RETURN_IF_ERROR(EnsureChunk(c));
  return Status::Ok();
}

// ===========================================================================

Status HnswOptions::Validate() const {
  if (M < 2 || M > 256) return InvalidArgument("M must be in [2, 256], got {}", M);
  if (ef_construction < 1 || ef_construction > 100000) {
    return InvalidArgument("ef_construction must be in [1, 100000], got {}", ef_construction);
  }
  if (codes == CodesKind::kSq8 && encoding != VectorEncoding::kFloat32) {
    return InvalidArgument("codes sq8 keeps float32 full vectors: encoding must be float32");
  }
  if (uint8_t(codes) > uint8_t(CodesKind::kSq8)) {
    return InvalidArgument("unknown codes kind {}", int(codes));
  }
  if (rerank > 100000) return InvalidArgument("rerank must be in [0, 100000], got {}", rerank);
  if (!(consolidate_fraction > 0 && consolidate_fraction <= 1)) {
    return InvalidArgument("consolidate_fraction must be in (0, 1], got {}", consolidate_fraction);
  }
  return Status::Ok();
}

HnswIndex::HnswIndex(size_t dim, Metric metric, const HnswOptions& options)
    : dim_(dim), metric_(metric), options_(options),
      impl_(std::make_unique<Impl>(dim, metric, options)) {}

HnswIndex::~HnswIndex() = default;

Result<std::unique_ptr<HnswIndex>> HnswIndex::Create(size_t dim, Metric metric,
                                                     const HnswOptions& options) {
  if (dim == 0 || dim > 65536) return Error(InvalidArgument("dimension must be in [1, 65536], got {}", dim));
  STRATA_RETURN_IF_ERROR(options.Validate());
  return std::unique_ptr<HnswIndex>(new HnswIndex(dim, metric, options));
}

size_t HnswIndex::size() const {
  std::lock_guard<std::mutex> g(impl_->label_mu_);
  if (impl_->dense_) return impl_->dense_node_of_.size();
  return impl_->node_of_.size();
}

size_t HnswIndex::num_slots() const { return impl_->num_nodes_.load(std::memory_order_acquire); }

bool HnswIndex::Contains(VectorId id) const {
  std::lock_guard<std::mutex> g(impl_->label_mu_);
  return impl_->NodeOf(id).has_value();
}

Result<std::vector<float>> HnswIndex::Get(VectorId id) const {
  std::shared_lock<std::shared_mutex> s(impl_->structure_mu_);
  std::lock_guard<std::mutex> g(impl_->label_mu_);
  const std::optional<uint32_t> node = impl_->NodeOf(id);
  if (!node) return Error(NotFound("id {} is not in the index", id));
  std::vector<float> out(dim_);
  const float* v = impl_->VecAsFloat(*node, out.data());
  if (v != out.data()) std::memcpy(out.data(), v, dim_ * sizeof(float));
  return out;
}

HnswStats HnswIndex::GraphStats() const {
  const Impl& im = *impl_;
  std::shared_lock<std::shared_mutex> s(im.structure_mu_);
  HnswStats st;
  const uint32_t n = im.num_nodes_.load();
  st.num_nodes = n;
  size_t live = 0, degree = 0, upper_bytes = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t h = im.Header(i);
    if (h & kFreeBit) {
      ++st.num_free;
      continue;
    }
    if (h & kDeletedBit) {
      ++st.num_deleted;
      continue;
    }
    ++live;
    degree += h & kCountMask;
    const int l = Impl::LevelOf(h);
    st.max_level = std::max(st.max_level, l);
    upper_bytes += size_t(l) * (im.m_ + 1) * sizeof(uint32_t);
  }
  st.mean_degree0 = live ? double(degree) / double(live) : 0;
  size_t map_bytes;
  {
    std::lock_guard<std::mutex> g(im.label_mu_);
    // Node of a hash map entry: key, value, next pointer and cached hash, plus a bucket slot.
    map_bytes = im.node_of_.size() * (sizeof(VectorId) + sizeof(uint32_t) + 2 * sizeof(void*)) +
                im.node_of_.bucket_count() * sizeof(void*) +
                im.dense_node_of_.capacity() * sizeof(uint32_t);
  }
  // Each chunk also has its table of upper-link pointers (zero-filled, so resident);
  // a mapped index sizes them to its nodes and has no node locks.
  size_t pointer_tables = 0;
  for (uint32_t c = 0; c < kMaxChunks && im.upper_chunks_[c].load(); ++c) {
    pointer_tables += sizeof(uint32_t*) * (im.mapped_ ? std::min<size_t>(kChunkNodes, n - size_t(c) * kChunkNodes)
                                                      : kChunkNodes);
  }
  st.memory_bytes = size_t(n) * im.block_bytes_ + upper_bytes + map_bytes + pointer_tables +
                    (im.locks_ ? kLockStripes * sizeof(std::mutex) : 0);
  if (im.sq8_) {
    st.full_vector_bytes = im.full_absent_ ? 0 : size_t(n) * im.dim_ * sizeof(float);
    st.full_vectors_mapped = im.full_mapped_ || im.mapped_;
    if (!st.full_vectors_mapped) st.memory_bytes += st.full_vector_bytes;
    st.refined_code_bytes = im.refine_.size() + im.refine_norm2_.size() * sizeof(float);
    st.memory_bytes += st.refined_code_bytes;
    st.exact_codes = im.codes_trained() && im.codes_exact_.load(std::memory_order_relaxed);
  }
  return st;
}

size_t HnswIndex::EstimateMemoryBytes(size_t nodes, size_t dim, const HnswOptions& o,
                                      bool mapped_dense_ids) {
  const size_t value_bytes = o.encoding == VectorEncoding::kFloat16 ? 2 : 4;
  const size_t links = sizeof(uint32_t) * (1 + 2 * size_t(o.M));
  size_t block = ((links + value_bytes * dim + 7) / 8 * 8 + sizeof(uint64_t) + 63) / 64 * 64;
  if (o.codes == CodesKind::kSq8) {  // code and norm in the block, full vectors apart
    block = (((links + dim + 3) / 4 * 4 + sizeof(float) + 7) / 8 * 8 + sizeof(uint64_t) + 63) / 64 * 64 +
            dim * sizeof(float);
  }
  // A node reaches level >= l with probability M^-l: 1/(M-1) upper lists on average.
  const double upper = double(nodes) * sizeof(uint32_t) * (o.M + 1) / std::max(1.0, o.M - 1.0);
  if (mapped_dense_ids) {  // pointer tables sized to the nodes, no locks, dense id array
    return nodes * block + size_t(upper) + nodes * sizeof(uint32_t*) + nodes * sizeof(uint32_t);
  }
  const size_t chunks = (nodes + kChunkNodes - 1) / kChunkNodes;
  const size_t map = nodes * (sizeof(VectorId) + sizeof(uint32_t) + 3 * sizeof(void*));
  return nodes * block + size_t(upper) + chunks * kChunkNodes * sizeof(uint32_t*) + map +
         kLockStripes * sizeof(std::mutex);
}

IndexStats HnswIndex::Stats() const {
  HnswStats g = GraphStats();
  IndexStats s;
  s.kind = "hnsw";
  s.num_vectors = g.num_nodes - g.num_deleted - g.num_free;
  s.dim = dim_;
  s.metric = metric_;
  s.memory_bytes = g.memory_bytes;
  return s;
}

}  // namespace strata::index
