#pragma once
// Durability: when an acknowledged write reaches the disk. One enum for the public
// API (EngineOptions, engine/strata.h) and the write-ahead log (engine/wal.h).

#include <cstdint>

namespace strata {

enum class Durability : uint8_t {
  // The default: Write returns only once its batch has been made durable with
  // fdatasync. Concurrent appenders to one log share fsyncs (group commit).
  kSync,
  // Write returns after write(2); a background thread calls fdatasync every
  // sync interval when anything was written since the last sync. A crash of the
  // machine (not of the process) can lose up to that interval of acknowledged writes.
  kInterval,
  // No fsync except when a log is closed or synced explicitly. Left to the operating
  // system: a machine crash may lose recent writes. For loads that can be redone, and tests.
  kNone,
};

}  // namespace strata
