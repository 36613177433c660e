#pragma once
// Percentiles and summaries of measured samples (latencies, list sizes): the one definition every
// Strata tool, benchmark and the client use.
//
// The rule is the nearest rank: the p-quantile of n samples is the smallest sample with at least
// p x n of the samples at or below it, sorted[max(1, ceil(p x n)) - 1]. No interpolation: a
// reported p99 is a latency some request really had, and small sample counts say so (with fewer
// than 100 samples p99 is the maximum) instead of inventing a value between two samples.
//
// Pure functions; thread-safe.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "core/status.h"

namespace strata {

// The nearest-rank p-quantile of `sorted` (ascending), p in [0, 1] (p = 0 gives the minimum,
// p = 1 the maximum). T{} for an empty span.
template <typename T>
T PercentileOfSorted(std::span<const T> sorted, double p) {
  STRATA_CHECK(p >= 0.0 && p <= 1.0);
  if (sorted.empty()) return T{};
  const double n = double(sorted.size());
  // The small allowance keeps p x n that is a whole number in exact arithmetic (0.29 x 100)
  // from rounding up to the next rank in binary floating point.
  const double rank = std::ceil(p * n - 1e-9 * n);
  const size_t index = size_t(std::clamp(rank, 1.0, n)) - 1;
  return sorted[index];
}

// The same for unsorted samples (sorts a copy).
template <typename T>
T Percentile(std::vector<T> values, double p) {
  std::sort(values.begin(), values.end());
  return PercentileOfSorted(std::span<const T>(values), p);
}

// Count, mean, the usual percentiles and the extremes of a set of samples.
struct SampleSummary {
  uint64_t count = 0;
  double mean = 0, min = 0, p50 = 0, p90 = 0, p95 = 0, p99 = 0, p999 = 0, max = 0;
};

// Sorts `values` in place and summarizes them; all zero when empty.
inline SampleSummary Summarize(std::vector<double>& values) {
  SampleSummary s;
  s.count = values.size();
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (const double v : values) sum += v;
  s.mean = sum / double(values.size());
  const std::span<const double> sorted(values);
  s.min = sorted.front();
  s.p50 = PercentileOfSorted(sorted, 0.50);
  s.p90 = PercentileOfSorted(sorted, 0.90);
  s.p95 = PercentileOfSorted(sorted, 0.95);
  s.p99 = PercentileOfSorted(sorted, 0.99);
  s.p999 = PercentileOfSorted(sorted, 0.999);
  s.max = sorted.back();
  return s;
}

}  // namespace strata
