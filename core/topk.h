#pragma once
// Top-k selection: keeps the k smallest (distance, id) pairs seen so far.
//
// A bounded max-heap: the worst kept element sits on top, so a candidate is
// rejected with one comparison against threshold(). Thread-compatible; one
// instance per query.

#include <algorithm>
#include <cstddef>
#include <limits>
#include <vector>

#include "core/types.h"

namespace strata {

template <typename Id = VectorId>
class TopK {
 public:
  struct Entry {
    float distance;
    Id id;
    bool operator<(const Entry& o) const {
      return distance < o.distance || (distance == o.distance && id < o.id);
    }
  };

  explicit TopK(size_t k = 0) { Reset(k); }

  void Reset(size_t k) {
    k_ = k;
    heap_.clear();
    heap_.reserve(k);
  }
  size_t k() const { return k_; }
  size_t size() const { return heap_.size(); }
  bool full() const { return heap_.size() >= k_; }
  // Distance a candidate must beat to enter; +inf until k elements are kept.
  float threshold() const {
    return full() && k_ > 0 ? heap_.front().distance : std::numeric_limits<float>::infinity();
  }

  // Offers a candidate; returns true when it was kept. Ties on distance are
  // broken by the smaller id so results are deterministic.
  bool Push(float distance, Id id) {
    if (k_ == 0) return false;
    Entry e{distance, id};
    if (heap_.size() < k_) {
      heap_.push_back(e);
      std::push_heap(heap_.begin(), heap_.end());
      return true;
    }
    if (!(e < heap_.front())) return false;
    std::pop_heap(heap_.begin(), heap_.end());
    heap_.back() = e;
    std::push_heap(heap_.begin(), heap_.end());
    return true;
  }

  // Results sorted nearest first. The heap is left empty.
  std::vector<Entry> TakeSorted() {
    std::sort_heap(heap_.begin(), heap_.end());
    std::vector<Entry> out;
    out.swap(heap_);
    return out;
  }
  // The same as Neighbors (ids taken as they were pushed), sorted nearest
  // first. The heap is left empty.
  std::vector<Neighbor> TakeSortedNeighbors() {
    std::sort_heap(heap_.begin(), heap_.end());
    std::vector<Neighbor> out;
    out.reserve(heap_.size());
    for (const Entry& e : heap_) out.push_back(Neighbor{VectorId(e.id), e.distance});
    heap_.clear();
    return out;
  }
  const std::vector<Entry>& entries() const { return heap_; }

 private:
  size_t k_ = 0;
  std::vector<Entry> heap_;
};

}  // namespace strata
