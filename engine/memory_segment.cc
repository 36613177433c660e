#include "engine/memory_segment.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <mutex>

#include <fmt/core.h>

#include "core/vector_set.h"
#include "engine/segment_calibration.h"
#include "index/distance/distance.h"

namespace strata::engine {

namespace {

// Rows per chunk: about 1 MiB of vectors, 64..4096 rows.
uint32_t ChunkShift(size_t dim) {
  const size_t rows = std::clamp<size_t>((size_t{1} << 20) / (dim * sizeof(float)), 64, 4096);
  return uint32_t(std::bit_width(std::bit_floor(rows)) - 1);
}

// Batches at least this large go to the graph through AddBatch (several threads).
constexpr uint32_t kParallelInsertRows = 64;

}  // namespace

MemorySegment::Chunk::Chunk(size_t rows, size_t dim)
    : ids(new VectorId[rows]),
      vectors(new float[rows * dim]),
      inv_norms(new float[rows]),
      attributes(new Attributes[rows]),
      prev(new uint32_t[rows]),
      keys(new std::string[rows]),
      key_prev(new uint32_t[rows]),
      removed(new std::atomic<uint64_t>[rows]) {
  for (size_t i = 0; i < rows; ++i) removed[i].store(kLive, std::memory_order_relaxed);
}

MemorySegment::MemorySegment(size_t dim, Metric metric) : dim_(dim), metric_(metric) {
  shift_ = ChunkShift(dim);
  mask_ = (uint32_t{1} << shift_) - 1;
  auto t = std::make_unique<Table>();
  t->capacity = 16;
  t->chunks = std::make_unique<Chunk*[]>(t->capacity);
  table_.store(t.get(), std::memory_order_release);
  tables_.push_back(std::move(t));
}

MemorySegment::~MemorySegment() = default;

Result<std::shared_ptr<MemorySegment>> MemorySegment::Create(size_t dim, Metric metric,
                                                             const index::HnswOptions& graph_options) {
  auto seg = std::shared_ptr<MemorySegment>(new MemorySegment(dim, metric));
  index::HnswOptions o = graph_options;
  // Rows are never removed from the graph (visibility hides them): no tombstones to repair.
  STRATA_ASSIGN_OR_RETURN(seg->graph_, index::HnswIndex::Create(dim, metric, o));
  return seg;
}

uint32_t MemorySegment::AppendRow(VectorId id, std::string_view key, std::span<const float> vector,
                                  const Attributes& attributes, uint32_t prev) {
  const uint32_t row = rows_.load(std::memory_order_relaxed);
  STRATA_CHECK(row < kNoRow - 1);
  const size_t c = row >> shift_;
  Table* t = table_.load(std::memory_order_relaxed);
  if (c >= chunks_.size()) {
    if (c >= t->capacity) {
      // Grow the table by copy; readers holding the old one keep using it.
      auto bigger = std::make_unique<Table>();
      bigger->capacity = t->capacity * 2;
      bigger->chunks = std::make_unique<Chunk*[]>(bigger->capacity);
      std::copy(t->chunks.get(), t->chunks.get() + t->capacity, bigger->chunks.get());
      t = bigger.get();
      tables_.push_back(std::move(bigger));
    }
    chunks_.push_back(std::make_unique<Chunk>(size_t{1} << shift_, dim_));
    t->chunks[c] = chunks_.back().get();
    table_.store(t, std::memory_order_release);
  }
  Chunk& ch = *t->chunks[c];
  const uint32_t i = row & mask_;
  ch.ids[i] = id;
  std::memcpy(&ch.vectors[size_t(i) * dim_], vector.data(), dim_ * sizeof(float));
  float inv = 1.0f;
  if (metric_ == Metric::kCosine) {
    const float nn = index::Kernels().ip(vector.data(), vector.data(), dim_);
    inv = nn > 0 ? 1.0f / std::sqrt(nn) : 0.0f;
  }
  ch.inv_norms[i] = inv;
  ch.attributes[i] = attributes;
  ch.prev[i] = prev;
  ch.keys[i].assign(key);
  ch.key_prev[i] = kNoRow;
  if (!key.empty()) {
    ch.key_prev[i] = LatestKeyRow(key);
    if (auto it = pending_keys_.find(key); it != pending_keys_.end()) {
      it->second = row;
    } else {
      pending_keys_.emplace(std::string(key), row);
    }
    key_bytes_.fetch_add(key.size(), std::memory_order_relaxed);
    keyed_rows_.fetch_add(1, std::memory_order_relaxed);
  }
  ch.removed[i].store(kLive, std::memory_order_relaxed);
  pending_[id] = row;
  ++live_;
  rows_.store(row + 1, std::memory_order_release);
  return row;
}

uint32_t MemorySegment::LatestRow(VectorId id) const {
  if (auto it = pending_.find(id); it != pending_.end()) return it->second;
  // Only this writer changes latest_: reading it without the lock is safe here.
  auto it = latest_.find(id);
  return it == latest_.end() ? kNoRow : it->second;
}

uint32_t MemorySegment::LatestKeyRow(std::string_view key) const {
  if (auto it = pending_keys_.find(key); it != pending_keys_.end()) return it->second;
  // Only this writer changes latest_key_: reading it without the lock is safe here.
  auto it = latest_key_.find(key);
  return it == latest_key_.end() ? kNoRow : it->second;
}

void MemorySegment::Remove(uint32_t row, uint64_t sequence) {
  mutable_chunk(row).removed[row & mask_].store(sequence, std::memory_order_relaxed);
  --live_;
}

Status MemorySegment::IndexRows(uint32_t begin, uint32_t end, uint32_t threads) {
  {
    std::unique_lock<std::shared_mutex> x(map_mu_);
    for (uint32_t r = booked_; r < end; ++r) {
      latest_[id(r)] = r;
      if (const std::string& k = key(r); !k.empty()) latest_key_[k] = r;
      attrs_.Add(r, attributes(r));
    }
    booked_ = std::max(booked_, end);
  }
  pending_.clear();
  pending_keys_.clear();
  if (end - begin >= kParallelInsertRows) {
    STRATA_ASSIGN_OR_RETURN(VectorSet vs, VectorSet::Create(end - begin, dim_));
    std::vector<VectorId> labels(end - begin);
    for (uint32_t r = begin; r < end; ++r) {
      std::memcpy(vs.mutable_row(r - begin), vector(r), dim_ * sizeof(float));
      labels[r - begin] = r;
    }
    index::HnswBuildOptions bo;
    bo.num_threads = int(threads);
    return graph_->AddBatch(vs, labels, bo);
  }
  for (uint32_t r = begin; r < end; ++r) {
    STRATA_RETURN_IF_ERROR(graph_->Add(r, VectorView(vector(r), dim_)));
  }
  return Status::Ok();
}

std::optional<uint32_t> MemorySegment::RowAt(VectorId id, uint32_t limit, uint64_t sequence) const {
  uint32_t r = kNoRow;
  {
    std::shared_lock<std::shared_mutex> s(map_mu_);
    auto it = latest_.find(id);
    if (it == latest_.end()) return std::nullopt;
    r = it->second;
  }
  // Later rows of the id (past the snapshot) lead back to the one it sees.
  while (r != kNoRow && r >= limit) r = prev(r);
  if (r == kNoRow || removed_at(r) <= sequence) return std::nullopt;
  return r;
}

std::optional<uint32_t> MemorySegment::RowAtKey(std::string_view key, uint32_t limit, uint64_t sequence) const {
  uint32_t r = kNoRow;
  {
    std::shared_lock<std::shared_mutex> s(map_mu_);
    auto it = latest_key_.find(key);
    if (it == latest_key_.end()) return std::nullopt;
    r = it->second;
  }
  // Later rows of the key (past the snapshot) lead back to the one it sees. At most one
  // row of a key is live at any sequence, and an older one was removed before a newer
  // one was appended: when the newest row below the limit is not live, none is.
  while (r != kNoRow && r >= limit) r = chunk(r).key_prev[r & mask_];
  if (r == kNoRow || removed_at(r) <= sequence) return std::nullopt;
  return r;
}

size_t MemorySegment::memory_bytes() const {
  // O(1), without locks: the chunks by count, the graph by its estimate, the id map
  // and the attribute index by row count (their exact size would need the writer's lock).
  const size_t rows = rows_.load(std::memory_order_acquire);
  const size_t per_row = sizeof(VectorId) + dim_ * sizeof(float) + sizeof(float) + sizeof(Attributes) +
                         sizeof(uint32_t) + sizeof(uint64_t) + sizeof(std::string) + sizeof(uint32_t);
  // Keys: their bytes (beyond the strings' inline buffers, counted whole for
  // simplicity) and a key-map entry per keyed row (a node with a string and a row).
  const size_t keys = 2 * key_bytes_.load(std::memory_order_relaxed) +  // the row's copy and the map's
                      keyed_rows_.load(std::memory_order_relaxed) *
                          (sizeof(std::string) + sizeof(uint32_t) + 3 * sizeof(void*) + 16);
  const size_t chunk_rows = ((rows + mask_) >> shift_) << shift_;
  return chunk_rows * per_row +
         index::HnswIndex::EstimateMemoryBytes(graph_->num_slots(), dim_, graph_->options(), false) +
         rows * (sizeof(VectorId) + sizeof(uint32_t) + 3 * sizeof(void*) + 16) + keys;
}

Result<double> MemorySegment::Calibrate(const View& view) {
  std::vector<uint32_t> rows;
  view.LiveRows(rows);
  const size_t n = rows.size();
  std::vector<uint32_t> position(view.row_bound(), UINT32_MAX);  // memory row -> calibration row
  for (size_t i = 0; i < n; ++i) position[rows[i]] = uint32_t(i);
  LiveRowFilter visible(view, nullptr);
  HnswCalibrationTarget t;
  t.graph = graph_.get();
  t.label_of_row = [&rows](size_t i) { return VectorId(rows[i]); };
  t.row_of_label = [&position](VectorId label) {
    return label < position.size() && position[label] != UINT32_MAX ? size_t(position[label]) : SIZE_MAX;
  };
  t.visible = &visible;
  CalibrationSource src;
  src.rows = n;
  src.dim = dim_;
  src.metric = metric_;
  src.vector = [this, &rows](size_t i, float*) { return vector(rows[i]); };
  SetUpHnswCalibration(src, t);
  STRATA_ASSIGN_OR_RETURN(Calibration c, engine::Calibrate(src, CalibrationQueries(n, SegmentKind::kHnsw)));
  const double seconds = c.seconds;
  std::atomic_store(&calibration_, std::make_shared<const Calibration>(std::move(c)));
  calibrated_rows_.store(n, std::memory_order_relaxed);
  return seconds;
}

std::string MemorySegment::View::calibration_origin() const {
  if (stand_in_rows_ == 0) return {};
  return fmt::format("calibration of segment {} ({} rows; this one is not measured yet)", stand_in_segment_,
                     stand_in_rows_);
}

void MemorySegment::View::LiveRows(std::vector<uint32_t>& out) const {
  for (uint32_t r = 0; r < limit_; ++r) {
    if (seg_.removed_at(r) > sequence_) out.push_back(r);
  }
}

MatchingRows MemorySegment::View::Match(const Filter& filter, const std::string*) const {
  RowBitmap all;
  {
    std::shared_lock<std::shared_mutex> s(seg_.map_mu_);
    all = seg_.attrs_.Evaluate(filter);
  }
  auto live = std::make_shared<RowBitmap>(limit_);
  uint64_t count = 0;
  all.ForEach([&](uint32_t r) {
    if (r < limit_ && seg_.removed_at(r) > sequence_) {
      live->Set(r);
      ++count;
    }
  });
  return {std::move(live), count};
}

uint8_t MemorySegment::View::AttributeKinds(std::string_view name) const {
  std::shared_lock<std::shared_mutex> s(seg_.map_mu_);
  return seg_.attrs_.KindsOf(name);
}

double MemorySegment::View::EstimateSelectivity(const Filter& filter) const {
  std::shared_lock<std::shared_mutex> s(seg_.map_mu_);
  return seg_.attrs_.EstimateSelectivity(filter);
}

Result<std::vector<Neighbor>> MemorySegment::View::IndexSearch(const SegmentQuery& q, uint32_t want, uint32_t param,
                                                               const RowBitmap* allowed, SearchScratch& scratch,
                                                               SegmentExplain& ex, index::SpannQueryStats*) const {
  index::SearchParams p;
  p.k = want;
  p.ef = std::max(param, want);
  // Rows past the snapshot (being inserted now) and rows it sees removed route the
  // search but are never returned.
  LiveRowFilter filter(*this, allowed);
  if (allowed || live_ < seg_.graph().num_slots()) p.filter = &filter;
  if (!q.filter) p.max_distance = q.max_distance;
  index::HnswSearchStats st;
  STRATA_ASSIGN_OR_RETURN(auto out, seg_.graph().Search(q.query, p, scratch.hnsw, &st));
  ex.ef = p.ef;
  ex.distances += st.distances;
  ex.nodes_visited += st.hops;
  return out;
}

}  // namespace strata::engine
