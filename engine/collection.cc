#include "engine/collection.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "core/timer.h"
#include "core/vector_set.h"
#include "engine/planner.h"
#include "index/distance/distance.h"
#include "index/spann/spann_index.h"
#include "storage/file_util.h"
#include "storage/section_file.h"

namespace strata::engine {
namespace fs = std::filesystem;

namespace {

constexpr uint8_t kBatchRecord = 1;  // WAL record type: an encoded WriteBatch
constexpr char kManifestFile[] = "collection.manifest";
constexpr char kManifestMagic[] = "STRCOLL";
constexpr uint16_t kManifestMajor = 1;
constexpr uint16_t kManifestMinor = 0;
constexpr uint32_t kTagManifest = storage::SectionTag("CMAN");

fs::path SegmentDir(const fs::path& dir, uint64_t id) { return dir / ("seg-" + std::to_string(id)); }

struct ManifestState {
  uint64_t checkpoint = 0;
  uint64_t wal_first = 1;
  uint64_t next_segment = 1;
  uint64_t generation = 0;
  std::vector<std::pair<uint64_t, uint64_t>> segments;  // (id, deletes generation or 0)
};

Result<ManifestState> LoadManifest(const fs::path& dir) {
  ManifestState m;
  const fs::path path = dir / kManifestFile;
  std::error_code ec;
  if (!fs::exists(path, ec)) return m;  // never sealed
  STRATA_ASSIGN_OR_RETURN(storage::SectionFile sf, storage::SectionFile::Open(path, kManifestMagic, kManifestMajor));
  STRATA_ASSIGN_OR_RETURN(auto bytes, sf.Section(kTagManifest));
  try {
    const auto j = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    m.checkpoint = j.at("checkpoint_sequence").get<uint64_t>();
    m.wal_first = j.at("wal_first_sequence").get<uint64_t>();
    m.next_segment = j.at("next_segment_id").get<uint64_t>();
    m.generation = j.at("generation").get<uint64_t>();
    for (const auto& s : j.at("segments")) {
      m.segments.emplace_back(s.at("id").get<uint64_t>(), s.at("deletes_generation").get<uint64_t>());
    }
  } catch (const nlohmann::json::exception& e) {
    return Error(Corruption("{}: not the expected JSON: {}", path.string(), e.what()));
  }
  if (m.wal_first != m.checkpoint + 1) {
    return Error(Corruption("{}: log starts at {} but the checkpoint is {}", path.string(), m.wal_first,
                            m.checkpoint));
  }
  for (const auto& [id, gen] : m.segments) {
    if (id >= m.next_segment || gen > m.generation) {
      return Error(Corruption("{}: segment {} (deletes generation {}) is out of range", path.string(), id, gen));
    }
  }
  return m;
}

}  // namespace

Collection::Collection(fs::path dir, uint64_t id, CollectionSpec spec, WalOptions wal_options)
    : dir_(std::move(dir)), id_(id), spec_(std::move(spec)), wal_options_(wal_options) {
  seal_retry_size_ = spec_.seal_threshold;
}

Status Collection::CommitManifest(uint64_t checkpoint, uint64_t wal_first, uint64_t next_segment,
                                  uint64_t generation,
                                  const std::vector<std::pair<uint64_t, uint64_t>>& segments) {
  Status s = SaveManifest(checkpoint, wal_first, next_segment, generation, segments);
  if (!s.ok()) {
    // The replacement may have been renamed into place before the failure (e.g. the
    // directory fsync failed): memory can no longer tell which manifest is in force.
    // Refuse further changes; reopening reads whichever one is there.
    poisoned_ = s.WithContext(fmt::format("collection '{}' needs a reopen", spec_.name));
  }
  return s;
}

Collection::~Collection() { (void)Close(); }

fs::path Collection::WalPath(const fs::path& dir, uint64_t first_sequence) {
  return dir / "wal" / fmt::format("{:020}.wal", first_sequence);
}

Result<std::unique_ptr<index::HnswIndex>> Collection::NewGraph() const {
  index::HnswOptions ho;
  ho.M = spec_.hnsw_M;
  ho.ef_construction = spec_.hnsw_ef_construction;
  return index::HnswIndex::Create(spec_.dim, spec_.metric, ho);
}

Result<std::unique_ptr<Collection>> Collection::Create(const fs::path& dir, uint64_t id,
                                                       const CollectionSpec& spec,
                                                       const WalOptions& wal_options) {
  std::error_code ec;
  if (fs::exists(dir, ec)) return Error(AlreadyExists("{} already exists", dir.string()));
  fs::create_directories(dir / "wal", ec);
  if (ec) return Error(IOError("{}: cannot create: {}", (dir / "wal").string(), ec.message()));
  // The new folders' entries must be durable before the catalog names them.
  STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(dir / "wal"));
  STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(dir));
  auto c = std::unique_ptr<Collection>(new Collection(dir, id, spec, wal_options));
  STRATA_ASSIGN_OR_RETURN(c->hnsw_, c->NewGraph());
  STRATA_ASSIGN_OR_RETURN(c->wal_, WalWriter::Create(WalPath(dir, 1), 1, wal_options));
  c->PublishWalCounters();
  return c;
}

Result<std::unique_ptr<Collection>> Collection::Open(const fs::path& dir, uint64_t id,
                                                     const CollectionSpec& spec,
                                                     const WalOptions& wal_options,
                                                     RecoveryReport& report, bool salvage_wal_tail) {
  auto c = std::unique_ptr<Collection>(new Collection(dir, id, spec, wal_options));
  STRATA_ASSIGN_OR_RETURN(c->hnsw_, c->NewGraph());
  STRATA_ASSIGN_OR_RETURN(ManifestState m, LoadManifest(dir));
  c->wal_first_ = m.wal_first;
  c->next_segment_id_ = m.next_segment;
  c->generation_ = m.generation;
  c->last_sequence_.store(m.checkpoint);
  c->checkpoint_ = m.checkpoint;
  const bool have_manifest = fs::exists(dir / kManifestFile);
  std::unordered_set<std::string> keep = {kManifestFile, "wal"};
  // Everything is checked before anything is removed: leftovers are deleted only
  // once the state the manifest names has been read whole.
  std::vector<fs::path> leftovers;
  std::error_code ec;
  for (const auto& [sid, gen] : m.segments) {
    const fs::path sdir = SegmentDir(dir, sid);
    STRATA_ASSIGN_OR_RETURN(auto seg, SealedSegment::Open(sdir, sid, spec.dim));
    if (gen > 0) {
      STRATA_ASSIGN_OR_RETURN(auto dels, SealedSegment::ReadDeletes(sdir, gen));
      for (VectorId d : dels) {
        if (!seg->Find(d)) {
          return Error(Corruption("{}: deletes id {} that the segment does not hold",
                                  SealedSegment::DeletesPath(sdir, gen).string(), d));
        }
        seg->MarkDeleted(d);
      }
      seg->deletes_generation = gen;
    }
    keep.insert(sdir.filename().string());
    // Deletes files of other generations are leftovers of an interrupted seal.
    for (const auto& f : fs::directory_iterator(sdir, ec)) {
      const std::string name = f.path().filename().string();
      if (name.starts_with("deletes-") && f.path() != SealedSegment::DeletesPath(sdir, gen)) {
        leftovers.push_back(f.path());
      }
    }
    c->sealed_.push_back(std::move(seg));
  }
  // Segment folders and log files the manifest does not name are leftovers of a
  // seal or compaction cut short by a crash: what they hold is also in what it names.
  for (const auto& f : fs::directory_iterator(dir, ec)) {
    if (!keep.count(f.path().filename().string())) leftovers.push_back(f.path());
  }
  const fs::path wal_path = WalPath(dir, m.wal_first);
  for (const auto& f : fs::directory_iterator(dir / "wal", ec)) {
    if (f.path() != wal_path) leftovers.push_back(f.path());
  }
  if (!have_manifest && !leftovers.empty()) {
    // Without its manifest a collection that was ever sealed cannot be told from one
    // that never was: refuse rather than take its segments for leftovers.
    return Error(Corruption("{}: missing, but {} holds {} (sealed segments or logs it would name)",
                            (dir / kManifestFile).string(), dir.string(), leftovers.front().string()));
  }
  if (!fs::exists(wal_path, ec)) {
    return Error(Corruption("{}: the log of collection '{}' is missing", wal_path.string(), spec.name));
  }
  // A torn tail (a write cut short) is cut below; a damaged record is refused, naming
  // the file and offset, unless the caller asked to salvage (EngineOptions::salvage_wal_tail).
  STRATA_ASSIGN_OR_RETURN(WalContents log,
                          ReadWal(wal_path, kDefaultMaxWalRecordBytes,
                                  salvage_wal_tail ? WalTail::kSalvage : WalTail::kCutTorn));
  if (log.first_sequence != m.wal_first) {
    return Error(Corruption("{}: log starts at sequence {}, the manifest expects {}", wal_path.string(),
                            log.first_sequence, m.wal_first));
  }
  for (const WalRecord& r : log.records) {
    if (r.type != kBatchRecord) {
      return Error(Corruption("{}: record {} has unknown type {}", wal_path.string(), r.sequence, r.type));
    }
    auto batch = DecodeBatch(r.payload, spec.dim);
    if (!batch) {
      return Error(batch.error().WithContext(fmt::format("{}: record {}", wal_path.string(), r.sequence)));
    }
    if (Status s = ValidateBatch(*batch, spec.dim, SIZE_MAX); !s.ok()) {
      return Error(Corruption("{}: record {} holds an invalid batch: {}", wal_path.string(), r.sequence,
                              s.message()));
    }
    STRATA_RETURN_IF_ERROR(c->Apply(*batch));
    c->last_sequence_.store(r.sequence);
    c->dirty_ = true;
    ++report.batches_replayed;
  }
  for (const fs::path& p : leftovers) {
    fs::remove_all(p, ec);
    report.notes.push_back(fmt::format("{}: left by an interrupted seal or compaction; removed", p.string()));
  }
  if (log.dropped_bytes > 0) {
    STRATA_RETURN_IF_ERROR(TruncateWal(wal_path, log.valid_bytes));
    if (log.damaged) {
      report.salvaged_bytes_dropped += log.dropped_bytes;
      report.notes.push_back(fmt::format("{}: damaged log cut at offset {} as salvage_wal_tail asked ({}); {} "
                                         "bytes dropped, which may have held acknowledged writes",
                                         wal_path.string(), log.valid_bytes, log.tail_problem, log.dropped_bytes));
      spdlog::warn("{}", report.notes.back());
    } else {
      report.torn_bytes_dropped += log.dropped_bytes;
      report.notes.push_back(fmt::format("{}: torn tail cut ({}); {} bytes dropped, none of them acknowledged",
                                         wal_path.string(), log.tail_problem, log.dropped_bytes));
    }
  }
  STRATA_ASSIGN_OR_RETURN(c->wal_, WalWriter::OpenForAppend(wal_path, wal_options));
  c->PublishWalCounters();
  return c;
}

Status Collection::Close() {
  std::lock_guard<std::mutex> g(write_mu_);
  if (!wal_) return Status::Ok();
  Status s = wal_->Close();
  wal_.reset();
  if (poisoned_.ok()) poisoned_ = Cancelled("collection '{}' is closed", spec_.name);
  return s;
}

Status Collection::Write(const WriteBatch& batch, size_t max_ops) {
  STRATA_RETURN_IF_ERROR(ValidateBatch(batch, spec_.dim, max_ops));
  if (batch.empty()) return Status::Ok();
  std::vector<std::byte> payload;
  EncodeBatch(batch, payload);
  if (payload.size() > wal_options_.max_record_bytes) {
    return InvalidArgument("batch encodes to {} bytes, more than one log record takes ({}); split it",
                           payload.size(), wal_options_.max_record_bytes);
  }
  std::lock_guard<std::mutex> g(write_mu_);
  if (!poisoned_.ok()) return poisoned_;
  auto seq = wal_->Append(kBatchRecord, payload);
  if (!seq) {
    // The log may hold part of this record: refuse further writes rather than
    // acknowledge anything that recovery might not see.
    poisoned_ = seq.error().WithContext(fmt::format("collection '{}' stopped taking writes", spec_.name));
    return seq.error();
  }
  Status applied;
  try {
    applied = Apply(batch);
  } catch (const std::exception& e) {  // e.g. bad_alloc: memory may now hold part of the batch
    applied = ResourceExhausted("applying the batch failed: {}", e.what());
  }
  if (!applied.ok()) {
    // The batch is in the log but not (wholly) in memory: only a reopen makes the two agree.
    poisoned_ = applied.WithContext(fmt::format("collection '{}' needs a reopen", spec_.name));
    return applied;
  }
  last_sequence_.store(*seq);
  dirty_ = true;
  PublishWalCounters();
  // Seal at the size threshold, or when the log alone has grown large (deletes of
  // sealed ids and rewrites of the same ids add to the log, not to records_).
  if (records_.size() >= seal_retry_size_ || wal_->bytes_written() >= seal_retry_log_bytes_) {
    // The batch is durable and applied whatever happens here. A failed seal is
    // retried once the segment has grown by another threshold (or by Flush).
    if (Status s = SealLocked(); !s.ok()) {
      spdlog::warn("collection '{}': seal failed: {}", spec_.name, s.ToString());
      seal_retry_size_ = records_.size() + spec_.seal_threshold;
      seal_retry_log_bytes_ = wal_->bytes_written() + kSealLogBytes;
    }
  }
  return Status::Ok();
}

Status Collection::Flush() {
  std::lock_guard<std::mutex> g(write_mu_);
  if (!poisoned_.ok()) return poisoned_;
  return SealLocked();
}

void Collection::DeleteFromSealed(VectorId id) {
  for (auto it = sealed_.rbegin(); it != sealed_.rend(); ++it) {
    SealedSegment& seg = **it;
    if (seg.MarkDeleted(id)) return;
  }
}

Status Collection::Apply(const WriteBatch& batch) {
  std::unique_lock<FairSharedMutex> x(apply_mu_);
  // Fast path: only upserts with distinct ids go to the graph in parallel.
  bool bulk = batch.size() >= 64;
  if (bulk) {
    std::unordered_set<VectorId> seen;
    seen.reserve(batch.size());
    for (const WriteOp& op : batch.ops()) {
      if (op.kind != WriteOp::Kind::kUpsert || !seen.insert(op.id).second) {
        bulk = false;
        break;
      }
    }
  }
  if (bulk) {
    STRATA_ASSIGN_OR_RETURN(VectorSet vs, VectorSet::Create(batch.size(), spec_.dim));
    std::vector<VectorId> ids(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      std::memcpy(vs.mutable_row(i), batch.ops()[i].vector.data(), spec_.dim * sizeof(float));
      ids[i] = batch.ops()[i].id;
    }
    STRATA_RETURN_IF_ERROR(hnsw_->AddBatch(vs, ids));
    for (const WriteOp& op : batch.ops()) {
      if (!records_.count(op.id)) DeleteFromSealed(op.id);
      StoreRecord(op.id, op.vector, op.attributes);
    }
    MaybeRenumberMemoryRows();
    return Status::Ok();
  }
  for (const WriteOp& op : batch.ops()) {
    if (op.kind == WriteOp::Kind::kUpsert) {
      if (!records_.count(op.id)) DeleteFromSealed(op.id);
      STRATA_RETURN_IF_ERROR(hnsw_->Add(op.id, VectorView(op.vector.data(), spec_.dim)));
      StoreRecord(op.id, op.vector, op.attributes);
    } else if (auto it = records_.find(op.id); it != records_.end()) {
      mem_attrs_.Remove(it->second.row);
      records_.erase(it);
      STRATA_RETURN_IF_ERROR(hnsw_->Remove(op.id));
    } else {
      DeleteFromSealed(op.id);  // deleting an absent id is a no-op: deletes are idempotent
    }
  }
  MaybeRenumberMemoryRows();
  return Status::Ok();
}

void Collection::MaybeRenumberMemoryRows() {
  // Amortized: a renumbering costs O(live rows) and comes after at least as many writes.
  if (mem_row_ids_.size() < 1024 || mem_row_ids_.size() < 2 * records_.size()) return;
  mem_row_ids_.clear();
  mem_row_ids_.shrink_to_fit();
  mem_row_ids_.reserve(records_.size());
  mem_attrs_ = AttributeIndex();
  for (auto& [id, r] : records_) {
    r.row = uint32_t(mem_row_ids_.size());
    mem_row_ids_.push_back(id);
    mem_attrs_.Add(r.row, r.attributes);
  }
}

void Collection::StoreRecord(VectorId id, std::vector<float> vector, Attributes attributes) {
  const uint32_t row = uint32_t(mem_row_ids_.size());
  mem_row_ids_.push_back(id);
  mem_attrs_.Add(row, attributes);
  auto [it, inserted] = records_.try_emplace(id);
  if (!inserted) mem_attrs_.Remove(it->second.row);
  float inv_norm = 1.0f;
  if (spec_.metric == Metric::kCosine) {
    const float nn = index::Kernels().ip(vector.data(), vector.data(), spec_.dim);
    inv_norm = nn > 0 ? 1.0f / std::sqrt(nn) : 0.0f;
  }
  it->second = Stored{std::move(vector), std::move(attributes), row, inv_norm};
}

Status Collection::SaveManifest(uint64_t checkpoint, uint64_t wal_first, uint64_t next_segment,
                                uint64_t generation,
                                const std::vector<std::pair<uint64_t, uint64_t>>& segments) const {
  nlohmann::json j;
  j["checkpoint_sequence"] = checkpoint;
  j["wal_first_sequence"] = wal_first;
  j["next_segment_id"] = next_segment;
  j["generation"] = generation;
  j["segments"] = nlohmann::json::array();
  for (const auto& [sid, gen] : segments) j["segments"].push_back({{"id", sid}, {"deletes_generation", gen}});
  const std::string text = j.dump(1);
  STRATA_ASSIGN_OR_RETURN(auto w, storage::SectionFileWriter::Create(dir_ / kManifestFile, kManifestMagic,
                                                                       kManifestMajor, kManifestMinor));
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagManifest, std::as_bytes(std::span(text.data(), text.size()))));
  return w.Commit();
}

Status Collection::SealLocked() {
  if (!dirty_) return Status::Ok();
  const uint64_t checkpoint = last_sequence_.load();
  const uint64_t gen = generation_ + 1;
  uint64_t next_segment = next_segment_id_;
  std::error_code ec;
  // 1. The new segment's files (readers keep using the in-memory segment meanwhile:
  //    only writers, excluded by write_mu_, change records_ and the deleted sets).
  std::unique_ptr<SealedSegment> fresh;
  if (!records_.empty()) {
    const Timer seal_timer;
    const uint64_t sid = next_segment++;
    const fs::path sdir = SegmentDir(dir_, sid);
    fs::remove_all(sdir, ec);  // a leftover of an earlier failed attempt
    std::vector<SealedSegment::Row> rows;
    rows.reserve(records_.size());
    for (const auto& [id, r] : records_) rows.push_back({id, r.vector.data(), &r.attributes});
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    STRATA_RETURN_IF_ERROR(
        SealedSegment::WriteRecords(sdir, spec_.dim, spec_.metric, SealedSegment::Kind::kHnsw, rows));
    // Writers are excluded by write_mu_: searches of this graph go on meanwhile.
    STRATA_RETURN_IF_ERROR(hnsw_->SaveQuiescent(SealedSegment::GraphPath(sdir)));
    STRATA_ASSIGN_OR_RETURN(fresh, SealedSegment::Open(sdir, sid, spec_.dim));
    double calibration_s = 0;
    STRATA_RETURN_IF_ERROR(fresh->CalibrateAndSave(300, &calibration_s));
    CountCalibration(calibration_s);
    spdlog::info("collection '{}': sealed {} rows as segment {} in {:.2f} s (calibration {:.2f} s)", spec_.name,
                 rows.size(), sid, seal_timer.Seconds(), calibration_s);
  }
  // 2. The deletes of the older segments, as a new generation. A segment whose rows
  //    are all deleted (e.g. every id rewritten since) is dropped instead -- unless a
  //    compaction, which holds the segments it merges, is between its phases.
  std::vector<std::pair<uint64_t, uint64_t>> listed;
  std::vector<const SealedSegment*> emptied;
  for (const auto& seg : sealed_) {
    if (!compacting_ && seg->live_rows() == 0) {
      emptied.push_back(seg.get());
      continue;
    }
    uint64_t g = 0;
    if (seg->deleted_count() > 0) {
      std::vector<VectorId> ids(seg->deleted().begin(), seg->deleted().end());
      std::sort(ids.begin(), ids.end());
      STRATA_RETURN_IF_ERROR(SealedSegment::WriteDeletes(seg->dir(), gen, ids));
      g = gen;
    }
    listed.emplace_back(seg->id(), g);
  }
  if (fresh) listed.emplace_back(fresh->id(), 0);
  // 3. A new, empty log after the checkpoint; 4. the manifest that names it all.
  const fs::path new_wal = WalPath(dir_, checkpoint + 1);
  if (new_wal != wal_->path()) fs::remove(new_wal, ec);
  std::unique_ptr<WalWriter> wal;
  if (new_wal != wal_->path()) {
    STRATA_ASSIGN_OR_RETURN(wal, WalWriter::Create(new_wal, checkpoint + 1, wal_options_));
  }
  STRATA_ASSIGN_OR_RETURN(auto graph, NewGraph());  // before the commit: nothing may fail after it
  STRATA_RETURN_IF_ERROR(CommitManifest(checkpoint, checkpoint + 1, next_segment, gen, listed));
  // Committed. 5. Swap in memory; 6. drop what the manifest no longer names.
  std::vector<std::unique_ptr<SealedSegment>> dropped;
  {
    std::unique_lock<FairSharedMutex> x(apply_mu_);
    for (auto& seg : sealed_) {
      if (std::find(emptied.begin(), emptied.end(), seg.get()) != emptied.end()) dropped.push_back(std::move(seg));
    }
    std::erase_if(sealed_, [](const auto& seg) { return seg == nullptr; });
    for (size_t i = 0; i < sealed_.size(); ++i) sealed_[i]->deletes_generation = listed[i].second;
    if (fresh) sealed_.push_back(std::move(fresh));
    records_.clear();
    mem_row_ids_.clear();
    mem_attrs_ = AttributeIndex();
    hnsw_ = std::move(graph);
    ++mem_epoch_;
  }
  next_segment_id_ = next_segment;
  generation_ = gen;
  checkpoint_ = checkpoint;
  dirty_ = false;
  seal_retry_size_ = spec_.seal_threshold;
  seal_retry_log_bytes_ = kSealLogBytes;
  if (wal) {
    const fs::path old = wal_->path();
    (void)wal_->Close();
    wal_bytes_before_ += wal_->bytes_written();
    wal_fsyncs_before_ += wal_->fsyncs();
    wal_ = std::move(wal);
    wal_first_ = checkpoint + 1;
    fs::remove(old, ec);
    PublishWalCounters();
  }
  for (const auto& seg : dropped) fs::remove_all(seg->dir(), ec);
  for (const auto& seg : sealed_) {
    for (const auto& f : fs::directory_iterator(seg->dir(), ec)) {
      const std::string name = f.path().filename().string();
      if (name.starts_with("deletes-") &&
          f.path() != SealedSegment::DeletesPath(seg->dir(), seg->deletes_generation)) {
        fs::remove(f.path(), ec);
      }
    }
  }
  return Status::Ok();
}

void Collection::CountCalibration(double seconds) const {
  if (seconds <= 0) return;
  calibrations_.fetch_add(1, std::memory_order_relaxed);
  calibration_ns_.fetch_add(uint64_t(seconds * 1e9), std::memory_order_relaxed);
}

void Collection::CountIndexBuild(double seconds) const {
  index_build_ns_.fetch_add(uint64_t(std::max(0.0, seconds) * 1e9), std::memory_order_relaxed);
}

Status Collection::WriteSegment(const fs::path& sdir, std::span<const SealedSegment::Row> rows,
                                WriteTimes& times) {
  const uint64_t raw_bytes = uint64_t(rows.size()) * spec_.dim * sizeof(float);
  const bool spann = spec_.memory_budget_bytes > 0 && raw_bytes > spec_.memory_budget_bytes &&
                     spec_.metric != Metric::kInnerProduct && rows.size() >= 1000;
  const auto kind = spann ? SealedSegment::Kind::kSpann : SealedSegment::Kind::kHnsw;
  if (spann) {
    // SPANN entries are labelled with their rows of records.strata (in id order).
    // A random sample of rows (the side rows) stays out of the index: the segment's
    // calibration queries them, truly held out, and every search scores them exactly.
    const size_t n = rows.size();
    std::vector<uint32_t> side;
    if (n >= kMinCalibrationRows) {
      const size_t q = std::min<size_t>(150, std::max<size_t>(100, n / 50));
      std::mt19937_64 rng(7);
      std::vector<bool> picked(n, false);
      while (side.size() < q) {
        const size_t r = size_t(rng() % n);
        if (!picked[r]) {
          picked[r] = true;
          side.push_back(uint32_t(r));
        }
      }
      std::sort(side.begin(), side.end());
    }
    STRATA_RETURN_IF_ERROR(SealedSegment::WriteRecords(sdir, spec_.dim, spec_.metric, kind, rows,
                                                       /*graph_labels_rows=*/false, side));
    STRATA_ASSIGN_OR_RETURN(VectorSet vs, VectorSet::Create(n - side.size(), spec_.dim));
    std::vector<uint32_t> labels;
    labels.reserve(n - side.size());
    size_t next = 0;
    for (size_t r = 0; r < n; ++r) {
      if (next < side.size() && side[next] == r) {
        ++next;
        continue;
      }
      std::memcpy(vs.mutable_row(labels.size()), rows[r].vector, spec_.dim * sizeof(float));
      labels.push_back(uint32_t(r));
    }
    index::SpannBuildOptions so;
    so.metric = spec_.metric;
    const Timer build;
    Status built = index::SpannIndex::Build(std::move(vs), SealedSegment::SpannPath(sdir), so, labels);
    times.index_build_seconds = build.Seconds();
    return built;
  }
  // An HNSW graph written here labels its nodes with row numbers, so that filters
  // test a bitmap instead of looking ids up.
  STRATA_RETURN_IF_ERROR(SealedSegment::WriteRecords(sdir, spec_.dim, spec_.metric, kind, rows,
                                                     /*graph_labels_rows=*/true));
  STRATA_ASSIGN_OR_RETURN(VectorSet vs, VectorSet::Create(rows.size(), spec_.dim));
  std::vector<VectorId> ids(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(vs.mutable_row(i), rows[i].vector, spec_.dim * sizeof(float));
    ids[i] = i;
  }
  STRATA_ASSIGN_OR_RETURN(auto graph, NewGraph());
  const size_t n = rows.size();
  if (n < kMinCalibrationRows) {
    const Timer build;
    if (n > 0) STRATA_RETURN_IF_ERROR(graph->AddBatch(vs, ids));
    times.index_build_seconds = build.Seconds();
    return graph->Save(SealedSegment::GraphPath(sdir));
  }
  // Truly held-out calibration queries: a random sample of the rows is moved to the
  // end and left out of the graph while it is measured, then inserted.
  const size_t q = std::min<size_t>(300, std::max<size_t>(100, n / 50));
  std::mt19937_64 rng(7);
  for (size_t j = 0; j < q; ++j) {
    const size_t tail = n - 1 - j;
    const size_t pick = size_t(rng() % (tail + 1));
    if (pick != tail) {
      std::swap_ranges(vs.mutable_row(pick), vs.mutable_row(pick) + spec_.dim, vs.mutable_row(tail));
      std::swap(ids[pick], ids[tail]);
    }
  }
  std::vector<float> held(vs.row(n - q), vs.row(n - q) + q * spec_.dim);
  std::vector<VectorId> held_ids(ids.end() - q, ids.end());
  vs.Truncate(n - q);
  const Timer build;
  STRATA_RETURN_IF_ERROR(graph->AddBatch(vs, std::span<const VectorId>(ids).first(n - q)));
  times.index_build_seconds = build.Seconds();
  CalibrationSource src;
  src.rows = n - q;
  src.dim = spec_.dim;
  src.metric = spec_.metric;
  src.vector = [&](size_t r) { return vs.row(r); };
  src.id = [&](size_t r) { return ids[r]; };
  src.grid = HnswCalibrationGrid();
  src.scan_cost_per_row = kScanCost;
  src.external_queries = held.data();
  src.num_external_queries = q;
  const index::HnswIndex& g = *graph;
  std::vector<uint32_t> position(n, UINT32_MAX);  // graph label -> row of the calibration source
  for (size_t r = 0; r < n - q; ++r) position[ids[r]] = uint32_t(r);
  src.search = [&](const float* query, uint32_t k, uint32_t ef, size_t,
                   const std::function<bool(size_t)>* allowed, double* cost) -> Result<std::vector<Neighbor>> {
    thread_local index::SearchContext ctx;
    index::SearchParams p;
    p.k = k;
    p.ef = std::max(ef, k);
    // Labels are rows of records.strata; the calibration's rows are positions in vs.
    std::optional<LabelPredicate> lp;
    if (allowed) {
      lp.emplace([&](VectorId label) { return label < n && position[label] != UINT32_MAX && (*allowed)(position[label]); });
      p.filter = &*lp;
    }
    index::HnswSearchStats st;
    STRATA_ASSIGN_OR_RETURN(auto out, g.Search(VectorView(query, spec_.dim), p, ctx, &st));
    *cost += double(st.distances);
    return out;
  };
  STRATA_ASSIGN_OR_RETURN(Calibration cal, Calibrate(src));
  times.calibration_seconds = cal.seconds;
  STRATA_RETURN_IF_ERROR(cal.Save(SealedSegment::CalibrationPath(sdir)));
  const Timer add_held;
  for (size_t j = 0; j < q; ++j) {
    STRATA_RETURN_IF_ERROR(graph->Add(held_ids[j], VectorView(held.data() + j * spec_.dim, spec_.dim)));
  }
  times.index_build_seconds += add_held.Seconds();
  return graph->Save(SealedSegment::GraphPath(sdir));
}

Status Collection::BulkLoad(const VectorSet& vectors, std::span<const VectorId> ids,
                            std::span<const Attributes> attributes) {
  const size_t n = vectors.size();
  if (vectors.dim() != spec_.dim) {
    return InvalidArgument("vectors have dimension {}, collection '{}' has {}", vectors.dim(), spec_.name,
                           spec_.dim);
  }
  if (!ids.empty() && ids.size() != n) return InvalidArgument("{} ids given for {} vectors", ids.size(), n);
  if (!attributes.empty() && attributes.size() != n) {
    return InvalidArgument("{} attribute sets given for {} vectors", attributes.size(), n);
  }
  std::vector<SealedSegment::Row> rows(n);
  static const Attributes kNone;
  for (size_t i = 0; i < n; ++i) {
    if (!AllFinite(vectors.row(i), spec_.dim)) {
      return InvalidArgument("vector at row {} has a NaN or infinite component", i);
    }
    const VectorId id = ids.empty() ? VectorId(i) : ids[i];
    if (id == kInvalidVectorId) return InvalidArgument("row {}: id {} is reserved", i, id);
    if (!attributes.empty()) {
      if (Status s = ValidateAttributes(attributes[i]); !s.ok()) return s.WithContext(fmt::format("row {}", i));
    }
    rows[i] = {id, vectors.row(i), attributes.empty() ? &kNone : &attributes[i]};
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  for (size_t i = 1; i < n; ++i) {
    if (rows[i].id == rows[i - 1].id) return InvalidArgument("id {} is given twice", rows[i].id);
  }
  std::lock_guard<std::mutex> g(write_mu_);
  if (!poisoned_.ok()) return poisoned_;
  if (dirty_ || !records_.empty() || !sealed_.empty()) {
    return InvalidArgument("collection '{}' is not empty: bulk load fills empty collections only", spec_.name);
  }
  if (n == 0) return Status::Ok();
  const uint64_t sid = next_segment_id_;
  const fs::path sdir = SegmentDir(dir_, sid);
  std::error_code ec;
  fs::remove_all(sdir, ec);  // a leftover of an earlier failed attempt
  WriteTimes times;
  STRATA_RETURN_IF_ERROR(WriteSegment(sdir, rows, times));
  STRATA_ASSIGN_OR_RETURN(auto seg, SealedSegment::Open(sdir, sid, spec_.dim));
  double calibration_s = 0;
  STRATA_RETURN_IF_ERROR(seg->CalibrateAndSave(300, &calibration_s));
  times.calibration_seconds += calibration_s;
  CountIndexBuild(times.index_build_seconds);
  CountCalibration(times.calibration_seconds);
  spdlog::info("collection '{}': bulk load of {} rows as segment {}: index build {:.2f} s, calibration {:.2f} s",
               spec_.name, n, sid, times.index_build_seconds, times.calibration_seconds);
  const uint64_t gen = generation_ + 1;
  STRATA_RETURN_IF_ERROR(CommitManifest(checkpoint_, wal_first_, sid + 1, gen, {{sid, 0}}));
  {
    std::unique_lock<FairSharedMutex> x(apply_mu_);
    sealed_.push_back(std::move(seg));
  }
  next_segment_id_ = sid + 1;
  generation_ = gen;
  return Status::Ok();
}

bool Collection::WantsCompaction() const {
  std::shared_lock<FairSharedMutex> s(apply_mu_);
  if (sealed_.size() >= kCompactSegments) return true;
  const auto [entries, dead] = SealedEntriesLocked();
  return entries >= 1000 && double(dead) >= kCompactDeletedShare * double(entries);
}

double Collection::DeadShare() const {
  std::shared_lock<FairSharedMutex> s(apply_mu_);
  const auto [entries, dead] = SealedEntriesLocked();
  return entries == 0 ? 0.0 : double(dead) / double(entries);
}

std::pair<size_t, size_t> Collection::SealedEntriesLocked() const {
  // Dead entries: deleted rows, and graph nodes a seal saved beyond the rows
  // (tombstones and free slots of the in-memory graph; issue 14).
  size_t entries = 0, dead = 0;
  for (const auto& seg : sealed_) {
    entries += seg->rows() + seg->dead_index_nodes();
    dead += seg->deleted_count() + seg->dead_index_nodes();
  }
  return {entries, dead};
}

Status Collection::Compact() {
  // Phase 1, under write_mu_: seal, then take the sealed segments as they are now
  // (with a copy of their deleted sets) as the input.
  std::vector<const SealedSegment*> inputs;
  std::vector<std::unordered_set<VectorId>> base_deleted;
  uint64_t sid = 0;
  {
    std::unique_lock<std::mutex> g(write_mu_);
    // One compaction at a time. A request that finds one running waits for it and then
    // compacts what is left (the running one took its inputs before this request), so
    // that a Compact that returns OK has covered every write acknowledged before it.
    compaction_done_.wait(g, [&] { return !compacting_; });
    if (!poisoned_.ok()) return poisoned_;
    STRATA_RETURN_IF_ERROR(SealLocked());
    size_t dead = 0;
    for (const auto& seg : sealed_) dead += seg->deleted_count() + seg->dead_index_nodes();
    if (sealed_.size() < 2 && dead == 0) return Status::Ok();  // already one clean segment
    for (const auto& seg : sealed_) {
      inputs.push_back(seg.get());
      base_deleted.push_back(seg->deleted());
    }
    sid = next_segment_id_++;  // reserved: seals meanwhile number theirs after it
    compacting_ = true;
  }
  // Whatever happens next, the next compaction may run.
  struct Done {
    Collection* c;
    ~Done() {
      {
        std::lock_guard<std::mutex> g(c->write_mu_);
        c->compacting_ = false;
      }
      c->compaction_done_.notify_all();
    }
  } done{this};

  // Phase 2, without write_mu_: writes, seals and searches go on. The inputs stay
  // alive (only a compaction removes segments) and their rows are immutable; their
  // deleted sets may grow meanwhile, so the copies taken above are used.
  std::vector<SealedSegment::Row> rows;
  std::vector<Attributes> attrs;
  size_t live = 0;
  for (size_t i = 0; i < inputs.size(); ++i) live += inputs[i]->rows() - base_deleted[i].size();
  rows.reserve(live);
  attrs.reserve(live);  // stable addresses for the rows
  for (size_t i = 0; i < inputs.size(); ++i) {
    const SealedSegment& seg = *inputs[i];
    for (size_t r = 0; r < seg.rows(); ++r) {
      const VectorId id = seg.ids()[r];
      if (base_deleted[i].count(id)) continue;
      STRATA_ASSIGN_OR_RETURN(Record rec, seg.Read(r));
      attrs.push_back(std::move(rec.attributes));
      rows.push_back({id, seg.vector(r), &attrs.back()});
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
  WriteTimes times;
  STRATA_RETURN_IF_ERROR(WriteSegment(sdir, rows, times));
  STRATA_ASSIGN_OR_RETURN(auto merged, SealedSegment::Open(sdir, sid, spec_.dim));
  double calibration_s = 0;
  STRATA_RETURN_IF_ERROR(merged->CalibrateAndSave(300, &calibration_s));
  times.calibration_seconds += calibration_s;
  CountIndexBuild(times.index_build_seconds);
  CountCalibration(times.calibration_seconds);
  spdlog::info("collection '{}': compacted {} segments into segment {} ({} rows): index build {:.2f} s, "
               "calibration {:.2f} s", spec_.name, inputs.size(), sid, rows.size(), times.index_build_seconds,
               times.calibration_seconds);

  // Phase 3, under write_mu_ again: carry over the deletes that reached the inputs
  // meanwhile, persist the deletes of every segment as a new generation, and
  // replace the manifest.
  std::lock_guard<std::mutex> g(write_mu_);
  if (!poisoned_.ok()) {
    fs::remove_all(sdir, ec);
    return poisoned_;
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    for (VectorId id : inputs[i]->deleted()) {
      if (!base_deleted[i].count(id)) merged->MarkDeleted(id);  // live at the snapshot: in merged
    }
  }
  const uint64_t gen = generation_ + 1;
  std::vector<SealedSegment*> result;
  if (!rows.empty()) result.push_back(merged.get());
  for (const auto& seg : sealed_) {
    if (std::find(inputs.begin(), inputs.end(), seg.get()) == inputs.end()) result.push_back(seg.get());
  }
  std::vector<std::pair<uint64_t, uint64_t>> listed;
  for (SealedSegment* seg : result) {
    uint64_t dg = 0;
    if (seg->deleted_count() > 0) {
      std::vector<VectorId> ids(seg->deleted().begin(), seg->deleted().end());
      std::sort(ids.begin(), ids.end());
      STRATA_RETURN_IF_ERROR(SealedSegment::WriteDeletes(seg->dir(), gen, ids));
      dg = gen;
    }
    listed.emplace_back(seg->id(), dg);
  }
  STRATA_RETURN_IF_ERROR(CommitManifest(checkpoint_, wal_first_, next_segment_id_, gen, listed));
  std::vector<std::unique_ptr<SealedSegment>> old;
  {
    std::unique_lock<FairSharedMutex> x(apply_mu_);
    std::vector<std::unique_ptr<SealedSegment>> kept;
    if (!rows.empty()) kept.push_back(std::move(merged));
    for (auto& seg : sealed_) {
      if (std::find(inputs.begin(), inputs.end(), seg.get()) == inputs.end()) kept.push_back(std::move(seg));
      else old.push_back(std::move(seg));
    }
    sealed_ = std::move(kept);
    for (size_t i = 0; i < sealed_.size(); ++i) sealed_[i]->deletes_generation = listed[i].second;
  }
  generation_ = gen;
  for (const auto& seg : old) fs::remove_all(seg->dir(), ec);
  if (rows.empty()) fs::remove_all(sdir, ec);
  for (const auto& seg : sealed_) {  // deletes files of older generations
    for (const auto& f : fs::directory_iterator(seg->dir(), ec)) {
      const std::string name = f.path().filename().string();
      if (name.starts_with("deletes-") &&
          f.path() != SealedSegment::DeletesPath(seg->dir(), seg->deletes_generation)) {
        fs::remove(f.path(), ec);
      }
    }
  }
  return Status::Ok();
}

Result<Record> Collection::Get(VectorId id) const {
  std::shared_lock<FairSharedMutex> s(apply_mu_);
  if (auto it = records_.find(id); it != records_.end()) {
    return Record{id, it->second.vector, it->second.attributes};
  }
  for (auto it = sealed_.rbegin(); it != sealed_.rend(); ++it) {
    const SealedSegment& seg = **it;
    if (auto row = seg.Find(id); row && !seg.IsDeleted(id)) return seg.Read(*row);
  }
  return Error(NotFound("id {} is not in collection '{}'", id, spec_.name));
}

namespace {

// The in-memory graph is labelled with ids: a filter looks the record up.
template <typename Map>
class MemoryFilter final : public index::IdFilter {
 public:
  MemoryFilter(const Map& records, const RowBitmap& match) : records_(records), match_(match) {}
  bool Contains(VectorId id) const override {
    auto it = records_.find(id);
    return it != records_.end() && match_.Test(it->second.row);
  }

 private:
  const Map& records_;
  const RowBitmap& match_;
};

}  // namespace

std::shared_ptr<const Calibration> Collection::MemoryCalibration() const {
  const size_t n = records_.size();
  if (n < kMinCalibrationRows) return nullptr;
  std::lock_guard<std::mutex> g(mem_calibration_mu_);
  if (mem_calibration_ && mem_calibration_epoch_ == mem_epoch_ && n < 2 * mem_calibration_rows_) {
    return mem_calibration_;
  }
  std::vector<const Stored*> rows;
  std::vector<VectorId> ids;
  rows.reserve(n);
  ids.reserve(n);
  for (const auto& [id, r] : records_) {
    rows.push_back(&r);
    ids.push_back(id);
  }
  CalibrationSource src;
  src.rows = n;
  src.dim = spec_.dim;
  src.metric = spec_.metric;
  src.vector = [&](size_t r) { return rows[r]->vector.data(); };
  src.id = [&](size_t r) { return ids[r]; };
  src.grid = HnswCalibrationGrid();
  src.scan_cost_per_row = kScanCost;
  std::unordered_map<VectorId, size_t> row_of;
  row_of.reserve(n);
  for (size_t r = 0; r < n; ++r) row_of.emplace(ids[r], r);
  src.search = [&, this](const float* q, uint32_t k, uint32_t ef, size_t self,
                         const std::function<bool(size_t)>* allowed,
                         double* cost) -> Result<std::vector<Neighbor>> {
    thread_local index::SearchContext ctx;
    index::SearchParams p;
    p.k = k;
    p.ef = std::max(ef, k);
    p.exclude = ids[self];
    std::optional<LabelPredicate> lp;
    if (allowed) {
      lp.emplace([&row_of, allowed](VectorId id) {
        auto it = row_of.find(id);
        return it != row_of.end() && (*allowed)(it->second);
      });
      p.filter = &*lp;
    }
    index::HnswSearchStats st;
    STRATA_ASSIGN_OR_RETURN(auto out, hnsw_->Search(VectorView(q, spec_.dim), p, ctx, &st));
    *cost += double(st.distances);
    return out;
  };
  auto c = Calibrate(src, 100);
  if (c) CountCalibration(c->seconds);
  if (!c) {
    // Kept (empty: the planner then uses generous parameters or a scan) so that
    // the next queries do not try again before the segment has doubled.
    spdlog::warn("collection '{}': calibrating the in-memory segment failed: {}", spec_.name,
                 c.error().ToString());
    c = Calibration{};
  }
  mem_calibration_ = std::make_shared<const Calibration>(std::move(*c));
  mem_calibration_rows_ = n;
  mem_calibration_epoch_ = mem_epoch_;
  return mem_calibration_;
}

Result<std::vector<Neighbor>> Collection::SearchMemory(VectorView query, const float* normalized,
                                                       const Filter* filter, const SearchOptions& o,
                                                       double recall_target, index::SearchContext& ctx,
                                                       SegmentExplain* explain) const {
  auto t0 = std::chrono::steady_clock::now();
  std::optional<RowBitmap> match;
  const uint64_t live = records_.size();
  uint64_t matching = live;
  double estimated = 1.0;
  if (filter) {
    if (explain) estimated = mem_attrs_.EstimateSelectivity(*filter);  // EXPLAIN only
    match = mem_attrs_.Evaluate(*filter);
    matching = match->Count();
  }
  SegmentExplain ex;
  ex.segment = "memory";
  ex.kind = "hnsw";
  ex.filter_ms = filter ? MillisSince(t0) : 0.0;
  PlanInput in;
  in.kind = SegmentKind::kHnsw;
  in.rows = live;
  in.matching = matching;
  in.filtered = filter != nullptr;
  const std::shared_ptr<const Calibration> calibration = MemoryCalibration();
  in.calibration = calibration.get();
  in.options = &o;
  in.recall_target = recall_target;
  in.want_reason = explain != nullptr;
  const SegmentPlan plan = PlanSegment(in);
  ex.rows = live;
  ex.matching = matching;
  ex.estimated_selectivity = estimated;
  ex.actual_selectivity = live ? double(matching) / double(live) : 0.0;
  ex.predicted_recall = plan.predicted_recall;
  ex.reason = plan.reason;
  t0 = std::chrono::steady_clock::now();
  std::vector<Neighbor> out;
  auto scan = [&] {
    std::vector<const std::pair<const VectorId, Stored>*> rows;
    rows.reserve(matching);
    if (match) {
      match->ForEach([&](uint32_t r) { rows.push_back(&*records_.find(mem_row_ids_[r])); });
    } else {
      for (const auto& kv : records_) rows.push_back(&kv);
    }
    ex.distances += rows.size();
    return ScanTopK(normalized, spec_.dim, spec_.metric, o.k, rows.size(), [&](size_t i, VectorId* id, float* inv) {
      *id = rows[i]->first;
      *inv = rows[i]->second.inv_norm;
      return rows[i]->second.vector.data();
    });
  };
  if (plan.skip) {
    ex.strategy = "skipped";
  } else if (plan.strategy == SearchStrategy::kScan) {
    ex.strategy = "scan";
    out = scan();
  } else {
    const bool post = plan.strategy == SearchStrategy::kPostFilter;
    ex.strategy = post ? "post-filter" : (match ? "filtered index" : "index");
    const uint32_t want = post ? plan.post_k : o.k;
    index::SearchParams p;
    p.k = want;
    p.ef = std::max(plan.param, want);
    std::optional<MemoryFilter<decltype(records_)>> mf;
    if (match && !post) {
      mf.emplace(records_, *match);
      p.filter = &*mf;
    }
    index::HnswSearchStats st;
    STRATA_ASSIGN_OR_RETURN(out, hnsw_->Search(query, p, ctx, &st));
    if (post) {
      std::erase_if(out, [&](const Neighbor& nb) {
        auto it = records_.find(nb.id);
        return it == records_.end() || !match->Test(it->second.row);
      });
      if (out.size() > o.k) out.resize(o.k);
    }
    ex.ef = p.ef;
    ex.distances = st.distances;
    ex.nodes_visited = st.hops;
    if (match && out.size() < std::min<uint64_t>(o.k, matching) && o.strategy == SearchStrategy::kAuto) {
      ex.strategy = "index, then scan";
      out = scan();
    }
  }
  ex.search_ms = MillisSince(t0);
  ex.results = out.size();
  if (explain) *explain = std::move(ex);
  return out;
}

Result<std::vector<Neighbor>> Collection::Search(std::span<const float> query, const SearchOptions& options,
                                                 Explain* explain) const {
  const auto start = std::chrono::steady_clock::now();
  if (query.size() != spec_.dim) {
    return Error(InvalidArgument("query has dimension {}, collection '{}' has {}", query.size(),
                                 spec_.name, spec_.dim));
  }
  if (!AllFinite(query.data(), query.size())) {
    return Error(InvalidArgument("query has a NaN or infinite component"));
  }
  if (options.k == 0 || options.k > kMaxSearchK) {
    return Error(InvalidArgument("k is {}; it must be in 1..{}", options.k, kMaxSearchK));
  }
  if (options.ef > kMaxSearchEf) {
    return Error(InvalidArgument("ef is {}; at most {} is accepted", options.ef, kMaxSearchEf));
  }
  if (options.max_lists > kMaxSearchLists) {
    return Error(InvalidArgument("max_lists is {}; at most {} is accepted", options.max_lists, kMaxSearchLists));
  }
  if (!(options.recall >= 0 && options.recall <= 1)) {
    return Error(InvalidArgument("recall target {} must be in (0, 1] (0: the default)", options.recall));
  }
  if (uint8_t(options.strategy) > uint8_t(SearchStrategy::kPostFilter)) {
    return Error(InvalidArgument("unknown search strategy {}", int(options.strategy)));
  }
  std::optional<Filter> filter;
  if (!options.filter.empty()) {
    STRATA_ASSIGN_OR_RETURN(Filter f, Filter::Parse(options.filter));
    filter = std::move(f);
  }
  const std::string filter_key = filter ? filter->ToString() : std::string();
  const double parse_ms = filter ? MillisSince(start) : 0.0;
  const double recall_target = options.recall > 0 ? options.recall : kDefaultRecallTarget;
  thread_local index::SearchContext ctx;
  thread_local index::SpannContext sctx;
  const VectorView q(query.data(), query.size());
  thread_local std::vector<float> normalized;
  normalized.assign(query.begin(), query.end());
  if (spec_.metric == Metric::kCosine) {
    const float nn = index::Kernels().ip(normalized.data(), normalized.data(), spec_.dim);
    if (nn > 0) {
      const float inv = 1.0f / std::sqrt(nn);
      for (float& x : normalized) x *= inv;
    }
  }
  if (explain) {
    *explain = Explain{};
    explain->k = options.k;
    explain->recall_target = options.recall > 0 || (options.ef == 0 && options.max_lists == 0) ? recall_target : 0;
    explain->filter = filter_key;
    explain->parse_ms = parse_ms;
  }
  const Filter* fp = filter ? &*filter : nullptr;
  std::shared_lock<FairSharedMutex> s(apply_mu_);
  SegmentExplain mem_ex;
  STRATA_ASSIGN_OR_RETURN(std::vector<Neighbor> out,
                          SearchMemory(q, normalized.data(), fp, options, recall_target, ctx,
                                       explain ? &mem_ex : nullptr));
  if (explain) explain->segments.push_back(std::move(mem_ex));
  index::SpannQueryStats io;
  for (const auto& seg : sealed_) {
    SegmentExplain seg_ex;
    SealedSegment::Query sq{q, normalized.data(), fp, filter ? &filter_key : nullptr, &options, recall_target};
    STRATA_ASSIGN_OR_RETURN(auto part, seg->Search(sq, ctx, sctx, explain ? &seg_ex : nullptr, &io));
    out.insert(out.end(), part.begin(), part.end());
    if (explain) explain->segments.push_back(std::move(seg_ex));
  }
  s.unlock();
  if (io.lists_read) {
    disk_reads_.fetch_add(io.lists_read, std::memory_order_relaxed);
    disk_read_bytes_.fetch_add(io.bytes_read, std::memory_order_relaxed);
  }
  const auto merge_start = std::chrono::steady_clock::now();
  std::sort(out.begin(), out.end());
  if (out.size() > options.k) out.resize(options.k);
  if (explain) {
    explain->merge_ms = MillisSince(merge_start);
    explain->total_ms = MillisSince(start);
  }
  return out;
}

CollectionInfo Collection::Info() const {
  CollectionInfo info;
  info.spec = spec_;
  info.id = id_;
  std::shared_lock<FairSharedMutex> s(apply_mu_);
  info.num_vectors = records_.size();
  info.last_sequence = last_sequence_.load();
  // The record copies (vector as written; attributes not counted) and their map
  // entries, plus the graphs.
  info.memory_bytes =
      hnsw_->Stats().memory_bytes +
      records_.size() * (spec_.dim * sizeof(float) + sizeof(Stored) + sizeof(VectorId) + 3 * sizeof(void*));
  for (const auto& seg : sealed_) {
    info.num_vectors += seg->live_rows();
    info.memory_bytes += seg->memory_bytes();
  }
  info.sealed_segments = sealed_.size();
  return info;
}

uint64_t Collection::wal_bytes() const { return wal_bytes_.load(std::memory_order_relaxed); }
uint64_t Collection::wal_fsyncs() const { return wal_fsyncs_.load(std::memory_order_relaxed); }

void Collection::PublishWalCounters() {
  if (!wal_) return;
  wal_bytes_.store(wal_bytes_before_ + wal_->bytes_written(), std::memory_order_relaxed);
  wal_fsyncs_.store(wal_fsyncs_before_ + wal_->fsyncs(), std::memory_order_relaxed);
}

}  // namespace strata::engine
