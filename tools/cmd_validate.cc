// Checks of the command line made before any long work starts (issue 13): every input file
// exists, every output can be written, every value parses. Each returns InvalidArgument
// naming the flag; main() turns it into a usage error (exit status 2).

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "api/types.h"
#include "core/byte_size.h"
#include "index/spann/spann_index.h"
#include "storage/block_io.h"
#include "storage/dataset_io.h"
#include "tools/commands.h"

namespace strata::tools::cmd {
namespace fs = std::filesystem;
namespace {

// The status of a Result, with `what` in front of an error.
template <typename T>
Status Checked(const Result<T>& r, const std::string& what) {
  return r.has_value() ? Status::Ok() : r.error().WithContext(what);
}

// An input file (or, with `dir_ok`, folder) that must exist.
Status CheckInput(const std::string& path, const std::string& what, bool dir_ok = false) {
  std::error_code ec;
  if (path.empty()) return InvalidArgument("{}: empty path", what);
  if (!fs::exists(path, ec)) return InvalidArgument("{} {}: no such file", what, path);
  if (!dir_ok && fs::is_directory(path, ec)) return InvalidArgument("{} {}: is a directory", what, path);
  return Status::Ok();
}

// The raw float32 bytes of a vector file (its header only is read).
Result<uint64_t> RawVectorBytes(const std::string& path) {
  STRATA_ASSIGN_OR_RETURN(storage::DatasetShape shape, storage::ProbeVectors(path));
  return uint64_t(shape.rows) * shape.dim * sizeof(float);
}

// SPANN's in-memory share when --memory-budget is not given: 20%, or 10% with codes. Lists of
// codes are half the bytes, so fewer, larger lists (fewer heads) fit the same reads: on GloVe-100
// at recall@10 0.95 a 10% index reads about 120 lists (860 KiB) where a 20% one reads about 175
// (730 KiB), and a query's time goes with its reads (docs/BENCHMARKS.md, section 12).
std::string DefaultSpannBudget(const TargetOptions& topt) {
  const double share =
      index::SpannDefaultBudgetFraction(topt.codes == "sq8" ? index::CodesKind::kSq8 : index::CodesKind::kNone);
  return fmt::format("{}%", std::lround(share * 100));
}

// --memory-budget as SPANN's in-memory share of the raw vectors of `base` (empty: the default).
Status ResolveSpannBudget(const std::string& given, const std::string& base, TargetOptions& topt) {
  const std::string text = given.empty() ? DefaultSpannBudget(topt) : given;
  auto budget = ParseMemoryBudget(text);
  if (!budget) return budget.error().WithContext("--memory-budget");
  if (budget->is_share()) {
    topt.memory_budget = budget->share;
    return Status::Ok();
  }
  STRATA_ASSIGN_OR_RETURN(uint64_t raw, RawVectorBytes(base));
  if (budget->bytes == 0 || raw == 0) return InvalidArgument("--memory-budget {}: must be above 0", text);
  topt.memory_budget = std::min(1.0, double(budget->bytes) / double(raw));
  return Status::Ok();
}

}  // namespace

int Usage(const Status& s) {
  fmt::print(stderr, "strata: error: {} (see --help)\n", s.message());
  return 2;
}

std::string ParseErrorText(const CLI::ParseError& e, const CLI::App& app, int argc, char** argv) {
  std::string what = e.what();
  if (app.get_subcommands().empty()) {
    // CLI11 says only "a subcommand is required"; name the word it did not know.
    for (int i = 1; i < argc; ++i) {
      const std::string word = argv[i];
      if (word.empty() || word[0] == '-') {
        if (word == "--simd") ++i;  // takes a value
        continue;
      }
      what = fmt::format("unknown subcommand '{}'", word);
      break;
    }
  }
  std::replace(what.begin(), what.end(), '\n', ' ');
  return what;
}

Status CheckDataArgs(DataArgs a, bool need_queries) {
  if (!a.metric.empty()) STRATA_RETURN_IF_ERROR(Checked(ParseMetric(a.metric), "--metric"));
  if (!a.dataset.empty()) {
    // Resolves the data set's files (NotFound, with the fetch command, when absent).
    STRATA_RETURN_IF_ERROR(ResolveDataArgs(a, false));
  } else {
    if (a.base.empty()) return InvalidArgument("give --dataset, or --base with --metric");
    if (need_queries && a.queries.empty()) return InvalidArgument("give --dataset, or both --base and --queries");
    if (a.metric.empty()) return InvalidArgument("--metric is required with --base");
  }
  STRATA_RETURN_IF_ERROR(CheckInput(a.base, "--base"));
  if (need_queries) STRATA_RETURN_IF_ERROR(CheckInput(a.queries, "--queries"));
  if (!a.gt.empty()) STRATA_RETURN_IF_ERROR(CheckInput(a.gt, "--gt"));
  return Status::Ok();
}

Status CheckBenchData(const DataArgs& a) { return CheckDataArgs(a, true); }

Status CheckGt(const DataArgs& a, const std::string& out, const std::string& compare) {
  STRATA_RETURN_IF_ERROR(CheckDataArgs(a, true));
  if (!out.empty()) STRATA_RETURN_IF_ERROR(CheckOutputPath(out, "--out"));
  if (out.empty() && a.dataset.empty()) return InvalidArgument("--out is required with --base/--queries");
  if (!compare.empty()) STRATA_RETURN_IF_ERROR(CheckInput(compare, "--compare"));
  return Status::Ok();
}

Status CheckBench(DataArgs a, const std::string& kind, const std::string& budget, const std::string& json_path,
                  TargetOptions& topt) {
  if (kind != "flat" && kind != "hnsw" && kind != "spann") {
    return InvalidArgument("--index {}: expected flat, hnsw or spann", kind);
  }
  STRATA_RETURN_IF_ERROR(CheckDataArgs(a, true));
  STRATA_RETURN_IF_ERROR(ResolveDataArgs(a, false));
  if (!json_path.empty()) STRATA_RETURN_IF_ERROR(CheckOutputPath(json_path, "--json"));
  if (!topt.save_path.empty()) STRATA_RETURN_IF_ERROR(CheckOutputPath(topt.save_path, "--save"));
  if (!topt.load_path.empty()) STRATA_RETURN_IF_ERROR(CheckInput(topt.load_path, "--load", true));
  if (topt.refined_codes && (kind != "hnsw" || topt.load_path.empty())) {
    return InvalidArgument("--refined-codes is an option of loading a saved HNSW index with codes (--index hnsw --load FILE)");
  }
  if (std::any_of(topt.ef_values.begin(), topt.ef_values.end(), [](uint32_t v) { return v == 0; })) {
    return InvalidArgument("--ef: values must be at least 1");
  }
  if (std::any_of(topt.max_lists.begin(), topt.max_lists.end(), [](uint32_t v) { return v == 0; })) {
    return InvalidArgument("--max-lists: values must be at least 1");
  }
  if (topt.deletes < 0 || topt.deletes >= 1) return InvalidArgument("--deletes {}: a share in [0, 1)", topt.deletes);
  for (double f : topt.selectivities) {
    if (!(f > 0 && f <= 1)) return InvalidArgument("--filter {}: selectivities are shares in (0, 1]", f);
  }
  STRATA_RETURN_IF_ERROR(Checked(storage::ParseIoBackend(topt.io_backend), "--io"));
  return ResolveSpannBudget(budget, a.base, topt);
}

Status CheckBuild(DataArgs a, const std::string& kind, const std::string& out, BuildIntoArgs& into,
                  const std::string& budget, TargetOptions& topt) {
  STRATA_RETURN_IF_ERROR(CheckDataArgs(a, false));
  if (!a.dataset.empty()) STRATA_RETURN_IF_ERROR(ResolveDataArgs(a, false));
  if (into.data_dir.empty()) {
    if (kind != "hnsw" && kind != "spann") {
      return InvalidArgument("--index {}: only hnsw and spann indexes are built into files", kind);
    }
    std::error_code ec;
    if (kind == "spann" && fs::exists(out, ec)) {
      return InvalidArgument("-o {}: exists; a SPANN index is written into a new directory", out);
    }
    STRATA_RETURN_IF_ERROR(CheckOutputPath(out, "-o"));
    return ResolveSpannBudget(budget, a.base, topt);
  }
  if (into.collection.empty()) return InvalidArgument("--collection: empty name");
  if (!into.attributes.empty()) STRATA_RETURN_IF_ERROR(CheckInput(into.attributes, "--attributes"));
  std::error_code ec;
  if (fs::exists(into.data_dir, ec) && !fs::is_directory(into.data_dir, ec)) {
    return InvalidArgument("--into {}: not a directory", into.data_dir);
  }
  if (!budget.empty()) {
    auto b = ParseMemoryBudget(budget);
    if (!b) return b.error().WithContext("--memory-budget");
    STRATA_ASSIGN_OR_RETURN(uint64_t raw, RawVectorBytes(a.base));
    into.memory_budget_bytes = b->BytesFor(raw);
  }
  return Status::Ok();
}

Status CheckSearch(const std::string& index_or_dir, const QueryArgs& q) {
  STRATA_RETURN_IF_ERROR(CheckInput(index_or_dir, "--index", true));
  STRATA_RETURN_IF_ERROR(CheckInput(q.queries, "--queries"));
  if (!q.base.empty()) STRATA_RETURN_IF_ERROR(CheckInput(q.base, "--base"));
  if (q.gt == "auto" && q.base.empty()) {
    return InvalidArgument("--gt auto needs --base (the vectors the index holds)");
  }
  if (!q.gt.empty() && q.gt != "auto") STRATA_RETURN_IF_ERROR(CheckInput(q.gt, "--gt"));
  if (!q.json_path.empty()) STRATA_RETURN_IF_ERROR(CheckOutputPath(q.json_path, "--json"));
  return Status::Ok();
}

Status CheckSearchOptions(const std::string& strategy, const std::string& io) {
  STRATA_RETURN_IF_ERROR(Checked(ParseSearchStrategy(strategy), "--strategy"));
  return Checked(storage::ParseIoBackend(io), "--io");
}

Status CheckPlot(const PlotArgs& a) {
  for (const std::string& in : a.inputs) STRATA_RETURN_IF_ERROR(CheckInput(in, "results file"));
  const std::string ext = fs::path(a.out).extension().string();
  if (ext != ".svg" && ext != ".png") return InvalidArgument("-o {}: the name must end in .svg or .png", a.out);
  STRATA_RETURN_IF_ERROR(CheckOutputPath(a.out, "-o"));
  if (a.qps_key != "auto" && a.qps_key != "qps_1t" && a.qps_key != "qps_all" && a.qps_key != "qps") {
    return InvalidArgument("--qps {}: expected auto, qps_1t, qps_all or qps", a.qps_key);
  }
  return Status::Ok();
}

}  // namespace strata::tools::cmd
