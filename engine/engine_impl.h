#pragma once
// Engine::Impl: the state behind the public Engine (engine/strata.h) -- the catalog map and
// its locks, the data directory's LOCK, the maintenance and compaction threads, the insert
// thread -- shared by engine.cc (open, collections, reads and writes) and engine_snapshot.cc
// (snapshots, scratch folders, replacing a collection). Internal to the engine library.
//
// Thread safety: as Engine's (the locks below say what guards what).

#include <sys/resource.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "engine/background_priority.h"
#include "engine/catalog.h"
#include "engine/collection.h"
#include "engine/insert_thread.h"
#include "engine/strata.h"

namespace strata {
namespace fs = std::filesystem;

namespace engine {


// A compaction frees the segments it replaced (often most of a rewritten collection's
// memory); glibc keeps freed memory in its arenas unless asked, so the process would
// stay at its peak. Return what it can to the system (no-op elsewhere).
inline void ReleaseFreedMemory() {
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

// Folders of the engine's own for callers' temporary files (Engine::MakeScratchDir); removed
// whole when the engine opens.
inline constexpr char kScratchDir[] = "scratch";
// Written in it when the engine makes it: a "scratch" folder without it is someone else's, and
// is never removed.
inline constexpr char kScratchMarker[] = ".strata-scratch";

inline WalOptions WalOptionsFrom(const EngineOptions& o) {
  WalOptions w;
  w.durability = o.durability;
  w.interval_ms = o.sync_interval_ms;
  w.max_record_bytes = uint32_t(o.max_batch_bytes);
  return w;
}

}  // namespace engine

using engine::Collection;
using engine::kScratchDir;
using engine::kScratchMarker;
using engine::ReleaseFreedMemory;
using engine::WalOptionsFrom;

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
    std::vector<engine::CatalogEntry> entries;
    {
      std::shared_lock<std::shared_mutex> s(mu_);
      // Specs are immutable: no wait on the collections' locks.
      for (const auto& [name, c] : collections_) {
        if (removed == nullptr || name != *removed) entries.push_back({c->id(), c->spec()});
      }
    }
    if (added != nullptr) entries.push_back({added->id(), added->spec()});
    return engine::WriteCatalog(dir_, next_id_, entries);
  }

  // Reads the catalog. A missing MANIFEST in an otherwise empty directory is a new database.
  Result<std::vector<engine::CatalogEntry>> LoadManifest() { return engine::ReadCatalog(dir_, next_id_); }

  Result<std::shared_ptr<Collection>> Find(const std::string& name) const {
    std::shared_lock<std::shared_mutex> s(mu_);
    auto it = collections_.find(name);
    if (it == collections_.end()) return Error(NotFound("collection '{}' does not exist", name));
    return it->second;
  }
};

}  // namespace strata
