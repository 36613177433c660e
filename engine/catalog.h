#pragma once
// The engine's catalog: the data directory's MANIFEST, a section file "STRMANI" with one JSON
// section listing every collection (id, spec) and the next collection id, replaced atomically
// (docs/formats/engine.md). Engine::Impl reads it at open and writes it on every create, drop
// and replace; Engine::Snapshot writes one for the snapshot's single collection.
//
// Free functions; thread-compatible (the engine serialises writers with its catalog lock).

#include <cstdint>
#include <filesystem>
#include <vector>

#include "api/types.h"
#include "core/status.h"

namespace strata::engine {

inline constexpr char kCatalogFile[] = "MANIFEST";

struct CatalogEntry {
  uint64_t id;
  CollectionSpec spec;
};

// Ok when `spec` names a collection the engine can hold (name, dimension, metric, graph and
// code parameters); else InvalidArgument naming the first field that is wrong.
Status ValidateSpec(const CollectionSpec& spec);

// Writes `dir`/MANIFEST (atomically: see SectionFileWriter).
Status WriteCatalog(const std::filesystem::path& dir, uint64_t next_id, const std::vector<CatalogEntry>& entries);

// The catalog of data directory `dir` (its next collection id in `next_id`); empty when it
// has no MANIFEST. Corruption names the file and the entry that is wrong.
Result<std::vector<CatalogEntry>> ReadCatalog(const std::filesystem::path& dir, uint64_t& next_id);

}  // namespace strata::engine
