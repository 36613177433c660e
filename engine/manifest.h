#pragma once
// CollectionManifest: which sealed segments (and which generation of their
// deletes) make up a collection, the log sequence they cover (the checkpoint) and
// the first sequence of the log that follows. Stored as collection.manifest, a
// section file "STRCOLL" with one JSON section, replaced atomically
// (docs/formats/engine.md).
//
// Value type; thread-compatible.

#include <cstdint>
#include <filesystem>
#include <utility>
#include <vector>

#include "core/status.h"

namespace strata::engine {

struct CollectionManifest {
  uint64_t checkpoint = 0;    // every batch up to this sequence is in the segments
  uint64_t wal_first = 1;     // the first sequence of the oldest log file to replay
  uint64_t next_segment = 1;  // the next segment id
  uint64_t generation = 0;    // bumped by every seal and compaction
  std::vector<std::pair<uint64_t, uint64_t>> segments;  // (segment id, deletes generation or 0), oldest first
  // The next id to assign to a record written by key (api/types.h): at least one past
  // every keyed id ever assigned, so that ids stay unused after their records are
  // compacted away. Absent in manifests written before keys: kKeyedIdBase.
  uint64_t next_key_id = uint64_t{1} << 63;

  static constexpr char kFile[] = "collection.manifest";
  static bool Exists(const std::filesystem::path& dir);
  // The manifest in `dir`; the empty one when the collection was never sealed.
  static Result<CollectionManifest> Load(const std::filesystem::path& dir);
  // Replaces the manifest in `dir` (write, fsync, rename, fsync the folder).
  Status Save(const std::filesystem::path& dir) const;
};

}  // namespace strata::engine
