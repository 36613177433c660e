#pragma once
// The `strata` command's subcommands, one file each (tools/cmd_*.cc); tools/main.cc only declares
// the flags with CLI11 and calls these.
//
// Every Run* function prints its results on stdout (progress on stderr), reports an error as one
// line on stderr ("strata: error: ...") and returns the process's exit status. Called once, from
// main's thread; they share no state (thread-compatible).

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/metric.h"
#include "core/status.h"
#include "core/vector_set.h"
#include "storage/dataset_io.h"
#include "tools/bench.h"
#include "tools/datasets.h"
#include "tools/engine_bench.h"
#include "tools/planner_bench.h"
#include "tools/synth.h"

namespace CLI {
class App;
class ParseError;
}  // namespace CLI

namespace strata::tools::cmd {

// Prints `s` as one line on stderr; returns 1.
int Fail(const Status& s);
// A usage error: prints `s`'s message as one line on stderr; returns 2.
int Usage(const Status& s);
// CLI11's message for a command line it refused, on one line (naming an unknown subcommand).
std::string ParseErrorText(const CLI::ParseError& e, const CLI::App& app, int argc, char** argv);

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
// Reads base, queries and (when a.gt is set) ground truth named by resolved data arguments.
Result<LoadedDataset> LoadData(const DataArgs& a);
// What the benchmarks start with: ResolveDataArgs (sets `metric`), LoadData, and when no
// ground truth is given (or a named data set lacks its own), exact ground truth at least k
// deep from the cache next to the base, computed first if need be (tools/gt_cache.h).
Result<LoadedDataset> LoadBenchData(DataArgs& a, Metric& metric, uint32_t k = 100);
// Reads a vector file (storage::ReadVectors), saying on stderr when the values were converted
// (an .npy of float64, float16, int8 or uint8 becomes float32).
Result<VectorSet> ReadVectorFile(const std::string& path, const storage::ReadOptions& options = {});
// Reads a query file, its first `max_queries` rows only when that is not 0.
Result<VectorSet> ReadQueries(const std::string& path, size_t max_queries);
// --json[=FILE], the same on every subcommand that prints results: results as JSON lines (one
// object a line). Without FILE they go to stdout instead of the text; with FILE they are
// appended to it and the text still goes to stdout.
class JsonSink {
 public:
  JsonSink() = default;
  // `given`: the flag was on the command line; `path`: its value ("" for none).
  static Result<JsonSink> Open(bool given, const std::string& path);
  JsonSink(JsonSink&& other) noexcept;
  JsonSink& operator=(JsonSink&&) = delete;
  ~JsonSink();
  bool enabled() const { return enabled_; }
  // Whether the human-readable text goes to stdout.
  bool text() const { return !enabled_ || file_ != nullptr; }
  // One line: to FILE, or to stdout; nothing without --json.
  void Emit(const nlohmann::json& j);

 private:
  bool enabled_ = false;
  std::FILE* file_ = nullptr;
};
// Checks an output path before long work starts: its folder exists and is writable, and the
// path is not a folder. `what` names the flag in the error (e.g. "-o").
Status CheckOutputPath(const std::string& path, const std::string& what);

// --simd: "" or "auto" keeps the detected kernel level.
Status SetSimd(const std::string& simd);

// dataset (cmd_dataset.cc)
int RunImportGlove(const std::string& json, const std::string& query_ids, const std::string& out_dir);
int RunImportIdx(const std::string& images, const std::string& out);
// json: one JSON object (info), JSON lines (list) on stdout instead of the text.
int RunDatasetInfo(const std::string& path, bool json);
int RunDatasetList(bool json);
int RunSynth(const std::string& out_dir, const SynthOptions& options);

// gt (cmd_gt.cc)
// json: one JSON object on stdout instead of the text.
int RunGt(DataArgs a, uint32_t k, std::string out, int threads, std::string compare,
          uint32_t compare_k, bool json);

// bench, engine-bench, planner-bench (cmd_bench.cc)
// json: --json was given; json_path: its file ("" for stdout).
int RunBenchCmd(DataArgs a, const std::string& kind, const TargetOptions& topt, uint32_t k,
                int threads, size_t single_queries, bool json, const std::string& json_path,
                double min_recall);
int RunEngineBenchCmd(DataArgs a, EngineBenchConfig config);
int RunPlannerBenchCmd(DataArgs a, PlannerBenchConfig config, bool filters_only);

// build (cmd_build.cc): into a file (-o) or into an engine collection (--into).
struct BuildIntoArgs {
  std::string data_dir;
  std::string collection = "default";
  std::string attributes;  // JSON Lines, optional
  uint64_t memory_budget_bytes = 0;
};

// json: one JSON object on stdout instead of the summary line (progress stays on stderr).
int RunBuild(DataArgs a, const std::string& kind, const TargetOptions& topt, int threads,
             const std::string& out, bool json);
int RunBuildInto(DataArgs a, const TargetOptions& topt, const BuildIntoArgs& into, bool json);

// search (cmd_search.cc): a saved HNSW file, a SPANN directory, or an engine collection. What
// every search reads and prints, whichever index answers:
struct QueryArgs {
  std::string queries;     // query vectors file
  uint32_t k = 10;
  size_t max_queries = 0;  // use only the first N queries (0: all)
  size_t show = 3;         // print the results of the first `show` queries
  // Ground truth for recall@k: a file; "auto" for exact ground truth of `base`, computed
  // once and cached next to it (tools/gt_cache.h); "" for none.
  std::string gt;
  std::string base;  // base vectors: tie-aware recall for HNSW files, and --gt auto
  bool json = false;
  std::string json_path;  // --json FILE
};

int RunSearch(const std::string& index_path, uint32_t ef, bool mmap, bool refined_codes, const QueryArgs& q);
// `strata search --index DIR` of a SPANN index (index::SpannSearchParams has the meanings).
struct SpannSearchArgs {
  uint32_t max_lists = 64;
  double prune_epsilon = 0.6;
  uint32_t head_ef = 0;  // 0 = 2 x max_lists
  uint32_t rerank = 0;   // with codes; 0 = the index's default
  std::string io = "auto";
  bool direct = true;
};
int RunSpannSearch(const std::string& index_path, const SpannSearchArgs& a, const QueryArgs& q);
// `strata search --engine-dir DIR --collection NAME`: through the engine and its planner.
struct EngineSearchArgs {
  std::string dir, collection, filter, strategy = "auto";
  double recall = 0;
  bool explain = false;
  uint32_t ef = 0, max_lists = 0;
  int threads = 1;  // > 1 or 0 (all cores): also time Engine::SearchBatch over that many threads
};

int RunEngineSearch(const EngineSearchArgs& a, const QueryArgs& q);

// plot (cmd_plot.cc): recall@k against QPS (log), one Pareto curve per run, index or peer.
struct PlotArgs {
  std::vector<std::string> inputs;  // JSON lines files
  std::string out;                  // .svg or .png
  std::string title;                // "" = from the results
  std::string machine;              // "" = this machine
  std::string qps_key = "auto";
};
int RunPlot(const PlotArgs& a);

// Checks made before any long work (cmd_validate.cc): input files exist, outputs can be
// written, values parse. InvalidArgument naming the flag; main() exits with status 2.
Status CheckDataArgs(DataArgs a, bool need_queries);
Status CheckBenchData(const DataArgs& a);
Status CheckGt(const DataArgs& a, const std::string& out, const std::string& compare);
// Also resolves --memory-budget (bytes or a share) into topt.memory_budget (a share).
Status CheckBench(DataArgs a, const std::string& kind, const std::string& budget, const std::string& json_path,
                  TargetOptions& topt);
// Also resolves --memory-budget: into topt (SPANN file) or into.memory_budget_bytes (--into).
Status CheckBuild(DataArgs a, const std::string& kind, const std::string& out, BuildIntoArgs& into,
                  const std::string& budget, TargetOptions& topt);
Status CheckSearch(const std::string& index_or_dir, const QueryArgs& q);
// --strategy (engine searches) and --io (SPANN) name known values.
Status CheckSearchOptions(const std::string& strategy, const std::string& io);
Status CheckPlot(const PlotArgs& a);

// inspect (cmd_inspect.cc): describe and validate a Strata file or SPANN directory.
// json: one JSON object on stdout instead of the text.
int RunInspect(const std::string& path, bool json);

// restore (cmd_restore.cc): a snapshot copied into a new or empty data directory and opened to
// check it (tools/restore.h); refusals exit with status 2. `json`: one JSON object on stdout.
int RunRestore(const std::string& snapshot, const std::string& into, bool json);

}  // namespace strata::tools::cmd
