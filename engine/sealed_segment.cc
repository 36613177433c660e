#include "engine/sealed_segment.h"
#include "engine/attribute_codec.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include <spdlog/spdlog.h>

#include "engine/codec.h"
#include "engine/narrow.h"
#include "engine/planner.h"
#include "engine/segment_calibration.h"
#include "index/distance/distance.h"

namespace strata::engine {
namespace fs = std::filesystem;

namespace {

constexpr char kRecordsMagic[] = "STRSEG";
constexpr char kDeletesMagic[] = "STRDEL";
constexpr uint16_t kMajor = 1;
// 1.1: META.graph_labels (rows or ids); 1.2: SIDE (SPANN held-out rows); 1.3: KOFF, KEYS,
// KORD (string keys); 1.4: META.element (VECS narrower than float32). Files without keys
// and with float32 vectors are still written as 1.2, byte for byte as before; with keys, 1.3.
constexpr uint16_t kMinor = 2;
constexpr uint16_t kMinorKeys = 3;
constexpr uint16_t kMinorNarrow = 4;
constexpr uint32_t kTagMeta = storage::SectionTag("META");
constexpr uint32_t kTagIds = storage::SectionTag("IDS ");
constexpr uint32_t kTagVecs = storage::SectionTag("VECS");
constexpr uint32_t kTagAoff = storage::SectionTag("AOFF");
constexpr uint32_t kTagAttr = storage::SectionTag("ATTR");
constexpr uint32_t kTagDels = storage::SectionTag("DELS");
constexpr uint32_t kTagSide = storage::SectionTag("SIDE");
constexpr uint32_t kTagKoff = storage::SectionTag("KOFF");
constexpr uint32_t kTagKeys = storage::SectionTag("KEYS");
constexpr uint32_t kTagKord = storage::SectionTag("KORD");
constexpr char kRecordsFile[] = "records.strata";
constexpr char kCalibrationFile[] = "calibration.strata";

// SPANN's query-aware pruning for a given max_lists: the index's default up to 64
// lists, relaxed in proportion beyond, so that a larger max_lists (a higher recall
// target) really reads more lists -- with the default pruning recall stops rising
// at about 0.948 on GloVe-100 however many lists are allowed.
double PruneFor(uint32_t lists) { return index::SpannSearchParams{}.prune_epsilon * std::max(1.0, lists / 64.0); }

struct Meta {
  uint64_t rows;
  uint32_t dim;
  uint32_t metric;
  uint32_t kind;  // SealedSegment::Kind
  uint32_t graph_labels;  // HNSW: 0 = the graph's labels are ids, 1 = row numbers
  uint32_t element;  // VECS: ElementType (1.4; 0 = float32, what older files hold here)
  uint32_t reserved0;
  uint64_t reserved[4];
};
static_assert(sizeof(Meta) == 64);

template <typename T>
std::span<const std::byte> Bytes(const std::vector<T>& v) {
  return std::as_bytes(std::span(v));
}

}  // namespace

Status SealedSegment::WriteRecords(const fs::path& dir, size_t dim, Metric metric, Kind kind,
                                   std::span<const Row> rows, bool graph_labels_rows,
                                   std::span<const uint32_t> side_rows) {
  std::error_code ec;
  if (fs::exists(dir, ec)) return AlreadyExists("{} already exists", dir.string());
  fs::create_directories(dir, ec);
  if (ec) return IOError("{}: cannot create: {}", dir.string(), ec.message());
  std::vector<VectorId> ids(rows.size());
  std::vector<uint64_t> offsets(rows.size() + 1, 0);
  std::vector<std::byte> attrs;
  ByteWriter aw(attrs);
  bool keyed = false;
  for (size_t i = 0; i < rows.size(); ++i) {
    ids[i] = rows[i].id;
    if (i > 0 && ids[i] <= ids[i - 1]) return Internal("segment rows are not sorted by id");
    EncodeAttributes(*rows[i].attributes, aw);
    offsets[i + 1] = attrs.size();
    keyed = keyed || !rows[i].key.empty();
  }
  // Keys: every row's bytes (none for rows written by id) and the keyed rows in key order.
  std::vector<uint64_t> key_offsets;
  std::vector<std::byte> keys;
  std::vector<uint32_t> key_order;
  if (keyed) {
    key_offsets.assign(rows.size() + 1, 0);
    for (size_t i = 0; i < rows.size(); ++i) {
      const std::string_view k = rows[i].key;
      keys.insert(keys.end(), reinterpret_cast<const std::byte*>(k.data()),
                  reinterpret_cast<const std::byte*>(k.data()) + k.size());
      key_offsets[i + 1] = keys.size();
      if (!k.empty()) key_order.push_back(uint32_t(i));
    }
    std::sort(key_order.begin(), key_order.end(), [&](uint32_t a, uint32_t b) { return rows[a].key < rows[b].key; });
    for (size_t i = 1; i < key_order.size(); ++i) {
      if (rows[key_order[i]].key == rows[key_order[i - 1]].key) {
        return Internal("key '{}' is on two segment rows", KeyForMessage(rows[key_order[i]].key));
      }
    }
  }
  // The vectors in the narrowest type that holds all of them exactly (integer pixels: one
  // byte a value instead of four); reading widens them back to the same floats.
  NarrowestType narrowest;
  for (const Row& r : rows) narrowest.Add(r.vector, dim);
  const ElementType element = narrowest.Narrowest();
  Meta meta{};
  meta.rows = rows.size();
  meta.element = uint32_t(element);
  meta.dim = uint32_t(dim);
  meta.metric = uint32_t(metric);
  meta.kind = uint32_t(kind);
  meta.graph_labels = graph_labels_rows ? 1 : 0;
  STRATA_ASSIGN_OR_RETURN(auto w, storage::SectionFileWriter::Create(dir / kRecordsFile, kRecordsMagic,
                                                                       kMajor,
                                                                       element != ElementType::kFloat32 ? kMinorNarrow
                                                                       : keyed                          ? kMinorKeys
                                                                                                        : kMinor));
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagMeta, std::as_bytes(std::span(&meta, 1))));
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagIds, Bytes(ids)));
  STRATA_RETURN_IF_ERROR(w.BeginSection(kTagVecs));
  std::vector<uint8_t> narrow(dim * ElementSize(element));
  for (const Row& r : rows) {
    if (element == ElementType::kFloat32) {
      STRATA_RETURN_IF_ERROR(w.Append(r.vector, dim * sizeof(float)));
      continue;
    }
    if (!NarrowRow(element, r.vector, dim, narrow.data())) {
      return Internal("row of id {} does not fit the segment's element type {}", r.id, ElementTypeName(element));
    }
    STRATA_RETURN_IF_ERROR(w.Append(narrow.data(), narrow.size()));
  }
  STRATA_RETURN_IF_ERROR(w.EndSection());
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagAoff, Bytes(offsets)));
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagAttr, attrs));
  if (!side_rows.empty()) STRATA_RETURN_IF_ERROR(w.AddSection(kTagSide, std::as_bytes(side_rows)));
  if (keyed) {
    STRATA_RETURN_IF_ERROR(w.AddSection(kTagKoff, Bytes(key_offsets)));
    STRATA_RETURN_IF_ERROR(w.AddSection(kTagKeys, keys));
    STRATA_RETURN_IF_ERROR(w.AddSection(kTagKord, Bytes(key_order)));
  }
  return w.Commit();
}

Result<std::unique_ptr<SealedSegment>> SealedSegment::Open(const fs::path& dir, uint64_t id, size_t dim) {
  const fs::path path = dir / kRecordsFile;
  std::error_code ec;
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
  if (meta.element > kLastElementType) {
    return Error(Corruption("{}: META names unknown element type {}", path.string(), meta.element));
  }
  seg->element_ = ElementType(meta.element);
  seg->row_bytes_ = dim * ElementSize(seg->element_);
  if (ids.size() != n * sizeof(VectorId) || vecs.size() != n * seg->row_bytes_ ||
      aoff.size() != (n + 1) * sizeof(uint64_t)) {
    return Error(Corruption("{}: section sizes (ids {}, vectors {}, offsets {}) do not fit {} rows of "
                            "dimension {}", path.string(), ids.size(), vecs.size(), aoff.size(), n, dim));
  }
  seg->ids_ = {reinterpret_cast<const VectorId*>(ids.data()), n};
  seg->vecs_ = vecs;
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
  STRATA_RETURN_IF_ERROR(seg->LoadKeys(path));
  if (meta.metric > uint32_t(Metric::kCosine) || meta.graph_labels > 1) {
    return Error(Corruption("{}: META names unknown metric {} or graph labelling {}", path.string(), meta.metric,
                            meta.graph_labels));
  }
  seg->metric_ = Metric(meta.metric);
  seg->graph_labels_rows_ = meta.graph_labels == 1;
  if (f.Has(kTagSide)) {
    STRATA_ASSIGN_OR_RETURN(auto side, f.Section(kTagSide));
    if (side.size() % sizeof(uint32_t) || meta.kind != uint32_t(Kind::kSpann)) {
      return Error(Corruption("{}: SIDE has {} bytes in a segment of kind {}", path.string(), side.size(),
                              meta.kind));
    }
    seg->side_rows_.resize(side.size() / sizeof(uint32_t));
    std::memcpy(seg->side_rows_.data(), side.data(), side.size());
    for (size_t i = 0; i < seg->side_rows_.size(); ++i) {
      if (seg->side_rows_[i] >= n || (i > 0 && seg->side_rows_[i] <= seg->side_rows_[i - 1])) {
        return Error(Corruption("{}: SIDE row {} out of order or beyond {} rows", path.string(),
                                seg->side_rows_[i], n));
      }
    }
  }
  if (seg->metric_ == Metric::kCosine) {
    const auto& kern = index::Kernels();
    seg->inv_norms_.resize(n);
    std::vector<float> buf(dim);
    for (size_t i = 0; i < n; ++i) {
      const float* v = seg->vector(i, buf.data());
      const float nn = kern.ip(v, v, dim);
      seg->inv_norms_[i] = nn > 0 ? 1.0f / std::sqrt(nn) : 0.0f;
    }
  }
  {
    // The attribute index, from the stored attributes.
    Attributes attrs;
    for (size_t i = 0; i < n; ++i) {
      attrs.clear();
      ByteReader br(seg->attrs_.subspan(seg->attr_offsets_[i], seg->attr_offsets_[i + 1] - seg->attr_offsets_[i]));
      if (Status st = DecodeAttributes(br, attrs); !st.ok()) {
        return Error(st.WithContext(fmt::format("{}: attributes of row {}", path.string(), i)));
      }
      seg->attr_index_.Add(uint32_t(i), attrs);
    }
    seg->attr_index_.Seal();
  }
  if (fs::exists(dir / kCalibrationFile, ec)) {
    STRATA_ASSIGN_OR_RETURN(Calibration c, Calibration::Load(dir / kCalibrationFile));
    seg->calibration_ = std::make_shared<const Calibration>(std::move(c));
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
    const index::SpannStats st = seg->spann_->Stats();
    seg->spann_lists_ = uint32_t(st.num_lists);
    seg->spann_memory_bytes_ = st.memory_bytes;
    // Labels are rows; held-out rows at the end leave the label bound below n.
    if (seg->spann_->dim() != dim || st.num_vectors > n || (seg->side_rows_.empty() && st.num_vectors != n)) {
      return Error(Corruption("{}: SPANN index holds {} vectors of dimension {}, the records {} of {}",
                              SpannPath(dir).string(), st.num_vectors, seg->spann_->dim(),
                              n, dim));
    }
  } else {
    return Error(Corruption("{}: META names unknown index kind {}", path.string(), meta.kind));
  }
  // Resident: the index's in-memory part (an HNSW graph is mapped, see its own
  // accounting; SPANN keeps its heads) and the id column (searched by binary
  // search); vectors and attributes are read on demand.
  const size_t index_bytes = seg->graph_ ? seg->graph_->Stats().memory_bytes : seg->spann_memory_bytes_;
  // Keys: the offsets and the key order, touched by every key lookup (as the ids are).
  seg->memory_bytes_ = index_bytes + seg->ids_.size_bytes() + seg->inv_norms_.size() * sizeof(float) +
                       seg->attr_index_.memory_bytes() + seg->key_offsets_.size_bytes() +
                       seg->key_order_.size_bytes();
  return seg;
}

Status SealedSegment::LoadKeys(const fs::path& path) {
  const storage::SectionFile& f = *records_;
  const bool any = f.Has(kTagKoff) || f.Has(kTagKeys) || f.Has(kTagKord);
  if (!any) return Status::Ok();
  if (!f.Has(kTagKoff) || !f.Has(kTagKeys) || !f.Has(kTagKord)) {
    return Corruption("{}: has some of the key sections KOFF, KEYS, KORD but not all", path.string());
  }
  STRATA_ASSIGN_OR_RETURN(auto koff, f.Section(kTagKoff));
  STRATA_ASSIGN_OR_RETURN(auto keys, f.Section(kTagKeys));
  STRATA_ASSIGN_OR_RETURN(auto kord, f.Section(kTagKord));
  const size_t n = rows();
  if (koff.size() != (n + 1) * sizeof(uint64_t) || kord.size() % sizeof(uint32_t) != 0) {
    return Corruption("{}: KOFF has {} bytes for {} rows, KORD {}", path.string(), koff.size(), n, kord.size());
  }
  key_offsets_ = {reinterpret_cast<const uint64_t*>(koff.data()), n + 1};
  keys_ = keys;
  key_order_ = {reinterpret_cast<const uint32_t*>(kord.data()), kord.size() / sizeof(uint32_t)};
  if (key_offsets_[0] != 0 || key_offsets_[n] != keys.size()) {
    return Corruption("{}: key offsets do not span KEYS", path.string());
  }
  size_t keyed = 0;
  for (size_t i = 0; i < n; ++i) {
    if (key_offsets_[i + 1] < key_offsets_[i] || key_offsets_[i + 1] - key_offsets_[i] > kMaxKeyBytes) {
      return Corruption("{}: key of row {} has a bad length", path.string(), i);
    }
    if (key_offsets_[i + 1] > key_offsets_[i]) {
      ++keyed;
      if (!IsKeyedId(ids_[i])) {
        return Corruption("{}: row {} has a key but id {} is outside the keyed range", path.string(), i, ids_[i]);
      }
    }
  }
  // KORD: every keyed row once, in strictly increasing key order (so keys are distinct).
  if (key_order_.size() != keyed) {
    return Corruption("{}: KORD lists {} rows, {} rows have keys", path.string(), key_order_.size(), keyed);
  }
  for (size_t i = 0; i < key_order_.size(); ++i) {
    if (key_order_[i] >= n || key(key_order_[i]).empty() ||
        (i > 0 && key(key_order_[i]) <= key(key_order_[i - 1]))) {
      return Corruption("{}: KORD entry {} (row {}) is out of range, not keyed or out of key order", path.string(),
                        i, key_order_[i]);
    }
  }
  return Status::Ok();
}

std::optional<size_t> SealedSegment::FindKey(std::string_view k) const {
  auto it = std::lower_bound(key_order_.begin(), key_order_.end(), k,
                             [this](uint32_t row, std::string_view x) { return key(row) < x; });
  if (it == key_order_.end() || key(*it) != k) return std::nullopt;
  return size_t(*it);
}

std::optional<size_t> SealedSegment::Find(VectorId id) const {
  auto it = std::lower_bound(ids_.begin(), ids_.end(), id);
  if (it == ids_.end() || *it != id) return std::nullopt;
  return size_t(it - ids_.begin());
}

Result<Record> SealedSegment::Read(size_t row) const {
  Record r;
  r.id = ids_[row];
  r.key = std::string(key(row));
  r.vector.resize(dim_);
  const float* v = vector(row, r.vector.data());
  if (v != r.vector.data()) std::memcpy(r.vector.data(), v, dim_ * sizeof(float));
  ByteReader br(attrs_.subspan(attr_offsets_[row], attr_offsets_[row + 1] - attr_offsets_[row]));
  if (Status s = DecodeAttributes(br, r.attributes); !s.ok()) {
    return Error(s.WithContext(fmt::format("{}: attributes of id {}", (dir_ / kRecordsFile).string(), r.id)));
  }
  return r;
}

Result<Attributes> SealedSegment::ReadAttributes(size_t row) const {
  Attributes out;
  ByteReader br(attrs_.subspan(attr_offsets_[row], attr_offsets_[row + 1] - attr_offsets_[row]));
  if (Status s = DecodeAttributes(br, out); !s.ok()) {
    return Error(s.WithContext(fmt::format("{}: attributes of id {}", (dir_ / kRecordsFile).string(), ids_[row])));
  }
  return out;
}

// Which labels an index search may return: live rows (per the view's deletes),
// and with `allowed` only rows set there. Labels are rows (SPANN; HNSW graphs
// written from rows, and seals since format 1.3) or ids (HNSW saved by older
// seals, looked up by binary search).
struct SealedSegment::RowFilter final : index::IdFilter {
  RowFilter(const SealedSegment& s, const DeleteSet* d, const RowBitmap* a, bool rows)
      : seg(s), deletes(d), allowed(a), by_row(rows) {}
  bool Contains(VectorId label) const override {
    size_t row = label;
    if (!by_row) {
      auto r = seg.Find(label);
      if (!r) return false;
      row = *r;
    } else if (row >= seg.rows()) {
      return false;
    }
    if (allowed) return allowed->Test(uint32_t(row));
    return !deletes || !deletes->rows.Test(uint32_t(row));
  }
  const SealedSegment& seg;
  const DeleteSet* deletes;
  const RowBitmap* allowed;
  bool by_row;
};

std::pair<std::shared_ptr<const RowBitmap>, size_t> SealedSegment::FilterRows(const Filter& filter,
                                                                              const std::string* key) const {
  if (key) {
    std::lock_guard<std::mutex> g(filter_cache_mu_);
    for (auto it = filter_cache_.begin(); it != filter_cache_.end(); ++it) {
      if (it->key == *key) {
        filter_cache_.splice(filter_cache_.begin(), filter_cache_, it);  // most recent first
        return {filter_cache_.front().bits, filter_cache_.front().count};
      }
    }
  }
  auto bits = std::make_shared<const RowBitmap>(attr_index_.Evaluate(filter));
  const size_t count = bits->Count();
  if (key) {
    std::lock_guard<std::mutex> g(filter_cache_mu_);
    filter_cache_.push_front({*key, bits, count});
    if (filter_cache_.size() > kFilterCacheEntries) filter_cache_.pop_back();
  }
  return {bits, count};
}

Result<Calibration> SealedSegment::Measure(size_t queries, bool progress) const {
  CalibrationSource src;
  src.rows = rows();
  src.dim = dim_;
  src.metric = metric_;
  src.vector = [this](size_t r, float* buf) { return vector(r, buf); };
  src.id = [this](size_t r) { return ids_[r]; };
  src.progress = progress;
  if (kind_ == Kind::kHnsw) {
    HnswCalibrationTarget t;
    t.graph = graph_.get();
    if (graph_labels_rows_) {
      t.label_of_row = [](size_t r) { return VectorId(r); };
      t.row_of_label = [n = rows()](VectorId label) { return label < n ? size_t(label) : SIZE_MAX; };
    } else {
      t.label_of_row = [this](size_t r) { return ids_[r]; };
      t.row_of_label = [this](VectorId label) {
        auto r = Find(label);
        return r ? *r : SIZE_MAX;
      };
    }
    SetUpHnswCalibration(src, t);
  } else {
    src.grid = SpannCalibrationGrid(spann_lists_);
    src.param_at_least_k = false;
    src.scan_cost_per_row = kScanCost * kSpannBytesPerDistance;
    src.derive_filtered = true;
    // With side rows: they are the queries (not in the index at all) and the rows
    // measured against are the others (`position` maps a row to its place among them).
    std::vector<uint32_t> indexed, position;
    std::vector<float> held;
    if (!side_rows_.empty()) {
      position.assign(rows(), UINT32_MAX);
      size_t next = 0;
      for (size_t r = 0; r < rows(); ++r) {
        if (next < side_rows_.size() && side_rows_[next] == r) {
          ++next;
          continue;
        }
        position[r] = uint32_t(indexed.size());
        indexed.push_back(uint32_t(r));
      }
      std::vector<float> buf(dim_);
      for (uint32_t r : side_rows_) {
        const float* v = vector(r, buf.data());
        held.insert(held.end(), v, v + dim_);
      }
      src.rows = indexed.size();
      src.vector = [this, &indexed](size_t p, float* b) { return vector(indexed[p], b); };
      src.id = [this, &indexed](size_t p) { return ids_[indexed[p]]; };
      src.external_queries = held.data();
      src.num_external_queries = side_rows_.size();
    }
    src.search = [this, &position](const float* q, uint32_t k, uint32_t lists, size_t,
                                   const std::function<bool(size_t)>* allowed,
                                   double* cost) -> Result<std::vector<Neighbor>> {
      thread_local index::SpannContext sctx;
      index::SpannSearchParams p;
      p.k = k;
      p.max_lists = lists;
      p.prune_epsilon = PruneFor(lists);
      std::optional<LabelPredicate> lp;
      if (allowed) {
        lp.emplace([allowed, &position](VectorId row) {
          return (*allowed)(position.empty() ? size_t(row) : size_t(position[row]));
        });
        p.filter = &*lp;
      }
      index::SpannQueryStats st;
      STRATA_ASSIGN_OR_RETURN(auto out, spann_->Search(VectorView(q, dim_), p, sctx, &st));
      *cost += double(st.bytes_read);
      for (Neighbor& nb : out) nb.id = ids_[nb.id];
      return out;
    };
    return Calibrate(src, queries);
  }
  return Calibrate(src, queries);
}

Status SealedSegment::CalibrateAndSave(size_t queries, double* seconds, bool progress) {
  if (seconds) *seconds = 0;
  if (calibration()) return Status::Ok();
  // Segments below kMinCalibrationRows get an empty table (the planner scans them).
  Calibration c;
  if (rows() >= kMinCalibrationRows) {
    const size_t q = std::min(queries, CalibrationQueries(rows(), kind_ == Kind::kHnsw ? SegmentKind::kHnsw
                                                                                        : SegmentKind::kSpann));
    STRATA_ASSIGN_OR_RETURN(c, Measure(q, progress));
    if (seconds) *seconds = c.seconds;
  }
  STRATA_RETURN_IF_ERROR(c.Save(dir_ / kCalibrationFile));
  std::atomic_store(&calibration_, std::make_shared<const Calibration>(std::move(c)));
  return Status::Ok();
}

Result<std::vector<Neighbor>> SealedSegment::IndexSearch(const SegmentQuery& q, uint32_t want, uint32_t param,
                                                         const DeleteSet* deletes, const RowBitmap* allowed,
                                                         SearchScratch& scratch, SegmentExplain& ex,
                                                         index::SpannQueryStats* io) const {
  const bool by_row = kind_ == Kind::kSpann || graph_labels_rows_;
  RowFilter rf(*this, deletes, allowed, by_row);
  const bool need_filter = allowed || (deletes && deletes->count > 0);
  std::vector<Neighbor> out;
  if (kind_ == Kind::kHnsw) {
    index::SearchParams p;
    p.k = want;
    p.ef = std::max(param, want);
    if (need_filter) p.filter = &rf;
    if (!q.filter) p.max_distance = q.max_distance;
    index::HnswSearchStats st;
    STRATA_ASSIGN_OR_RETURN(out, graph_->Search(q.query, p, scratch.hnsw, &st));
    ex.ef = p.ef;
    ex.distances += st.distances;
    ex.nodes_visited += st.hops;
  } else {
    index::SpannSearchParams p;
    p.k = want;
    p.max_lists = param;
    p.prune_epsilon = PruneFor(param);
    if (need_filter) p.filter = &rf;
    index::SpannQueryStats st;
    STRATA_ASSIGN_OR_RETURN(out, spann_->Search(q.query, p, scratch.spann, &st));
    if (!side_rows_.empty()) {
      // Rows held out of the index: scored exactly, merged by row.
      std::vector<uint32_t> side;
      for (uint32_t r : side_rows_) {
        if (rf.Contains(r)) side.push_back(r);
      }
      std::vector<float> buf(dim_);
      auto extra = ScanTopK(
          q.normalized, dim_, metric_, want, side.size(),
          [&](size_t i, VectorId* id, float* inv) {
            *id = side[i];
            *inv = inv_norm(side[i]);
            return vector(side[i], buf.data());
          },
          [&](size_t i) { PrefetchVector(side[i]); });
      ex.distances += side.size();
      out.insert(out.end(), extra.begin(), extra.end());
      std::sort(out.begin(), out.end());
      if (out.size() > want) out.resize(want);
    }
    ex.max_lists = p.max_lists;
    ex.distances += st.entries_scored;
    ex.lists_read += st.lists_read;
    ex.bytes_read += st.bytes_read;
    if (io) {
      io->lists_read += st.lists_read;
      io->bytes_read += st.bytes_read;
      io->entries_scored += st.entries_scored;
      io->io_wait_ns += st.io_wait_ns;
    }
  }
  if (!by_row) {
    // Labels are ids: back to rows (every returned label passed the filter or is live).
    for (Neighbor& nb : out) nb.id = *Find(nb.id);
  }
  return out;
}

std::vector<VectorId> DeleteSet::Ids(const SealedSegment& segment) const {
  std::vector<VectorId> ids;
  ids.reserve(count);
  rows.ForEach([&](uint32_t r) { ids.push_back(segment.ids()[r]); });
  return ids;
}

std::string SealedSegment::View::name() const { return fmt::format("segment {}", seg_.id()); }

void SealedSegment::View::LiveRows(std::vector<uint32_t>& out) const {
  const uint32_t n = row_bound();
  for (uint32_t r = 0; r < n; ++r) {
    if (IsLive(r)) out.push_back(r);
  }
}

MatchingRows SealedSegment::View::Match(const Filter& filter, const std::string* key) const {
  auto [bits, count] = seg_.FilterRows(filter, key);
  if (!deletes_ || deletes_->count == 0) return {std::move(bits), count};
  auto live_bits = std::make_shared<RowBitmap>(*bits);
  live_bits->AndNot(deletes_->rows);
  const uint64_t live_count = live_bits->Count();
  return {std::move(live_bits), live_count};
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
