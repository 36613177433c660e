// Collection::SnapshotTo: a consistent copy of a collection's files while writes go on
// (Engine::Snapshot has the contract; docs/formats/engine.md, "Snapshots").
#include <system_error>

#include "engine/collection.h"
#include "storage/file_util.h"

namespace strata::engine {
namespace fs = std::filesystem;

namespace {

// A hard link of an immutable file, or a copy when the two paths are on different file systems.
Status LinkOrCopy(const fs::path& from, const fs::path& to, SnapshotReport& report) {
  std::error_code ec;
  fs::create_hard_link(from, to, ec);
  if (!ec) {
    ++report.files_linked;
    return Status::Ok();
  }
  if (ec != std::errc::cross_device_link && ec != std::errc::operation_not_permitted) {
    return IOError("{}: cannot link to {}: {}", from.string(), to.string(), ec.message());
  }
  ++report.files_copied;
  return storage::CopyFileSynced(from, to, storage::kWholeFile, report.bytes_copied);
}

// Links every file under the segment folder `from` into `to` (made here), recursively,
// except deletes files other than `keep_deletes` and temporary files.
Status LinkSegment(const fs::path& from, const fs::path& to, const fs::path& keep_deletes, SnapshotReport& report) {
  std::error_code ec;
  fs::create_directory(to, ec);
  if (ec) return IOError("{}: cannot create: {}", to.string(), ec.message());
  for (const auto& f : fs::directory_iterator(from, ec)) {
    const std::string name = f.path().filename().string();
    if (name.ends_with(".tmp")) continue;
    if (name.starts_with("deletes-") && f.path() != keep_deletes) continue;
    if (f.is_directory()) {
      STRATA_RETURN_IF_ERROR(LinkSegment(f.path(), to / name, keep_deletes, report));
    } else {
      STRATA_RETURN_IF_ERROR(LinkOrCopy(f.path(), to / name, report));
    }
  }
  if (ec) return IOError("{}: cannot list: {}", from.string(), ec.message());
  return storage::SyncParentDirectory(to / ".");  // the folder itself
}

}  // namespace

Result<SnapshotReport> Collection::SnapshotTo(const fs::path& dest) {
  SnapshotReport report;
  // manifest_mu_ keeps the manifest on disk, the segment folders and deletes files it
  // names, and the log files it needs, as they are: seals and compactions commit (and
  // remove what they replaced) under it. Searches take no lock; writes wait only for
  // the moment below.
  std::lock_guard<std::mutex> mm(manifest_mu_);
  std::vector<std::pair<fs::path, uint64_t>> logs;  // log files to copy, and their length (kWholeFile: whole)
  {
    std::lock_guard<std::mutex> g(write_mu_);
    if (!poisoned_.ok()) return Error(poisoned_);
    // Every acknowledged batch so far is whole and durable in the current log.
    STRATA_RETURN_IF_ERROR(wal_->Sync());
    report.sequence = last_sequence_.load();
    const std::string first = WalPath(dir_, wal_first_).filename().string();
    std::error_code ec;
    for (const auto& f : fs::directory_iterator(dir_ / "wal", ec)) {
      if (f.path().filename().string() < first) continue;  // covered by the segments (being removed)
      logs.emplace_back(f.path(), f.path() == wal_->path() ? wal_->bytes_written() : storage::kWholeFile);
    }
    if (ec) return Error(IOError("{}: cannot list: {}", (dir_ / "wal").string(), ec.message()));
  }
  std::error_code ec;
  fs::create_directories(dest / "wal", ec);
  if (ec) return Error(IOError("{}: cannot create: {}", (dest / "wal").string(), ec.message()));
  // Logs after the current one cannot exist: a freeze needs write_mu_ and, to remove
  // the frozen log, manifest_mu_. A frozen log is closed (synced) and copied whole.
  for (const auto& [path, bytes] : logs) {
    STRATA_RETURN_IF_ERROR(storage::CopyFileSynced(path, dest / "wal" / path.filename(), bytes, report.bytes_copied));
    ++report.files_copied;
  }
  STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(dest / "wal" / "."));
  if (CollectionManifest::Exists(dir_)) {
    STRATA_ASSIGN_OR_RETURN(CollectionManifest man, CollectionManifest::Load(dir_));
    for (const auto& [sid, gen] : man.segments) {
      const fs::path from = SegmentDir(dir_, sid);
      STRATA_RETURN_IF_ERROR(LinkSegment(from, SegmentDir(dest, sid),
                                         gen ? SealedSegment::DeletesPath(from, gen) : fs::path(), report));
      ++report.segments;
    }
    STRATA_RETURN_IF_ERROR(man.Save(dest));
  }
  STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(dest / "."));
  return report;
}

}  // namespace strata::engine
