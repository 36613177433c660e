#pragma once
// The benchmark harness behind `strata bench`.
//
// A BenchTarget wraps one index kind: it builds (or opens) the index, lists
// the search parameter points to sweep, and answers queries. The harness times
// the build, then for every point measures
//   - one thread: queries one after another, per-query latency -> QPS, p50/p95/p99;
//   - all threads: queries spread over OpenMP threads (or the index's own batch
//     path when it has one) -> QPS and the results scored for recall@k;
// and prints a readable table plus one JSON line per point.
// New index kinds plug in by adding a BenchTarget (see MakeBenchTarget).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/metric.h"
#include "index/hnsw/hnsw_index.h"
#include "index/index.h"
#include "index/spann/spann_index.h"
#include "tools/datasets.h"

namespace strata::tools {

struct SweepPoint {
  index::SearchParams params;
  nlohmann::json description;  // e.g. {"ef": 64}
};

class BenchTarget {
 public:
  virtual ~BenchTarget() = default;
  virtual std::string name() const = 0;
  // Builds from `base` (a copy is the target's business; base stays valid during the run).
  virtual Status Build(const VectorSet& base, Metric metric, int threads) = 0;
  // Whether Build opens a saved index (--load) rather than building one.
  virtual bool Loads() const { return false; }
  virtual std::vector<SweepPoint> Sweep(uint32_t k) const = 0;
  virtual Result<std::vector<Neighbor>> Search(VectorView query, const index::SearchParams& params,
                                               index::SearchContext& ctx) const = 0;
  // Optional whole-batch path (row-major, k per query); default: not supported.
  virtual bool HasBatch() const { return false; }
  virtual Result<std::vector<Neighbor>> SearchBatch(const VectorSet& /*queries*/,
                                                    const index::SearchParams& /*params*/,
                                                    int /*threads*/) const {
    return Error(Unimplemented("no batch search"));
  }
  // Per-query cost counters of the one-thread pass (e.g. SPANN lists and bytes read),
  // merged into each point's JSON; reset before each point.
  virtual void ResetCounters() {}
  virtual nlohmann::json Counters(size_t /*queries*/) const { return nlohmann::json::object(); }
  // Queries used for the one-thread latency pass when the user does not say (0 = all).
  virtual size_t DefaultSingleThreadQueries() const { return 0; }
  virtual index::IndexStats Stats() const = 0;
};

// Index-specific knobs from the command line.
struct TargetOptions {
  uint32_t M = 16;
  uint32_t ef_construction = 200;
  std::vector<uint32_t> ef_values = {10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512};
  std::string save_path;  // save the built index here
  std::string load_path;  // open this index instead of building
  bool mmap = false;      // with load_path: map read-only
  bool refined_codes = false;  // with load_path, HNSW with codes: HnswLoadOptions::refined_codes
  std::string codes = "none";  // "sq8": HNSW traverses / SPANN lists hold SQ8 codes, reranks with full vectors
  uint32_t rerank = 0;         // with codes: candidates reranked (0 = the index's default)
  std::string rerank_from = "file";  // SPANN with codes: full vectors from the FULL section or the lists
  // SPANN
  size_t cluster_size = 0;     // SPANN: 0 = from the memory budget
  double memory_budget = 0.2;  // SPANN: share of raw vector bytes for the in-memory part
  uint32_t replicas = 8;
  double closure_epsilon = 10.0;
  double rng_factor = 1.0;
  bool head_vectors = true;
  uint32_t head_M = 16;
  bool half_heads = true;
  // SPANN: the heads' HNSW walks SQ8 codes; by default when the lists carry codes.
  bool head_codes = false, no_head_codes = false;
  bool half_lists = true;
  size_t list_cap = 0;  // SPANN: most entries per posting list (0 = 8 x cluster size)
  double prune_epsilon = 0.6;
  std::vector<uint32_t> max_lists = {16, 32, 48, 64, 96, 128};
  std::string io_backend = "auto";
  bool direct_io = true;
  double deletes = 0;     // > 0: run the delete scenario (tools/experiments.h)
  std::vector<double> selectivities;  // non-empty: run the filter scenario
};

// The build options the command line asked for (shared by `strata build` and `strata bench`).
index::HnswOptions HnswOptionsFrom(const TargetOptions& o);
index::SpannBuildOptions SpannOptionsFrom(const TargetOptions& o, Metric metric, int threads);

// "flat", "hnsw" or "spann".
Result<std::unique_ptr<BenchTarget>> MakeBenchTarget(const std::string& kind,
                                                     const TargetOptions& options = {});

struct BenchConfig {
  std::string dataset_label;
  Metric metric = Metric::kL2;
  uint32_t k = 10;
  int threads = 0;                // 0 = all cores
  size_t single_thread_queries = SIZE_MAX;  // SIZE_MAX = target's default
  std::string json_out;           // append JSON lines here as well ("" = stdout only)
  // false (--json without a file): stdout carries only the JSON lines, without the table
  // and without their "JSON " prefix.
  bool text = true;
};

struct BenchPointResult {
  nlohmann::json json;
  double recall = 0;
};

// Runs the whole benchmark; prints the table to stdout and JSON lines.
Result<std::vector<BenchPointResult>> RunBench(BenchTarget& target, const LoadedDataset& data,
                                               const BenchConfig& config);

// Peak resident set size of this process, bytes.
size_t PeakRssBytes();
std::string GitRevision();

}  // namespace strata::tools
