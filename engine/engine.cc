#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <fcntl.h>
#include <cstdio>
#include <sys/file.h>
#include <sys/resource.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <unistd.h>

#include <cctype>
#include <condition_variable>
#include <thread>
#include <charconv>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <map>
#include <mutex>
#include <shared_mutex>

#include <nlohmann/json.hpp>
#include <omp.h>

#include "engine/collection.h"
#include "engine/filter.h"
#include "engine/background_priority.h"
#include "engine/insert_thread.h"
#include <optional>
#include "engine/strata.h"
#include "storage/file_util.h"
#include "storage/section_file.h"

namespace strata {
namespace fs = std::filesystem;
using engine::Collection;

namespace {

// A compaction frees the segments it replaced (often most of a rewritten collection's
// memory); glibc keeps freed memory in its arenas unless asked, so the process would
// stay at its peak. Return what it can to the system (no-op elsewhere).
void ReleaseFreedMemory() {
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

constexpr char kManifestMagic[] = "STRMANI";
constexpr uint16_t kManifestMajor = 1;
// Minor 1: a collection may carry "codes" and "rerank" (absent: none and 0, as in 1.0).
constexpr uint16_t kManifestMinor = 1;
constexpr uint32_t kTagCatalog = storage::SectionTag("CATL");
constexpr char kManifestFile[] = "MANIFEST";
// Folders of the engine's own for callers' temporary files (Engine::MakeScratchDir); removed
// whole when the engine opens.
constexpr char kScratchDir[] = "scratch";
// Written in it when the engine makes it: a "scratch" folder without it is someone else's, and
// is never removed.
constexpr char kScratchMarker[] = ".strata-scratch";

Status ValidateSpec(const CollectionSpec& s) {
  if (s.name.empty() || s.name.size() > 64) {
    return InvalidArgument("collection name '{}' must have 1 to 64 characters", s.name);
  }
  for (char c : s.name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') {
      return InvalidArgument("collection name '{}' may only hold letters, digits, '_' and '-'", s.name);
    }
  }
  if (s.dim == 0 || s.dim > 65536) return InvalidArgument("dimension {} must be in 1..65536", s.dim);
  if (s.metric != Metric::kL2 && s.metric != Metric::kInnerProduct && s.metric != Metric::kCosine) {
    return InvalidArgument("unknown metric");
  }
  if (s.hnsw_M < 2 || s.hnsw_M > 256) return InvalidArgument("hnsw_M {} must be in 2..256", s.hnsw_M);
  if (s.hnsw_ef_construction < 1) return InvalidArgument("hnsw_ef_construction must be at least 1");
  if (s.seal_threshold < 1) return InvalidArgument("seal_threshold must be at least 1");
  if (s.codes != VectorCodes::kNone && s.codes != VectorCodes::kSq8) {
    return InvalidArgument("unknown codes value {} (0 none, 1 sq8)", int(s.codes));
  }
  if (s.codes == VectorCodes::kNone && s.rerank != 0) {
    return InvalidArgument("rerank {} needs codes (it is the depth of their rerank)", s.rerank);
  }
  if (s.rerank > kMaxSearchEf) return InvalidArgument("rerank {} must be at most {}", s.rerank, kMaxSearchEf);
  return Status::Ok();
}

engine::WalOptions WalOptionsFrom(const EngineOptions& o) {
  engine::WalOptions w;
  w.durability = o.durability;
  w.interval_ms = o.sync_interval_ms;
  w.max_record_bytes = uint32_t(o.max_batch_bytes);
  return w;
}

struct CatalogEntry {
  uint64_t id;
  CollectionSpec spec;
};

// Writes the catalog `dir`/MANIFEST (atomically: see SectionFileWriter).
Status WriteCatalog(const fs::path& dir, uint64_t next_id, const std::vector<CatalogEntry>& entries) {
  nlohmann::json j;
  j["next_collection_id"] = next_id;
  j["collections"] = nlohmann::json::array();
  for (const CatalogEntry& e : entries) {
    const CollectionSpec& spec = e.spec;
    nlohmann::json c = {{"id", e.id},
                        {"name", spec.name},
                        {"dim", spec.dim},
                        {"metric", std::string(MetricName(spec.metric))},
                        {"hnsw_M", spec.hnsw_M},
                        {"hnsw_ef_construction", spec.hnsw_ef_construction},
                        {"seal_threshold", spec.seal_threshold},
                        {"memory_budget_bytes", spec.memory_budget_bytes}};
    if (spec.codes != VectorCodes::kNone) {
      c["codes"] = std::string(VectorCodesName(spec.codes));
      c["rerank"] = spec.rerank;
    }
    j["collections"].push_back(std::move(c));
  }
  const std::string text = j.dump(1);
  STRATA_ASSIGN_OR_RETURN(auto w, storage::SectionFileWriter::Create(dir / kManifestFile, kManifestMagic,
                                                                       kManifestMajor, kManifestMinor));
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagCatalog, std::as_bytes(std::span(text.data(), text.size()))));
  return w.Commit();
}

}  // namespace

class Engine::Impl {
 public:
  fs::path dir_;
  EngineOptions options_;
  RecoveryReport report_;
  // The catalog. Lookups take mu_ shared; create and drop take catalog_mu_ (one at a time)
  // for their whole course -- folders, fsyncs, the MANIFEST -- and mu_ exclusively only to
  // change the map, so that no lookup (a search on a server's I/O thread) waits for a disk.
  // Order: catalog_mu_, then mu_.
  mutable std::shared_mutex mu_;
  std::mutex catalog_mu_;
  std::map<std::string, std::shared_ptr<Collection>> collections_;  // guarded by mu_
  uint64_t next_id_ = 1;  // guarded by catalog_mu_ (after Open)
  mutable std::atomic<uint64_t> write_batches_{0}, upserts_{0}, deletes_{0}, searches_{0}, gets_{0};
  mutable LatencyHistogram search_hist_, write_hist_;
  int lock_fd_ = -1;  // holds the data directory's LOCK (flock) while open
  // Background maintenance: seals and calibrations on one thread, compactions on
  // another, so that a long compaction never holds up a seal.
  std::thread maintenance_, compaction_;
  std::mutex maintenance_mu_;
  std::condition_variable maintenance_cv_;
  bool stop_ = false;
  bool wake_ = false;  // guarded by maintenance_mu_: a collection asked for a seal now

  // Runs `job` on every collection each maintenance_interval_ms (and, with `wakeable`,
  // when a writer asks), at CPU priority `nice` (its OpenMP team threads inherit it):
  // searches and writes of the application come first.
  void MaintenanceLoop(engine::BackgroundPriority priority, bool wakeable, Status (Collection::*job)(),
                       const char* what) {
    if (Status s = engine::ApplyToThisThread(priority); !s.ok()) spdlog::warn("background {}: {}", what, s.ToString());
    std::unique_lock<std::mutex> lk(maintenance_mu_);
    while (!stop_) {
      maintenance_cv_.wait_for(lk, std::chrono::milliseconds(std::max<uint32_t>(1, options_.maintenance_interval_ms)),
                               [&] { return stop_ || (wakeable && wake_); });
      if (stop_) break;
      if (wakeable) wake_ = false;
      lk.unlock();
      std::vector<std::shared_ptr<Collection>> all;
      {
        std::shared_lock<std::shared_mutex> s(mu_);
        for (const auto& [name, c] : collections_) all.push_back(c);
      }
      for (const auto& c : all) {
        {
          std::lock_guard<std::mutex> g(maintenance_mu_);
          if (stop_) break;
        }
        const bool compacts = !wakeable && c->WantsCompaction();
        if (Status s = ((*c).*job)(); !s.ok() && s.code() != StatusCode::kCancelled) {
          spdlog::warn("background {} of '{}': {}", what, c->spec().name, s.ToString());
        }
        if (compacts) ReleaseFreedMemory();
      }
      lk.lock();
    }
  }

  void WakeMaintenance() {
    {
      std::lock_guard<std::mutex> g(maintenance_mu_);
      wake_ = true;
    }
    maintenance_cv_.notify_all();
  }

  // Lets the collection's writers start a seal at once, and run their graph inserts
  // on the insert thread.
  void Attach(Collection& c) {
    c.SetMaintenanceWakeup([this] { WakeMaintenance(); });
    c.SetInsertThread(insert_thread_.get(), options_.insert_threads);
    c.SetProgress(options_.progress);
  }
  std::unique_ptr<engine::InsertThread> insert_thread_;  // null: inserts run in the writers' threads

  ~Impl() {
    {
      std::lock_guard<std::mutex> g(maintenance_mu_);
      stop_ = true;
    }
    maintenance_cv_.notify_all();
    if (maintenance_.joinable()) maintenance_.join();  // a seal in progress finishes first
    if (compaction_.joinable()) compaction_.join();    // and a compaction
    collections_.clear();  // close every log before letting go of the directory
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  fs::path CollectionDir(uint64_t id) const { return dir_ / "collections" / std::to_string(id); }
  fs::path ScratchRoot() const { return dir_ / kScratchDir; }

  // Writes the catalog as it is in collections_ (caller holds mu_ exclusively).
  // The MANIFEST for the current catalog, with `added` listed and `removed` left out (the
  // caller changes the map after it is durable). Holds catalog_mu_ (or is Open, alone);
  // takes mu_ shared only to copy the entries: the fsyncs run without it.
  Status SaveManifest(const Collection* added = nullptr, const std::string* removed = nullptr) const {
    std::vector<CatalogEntry> entries;
    {
      std::shared_lock<std::shared_mutex> s(mu_);
      // Specs are immutable: no wait on the collections' locks.
      for (const auto& [name, c] : collections_) {
        if (removed == nullptr || name != *removed) entries.push_back({c->id(), c->spec()});
      }
    }
    if (added != nullptr) entries.push_back({added->id(), added->spec()});
    return WriteCatalog(dir_, next_id_, entries);
  }

  // Reads the catalog. A missing MANIFEST in an otherwise empty directory is a new database.
  Result<std::vector<CatalogEntry>> LoadManifest() { return ReadCatalog(dir_, next_id_); }

  // The catalog of data directory `dir` (its next collection id in `next_id`); empty when it
  // has no MANIFEST.
  static Result<std::vector<CatalogEntry>> ReadCatalog(const fs::path& dir, uint64_t& next_id_) {
    const fs::path path = dir / kManifestFile;
    std::error_code ec;
    if (!fs::exists(path, ec)) return std::vector<CatalogEntry>{};
    STRATA_ASSIGN_OR_RETURN(storage::SectionFile sf,
                            storage::SectionFile::Open(path, kManifestMagic, kManifestMajor));
    STRATA_ASSIGN_OR_RETURN(auto bytes, sf.Section(kTagCatalog));
    const std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    std::vector<CatalogEntry> out;
    try {
      const nlohmann::json j = nlohmann::json::parse(text);
      next_id_ = j.at("next_collection_id").get<uint64_t>();
      for (const auto& c : j.at("collections")) {
        CatalogEntry e;
        e.id = c.at("id").get<uint64_t>();
        e.spec.name = c.at("name").get<std::string>();
        e.spec.dim = c.at("dim").get<size_t>();
        auto metric = ParseMetric(c.at("metric").get<std::string>());
        if (!metric) return Error(Corruption("{}: collection '{}': {}", path.string(), e.spec.name,
                                             metric.error().message()));
        e.spec.metric = *metric;
        e.spec.hnsw_M = c.at("hnsw_M").get<uint32_t>();
        e.spec.hnsw_ef_construction = c.at("hnsw_ef_construction").get<uint32_t>();
        // Added after the first manifests were written: absent means the default.
        e.spec.seal_threshold = c.value("seal_threshold", CollectionSpec{}.seal_threshold);
        e.spec.memory_budget_bytes = c.value("memory_budget_bytes", CollectionSpec{}.memory_budget_bytes);
        if (c.contains("codes")) {  // 1.1
          auto codes = ParseVectorCodes(c.at("codes").get<std::string>());
          if (!codes) return Error(Corruption("{}: collection '{}': {}", path.string(), e.spec.name,
                                              codes.error().message()));
          e.spec.codes = *codes;
          e.spec.rerank = c.value("rerank", uint32_t{0});
        }
        if (Status s = ValidateSpec(e.spec); !s.ok()) {
          return Error(Corruption("{}: collection entry is invalid: {}", path.string(), s.message()));
        }
        if (e.id >= next_id_) {
          return Error(Corruption("{}: collection id {} is not below next_collection_id {}",
                                  path.string(), e.id, next_id_));
        }
        out.push_back(std::move(e));
      }
    } catch (const nlohmann::json::exception& e) {
      return Error(Corruption("{}: catalog is not the expected JSON: {}", path.string(), e.what()));
    }
    return out;
  }

  Result<std::shared_ptr<Collection>> Find(const std::string& name) const {
    std::shared_lock<std::shared_mutex> s(mu_);
    auto it = collections_.find(name);
    if (it == collections_.end()) return Error(NotFound("collection '{}' does not exist", name));
    return it->second;
  }
};

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
  for (const CatalogEntry& e : catalog) {
    if (impl->collections_.count(e.spec.name)) {
      return Error(Corruption("{}: collection '{}' is listed twice", (dir / kManifestFile).string(),
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
    if (catalog.empty() && !fs::exists(dir / kManifestFile)) {
      return Error(Corruption("{}: missing, but {} holds collection folders",
                              (dir / kManifestFile).string(), (dir / "collections").string()));
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
  STRATA_RETURN_IF_ERROR(ValidateSpec(spec));
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

Result<SnapshotReport> Engine::Snapshot(const std::string& collection, const fs::path& dest) {
  STRATA_ASSIGN_OR_RETURN(auto c, impl_->Find(collection));
  if (dest.empty()) return Error(InvalidArgument("snapshot of '{}': the destination is empty", collection));
  const fs::path target = fs::absolute(dest).lexically_normal();
  std::error_code ec;
  if (fs::exists(fs::symlink_status(target, ec))) {
    return Error(AlreadyExists("snapshot of '{}': {} exists; a snapshot never overwrites anything",
                               collection, target.string()));
  }
  const fs::path parent = target.parent_path();
  if (!fs::is_directory(parent, ec)) {
    return Error(NotFound("snapshot of '{}': {} is not a directory", collection, parent.string()));
  }
  const fs::path data = fs::weakly_canonical(impl_->dir_, ec);
  const fs::path scratch = fs::weakly_canonical(impl_->ScratchRoot(), ec);
  const std::string where = fs::weakly_canonical(target, ec).string() + "/";
  if (!ec && where.starts_with(data.string() + "/") && !where.starts_with(scratch.string() + "/")) {
    return Error(InvalidArgument("snapshot of '{}': {} is inside the engine's data directory {}", collection,
                                 target.string(), data.string()));
  }
  // Built in a folder of our own next to `dest`, renamed into place when whole.
  std::string tmpl = (parent / ("." + target.filename().string() + ".partial-XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return Error(IOError("snapshot of '{}': cannot create a folder in {}: {}", collection, parent.string(),
                         std::strerror(errno)));
  }
  const fs::path tmp = tmpl;
  auto built = [&]() -> Result<SnapshotReport> {
    // The collection keeps its catalog id, so that its folder name and any log of
    // a dropped collection with another id can never be confused.
    const fs::path cdir = tmp / "collections" / std::to_string(c->id());
    fs::create_directories(cdir.parent_path(), ec);
    if (ec) return Error(IOError("{}: cannot create: {}", cdir.parent_path().string(), ec.message()));
    STRATA_ASSIGN_OR_RETURN(SnapshotReport report, c->SnapshotTo(cdir));
    STRATA_RETURN_IF_ERROR(WriteCatalog(tmp, c->id() + 1, {{c->id(), c->spec()}}));
    STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(cdir));
    STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(cdir.parent_path()));
    return report;
  }();
  if (built && ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) != 0) {
    built = Error(errno == EEXIST ? AlreadyExists("snapshot of '{}': {} appeared meanwhile; left alone",
                                                  collection, target.string())
                                  : IOError("snapshot of '{}': cannot rename {} to {}: {}", collection,
                                            tmp.string(), target.string(), std::strerror(errno)));
  }
  if (!built) {
    fs::remove_all(tmp, ec);  // made by mkdtemp above: ours alone
    return built;
  }
  STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(target));
  spdlog::info("collection '{}': snapshot to {} at batch {} ({} segments, {} files linked, {} copied, {} bytes)",
               collection, target.string(), built->sequence, built->segments, built->files_linked,
               built->files_copied, built->bytes_copied);
  return built;
}

Result<fs::path> Engine::MakeScratchDir(std::string_view purpose) {
  for (char c : purpose) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
      return Error(InvalidArgument("scratch folder purpose '{}' may only hold letters, digits, '-' and '_'", purpose));
    }
  }
  std::error_code ec;
  const fs::path marker = impl_->ScratchRoot() / kScratchMarker;
  if (fs::exists(impl_->ScratchRoot(), ec) && !fs::exists(marker, ec)) {
    return Error(AlreadyExists("{} exists and was not made by the engine (no {}): left alone; move it away",
                               impl_->ScratchRoot().string(), kScratchMarker));
  }
  if (!fs::exists(marker, ec)) {
    // The marker first, then anything in the folder: the next open removes only a folder with it.
    fs::create_directories(impl_->ScratchRoot(), ec);
    if (ec) return Error(IOError("{}: cannot create: {}", impl_->ScratchRoot().string(), ec.message()));
    STRATA_RETURN_IF_ERROR(storage::AtomicWriteFile(marker, {}));
  }
  std::string tmpl = (impl_->ScratchRoot() / (std::string(purpose.empty() ? "tmp" : purpose) + "-XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return Error(IOError("cannot create a folder in {}: {}", impl_->ScratchRoot().string(), std::strerror(errno)));
  }
  return fs::path(tmpl);
}

Result<uint64_t> Engine::ReplaceCollection(const std::string& name, const fs::path& snapshot,
                                           const std::function<Status()>& before_swap) {
  uint64_t next = 0;
  STRATA_ASSIGN_OR_RETURN(auto catalog, Impl::ReadCatalog(snapshot, next));
  if (catalog.size() != 1) {
    return Error(InvalidArgument("replacing '{}': {} holds {} collections, not one (is it a snapshot?)", name,
                                 snapshot.string(), catalog.size()));
  }
  CollectionSpec spec = catalog[0].spec;
  spec.name = name;
  STRATA_RETURN_IF_ERROR(ValidateSpec(spec));
  const fs::path from = snapshot / "collections" / std::to_string(catalog[0].id);
  std::error_code ec;
  if (!fs::is_directory(from, ec)) {
    return Error(NotFound("replacing '{}': {} is missing from the snapshot", name, from.string()));
  }
  std::shared_ptr<Collection> old;
  {
    std::lock_guard<std::mutex> catalog_lock(impl_->catalog_mu_);
    {
      std::shared_lock<std::shared_mutex> s(impl_->mu_);
      if (auto it = impl_->collections_.find(name); it != impl_->collections_.end()) old = it->second;
    }
    // Held from here to the swap: a drop of `name` meanwhile waits (and then drops the copy).
    if (!old) return Error(NotFound("collection '{}' does not exist (nothing to replace)", name));
    if (old->spec().dim != spec.dim || old->spec().metric != spec.metric) {
      return Error(InvalidArgument("replacing '{}' (dimension {}, {}) with a collection of dimension {}, {}", name,
                                   old->spec().dim, MetricName(old->spec().metric), spec.dim,
                                   MetricName(spec.metric)));
    }
    const uint64_t id = impl_->next_id_++;
    const fs::path into = impl_->CollectionDir(id);
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, into.c_str(), RENAME_NOREPLACE) != 0) {
      return Error(IOError("replacing '{}': cannot move {} to {} (the snapshot must be on the data "
                           "directory's file system: Engine::MakeScratchDir): {}",
                           name, from.string(), into.string(), std::strerror(errno)));
    }
    STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(into));
    STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(from));
    RecoveryReport report;
    auto opened = Collection::Open(into, id, spec, WalOptionsFrom(impl_->options_), report, false,
                                   impl_->options_.memory_ef_construction);
    // Listed durably first (the old collection serves until then), then swapped in the map.
    Status ready = !opened ? opened.error() : before_swap ? before_swap() : Status::Ok();
    if (!ready.ok()) {
      // Not in the catalog: the folder is the next open's leftover anyway; removed now.
      if (opened) (void)(*opened)->Close();
      fs::remove_all(into, ec);
      return Error(ready.WithContext(fmt::format("replacing '{}'", name)));
    }
    if (Status listed = impl_->SaveManifest(opened->get(), &name); !listed.ok()) {
      // The MANIFEST may name the copy now (a failed fsync after its rename): the old
      // collection is listed again, durably, before the copy's folder goes. If that fails too,
      // both folders stay (the next open keeps the one the MANIFEST names) and the old one
      // serves meanwhile.
      (void)(*opened)->Close();
      if (impl_->SaveManifest().ok()) fs::remove_all(into, ec);
      return Error(listed.WithContext(fmt::format("replacing '{}'", name)));
    }
    std::shared_ptr<Collection> c = std::move(*opened);
    impl_->Attach(*c);
    std::unique_lock<std::shared_mutex> x(impl_->mu_);
    impl_->collections_[name] = std::move(c);
  }
  uint64_t rows = 0;
  if (auto info = DescribeCollection(name); info) rows = info->num_vectors;
  // As DropCollection: outside the catalog lock, then its folder goes.
  (void)old->Close();
  fs::remove_all(old->dir(), ec);
  spdlog::info("collection '{}': replaced by the copy in {} ({} vectors)", name, snapshot.string(), rows);
  return rows;
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
