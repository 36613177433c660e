// The `strata` command run as a user runs it (issue 13): .npy inputs of other dtypes, ground
// truth computed and cached when none is given, usage errors (status 2) refused before any
// long work, global flags after the subcommand, `plot`. Small synthetic data; each test runs
// the binary a few times on a few hundred rows (well under a second each).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/vector_set.h"
#include "engine/strata.h"
#include "index/hnsw/hnsw_index.h"
#include "storage/dataset_io.h"
#include "tools/gt_cache.h"
#include "tools/plot.h"

namespace strata::tools {
namespace {
namespace fs = std::filesystem;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// An .npy of n x dim doubles (NumPy 1.0, C order), written as NumPy writes it.
void WriteNpyF64(const fs::path& path, const std::vector<double>& values, size_t n, size_t dim) {
  std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (" + std::to_string(n) + ", " +
                     std::to_string(dim) + "), }";
  const size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = uint16_t(dict.size());
  out.write(reinterpret_cast<const char*>(&len), 2);
  out.write(dict.data(), std::streamsize(dict.size()));
  out.write(reinterpret_cast<const char*>(values.data()), std::streamsize(values.size() * sizeof(double)));
}

class StrataCliTest : public ::testing::Test {
 protected:
  static constexpr size_t kRows = 400, kQueries = 20, kDim = 8;

  void SetUp() override {
    root_ = fs::temp_directory_path() / ("strata_cli_test_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    std::mt19937 rng(13);
    std::uniform_real_distribution<double> u(-1, 1);
    base_.resize(kRows * kDim);
    queries_.resize(kQueries * kDim);
    for (double& v : base_) v = u(rng);
    for (double& v : queries_) v = u(rng);
    VectorSet b = *VectorSet::Create(kRows, kDim), q = *VectorSet::Create(kQueries, kDim);
    for (size_t i = 0; i < kRows * kDim; ++i) b.mutable_row(i / kDim)[i % kDim] = float(base_[i]);
    for (size_t i = 0; i < kQueries * kDim; ++i) q.mutable_row(i / kDim)[i % kDim] = float(queries_[i]);
    ASSERT_TRUE(storage::WriteVectors(root_ / "base.fbin", b).ok());
    ASSERT_TRUE(storage::WriteVectors(root_ / "query.fbin", q).ok());
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  struct Run {
    int exit_code = -1;
    std::string out, err;
  };
  // Runs `strata ARGS` (a shell word list) with stdout and stderr captured apart.
  Run Strata(const std::string& args) const {
    const fs::path out = root_ / "stdout.txt", err = root_ / "stderr.txt";
    const std::string cmd = std::string("'") + STRATA_BINARY + "' " + args + " >'" + out.string() + "' 2>'" +
                            err.string() + "'";
    Run run;
    const int status = std::system(cmd.c_str());
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    run.out = Slurp(out);
    run.err = Slurp(err);
    fs::remove(out);
    fs::remove(err);
    return run;
  }
  std::string P(const std::string& name) const { return "'" + (root_ / name).string() + "'"; }

  fs::path root_;
  std::vector<double> base_, queries_;
};

// A float64 .npy is read wherever vectors are (here: gt and dataset info), converted to float32
// with a note on stderr, and gives the same answer as the float32 file.
TEST_F(StrataCliTest, Float64NpyIsConvertedWithANote) {
  WriteNpyF64(root_ / "base64.npy", base_, kRows, kDim);
  const Run info = Strata("dataset info " + P("base64.npy"));
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("400 rows x 8 dim (npy, float64)"), std::string::npos) << info.out;

  const Run a = Strata("-q gt --base " + P("base64.npy") + " --queries " + P("query.fbin") +
                       " --metric l2 --k 5 --out " + P("a.ibin"));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_NE(a.err.find("base64.npy holds float64 values; converted to float32"), std::string::npos) << a.err;
  const Run b = Strata("-q gt --base " + P("base.fbin") + " --queries " + P("query.fbin") +
                       " --metric l2 --k 5 --out " + P("b.ibin"));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(b.err.find("converted"), std::string::npos) << b.err;
  auto ga = storage::ReadGroundTruth(root_ / "a.ibin");
  auto gb = storage::ReadGroundTruth(root_ / "b.ibin");
  ASSERT_TRUE(ga && gb);
  EXPECT_EQ(ga->ids, gb->ids);
}


// bench with --base/--queries and no --gt computes exact ground truth once, caches it next to
// the base under a name made of the data, metric and k, and reuses it on the next run.
TEST_F(StrataCliTest, BenchComputesGroundTruthOnceAndCachesIt) {
  const std::string args = "bench --index flat --base " + P("base.fbin") + " --queries " + P("query.fbin") +
                           " --metric l2 --k 5 --threads 1";
  const Run first = Strata(args);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const fs::path cache = root_ / "base.query.gt_l2_k100.ibin";
  EXPECT_EQ(GroundTruthCachePath(root_ / "base.fbin", root_ / "query.fbin", Metric::kL2, 5), cache);
  ASSERT_TRUE(fs::exists(cache)) << first.err;
  ASSERT_TRUE(fs::exists(cache.string() + ".strata.json"));
  EXPECT_NE(first.err.find("computing the exact top-100"), std::string::npos) << first.err;
  // Flat search is exact: recall 1 against the computed ground truth.
  EXPECT_NE(first.out.find("\"recall\":1.0"), std::string::npos) << first.out;
  const auto mtime = fs::last_write_time(cache);
  const Run second = Strata(args);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_NE(second.err.find("from the cache"), std::string::npos) << second.err;
  EXPECT_EQ(second.err.find("computing"), std::string::npos) << second.err;
  EXPECT_EQ(fs::last_write_time(cache), mtime);
  // The cached file is the exact top-100 (as `strata gt` computes it).
  const Run gt = Strata("-q gt --base " + P("base.fbin") + " --queries " + P("query.fbin") +
                        " --metric l2 --k 100 --out " + P("ref.ibin"));
  ASSERT_EQ(gt.exit_code, 0) << gt.err;
  EXPECT_EQ(storage::ReadGroundTruth(cache)->ids, storage::ReadGroundTruth(root_ / "ref.ibin")->ids);
}

// A file at the cache's name that strata did not write is neither read nor overwritten.
TEST_F(StrataCliTest, GroundTruthCacheNeverOverwritesAForeignFile) {
  const fs::path cache = root_ / "base.query.gt_l2_k100.ibin";
  { std::ofstream(cache) << "someone else's file"; }
  const Run run = Strata("bench --index flat --base " + P("base.fbin") + " --queries " + P("query.fbin") +
                         " --metric l2 --k 5 --threads 1");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("was not written by strata"), std::string::npos) << run.err;
  EXPECT_EQ(Slurp(cache), "someone else's file");
  EXPECT_FALSE(fs::exists(cache.string() + ".strata.json"));
}

// search --gt alone (or --gt auto) scores recall against the cached exact ground truth of --base.
TEST_F(StrataCliTest, SearchGtAutoAndJson) {
  const Run build = Strata("-q build --index hnsw --base " + P("base.fbin") + " --metric l2 -o " + P("i.hnsw"));
  ASSERT_EQ(build.exit_code, 0) << build.err;
  const Run run = Strata("search --index " + P("i.hnsw") + " --queries " + P("query.fbin") + " --base " +
                         P("base.fbin") + " --k 5 --ef 200 --gt --json --show 2");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ASSERT_TRUE(fs::exists(root_ / "base.query.gt_l2_k100.ibin"));
  // --json: only JSON lines on stdout: two queries' results, then the summary.
  std::istringstream lines(run.out);
  std::vector<nlohmann::json> objs;
  for (std::string line; std::getline(lines, line);) objs.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(objs.size(), 3u) << run.out;
  EXPECT_EQ(objs[0]["query"], 0);
  EXPECT_EQ(objs[0]["ids"].size(), 5u);
  EXPECT_EQ(objs[1]["query"], 1);
  EXPECT_EQ(objs[2]["queries"], kQueries);
  EXPECT_GT(objs[2]["recall"].get<double>(), 0.9);
  // --json=FILE: JSON lines appended to the file, the text on stdout.
  const Run text = Strata("search --index " + P("i.hnsw") + " --queries " + P("query.fbin") +
                          " --k 5 --json=" + P("out.jsonl"));
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("query 0:"), std::string::npos) << text.out;
  EXPECT_NE(Slurp(root_ / "out.jsonl").find("\"qps_1t\""), std::string::npos);
}

// Usage errors exit with status 2 and one line on stderr, before any work: nothing is built or
// written.
TEST_F(StrataCliTest, UsageErrorsExitWithStatus2BeforeAnyWork) {
  const std::string data = " --base " + P("base.fbin") + " --queries " + P("query.fbin");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"frobnicate", "unknown subcommand 'frobnicate'"},
      {"bench --no-such-flag", "--no-such-flag"},
      {"bench --index flat" + data + " --metric hamming", "unknown metric"},
      {"bench --index flat" + data + " --metric l2 --k 0", "--k"},
      {"bench --index annoy" + data + " --metric l2", "--index annoy"},
      {"bench --index spann" + data + " --metric l2 --memory-budget 0.2", "20%"},
      {"bench --index flat --base " + P("missing.fbin") + " --queries " + P("query.fbin") + " --metric l2",
       "missing.fbin: no such file"},
      {"bench --index flat" + data + " --metric l2 --json " + P("no/such/dir/r.jsonl"), "does not exist"},
      {"build --index hnsw --base " + P("base.fbin") + " --metric l2 -o " + P("no/such/dir/i.hnsw"),
       "does not exist"},
      {"build --index hnsw --base " + P("base.fbin") + " --metric l2", "give -o FILE"},
      {"gt" + data + " --metric l2 --out " + P("."), "is a directory"},
      {"search --index " + P("none.hnsw") + " --queries " + P("query.fbin"), "none.hnsw: no such file"},
      {"search --index " + P("base.fbin") + " --queries " + P("query.fbin") + " --io aio", "--io"},
      {"search --engine-dir " + P("e") + " --collection c --queries " + P("query.fbin") + " --strategy fast",
       "--strategy"},
      {"plot " + P("none.jsonl") + " -o " + P("p.svg"), "none.jsonl: no such file"},
      {"--simd avx9 dataset list", "--simd"},
      {"dataset import-glove --query-ids " + P("q.txt") + " --out-dir " + P("g"), "--embeddings is required"},
      {"build --base " + P("base.fbin") + " --metric l2 --into " + P("e") + " --memory-budget 2X", "suffix"},
      // A directory holding others' files: refused before the data is read or ground truth computed.
      {"engine-bench" + data + " --metric l2 --engine-dir '" + root_.string() + "'", "carries no .strata-scratch"},
      {"planner-bench" + data + " --metric l2 --engine-dir " + P("query.fbin"), "not a directory"},
  };
  for (const auto& [args, part] : cases) {
    const Run run = Strata(args);
    EXPECT_EQ(run.exit_code, 2) << args << ": " << run.err;
    EXPECT_NE(run.err.find(part), std::string::npos) << args << ": " << run.err;
    EXPECT_EQ(run.err.find('\n'), run.err.size() - 1) << args << ": " << run.err;
  }
  // Nothing was written next to the data (no ground-truth cache, no index).
  for (const auto& e : fs::directory_iterator(root_)) {
    const std::string name = e.path().filename().string();
    EXPECT_TRUE(name == "base.fbin" || name == "query.fbin") << name;
  }
  // strata-server refuses a bad flag the same way.
  const std::string server = std::string("'") + STRATA_SERVER_BINARY + "' --no-such-flag >/dev/null 2>&1";
  const int status = std::system(server.c_str());
  EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 2);
}

// Global flags go before or after the subcommand; `bench --json` alone puts only JSON lines on
// stdout; `bench --load` opens (and does not say "building").
TEST_F(StrataCliTest, GlobalFlagsAfterTheSubcommandAndBenchJsonAndLoad) {
  const Run quiet_after = Strata("dataset info " + P("base.fbin") + " --quiet --simd scalar");
  EXPECT_EQ(quiet_after.exit_code, 0) << quiet_after.err;
  const std::string args = "bench --index hnsw --base " + P("base.fbin") + " --queries " + P("query.fbin") +
                           " --metric l2 --k 5 --threads 1 --ef 16,64";
  const Run built = Strata(args + " --save " + P("b.hnsw") + " --json -q");
  ASSERT_EQ(built.exit_code, 0) << built.err;
  std::istringstream lines(built.out);
  size_t n = 0;
  for (std::string line; std::getline(lines, line); ++n) {
    const auto j = nlohmann::json::parse(line);  // every line is JSON
    EXPECT_EQ(j["index"], "hnsw");
  }
  EXPECT_EQ(n, 2u) << built.out;
  EXPECT_NE(built.err.find("building hnsw"), std::string::npos) << built.err;
  const Run loaded = Strata(args + " --load " + P("b.hnsw"));
  ASSERT_EQ(loaded.exit_code, 0) << loaded.err;
  EXPECT_EQ(loaded.err.find("building"), std::string::npos) << loaded.err;
  EXPECT_NE(loaded.err.find("opening hnsw"), std::string::npos) << loaded.err;
  EXPECT_NE(loaded.out.find("\"loaded\":true"), std::string::npos);
}

// build --into reports the progress of the bulk load's index build and calibration on stderr
// (on a terminal with an ETA; here, not a terminal, one summary line each), and -q silences it.
TEST_F(StrataCliTest, BuildIntoReportsProgressUnlessQuiet) {
  constexpr size_t kBig = 2500;  // past the engine's calibration threshold (2,000 rows)
  VectorSet big = *VectorSet::Create(kBig, kDim);
  std::mt19937 rng(5);
  std::normal_distribution<float> g;
  for (size_t i = 0; i < kBig; ++i)
    for (size_t j = 0; j < kDim; ++j) big.mutable_row(i)[j] = g(rng);
  ASSERT_TRUE(storage::WriteVectors(root_ / "big.fbin", big).ok());
  const Run loud = Strata("build --base " + P("big.fbin") + " --metric l2 --into " + P("eng1") + " --collection c");
  ASSERT_EQ(loud.exit_code, 0) << loud.err;
  EXPECT_NE(loud.err.find("hnsw build: "), std::string::npos) << loud.err;
  EXPECT_NE(loud.err.find("calibration: "), std::string::npos) << loud.err;
  EXPECT_EQ(loud.err.find("building"), std::string::npos) << loud.err;
  // (--memory-budget-bytes: the old name of --memory-budget with --into, still accepted.)
  const Run quiet = Strata("build --base " + P("big.fbin") + " --metric l2 --into " + P("eng2") +
                           " --collection c -q --memory-budget-bytes 1G");
  ASSERT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.err.find("hnsw build: "), std::string::npos) << quiet.err;
  EXPECT_EQ(quiet.err.find("calibration: "), std::string::npos) << quiet.err;
  EXPECT_NE(quiet.out.find("loaded 2500 vectors"), std::string::npos) << quiet.out;
}

// build --into --codes sq8 makes codes the collection's own: the spec keeps them (so later
// seals and compactions use them too) and the bulk-loaded segment carries them.
TEST_F(StrataCliTest, BuildIntoWithCodesMakesThemTheCollections) {
  const Run r = Strata("-q build --base " + P("base.fbin") + " --metric l2 --into " + P("engc") +
                       " --collection c --codes sq8 --rerank 25");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto engine = Engine::Open(root_ / "engc");
  ASSERT_TRUE(engine.has_value()) << engine.error().ToString();
  auto info = (*engine)->DescribeCollection("c");
  ASSERT_TRUE(info.has_value()) << info.error().ToString();
  EXPECT_EQ(info->spec.codes, VectorCodes::kSq8);
  EXPECT_EQ(info->spec.rerank, 25u);
  auto graph = index::HnswIndex::Load(root_ / "engc" / "collections" / std::to_string(info->id) / "seg-1" /
                                      "index.hnsw");
  ASSERT_TRUE(graph.has_value()) << graph.error().ToString();
  EXPECT_EQ((*graph)->options().codes, index::CodesKind::kSq8);
}

// search --refined-codes: a saved index with codes answers with about the recall of its
// full-vector reranks; an index without codes, or bench without --load, is told why.
TEST_F(StrataCliTest, SearchWithRefinedCodes) {
  ASSERT_EQ(Strata("-q build --base " + P("base.fbin") + " --metric l2 --codes sq8 -o " + P("c.hnsw")).exit_code, 0);
  ASSERT_EQ(Strata("-q build --base " + P("base.fbin") + " --metric l2 -o " + P("f.hnsw")).exit_code, 0);
  const std::string common = " --queries " + P("query.fbin") + " --base " + P("base.fbin") + " --gt auto --json";
  const Run refined = Strata("search --index " + P("c.hnsw") + " --refined-codes" + common);
  ASSERT_EQ(refined.exit_code, 0) << refined.err;
  const Run full = Strata("search --index " + P("c.hnsw") + common);
  ASSERT_EQ(full.exit_code, 0) << full.err;
  // JSON Lines: the summary comes last.
  auto summary = [](const std::string& out) {
    const size_t end = out.find_last_not_of('\n');
    const size_t start = out.rfind('\n', end);
    return nlohmann::json::parse(out.substr(start == std::string::npos ? 0 : start + 1));
  };
  const auto a = summary(refined.out), b = summary(full.out);
  EXPECT_TRUE(a["refined_codes"].get<bool>());
  EXPECT_GE(a["recall"].get<double>(), b["recall"].get<double>() - 0.02);
  EXPECT_GT(a["index_memory_mb"].get<double>(), 0);
  const Run no_codes = Strata("search --index " + P("f.hnsw") + " --refined-codes" + common);
  EXPECT_EQ(no_codes.exit_code, 1);
  EXPECT_NE(no_codes.err.find("has no codes"), std::string::npos) << no_codes.err;
  const Run bench = Strata("bench --index hnsw --refined-codes --base " + P("base.fbin") + " --queries " +
                           P("query.fbin") + " --metric l2");
  EXPECT_EQ(bench.exit_code, 2);
  EXPECT_NE(bench.err.find("--refined-codes"), std::string::npos) << bench.err;
}

// SPANN searches take the head search's ef and the rerank depth; both are refused (exit 2)
// where they mean nothing, and --rerank on an index without codes fails naming it.
TEST_F(StrataCliTest, SpannSearchHeadEfAndRerank) {
  ASSERT_EQ(Strata("-q build --index spann --base " + P("base.fbin") + " --metric l2 --codes sq8 -o " + P("c.spann"))
                .exit_code,
            0);
  ASSERT_EQ(Strata("-q build --index spann --base " + P("base.fbin") + " --metric l2 -o " + P("f.spann")).exit_code, 0);
  ASSERT_EQ(Strata("-q build --base " + P("base.fbin") + " --metric l2 -o " + P("f.hnsw")).exit_code, 0);
  const std::string common = " --queries " + P("query.fbin") + " --base " + P("base.fbin") + " --gt auto --json";
  auto summary = [](const std::string& out) {
    const size_t end = out.find_last_not_of('\n');
    const size_t start = out.rfind('\n', end);
    return nlohmann::json::parse(out.substr(start == std::string::npos ? 0 : start + 1));
  };
  const Run narrow = Strata("search --index " + P("c.spann") + " --max-lists 8 --head-ef 8 --rerank 10" + common);
  ASSERT_EQ(narrow.exit_code, 0) << narrow.err;
  const Run wide = Strata("search --index " + P("c.spann") + " --max-lists 8 --head-ef 64 --rerank 40" + common);
  ASSERT_EQ(wide.exit_code, 0) << wide.err;
  const auto a = summary(narrow.out), b = summary(wide.out);
  EXPECT_EQ(a["head_ef"], 8);
  EXPECT_EQ(a["rerank"], 10);
  EXPECT_EQ(b["head_ef"], 64);
  EXPECT_GE(b["recall"].get<double>(), a["recall"].get<double>() - 0.02);
  const Run no_codes = Strata("search --index " + P("f.spann") + " --rerank 20" + common);
  EXPECT_EQ(no_codes.exit_code, 1);
  EXPECT_NE(no_codes.err.find("has no codes"), std::string::npos) << no_codes.err;
  for (const std::string& args : {"search --index " + P("f.hnsw") + " --head-ef 100" + common,
                                  "search --engine-dir " + P("e") + " --collection c --rerank 5" + common}) {
    const Run r = Strata(args);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_NE(r.err.find("SPANN"), std::string::npos) << args << ": " << r.err;
  }
  // inspect --json says what the codes are and where the full vectors live.
  const Run ins = Strata("inspect " + P("c.spann") + " --json");
  ASSERT_EQ(ins.exit_code, 0) << ins.err;
  const auto j = nlohmann::json::parse(ins.out);
  EXPECT_EQ(j["codes"], "sq8");
  EXPECT_EQ(j["posting_vectors"], "none");
  EXPECT_EQ(j["full_vectors"], "FULL section");  // random floats: the codes are not exact
  EXPECT_GT(j["full_section_bytes"].get<uint64_t>(), 0u);
  // With codes the heads are codes too, unless --no-head-codes; without codes, float16.
  EXPECT_EQ(j["heads"], "sq8");
  ASSERT_EQ(Strata("-q build --index spann --base " + P("base.fbin") + " --metric l2 --codes sq8 --no-head-codes -o " +
                   P("h.spann"))
                .exit_code,
            0);
  for (const auto& [index, heads] : {std::pair<std::string, const char*>{"h.spann", "float16"}, {"f.spann", "float16"}}) {
    const Run r = Strata("inspect " + P(index) + " --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["heads"], heads) << index;
  }
  const Run both = Strata("-q build --index spann --base " + P("base.fbin") +
                          " --metric l2 --codes sq8 --head-codes --no-head-codes -o " + P("x.spann"));
  EXPECT_EQ(both.exit_code, 2) << both.err;
}

// Every command that prints results takes --json: gt, inspect (an index, a data set),
// dataset info and dataset list print JSON on stdout instead of the text (issue 13).
TEST_F(StrataCliTest, JsonOnEveryCommandThatPrintsResults) {
  auto parse = [](const Run& r) {
    EXPECT_EQ(r.exit_code, 0) << r.err;
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out;
    return j;
  };
  nlohmann::json j = parse(Strata("dataset info " + P("base.fbin") + " --json"));
  EXPECT_EQ(j["rows"], kRows);
  EXPECT_EQ(j["dim"], kDim);
  EXPECT_EQ(j["format"], "fbin");
  EXPECT_EQ(j["value_type"], "float32");

  const Run list = Strata("dataset list --json");
  ASSERT_EQ(list.exit_code, 0) << list.err;
  std::istringstream lines(list.out);
  size_t n = 0;
  for (std::string line; std::getline(lines, line); ++n) {
    nlohmann::json d = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(d.is_discarded()) << line;
    EXPECT_TRUE(d.contains("name") && d.contains("metric")) << line;
  }
  EXPECT_GE(n, 2u);

  const std::string gt = "-q gt --base " + P("base.fbin") + " --queries " + P("query.fbin") + " --metric l2 --k 5";
  ASSERT_EQ(Strata(gt + " --out " + P("ref.ibin")).exit_code, 0);
  j = parse(Strata(gt + " --out " + P("gt.ibin") + " --json --compare " + P("ref.ibin") + " --compare-k 5"));
  EXPECT_EQ(j["queries"], kQueries);
  EXPECT_EQ(j["k"], 5);
  EXPECT_EQ(j["metric"], "l2");
  EXPECT_EQ(j["compare"]["recall"], 1.0);
  EXPECT_TRUE(fs::exists(root_ / "gt.ibin"));

  j = parse(Strata("-q build --index hnsw --base " + P("base.fbin") + " --metric l2 -o " + P("i.hnsw") + " --json"));
  EXPECT_EQ(j["index"], "hnsw");
  EXPECT_EQ(j["vectors"], kRows);
  j = parse(Strata("-q build --base " + P("base.fbin") + " --metric l2 --into " + P("eng") + " --collection c --json"));
  EXPECT_EQ(j["collection"], "c");
  EXPECT_EQ(j["vectors"], kRows);
  j = parse(Strata("inspect " + P("i.hnsw") + " --json"));
  EXPECT_EQ(j["kind"], "hnsw");
  EXPECT_EQ(j["nodes"], kRows);
  EXPECT_EQ(j["metric"], "l2");
  EXPECT_FALSE(j["sections"].empty());
  j = parse(Strata("inspect " + P("base.fbin") + " --json"));
  EXPECT_EQ(j["kind"], "dataset");
  EXPECT_EQ(j["rows"], kRows);
}

TEST(PlotData, ParetoFrontierDropsDominatedPoints) {
  const std::vector<PlotPoint> pts = {{0.5, 1000, "a"}, {0.7, 800, "b"}, {0.6, 500, "c"},
                                      {0.9, 300, "d"}, {0.8, 100, "e"},  {0.99, 50, "f"}};
  const auto f = ParetoFrontier(pts);
  std::vector<std::string> labels;
  for (const auto& p : f) labels.push_back(p.label);
  EXPECT_EQ(labels, (std::vector<std::string>{"a", "b", "d", "f"}));
}

// One series per index, library or system+mode; "JSON " prefixes and other lines are skipped;
// the same index from a second file is a second run.
TEST_F(StrataCliTest, PlotReadsEveryResultFormat) {
  { std::ofstream(root_ / "bench.jsonl")
        << "{\"dataset\":\"synth\",\"index\":\"hnsw\",\"metric\":\"l2\",\"k\":10,\"params\":{\"ef\":16},"
           "\"recall\":0.8,\"qps_1t\":5000,\"qps_all\":9000}\n"
        << "JSON {\"dataset\":\"synth\",\"index\":\"hnsw\",\"params\":{\"ef\":64},\"recall\":0.95,\"qps_1t\":2000}\n"
        << "index params recall  (a table line)\n"; }
  { std::ofstream(root_ / "peers.jsonl")
        << "{\"base\":\"data/synth/base.fbin\",\"lib\":\"hnswlib\",\"ef\":16,\"recall\":0.79,\"qps\":4500}\n"
        << "{\"base\":\"data/synth/base.fbin\",\"lib\":\"hnswlib\",\"build_s\":3.0}\n"
        << "JSON {\"system\":\"faiss\",\"mode\":\"cold\",\"nprobe\":8,\"recall\":0.7,\"qps\":300}\n"
        << "JSON {\"summary\":true,\"target_recall\":0.9}\n"; }
  { std::ofstream(root_ / "bench2.jsonl")
        << "{\"index\":\"hnsw\",\"params\":{\"ef\":16},\"recall\":0.81,\"qps_1t\":5100}\n"; }
  auto data = LoadPlotData({(root_ / "bench.jsonl").string(), (root_ / "peers.jsonl").string(),
                            (root_ / "bench2.jsonl").string()}, "auto");
  ASSERT_TRUE(data.has_value()) << data.error().ToString();
  ASSERT_EQ(data->series.size(), 4u);
  EXPECT_EQ(data->series[0].name, "hnsw");
  EXPECT_EQ(data->series[0].points.size(), 2u);
  EXPECT_EQ(data->series[0].points[1].label, "ef=64");
  EXPECT_EQ(data->series[1].name, "hnswlib");
  EXPECT_EQ(data->series[2].name, "faiss (cold)");
  EXPECT_EQ(data->series[3].name, "hnsw [bench2]");
  EXPECT_EQ(data->dataset, "synth");
  EXPECT_EQ(data->k, 10);
  EXPECT_EQ(data->qps_key, "qps_1t");
  auto none = LoadPlotData({(root_ / "stdout-like.txt").string()}, "auto");
  EXPECT_FALSE(none.has_value());

  // The drawing (matplotlib, from scripts/setup.sh): labels, the title with data set and
  // machine, as text in the SVG.
  const Run run = Strata("plot " + P("bench.jsonl") + " " + P("peers.jsonl") + " -o " + P("p.svg") +
                         " --machine 'Test box, 2 cores'");
  if (run.exit_code != 0 && run.err.find("matplotlib is not installed") != std::string::npos) {
    GTEST_SKIP() << "python3-matplotlib is not installed: " << run.err;
  }
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string svg = Slurp(root_ / "p.svg");
  for (const char* part : {"<svg", "hnswlib", "faiss (cold)", "synth (l2), recall@10", "Test box, 2 cores",
                           "recall@10", "queries per second"}) {
    EXPECT_NE(svg.find(part), std::string::npos) << part;
  }
  const Run png = Strata("plot " + P("bench.jsonl") + " -o " + P("p.png"));
  ASSERT_EQ(png.exit_code, 0) << png.err;
  EXPECT_EQ(Slurp(root_ / "p.png").substr(1, 3), "PNG");
  // Only the outputs were left behind (no temporary files).
  for (const auto& e : fs::directory_iterator(root_)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  }
}

}  // namespace
}  // namespace strata::tools
