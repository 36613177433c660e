#include "engine/engine_impl.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>

#include <omp.h>

#include "engine/filter.h"
#include "storage/file_util.h"
#include "storage/section_file.h"

namespace strata {

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

Result<std::unique_ptr<Engine>> Engine::Open(const fs::path& dir, const EngineOptions& options) {
  if (options.max_batch_ops == 0) return Error(InvalidArgument("max_batch_ops must be at least 1"));
  if (options.max_batch_bytes < 1024 || options.max_batch_bytes > engine::kDefaultMaxWalRecordBytes) {
    return Error(InvalidArgument("max_batch_bytes is {}; it must be in 1024..{}", options.max_batch_bytes,
                                 engine::kDefaultMaxWalRecordBytes));
  }
  if (options.insert_nice > 19) return Error(InvalidArgument("insert_nice is {}; it must be in -1..19", options.insert_nice));
  if (options.maintenance_nice < 0 || options.maintenance_nice > 19) {
    return Error(InvalidArgument("maintenance_nice is {}; it must be in 0..19", options.maintenance_nice));
  }
  if (options.memory_ef_construction > 4096) {
    return Error(InvalidArgument("memory_ef_construction is {}; it must be in 0..4096 (0: the collection's "
                                 "hnsw_ef_construction)",
                                 options.memory_ef_construction));
  }
  if (options.maintenance_interval_ms == 0) {
    return Error(InvalidArgument("maintenance_interval_ms must be at least 1"));
  }
  if (options.durability == Durability::kInterval && options.sync_interval_ms == 0) {
    return Error(InvalidArgument("sync_interval_ms must be at least 1 with interval durability"));
  }
  std::vector<int> background_cpus;
  if (!options.background_cpus.empty()) {
    // Read back through the parser: the same checks (and error text) as a configured list,
    // and the list sorted and without repeats.
    std::vector<int> given = options.background_cpus;
    std::sort(given.begin(), given.end());
    auto cpus = engine::ParseCpuList(engine::FormatCpuList(given));
    if (!cpus) return Error(InvalidArgument("background_cpus: {}", cpus.error().message()));
    background_cpus = std::move(*cpus);
  }
  auto impl = std::make_unique<Impl>();
  impl->dir_ = dir;
  impl->options_ = options;
  impl->options_.background_cpus = background_cpus;
  std::error_code ec;
  fs::create_directories(dir / "collections", ec);
  if (ec) return Error(IOError("{}: cannot create: {}", (dir / "collections").string(), ec.message()));
  // One engine per directory: a second one would take the first one's files in
  // flight (a segment being sealed, a new log) for leftovers and remove them.
  const fs::path lock_path = dir / "LOCK";
  impl->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (impl->lock_fd_ < 0) {
    return Error(IOError("{}: cannot open: {}", lock_path.string(), std::strerror(errno)));
  }
  if (::flock(impl->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return Error(IOError("{}: the data directory is in use by another Strata engine ({})",
                         lock_path.string(), std::strerror(errno)));
  }
  if (options.insert_nice >= 0) {
    impl->insert_thread_ = std::make_unique<engine::InsertThread>(
        engine::BackgroundPriority{
            .nice = options.insert_nice, .idle = options.background_idle, .cpus = background_cpus});
  }
  STRATA_ASSIGN_OR_RETURN(auto catalog, impl->LoadManifest());
  if (fs::exists(impl->ScratchRoot(), ec) && !fs::exists(impl->ScratchRoot() / kScratchMarker, ec)) {
    impl->report_.notes.push_back(fmt::format("{}: not made by the engine (no {}); left alone",
                                              impl->ScratchRoot().string(), kScratchMarker));
  } else if (fs::exists(impl->ScratchRoot(), ec)) {
    // Made by an engine of this directory (MakeScratchDir: its marker) that is gone: nothing
    // in it is anyone's any more.
    fs::remove_all(impl->ScratchRoot(), ec);
    if (ec) {
      return Error(IOError("{}: cannot remove an earlier run's scratch folder: {}", impl->ScratchRoot().string(),
                           ec.message()));
    }
    impl->report_.notes.push_back(fmt::format("{}: an earlier run's scratch files; removed", impl->ScratchRoot().string()));
  }
  const engine::WalOptions wal = WalOptionsFrom(options);
  std::map<uint64_t, bool> known;
  for (const engine::CatalogEntry& e : catalog) {
    if (impl->collections_.count(e.spec.name)) {
      return Error(Corruption("{}: collection '{}' is listed twice", (dir / engine::kCatalogFile).string(),
                              e.spec.name));
    }
    STRATA_ASSIGN_OR_RETURN(auto c, Collection::Open(impl->CollectionDir(e.id), e.id, e.spec, wal,
                                                     impl->report_, options.salvage_wal_tail,
                                                     options.memory_ef_construction));
    impl->Attach(*c);
    impl->collections_.emplace(e.spec.name, std::move(c));
    known[e.id] = true;
  }
  impl->report_.collections = impl->collections_.size();
  // Folders the catalog does not name are collections whose creation or drop was
  // cut short by a crash: nothing in them was ever acknowledged.
  // Only folders named like a collection id are touched; anything else is left alone.
  for (const auto& entry : fs::directory_iterator(dir / "collections", ec)) {
    const std::string name = entry.path().filename().string();
    uint64_t id = 0;
    const auto [end, err] = std::from_chars(name.data(), name.data() + name.size(), id);
    if (err != std::errc() || end != name.data() + name.size() || name.empty()) {
      impl->report_.notes.push_back(fmt::format("{}: not a collection folder; left alone", entry.path().string()));
      continue;
    }
    if (known.count(id)) continue;
    if (catalog.empty() && !fs::exists(dir / engine::kCatalogFile)) {
      return Error(Corruption("{}: missing, but {} holds collection folders",
                              (dir / engine::kCatalogFile).string(), (dir / "collections").string()));
    }
    fs::remove_all(entry.path(), ec);
    impl->report_.notes.push_back(fmt::format("{}: not in the catalog (an unfinished create or drop); removed",
                                              entry.path().string()));
  }
  for (const std::string& n : impl->report_.notes) spdlog::warn("recovery: {}", n);
  {
    // Seals bound the in-memory segment's memory: nice 10, as the inserts (a seal
    // starved by a busy machine would let it grow); compactions can wait: nice 19.
    Impl* raw = impl.get();
    const engine::BackgroundPriority seal{.nice = options.maintenance_nice, .idle = options.background_idle,
                                          .threads = options.maintenance_threads, .cpus = background_cpus};
    const engine::BackgroundPriority compaction{.nice = 19, .idle = options.background_idle,
                                                .cpus = background_cpus};
    impl->maintenance_ = std::thread(
        [raw, seal] { raw->MaintenanceLoop(seal, true, &Collection::MaintainSeals, "seal"); });
    if (options.background_compaction) {
      impl->compaction_ = std::thread(
          [raw, compaction] { raw->MaintenanceLoop(compaction, false, &Collection::MaintainCompaction, "compaction"); });
    }
  }
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Status Engine::CreateCollection(const CollectionSpec& spec) {
  STRATA_RETURN_IF_ERROR(engine::ValidateSpec(spec));
  std::lock_guard<std::mutex> catalog(impl_->catalog_mu_);
  {
    std::shared_lock<std::shared_mutex> s(impl_->mu_);
    if (impl_->collections_.count(spec.name)) return AlreadyExists("collection '{}' already exists", spec.name);
  }
  const uint64_t id = impl_->next_id_++;
  STRATA_ASSIGN_OR_RETURN(auto c, Collection::Create(impl_->CollectionDir(id), id, spec,
                                                     WalOptionsFrom(impl_->options_),
                                                     impl_->options_.memory_ef_construction));
  // Listed durably first, visible after: a failed MANIFEST leaves a folder that the next
  // open removes, and nothing was ever written to it.
  STRATA_RETURN_IF_ERROR(impl_->SaveManifest(c.get()));
  impl_->Attach(*c);
  std::unique_lock<std::shared_mutex> x(impl_->mu_);
  impl_->collections_.emplace(spec.name, std::move(c));
  return Status::Ok();
}

Status Engine::DropCollection(const std::string& name) {
  std::shared_ptr<Collection> c;
  {
    std::lock_guard<std::mutex> catalog(impl_->catalog_mu_);
    {
      std::shared_lock<std::shared_mutex> s(impl_->mu_);
      auto it = impl_->collections_.find(name);
      if (it == impl_->collections_.end()) return NotFound("collection '{}' does not exist", name);
      c = it->second;
    }
    // Unlisted durably first (the collection serves until then), then out of the map.
    STRATA_RETURN_IF_ERROR(impl_->SaveManifest(nullptr, &name));
    {
      std::unique_lock<std::shared_mutex> x(impl_->mu_);
      impl_->collections_.erase(name);
    }
  }
  // Outside the catalog lock: closing waits for the collection's running write,
  // seal or compaction, and other collections need not wait with it.
  (void)c->Close();
  std::error_code ec;
  fs::remove_all(c->dir(), ec);  // a leftover is removed at the next open
  return Status::Ok();
}

std::vector<CollectionInfo> Engine::ListCollections() const {
  std::shared_lock<std::shared_mutex> s(impl_->mu_);
  std::vector<CollectionInfo> out;
  for (const auto& [name, c] : impl_->collections_) out.push_back(c->Info());
  return out;
}

Result<CollectionInfo> Engine::DescribeCollection(const std::string& name) const {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(name));
  return c->Info();
}

Status Engine::Write(const std::string& collection, const WriteBatch& batch, std::vector<VectorId>* ids) {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  const auto start = std::chrono::steady_clock::now();
  STRATA_RETURN_IF_ERROR(c->Write(batch, impl_->options_.max_batch_ops, ids));
  impl_->write_hist_.Record(uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         std::chrono::steady_clock::now() - start).count()));
  impl_->write_batches_.fetch_add(1, std::memory_order_relaxed);
  for (const auto& op : batch.ops()) {
    (op.kind == engine::WriteOp::Kind::kUpsert ? impl_->upserts_ : impl_->deletes_)
        .fetch_add(1, std::memory_order_relaxed);
  }
  return Status::Ok();
}

Status Engine::Upsert(const std::string& collection, VectorId id, std::span<const float> vector,
                      Attributes attributes) {
  WriteBatch b;
  b.Upsert(id, vector, std::move(attributes));
  return Write(collection, b);
}

Status Engine::Delete(const std::string& collection, VectorId id) {
  WriteBatch b;
  b.Delete(id);
  return Write(collection, b);
}

Status Engine::UpsertByKey(const std::string& collection, std::string_view key, std::span<const float> vector,
                           Attributes attributes) {
  WriteBatch b;
  b.UpsertByKey(std::string(key), vector, std::move(attributes));
  return Write(collection, b);
}

Status Engine::DeleteByKey(const std::string& collection, std::string_view key) {
  WriteBatch b;
  b.DeleteByKey(std::string(key));
  return Write(collection, b);
}

Result<Record> Engine::GetByKey(const std::string& collection, std::string_view key) const {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  impl_->gets_.fetch_add(1, std::memory_order_relaxed);
  return c->GetByKey(key);
}

Result<VectorId> Engine::FindKey(const std::string& collection, std::string_view key) const {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  impl_->gets_.fetch_add(1, std::memory_order_relaxed);
  return c->FindKey(key);
}

namespace {

// `attributes` is empty unless the search asked for them (SearchOptions::with_attributes).
std::vector<KeyedNeighbor> WithKeys(const std::vector<Neighbor>& hits, std::vector<std::string>& keys,
                                    std::vector<Attributes>& attributes) {
  std::vector<KeyedNeighbor> out(hits.size());
  for (size_t i = 0; i < hits.size(); ++i) out[i] = {hits[i].id, hits[i].distance, std::move(keys[i])};
  for (size_t i = 0; i < attributes.size() && i < hits.size(); ++i) out[i].attributes = std::move(attributes[i]);
  return out;
}

}  // namespace

Result<std::vector<KeyedNeighbor>> Engine::SearchWithKeys(const std::string& collection, std::span<const float> query,
                                                          const SearchOptions& options, Explain* explain) const {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  impl_->searches_.fetch_add(1, std::memory_order_relaxed);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> keys;
  std::vector<Attributes> attributes;
  auto hits = c->Search(query, options, explain, &keys, options.with_attributes ? &attributes : nullptr);
  impl_->search_hist_.Record(uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now() - start).count()));
  if (!hits) return Error(hits.error());
  return WithKeys(*hits, keys, attributes);
}

Result<KeyPage> Engine::ListKeys(const std::string& collection, uint64_t cursor, size_t count) const {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  return c->ListKeys(cursor, count);
}

Result<KeyPage> Engine::ListIds(const std::string& collection, uint64_t cursor, size_t count) const {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  return c->ListIds(cursor, count);
}

Result<std::vector<std::string>> Engine::RandomKeys(const std::string& collection, size_t count,
                                                    uint64_t seed) const {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  return c->RandomKeys(count, seed);
}

Status Engine::BulkLoadByKey(const std::string& collection, const VectorSet& vectors,
                             std::span<const std::string> keys, std::span<const Attributes> attributes) {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  if (keys.size() != vectors.size()) {
    return InvalidArgument("{} keys given for {} vectors", keys.size(), vectors.size());
  }
  STRATA_RETURN_IF_ERROR(c->BulkLoad(vectors, {}, attributes, keys));
  impl_->upserts_.fetch_add(vectors.size(), std::memory_order_relaxed);
  return Status::Ok();
}

Status Engine::RunAsBackground() const {
  return engine::ApplyToThisThread(engine::BackgroundPriority{
      .nice = 19, .idle = impl_->options_.background_idle, .cpus = impl_->options_.background_cpus});
}

Status Engine::Seal(const std::string& collection) {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  return c->Flush();
}

Status Engine::Flush(const std::string& collection) {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  STRATA_RETURN_IF_ERROR(c->Flush());
  // Rewrites leave replaced rows in older segments; when they are half of what the
  // segments hold, the flush compacts as well, so that what a flush leaves on disk and
  // in memory stays proportional to the live rows (a lighter share waits for background
  // compaction).
  if (c->DeadShare() >= Collection::kFlushCompactDeadShare) {
    STRATA_RETURN_IF_ERROR(c->Compact());
    ReleaseFreedMemory();
  }
  return Status::Ok();
}

Status Engine::BulkLoad(const std::string& collection, const VectorSet& vectors,
                        std::span<const VectorId> ids, std::span<const Attributes> attributes) {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  STRATA_RETURN_IF_ERROR(c->BulkLoad(vectors, ids, attributes));
  impl_->upserts_.fetch_add(vectors.size(), std::memory_order_relaxed);
  return Status::Ok();
}

Status Engine::Compact(const std::string& collection) {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  return c->Compact();
}

Result<std::vector<std::string>> Engine::FilterWarnings(const std::string& collection,
                                                        std::string_view filter) const {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  STRATA_ASSIGN_OR_RETURN(engine::Filter f, engine::Filter::Parse(filter));
  return c->FilterWarnings(f);
}

Result<Record> Engine::Get(const std::string& collection, VectorId id) const {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  impl_->gets_.fetch_add(1, std::memory_order_relaxed);
  return c->Get(id);
}

Result<std::vector<Neighbor>> Engine::Search(const std::string& collection, std::span<const float> query,
                                             const SearchOptions& options, Explain* explain) const {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  impl_->searches_.fetch_add(1, std::memory_order_relaxed);
  const auto start = std::chrono::steady_clock::now();
  auto out = c->Search(query, options, explain);
  impl_->search_hist_.Record(uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now() - start).count()));
  return out;
}

Result<std::vector<std::vector<Neighbor>>> Engine::SearchBatch(const std::string& collection,
                                                               const VectorSet& queries,
                                                               const SearchOptions& options,
                                                               size_t threads) const {
  const std::span<const float> rows(queries.size() ? queries.row(0) : nullptr, queries.size() * queries.dim());
  return SearchBatch(collection, rows, queries.dim(), options, threads);
}

namespace {

// One search per row of `queries`, spread over `threads` threads; `search(row, i)`
// searches one row into out[i]. The filter is parsed once for the whole batch.
template <typename Hit, typename SearchRow>
Result<std::vector<std::vector<Hit>>> RunBatch(const Collection& c, std::span<const float> queries, size_t dim,
                                               const SearchOptions& options, size_t threads,
                                               LatencyHistogram& hist, const SearchRow& search) {
  if (dim != c.spec().dim) {
    return Error(InvalidArgument("queries have dimension {}, collection '{}' has {}", dim, c.spec().name,
                                 c.spec().dim));
  }
  if (queries.size() % dim != 0) {
    return Error(InvalidArgument("{} floats are not whole queries of dimension {}", queries.size(), dim));
  }
  SearchOptions o = options;
  std::optional<PreparedFilter> prepared;
  if (!o.filter.empty()) {
    if (o.prepared_filter) return Error(InvalidArgument("both a filter expression and a prepared filter were given"));
    STRATA_ASSIGN_OR_RETURN(PreparedFilter p, Engine::PrepareFilter(o.filter));
    prepared = std::move(p);
    o.filter.clear();
    o.prepared_filter = &*prepared;
  }
  const size_t n = queries.size() / dim;
  std::vector<std::vector<Hit>> out(n);
  std::vector<Status> errors(n);
  const int nthreads = threads ? int(threads) : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 8) num_threads(nthreads)
  for (size_t i = 0; i < n; ++i) {
    const auto start = std::chrono::steady_clock::now();
    errors[i] = search(queries.subspan(i * dim, dim), o, out[i]);
    hist.Record(uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::steady_clock::now() - start).count()));
  }
  for (size_t i = 0; i < n; ++i) {
    if (!errors[i].ok()) return Error(errors[i].WithContext(fmt::format("query {}", i)));
  }
  return out;
}

}  // namespace

Result<std::vector<std::vector<Neighbor>>> Engine::SearchBatch(const std::string& collection,
                                                               std::span<const float> queries, size_t dim,
                                                               const SearchOptions& options,
                                                               size_t threads) const {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  auto out = RunBatch<Neighbor>(*c, queries, dim, options, threads, impl_->search_hist_,
                                [&](std::span<const float> q, const SearchOptions& o, std::vector<Neighbor>& hits) {
                                  auto r = c->Search(q, o);
                                  if (!r) return r.error();
                                  hits = std::move(*r);
                                  return Status::Ok();
                                });
  if (out) impl_->searches_.fetch_add(out->size(), std::memory_order_relaxed);
  return out;
}

Result<std::vector<std::vector<KeyedNeighbor>>> Engine::SearchBatchWithKeys(const std::string& collection,
                                                                            std::span<const float> queries,
                                                                            size_t dim, const SearchOptions& options,
                                                                            size_t threads) const {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  auto out = RunBatch<KeyedNeighbor>(
      *c, queries, dim, options, threads, impl_->search_hist_,
      [&](std::span<const float> q, const SearchOptions& o, std::vector<KeyedNeighbor>& hits) {
        std::vector<std::string> keys;
        std::vector<Attributes> attributes;
        auto r = c->Search(q, o, nullptr, &keys, o.with_attributes ? &attributes : nullptr);
        if (!r) return r.error();
        hits = WithKeys(*r, keys, attributes);
        return Status::Ok();
      });
  if (out) impl_->searches_.fetch_add(out->size(), std::memory_order_relaxed);
  return out;
}

Result<PreparedFilter> Engine::PrepareFilter(std::string_view expression) {
  STRATA_ASSIGN_OR_RETURN(engine::Filter f, engine::Filter::Parse(expression));
  PreparedFilter p;
  p.text_ = f.ToString();
  p.filter_ = std::make_shared<const engine::Filter>(std::move(f));
  return p;
}

const RecoveryReport& Engine::recovery() const { return impl_->report_; }
const fs::path& Engine::dir() const { return impl_->dir_; }

EngineCounters Engine::counters() const {
  EngineCounters c;
  c.write_batches = impl_->write_batches_.load();
  c.upserts = impl_->upserts_.load();
  c.deletes = impl_->deletes_.load();
  c.searches = impl_->searches_.load();
  c.gets = impl_->gets_.load();
  std::shared_lock<std::shared_mutex> s(impl_->mu_);
  for (const auto& [name, col] : impl_->collections_) {
    c.wal_bytes += col->wal_bytes();
    c.wal_fsyncs += col->wal_fsyncs();
    c.disk_reads += col->disk_reads();
    c.disk_read_bytes += col->disk_read_bytes();
    c.calibrations += col->calibrations();
    c.calibration_seconds += col->calibration_seconds();
    c.index_build_seconds += col->index_build_seconds();
    const CollectionInfo info = col->Info();
    c.vectors += info.num_vectors;
    c.memory_bytes += info.memory_bytes;
  }
  c.search_latency = impl_->search_hist_.Snapshot();
  c.write_latency = impl_->write_hist_.Snapshot();
  return c;
}

}  // namespace strata
