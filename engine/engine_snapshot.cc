// Engine's snapshots and replacements of whole collections: Snapshot (a collection's files
// copied or linked into a folder of its own, restorable as a data directory), MakeScratchDir
// (the engine's folders for callers' temporary files) and ReplaceCollection (a snapshot put in
// a collection's place, durably). Thread safety: as Engine's.
#include "engine/engine_impl.h"

#include <fcntl.h>

#include <cctype>
#include <cstdlib>
#include <cstring>

#include <fmt/core.h>

#include "storage/file_util.h"

namespace strata {

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
  std::string tmpl = (parent / fmt::format(".{}.partial-XXXXXX", target.filename().string())).string();
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
    STRATA_RETURN_IF_ERROR(engine::WriteCatalog(tmp, c->id() + 1, {{c->id(), c->spec()}}));
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
  STRATA_ASSIGN_OR_RETURN(auto catalog, engine::ReadCatalog(snapshot, next));
  if (catalog.size() != 1) {
    return Error(InvalidArgument("replacing '{}': {} holds {} collections, not one (is it a snapshot?)", name,
                                 snapshot.string(), catalog.size()));
  }
  CollectionSpec spec = catalog[0].spec;
  spec.name = name;
  STRATA_RETURN_IF_ERROR(engine::ValidateSpec(spec));
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

}  // namespace strata
