// RestoreSnapshot: tools/restore.h has the rules.
#include "tools/restore.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/core.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>

#include "storage/file_util.h"
#include "tools/scratch_dir.h"

namespace strata::tools {
namespace fs = std::filesystem;

namespace {

// The engine's lock file: a property of an open data directory, not data.
constexpr const char* kLockFile = "LOCK";

// Copies the folder `from` into the existing empty folder `to`, recursively: regular
// files (fsynced) and folders (fsynced once filled); `top` skips the source's LOCK file.
// Appends every top-level entry it creates to `created`, so that a failure can remove
// exactly those.
Status CopyTree(const fs::path& from, const fs::path& to, bool top, RestoreReport& report,
                std::vector<fs::path>* created) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(from, ec)) {
    const std::string name = entry.path().filename().string();
    if (top && name == kLockFile) continue;
    const fs::file_status st = entry.symlink_status(ec);
    if (ec) return IOError("{}: cannot stat: {}", entry.path().string(), ec.message());
    const fs::path dest = to / name;
    if (fs::is_directory(st)) {
      if (::mkdir(dest.c_str(), 0755) != 0) {
        return IOError("{}: cannot create: {}", dest.string(), std::strerror(errno));
      }
      if (created != nullptr) created->push_back(dest);
      ++report.directories;
      STRATA_RETURN_IF_ERROR(CopyTree(entry.path(), dest, false, report, nullptr));
    } else if (fs::is_regular_file(st)) {
      if (created != nullptr) created->push_back(dest);
      STRATA_RETURN_IF_ERROR(storage::CopyFileSynced(entry.path(), dest, storage::kWholeFile, report.bytes));
      ++report.files;
    } else {
      return InvalidArgument("{}: is neither a folder nor a regular file (a link or a device?); a snapshot "
                             "holds only folders and files, so this is not one",
                             entry.path().string());
    }
  }
  if (ec) return IOError("{}: cannot list: {}", from.string(), ec.message());
  // The folder's entries are durable once the folder itself is synced.
  return storage::SyncParentDirectory(to / ".");
}

// Opens the copy as an engine would; at least one collection.
Status Verify(const fs::path& dir, RestoreReport& report) {
  EngineOptions options;
  options.background_compaction = false;
  auto engine = Engine::Open(dir, options);
  if (!engine) return engine.error().WithContext(fmt::format("{}: the copy does not open", dir.string()));
  report.collections = (*engine)->ListCollections();
  report.batches_replayed = (*engine)->recovery().batches_replayed;
  if (report.collections.empty()) {
    return InvalidArgument("{}: the copy holds no collection; was the source a snapshot?", dir.string());
  }
  return Status::Ok();
}

Status CheckSnapshot(const fs::path& snapshot) {
  std::error_code ec;
  const fs::file_status st = fs::status(snapshot, ec);
  if (!fs::exists(st)) return NotFound("{}: no such snapshot", snapshot.string());
  if (!fs::is_directory(st)) {
    return InvalidArgument("{}: is not a folder; a snapshot is an engine data directory", snapshot.string());
  }
  if (!fs::is_regular_file(snapshot / "MANIFEST", ec)) {
    return InvalidArgument(
        "{}: has no MANIFEST, so it is not a snapshot (an engine data directory, as `strata-cli snapshot` "
        "or Engine::Snapshot write)",
        snapshot.string());
  }
  if (LockIsHeld(snapshot)) {
    return InvalidArgument(
        "{}: its LOCK is held (a running engine or strata-server has it open, and it changes under a "
        "copy); stop it first, or take a new snapshot",
        snapshot.string());
  }
  return Status::Ok();
}

}  // namespace

Result<RestoreReport> RestoreSnapshot(const fs::path& snapshot_arg, const fs::path& into_arg) {
  if (snapshot_arg.empty()) return Error(InvalidArgument("restore: the snapshot path is empty"));
  if (into_arg.empty()) return Error(InvalidArgument("restore: --into is empty"));
  std::error_code ec;
  const fs::path snapshot = fs::absolute(snapshot_arg, ec).lexically_normal();
  fs::path into = fs::absolute(into_arg, ec).lexically_normal();
  if (into.filename().empty()) into = into.parent_path();  // "dir/" names "dir"
  STRATA_RETURN_IF_ERROR(CheckSnapshot(snapshot));
  const fs::path canon_snap = fs::weakly_canonical(snapshot, ec);
  const fs::path canon_into = fs::weakly_canonical(into, ec);
  if ((canon_into.string() + "/").starts_with(canon_snap.string() + "/") ||
      (canon_snap.string() + "/").starts_with(canon_into.string() + "/")) {
    return Error(InvalidArgument("restore: {} and the snapshot {} must not contain one another", into.string(),
                                 snapshot.string()));
  }

  RestoreReport report;
  report.into = into;
  const fs::file_status st = fs::symlink_status(into, ec);
  if (fs::exists(st)) {
    // An existing destination: an empty folder that nobody has open, filled in place.
    if (!fs::is_directory(st)) {
      return Error(InvalidArgument("{}: exists and is not a folder; restore needs a new or empty folder",
                                   into.string()));
    }
    if (LockIsHeld(into)) {
      return Error(InvalidArgument("{}: its LOCK is held (a running engine or strata-server has it open); "
                                   "restore never touches it",
                                   into.string()));
    }
    const bool empty = fs::is_empty(into, ec);
    if (ec) return Error(IOError("{}: cannot list: {}", into.string(), ec.message()));
    if (!empty) {
      return Error(InvalidArgument(
          "{}: is not empty; restore never overwrites or merges into a data directory: give a new or "
          "empty folder",
          into.string()));
    }
    std::vector<fs::path> created;
    Status s = CopyTree(snapshot, into, true, report, &created);
    if (s.ok()) s = Verify(into, report);
    if (!s.ok()) {
      // What this call created, and the engine's lock file if Verify got that far.
      for (auto it = created.rbegin(); it != created.rend(); ++it) fs::remove_all(*it, ec);
      if (!LockIsHeld(into)) fs::remove(into / kLockFile, ec);
      return Error(s);
    }
    return report;
  }

  // A new destination: built beside it, renamed into place once whole and verified.
  const fs::path parent = into.parent_path();
  if (!fs::is_directory(parent, ec)) {
    return Error(NotFound("{}: its parent folder {} does not exist", into.string(), parent.string()));
  }
  std::string tmpl = (parent / ("." + into.filename().string() + ".restore-XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return Error(IOError("{}: cannot create a folder: {}", tmpl, std::strerror(errno)));
  }
  const fs::path staging = tmpl;
  Status s = CopyTree(snapshot, staging, true, report, nullptr);
  if (s.ok()) s = Verify(staging, report);
  if (s.ok() && ::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, into.c_str(), RENAME_NOREPLACE) != 0) {
    s = errno == EEXIST ? InvalidArgument("{}: appeared while the restore ran; left alone", into.string())
                        : IOError("{}: cannot rename {} to it: {}", into.string(), staging.string(),
                                  std::strerror(errno));
  }
  if (!s.ok()) {
    fs::remove_all(staging, ec);  // made by mkdtemp above: ours alone
    return Error(s);
  }
  STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(into));
  return report;
}

}  // namespace strata::tools
