#pragma once
// The `strata` command's subcommands, one file each (tools/cmd_*.cc); tools/main.cc only declares
// the flags with CLI11 and calls these.
//
// Every Run* function prints its results on stdout (progress on stderr), reports an error as one
// line on stderr ("strata: error: ...") and returns the process's exit status. Called once, from
// main's thread; they share no state (thread-compatible).

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/metric.h"
#include "core/status.h"
#include "core/vector_set.h"
#include "tools/bench.h"
#include "tools/datasets.h"
#include "tools/engine_bench.h"
#include "tools/planner_bench.h"
#include "tools/synth.h"

namespace strata::tools::cmd {

// Prints `s` as one line on stderr; returns 1.
int Fail(const Status& s);

// Where a subcommand's data comes from: a named data set under data_dir, or explicit files.
struct DataArgs {
  std::string dataset;
  std::string data_dir = "data";
  std::string base, queries, gt;
  std::string metric;
  size_t max_queries = 0;
};

// Fills base/queries (and the ground truth when need_gt_default) paths and the metric from
// --dataset when given; otherwise --base, --queries and --metric are required.
Result<Metric> ResolveDataArgs(DataArgs& a, bool need_gt_default);
// Reads base, queries and ground truth named by resolved data arguments.
Result<LoadedDataset> LoadData(const DataArgs& a);
// What the benchmarks start with: ResolveDataArgs (sets `metric`), a ground truth required, then
// LoadData.
Result<LoadedDataset> LoadBenchData(DataArgs& a, Metric& metric);
// Reads a query file, its first `max_queries` rows only when that is not 0.
Result<VectorSet> ReadQueries(const std::string& path, size_t max_queries);
// --simd: "" or "auto" keeps the detected kernel level.
Status SetSimd(const std::string& simd);

// dataset (cmd_dataset.cc)
int RunImportGlove(const std::string& json, const std::string& query_ids, const std::string& out_dir);
int RunImportIdx(const std::string& images, const std::string& out);
int RunDatasetInfo(const std::string& path);
int RunDatasetList();
int RunSynth(const std::string& out_dir, const SynthOptions& options);

// gt (cmd_gt.cc)
int RunGt(DataArgs a, uint32_t k, std::string out, int threads, std::string compare,
          uint32_t compare_k);

// bench, engine-bench, planner-bench (cmd_bench.cc)
int RunBenchCmd(DataArgs a, const std::string& kind, const TargetOptions& topt, uint32_t k,
                int threads, size_t single_queries, const std::string& json_out, double min_recall);
int RunEngineBenchCmd(DataArgs a, EngineBenchConfig config);
int RunPlannerBenchCmd(DataArgs a, PlannerBenchConfig config, bool filters_only);

// build (cmd_build.cc): into a file (-o) or into an engine collection (--into).
struct BuildIntoArgs {
  std::string data_dir;
  std::string collection = "default";
  std::string attributes;  // JSON Lines, optional
  uint64_t memory_budget_bytes = 0;
};

int RunBuild(DataArgs a, const std::string& kind, const TargetOptions& topt, int threads,
             const std::string& out);
int RunBuildInto(DataArgs a, const TargetOptions& topt, const BuildIntoArgs& into);

// search (cmd_search.cc): a saved HNSW file, a SPANN directory, or an engine collection.
int RunSearch(const std::string& index_path, const std::string& queries_path, uint32_t k,
              uint32_t ef, bool mmap, size_t max_queries, size_t show, const std::string& gt_path,
              const std::string& base_path);
int RunSpannSearch(const std::string& index_path, const std::string& queries_path, uint32_t k,
                   uint32_t max_lists, double prune_epsilon, const std::string& io, bool direct,
                   size_t max_queries, size_t show, const std::string& gt_path);
// `strata search --engine-dir DIR --collection NAME`: through the engine and its planner.
struct EngineSearchArgs {
  std::string dir, collection, filter, strategy = "auto";
  double recall = 0;
  bool explain = false;
  uint32_t ef = 0, max_lists = 0;
  int threads = 1;  // > 1 or 0 (all cores): also time Engine::SearchBatch over that many threads
};

int RunEngineSearch(const EngineSearchArgs& a, const std::string& queries_path, uint32_t k,
                    size_t max_queries, size_t show, const std::string& gt_path);

// inspect (cmd_inspect.cc): describe and validate a Strata file or SPANN directory.
int RunInspect(const std::string& path);

}  // namespace strata::tools::cmd
