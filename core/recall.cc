#include "core/recall.h"

#include <algorithm>
#include <cmath>

namespace strata {

double RecallAtK(const RecallTruth& truth, std::span<const Neighbor> result) {
  const size_t k = truth.ids.size();
  if (k == 0) return 1.0;
  const std::optional<double> limit =
      truth.kth_distance.has_value()
          ? std::optional<double>(*truth.kth_distance +
                                  kRecallTieEpsilon * std::max(1.0, std::fabs(*truth.kth_distance)))
          : std::nullopt;
  const std::span<const Neighbor> top = result.first(std::min(result.size(), k));
  size_t hits = 0;
  for (size_t i = 0; i < top.size(); ++i) {
    const VectorId id = top[i].id;
    if (id == kInvalidVectorId) continue;
    const bool hit = std::find(truth.ids.begin(), truth.ids.end(), id) != truth.ids.end() ||
                     (limit.has_value() && double(top[i].distance) <= *limit);
    // A repeated id is looked for only among hits: the earlier copy was a hit too.
    if (hit && std::none_of(top.begin(), top.begin() + i,
                            [id](const Neighbor& earlier) { return earlier.id == id; })) {
      ++hits;
    }
  }
  return double(hits) / double(k);
}

RecallTruth TruthFromFileRow(std::span<const int32_t> row, std::span<const float> distances,
                             uint64_t id_offset, std::vector<VectorId>& ids_buffer) {
  ids_buffer.clear();
  for (const int32_t id : row) {
    if (id < 0) break;
    ids_buffer.push_back(VectorId(id) + id_offset);
  }
  RecallTruth truth{.ids = ids_buffer, .kth_distance = std::nullopt};
  if (!ids_buffer.empty() && distances.size() >= ids_buffer.size()) {
    // The largest rather than the last: a file whose row is not sorted still gives the k-th.
    const auto kept = distances.first(ids_buffer.size());
    truth.kth_distance = *std::max_element(kept.begin(), kept.end());
  }
  return truth;
}

}  // namespace strata
