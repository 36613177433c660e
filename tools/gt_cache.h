#pragma once
// Exact ground truth for the tools that score recall (`strata bench`, `engine-bench`,
// `planner-bench`, `search --gt`) when the user gives none: computed once with the flat
// index on all cores and cached next to the base vectors, then reused.
//
// The cache is a big-ann ground-truth file named after the data, the metric and k,
//   <base dir>/<base stem>.<query stem>.gt_<metric>_k<k>.ibin
// with a sidecar "<that>.strata.json" recording that strata wrote it and what from (paths,
// sizes and modification times of both files, metric, k, rows). A cache is reused while the
// sidecar matches and covers the queries asked for; one whose inputs changed is replaced,
// being the tool's own. A file at the cache's path without the sidecar is someone else's:
// it is never read as a cache nor overwritten (an error says so). Thread-compatible.

#include <cstdint>
#include <filesystem>
#include <string>

#include "core/metric.h"
#include "core/status.h"
#include "core/vector_set.h"
#include "storage/dataset_io.h"

namespace strata::tools {

// The exact top-k of every query (ids and distances, in the units searches report), over
// `threads` threads (0: all cores), with progress on stderr unless Progress is quiet.
Result<storage::GroundTruth> ComputeGroundTruth(const VectorSet& base, const VectorSet& queries,
                                                Metric metric, uint32_t k, int threads = 0);

// k of the cached files: at least 100, so that one file serves recall@1..100.
uint32_t CachedGroundTruthK(uint32_t k);
// Where the cache for these files lies (nothing is read).
std::filesystem::path GroundTruthCachePath(const std::filesystem::path& base_path,
                                           const std::filesystem::path& queries_path, Metric metric,
                                           uint32_t k);

// The path of a ground-truth file for base x (the first queries.size() rows of) queries at
// least k deep: the cache when valid, else computed and cached. Says on stderr which.
Result<std::filesystem::path> EnsureGroundTruth(const VectorSet& base, const std::string& base_path,
                                                const VectorSet& queries, const std::string& queries_path,
                                                Metric metric, uint32_t k);

}  // namespace strata::tools
