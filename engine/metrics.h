#pragma once
// Latency histograms kept by the engine for the server's metrics endpoint:
// fixed, Prometheus-style cumulative-ready buckets (upper bounds in seconds,
// doubling from 50 us to about 52 s, then +Inf), a count and a sum.
//
// Thread-safe: Record is lock-free (relaxed atomics); Snapshot may run
// concurrently with Record and sees each field at some recent value.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "api/histogram.h"  // HistogramSnapshot

namespace strata {

class LatencyHistogram {
 public:
  static constexpr size_t kFiniteBuckets = 21;  // 50 us x 2^i, i = 0..20
  static double UpperBound(size_t i) { return 50e-6 * double(uint64_t(1) << i); }

  void Record(uint64_t nanos) {
    const double s = double(nanos) * 1e-9;
    size_t i = 0;
    while (i < kFiniteBuckets && s > UpperBound(i)) ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_nanos_.fetch_add(nanos, std::memory_order_relaxed);
  }

  HistogramSnapshot Snapshot() const {
    HistogramSnapshot h;
    for (size_t i = 0; i < kFiniteBuckets; ++i) h.upper_bounds_seconds.push_back(UpperBound(i));
    for (const auto& b : buckets_) h.counts.push_back(b.load(std::memory_order_relaxed));
    h.count = count_.load(std::memory_order_relaxed);
    h.sum_seconds = double(sum_nanos_.load(std::memory_order_relaxed)) * 1e-9;
    return h;
  }

 private:
  std::array<std::atomic<uint64_t>, kFiniteBuckets + 1> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_nanos_{0};
};

}  // namespace strata
