// Collection: the maintenance jobs -- freeze and seal, compaction, bulk load and
// background calibration (collection.h has the model).

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <deque>

#include "core/timer.h"
#include "engine/collection.h"
#include "storage/file_util.h"

namespace strata::engine {
namespace fs = std::filesystem;

namespace {

// A frozen segment whose replaced or deleted rows are at least this share of its
// graph is written with a graph built from its live rows instead of its own (whose
// dead nodes would stay until a compaction). The same share as a flush's compaction.
constexpr double kRebuildDeadShare = Collection::kFlushCompactDeadShare;

}  // namespace

Status Collection::CommitManifest(const CollectionManifest& m) {
  Status s = m.Save(dir_);
  if (!s.ok()) {
    // The replacement may have been renamed into place before the failure (e.g. the
    // directory fsync failed): memory can no longer tell which manifest is in force.
    // Refuse further changes; reopening reads whichever one is there.
    poisoned_ = s.WithContext(fmt::format("collection '{}' needs a reopen", spec_.name));
  }
  return s;
}

Status Collection::PersistDeletes(std::vector<SealedEntry>& entries, uint64_t gen,
                                  std::vector<std::pair<uint64_t, uint64_t>>& listed) {
  for (SealedEntry& e : entries) {
    uint64_t g = 0;
    if (e.deleted() > 0) {
      STRATA_RETURN_IF_ERROR(SealedSegment::WriteDeletes(e.segment->dir(), gen, e.deletes->Ids(*e.segment)));
      g = gen;
    }
    e.deletes_generation = g;
    listed.emplace_back(e.segment->id(), g);
  }
  return Status::Ok();
}

void Collection::RemoveObsoleteFiles(const std::vector<SealedEntry>& entries, const std::vector<fs::path>& dropped) {
  std::error_code ec;
  for (const fs::path& p : dropped) fs::remove_all(p, ec);
  for (const SealedEntry& e : entries) {
    const fs::path keep = SealedSegment::DeletesPath(e.segment->dir(), e.deletes_generation);
    for (const auto& f : fs::directory_iterator(e.segment->dir(), ec)) {
      if (f.path().filename().string().starts_with("deletes-") && f.path() != keep) fs::remove(f.path(), ec);
    }
  }
}

Status Collection::FreezeLocked() {
  if (!dirty_) return Status::Ok();
  const std::shared_ptr<const Snapshot> cur = snapshot();
  const uint64_t frozen_sequence = last_sequence_.load();
  // Writes after the freeze go to a new log file; the frozen one is removed once the
  // manifest names the sealed segment (until then recovery replays both).
  STRATA_ASSIGN_OR_RETURN(auto fresh, NewMemorySegment());
  const fs::path new_wal = WalPath(dir_, frozen_sequence + 1);
  std::unique_ptr<WalWriter> wal;
  if (new_wal != wal_->path()) {
    std::error_code ec;
    fs::remove(new_wal, ec);  // a leftover of an earlier failed attempt (never replayed: nothing follows)
    STRATA_ASSIGN_OR_RETURN(wal, WalWriter::Create(new_wal, frozen_sequence + 1, wal_options_));
    STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(new_wal));
    STRATA_RETURN_IF_ERROR(wal_->Close());  // synced: the frozen log is whole on disk
    wal_bytes_before_ += wal_->bytes_written();
    wal_fsyncs_before_ += wal_->fsyncs();
    wal_ = std::move(wal);
    PublishWalCounters();
  }
  auto next = std::make_shared<Snapshot>(*cur);
  next->frozen = cur->memory;
  next->frozen_rows = cur->memory_rows;
  next->frozen_live = cur->memory_live;
  next->frozen_sequence = frozen_sequence;
  next->memory = std::move(fresh);
  next->memory_rows = 0;
  next->memory_live = 0;
  frozen_at_ = next;
  Publish(std::move(next));
  dirty_ = false;
  seal_retry_rows_ = spec_.seal_threshold;
  seal_retry_log_bytes_ = kSealLogBytes;
  return Status::Ok();
}

Status Collection::SealFrozen() {
  std::shared_ptr<const Snapshot> at;
  uint64_t sid = 0;
  {
    std::lock_guard<std::mutex> g(write_mu_);
    if (!poisoned_.ok()) return poisoned_;
    at = frozen_at_;
    if (!at) return Status::Ok();
    sid = next_segment_id_++;  // reserved
  }
  const Timer seal_timer;
  const MemorySegment& frozen = *at->frozen;
  const uint64_t fseq = at->frozen_sequence;
  // 1. The rows live at the frozen sequence, by id, and the new segment's files.
  std::vector<uint32_t> live;
  MemorySegment::View view(frozen, at->frozen_rows, fseq, at->frozen_live, nullptr);
  view.LiveRows(live);
  std::sort(live.begin(), live.end(), [&](uint32_t a, uint32_t b) { return frozen.id(a) < frozen.id(b); });
  std::unique_ptr<SealedSegment> fresh;
  SegmentWriteTimes times;
  const fs::path sdir = SegmentDir(dir_, sid);
  if (!live.empty()) {
    std::error_code ec;
    fs::remove_all(sdir, ec);  // a leftover of an earlier failed attempt (sid was reserved by us)
    std::vector<SealedSegment::Row> rows(live.size());
    for (size_t i = 0; i < live.size(); ++i) {
      rows[i] = {frozen.id(live[i]), frozen.vector(live[i]), &frozen.attributes(live[i]), frozen.key(live[i])};
    }
    const size_t nodes = frozen.graph().num_slots();
    Result<std::unique_ptr<SealedSegment>> written;
    // With codes the graph is built anew from the rows: the in-memory graph holds
    // float32 vectors (its inserts come one at a time, before any codes are trained).
    if (double(nodes - live.size()) >= kRebuildDeadShare * double(nodes) ||
        spec_.codes != VectorCodes::kNone) {
      written = WriteBuiltSegment(sdir, sid, spec_, rows, times);
    } else {
      // The graph the writes built, its labels (memory rows) mapped to segment rows.
      std::vector<VectorId> relabel(nodes, kInvalidVectorId);
      for (size_t i = 0; i < live.size(); ++i) relabel[live[i]] = i;
      written = WriteSegmentWithGraph(sdir, sid, spec_, rows, frozen.graph(), relabel, times);
    }
    if (!written) {
      fs::remove_all(sdir, ec);
      return Error(written.error().WithContext(fmt::format("collection '{}': sealing", spec_.name)));
    }
    fresh = std::move(*written);
    CountIndexBuild(times.index_build_seconds);
    CountCalibration(times.calibration_seconds);
  }
  // 2. The deletes as they were at the frozen sequence, persisted as a new generation,
  //    and the manifest -- under manifest_mu_, outside the write lock (what they name
  //    is fixed at the freeze), so that writers do not wait for these fsyncs. A
  //    segment whose rows were all deleted by then is dropped (unless a compaction
  //    holds it as an input).
  std::lock_guard<std::mutex> mm(manifest_mu_);
  //    The sealed segments are the current ones (a compaction may have replaced some
  //    since the freeze; only maintenance changes the list); a segment that was there
  //    at the freeze is persisted with its delete set of then, a newer one with its
  //    current set (later deletes are replayed from the log as well: idempotent).
  const uint64_t gen = generation_ + 1;
  std::vector<SealedEntry> persisted;
  std::vector<fs::path> dropped;
  const std::shared_ptr<const Snapshot> listed_from = snapshot();  // held: the loop reads into it
  for (const SealedEntry& now : listed_from->sealed) {
    auto then = std::find_if(at->sealed.begin(), at->sealed.end(),
                             [&](const SealedEntry& x) { return x.segment == now.segment; });
    const SealedEntry& e = then != at->sealed.end() ? *then : now;
    if (e.live() == 0 && !compacting_) {
      dropped.push_back(e.segment->dir());
    } else {
      persisted.push_back(e);
    }
  }
  std::vector<std::pair<uint64_t, uint64_t>> listed;
  CollectionManifest m;
  m.checkpoint = fseq;
  m.wal_first = fseq + 1;
  m.generation = gen;
  if (Status s = PersistDeletes(persisted, gen, listed); !s.ok()) {
    std::error_code ec;
    fs::remove_all(sdir, ec);
    return s;  // nothing names the new files yet: retried by the next round
  }
  {
    std::lock_guard<std::mutex> g(write_mu_);
    m.next_segment = next_segment_id_;
    m.next_key_id = next_key_id_;
  }
  if (fresh) listed.emplace_back(sid, 0);
  m.segments = listed;
  const Status committed = m.Save(dir_);
  // 3. Under the write lock, briefly: the new snapshot.
  std::lock_guard<std::mutex> g(write_mu_);
  if (!committed.ok()) {
    // The manifest may be in place although its save reported a failure: refuse
    // further changes (CommitManifest's rule); reopening reads whichever one is there.
    if (poisoned_.ok()) poisoned_ = committed.WithContext(fmt::format("collection '{}' needs a reopen", spec_.name));
    return committed;
  }
  if (!poisoned_.ok()) return poisoned_;
  const std::shared_ptr<const Snapshot> cur = snapshot();
  // Committed. The current snapshot's delete sets (later deletes included) stay in
  // memory with the generation just written; rows of the frozen segment deleted
  // after the freeze become deletes of the new segment.
  auto next = std::make_shared<Snapshot>(*cur);
  next->sealed.clear();
  for (const SealedEntry& e : cur->sealed) {
    auto p = std::find_if(persisted.begin(), persisted.end(), [&](const SealedEntry& x) { return x.segment == e.segment; });
    if (p == persisted.end()) continue;  // dropped
    SealedEntry kept = e;
    kept.deletes_generation = p->deletes_generation;
    next->sealed.push_back(std::move(kept));
  }
  if (fresh) {
    SealedEntry e{std::shared_ptr<const SealedSegment>(std::move(fresh)), nullptr, 0};
    std::shared_ptr<DeleteSet> later;
    for (size_t i = 0; i < live.size(); ++i) {
      if (frozen.removed_at(live[i]) == MemorySegment::kLive) continue;
      if (!later) {
        later = std::make_shared<DeleteSet>();
        later->rows = RowBitmap(live.size());
      }
      later->rows.Set(uint32_t(i));
      ++later->count;
    }
    e.deletes = std::move(later);
    next->sealed.push_back(std::move(e));
  }
  next->frozen = nullptr;
  next->frozen_rows = 0;
  next->frozen_live = 0;
  next->frozen_sequence = 0;
  std::vector<SealedEntry> entries = next->sealed;
  Publish(std::move(next));
  { std::lock_guard<std::mutex> w(seal_done_mu_); }  // a waiter checks between its test and its wait
  seal_done_cv_.notify_all();                         // writers held back by WaitForSealRoom
  frozen_at_ = nullptr;
  generation_ = gen;
  checkpoint_ = fseq;
  wal_first_ = fseq + 1;
  // The frozen segment's log files, now covered by the manifest.
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(dir_ / "wal", ec)) {
    if (f.path() != wal_->path() && f.path().filename().string() < WalPath(dir_, wal_first_).filename().string()) {
      dropped.push_back(f.path());
    }
  }
  RemoveObsoleteFiles(entries, dropped);
  spdlog::info("collection '{}': sealed {} rows as segment {} in {:.2f} s (calibration {:.2f} s)", spec_.name,
               live.size(), sid, seal_timer.Seconds(), times.calibration_seconds);
  return Status::Ok();
}

Status Collection::SealNow() {
  {
    std::lock_guard<std::mutex> g(write_mu_);
    if (!poisoned_.ok()) return poisoned_;
    if (!frozen_at_) STRATA_RETURN_IF_ERROR(FreezeLocked());
  }
  return SealFrozen();
}

Status Collection::Flush() {
  std::lock_guard<std::mutex> m(seal_mu_);
  STRATA_RETURN_IF_ERROR(SealFrozen());  // an earlier freeze first: seals go in log order
  return SealNow();
}

Status Collection::MaintainSeals() {
  std::unique_lock<std::mutex> m(seal_mu_, std::try_to_lock);
  if (!m.owns_lock()) return Status::Ok();
  bool seal = false;
  {
    std::lock_guard<std::mutex> g(write_mu_);
    if (!poisoned_.ok()) return Status::Ok();
    seal = frozen_at_ != nullptr || OverThreshold(*snapshot());
  }
  if (seal) STRATA_RETURN_IF_ERROR(SealNow());
  CalibrateDue();
  return Status::Ok();
}

Status Collection::MaintainCompaction() {
  std::unique_lock<std::mutex> m(compact_mu_, std::try_to_lock);
  if (!m.owns_lock() || !WantsCompaction()) return Status::Ok();
  return CompactLocked();
}

void Collection::CalibrateDue() {
  const std::shared_ptr<const Snapshot> s = snapshot();
  // The in-memory segment: at kMinCalibrationRows live rows, and again each time it doubles.
  const MemorySegment& mem = *s->memory;
  const uint64_t done = mem.calibrated_rows();
  if (s->memory_live >= kMinCalibrationRows && (done == 0 || s->memory_live >= 2 * done)) {
    MemorySegment::View view(mem, s->memory_rows, s->sequence, s->memory_live, nullptr);
    auto seconds = const_cast<MemorySegment&>(mem).Calibrate(view);
    if (seconds) {
      CountCalibration(*seconds);
    } else {
      spdlog::warn("collection '{}': calibrating the in-memory segment failed: {}", spec_.name,
                   seconds.error().ToString());
    }
  }
  // Sealed segments written before calibration existed.
  for (const SealedEntry& e : s->sealed) {
    if (e.segment->calibration()) continue;
    double seconds = 0;
    if (Status st = const_cast<SealedSegment&>(*e.segment).CalibrateAndSave(300, &seconds); !st.ok()) {
      spdlog::warn("{}: calibration failed: {}", e.segment->dir().string(), st.ToString());
    }
    CountCalibration(seconds);
  }
}

Status Collection::BulkLoad(const VectorSet& vectors, std::span<const VectorId> ids,
                            std::span<const Attributes> attributes, std::span<const std::string> keys) {
  const size_t n = vectors.size();
  if (vectors.dim() != spec_.dim) {
    return InvalidArgument("vectors have dimension {}, collection '{}' has {}", vectors.dim(), spec_.name,
                           spec_.dim);
  }
  if (!ids.empty() && ids.size() != n) return InvalidArgument("{} ids given for {} vectors", ids.size(), n);
  if (!keys.empty() && keys.size() != n) return InvalidArgument("{} keys given for {} vectors", keys.size(), n);
  if (!keys.empty() && !ids.empty()) return InvalidArgument("both ids and keys given: a row has one or the other");
  if (!attributes.empty() && attributes.size() != n) {
    return InvalidArgument("{} attribute sets given for {} vectors", attributes.size(), n);
  }
  std::vector<SealedSegment::Row> rows(n);
  static const Attributes kNone;
  for (size_t i = 0; i < n; ++i) {
    if (!AllFinite(vectors.row(i), spec_.dim)) {
      return InvalidArgument("vector at row {} has a NaN or infinite component", i);
    }
    // Keyed rows get their ids below, once the collection's next keyed id is known.
    const VectorId id = !keys.empty() ? VectorId(i) : ids.empty() ? VectorId(i) : ids[i];
    if (id == kInvalidVectorId || IsKeyedId(id)) {
      return InvalidArgument("row {}: id {} is reserved (ids from 2^63 up are assigned to records written by key)",
                             i, id);
    }
    if (!keys.empty()) {
      if (Status s = ValidateKey(keys[i]); !s.ok()) return s.WithContext(fmt::format("row {}", i));
    }
    if (!attributes.empty()) {
      if (Status s = ValidateAttributes(attributes[i]); !s.ok()) return s.WithContext(fmt::format("row {}", i));
    }
    rows[i] = {id, vectors.row(i), attributes.empty() ? &kNone : &attributes[i],
               keys.empty() ? std::string_view() : std::string_view(keys[i])};
  }
  if (!keys.empty()) {
    std::vector<std::string_view> sorted(keys.begin(), keys.end());
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 1; i < n; ++i) {
      if (sorted[i] == sorted[i - 1]) return InvalidArgument("key '{}' is given twice", KeyForMessage(sorted[i]));
    }
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  for (size_t i = 1; i < n; ++i) {
    if (rows[i].id == rows[i - 1].id) return InvalidArgument("id {} is given twice", rows[i].id);
  }
  std::lock_guard<std::mutex> c(compact_mu_);
  std::lock_guard<std::mutex> m(seal_mu_);
  std::lock_guard<std::mutex> mm(manifest_mu_);
  std::lock_guard<std::mutex> g(write_mu_);  // held throughout: the collection is empty, nothing waits long
  if (!poisoned_.ok()) return poisoned_;
  const std::shared_ptr<const Snapshot> cur = snapshot();
  if (dirty_ || frozen_at_ || cur->memory_rows > 0 || !cur->sealed.empty()) {
    return InvalidArgument("collection '{}' is not empty: bulk load fills empty collections only", spec_.name);
  }
  if (n == 0) return Status::Ok();
  if (!keys.empty()) {
    if (n > kInvalidVectorId - next_key_id_) {
      return ResourceExhausted("collection '{}': the keyed range has fewer than {} ids left", spec_.name, n);
    }
    // Keyed rows: fresh ids in row order (rows are still in row order: ids were 0..n-1).
    for (size_t i = 0; i < n; ++i) rows[i].id = next_key_id_ + i;
  }
  const uint64_t sid = next_segment_id_;
  const fs::path sdir = SegmentDir(dir_, sid);
  std::error_code ec;
  fs::remove_all(sdir, ec);  // a leftover of an earlier failed attempt
  SegmentWriteTimes times;
  times.progress = progress_;
  STRATA_ASSIGN_OR_RETURN(auto seg, WriteBuiltSegment(sdir, sid, spec_, rows, times));
  CountIndexBuild(times.index_build_seconds);
  CountCalibration(times.calibration_seconds);
  spdlog::info("collection '{}': bulk load of {} rows as segment {}: index build {:.2f} s, calibration {:.2f} s",
               spec_.name, n, sid, times.index_build_seconds, times.calibration_seconds);
  CollectionManifest man;
  man.checkpoint = checkpoint_;
  man.wal_first = wal_first_;
  man.next_segment = sid + 1;
  man.next_key_id = next_key_id_ + (keys.empty() ? 0 : n);
  man.generation = generation_ + 1;
  man.segments = {{sid, 0}};
  STRATA_RETURN_IF_ERROR(CommitManifest(man));
  auto next = std::make_shared<Snapshot>(*cur);
  next->sealed.push_back(SealedEntry{std::shared_ptr<const SealedSegment>(std::move(seg)), nullptr, 0});
  Publish(std::move(next));
  next_segment_id_ = sid + 1;
  next_key_id_ = man.next_key_id;
  generation_ = man.generation;
  return Status::Ok();
}

namespace {

// (entries, dead entries) of sealed segments: deleted rows, and graph nodes a seal
// saved beyond the rows (issue 14).
template <typename Entries>
std::pair<size_t, size_t> SealedEntries(const Entries& sealed) {
  size_t entries = 0, dead = 0;
  for (const auto& e : sealed) {
    entries += e.segment->rows() + e.segment->dead_index_nodes();
    dead += e.deleted() + e.segment->dead_index_nodes();
  }
  return {entries, dead};
}

}  // namespace

bool Collection::WantsCompaction() const {
  const std::shared_ptr<const Snapshot> s = snapshot();
  if (s->sealed.size() >= kCompactSegments) return true;
  const auto [entries, dead] = SealedEntries(s->sealed);
  return entries >= 1000 && double(dead) >= kCompactDeletedShare * double(entries);
}

double Collection::DeadShare() const {
  const auto [entries, dead] = SealedEntries(snapshot()->sealed);
  return entries == 0 ? 0.0 : double(dead) / double(entries);
}

Status Collection::Compact() {
  std::lock_guard<std::mutex> c(compact_mu_);
  {
    // Seal first (what a running seal left frozen, then the in-memory segment), so
    // that everything acknowledged before this call is merged.
    std::lock_guard<std::mutex> m(seal_mu_);
    STRATA_RETURN_IF_ERROR(SealFrozen());
    STRATA_RETURN_IF_ERROR(SealNow());
  }
  return CompactLocked();
}

Status Collection::CompactLocked() {
  // Phase 1: the sealed segments as they are now, with their delete sets, are the input.
  std::vector<SealedEntry> inputs;
  uint64_t sid = 0;
  {
    std::lock_guard<std::mutex> mm(manifest_mu_);  // the segment list stays as read here
    std::lock_guard<std::mutex> g(write_mu_);
    if (!poisoned_.ok()) return poisoned_;
    inputs = snapshot()->sealed;
    size_t dead = 0;
    for (const SealedEntry& e : inputs) dead += e.deleted() + e.segment->dead_index_nodes();
    if (inputs.size() < 2 && dead == 0) return Status::Ok();  // already one clean segment
    sid = next_segment_id_++;  // reserved
    compacting_ = true;  // seals keep the inputs (do not drop them) until phase 3
  }
  struct Done {  // whatever happens next, seals may drop segments again
    Collection* c;
    ~Done() {
      std::lock_guard<std::mutex> mm(c->manifest_mu_);
      c->compacting_ = false;
    }
  } done{this};
  // Phase 2, without locks: writes and searches go on. The inputs' rows are
  // immutable; their delete sets may be replaced meanwhile (the copies above hold).
  std::vector<SealedSegment::Row> rows;
  std::vector<Attributes> attrs;
  std::deque<std::vector<float>> widened;  // the vectors of segments that store them narrow
  size_t live = 0;
  for (const SealedEntry& e : inputs) live += e.live();
  rows.reserve(live);
  attrs.reserve(live);  // stable addresses for the rows
  for (const SealedEntry& e : inputs) {
    const SealedSegment& seg = *e.segment;
    for (size_t r = 0; r < seg.rows(); ++r) {
      if (e.deletes && e.deletes->rows.Test(uint32_t(r))) continue;
      STRATA_ASSIGN_OR_RETURN(Record rec, seg.Read(r));
      attrs.push_back(std::move(rec.attributes));
      // float32: the mapped row; narrow: Read's widened copy, kept until the rows are written.
      const float* v = seg.element() == ElementType::kFloat32 ? seg.float32_row(r)
                                                             : widened.emplace_back(std::move(rec.vector)).data();
      rows.push_back({rec.id, v, &attrs.back(), seg.key(r)});
    }
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  for (size_t i = 1; i < rows.size(); ++i) {
    if (rows[i].id == rows[i - 1].id) {
      return Internal("id {} is live in two segments of collection '{}'", rows[i].id, spec_.name);
    }
  }
  const fs::path sdir = SegmentDir(dir_, sid);
  std::error_code ec;
  fs::remove_all(sdir, ec);  // a leftover of an earlier failed attempt
  std::shared_ptr<const SealedSegment> merged;
  SegmentWriteTimes times;
  times.progress = progress_;
  if (!rows.empty()) {
    auto written = WriteBuiltSegment(sdir, sid, spec_, rows, times);
    if (!written) {
      fs::remove_all(sdir, ec);
      return Error(written.error());
    }
    merged = std::move(*written);
  }
  CountIndexBuild(times.index_build_seconds);
  CountCalibration(times.calibration_seconds);
  spdlog::info("collection '{}': compacted {} segments into segment {} ({} rows): index build {:.2f} s, "
               "calibration {:.2f} s", spec_.name, inputs.size(), sid, rows.size(), times.index_build_seconds,
               times.calibration_seconds);

  // Phase 3, under the write lock: carry over the deletes that reached the inputs
  // meanwhile, persist every segment's deletes as a new generation, commit, publish.
  // Segments sealed meanwhile are kept as they are.
  std::lock_guard<std::mutex> mm(manifest_mu_);
  std::lock_guard<std::mutex> g(write_mu_);
  if (!poisoned_.ok()) {
    fs::remove_all(sdir, ec);
    return poisoned_;
  }
  const std::shared_ptr<const Snapshot> cur = snapshot();
  std::shared_ptr<DeleteSet> later;
  std::vector<SealedEntry> result;
  std::vector<fs::path> dropped;
  for (const SealedEntry& e : cur->sealed) {
    auto in = std::find_if(inputs.begin(), inputs.end(), [&](const SealedEntry& x) { return x.segment == e.segment; });
    if (in == inputs.end()) {
      result.push_back(e);
      continue;
    }
    dropped.push_back(e.segment->dir());
    if (!e.deletes || e.deletes == in->deletes) continue;
    e.deletes->rows.ForEach([&](uint32_t r) {
      if (in->deletes && in->deletes->rows.Test(r)) return;  // not live at phase 1: not merged
      const auto row = merged->Find(e.segment->ids()[r]);
      if (!row) return;
      if (!later) {
        later = std::make_shared<DeleteSet>();
        later->rows = RowBitmap(merged->rows());
      }
      later->rows.Set(uint32_t(*row));
      ++later->count;
    });
  }
  if (merged) result.insert(result.begin(), SealedEntry{merged, later, 0});
  const uint64_t gen = generation_ + 1;
  std::vector<std::pair<uint64_t, uint64_t>> listed;
  STRATA_RETURN_IF_ERROR(PersistDeletes(result, gen, listed));
  CollectionManifest man;
  man.checkpoint = checkpoint_;
  man.wal_first = wal_first_;
  man.next_segment = next_segment_id_;
  man.next_key_id = next_key_id_;
  man.generation = gen;
  man.segments = listed;
  STRATA_RETURN_IF_ERROR(CommitManifest(man));
  auto next = std::make_shared<Snapshot>(*cur);
  next->sealed = result;
  Publish(std::move(next));
  generation_ = gen;
  if (!merged) dropped.push_back(sdir);
  RemoveObsoleteFiles(result, dropped);
  return Status::Ok();
}

}  // namespace strata::engine
