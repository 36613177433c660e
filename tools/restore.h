#pragma once
// `strata restore SNAPSHOT --into DATA_DIR`: a snapshot (Engine::Snapshot, or the server's
// snapshot request) copied into a new engine data directory, and checked by opening it.
//
// A snapshot is itself an engine data directory (MANIFEST + collections/), so a server
// can also serve it as it is (`strata-server --data-dir SNAPSHOT`); it then changes in
// place. A restore leaves the snapshot as it was and gives the copy a folder of its own.
//
// The rules (a restore never overwrites or removes anything it did not create):
//   - SNAPSHOT must be an engine data directory (it has a MANIFEST) that no engine or
//     server has open (its LOCK is not held: an open one changes under the copy). Only
//     folders and regular files are copied; a link or a device file in it is refused.
//   - DATA_DIR must not exist (its parent must), or be an empty folder. A folder with
//     anything in it, a file, or a folder whose LOCK is held is refused and left alone.
//   - Every file is copied, never hard-linked (the restored engine appends to its logs
//     and compacts; the snapshot must not change), and fsynced, and so is every folder.
//   - A new DATA_DIR is built in a hidden folder beside it (".NAME.restore-XXXXXX") and
//     renamed into place once whole and verified, so that it appears complete or not at
//     all. Into an existing empty folder the files are copied in place; on failure what
//     was copied is removed and the folder is left empty, as it was.
//   - Verified: Engine::Open must open the copy (replaying its logs) and find at least
//     one collection.
//
// Thread-compatible: one call at a time for a given destination.

#include <cstdint>
#include <filesystem>
#include <vector>

#include "core/status.h"
#include "engine/strata.h"

namespace strata::tools {

struct RestoreReport {
  std::filesystem::path into;  // absolute
  uint64_t files = 0;
  uint64_t directories = 0;
  uint64_t bytes = 0;
  std::vector<CollectionInfo> collections;  // as the restored engine found them
  uint64_t batches_replayed = 0;            // log batches replayed when it was opened
};

// InvalidArgument (naming the path and the rule) for a SNAPSHOT or DATA_DIR refused above;
// NotFound for a missing SNAPSHOT or a missing parent of DATA_DIR; IOError for a failed
// copy; the engine's error when the copy does not open.
Result<RestoreReport> RestoreSnapshot(const std::filesystem::path& snapshot,
                                      const std::filesystem::path& into);

}  // namespace strata::tools
