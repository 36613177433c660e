#pragma once
// A latency histogram as read at one moment: what the engine's counters hold
// (EngineCounters, engine/strata.h) and what a stats reply carries to a client
// (protocol::StatsReply). The live, concurrently updated histogram is the engine's
// LatencyHistogram (engine/metrics.h).
//
// Value type; thread-compatible.

#include <cstdint>
#include <vector>

namespace strata {

struct HistogramSnapshot {
  std::vector<double> upper_bounds_seconds;  // finite bounds; the last bucket (+Inf) is implicit
  std::vector<uint64_t> counts;              // per bucket (not cumulative), bounds.size() + 1
  uint64_t count = 0;
  double sum_seconds = 0;
  friend bool operator==(const HistogramSnapshot&, const HistogramSnapshot&) = default;
};

}  // namespace strata
