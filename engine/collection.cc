#include "engine/collection.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <unordered_set>

#include "engine/planner.h"
#include "index/distance/distance.h"
#include "storage/file_util.h"

namespace strata::engine {
namespace fs = std::filesystem;

namespace {

// The first sequence a log file's name gives (`<20 digits>.wal`), if it is one.
std::optional<uint64_t> WalFileSequence(const fs::path& p) {
  const std::string name = p.filename().string();
  if (name.size() != 24 || !name.ends_with(".wal")) return std::nullopt;
  uint64_t seq = 0;
  const auto [end, err] = std::from_chars(name.data(), name.data() + 20, seq);
  if (err != std::errc() || end != name.data() + 20) return std::nullopt;
  return seq;
}

}  // namespace

uint64_t Collection::Snapshot::live() const {
  uint64_t n = memory_live + frozen_live;
  for (const SealedEntry& e : sealed) n += e.live();
  return n;
}

Collection::Collection(fs::path dir, uint64_t id, CollectionSpec spec, WalOptions wal_options,
                       uint32_t memory_ef_construction)
    : dir_(std::move(dir)),
      id_(id),
      spec_(std::move(spec)),
      wal_options_(wal_options),
      memory_ef_construction_(memory_ef_construction) {
  seal_retry_rows_ = spec_.seal_threshold;
}

Collection::~Collection() { (void)Close(); }

fs::path Collection::SegmentDir(const fs::path& dir, uint64_t id) { return dir / ("seg-" + std::to_string(id)); }

fs::path Collection::WalPath(const fs::path& dir, uint64_t first_sequence) {
  return dir / "wal" / fmt::format("{:020}.wal", first_sequence);
}

Result<std::shared_ptr<MemorySegment>> Collection::NewMemorySegment() const {
  index::HnswOptions ho;
  ho.M = spec_.hnsw_M;
  // A cap: a collection built cheaper than the engine's value keeps its own.
  ho.ef_construction = memory_ef_construction_ > 0 ? std::min(memory_ef_construction_, spec_.hnsw_ef_construction)
                                                   : spec_.hnsw_ef_construction;
  return MemorySegment::Create(spec_.dim, spec_.metric, ho);
}

Result<std::unique_ptr<Collection>> Collection::Create(const fs::path& dir, uint64_t id,
                                                       const CollectionSpec& spec,
                                                       const WalOptions& wal_options,
                                                       uint32_t memory_ef_construction) {
  std::error_code ec;
  if (fs::exists(dir, ec)) return Error(AlreadyExists("{} already exists", dir.string()));
  fs::create_directories(dir / "wal", ec);
  if (ec) return Error(IOError("{}: cannot create: {}", (dir / "wal").string(), ec.message()));
  // The new folders' entries must be durable before the catalog names them.
  STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(dir / "wal"));
  STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(dir));
  auto c = std::unique_ptr<Collection>(new Collection(dir, id, spec, wal_options, memory_ef_construction));
  auto snap = std::make_shared<Snapshot>();
  STRATA_ASSIGN_OR_RETURN(snap->memory, c->NewMemorySegment());
  c->Publish(std::move(snap));
  STRATA_ASSIGN_OR_RETURN(c->wal_, WalWriter::Create(WalPath(dir, 1), 1, wal_options));
  c->PublishWalCounters();
  return c;
}

Result<std::unique_ptr<Collection>> Collection::Open(const fs::path& dir, uint64_t id,
                                                     const CollectionSpec& spec,
                                                     const WalOptions& wal_options,
                                                     RecoveryReport& report, bool salvage_wal_tail,
                                                     uint32_t memory_ef_construction) {
  auto c = std::unique_ptr<Collection>(new Collection(dir, id, spec, wal_options, memory_ef_construction));
  STRATA_ASSIGN_OR_RETURN(CollectionManifest m, CollectionManifest::Load(dir));
  c->wal_first_ = m.wal_first;
  c->next_segment_id_ = m.next_segment;
  c->generation_ = m.generation;
  c->last_sequence_.store(m.checkpoint);
  c->checkpoint_ = m.checkpoint;
  c->next_key_id_ = m.next_key_id;
  const bool have_manifest = CollectionManifest::Exists(dir);
  std::unordered_set<std::string> keep = {CollectionManifest::kFile, "wal"};
  // Everything is checked before anything is removed: leftovers are deleted only
  // once the state the manifest names has been read whole.
  std::vector<fs::path> leftovers;
  std::error_code ec;
  auto snap = std::make_shared<Snapshot>();
  STRATA_ASSIGN_OR_RETURN(snap->memory, c->NewMemorySegment());
  snap->sequence = m.checkpoint;  // the log replayed below moves it on
  for (const auto& [sid, gen] : m.segments) {
    const fs::path sdir = SegmentDir(dir, sid);
    STRATA_ASSIGN_OR_RETURN(std::shared_ptr<const SealedSegment> seg, SealedSegment::Open(sdir, sid, spec.dim));
    SealedEntry e{seg, nullptr, 0};
    if (gen > 0) {
      STRATA_ASSIGN_OR_RETURN(auto dels, SealedSegment::ReadDeletes(sdir, gen));
      auto d = std::make_shared<DeleteSet>();
      d->rows = RowBitmap(seg->rows());
      for (VectorId del : dels) {
        auto row = seg->Find(del);
        if (!row) {
          return Error(Corruption("{}: deletes id {} that the segment does not hold",
                                  SealedSegment::DeletesPath(sdir, gen).string(), del));
        }
        if (!d->rows.Test(uint32_t(*row))) {
          d->rows.Set(uint32_t(*row));
          ++d->count;
        }
      }
      e.deletes = std::move(d);
      e.deletes_generation = gen;
    }
    // Keyed ids assigned before the manifest was written: past the largest id of the
    // keyed range that a row holds (ids are sorted: the last one). A row there without a
    // key was written by id before keys existed; it counts too, or a new key could be
    // given its id and replace it.
    if (!seg->ids().empty() && IsKeyedId(seg->ids().back())) {
      c->next_key_id_ = std::max(c->next_key_id_, seg->ids().back() + 1);
    }
    keep.insert(sdir.filename().string());
    // Deletes files of other generations are leftovers of an interrupted seal.
    for (const auto& f : fs::directory_iterator(sdir, ec)) {
      const std::string name = f.path().filename().string();
      if (name.starts_with("deletes-") && f.path() != SealedSegment::DeletesPath(sdir, gen)) {
        leftovers.push_back(f.path());
      }
    }
    snap->sealed.push_back(std::move(e));
  }
  // Segment folders the manifest does not name are leftovers of a seal or compaction
  // cut short by a crash: what they hold is also in what it names (or in the logs).
  for (const auto& f : fs::directory_iterator(dir, ec)) {
    if (!keep.count(f.path().filename().string())) leftovers.push_back(f.path());
  }
  // Log files: those from wal_first on are replayed in order (a seal cut short may
  // leave two: the frozen segment's and the one after it); older ones are leftovers.
  std::map<uint64_t, fs::path> logs;
  for (const auto& f : fs::directory_iterator(dir / "wal", ec)) {
    const auto seq = WalFileSequence(f.path());
    if (seq && *seq >= m.wal_first) {
      logs.emplace(*seq, f.path());
    } else {
      leftovers.push_back(f.path());
    }
  }
  if (!have_manifest && !leftovers.empty()) {
    // Without its manifest a collection that was ever sealed cannot be told from one
    // that never was: refuse rather than take its segments for leftovers.
    return Error(Corruption("{}: missing, but {} holds {} (sealed segments or logs it would name)",
                            (dir / CollectionManifest::kFile).string(), dir.string(), leftovers.front().string()));
  }
  const fs::path first_log = WalPath(dir, m.wal_first);
  if (!logs.count(m.wal_first)) {
    return Error(Corruption("{}: the log of collection '{}' is missing", first_log.string(), spec.name));
  }
  c->Publish(snap);
  uint64_t expected = m.wal_first;  // the first sequence the next log file must start at
  fs::path last_log;
  fs::path recreate_log;  // the last log, removed because its creation was cut short
  for (auto it = logs.begin(); it != logs.end(); ++it) {
    const auto& [first, path] = *it;
    const bool last = std::next(it) == logs.end();
    if (last && first == expected) {
      std::error_code size_ec;
      const uintmax_t size = fs::file_size(path, size_ec);
      if (!size_ec && size < kWalHeaderBytes) {
        // Shorter than its header: made by a build that created logs in place, and cut short
        // between the file's creation and its header's fsync -- before any record could be
        // written to it. Made anew below, at the same first sequence.
        fs::remove(path, ec);
        report.notes.push_back(fmt::format("{}: {} bytes, a log whose creation was cut short (no record); "
                                           "made anew", path.string(), size));
        spdlog::warn("{}", report.notes.back());
        recreate_log = path;
        continue;
      }
    }
    if (first != expected) {
      // Past a gap: a log holding records means one in between is missing; an empty or
      // unreadable one is a leftover of a freeze that failed before anything was written.
      auto stray = ReadWal(path, kDefaultMaxWalRecordBytes, WalTail::kCutTorn);
      if (stray && !stray->records.empty()) {
        return Error(Corruption("{}: log starts at sequence {}, but the one before it ends at {}", path.string(),
                                first, expected - 1));
      }
      leftovers.push_back(path);
      continue;
    }
    // A torn tail (a write cut short) is cut below; a damaged record is refused, naming
    // the file and offset, unless the caller asked to salvage (EngineOptions::salvage_wal_tail).
    STRATA_ASSIGN_OR_RETURN(WalContents log, ReadWal(path, kDefaultMaxWalRecordBytes,
                                                     salvage_wal_tail ? WalTail::kSalvage : WalTail::kCutTorn));
    if (log.first_sequence != first) {
      return Error(Corruption("{}: log starts at sequence {}, its name says {}", path.string(), log.first_sequence,
                              first));
    }
    if (!last && log.dropped_bytes > 0) {
      // An older log was closed whole when the next one started: damage, not a torn write.
      return Error(Corruption("{}: {} at offset {}, but a later log follows it", path.string(), log.tail_problem,
                              log.valid_bytes));
    }
    for (const WalRecord& r : log.records) {
      if (r.type != kBatchRecord && r.type != kKeyedBatchRecord && r.type != kTypedBatchRecord) {
        return Error(Corruption("{}: record {} has unknown type {}", path.string(), r.sequence, r.type));
      }
      auto batch = DecodeBatch(r.payload, spec.dim, r.type);
      if (!batch) return Error(batch.error().WithContext(fmt::format("{}: record {}", path.string(), r.sequence)));
      if (Status s = ValidateBatch(*batch, spec.dim, SIZE_MAX, /*replayed=*/true); !s.ok()) {
        return Error(Corruption("{}: record {} holds an invalid batch: {}", path.string(), r.sequence, s.message()));
      }
      STRATA_RETURN_IF_ERROR(c->Apply(*batch, r.sequence));
      c->last_sequence_.store(r.sequence);
      c->dirty_ = true;
      ++report.batches_replayed;
    }
    expected = log.records.empty() ? first : log.records.back().sequence + 1;
    if (log.dropped_bytes > 0) {
      STRATA_RETURN_IF_ERROR(TruncateWal(path, log.valid_bytes));
      if (log.damaged) {
        report.salvaged_bytes_dropped += log.dropped_bytes;
        report.notes.push_back(fmt::format("{}: damaged log cut at offset {} as salvage_wal_tail asked ({}); {} "
                                           "bytes dropped, which may have held acknowledged writes",
                                           path.string(), log.valid_bytes, log.tail_problem, log.dropped_bytes));
        spdlog::warn("{}", report.notes.back());
      } else {
        report.torn_bytes_dropped += log.dropped_bytes;
        report.notes.push_back(fmt::format("{}: torn tail cut ({}); {} bytes dropped, none of them acknowledged",
                                           path.string(), log.tail_problem, log.dropped_bytes));
      }
    }
    last_log = path;
  }
  for (const fs::path& p : leftovers) {
    fs::remove_all(p, ec);
    report.notes.push_back(fmt::format("{}: left by an interrupted seal or compaction; removed", p.string()));
  }
  if (!recreate_log.empty()) {
    STRATA_ASSIGN_OR_RETURN(c->wal_, WalWriter::Create(recreate_log, expected, wal_options));
  } else {
    STRATA_ASSIGN_OR_RETURN(c->wal_, WalWriter::OpenForAppend(last_log, wal_options));
  }
  c->PublishWalCounters();
  return c;
}

void Collection::WaitForSealRoom() {
  auto room = [&] {
    const std::shared_ptr<const Snapshot> s = snapshot();
    return !s->frozen || s->memory_rows < spec_.seal_threshold || closing_.load(std::memory_order_acquire);
  };
  if (room()) return;
  const auto deadline = std::chrono::steady_clock::now() + kSealWaitLimit;
  std::unique_lock<std::mutex> lk(seal_done_mu_);
  if (seal_done_cv_.wait_until(lk, deadline, room)) return;
  if (!seal_wait_warned_.exchange(true)) {
    spdlog::warn("collection '{}': the previous seal has not finished in {} s; writes go on into a growing "
                 "in-memory segment (a busy machine gives maintenance little CPU)",
                 spec_.name, kSealWaitLimit.count());
  }
}

Status Collection::Close() {
  {
    std::lock_guard<std::mutex> g(seal_done_mu_);
    closing_.store(true, std::memory_order_release);
  }
  seal_done_cv_.notify_all();  // writers waiting for a seal go on (and find the log closed)
  // A seal or compaction in progress finishes first.
  std::lock_guard<std::mutex> c(compact_mu_);
  std::lock_guard<std::mutex> m(seal_mu_);
  std::lock_guard<std::mutex> g(write_mu_);
  if (!wal_) return Status::Ok();
  Status s = wal_->Close();
  wal_.reset();
  if (poisoned_.ok()) poisoned_ = Cancelled("collection '{}' is closed", spec_.name);
  return s;
}

bool Collection::OverThreshold(const Snapshot& s) const {
  // Rows replaced or deleted in memory count too: they stay in the graph until the
  // seal. Once they outnumber the live rows (and pass kSealDeadRows), the segment is
  // sealed early, so that rewriting the same ids keeps memory proportional to the
  // live rows (issue 14, D1).
  const uint64_t dead = s.memory_rows - s.memory_live;
  return s.memory_rows >= seal_retry_rows_ || (dead >= kSealDeadRows && dead >= s.memory_live) ||
         (wal_ && wal_->bytes_written() >= seal_retry_log_bytes_);
}

Status Collection::Write(const WriteBatch& batch, size_t max_ops, std::vector<VectorId>* resolved) {
  STRATA_RETURN_IF_ERROR(ValidateBatch(batch, spec_.dim, max_ops));
  if (batch.empty()) return Status::Ok();
  std::vector<std::byte> payload;
  std::vector<size_t> key_id_offsets;  // keyed operations' ids, filled in once resolved
  const uint8_t type = EncodeBatch(batch, payload, &key_id_offsets);
  if (payload.size() > wal_options_.max_record_bytes) {
    return InvalidArgument("batch encodes to {} bytes, more than one log record takes ({}); split it",
                           payload.size(), wal_options_.max_record_bytes);
  }
  WaitForSealRoom();
  bool froze = false;
  {
    std::lock_guard<std::mutex> g(write_mu_);
    if (!poisoned_.ok()) return poisoned_;
    // Keys to ids, against the state every earlier batch left (the log records the
    // ids, so that replay assigns exactly these).
    std::vector<VectorId> ids;
    if (batch.has_keys()) {
      STRATA_ASSIGN_OR_RETURN(ids, ResolveKeys(batch));
      size_t k = 0;
      for (size_t i = 0; i < batch.size(); ++i) {
        if (batch.ops()[i].by_key()) std::memcpy(payload.data() + key_id_offsets[k++], &ids[i], sizeof(VectorId));
      }
    }
    auto seq = wal_->Append(type, payload);
    if (!seq) {
      // The log may hold part of this record: refuse further writes rather than
      // acknowledge anything that recovery might not see.
      poisoned_ = seq.error().WithContext(fmt::format("collection '{}' stopped taking writes", spec_.name));
      return seq.error();
    }
    Status applied;
    try {
      applied = Apply(batch, *seq, ids);
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
    if (resolved) {
      if (ids.empty()) {
        resolved->clear();
        for (const WriteOp& op : batch.ops()) resolved->push_back(op.id);
      } else {
        *resolved = ids;
      }
    }
    PublishWalCounters();
    // Freeze at the size threshold, or when the log alone has grown large (deletes of
    // sealed ids add to the log, not to the segment); maintenance seals it. While an
    // earlier seal is still being written, the in-memory segment keeps growing.
    if (!frozen_at_ && OverThreshold(*snapshot())) {
      if (Status s = FreezeLocked(); !s.ok()) {
        // The batch is durable and applied whatever happens here; retried once the
        // segment has grown by another threshold (or by Flush).
        spdlog::warn("collection '{}': freezing the in-memory segment failed: {}", spec_.name, s.ToString());
        seal_retry_rows_ = snapshot()->memory_rows + spec_.seal_threshold;
        seal_retry_log_bytes_ = wal_->bytes_written() + kSealLogBytes;
      } else {
        froze = true;
      }
    }
  }
  if (froze && wake_) wake_();
  return Status::Ok();
}

Status Collection::Apply(const WriteBatch& batch, uint64_t sequence, std::span<const VectorId> ids) {
  const std::shared_ptr<const Snapshot> cur = snapshot();
  auto next = std::make_shared<Snapshot>(*cur);
  MemorySegment& mem = *next->memory;
  const uint32_t first = mem.rows();
  // Delete sets copied on their first change in this batch.
  std::vector<std::shared_ptr<DeleteSet>> changed(next->sealed.size());
  // `id` stops being live wherever it is live outside the in-memory segment.
  auto remove_elsewhere = [&](VectorId id) {
    if (next->frozen) {
      const uint32_t r = next->frozen->LatestRow(id);
      if (r != MemorySegment::kNoRow && next->frozen->LiveNow(r)) {
        next->frozen->Remove(r, sequence);
        --next->frozen_live;
        return;
      }
    }
    for (size_t i = next->sealed.size(); i-- > 0;) {
      SealedEntry& e = next->sealed[i];
      auto row = e.segment->Find(id);
      if (!row || (e.deletes && e.deletes->rows.Test(uint32_t(*row)))) continue;
      if (!changed[i]) {
        changed[i] = e.deletes ? std::make_shared<DeleteSet>(*e.deletes) : std::make_shared<DeleteSet>();
        if (!e.deletes) changed[i]->rows = RowBitmap(e.segment->rows());
        e.deletes = changed[i];
      }
      changed[i]->rows.Set(uint32_t(*row));
      ++changed[i]->count;
      return;
    }
  };
  for (size_t i = 0; i < batch.size(); ++i) {
    const WriteOp& op = batch.ops()[i];
    const VectorId id = ids.empty() ? op.id : ids[i];
    if (id == kInvalidVectorId) continue;  // a delete of a key that was absent
    // Upserts move the counter past their id: ids given to keys, and ids of the keyed
    // range that old logs upserted by id (replay only: writes by id refuse the range),
    // which a new key must not be given. Deletes never do (a delete by id of any id,
    // even one in the keyed range, would spend the range).
    if (op.kind == WriteOp::Kind::kUpsert && IsKeyedId(id)) next_key_id_ = std::max(next_key_id_, id + 1);
    const uint32_t prev = mem.LatestRow(id);
    if (prev != MemorySegment::kNoRow && mem.LiveNow(prev)) {
      mem.Remove(prev, sequence);
    } else {
      remove_elsewhere(id);  // deleting an absent id is a no-op: deletes are idempotent
    }
    if (op.kind == WriteOp::Kind::kUpsert) {
      mem.AppendRow(id, op.key, std::span<const float>(op.vector.data(), spec_.dim), op.attributes, prev);
    }
  }
  // The graph insertion: searches of the current snapshot go on meanwhile (on the
  // engine's lower-priority insert thread when there is one, so that they come first).
  const uint32_t end = mem.rows();
  if (insert_thread_) {
    STRATA_RETURN_IF_ERROR(insert_thread_->Run([&] { return mem.IndexRows(first, end, insert_threads_); }));
  } else {
    STRATA_RETURN_IF_ERROR(mem.IndexRows(first, end, insert_threads_));
  }
  next->sequence = sequence;
  next->memory_rows = mem.rows();
  next->memory_live = mem.live_now();
  Publish(std::move(next));
  return Status::Ok();
}

Result<Record> Collection::Get(VectorId id) const {
  const std::shared_ptr<const Snapshot> s = snapshot();
  if (const Location at = LocateId(*s, id)) return ReadAt(at);
  return Error(NotFound("id {} is not in collection '{}'", id, spec_.name));
}

Result<std::vector<Neighbor>> Collection::Search(std::span<const float> query, const SearchOptions& options,
                                                 Explain* explain, std::vector<std::string>* keys,
                                                 std::vector<Attributes>* attributes) const {
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
  if (options.prepared_filter && !options.filter.empty()) {
    return Error(InvalidArgument("both a filter expression and a prepared filter were given"));
  }
  std::optional<Filter> parsed;
  const Filter* filter = nullptr;
  std::string parsed_key;
  const std::string* filter_key = nullptr;
  if (options.prepared_filter) {
    filter = options.prepared_filter->filter_.get();
    filter_key = &options.prepared_filter->text();
  } else if (!options.filter.empty()) {
    STRATA_ASSIGN_OR_RETURN(Filter f, Filter::Parse(options.filter));
    parsed = std::move(f);
    filter = &*parsed;
    parsed_key = filter->ToString();
    filter_key = &parsed_key;
  }
  const double parse_ms = parsed ? MillisSince(start) : 0.0;
  const double recall_target = options.recall > 0 ? options.recall : kDefaultRecallTarget;
  // Scratch from the collection's pool (not thread-local: an application thread that
  // searched once keeps no buffers or io_uring queue alive).
  ScratchLease lease(*this);
  SearchScratch& scratch = *lease.scratch;
  std::vector<float>& normalized = scratch.query;
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
    explain->filter = filter_key ? *filter_key : std::string();
    explain->parse_ms = parse_ms;
  }
  SegmentQuery sq{VectorView(query.data(), query.size()), normalized.data(), filter, filter_key, &options,
                  recall_target};
  // The snapshot: no lock from here on, whatever writers and maintenance do.
  const std::shared_ptr<const Snapshot> s = snapshot();
  std::vector<Neighbor> out;
  index::SpannQueryStats io;
  auto run = [&](const Segment& seg) -> Status {
    SegmentExplain ex;
    STRATA_ASSIGN_OR_RETURN(auto part, SearchSegment(seg, sq, scratch, explain ? &ex : nullptr, &io));
    out.insert(out.end(), part.begin(), part.end());
    if (explain) explain->segments.push_back(std::move(ex));
    // The segments after this one need nothing farther than the k-th hit so far: kept
    // sorted and cut to k, its last is that bound.
    std::sort(out.begin(), out.end());
    if (out.size() > options.k) out.resize(options.k);
    // (The next float up: a tie with the k-th, with a smaller id, still wins the merge.)
    if (out.size() == options.k) {
      sq.max_distance = std::nextafter(out.back().distance, std::numeric_limits<float>::infinity());
    }
    return Status::Ok();
  };
  // An in-memory segment that maintenance has not calibrated yet (it does so at
  // kMinCalibrationRows live rows, then each time the segment doubles) is planned with a
  // sealed segment's calibration where one fits, not scanned or searched at a fixed ef.
  auto run_memory = [&](const MemorySegment& mem, uint32_t rows, uint64_t live, const char* name) {
    MemorySegment::View view(mem, rows, s->sequence, live, mem.calibration(), name);
    if (!view.calibration() && live > 0) {
      StandIn stand_in = StandInCalibration(*s, mem, rows, live);
      if (stand_in.calibration) view.WithStandIn(std::move(stand_in.calibration), stand_in.segment, stand_in.rows);
    }
    return run(view);
  };
  STRATA_RETURN_IF_ERROR(run_memory(*s->memory, s->memory_rows, s->memory_live, "memory"));
  if (s->frozen) STRATA_RETURN_IF_ERROR(run_memory(*s->frozen, s->frozen_rows, s->frozen_live, "memory (sealing)"));
  for (const SealedEntry& e : s->sealed) {
    STRATA_RETURN_IF_ERROR(run(SealedSegment::View(*e.segment, e.deletes.get(), e.segment->calibration())));
  }
  if (explain && filter) explain->warnings = FilterWarningsIn(*s, *filter);
  if (io.lists_read) {
    disk_reads_.fetch_add(io.lists_read, std::memory_order_relaxed);
    disk_read_bytes_.fetch_add(io.bytes_read, std::memory_order_relaxed);
  }
  const auto merge_start = std::chrono::steady_clock::now();
  // `out` is the merge already: sorted and cut to k after each segment (run above).
  if (keys) {
    // Keys of the chosen hits, from the same snapshot; records written by id have none.
    keys->assign(out.size(), std::string());
    for (size_t i = 0; i < out.size(); ++i) {
      if (!IsKeyedId(out[i].id)) continue;
      const Location at = LocateId(*s, out[i].id);
      if (at.memory) (*keys)[i] = at.memory->key(at.row);
      if (at.sealed) (*keys)[i] = at.sealed->key(at.row);
    }
  }
  if (attributes) {
    // SearchOptions::with_attributes: the chosen hits' attributes, from the same snapshot.
    attributes->assign(out.size(), Attributes());
    for (size_t i = 0; i < out.size(); ++i) {
      const Location at = LocateId(*s, out[i].id);
      if (at.memory) (*attributes)[i] = at.memory->attributes(at.row);
      if (at.sealed) {
        STRATA_ASSIGN_OR_RETURN((*attributes)[i], at.sealed->ReadAttributes(at.row));
      }
    }
  }
  if (explain) {
    explain->merge_ms = MillisSince(merge_start);
    explain->total_ms = MillisSince(start);
  }
  return out;
}

Collection::StandIn Collection::StandInCalibration(const Snapshot& s, const MemorySegment& mem, uint64_t rows,
                                                   uint64_t live) const {
  if (live == 0 || live > kStandInMaxRows || double(live) < kStandInMinLiveShare * double(rows)) return {};
  const index::HnswOptions& own = mem.graph().options();
  StandIn best;
  for (const SealedEntry& e : s.sealed) {
    const index::HnswOptions* o = e.segment->graph_options();
    if (!o || o->codes != index::CodesKind::kNone || o->M != own.M || o->encoding != own.encoding ||
        o->ef_construction > own.ef_construction || e.segment->rows() < rows || e.segment->rows() <= best.rows) {
      continue;
    }
    std::shared_ptr<const Calibration> c = e.segment->calibration();
    if (c && !c->empty()) best = {std::move(c), e.segment->id(), e.segment->rows()};
  }
  return best;
}

std::vector<std::string> Collection::FilterWarnings(const Filter& filter) const {
  return FilterWarningsIn(*snapshot(), filter);
}

std::vector<std::string> Collection::FilterWarningsIn(const Snapshot& s, const Filter& filter) const {
  auto kinds_of = [&](std::string_view name) {
    uint8_t kinds = MemorySegment::View(*s.memory, s.memory_rows, s.sequence, s.memory_live, nullptr)
                        .AttributeKinds(name);
    if (s.frozen) {
      kinds |= MemorySegment::View(*s.frozen, s.frozen_rows, s.sequence, s.frozen_live, nullptr).AttributeKinds(name);
    }
    for (const SealedEntry& e : s.sealed) kinds |= e.segment->attribute_index().KindsOf(name);
    return kinds;
  };
  return filter.Warnings(kinds_of, spec_.name);
}

Collection::ScratchLease::ScratchLease(const Collection& c) : owner(c) {
  {
    std::lock_guard<std::mutex> g(c.scratch_mu_);
    if (!c.scratch_pool_.empty()) {
      scratch = std::move(c.scratch_pool_.back());
      c.scratch_pool_.pop_back();
    }
  }
  if (!scratch) scratch = std::make_unique<SearchScratch>();
}

Collection::ScratchLease::~ScratchLease() {
  std::lock_guard<std::mutex> g(owner.scratch_mu_);
  // As many as searches ran at once, at most kMaxPooledScratch kept.
  if (owner.scratch_pool_.size() < kMaxPooledScratch) owner.scratch_pool_.push_back(std::move(scratch));
}

CollectionInfo Collection::Info() const {
  const std::shared_ptr<const Snapshot> s = snapshot();
  CollectionInfo info;
  info.spec = spec_;
  info.id = id_;
  info.num_vectors = s->live();
  info.last_sequence = s->sequence;
  info.memory_bytes = s->memory->memory_bytes() + (s->frozen ? s->frozen->memory_bytes() : 0);
  for (const SealedEntry& e : s->sealed) {
    info.memory_bytes += e.segment->memory_bytes() + (e.deletes ? e.deletes->rows.memory_bytes() : 0);
  }
  info.sealed_segments = s->sealed.size();
  return info;
}

uint64_t Collection::wal_bytes() const { return wal_bytes_.load(std::memory_order_relaxed); }
uint64_t Collection::wal_fsyncs() const { return wal_fsyncs_.load(std::memory_order_relaxed); }

void Collection::PublishWalCounters() {
  if (!wal_) return;
  wal_bytes_.store(wal_bytes_before_ + wal_->bytes_written(), std::memory_order_relaxed);
  wal_fsyncs_.store(wal_fsyncs_before_ + wal_->fsyncs(), std::memory_order_relaxed);
}

void Collection::CountCalibration(double seconds) const {
  if (seconds <= 0) return;
  calibrations_.fetch_add(1, std::memory_order_relaxed);
  calibration_ns_.fetch_add(uint64_t(seconds * 1e9), std::memory_order_relaxed);
}

void Collection::CountIndexBuild(double seconds) const {
  index_build_ns_.fetch_add(uint64_t(std::max(0.0, seconds) * 1e9), std::memory_order_relaxed);
}

}  // namespace strata::engine
