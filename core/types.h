#pragma once
// Id vocabulary. VectorId is the user's 64-bit id; NodeId is a dense internal
// slot (32-bit) inside one index. Keeping them distinct types in signatures
// makes it obvious which space a number lives in.

#include <cstdint>
#include <limits>

namespace strata {

using VectorId = uint64_t;
using NodeId = uint32_t;

inline constexpr NodeId kInvalidNode = std::numeric_limits<NodeId>::max();
inline constexpr VectorId kInvalidVectorId = std::numeric_limits<VectorId>::max();

// One search result: an id and its distance to the query (smaller is closer;
// for inner product and cosine the distance is the negated similarity, see metric.h).
struct Neighbor {
  VectorId id = kInvalidVectorId;
  float distance = 0.0f;

  friend bool operator<(const Neighbor& a, const Neighbor& b) {
    return a.distance < b.distance || (a.distance == b.distance && a.id < b.id);
  }
  friend bool operator==(const Neighbor& a, const Neighbor& b) = default;
};

}  // namespace strata
