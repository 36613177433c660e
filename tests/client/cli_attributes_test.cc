// strata-cli end to end with ids and attributes (issue 13): upsert --ids / --attributes (and
// what a re-upsert does to attributes), search --with-attributes in text and JSON, and a
// filter's warnings on stderr.

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "storage/dataset_io.h"
#include "tests/client/cli_util.h"

namespace strata::client {
namespace {

using testing::CliRun;
using testing::CliTest;
using testing::VectorFor;
using Json = nlohmann::json;

constexpr uint32_t kDim = 4;

class CliAttributesTest : public CliTest {
 protected:
  // `rows` vectors (VectorFor(row)) as .fbin; returns the path.
  std::string Vectors(const std::string& name, size_t rows) {
    auto v = VectorSet::Create(rows, kDim);
    EXPECT_TRUE(v.has_value());
    for (size_t i = 0; i < rows; ++i) {
      const auto x = VectorFor(i, kDim);
      std::copy(x.begin(), x.end(), v->mutable_row(i));
    }
    const auto path = dir_ / name;
    EXPECT_TRUE(storage::WriteVectors(path, *v).ok());
    return path.string();
  }
  std::string Text(const std::string& name, const std::string& text) {
    const auto path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }
  // A 1-D .npy of 8-byte ids with dtype `descr` ("<i8" or "<u8").
  std::string IdsNpy(const std::string& name, const std::vector<uint64_t>& ids, const std::string& descr) {
    std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" +
                       std::to_string(ids.size()) + ",), }";
    dict.append((64 - (10 + dict.size() + 1) % 64) % 64, ' ');
    dict.push_back('\n');
    const auto path = dir_ / name;
    std::ofstream out(path, std::ios::binary);
    out.write("\x93NUMPY\x01\x00", 8);
    const uint16_t len = uint16_t(dict.size());
    out.write(reinterpret_cast<const char*>(&len), 2);
    out << dict;
    out.write(reinterpret_cast<const char*>(ids.data()), std::streamsize(ids.size() * 8));
    return path.string();
  }
  Json Get(const std::string& collection, uint64_t id) {
    CliRun r = Cli("get " + collection + " " + std::to_string(id) + " --json");
    EXPECT_EQ(r.rc, 0) << r.err;
    return ParseJson(r)[0];
  }
};

TEST_F(CliAttributesTest, UpsertTakesIdsFromNpyAndAttributesFromJsonLines) {
  ASSERT_EQ(Cli("create docs --dim 4 --metric l2").rc, 0);
  const std::string vectors = Vectors("v.fbin", 3);
  const std::string ids = IdsNpy("ids.npy", {100, 7, 55}, "<i8");
  const std::string attrs = Text("rows.jsonl",
                                 "{\"attributes\": {\"lang\": \"en\", \"year\": 2020}}\n"
                                 "{\"attributes\": {\"lang\": \"de\", \"score\": 0.5, \"tags\": [\"a\", \"b\"]}}\n"
                                 "\n"
                                 "{}\n");
  CliRun r = Cli("upsert docs --vectors " + vectors + " --ids " + ids + " --attributes " + attrs);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("upserted 3 vectors with attributes"), std::string::npos) << r.out;
  Json rec = Get("docs", 100);
  EXPECT_EQ(rec["found"], true);
  EXPECT_EQ(rec["attributes"], Json::parse(R"({"lang": "en", "year": 2020})"));
  EXPECT_EQ(Get("docs", 7)["attributes"], Json::parse(R"({"lang": "de", "score": 0.5, "tags": ["a", "b"]})"));
  EXPECT_EQ(Get("docs", 55)["attributes"], Json::object());
  EXPECT_EQ(Get("docs", 0)["found"], false);  // not row numbers
  // uint64 .npy and JSON Lines ids (bare or {"id": ...}) work the same.
  ASSERT_EQ(Cli("upsert docs --vectors " + vectors + " --ids " + IdsNpy("u.npy", {1, 2, 3}, "<u8")).rc, 0);
  EXPECT_EQ(Get("docs", 3)["found"], true);
  r = Cli("upsert docs --vectors " + vectors + " --ids " + Text("ids.jsonl", "11\n{\"id\": 12}\n13\n") + " --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["upserted"], 3);
  EXPECT_EQ(Get("docs", 12)["found"], true);
}

TEST_F(CliAttributesTest, IdsInTheAttributeRowsNameTheRecords) {
  ASSERT_EQ(Cli("create docs --dim 4 --metric l2").rc, 0);
  const std::string vectors = Vectors("v.fbin", 2);
  const std::string attrs = Text("rows.jsonl", "{\"id\": 40, \"attributes\": {\"n\": 1}}\n"
                                               "{\"id\": 41, \"attributes\": {\"n\": 2}}\n");
  ASSERT_EQ(Cli("upsert docs --vectors " + vectors + " --attributes " + attrs).rc, 0);
  EXPECT_EQ(Get("docs", 41)["attributes"]["n"], 2);
  // --ids that disagree with them are refused before anything is sent (a usage error).
  CliRun r = Cli("upsert docs --vectors " + vectors + " --attributes " + attrs + " --ids " +
                 Text("other.jsonl", "40\n99\n"));
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("row 1: --ids gives id 99"), std::string::npos) << r.err;
}

TEST_F(CliAttributesTest, ReUpsertingAnIdReplacesItsAttributes) {
  ASSERT_EQ(Cli("create docs --dim 4 --metric l2").rc, 0);
  const std::string vectors = Vectors("v.fbin", 1);
  const std::string ids = Text("ids.jsonl", "9\n");
  ASSERT_EQ(Cli("upsert docs --vectors " + vectors + " --ids " + ids + " --attributes " +
                Text("a.jsonl", "{\"attributes\": {\"lang\": \"en\", \"year\": 2020}}\n")).rc, 0);
  // New attributes replace the old ones as a whole (no merge: "year" is gone).
  ASSERT_EQ(Cli("upsert docs --vectors " + vectors + " --ids " + ids + " --attributes " +
                Text("b.jsonl", "{\"attributes\": {\"lang\": \"fr\"}}\n")).rc, 0);
  EXPECT_EQ(Get("docs", 9)["attributes"], Json::parse(R"({"lang": "fr"})"));
  // A row without attributes leaves the record with none, as documented.
  ASSERT_EQ(Cli("upsert docs --vectors " + vectors + " --ids " + ids).rc, 0);
  EXPECT_EQ(Get("docs", 9)["attributes"], Json::object());
  // And --help says so.
  CliRun help = Cli("upsert --help", /*with_port=*/false);
  EXPECT_NE(help.out.find("replaces its vector and its attributes"), std::string::npos) << help.out;
}

TEST_F(CliAttributesTest, BadIdAndAttributeFilesAreUsageErrors) {
  ASSERT_EQ(Cli("create docs --dim 4 --metric l2").rc, 0);
  const std::string vectors = Vectors("v.fbin", 2);
  auto expect_usage = [&](const std::string& args, const std::string& part) {
    CliRun r = Cli("upsert docs --vectors " + vectors + " " + args);
    EXPECT_EQ(r.rc, 2) << args << ": " << r.err;
    EXPECT_NE(r.err.find(part), std::string::npos) << args << ": " << r.err;
  };
  expect_usage("--ids " + Text("one.jsonl", "1\n"), "holds 1 ids for 2 vectors");
  expect_usage("--ids " + IdsNpy("neg.npy", {1, uint64_t(-5)}, "<i8"), "is negative");
  expect_usage("--ids " + Text("f.jsonl", "1\n2.5\n"), "line 2");
  expect_usage("--ids " + Text("x.jsonl", "1\n2\n") + " --id-offset 3", "do not go together");
  expect_usage("--attributes " + Text("bad.jsonl", "{\"attributes\": {\"a\": {}}}\n{}\n"), "attribute 'a'");
  expect_usage("--attributes " + Text("short.jsonl", "{}\n"), "1 rows for 2 vectors");
  expect_usage("--attributes " + Text("typo.jsonl", "{\"atributes\": {}}\n{}\n"), "unknown key");
  expect_usage("--ids " + (dir_ / "missing.npy").string(), "missing.npy");
  EXPECT_EQ(Get("docs", 0)["found"], false);  // nothing was sent
}

TEST_F(CliAttributesTest, SearchReturnsAttributesAndWarnsAboutTheFilter) {
  ASSERT_EQ(Cli("create docs --dim 4 --metric l2").rc, 0);
  const std::string vectors = Vectors("v.fbin", 6);
  std::string rows;
  for (int i = 0; i < 6; ++i) {
    rows += "{\"id\": " + std::to_string(10 + i) + ", \"attributes\": {\"lang\": \"" + (i % 2 ? "de" : "en") +
            "\", \"year\": " + std::to_string(2000 + i) + "}}\n";
  }
  ASSERT_EQ(Cli("upsert docs --vectors " + vectors + " --attributes " + Text("rows.jsonl", rows)).rc, 0);
  std::string q;
  for (float x : VectorFor(2, kDim)) q += (q.empty() ? "" : ",") + std::to_string(x);
  // Text: id, distance, then the attributes as one JSON object per hit.
  CliRun r = Cli("search docs --vector=" + q + " --k 3 --filter 'lang == \"en\"' --with-attributes");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.rfind("12\t", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("\t{\"lang\":\"en\",\"year\":2002}\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
  // JSON: "attributes" on every hit, all matching the filter.
  r = Cli("search docs --vector=" + q + " --k 3 --filter 'lang == \"en\"' --with-attributes --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = ParseJson(r);
  ASSERT_EQ(j["results"][0].size(), 3u);
  for (const Json& hit : j["results"][0]) EXPECT_EQ(hit["attributes"]["lang"], "en") << hit;
  EXPECT_EQ(j["warnings"], Json::array());
  // The same from a sealed segment (attributes read from its records file).
  ASSERT_EQ(Cli("flush docs").rc, 0);
  r = Cli("search docs --vector=" + q + " --k 3 --filter 'lang == \"en\"' --with-attributes --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["results"], j["results"]) << r.out;
  // Without the flag, no attributes.
  r = Cli("search docs --vector=" + q + " --k 3 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_FALSE(ParseJson(r)["results"][0][0].contains("attributes"));
  // A misspelt attribute: an empty answer, and a warning on stderr (and in the JSON).
  r = Cli("search docs --vector=" + q + " --k 3 --filter 'lnag == \"en\"'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("no results"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("strata-cli: warning: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("lnag"), std::string::npos) << r.err;
  r = Cli("search docs --vector=" + q + " --filter 'year == \"2002\"' --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  j = ParseJson(r);
  ASSERT_EQ(j["warnings"].size(), 1u) << j;
  EXPECT_NE(j["warnings"][0].get<std::string>().find("year"), std::string::npos) << j;
  EXPECT_NE(r.err.find("strata-cli: warning: "), std::string::npos) << r.err;
  // --queries measured runs warn too (one search_with before the run).
  const std::string queries = Vectors("q.fbin", 3);
  r = Cli("search docs --queries " + queries + " --filter 'lnag == \"en\"'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("lnag"), std::string::npos) << r.err;
  // ping prints JSON too.
  r = Cli("ping --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_GT(ParseJson(r)["max_batch"].get<int>(), 0);
  // --with-attributes takes one query.
  r = Cli("search docs --queries " + queries + " --with-attributes");
  EXPECT_EQ(r.rc, 2) << r.err;
}

}  // namespace
}  // namespace strata::client
