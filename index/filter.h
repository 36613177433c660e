#pragma once
// Id filters for search. BitmapFilter holds one bit per id in [0, universe):
// Contains() is a shift and a mask, cheap enough to call inside graph traversal.
// Immutable once built; safe to share between threads.

#include <cstdint>
#include <vector>

#include "index/index.h"

namespace strata::index {

class BitmapFilter final : public IdFilter {
 public:
  explicit BitmapFilter(uint64_t universe) : bits_((universe + 63) / 64, 0), universe_(universe) {}
  void Set(VectorId id) {
    if (id < universe_) bits_[id >> 6] |= uint64_t(1) << (id & 63);
  }
  bool Contains(VectorId id) const override {
    return id < universe_ && (bits_[id >> 6] >> (id & 63)) & 1;
  }
  uint64_t universe() const { return universe_; }
  // Number of ids set (popcount over the words).
  uint64_t Count() const {
    uint64_t c = 0;
    for (uint64_t w : bits_) c += __builtin_popcountll(w);
    return c;
  }
  // The ids set, ascending.
  std::vector<VectorId> Ids() const {
    std::vector<VectorId> out;
    for (size_t w = 0; w < bits_.size(); ++w) {
      for (uint64_t b = bits_[w]; b; b &= b - 1) out.push_back(w * 64 + __builtin_ctzll(b));
    }
    return out;
  }

 private:
  std::vector<uint64_t> bits_;
  uint64_t universe_;
};

}  // namespace strata::index
