#pragma once
// Segment: one slice of a collection as one snapshot sees it, and the one plan
// executor that runs a query against any segment.
//
// A collection is a set of segments (collection.h): the in-memory segment that
// takes writes (memory_segment.h) and sealed segments on disk, HNSW or SPANN inside
// (sealed_segment.h). Both present this interface to a search. A `Segment` object
// is a view: the segment's immutable content plus what the snapshot fixes about it
// -- which rows are live (the delete set of a sealed segment; the rows and removals
// up to the snapshot's sequence of the in-memory one). Rows are segment-local
// numbers 0..row_bound()-1; an index search returns rows, and the executor turns
// them into ids last.
//
// SearchSegment is the per-segment half of a query: evaluate the filter on the
// segment's attribute index, give the planner (planner.h) the live and matching
// counts and the segment's calibration, then scan, search the index, or post-filter
// as planned, falling back to the exact scan when a filtered index search comes back
// short although enough rows match; EXPLAIN records each stage.
//
// Thread safety: a view is immutable; any number of threads may search one at once.

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/types.h"
#include "engine/attribute_index.h"
#include "engine/calibration.h"
#include "engine/filter.h"
#include "engine/planner.h"
#include "engine/strata.h"
#include "index/hnsw/hnsw_index.h"
#include "index/spann/spann_index.h"

namespace strata::engine {

// Per-thread scratch of the indexes (visited sets, candidate pools, aligned read
// buffers). Owned by the caller of a search; never shared by two searches at once.
struct SearchScratch {
  index::SearchContext hnsw;
  index::SpannContext spann;
  std::vector<float> query;  // the query, normalized for cosine
};

// One query, resolved once for every segment it runs against.
struct SegmentQuery {
  VectorView query;                         // as given (indexes normalize for cosine themselves)
  const float* normalized = nullptr;        // normalized for cosine (the same as query otherwise)
  const Filter* filter = nullptr;           // null: none
  const std::string* filter_key = nullptr;  // the filter's canonical text: caches its rows
  const SearchOptions* options = nullptr;
  double recall_target = 0;                 // resolved target (0: explicit parameters)
  // Without a filter: the k-th distance among the segments searched before this one (they
  // already hold k hits this close), so this segment's index search need not look past it
  // (index::SearchParams::max_distance; what bounds a walk through deleted rows).
  float max_distance = std::numeric_limits<float>::infinity();
};

// The live rows of a segment that match a filter.
struct MatchingRows {
  std::shared_ptr<const RowBitmap> rows;  // size >= row_bound(); only live rows set
  uint64_t count = 0;
};

class Segment {
 public:
  virtual ~Segment() = default;

  // "memory" or "segment <id>" (EXPLAIN).
  virtual std::string name() const = 0;
  virtual SegmentKind kind() const = 0;
  // Rows are 0..row_bound()-1; live_rows() of them are live in this view.
  virtual uint32_t row_bound() const = 0;
  virtual uint64_t live_rows() const = 0;
  virtual bool IsLive(uint32_t row) const = 0;
  // Appends the live rows, ascending.
  virtual void LiveRows(std::vector<uint32_t>& out) const = 0;
  virtual VectorId id(uint32_t row) const = 0;
  // The row's vector as written (dim floats): where the segment holds it as float32, else
  // widened into `buf` (dim floats) and `buf` returned. And, for cosine, 1/|vector|.
  virtual const float* vector(uint32_t row, float* buf) const = 0;
  // Starts loading the row's stored vector into the cache (an exact scan, a few rows ahead).
  virtual void PrefetchVector(uint32_t row) const = 0;
  virtual float inv_norm(uint32_t row) const = 0;
  // Null until the segment has been calibrated (maintenance does it, never a search).
  virtual const Calibration* calibration() const = 0;
  // For EXPLAIN: where calibration() comes from when the segment has not been measured
  // itself (a stand-in; see Collection::StandInCalibration), empty when it is its own.
  // Thread-safe, like the other const members.
  virtual std::string calibration_origin() const { return {}; }
  // SPANN: the number of posting lists (0 otherwise).
  virtual uint32_t spann_lists() const { return 0; }
  virtual MatchingRows Match(const Filter& filter, const std::string* key) const = 0;
  virtual double EstimateSelectivity(const Filter& filter) const = 0;
  // AttributeIndex::KindsOf of the segment's attribute index.
  virtual uint8_t AttributeKinds(std::string_view name) const = 0;
  // The index's `want` nearest live rows (and, with `allowed`, only rows set there)
  // at parameter `param` (ef or max_lists). Neighbor::id holds the row. Adds what
  // it did to `ex` (ef or max_lists, distances, nodes, lists and bytes read) and,
  // for SPANN, to `io`.
  virtual Result<std::vector<Neighbor>> IndexSearch(const SegmentQuery& q, uint32_t want, uint32_t param,
                                                    const RowBitmap* allowed, SearchScratch& scratch,
                                                    SegmentExplain& ex, index::SpannQueryStats* io) const = 0;
  virtual size_t dim() const = 0;
  virtual Metric metric() const = 0;
};

// Plans and runs `q` against `segment`: its top-k live matching rows, as ids.
// Fills `explain` when given (thread-safe; see the file comment).
Result<std::vector<Neighbor>> SearchSegment(const Segment& segment, const SegmentQuery& q, SearchScratch& scratch,
                                            SegmentExplain* explain, index::SpannQueryStats* io);

// An index filter over labels that are rows: live in `segment` and, when `allowed`
// is given, set there (`allowed` holds live rows only).
class LiveRowFilter final : public index::IdFilter {
 public:
  LiveRowFilter(const Segment& segment, const RowBitmap* allowed) : segment_(segment), allowed_(allowed) {}
  bool Contains(VectorId row) const override {
    if (row >= segment_.row_bound()) return false;
    return allowed_ ? allowed_->Test(uint32_t(row)) : segment_.IsLive(uint32_t(row));
  }

 private:
  const Segment& segment_;
  const RowBitmap* allowed_;
};

}  // namespace strata::engine
