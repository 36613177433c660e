#include "index/spann/spann_index.h"

#include <fcntl.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <atomic>
#include <cmath>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>

#include "core/progress.h"
#include "core/stats.h"
#include "core/timer.h"
#include "core/topk.h"
#include "index/clustering/balanced.h"
#include "index/distance/distance.h"
#include "index/distance/half.h"
#include "index/spann/spann_format.h"
#include "storage/section_file.h"

namespace strata::index {
namespace fs = std::filesystem;

// The posting file's layout (spann_format.h).
using spann_format::kMagic;
using spann_format::kMajor;
using spann_format::kMinor;
using spann_format::kTagMeta;
using spann_format::kTagPost;
using spann_format::kTagDir;
using spann_format::kTagSq8;
using spann_format::kTagFull;
using spann_format::kPage;
using spann_format::kHeadsFile;
using spann_format::kPostingsFile;
using spann_format::kEncodingF32;
using spann_format::kEncodingF16;
using spann_format::kEncodingNone;
using spann_format::Meta;
using spann_format::FullSlotBytes;
using spann_format::DirEntry;
using spann_format::PadTo;

namespace {

Status FsyncPath(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IOError("{}: cannot open for fsync: {}", p.string(), std::strerror(errno));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return IOError("{}: fsync failed: {}", p.string(), std::strerror(errno));
  return Status::Ok();
}

// One (list, vector) assignment produced by replication.
struct Assignment {
  uint32_t list;
  uint32_t vector;
  float dist;
};

}  // namespace

std::string_view SpannRerankFromName(SpannRerankFrom from) {
  return from == SpannRerankFrom::kList ? "list" : "file";
}

Result<SpannRerankFrom> ParseSpannRerankFrom(std::string_view name) {
  if (name == "file") return SpannRerankFrom::kFile;
  if (name == "list") return SpannRerankFrom::kList;
  return Error(InvalidArgument("unknown rerank source '{}': expected file or list", name));
}

Status SpannBuildOptions::Validate() const {
  if (metric == Metric::kInnerProduct) {
    return InvalidArgument("SPANN supports l2 and cosine, not inner product (its pruning rule "
                           "compares distance ratios)");
  }
  if (cluster_size == 1) return InvalidArgument("cluster_size must be at least 2 (or 0: from the memory budget)");
  if (replicas < 1 || replicas > 64) return InvalidArgument("replicas must be in [1, 64], got {}", replicas);
  if (!(closure_epsilon >= 0)) return InvalidArgument("closure_epsilon must be >= 0");
  if (codes != CodesKind::kNone && codes != CodesKind::kSq8) {
    return InvalidArgument("SPANN codes must be none or sq8");
  }
  if (list_alignment != 0 && (list_alignment < 512 || list_alignment > 4096 ||
                              (list_alignment & (list_alignment - 1)) != 0)) {
    return InvalidArgument("list_alignment must be 0, 512, 1024, 2048 or 4096, got {}",
                           list_alignment);
  }
  if (rerank_from != SpannRerankFrom::kFile && rerank_from != SpannRerankFrom::kList) {
    return InvalidArgument("SPANN rerank source must be file or list");
  }
  if (cluster_size == 0 && !(memory_budget_fraction > 0 && memory_budget_fraction < 1)) {
    return InvalidArgument("memory_budget_fraction must be in (0, 1) when cluster_size is 0, got {}",
                           memory_budget_fraction);
  }
  return Status::Ok();
}

SpannIndex::~SpannIndex() = default;

bool SpannIndex::direct_io() const { return file_ && file_->direct(); }

Status SpannIndex::Build(VectorSet base, const fs::path& path, const SpannBuildOptions& o,
                         std::span<const uint32_t> labels) {
  STRATA_RETURN_IF_ERROR(o.Validate());
  const size_t n = base.size(), dim = base.dim();
  if (n == 0) return InvalidArgument("cannot build SPANN over an empty vector set");
  if (n >= (uint64_t(1) << 32)) return InvalidArgument("SPANN holds at most 2^32 - 1 vectors");
  if (!labels.empty() && labels.size() != n) {
    return InvalidArgument("{} labels given for {} vectors", labels.size(), n);
  }
  uint64_t id_bound = n;
  if (!labels.empty()) {
    id_bound = 0;
    for (uint32_t l : labels) id_bound = std::max<uint64_t>(id_bound, uint64_t(l) + 1);
    if (id_bound >= (uint64_t(1) << 32)) return InvalidArgument("label {} is reserved", id_bound - 1);
  }
  for (size_t i = 0; i < n; ++i) {
    if (!AllFinite(base.row(i), dim)) {
      return InvalidArgument("vector {} has a NaN or infinite component", i);
    }
  }
  std::error_code ec;
  if (fs::exists(path, ec)) return AlreadyExists("{} already exists; remove it or pick another path", path.string());
  if (MetricNormalizes(o.metric)) base.NormalizeRows();
  const int threads = o.num_threads > 0 ? o.num_threads : omp_get_max_threads();
  size_t cluster_size = o.cluster_size;
  HnswOptions ho;
  ho.M = o.head_M;
  ho.ef_construction = o.head_ef_construction;
  ho.seed = o.seed;
  ho.encoding = o.half_heads && !o.head_codes ? VectorEncoding::kFloat16 : VectorEncoding::kFloat32;
  if (o.head_codes) ho.codes = CodesKind::kSq8;
  if (cluster_size == 0) {
    // As many heads as the budget holds: the heads' HNSW (searched from a mapping,
    // ids 0..h-1) plus one list directory entry per head. With head codes, their
    // full vectors are mapped and never read by a search: not resident.
    const double budget = o.memory_budget_fraction * double(n) * double(dim) * sizeof(float);
    const auto cost = [&](size_t h) {
      const size_t mapped_full = o.head_codes ? h * dim * sizeof(float) : 0;
      return double(HnswIndex::EstimateMemoryBytes(h, dim, ho, true) - mapped_full + h * sizeof(ListEntry));
    };
    size_t lo = 1, hi = n;  // largest h with cost(h) <= budget (at least one head)
    while (lo < hi) {
      const size_t mid = lo + (hi - lo + 1) / 2;
      if (cost(mid) <= budget) lo = mid; else hi = mid - 1;
    }
    const double budget_heads = double(lo);
    // The clustering fills leaves to floor(cluster_size / 1.2) (balanced.h) and
    // measured head counts run up to 7% above n / that: take the smallest cluster
    // size whose predicted head count fits.
    cluster_size = 2;
    while (cluster_size < n &&
           1.07 * std::ceil(double(n) / double(std::max<size_t>(1, size_t(double(cluster_size) / 1.2)))) >
               budget_heads) {
      ++cluster_size;
    }
  }

  // 1. Heads: centroids of a balanced hierarchical clustering.
  BalancedClusteringOptions co;
  co.max_cluster_size = cluster_size;
  co.seed = o.seed;
  co.num_threads = threads;
  co.metric = Metric::kL2;  // cosine data are normalized: L2 orders them the same way
  co.progress = o.progress;
  STRATA_ASSIGN_OR_RETURN(Clustering clusters, BalancedHierarchicalClustering(base, co));
  const size_t num_lists = clusters.centroids.size();
  if (o.head_vectors) {
    // Replace each centroid by its cluster's member nearest to it, as the paper
    // does: heads then spread like the data, which is what the RNG rule's
    // distance comparisons assume (centroids crowd together, and the rule then
    // rejects nearly every extra head).
    const DistanceKernels& k0 = Kernels();
    std::vector<float> best(num_lists, std::numeric_limits<float>::infinity());
    std::vector<uint32_t> best_row(num_lists, UINT32_MAX);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t c = clusters.assignment[i];
      const float d = k0.l2sq(base.row(i), clusters.centroids.row(c), dim);
      if (d < best[c] || (d == best[c] && i < best_row[c])) {
        best[c] = d;
        best_row[c] = uint32_t(i);
      }
    }
    for (size_t c = 0; c < num_lists; ++c) {
      if (best_row[c] != UINT32_MAX) {
        std::memcpy(clusters.centroids.mutable_row(c), base.row(best_row[c]), dim * sizeof(float));
      }
    }
  }
  if (ho.encoding == VectorEncoding::kFloat16) {
    const float* c = clusters.centroids.data();
    const size_t values = num_lists * dim;
    bool fits = true;
    for (size_t i = 0; i < values && fits; ++i) fits = std::fabs(c[i]) <= kHalfMax;
    if (!fits) ho.encoding = VectorEncoding::kFloat32;
  }
  STRATA_ASSIGN_OR_RETURN(auto heads, HnswIndex::Create(dim, Metric::kL2, ho));
  HnswBuildOptions hb;
  hb.num_threads = threads;
  hb.progress = o.progress;
  STRATA_RETURN_IF_ERROR(heads->AddBatch(clusters.centroids, {}, hb));

  // 2. Replication (paper section 3.2): nearest head, plus heads within the
  // closure whose direction is not already covered by a closer chosen head.
  const uint32_t R = o.replicas;
  const size_t cand_k = std::min<size_t>(num_lists, size_t(R) * 4);
  std::vector<std::vector<Assignment>> per_thread(threads);
  std::vector<Status> errors(threads);
  Progress progress("spann assign", n, !o.progress);
  const DistanceKernels& kern = Kernels();
  const float* centroids = clusters.centroids.data();
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    SearchContext ctx;
    SearchParams sp;
    sp.k = uint32_t(cand_k);
    sp.ef = std::max<uint32_t>(o.assign_ef, uint32_t(cand_k));
    std::vector<Neighbor> chosen;
    auto& out = per_thread[t];
#pragma omp for schedule(dynamic, 256)
    for (size_t i = 0; i < n; ++i) {
      if (!errors[t].ok()) continue;
      auto cands = heads->Search(base[i], sp, ctx);
      if (!cands) {
        errors[t] = cands.error();
        continue;
      }
      chosen.clear();
      if (cands->empty()) continue;
      const float limit = (*cands)[0].distance * float(1.0 + o.closure_epsilon);
      for (const Neighbor& c : *cands) {
        if (chosen.size() >= R) break;
        if (!chosen.empty() && c.distance > limit) break;
        bool covered = false;
        for (const Neighbor& h : chosen) {
          if (o.rng_factor > 0 &&
              float(o.rng_factor) * kern.l2sq(centroids + h.id * dim, centroids + c.id * dim, dim) <
                  c.distance) {
            covered = true;
            break;
          }
        }
        if (!covered) chosen.push_back(c);
      }
      for (const Neighbor& c : chosen) out.push_back({uint32_t(c.id), uint32_t(i), c.distance});
      progress.Add();
    }
  }
  progress.Finish();
  for (const Status& e : errors) STRATA_RETURN_IF_ERROR(e);

  // 3. Group by list (counting sort), closest first, capped.
  std::vector<size_t> start(num_lists + 1, 0);
  for (const auto& v : per_thread) {
    for (const Assignment& a : v) ++start[a.list + 1];
  }
  for (size_t l = 0; l < num_lists; ++l) start[l + 1] += start[l];
  std::vector<Assignment> grouped(start[num_lists]);
  {
    std::vector<size_t> fill(start.begin(), start.end() - 1);
    for (auto& v : per_thread) {
      for (const Assignment& a : v) grouped[fill[a.list]++] = a;
      std::vector<Assignment>().swap(v);
    }
  }
  const size_t cap = o.max_list_entries ? o.max_list_entries : 16 * cluster_size;
  // Posting vectors in half precision when every component fits (cosine vectors,
  // being normalized, always do).
  bool half_lists = o.half_lists;
  for (size_t i = 0; i < n && half_lists; ++i) {
    const float* row = base.row(i);
    for (size_t j = 0; j < dim && half_lists; ++j) half_lists = std::fabs(row[j]) <= kHalfMax;
  }
  const bool codes = o.codes == CodesKind::kSq8;
  Sq8Encoder sq8;
  if (codes) {
    // The range of every (normalized) row: nothing is clamped.
    STRATA_ASSIGN_OR_RETURN(sq8, Sq8Encoder::Train(base.data(), n, dim));
  }
  // Codes that reproduce every vector (integer data, e.g. uint8 pixels under L2) are the
  // vectors: no second copy in the lists or a FULL section, and the rerank decodes them.
  const bool exact = codes && sq8.exact();
  // With codes and rerank from the file, the lists hold no vectors.
  const bool list_vectors = !codes || (!exact && o.rerank_from == SpannRerankFrom::kList);
  const bool full_section = codes && !exact && !list_vectors;
  const size_t value_bytes = !list_vectors ? 0 : half_lists ? sizeof(uint16_t) : sizeof(float);
  const size_t code_bytes = codes ? sizeof(float) + dim : 0;  // decoded norm2 + SQ8 code
  const DistanceKernels& kw = Kernels();
  // Lists of a codes index are small (GloVe-100: a median of 24 entries, 2.6 KiB): on 4 KiB
  // boundaries their padding would be most of what a query reads.
  const size_t list_align = o.list_alignment ? o.list_alignment : codes ? 512 : kPage;

  // 4. Write the posting file into a temporary directory, then rename it into place.
  // The temporary directory gets a fresh unique name (mkdtemp) beside the target, so that
  // nothing that is already there -- another build's, or a user's -- is ever removed.
  std::string tmp_name = path.string() + ".tmp-XXXXXX";
  if (::mkdtemp(tmp_name.data()) == nullptr) {
    return IOError("{}: cannot create a temporary directory: {}", tmp_name, std::strerror(errno));
  }
  const fs::path tmp = tmp_name;
  // Removed on any failure below (it is ours); renamed into place on success.
  struct TmpGuard {
    fs::path p;
    bool armed = true;
    ~TmpGuard() {
      std::error_code e;
      if (armed) fs::remove_all(p, e);
    }
  } tmp_guard{tmp};
  STRATA_ASSIGN_OR_RETURN(auto w, storage::SectionFileWriter::Create(tmp / kPostingsFile, kMagic,
                                                                       kMajor, kMinor));
  Meta meta{};
  meta.dim = uint32_t(dim);
  meta.metric = uint32_t(o.metric);
  meta.num_vectors = id_bound;
  meta.num_lists = num_lists;
  meta.replicas = R;
  meta.encoding = !list_vectors ? kEncodingNone : half_lists ? kEncodingF16 : kEncodingF32;
  meta.codes = codes ? uint16_t(CodesKind::kSq8) : 0;
  meta.full = full_section ? 1 : 0;
  meta.exact_codes = exact ? 1 : 0;
  meta.rerank = codes ? o.rerank : 0;
  meta.list_align = list_align == kPage ? 0 : uint8_t(std::countr_zero(list_align));
  meta.closure_epsilon = o.closure_epsilon;
  meta.cluster_size = cluster_size;
  std::vector<DirEntry> dir(num_lists);
  STRATA_RETURN_IF_ERROR(w.BeginSection(kTagPost));
  std::vector<std::byte> buf;
  uint64_t offset = 0, total = 0;
  Progress wprog("spann write", num_lists, !o.progress);
  for (size_t l = 0; l < num_lists; ++l) {
    auto first = grouped.begin() + start[l], last = grouped.begin() + start[l + 1];
    std::sort(first, last, [](const Assignment& a, const Assignment& b) {
      return a.dist < b.dist || (a.dist == b.dist && a.vector < b.vector);
    });
    const size_t count = std::min<size_t>(size_t(last - first), cap);
    const size_t raw = count * (sizeof(uint32_t) + code_bytes + dim * value_bytes);
    const size_t bytes = PadTo(std::max<size_t>(raw, 1), list_align);
    buf.assign(bytes, std::byte{0});
    auto* ids = reinterpret_cast<uint32_t*>(buf.data());
    std::byte* p = buf.data() + count * sizeof(uint32_t);
    auto* norms = reinterpret_cast<float*>(p);
    auto* codes_out = reinterpret_cast<uint8_t*>(p + count * sizeof(float) * (codes ? 1 : 0));
    std::byte* vecs = p + count * code_bytes;
    for (size_t j = 0; j < count; ++j) {
      const float* row = base.row(first[j].vector);
      ids[j] = labels.empty() ? first[j].vector : labels[first[j].vector];
      if (codes) {
        uint8_t* c = codes_out + j * dim;
        sq8.Encode(row, c);
        norms[j] = sq8.DecodedNorm2(c);
      }
      if (!list_vectors) continue;
      std::byte* dst = vecs + j * dim * value_bytes;
      if (half_lists) kw.to_f16(row, reinterpret_cast<uint16_t*>(dst), dim);
      else std::memcpy(dst, row, dim * sizeof(float));
    }
    dir[l] = {offset, uint32_t(bytes), uint32_t(count), storage::SectionChecksum(buf)};
    STRATA_RETURN_IF_ERROR(w.Append(buf.data(), bytes));
    offset += bytes;
    total += count;
    wprog.Add();
  }
  wprog.Finish();
  STRATA_RETURN_IF_ERROR(w.EndSection());
  if (codes) {
    std::vector<float> params(sq8.lo());
    params.insert(params.end(), sq8.scale().begin(), sq8.scale().end());
    STRATA_RETURN_IF_ERROR(w.AddSection(kTagSq8, std::as_bytes(std::span(params))));
  }
  if (full_section) {
    // One slot per id, in id order, so that a rerank finds a vector without a directory.
    std::vector<uint32_t> row_of;
    if (!labels.empty()) {
      row_of.assign(id_bound, UINT32_MAX);
      for (size_t i = 0; i < n; ++i) row_of[labels[i]] = uint32_t(i);
    }
    const size_t slot = FullSlotBytes(dim);
    constexpr size_t kChunkSlots = 1024;
    STRATA_RETURN_IF_ERROR(w.BeginSection(kTagFull));
    for (uint64_t id0 = 0; id0 < id_bound; id0 += kChunkSlots) {
      const uint64_t m = std::min<uint64_t>(kChunkSlots, id_bound - id0);
      buf.assign(m * slot, std::byte{0});
      for (uint64_t t = 0; t < m; ++t) {
        const uint64_t id = id0 + t;
        std::byte* s0 = buf.data() + t * slot;
        const uint32_t row = labels.empty() ? uint32_t(id) : row_of[id];
        if (row != UINT32_MAX) std::memcpy(s0, base.row(row), dim * sizeof(float));
        const uint32_t id32 = uint32_t(id);
        std::memcpy(s0 + dim * sizeof(float), &id32, sizeof id32);
        const uint64_t sum = storage::SectionChecksum(std::span<const std::byte>(s0, slot - 8));
        std::memcpy(s0 + slot - 8, &sum, sizeof sum);
      }
      STRATA_RETURN_IF_ERROR(w.Append(buf.data(), buf.size()));
    }
    STRATA_RETURN_IF_ERROR(w.EndSection());
  }
  meta.total_entries = total;
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagDir, std::as_bytes(std::span(dir))));
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagMeta, std::as_bytes(std::span(&meta, 1))));
  STRATA_RETURN_IF_ERROR(w.Commit());
  STRATA_RETURN_IF_ERROR(heads->Save(tmp / kHeadsFile));
  STRATA_RETURN_IF_ERROR(FsyncPath(tmp));
  fs::rename(tmp, path, ec);
  if (ec) return IOError("cannot rename {} to {}: {}", tmp.string(), path.string(), ec.message());
  tmp_guard.armed = false;
  STRATA_RETURN_IF_ERROR(FsyncPath(path.has_parent_path() ? path.parent_path() : fs::path(".")));
  return Status::Ok();
}

Result<std::unique_ptr<SpannIndex>> SpannIndex::Open(const fs::path& path,
                                                     const SpannOpenOptions& options) {
  const fs::path post = path / kPostingsFile;
  storage::SectionFileOptions so;
  so.verify_checksums = false;  // POST is verified list by list on every read
  STRATA_ASSIGN_OR_RETURN(storage::SectionFile sf, storage::SectionFile::Open(post, kMagic, kMajor, so));
  STRATA_RETURN_IF_ERROR(sf.VerifySection(kTagMeta));
  STRATA_RETURN_IF_ERROR(sf.VerifySection(kTagDir));
  STRATA_ASSIGN_OR_RETURN(auto meta_bytes, sf.Section(kTagMeta));
  if (meta_bytes.size() != sizeof(Meta)) {
    return Error(Corruption("{}: META has {} bytes, expected {}", post.string(), meta_bytes.size(),
                            sizeof(Meta)));
  }
  Meta meta;
  std::memcpy(&meta, meta_bytes.data(), sizeof meta);
  if (meta.dim == 0 || meta.dim > 65536 || meta.metric > uint32_t(Metric::kCosine) ||
      meta.metric == uint32_t(Metric::kInnerProduct) || meta.num_vectors >= (uint64_t(1) << 32)) {
    return Error(Corruption("{}: META holds an invalid dim ({}), metric ({}) or size ({})",
                            post.string(), meta.dim, meta.metric, meta.num_vectors));
  }
  STRATA_ASSIGN_OR_RETURN(auto dir_bytes, sf.Section(kTagDir));
  if (dir_bytes.size() != meta.num_lists * sizeof(DirEntry)) {
    return Error(Corruption("{}: LDIR has {} bytes for {} lists", post.string(), dir_bytes.size(),
                            meta.num_lists));
  }
  const storage::SectionFile::Entry* post_entry = nullptr;
  for (const auto& e : sf.entries()) {
    if (e.tag == kTagPost) post_entry = &e;
  }
  if (!post_entry) return Error(Corruption("{}: no POST section", post.string()));
  auto idx = std::unique_ptr<SpannIndex>(new SpannIndex());
  idx->dim_ = meta.dim;
  idx->metric_ = Metric(meta.metric);
  idx->num_vectors_ = meta.num_vectors;
  idx->path_ = path;
  idx->disk_bytes_ = sf.file_size();
  idx->lists_.resize(meta.num_lists);
  const auto* dir = reinterpret_cast<const DirEntry*>(dir_bytes.data());
  // 1.0 / 1.1 files carry zeros where 1.2 put codes, full and rerank.
  if (meta.codes > uint8_t(CodesKind::kSq8) || meta.full > 1 || meta.exact_codes > 1 ||
      (meta.list_align != 0 && (meta.list_align < 9 || meta.list_align > 12))) {
    return Error(Corruption("{}: META.codes {} / full {} / list_align {} / exact_codes {} are not "
                            "known",
                            post.string(), meta.codes, meta.full, meta.list_align, meta.exact_codes));
  }
  const uint64_t list_align = meta.list_align ? uint64_t(1) << meta.list_align : kPage;
  idx->list_align_ = uint32_t(list_align);
  const bool codes = meta.codes == uint8_t(CodesKind::kSq8);
  if (meta.encoding > (codes ? kEncodingNone : kEncodingF16)) {
    return Error(Corruption("{}: META.encoding {} is not a known vector encoding{}", post.string(),
                            meta.encoding, codes ? "" : " for lists without codes"));
  }
  idx->list_vectors_ = meta.encoding != kEncodingNone;
  const bool exact = meta.exact_codes == 1;
  if (exact && (!codes || idx->list_vectors_)) {
    return Error(Corruption("{}: META.exact_codes 1 with codes {} and list encoding {} (exact codes "
                            "are the lists' only vectors)",
                            post.string(), meta.codes, meta.encoding));
  }
  if (meta.full != (codes && !exact && !idx->list_vectors_ ? 1 : 0)) {
    return Error(Corruption("{}: META.full {} does not match codes {} with list encoding {}{}",
                            post.string(), meta.full, meta.codes, meta.encoding,
                            exact ? " and exact codes" : ""));
  }
  idx->exact_codes_ = exact;
  idx->half_lists_ = meta.encoding == kEncodingF16;
  idx->codes_ = CodesKind(meta.codes);
  idx->rerank_ = meta.rerank;
  if (codes) {
    STRATA_RETURN_IF_ERROR(sf.VerifySection(kTagSq8));
    STRATA_ASSIGN_OR_RETURN(auto sq8_bytes, sf.Section(kTagSq8));
    if (sq8_bytes.size() != 2 * size_t(meta.dim) * sizeof(float)) {
      return Error(Corruption("{}: SQ8P has {} bytes, expected {} for dimension {}", post.string(),
                              sq8_bytes.size(), 2 * size_t(meta.dim) * sizeof(float), meta.dim));
    }
    std::vector<float> lo(meta.dim), scale(meta.dim);
    std::memcpy(lo.data(), sq8_bytes.data(), meta.dim * sizeof(float));
    std::memcpy(scale.data(), sq8_bytes.data() + meta.dim * sizeof(float), meta.dim * sizeof(float));
    auto enc = Sq8Encoder::FromParams(std::move(lo), std::move(scale));
    if (!enc) {
      return Error(Corruption("{}: SQ8P: {}", post.string(), enc.error().message()));
    }
    idx->sq8_ = std::move(*enc);
  }
  if (meta.full) {
    const storage::SectionFile::Entry* full = nullptr;
    for (const auto& e : sf.entries()) {
      if (e.tag == kTagFull) full = &e;
    }
    const uint64_t slot = FullSlotBytes(meta.dim);
    if (!full || full->size / slot != meta.num_vectors || full->size % slot != 0) {
      return Error(Corruption("{}: FULL section {} bytes, expected {} slots of {} bytes",
                              post.string(), full ? full->size : 0, meta.num_vectors, slot));
    }
    // Each slot carries its own checksum, verified on every rerank read.
    idx->full_offset_ = full->offset;
    idx->full_bytes_ = full->size;
    idx->full_slot_ = uint32_t(slot);
  }
  const size_t min_entry =
      sizeof(uint32_t) + (codes ? sizeof(float) + size_t(meta.dim) : 0) +
      (idx->list_vectors_
           ? size_t(meta.dim) * (idx->half_lists_ ? sizeof(uint16_t) : sizeof(float))
           : 0);
  for (size_t l = 0; l < meta.num_lists; ++l) {
    const DirEntry& d = dir[l];
    if (d.offset % list_align || d.bytes % list_align || d.bytes == 0 || d.offset > post_entry->size ||
        d.bytes > post_entry->size - d.offset ||
        uint64_t(d.count) * min_entry > d.bytes) {
      return Error(Corruption("{}: list {} has a bad directory entry (offset {}, bytes {}, count "
                              "{}; POST holds {} bytes)",
                              post.string(), l, d.offset, d.bytes, d.count, post_entry->size));
    }
    idx->lists_[l] = {post_entry->offset + d.offset, d.bytes, d.count, d.checksum};
  }
  // The heads are searched in place from a read-only mapping: SPANN is immutable, and
  // copying them would hold the file's pages and the copy at once while loading
  // (the searching process's peak RSS is part of what SPANN promises).
  HnswLoadOptions hl;
  hl.mmap = true;
  STRATA_ASSIGN_OR_RETURN(idx->heads_, HnswIndex::Load(path / kHeadsFile, hl));
  if (idx->heads_->size() != meta.num_lists || idx->heads_->dim() != meta.dim) {
    return Error(Corruption("{}: heads index holds {} heads of dimension {}, the posting file "
                            "expects {} of dimension {}",
                            (path / kHeadsFile).string(), idx->heads_->size(), idx->heads_->dim(),
                            meta.num_lists, meta.dim));
  }
  storage::BlockFile::Options bo;
  bo.direct = options.direct;
  bo.min_alignment = options.min_read_alignment;
  STRATA_ASSIGN_OR_RETURN(idx->file_, storage::BlockFile::Open(post, bo));
  // Probe the backend once here, so the choice (and any fallback) is known up front.
  STRATA_ASSIGN_OR_RETURN(auto probe, storage::IoQueue::Create(options.backend));
  idx->backend_ = probe->backend();
  idx->requested_backend_ = idx->backend_;
  return idx;
}

std::string_view SpannHeadsName(const SpannStats& s) {
  return s.head_codes ? "sq8" : s.half_heads ? "float16" : "float32";
}

SpannStats SpannIndex::Stats() const {
  SpannStats s;
  s.num_vectors = num_vectors_;
  s.num_lists = lists_.size();
  std::vector<uint32_t> sizes;
  sizes.reserve(lists_.size());
  for (const auto& l : lists_) {
    s.total_entries += l.count;
    sizes.push_back(l.count);
  }
  std::sort(sizes.begin(), sizes.end());
  if (!sizes.empty()) {
    s.list_min = sizes.front();
    s.list_median = sizes[sizes.size() / 2];
    s.list_p99 = PercentileOfSorted<uint32_t>(sizes, 0.99);
    s.list_max = sizes.back();
  }
  s.memory_bytes = heads_->Stats().memory_bytes + lists_.capacity() * sizeof(ListEntry);
  s.disk_bytes = disk_bytes_;
  s.raw_vector_bytes = num_vectors_ * dim_ * sizeof(float);
  s.half_heads = heads_->options().encoding == VectorEncoding::kFloat16;
  s.head_codes = heads_->options().codes != CodesKind::kNone;
  s.half_lists = half_lists_ && list_vectors_;
  s.codes = codes_;
  s.full_in_lists = codes_ != CodesKind::kNone && list_vectors_;
  s.full_section_bytes = full_bytes_;
  s.exact_codes = exact_codes_;
  s.rerank = rerank_;
  s.list_alignment = list_align_;
  s.list_entry_bytes = sizeof(uint32_t) +
                       (codes_ != CodesKind::kNone ? sizeof(float) + dim_ : 0) +
                       (list_vectors_ ? dim_ * (half_lists_ ? sizeof(uint16_t) : sizeof(float)) : 0);
  return s;
}

}  // namespace strata::index
