#pragma once
// The data behind `strata plot`: benchmark results read from JSON lines and grouped into
// series (one per run, index or peer), each with its recall/QPS Pareto frontier, as in
// ann-benchmarks' plots (recall@k on x, QPS on a log y axis; a point is on the frontier
// when no point of its series has both higher recall and higher QPS).
//
// Accepted lines: one JSON object each, optionally prefixed "JSON " (as the tools print
// them); other lines (tables, blank lines) are skipped. A result needs "recall" and a QPS:
//   `strata bench --json`      "index", "params", "qps_1t" / "qps_all", "dataset", "k"
//   bench/hnsw_peers           "lib", "ef", "qps", "base", "k"
//   bench/spann_vs_faiss       "system", "mode", "qps", "base", "k"
//   engine-bench, planner-bench "bench", "index" / "kind", "qps_1t"
// Summary lines ("summary": true, or without "recall") are skipped. Pure functions;
// thread-safe.

#include <string>
#include <vector>

#include "core/status.h"

namespace strata::tools {

struct PlotPoint {
  double recall = 0;
  double qps = 0;
  std::string label;  // the sweep parameter, e.g. "ef=64" ("" when none)
};

struct PlotSeries {
  std::string name;                 // "hnsw", "hnswlib", "strata (cold)", ...
  std::vector<PlotPoint> points;    // as read
  std::vector<PlotPoint> frontier;  // Pareto frontier, by increasing recall
};

struct PlotData {
  std::vector<PlotSeries> series;
  std::string dataset;  // from "dataset", else the base file's folder ("" when unknown)
  std::string metric;
  int k = 0;
  std::string qps_key;  // the QPS field used for the first series (e.g. "qps_1t")
};

// Points not dominated by another (higher or equal recall and higher QPS), by increasing recall.
std::vector<PlotPoint> ParetoFrontier(std::vector<PlotPoint> points);

// Reads and groups the results of `files`. qps_key: "auto" (qps_1t where a result has it,
// else qps, else qps_all) or one of those names. InvalidArgument naming the file when a file
// holds no result at all.
Result<PlotData> LoadPlotData(const std::vector<std::string>& files, const std::string& qps_key);

// "CPU model name, N cores" of this machine (from /proc/cpuinfo; "" when unknown).
std::string MachineDescription();

}  // namespace strata::tools
