#pragma once
// Recall@k: the one definition every Strata tool, benchmark and the client use.
//
// The rule is ann-benchmarks' (Aumüller et al., "ANN-Benchmarks", 2018): a returned neighbour is
// a hit when its distance is no larger than the true k-th distance plus a small epsilon, so that
// a search returning the other one of two equidistant vectors is not marked down; recall@k is
// hits / k. Two refinements, both so that a hit is never missed for a reason other than distance:
//   - a returned id that is one of the true k is a hit whatever distance it was reported with
//     (SPANN reports distances from half-precision copies, a hair off the exact ones);
//   - each distinct id counts once (a result list that repeats an id does not gain by it).
// ann-benchmarks adds a fixed 1e-3 to distances it recomputes itself. Strata's distances are
// squared L2 and negated inner products, whose scale varies from set to set by orders of
// magnitude, so the slack here is relative: kRecallTieEpsilon x max(1, |k-th distance|). That is
// well above the rounding of the float kernels (about 1e-7 relative per operation) and well below
// any gap a real neighbour ranking has.
//
// When the true k-th distance is unknown (a ground-truth file with ids only, such as .ivecs),
// the distance test is skipped: hits are the returned ids among the true k, and an equidistant
// substitute counts as a miss. Distances compared with the k-th distance must be in the same
// units (Strata's: squared L2, -inner product, -cosine similarity; what `strata gt` writes).
//
// Pure functions; thread-safe.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/types.h"

namespace strata {

inline constexpr double kRecallTieEpsilon = 1e-5;

// One query's truth: the ids of its true k nearest neighbours (k = ids.size(); the order does not
// matter) and, when known, the distance of the k-th of them.
struct RecallTruth {
  std::span<const VectorId> ids;
  std::optional<double> kth_distance;
};

// Recall@k of one result list, k = truth.ids.size(): the hits among the first k of `result`
// (nearest first; kInvalidVectorId entries are padding and never hit) divided by k. 1 when the
// truth is empty (nothing to find).
double RecallAtK(const RecallTruth& truth, std::span<const Neighbor> result);

// The truth held by one row of a ground-truth file, for results whose ids are base row +
// `id_offset`: `row` holds the true neighbours' base-row ids nearest first (int32, as in .ivecs and
// .ibin; a negative id is padding and ends the row), `distances` theirs (as long as `row`, or empty
// when the file has none; the largest of those kept is the k-th distance). The returned truth
// points into `ids_buffer`.
RecallTruth TruthFromFileRow(std::span<const int32_t> row, std::span<const float> distances,
                             uint64_t id_offset, std::vector<VectorId>& ids_buffer);

}  // namespace strata
