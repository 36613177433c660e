// strata-cli end to end: the real binary (STRATA_CLI_PATH) against a real server, its exit
// codes, its text and --json outputs, and its one-line errors.

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "storage/dataset_io.h"
#include "tests/client/cli_util.h"

namespace strata::client {
namespace {

using testing::CliRun;
using testing::CliTest;
using testing::ReadAll;
using testing::L2;
using testing::VectorFor;
using Json = nlohmann::json;

// One line on stderr, nothing else.
void ExpectOneErrorLine(const CliRun& r, const std::string& part) {
  EXPECT_NE(r.rc, 0);
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  EXPECT_NE(r.err.find(part), std::string::npos) << r.err;
}

TEST_F(CliTest, EveryCommandEndToEnd) {
  constexpr uint32_t kDim = 8;
  constexpr size_t kRows = 120;
  constexpr size_t kQueries = 12;
  constexpr uint64_t kOffset = 5;
  // Base, queries and exact ground truth (ids are base rows).
  auto base = VectorSet::Create(kRows, kDim);
  auto queries = VectorSet::Create(kQueries, kDim);
  ASSERT_TRUE(base.has_value() && queries.has_value());
  for (size_t i = 0; i < kRows; ++i) {
    const auto v = VectorFor(i, kDim);
    std::copy(v.begin(), v.end(), base->mutable_row(i));
  }
  storage::GroundTruth gt;
  gt.num_queries = kQueries;
  gt.k = 10;
  for (size_t q = 0; q < kQueries; ++q) {
    const auto v = VectorFor(900000 + q, kDim);
    std::copy(v.begin(), v.end(), queries->mutable_row(q));
    std::vector<std::pair<float, int32_t>> all;
    for (size_t i = 0; i < kRows; ++i) all.push_back({L2(v, base->row(i)), int32_t(i)});
    std::sort(all.begin(), all.end());
    for (size_t j = 0; j < gt.k; ++j) gt.ids.push_back(all[j].second);
  }
  const auto base_path = dir_ / "base.fvecs";
  const auto query_path = dir_ / "queries.fbin";
  const auto gt_path = dir_ / "gt.ivecs";
  ASSERT_TRUE(storage::WriteVectors(base_path, *base).ok());
  ASSERT_TRUE(storage::WriteVectors(query_path, *queries).ok());
  ASSERT_TRUE(storage::WriteGroundTruth(gt_path, gt).ok());

  CliRun r = Cli("ping");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("pong"), std::string::npos) << r.out;

  r = Cli("create vec --dim 8 --metric l2 --M 12 --ef-construction 80 --memory-budget 64M");
  ASSERT_EQ(r.rc, 0) << r.err;
  r = Cli("upsert vec --vectors " + base_path.string() + " --batch 50 --id-offset 5");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("upserted 120 vectors"), std::string::npos) << r.out;

  r = Cli("describe vec --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = ParseJson(r);
  EXPECT_EQ(j["num_vectors"], kRows);
  EXPECT_EQ(j["dim"], kDim);
  EXPECT_EQ(j["metric"], "l2");
  EXPECT_EQ(j["hnsw_M"], 12);
  EXPECT_EQ(j["memory_budget_bytes"], 64u << 20);
  EXPECT_EQ(j["codes"], "none");
  r = Cli("list --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  j = ParseJson(r);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["name"], "vec");
  // Codes travel in create_collection_with / describe_collection_with.
  r = Cli("create coded --dim 8 --codes sq8 --rerank 30");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("codes sq8"), std::string::npos) << r.out;
  r = Cli("describe coded --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  j = ParseJson(r);
  EXPECT_EQ(j["codes"], "sq8");
  EXPECT_EQ(j["rerank"], 30);
  r = Cli("describe coded");
  EXPECT_NE(r.out.find("codes: sq8 (rerank 30)"), std::string::npos) << r.out;
  // ... and in list_collections_with: list shows them too.
  r = Cli("list --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  j = ParseJson(r);
  ASSERT_EQ(j.size(), 2u);
  for (const Json& c : j) {
    EXPECT_EQ(c["codes"], c["name"] == "coded" ? "sq8" : "none") << c.dump();
    EXPECT_EQ(c["rerank"], c["name"] == "coded" ? 30 : 0) << c.dump();
  }
  r = Cli("list");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("CODES"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("l2      sq8"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("l2      none"), std::string::npos) << r.out;
  ASSERT_EQ(Cli("drop coded").rc, 0);

  r = Cli("get vec 5 124 125 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  j = ParseJson(r);
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j[0]["found"], true);
  EXPECT_EQ(j[0]["vector"].get<std::vector<float>>(), VectorFor(0, kDim));
  EXPECT_EQ(j[1]["found"], true);
  EXPECT_EQ(j[2]["found"], false);

  // One vector, text and JSON, with and without the plan.
  std::string vec;
  for (float x : VectorFor(3, kDim)) vec += (vec.empty() ? "" : ",") + fmt::format("{}", x);
  r = Cli("search vec --vector=" + vec + " --k 3 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  j = ParseJson(r);
  ASSERT_EQ(j["results"].size(), 1u);
  ASSERT_EQ(j["results"][0].size(), 3u);
  EXPECT_EQ(j["results"][0][0]["id"], 3 + kOffset);
  r = Cli("search vec --vector=" + vec + " --k 3 --explain --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  j = ParseJson(r);
  ASSERT_TRUE(j["explain"].is_object()) << r.out;
  EXPECT_FALSE(j["explain"]["segments"].empty());
  r = Cli("search vec --vector=" + vec + " --k 3");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.rfind(std::to_string(3 + kOffset) + "\t", 0), 0u) << r.out;

  // A query file with ground truth: exact search has recall 1.
  r = Cli("search vec --queries " + query_path.string() + " --gt " + gt_path.string() +
          " --id-offset 5 --strategy scan --pipeline 4 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  j = ParseJson(r);
  EXPECT_EQ(j["queries"], kQueries);
  EXPECT_EQ(j["recall"], 1.0);
  EXPECT_GT(j["qps"].get<double>(), 0);
  EXPECT_GT(j["latency_ms"]["p99"].get<double>(), 0);
  r = Cli("search vec --queries " + query_path.string() + " --max-queries 3 --results");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("queries: 3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2:"), std::string::npos) << r.out;
  // The old name of --max-queries still works (hidden).
  r = Cli("search vec --queries " + query_path.string() + " --limit 2 --results");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("queries: 2"), std::string::npos) << r.out;

  r = Cli("load vec --queries " + query_path.string() + " --gt " + gt_path.string() +
          " --id-offset 5 --strategy scan --connections 2 --duration 0.5 --pipeline 2 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  j = ParseJson(r);
  EXPECT_GT(j["ok"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["ok"], j["sent"]);
  EXPECT_TRUE(j["errors"].empty());
  EXPECT_EQ(j["recall"], 1.0);
  for (const char* p : {"p50", "p90", "p99", "p999"}) EXPECT_TRUE(j["latency_ms"].contains(p));
  r = Cli("load vec --queries " + query_path.string() +
          " --connections 2 --duration 0.5 --rate 40");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("throughput"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("p99.9"), std::string::npos) << r.out;

  // 999999 does not exist: the server counts it as applied all the same, and the output
  // says so rather than suggesting that some ids were skipped.
  r = Cli("delete vec 5 6 999999");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("delete of 3 ids applied to vec"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("did not exist count too"), std::string::npos) << r.out;
  r = Cli("get vec 5 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(ParseJson(r)[0]["found"], false);
  r = Cli("stats --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  j = ParseJson(r);
  EXPECT_GE(j["upserts"].get<uint64_t>(), kRows);
  EXPECT_GE(j["deletes"].get<uint64_t>(), 2u);
  EXPECT_TRUE(j["search_latency"]["counts"].is_array());
  for (const char* cmd : {"flush vec", "compact vec", "stats", "list", "describe vec"}) {
    r = Cli(cmd);
    EXPECT_EQ(r.rc, 0) << cmd << ": " << r.err;
    EXPECT_FALSE(r.out.empty()) << cmd;
  }
  r = Cli("drop vec");
  ASSERT_EQ(r.rc, 0) << r.err;
  r = Cli("describe vec");
  ExpectOneErrorLine(r, "NotFound");
}

// A float64 .npy is upserted converted to float32, and strata-cli says so (issue 13).
TEST_F(CliTest, Float64NpyIsConvertedWithANote) {
  constexpr size_t kRows = 5, kDim = 4;
  std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (5, 4), }";
  dict.append((64 - (10 + dict.size() + 1) % 64) % 64, ' ');
  dict.push_back('\n');
  const auto path = dir_ / "v64.npy";
  {
    std::ofstream out(path, std::ios::binary);
    out.write("\x93NUMPY\x01\x00", 8);
    const uint16_t len = uint16_t(dict.size());
    out.write(reinterpret_cast<const char*>(&len), 2);
    out << dict;
    for (size_t i = 0; i < kRows * kDim; ++i) {
      const double v = 0.25 * double(i);
      out.write(reinterpret_cast<const char*>(&v), sizeof v);
    }
  }
  ASSERT_EQ(Cli("create v64 --dim 4 --metric l2").rc, 0);
  CliRun r = Cli("upsert v64 --vectors " + path.string());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("v64.npy holds float64 values; converted to float32"), std::string::npos) << r.err;
  r = Cli("get v64 3 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const Json j = ParseJson(r);
  EXPECT_EQ(j[0]["vector"][1], 0.25 * 13);
}

TEST_F(CliTest, ErrorsAreOneLineAndNonZero) {
  ExpectOneErrorLine(Cli("search vec"), "exactly one of --vector or --queries");
  ExpectOneErrorLine(Cli("search vec --vector 1,x,3"), "'x'");
  ExpectOneErrorLine(Cli("create c --dim 4 --metric hamming"), "unknown metric");
  ExpectOneErrorLine(Cli("create c --dim 4 --memory-budget 12Q"), "suffix");
  // One budget syntax (core/byte_size.h): a bare fraction is refused with the percentage
  // hint, and a percentage needs data a new collection does not have; both usage errors.
  CliRun budget = Cli("create c --dim 4 --memory-budget 0.2");
  ExpectOneErrorLine(budget, "20%");
  EXPECT_EQ(budget.rc, 2);
  budget = Cli("create c --dim 4 --memory-budget 20%");
  ExpectOneErrorLine(budget, "percentage");
  EXPECT_EQ(budget.rc, 2);
  CliRun codes = Cli("create c --dim 4 --codes pq");
  ExpectOneErrorLine(codes, "unknown codes");
  EXPECT_EQ(codes.rc, 2);
  codes = Cli("create c --dim 4 --rerank 20");
  ExpectOneErrorLine(codes, "--rerank needs --codes");
  EXPECT_EQ(codes.rc, 2);
  EXPECT_EQ(Cli("search").rc, 2);  // CLI11: a required argument is missing
  // Flags that do not go together, or values no request could carry: usage errors (2),
  // found before anything is sent; a failure of the work itself is 1.
  for (const char* usage : {"search vec", "search vec --vector 1,x,3", "search vec --vector 1,2 --gt g.ivecs",
                            "search vec --vector 1,2 --pipeline 0", "search vec --vector 1,2 --k 0",
                            "search vec --vector 1,2 --recall 1.5", "upsert vec --key a",
                            "get vec", "delete vec", "keys vec --count 0"}) {
    EXPECT_EQ(Cli(usage).rc, 2) << usage;
  }
  EXPECT_EQ(Cli("flush nope").rc, 1);
  ExpectOneErrorLine(Cli("upsert c --vectors /nonexistent/x.fvecs"), "/nonexistent/x.fvecs");
  ExpectOneErrorLine(Cli("frobnicate"), "frobnicate");
  ExpectOneErrorLine(Cli("load c --queries /nonexistent/q.fvecs"), "/nonexistent/q.fvecs");
  // Nothing listening on port 1.
  ExpectOneErrorLine(Cli("ping --port 1", false), "refused");
  // A server-side error: the collection does not exist.
  ExpectOneErrorLine(Cli("flush nope"), "nope");
}

// Issue 13: `--version` on every binary, exit status 0, one line on stdout.
TEST_F(CliTest, VersionOnEveryBinary) {
  const CliRun cli = Cli("--version", false);
  EXPECT_EQ(cli.rc, 0) << cli.err;
  EXPECT_EQ(cli.out.rfind("strata-cli ", 0), 0u) << cli.out;
  EXPECT_EQ(cli.out.find('\n'), cli.out.size() - 1) << cli.out;
  const auto out = dir_ / "server-version.out";
  const int status =
      std::system((std::string(STRATA_SERVER_BINARY) + " --version >" + out.string() + " 2>&1").c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(ReadAll(out).rfind("strata-server ", 0), 0u) << ReadAll(out);
}

TEST_F(CliTest, AMissingTokenIsToldFromAWrongOne) {
  const std::string token = "cli-test-token-0123456789";
  StartServer(token);
  // STRATA_TOKEN is not set for the runs below: an empty --token.
  ::unsetenv("STRATA_TOKEN");
  CliRun r = Cli("ping");
  ExpectOneErrorLine(r, "token required");
  EXPECT_NE(r.err.find("--token"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("wrong token"), std::string::npos) << r.err;
  r = Cli("ping --token not-the-token-0123456789");
  ExpectOneErrorLine(r, "wrong token");
  EXPECT_EQ(r.err.find("token required"), std::string::npos) << r.err;
  r = Cli("ping --token " + token);
  EXPECT_EQ(r.rc, 0) << r.err;
}

}  // namespace
}  // namespace strata::client
