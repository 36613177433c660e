// HNSW files: Save, and Load with the checks that make a damaged or crafted file
// an error rather than a crash (sizes before use, structure after load).

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstring>
#include <limits>

#include "index/hnsw/hnsw_format.h"
#include "index/hnsw/hnsw_graph.h"
#include "storage/section_file.h"

namespace strata::index {

using hnsw_detail::kChunkNodes;
using hnsw_detail::kCountMask;
using hnsw_detail::kDeletedBit;
using hnsw_detail::kFreeBit;
using hnsw_detail::kLevelMask;
using hnsw_detail::kLevelShift;

// File layout (docs/formats/hnsw.md): a section file with magic "STRHNSW", major
// version 1, and sections
//   META  hnsw_format::Meta (hnsw_format.h)
//   NODE  num_nodes blocks of block_bytes: [header word, 2M link ids][vector][label]
//   UPPR  for each node with level L > 0, in node order: L lists of (count, M ids)
//   FREE  free slot numbers (uint32)
//   CODE  with codes: hnsw_format::CodesMeta, then the SQ8 offsets and scales
//   FULL  with codes: num_nodes x dim float32 full vectors, in node order

namespace {

using hnsw_format::kTagFree;
using hnsw_format::kTagMeta;
using hnsw_format::kTagNode;
using hnsw_format::kTagUpper;
using HnswMeta = hnsw_format::Meta;

}  // namespace

Status HnswIndex::Save(const std::filesystem::path& path) const {
  // Exclusive: a saved file is one consistent graph.
  std::unique_lock<std::shared_mutex> x(impl_->structure_mu_);
  return SaveLocked(path);
}

Status HnswIndex::SaveQuiescent(const std::filesystem::path& path) const {
  // Shared: writers are excluded by the caller, so readers may go on.
  std::shared_lock<std::shared_mutex> s(impl_->structure_mu_);
  return SaveLocked(path);
}

Status HnswIndex::SaveRelabeled(const std::filesystem::path& path, std::span<const VectorId> relabel) const {
  std::shared_lock<std::shared_mutex> s(impl_->structure_mu_);
  const uint32_t n = impl_->num_nodes_.load();
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t h = impl_->Header(i);
    if (h & kFreeBit) continue;
    if (impl_->Label(i) >= relabel.size()) {
      return InvalidArgument("{}: node {} has label {}, beyond the {} labels mapped", path.string(), i,
                             impl_->Label(i), relabel.size());
    }
  }
  return SaveLocked(path, relabel);
}

Status HnswIndex::SaveLocked(const std::filesystem::path& path, std::span<const VectorId> relabel) const {
  const Impl& im = *impl_;
  STRATA_ASSIGN_OR_RETURN(auto w, storage::SectionFileWriter::Create(path, hnsw_format::kMagic, hnsw_format::kMajor, hnsw_format::kMinor));
  const uint32_t n = im.num_nodes_.load();
  const uint64_t e = im.entry_.load();
  HnswMeta meta{};
  meta.dim = uint32_t(dim_);
  meta.metric = uint32_t(metric_);
  meta.M = options_.M;
  meta.ef_construction = options_.ef_construction;
  meta.keep_pruned = options_.keep_pruned;
  meta.encoding = uint16_t(uint16_t(options_.encoding) | uint16_t(options_.codes) << 8);
  meta.num_nodes = n;
  meta.entry_node = uint32_t(e);
  meta.entry_level = uint32_t(e >> 32);
  meta.block_bytes = im.block_bytes_;
  meta.seed = options_.seed;
  meta.consolidate_fraction = options_.consolidate_fraction;
  meta.num_deleted = im.num_deleted_.load();
  if (!relabel.empty()) {
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t h = im.Header(i);
      if (!(h & (kFreeBit | kDeletedBit)) && relabel[im.Label(i)] == kInvalidVectorId) ++meta.num_deleted;
    }
  }
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagMeta, std::as_bytes(std::span(&meta, 1))));
  STRATA_RETURN_IF_ERROR(w.BeginSection(kTagNode));
  std::vector<char> block(relabel.empty() ? 0 : im.block_bytes_);
  for (uint32_t c = 0; size_t(c) * kChunkNodes < n; ++c) {
    const size_t count = std::min<size_t>(kChunkNodes, n - size_t(c) * kChunkNodes);
    if (relabel.empty()) {
      STRATA_RETURN_IF_ERROR(w.Append(im.chunks_[c].load(), count * im.block_bytes_));
      continue;
    }
    // Node by node: the block with its label mapped, or marked deleted.
    for (uint32_t i = c * kChunkNodes; i < c * kChunkNodes + count; ++i) {
      std::memcpy(block.data(), im.Block(i), im.block_bytes_);
      const uint32_t h = im.Header(i);
      if (!(h & kFreeBit)) {
        const VectorId to = relabel[im.Label(i)];
        if (to == kInvalidVectorId) {
          const uint32_t marked = h | kDeletedBit;
          std::memcpy(block.data(), &marked, sizeof marked);  // the header word leads the block
        } else {
          std::memcpy(block.data() + (reinterpret_cast<const char*>(&im.Label(i)) - im.Block(i)), &to, sizeof to);
        }
      }
      STRATA_RETURN_IF_ERROR(w.Append(block.data(), block.size()));
    }
  }
  STRATA_RETURN_IF_ERROR(w.EndSection());
  STRATA_RETURN_IF_ERROR(w.BeginSection(kTagUpper));
  for (uint32_t i = 0; i < n; ++i) {
    const int l = Impl::LevelOf(im.Header(i));
    if (l > 0) STRATA_RETURN_IF_ERROR(w.Append(im.UpperPtr(i), size_t(l) * (im.m_ + 1) * 4));
  }
  STRATA_RETURN_IF_ERROR(w.EndSection());
  std::vector<uint32_t> free_list;
  {
    std::lock_guard<std::mutex> g(im.grow_mu_);
    free_list = im.free_;
  }
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagFree, std::as_bytes(std::span(free_list))));
  if (im.sq8_) {
    hnsw_format::CodesMeta cm{};
    cm.kind = uint32_t(options_.codes);
    cm.dim = uint32_t(dim_);
    cm.rerank = options_.rerank;
    // Exact codes are the vectors: the file keeps no float32 copy of them (a Fashion-MNIST
    // index: 188 MB less), and a load decodes the codes where a vector is wanted.
    const bool exact = im.codes_trained() && im.codes_exact_.load();
    cm.flags = exact ? hnsw_format::kCodesExact | hnsw_format::kFullOmitted : 0;
    STRATA_RETURN_IF_ERROR(w.BeginSection(hnsw_format::kTagCodes));
    STRATA_RETURN_IF_ERROR(w.Append(&cm, sizeof cm));
    if (im.codes_trained()) {
      STRATA_RETURN_IF_ERROR(w.Append(im.sq8_enc_.lo().data(), dim_ * sizeof(float)));
      STRATA_RETURN_IF_ERROR(w.Append(im.sq8_enc_.scale().data(), dim_ * sizeof(float)));
    }
    STRATA_RETURN_IF_ERROR(w.EndSection());
    if (!exact) {
      STRATA_RETURN_IF_ERROR(w.BeginSection(hnsw_format::kTagFull));
      for (uint32_t c = 0; size_t(c) * kChunkNodes < n; ++c) {
        const size_t count = std::min<size_t>(kChunkNodes, n - size_t(c) * kChunkNodes);
        STRATA_RETURN_IF_ERROR(w.Append(im.full_chunks_[c].load(), count * dim_ * sizeof(float)));
      }
      STRATA_RETURN_IF_ERROR(w.EndSection());
    }
  }
  return w.Commit();
}

Result<std::unique_ptr<HnswIndex>> HnswIndex::Load(const std::filesystem::path& path,
                                                   const HnswLoadOptions& options) {
  const std::string file = path.string();
  STRATA_ASSIGN_OR_RETURN(storage::SectionFile sf,
                          storage::SectionFile::Open(path, hnsw_format::kMagic, hnsw_format::kMajor));
  STRATA_ASSIGN_OR_RETURN(auto meta_bytes, sf.Section(kTagMeta));
  if (meta_bytes.size() != sizeof(HnswMeta)) {
    return Error(Corruption("{}: META section has {} bytes, expected {}", file, meta_bytes.size(),
                            sizeof(HnswMeta)));
  }
  HnswMeta meta;
  std::memcpy(&meta, meta_bytes.data(), sizeof meta);
  if (meta.metric > uint32_t(Metric::kCosine)) {
    return Error(Corruption("{}: META.metric {} is not a known metric", file, meta.metric));
  }
  const uint16_t encoding = meta.encoding & 0xFF, codes = meta.encoding >> 8;
  if (encoding > uint16_t(VectorEncoding::kFloat16)) {
    return Error(Corruption("{}: META.encoding {} is not a known vector encoding", file, encoding));
  }
  if (codes > uint16_t(CodesKind::kSq8)) {
    return Error(Corruption("{}: META.encoding names codes kind {}, not a known kind", file, codes));
  }
  HnswOptions opt;
  opt.codes = CodesKind(codes);
  opt.M = meta.M;
  opt.ef_construction = meta.ef_construction;
  opt.keep_pruned = meta.keep_pruned != 0;
  opt.encoding = VectorEncoding(encoding);
  opt.seed = meta.seed;
  opt.consolidate_fraction = meta.consolidate_fraction;
  auto created = Create(meta.dim, Metric(meta.metric), opt);
  if (!created) return Error(Corruption("{}: META: {}", file, created.error().message()));
  std::unique_ptr<HnswIndex> index = std::move(*created);
  Impl& im = *index->impl_;
  if (meta.block_bytes != im.block_bytes_) {
    return Error(Corruption("{}: META.block_bytes {} does not match dim {} and M {} (expected {})",
                            file, meta.block_bytes, meta.dim, meta.M, im.block_bytes_));
  }
  const uint32_t n = meta.num_nodes;
  if (n == std::numeric_limits<uint32_t>::max()) {
    return Error(Corruption("{}: META.num_nodes {} is out of range", file, n));
  }
  STRATA_ASSIGN_OR_RETURN(auto nodes, sf.Section(kTagNode));
  if (nodes.size() != uint64_t(n) * im.block_bytes_) {
    return Error(Corruption("{}: NODE section has {} bytes, expected {} nodes x {} bytes", file,
                            nodes.size(), n, im.block_bytes_));
  }
  STRATA_ASSIGN_OR_RETURN(auto upper, sf.Section(kTagUpper));
  STRATA_ASSIGN_OR_RETURN(auto free_bytes, sf.Section(kTagFree));
  if (free_bytes.size() % 4 != 0) {
    return Error(Corruption("{}: FREE section size {} is not a multiple of 4", file,
                            free_bytes.size()));
  }

  // Codes: the encoder and the full vectors (checked before anything is placed).
  std::span<const std::byte> full;
  bool full_omitted = false;
  if (im.sq8_) {
    STRATA_ASSIGN_OR_RETURN(auto cb, sf.Section(hnsw_format::kTagCodes));
    hnsw_format::CodesMeta cm{};
    if (cb.size() < sizeof cm) {
      return Error(Corruption("{}: CODE section has {} bytes, less than its header", file, cb.size()));
    }
    std::memcpy(&cm, cb.data(), sizeof cm);
    if (cm.kind != codes || cm.dim != meta.dim) {
      return Error(Corruption("{}: CODE section says kind {} dim {}, META says {} and {}", file,
                              cm.kind, cm.dim, codes, meta.dim));
    }
    const size_t params = size_t(2) * meta.dim * sizeof(float);
    if (cb.size() != sizeof cm + params && !(cb.size() == sizeof cm && n == 0)) {
      return Error(Corruption("{}: CODE section has {} bytes, expected {}", file, cb.size(),
                              sizeof cm + params));
    }
    const uint32_t known = hnsw_format::kCodesExact | hnsw_format::kFullOmitted;
    if ((cm.flags & ~known) != 0 || ((cm.flags & hnsw_format::kCodesExact) && cb.size() == sizeof cm)) {
      return Error(Corruption("{}: CODE section flags {:#x} are not known{}", file, cm.flags,
                              cb.size() == sizeof cm ? " for an index without an encoder" : ""));
    }
    if ((cm.flags & hnsw_format::kFullOmitted) && !(cm.flags & hnsw_format::kCodesExact)) {
      return Error(Corruption("{}: CODE section flags {:#x} omit the full vectors of codes that are not exact",
                              file, cm.flags));
    }
    im.opt_.rerank = cm.rerank;
    index->options_.rerank = cm.rerank;
    // Not known to be exact unless the file says so (files before the flag: rerank as before).
    im.codes_exact_.store((cm.flags & hnsw_format::kCodesExact) != 0);
    if (cb.size() > sizeof cm) {
      std::vector<float> lo(meta.dim), scale(meta.dim);
      std::memcpy(lo.data(), cb.data() + sizeof cm, meta.dim * sizeof(float));
      std::memcpy(scale.data(), cb.data() + sizeof cm + meta.dim * sizeof(float), meta.dim * sizeof(float));
      auto enc = Sq8Encoder::FromParams(std::move(lo), std::move(scale));
      if (!enc) return Error(Corruption("{}: CODE section: {}", file, enc.error().message()));
      im.sq8_enc_ = std::move(*enc);
      im.codes_trained_.store(true);
    }
    full_omitted = (cm.flags & hnsw_format::kFullOmitted) != 0;
    if (full_omitted) {
      if (sf.Has(hnsw_format::kTagFull)) {
        return Error(Corruption("{}: a FULL section in a file whose CODE flags say it has none", file));
      }
    } else {
      STRATA_ASSIGN_OR_RETURN(full, sf.Section(hnsw_format::kTagFull));
    }
    if (!full_omitted && full.size() != uint64_t(n) * meta.dim * sizeof(float)) {
      return Error(Corruption("{}: FULL section has {} bytes, expected {} nodes x {} floats", file,
                              full.size(), n, meta.dim));
    }
  } else if (sf.Has(hnsw_format::kTagCodes) || sf.Has(hnsw_format::kTagFull)) {
    return Error(Corruption("{}: CODE or FULL section in an index without codes", file));
  }
  const bool map_full = im.sq8_ && (options.mmap || options.map_full_vectors ||
                                     options.read_full_vectors || options.refined_codes);

  // Place the node blocks: mapped in place, or copied into fresh chunks.
  char* base = const_cast<char*>(reinterpret_cast<const char*>(nodes.data()));
  if (options.mmap) {
    for (uint32_t c = 0; size_t(c) * kChunkNodes < n; ++c) {
      // A mapped index never grows: each pointer table holds only its chunk's nodes.
      const size_t count = std::min<size_t>(kChunkNodes, n - size_t(c) * kChunkNodes);
      im.upper_chunks_[c].store(new uint32_t*[count]());
      im.chunks_[c].store(base + size_t(c) * kChunkNodes * im.block_bytes_);
    }
    im.capacity_.store(n);
    im.mapped_ = true;
  } else {
    // Full vectors to be mapped need no chunks of their own.
    if (map_full) im.full_mapped_ = true;
    STRATA_RETURN_IF_ERROR(im.Reserve(n));
    for (uint32_t c = 0; size_t(c) * kChunkNodes < n; ++c) {
      const size_t count = std::min<size_t>(kChunkNodes, n - size_t(c) * kChunkNodes);
      std::memcpy(im.chunks_[c].load(), base + size_t(c) * kChunkNodes * im.block_bytes_,
                  count * im.block_bytes_);
    }
  }
  if (im.sq8_ && full_omitted) {
    if (map_full) {
      // Read-only: nothing is decoded up front; Get and SearchSubset decode a node's code
      // where they need its vector, and searches rerank on decoded codes (exact codes).
      // Refinements would be zero: exact codes need none.
      im.full_mapped_ = true;
      im.full_absent_ = true;
    } else {
      // Writable (inserts, consolidation): the full vectors in memory as if loaded.
      for (uint32_t i = 0; i < n; ++i) im.sq8_enc_.Decode(im.Sq8Code(i), const_cast<float*>(im.FullVec(i)));
    }
  } else if (im.sq8_) {
    float* fbase = const_cast<float*>(reinterpret_cast<const float*>(full.data()));
    for (uint32_t c = 0; size_t(c) * kChunkNodes < n; ++c) {
      const size_t count = std::min<size_t>(kChunkNodes, n - size_t(c) * kChunkNodes);
      float* src = fbase + size_t(c) * kChunkNodes * meta.dim;
      if (map_full) im.full_chunks_[c].store(src);
      else std::memcpy(im.full_chunks_[c].load(), src, count * meta.dim * sizeof(float));
    }
    if (map_full) im.full_mapped_ = true;
    if (options.refined_codes) {
      // Refinements from the stored full vectors (normalized already for cosine)
      // against the codes just placed.
      im.refine_bytes_ = Sq8Encoder::RefinementBytes(meta.dim);
      im.refine_.assign(size_t(n) * im.refine_bytes_, 0);
      const bool l2 = im.metric_ == Metric::kL2;
      if (l2) im.refine_norm2_.resize(n);
      std::vector<float> decoded(l2 ? meta.dim : 0);
      for (uint32_t i = 0; i < n; ++i) {
        uint8_t* r = im.refine_.data() + size_t(i) * im.refine_bytes_;
        im.sq8_enc_.EncodeRefinement(fbase + size_t(i) * meta.dim, im.Sq8Code(i), r);
        if (l2) {
          im.sq8_enc_.DecodeRefined(im.Sq8Code(i), r, decoded.data());
          float s = 0;
          for (float x : decoded) s += x * x;
          im.refine_norm2_[i] = s;
        }
      }
    }
  }
  im.num_nodes_.store(n);

  // Headers and upper lists: levels must add up to the UPPR section exactly.
  const size_t upper_words = upper.size() / 4;
  if (upper.size() % 4) return Error(Corruption("{}: UPPR size {} is not a multiple of 4", file, upper.size()));
  const uint32_t* up = reinterpret_cast<const uint32_t*>(upper.data());
  size_t pos = 0;
  size_t deleted = 0;
  int top_level = -1;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t h = im.Header(i);
    const int l = Impl::LevelOf(h);
    if ((h & ~(kCountMask | (kLevelMask << kLevelShift) | kFreeBit | kDeletedBit)) != 0) {
      return Error(Corruption("{}: node {} has unknown header bits 0x{:08x}", file, i, h));
    }
    if (h & kFreeBit) {
      if (l != 0 || (h & kCountMask) != 0) {
        return Error(Corruption("{}: free node {} has links or a level", file, i));
      }
      continue;
    }
    if (h & kDeletedBit) ++deleted;
    top_level = std::max(top_level, l);
    if (l == 0) continue;
    const size_t words = size_t(l) * (im.m_ + 1);
    if (pos + words > upper_words) {
      return Error(Corruption("{}: UPPR section ends before the upper links of node {} (level {})",
                              file, i, l));
    }
    if (options.mmap) {
      im.UpperPtr(i) = const_cast<uint32_t*>(up + pos);
    } else {
      im.UpperPtr(i) = new uint32_t[words];
      std::memcpy(im.UpperPtr(i), up + pos, words * 4);
    }
    pos += words;
  }
  if (pos != upper_words) {
    return Error(Corruption("{}: UPPR section has {} bytes, node levels account for {}", file,
                            upper.size(), pos * 4));
  }

  // Structure: link counts, ids in range, no self links, no links to free
  // slots, upper links only to nodes that exist on that level.
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t h = im.Header(i);
    if (h & kFreeBit) continue;
    const int l = Impl::LevelOf(h);
    for (int lv = 0; lv <= l; ++lv) {
      const uint32_t* list = im.LinksAt(i, lv);
      const uint32_t c = lv == 0 ? (list[0] & kCountMask) : list[0];
      if (c > im.MaxLinks(lv)) {
        return Error(Corruption("{}: node {} has {} links on level {}, at most {} allowed", file, i,
                                c, lv, im.MaxLinks(lv)));
      }
      for (uint32_t j = 0; j < c; ++j) {
        const uint32_t v = list[1 + j];
        if (v >= n) {
          return Error(Corruption("{}: node {} level {} links to node {}, beyond the {} nodes",
                                  file, i, lv, v, n));
        }
        if (v == i) return Error(Corruption("{}: node {} links to itself on level {}", file, i, lv));
        const uint32_t hv = im.Header(v);
        if (hv & kFreeBit) {
          return Error(Corruption("{}: node {} level {} links to free slot {}", file, i, lv, v));
        }
        if (Impl::LevelOf(hv) < lv) {
          return Error(Corruption("{}: node {} level {} links to node {} which has only level {}",
                                  file, i, lv, v, Impl::LevelOf(hv)));
        }
      }
    }
  }
  // Entry point.
  if (n == 0 || top_level < 0) {
    if (meta.entry_node != kInvalidNode) {
      return Error(Corruption("{}: META.entry_node {} but the graph has no live node", file,
                              meta.entry_node));
    }
  } else {
    if (meta.entry_node >= n || (im.Header(meta.entry_node) & kFreeBit)) {
      return Error(Corruption("{}: entry point {} does not exist", file, meta.entry_node));
    }
    if (int(meta.entry_level) != Impl::LevelOf(im.Header(meta.entry_node)) ||
        int(meta.entry_level) != top_level) {
      return Error(Corruption("{}: entry point {} has level {}, META says {}, highest node level is {}",
                              file, meta.entry_node, Impl::LevelOf(im.Header(meta.entry_node)),
                              meta.entry_level, top_level));
    }
    im.entry_.store(Impl::PackEntry(meta.entry_node, int(meta.entry_level)));
  }
  // Free list and labels.
  const uint32_t* fl = reinterpret_cast<const uint32_t*>(free_bytes.data());
  std::vector<bool> listed(n, false);  // a slot listed twice would be given to two inserts
  for (size_t j = 0; j < free_bytes.size() / 4; ++j) {
    if (fl[j] >= n || !(im.Header(fl[j]) & kFreeBit)) {
      return Error(Corruption("{}: FREE entry {} names slot {}, which is not a free slot", file, j,
                              fl[j]));
    }
    if (listed[fl[j]]) {
      return Error(Corruption("{}: FREE entry {} names slot {} a second time", file, j, fl[j]));
    }
    listed[fl[j]] = true;
    im.free_.push_back(fl[j]);
  }
  // A read-only index (mapped, or with its full vectors mapped) whose ids are
  // 0..n-1 finds nodes in a dense array instead of a hash map (GloVe-100: 1.3 MB
  // instead of about 11 MB).
  if ((options.mmap || map_full) && deleted == 0 && im.free_.empty()) {
    std::vector<uint32_t> dense(n, kInvalidNode);
    bool ok = true;
    for (uint32_t i = 0; i < n && ok; ++i) {
      const VectorId id = im.Label(i);
      ok = id < n && dense[id] == kInvalidNode;
      if (ok) dense[id] = i;
    }
    if (ok) {
      im.dense_ = true;
      im.dense_node_of_ = std::move(dense);
    }
  }
  if (!im.dense_) im.node_of_.reserve(n);
  for (uint32_t i = 0; i < n && !im.dense_; ++i) {
    const uint32_t h = im.Header(i);
    if (h & (kFreeBit | kDeletedBit)) continue;
    if (!im.node_of_.emplace(im.Label(i), i).second) {
      return Error(Corruption("{}: id {} is stored twice (nodes {} and {})", file, im.Label(i),
                              im.node_of_[im.Label(i)], i));
    }
  }
  im.num_deleted_.store(deleted);
  if (options.mmap) {
    if (im.sq8_ && !full.empty()) {
      // Opening verified FULL's checksum and so touched its pages; only reranks read it
      // (never, for SPANN's heads: SearchParams::codes_only). Let its pages go from this
      // process's resident set; they stay in the page cache.
      const uintptr_t page = 4096;
      const uintptr_t a = reinterpret_cast<uintptr_t>(full.data()) & ~(page - 1);
      const uintptr_t b = reinterpret_cast<uintptr_t>(full.data()) + full.size();
      madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);
    }
    im.mapping_ = std::make_shared<storage::SectionFile>(std::move(sf));
    im.locks_.reset();  // read-only: nothing will ever take a node lock
  } else if (map_full) {
    im.locks_.reset();  // read-only too (ReadOnly(): full_mapped_)
    // Opening verified every section's checksum and so touched every page, and the
    // graph has been copied out: let the file's pages go from this process's
    // resident set (they stay in the page cache). A search maps back only the full
    // vectors it reranks.
    for (const auto& e : sf.entries()) {
      auto bytes = sf.Section(e.tag);
      if (!bytes || bytes->empty()) continue;
      const uintptr_t page = 4096;
      const uintptr_t a = reinterpret_cast<uintptr_t>(bytes->data()) & ~(page - 1);
      const uintptr_t b = reinterpret_cast<uintptr_t>(bytes->data()) + bytes->size();
      madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);
    }
    if (options.read_full_vectors && !full_omitted) {
      // Reranks read FULL through their own descriptor (Get and filtered searches
      // still use the mapping).
      for (const auto& e : sf.entries()) {
        if (e.tag == hnsw_format::kTagFull) im.full_file_offset_ = e.offset;
      }
      // Buffered, not O_DIRECT: a rerank reads a few hundred bytes per candidate,
      // and the page cache keeps the vectors that reranks come back to.
      storage::BlockFile::Options fo;
      fo.direct = false;
      auto opened = storage::BlockFile::Open(file, fo);
      if (!opened) {
        return Error(IOError("{}: cannot open for reading full vectors: {}", file,
                             opened.error().ToString()));
      }
      im.full_file_ = std::move(*opened);
      im.full_io_ = options.full_vector_io;
    }
    im.mapping_ = std::make_shared<storage::SectionFile>(std::move(sf));
  }
  return index;
}

}  // namespace strata::index
