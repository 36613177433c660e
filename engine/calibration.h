#pragma once
// Calibration: a segment's own recall per search parameter, measured when the
// segment is written, so that a recall target can be turned into ef (HNSW) or
// max_lists (SPANN) per segment.
//
// Method: a sample of the segment's own rows is used as held-out queries -- each
// query's own row is excluded from the exact answer and held out of the index's
// search (an HNSW search never expands it: otherwise the search would land on the
// query's own node, whose links are its nearest neighbours, and recall would be
// overestimated -- by 0.08 at ef 10 in a test; SPANN cannot hold a row out, its id
// is dropped from the answer) -- so the queries come from the data's distribution
// without being trivially found. Recall@k is measured
// at k = 10 and k = 100 at points of a grid of the parameter, chosen adaptively
// (see Calibrate); the mean search cost (distance computations, or bytes read for
// SPANN) is kept beside it for the planner's cost model.
//
// Stored as calibration.strata in the segment's folder (section file "STRCAL",
// one JSON section; docs/formats/engine.md).
//
// Value types; thread-compatible. Calibrate runs the searches it is given from
// several threads at once.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/metric.h"
#include "core/status.h"
#include "core/types.h"
#include "index/index.h"

namespace strata::engine {

struct CalibrationPoint {
  uint32_t param = 0;   // ef or max_lists
  double recall = 0;    // mean recall@k of the held-out queries
  double cost = 0;      // mean distances computed (HNSW) or bytes read (SPANN) per query
};

struct CalibrationTable {
  uint32_t k = 0;
  std::vector<CalibrationPoint> points;  // ascending param
};

// Recall@10 of searches restricted to a random subset of the rows (a filter of
// known selectivity): what a filtered search reaches at each parameter, and what
// it costs (a filtered HNSW traversal visits more nodes per result).
struct FilteredTable {
  double selectivity = 1;
  CalibrationTable table;
};

struct Calibration {
  uint32_t queries = 0;  // most held-out queries measured at one point of the unfiltered table
  double seconds = 0;    // how long measuring took (0: unknown, e.g. a file written before it was kept)
  CalibrationTable k10, k100;
  std::vector<FilteredTable> filtered;  // descending selectivity
  bool empty() const { return k10.points.empty(); }

  struct Choice {
    uint32_t param = 0;
    double predicted_recall = 0;
    double cost = 0;          // interpolated mean cost at param
    bool reachable = true;    // false: no measured point reaches the target (param is the largest)
  };
  // The smallest parameter whose measured recall@k reaches `target`, interpolated
  // linearly between grid points; k <= 10 uses the k = 10 table, larger k the k = 100
  // one (and never a parameter below k when `param_at_least_k`).
  Choice For(double target, uint32_t k, bool param_at_least_k) const;
  // Predicted recall and cost at an explicit parameter (interpolated).
  Choice At(uint32_t param, uint32_t k) const;
  // The parameter at which an unfiltered search finds `target` of the true top
  // `depth` (10 < depth <= 100: interpolated in log(depth) between the k = 10 and
  // k = 100 tables), with the cost of a k = 10 search there. What a post-filter
  // needs: with selectivity s the k matching answers lie about k/s deep.
  Choice ForDepth(double target, uint32_t depth, bool param_at_least_k) const;
  // The same for a filtered search of selectivity `s`, interpolated in log(s)
  // between the unfiltered table (s = 1) and the filtered ones; below the smallest
  // measured selectivity its parameter is kept and its cost scaled by 1/s. Empty
  // (param 0) when no filtered table exists.
  // `margin` is added to the target: filtered recall varies more from query to
  // query than the held-out sample shows (docs/PLANNER.md).
  Choice ForFiltered(double target, uint32_t k, double s, bool param_at_least_k, double margin) const;

  // Measured on GloVe-100 (docs/BENCHMARKS.md section 5): without a margin filtered
  // HNSW searches landed 0.000-0.002 under the target, filtered SPANN ones 0.009.
  static constexpr double kFilteredMarginHnsw = 0.005;
  static constexpr double kFilteredMarginSpann = 0.02;
  // Selectivities the filtered tables are measured at.
  static constexpr double kFilteredSelectivities[] = {0.5, 0.1, 0.02};
  // Whether row `row` belongs to the random subset of selectivity `s` (a hash of the row).
  static bool InSubset(size_t row, double s);

  // The smallest parameter of one table reaching `target` (see For).
  static Choice ChooseIn(const CalibrationTable& table, double target, uint32_t k, bool param_at_least_k);

  std::string ToJson() const;
  static Result<Calibration> FromJson(const std::string& text);
  Status Save(const std::filesystem::path& path) const;
  static Result<Calibration> Load(const std::filesystem::path& path);
};

// What Calibrate needs of a segment.
struct CalibrationSource {
  size_t rows = 0;
  size_t dim = 0;
  Metric metric = Metric::kL2;
  // The row as written (not normalized); `buf`: dim floats a narrow row is widened into
  // (the result is valid until the next call with the same buf).
  std::function<const float*(size_t row, float* buf)> vector;
  std::function<VectorId(size_t row)> id;
  // The index's answer at `param` for `query` (normalized for cosine), with row
  // `self` (SIZE_MAX: none) held out of the search where the index can (HNSW: never expanded), adding
  // what it cost to *cost. Called from several threads at once.
  // `allowed`: when not null, only rows for which it is true may be returned.
  std::function<Result<std::vector<Neighbor>>(const float* query, uint32_t k, uint32_t param, size_t self,
                                              const std::function<bool(size_t row)>* allowed, double* cost)>
      search;
  std::vector<uint32_t> grid;  // ascending parameters to measure
  // Optional: queries that are not rows of the index at all (num_external_queries x
  // dim, as written), used instead of sampled rows; `self` is then SIZE_MAX. An
  // HNSW segment built by compaction or bulk load is calibrated this way: a sample
  // of its rows is inserted only after calibration, so they are truly held out
  // (holding a node out of a graph built with it leaves a hole where its links
  // were pruned, and recall comes out low -- by 0.02 to 0.04 at recall 0.90).
  const float* external_queries = nullptr;
  size_t num_external_queries = 0;

  bool param_at_least_k = true;  // HNSW: ef below k is meaningless
  // A filtered search reads exactly what the unfiltered one does and returns the
  // best matching entries among them, at the same cost (SPANN: the lists read depend
  // on the query alone). The filtered tables are then derived from the unfiltered
  // searches, asked for 1,000 answers, instead of measured: one search per query
  // and point gives all five tables.
  bool derive_filtered = false;
  // What the planner's exact scan costs per row, in the unit of `cost` (HNSW:
  // kScanCost distances; SPANN: kScanCost x kSpannBytesPerDistance bytes). A table
  // stops once a search costs more than the scan of the rows it covers: the
  // planner scans there anyway. 0: no such stop.
  double scan_cost_per_row = 0;
  // Progress on stderr (core/progress.h) over the exact answers of the queries, the
  // bulk of the work.
  bool progress = false;
};

// Segments smaller than this are not calibrated: the planner scans them (an exact
// scan of 2,000 rows costs less than a generous graph search).
inline constexpr size_t kMinCalibrationRows = 2000;

// Adapts a predicate over an index's labels to the index's filter interface.
class LabelPredicate final : public index::IdFilter {
 public:
  explicit LabelPredicate(std::function<bool(VectorId)> f) : f_(std::move(f)) {}
  bool Contains(VectorId label) const override { return f_(label); }

 private:
  std::function<bool(VectorId)> f_;
};

// The default grids.
std::vector<uint32_t> HnswCalibrationGrid();
std::vector<uint32_t> SpannCalibrationGrid(size_t lists);

// Measures recall on held-out rows at points of the grid, adaptively, so that the
// cost stays a small share of the segment's build (docs/PLANNER.md, "Calibration
// cost"): the parameter doubles along the grid until recall saturates (0.999),
// levels off above 0.99, or a search costs more than the exact scan; grid points are
// added between neighbours whose recall differs by more than 0.015 (0.03 filtered);
// one search per query and point gives both recall@10 and recall@100; each point is
// measured with 100 queries, and up to `queries` (fewer for small segments; none
// below 2 rows -> an empty calibration) where the standard error of its recall
// between 0.8 and 0.995 is above 0.005 (0.0075 in the filtered tables); with
// `derive_filtered` the filtered tables come from the unfiltered searches. The
// exact answers are computed for 8 queries per pass over the rows.
Result<Calibration> Calibrate(const CalibrationSource& source, size_t queries = 300, uint64_t seed = 7);

}  // namespace strata::engine
