#include "engine/segment.h"
#include "engine/attribute_codec.h"

#include <algorithm>
#include <cstring>

#include "engine/codec.h"

namespace strata::engine {
namespace fs = std::filesystem;

namespace {

constexpr char kRecordsMagic[] = "STRSEG";
constexpr char kDeletesMagic[] = "STRDEL";
constexpr uint16_t kMajor = 1;
constexpr uint16_t kMinor = 0;
constexpr uint32_t kTagMeta = storage::SectionTag("META");
constexpr uint32_t kTagIds = storage::SectionTag("IDS ");
constexpr uint32_t kTagVecs = storage::SectionTag("VECS");
constexpr uint32_t kTagAoff = storage::SectionTag("AOFF");
constexpr uint32_t kTagAttr = storage::SectionTag("ATTR");
constexpr uint32_t kTagDels = storage::SectionTag("DELS");
constexpr char kRecordsFile[] = "records.strata";

struct Meta {
  uint64_t rows;
  uint32_t dim;
  uint32_t metric;
  uint32_t kind;  // SealedSegment::Kind
  uint32_t reserved0;
  uint64_t reserved[5];
};
static_assert(sizeof(Meta) == 64);

template <typename T>
std::span<const std::byte> Bytes(const std::vector<T>& v) {
  return std::as_bytes(std::span(v));
}

}  // namespace

Status SealedSegment::WriteRecords(const fs::path& dir, size_t dim, Metric metric, Kind kind,
                                   std::span<const Row> rows) {
  std::error_code ec;
  if (fs::exists(dir, ec)) return AlreadyExists("{} already exists", dir.string());
  fs::create_directories(dir, ec);
  if (ec) return IOError("{}: cannot create: {}", dir.string(), ec.message());
  std::vector<VectorId> ids(rows.size());
  std::vector<uint64_t> offsets(rows.size() + 1, 0);
  std::vector<std::byte> attrs;
  ByteWriter aw(attrs);
  for (size_t i = 0; i < rows.size(); ++i) {
    ids[i] = rows[i].id;
    if (i > 0 && ids[i] <= ids[i - 1]) return Internal("segment rows are not sorted by id");
    EncodeAttributes(*rows[i].attributes, aw);
    offsets[i + 1] = attrs.size();
  }
  Meta meta{};
  meta.rows = rows.size();
  meta.dim = uint32_t(dim);
  meta.metric = uint32_t(metric);
  meta.kind = uint32_t(kind);
  STRATA_ASSIGN_OR_RETURN(auto w, storage::SectionFileWriter::Create(dir / kRecordsFile, kRecordsMagic,
                                                                       kMajor, kMinor));
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagMeta, std::as_bytes(std::span(&meta, 1))));
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagIds, Bytes(ids)));
  STRATA_RETURN_IF_ERROR(w.BeginSection(kTagVecs));
  for (const Row& r : rows) STRATA_RETURN_IF_ERROR(w.Append(r.vector, dim * sizeof(float)));
  STRATA_RETURN_IF_ERROR(w.EndSection());
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagAoff, Bytes(offsets)));
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagAttr, attrs));
  return w.Commit();
}

Result<std::unique_ptr<SealedSegment>> SealedSegment::Open(const fs::path& dir, uint64_t id, size_t dim) {
  const fs::path path = dir / kRecordsFile;
  auto seg = std::unique_ptr<SealedSegment>(new SealedSegment());
  seg->dir_ = dir;
  seg->id_ = id;
  seg->dim_ = dim;
  STRATA_ASSIGN_OR_RETURN(storage::SectionFile sf, storage::SectionFile::Open(path, kRecordsMagic, kMajor));
  seg->records_ = std::make_unique<storage::SectionFile>(std::move(sf));
  const storage::SectionFile& f = *seg->records_;
  STRATA_ASSIGN_OR_RETURN(auto meta_bytes, f.Section(kTagMeta));
  if (meta_bytes.size() != sizeof(Meta)) {
    return Error(Corruption("{}: META has {} bytes, expected {}", path.string(), meta_bytes.size(), sizeof(Meta)));
  }
  Meta meta;
  std::memcpy(&meta, meta_bytes.data(), sizeof meta);
  if (meta.dim != dim) {
    return Error(Corruption("{}: segment has dimension {}, the collection {}", path.string(), meta.dim, dim));
  }
  STRATA_ASSIGN_OR_RETURN(auto ids, f.Section(kTagIds));
  STRATA_ASSIGN_OR_RETURN(auto vecs, f.Section(kTagVecs));
  STRATA_ASSIGN_OR_RETURN(auto aoff, f.Section(kTagAoff));
  STRATA_ASSIGN_OR_RETURN(auto attr, f.Section(kTagAttr));
  const uint64_t n = meta.rows;
  if (ids.size() != n * sizeof(VectorId) || vecs.size() != n * dim * sizeof(float) ||
      aoff.size() != (n + 1) * sizeof(uint64_t)) {
    return Error(Corruption("{}: section sizes (ids {}, vectors {}, offsets {}) do not fit {} rows of "
                            "dimension {}", path.string(), ids.size(), vecs.size(), aoff.size(), n, dim));
  }
  seg->ids_ = {reinterpret_cast<const VectorId*>(ids.data()), n};
  seg->vectors_ = reinterpret_cast<const float*>(vecs.data());
  seg->attr_offsets_ = {reinterpret_cast<const uint64_t*>(aoff.data()), n + 1};
  seg->attrs_ = attr;
  for (size_t i = 1; i < n; ++i) {
    if (seg->ids_[i] <= seg->ids_[i - 1]) {
      return Error(Corruption("{}: ids are not strictly increasing at row {}", path.string(), i));
    }
  }
  if (seg->attr_offsets_[0] != 0 || seg->attr_offsets_[n] != attr.size()) {
    return Error(Corruption("{}: attribute offsets do not span ATTR", path.string()));
  }
  for (size_t i = 0; i < n; ++i) {
    if (seg->attr_offsets_[i + 1] < seg->attr_offsets_[i]) {
      return Error(Corruption("{}: attribute offsets decrease at row {}", path.string(), i));
    }
  }
  if (meta.kind == uint32_t(Kind::kHnsw)) {
    index::HnswLoadOptions lo;
    lo.mmap = true;
    STRATA_ASSIGN_OR_RETURN(seg->graph_, index::HnswIndex::Load(GraphPath(dir), lo));
    if (seg->graph_->dim() != dim) {
      return Error(Corruption("{}: graph has dimension {}, expected {}", GraphPath(dir).string(),
                              seg->graph_->dim(), dim));
    }
  } else if (meta.kind == uint32_t(Kind::kSpann)) {
    seg->kind_ = Kind::kSpann;
    STRATA_ASSIGN_OR_RETURN(seg->spann_, index::SpannIndex::Open(SpannPath(dir)));
    if (seg->spann_->dim() != dim || seg->spann_->Stats().num_vectors != n) {
      return Error(Corruption("{}: SPANN index holds {} vectors of dimension {}, the records {} of {}",
                              SpannPath(dir).string(), seg->spann_->Stats().num_vectors, seg->spann_->dim(),
                              n, dim));
    }
  } else {
    return Error(Corruption("{}: META names unknown index kind {}", path.string(), meta.kind));
  }
  return seg;
}

std::optional<size_t> SealedSegment::Find(VectorId id) const {
  auto it = std::lower_bound(ids_.begin(), ids_.end(), id);
  if (it == ids_.end() || *it != id) return std::nullopt;
  return size_t(it - ids_.begin());
}

Result<Record> SealedSegment::Read(size_t row) const {
  Record r;
  r.id = ids_[row];
  r.vector.assign(vectors_ + row * dim_, vectors_ + (row + 1) * dim_);
  ByteReader br(attrs_.subspan(attr_offsets_[row], attr_offsets_[row + 1] - attr_offsets_[row]));
  if (Status s = DecodeAttributes(br, r.attributes); !s.ok()) {
    return Error(s.WithContext(fmt::format("{}: attributes of id {}", (dir_ / kRecordsFile).string(), r.id)));
  }
  return r;
}

namespace {
// Keeps external ids that are not in a segment's deleted set (HNSW segments are
// labelled with external ids).
class LiveIds final : public index::IdFilter {
 public:
  explicit LiveIds(const std::unordered_set<VectorId>& deleted) : deleted_(deleted) {}
  bool Contains(VectorId id) const override { return deleted_.count(id) == 0; }

 private:
  const std::unordered_set<VectorId>& deleted_;
};
// The same for SPANN segments, whose entries are row numbers.
class LiveRows final : public index::IdFilter {
 public:
  LiveRows(std::span<const VectorId> ids, const std::unordered_set<VectorId>& deleted)
      : ids_(ids), deleted_(deleted) {}
  bool Contains(VectorId row) const override { return deleted_.count(ids_[row]) == 0; }

 private:
  std::span<const VectorId> ids_;
  const std::unordered_set<VectorId>& deleted_;
};
}  // namespace

Result<std::vector<Neighbor>> SealedSegment::Search(VectorView query, const SearchOptions& options,
                                                    index::SearchContext& ctx, index::SpannContext& sctx,
                                                    index::SpannQueryStats* io) const {
  if (kind_ == Kind::kHnsw) {
    LiveIds live(deleted);
    index::SearchParams p;
    p.k = options.k;
    p.ef = std::max(options.ef, options.k);
    if (!deleted.empty()) p.filter = &live;
    return graph_->Search(query, p, ctx);
  }
  LiveRows live(ids_, deleted);
  index::SpannSearchParams p;
  p.k = options.k;
  p.max_lists = options.max_lists;
  if (!deleted.empty()) p.filter = &live;
  STRATA_ASSIGN_OR_RETURN(std::vector<Neighbor> out, spann_->Search(query, p, sctx, io));
  for (Neighbor& n : out) n.id = ids_[n.id];  // rows to ids
  return out;
}

size_t SealedSegment::memory_bytes() const {
  // Resident: the index's in-memory part (an HNSW graph is mapped, see its own
  // accounting; SPANN keeps its heads) and the id column (searched by binary
  // search); vectors and attributes are read on demand.
  const size_t index_bytes = graph_ ? graph_->Stats().memory_bytes : spann_->Stats().memory_bytes;
  return index_bytes + ids_.size_bytes() + deleted.size() * 32;
}

fs::path SealedSegment::DeletesPath(const fs::path& dir, uint64_t generation) {
  return dir / ("deletes-" + std::to_string(generation) + ".ids");
}

Status SealedSegment::WriteDeletes(const fs::path& dir, uint64_t generation, const std::vector<VectorId>& ids) {
  STRATA_ASSIGN_OR_RETURN(auto w, storage::SectionFileWriter::Create(DeletesPath(dir, generation),
                                                                       kDeletesMagic, kMajor, kMinor));
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagDels, Bytes(ids)));
  return w.Commit();
}

Result<std::vector<VectorId>> SealedSegment::ReadDeletes(const fs::path& dir, uint64_t generation) {
  const fs::path path = DeletesPath(dir, generation);
  STRATA_ASSIGN_OR_RETURN(storage::SectionFile sf, storage::SectionFile::Open(path, kDeletesMagic, kMajor));
  STRATA_ASSIGN_OR_RETURN(auto bytes, sf.Section(kTagDels));
  if (bytes.size() % sizeof(VectorId)) {
    return Error(Corruption("{}: DELS has {} bytes, not a whole number of ids", path.string(), bytes.size()));
  }
  std::vector<VectorId> ids(bytes.size() / sizeof(VectorId));
  std::memcpy(ids.data(), bytes.data(), bytes.size());
  return ids;
}

}  // namespace strata::engine
