#pragma once
// Writing a sealed segment: its records, its index and its calibration, in a new
// folder, before any manifest names it (sealed_segment.h, docs/formats/engine.md).
// Used by seals (the in-memory graph, saved), compaction and bulk load (an index
// built from the rows).
//
// Thread safety: free functions; concurrent calls must write different folders.

#include <filesystem>
#include <memory>
#include <span>

#include "engine/sealed_segment.h"
#include "engine/strata.h"
#include "index/hnsw/hnsw_index.h"

namespace strata::engine {

// In: whether to report progress; out: where the time went.
struct SegmentWriteTimes {
  bool progress = false;  // the index build and calibration report progress on stderr
  double index_build_seconds = 0;
  double calibration_seconds = 0;
};

// Writes `rows` (sorted by id, no duplicates) as segment `sid` in `sdir` (which must
// not exist) with an index built from them: HNSW labelled with rows -- a random
// sample of them held out, measured as the calibration's queries and inserted
// after -- or, past spec.memory_budget_bytes, SPANN (a sample of rows kept out of
// the index altogether, scored exactly by searches). Then opens it, calibrated.
Result<std::unique_ptr<SealedSegment>> WriteBuiltSegment(const std::filesystem::path& sdir, uint64_t sid,
                                                         const CollectionSpec& spec,
                                                         std::span<const SealedSegment::Row> rows,
                                                         SegmentWriteTimes& times);

// Writes `rows` (sorted by id) as segment `sid` in `sdir` with `graph` saved as its
// index, its labels mapped through `relabel` (label -> row of `rows`, or
// kInvalidVectorId: saved as a tombstone). No writer may change `graph`
// meanwhile; searches may go on. Then opens it and measures its calibration.
Result<std::unique_ptr<SealedSegment>> WriteSegmentWithGraph(const std::filesystem::path& sdir, uint64_t sid,
                                                             const CollectionSpec& spec,
                                                             std::span<const SealedSegment::Row> rows,
                                                             const index::HnswIndex& graph,
                                                             std::span<const VectorId> relabel,
                                                             SegmentWriteTimes& times);

}  // namespace strata::engine
