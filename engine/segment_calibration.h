#pragma once
// What the calibration (calibration.h) of every kind of segment shares: how many
// held-out queries a segment gets, and the search it runs against an HNSW graph
// -- the in-memory segment's, a graph being written, or a sealed one.
//
// Thread safety: HnswCalibrationSearch returns a function that may be called from
// several threads at once (Calibrate does), as long as what it refers to lives.

#include <cstddef>
#include <functional>

#include "engine/calibration.h"
#include "engine/planner.h"
#include "index/hnsw/hnsw_index.h"

namespace strata::engine {

// Held-out queries measured for a segment of `rows` rows: a fiftieth of the rows,
// at least 100, at most 300 (150 for SPANN, whose searches read from disk).
size_t CalibrationQueries(size_t rows, SegmentKind kind);

// A graph to calibrate and how its labels relate to the calibration's rows.
struct HnswCalibrationTarget {
  const index::HnswIndex* graph = nullptr;
  // The label of calibration row r (the graph's node of the query's own row, held
  // out of the search); also what CalibrationSource::id returns.
  std::function<VectorId(size_t row)> label_of_row;
  // The calibration row of a label, or SIZE_MAX when the label is none of them
  // (filtered tables test rows).
  std::function<size_t(VectorId label)> row_of_label;
  // Labels the search may return at all (the in-memory segment's rows as one
  // snapshot sees them); null: every label.
  const index::IdFilter* visible = nullptr;
};

// The CalibrationSource::search of `target`: results labelled as the graph labels
// them, their distance computations added to the cost.
decltype(CalibrationSource::search) HnswCalibrationSearch(HnswCalibrationTarget target);

// The CalibrationSource fields every HNSW calibration sets: grid, scan cost, the
// search above, and ids through label_of_row.
void SetUpHnswCalibration(CalibrationSource& src, const HnswCalibrationTarget& target);

}  // namespace strata::engine
