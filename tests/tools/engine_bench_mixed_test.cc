// `strata engine-bench --mixed` end to end through the binary (issue 15): a small
// synthetic data set, two phases of a second each, and the JSON line the run ends with.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/vector_set.h"
#include "storage/dataset_io.h"

namespace strata::tools {
namespace {
namespace fs = std::filesystem;

// Base (2000 x 16), queries (50) and their exact top-10 under L2, written into a
// directory the fixture creates and removes.
class EngineBenchMixedTest : public ::testing::Test {
 protected:
  static constexpr size_t kRows = 2000, kQueries = 50, kDim = 16, kK = 10;

  void SetUp() override {
    root_ = fs::temp_directory_path() / ("strata_engine_bench_mixed_test_" + std::to_string(::getpid()) +
                                         "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(root_);
    VectorSet base = *VectorSet::Create(kRows, kDim), queries = *VectorSet::Create(kQueries, kDim);
    std::mt19937 rng(15);
    std::uniform_real_distribution<float> u(0, 1);
    for (size_t i = 0; i < kRows; ++i)
      for (size_t j = 0; j < kDim; ++j) base.mutable_row(i)[j] = u(rng);
    for (size_t i = 0; i < kQueries; ++i)
      for (size_t j = 0; j < kDim; ++j) queries.mutable_row(i)[j] = u(rng);
    storage::GroundTruth gt;
    gt.num_queries = kQueries;
    gt.k = kK;
    for (size_t q = 0; q < kQueries; ++q) {
      std::vector<std::pair<float, int32_t>> all;
      for (size_t i = 0; i < kRows; ++i) {
        float s = 0;
        for (size_t j = 0; j < kDim; ++j) {
          const float t = base.row(i)[j] - queries.row(q)[j];
          s += t * t;
        }
        all.push_back({s, int32_t(i)});
      }
      std::sort(all.begin(), all.end());
      for (size_t j = 0; j < kK; ++j) gt.ids.push_back(all[j].second);
    }
    ASSERT_TRUE(storage::WriteVectors(root_ / "base.fbin", base).ok());
    ASSERT_TRUE(storage::WriteVectors(root_ / "query.fbin", queries).ok());
    ASSERT_TRUE(storage::WriteGroundTruth(root_ / "gt.ivecs", gt).ok());
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  struct Run {
    int exit_code = -1;
    std::string out;  // stdout only
  };
  // Runs `strata engine-bench --mixed` on the data set with `extra` arguments.
  Run RunMixed(const std::string& extra) const {
    const std::string cmd = std::string("'") + STRATA_BINARY + "' -q engine-bench --mixed --base '" +
                            (root_ / "base.fbin").string() + "' --queries '" + (root_ / "query.fbin").string() +
                            "' --gt '" + (root_ / "gt.ivecs").string() + "' --metric l2 " + extra;
    Run run;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return run;
    char buf[4096];
    size_t got;
    while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) run.out.append(buf, got);
    const int status = ::pclose(p);
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return run;
  }
  static std::vector<std::string> Lines(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) lines.push_back(line);
    }
    return lines;
  }

  fs::path root_;
};

TEST_F(EngineBenchMixedTest, EndsWithOneJsonLineOfSaneFigures) {
  const Run run = RunMixed("--seconds 1 --batch 200 --readers 1 --writers 1");
  ASSERT_EQ(run.exit_code, 0) << run.out;
  const std::vector<std::string> lines = Lines(run.out);
  ASSERT_FALSE(lines.empty());
  const std::string& last = lines.back();
  ASSERT_TRUE(last.starts_with("JSON {")) << run.out;
  const auto j = nlohmann::json::parse(last.substr(5));
  for (const char* field :
       {"dataset", "readers", "writers", "seconds", "search_p50_idle_ms", "search_p99_idle_ms",
        "search_p50_writes_ms", "search_p99_writes_ms", "upserts_per_s", "recall", "recall_idle"}) {
    EXPECT_TRUE(j.contains(field)) << field << " missing from " << last;
  }
  EXPECT_EQ(j["dataset"], "base");
  EXPECT_EQ(j["readers"], 1);
  EXPECT_EQ(j["writers"], 1);
  EXPECT_EQ(j["seconds"], 1.0);
  EXPECT_GT(j["searches_idle"].get<double>(), 0);
  EXPECT_GT(j["searches_writes"].get<double>(), 0);
  for (const char* phase : {"idle", "writes"}) {
    const double p50 = j[std::string("search_p50_") + phase + "_ms"], p99 = j[std::string("search_p99_") + phase + "_ms"];
    EXPECT_GT(p50, 0) << phase;
    EXPECT_GE(p99, p50) << phase;
  }
  // The writers wrote whole batches, at a positive rate.
  EXPECT_GT(j["upserts_per_s"].get<double>(), 0);
  EXPECT_GT(j["vectors_upserted"].get<size_t>(), 0u);
  EXPECT_EQ(j["vectors_upserted"].get<size_t>() % 200, 0u);
  // Re-upserted rows keep their ids and vectors, so the ground truth holds in both phases.
  for (const char* r : {"recall_idle", "recall"}) {
    EXPECT_GT(j[r].get<double>(), 0.5) << r;
    EXPECT_LE(j[r].get<double>(), 1.0) << r;
  }
  // The engine worked in a fresh temporary directory and removed it.
  const auto dir_line = std::find_if(lines.begin(), lines.end(),
                                     [](const std::string& l) { return l.starts_with("engine data directory: "); });
  ASSERT_NE(dir_line, lines.end()) << run.out;
  const fs::path dir = dir_line->substr(std::string("engine data directory: ").size());
  EXPECT_FALSE(dir.empty());
  EXPECT_FALSE(fs::exists(dir)) << dir;
}

TEST_F(EngineBenchMixedTest, RefusesZeroThreads) {
  EXPECT_NE(RunMixed("--seconds 1 --readers 0").exit_code, 0);
  EXPECT_NE(RunMixed("--seconds 1 --writers 0").exit_code, 0);
  EXPECT_NE(RunMixed("--seconds 0").exit_code, 0);
}

// A given directory with someone else's file is refused and left as it was.
TEST_F(EngineBenchMixedTest, LeavesADirectoryItDidNotCreate) {
  const fs::path dir = root_ / "theirs";
  fs::create_directories(dir);
  std::ofstream(dir / "keep.me") << "precious";
  EXPECT_NE(RunMixed("--seconds 1 --engine-dir '" + dir.string() + "'").exit_code, 0);
  std::ifstream in(dir / "keep.me");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()), "precious");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
}

// --latency-log: one line per search of both phases, as many as the JSON counts, in the
// order they began; a file that exists is refused and left as it was; a run that fails
// after making the file removes it (it is the run's own).
TEST_F(EngineBenchMixedTest, LatencyLogHasEverySearchAndNeverOverwrites) {
  const fs::path log = root_ / "latency.txt";
  const Run run = RunMixed("--seconds 1 --batch 200 --latency-log '" + log.string() + "'");
  ASSERT_EQ(run.exit_code, 0) << run.out;
  const auto j = nlohmann::json::parse(Lines(run.out).back().substr(5));
  std::ifstream in(log);
  size_t count[2] = {0, 0};
  double last_at[2] = {-1, -1};
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("#")) continue;
    std::istringstream fields(line);
    int phase = -1;
    double at = -1, wall = -1, cpu = -1;
    ASSERT_TRUE(fields >> phase >> at >> wall >> cpu) << line;
    ASSERT_TRUE(phase == 0 || phase == 1) << line;
    EXPECT_GE(at, last_at[phase]) << line;  // in the order the searches began
    EXPECT_GE(at, 0) << line;
    EXPECT_GT(wall, 0) << line;
    last_at[phase] = at;
    ++count[phase];
  }
  EXPECT_EQ(count[0], j["searches_idle"].get<size_t>());
  EXPECT_EQ(count[1], j["searches_writes"].get<size_t>());
  EXPECT_LT(last_at[0], 1.5);  // seconds into its own phase

  std::ofstream(root_ / "theirs.txt") << "precious";
  const Run again = RunMixed("--seconds 1 --latency-log '" + (root_ / "theirs.txt").string() + "'");
  EXPECT_NE(again.exit_code, 0);
  std::ifstream theirs(root_ / "theirs.txt");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(theirs), std::istreambuf_iterator<char>()), "precious");

  // Refused later (an engine directory with someone else's file): no log left behind.
  const fs::path dir = root_ / "their_dir";
  fs::create_directories(dir);
  std::ofstream(dir / "keep.me") << "precious";
  const fs::path failed = root_ / "failed.txt";
  EXPECT_NE(RunMixed("--seconds 1 --engine-dir '" + dir.string() + "' --latency-log '" + failed.string() + "'")
                .exit_code,
            0);
  EXPECT_FALSE(fs::exists(failed));
}

}  // namespace
}  // namespace strata::tools
