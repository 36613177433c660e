// The shared vocabulary (api/): Explain's JSON form round-trips and is read leniently,
// strategy names parse and print.

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "api/attribute_rows.h"
#include "api/explain.h"
#include "api/types.h"

namespace strata {
namespace {

Explain SampleExplain() {
  Explain e;
  e.k = 10;
  e.recall_target = 0.95;
  e.filter = R"(lang == "en")";
  e.parse_ms = 0.125;
  e.merge_ms = 0.5;
  e.total_ms = 3.75;
  SegmentExplain s;
  s.segment = "segment 7";
  s.kind = "hnsw";
  s.strategy = "filtered index";
  s.reason = "selectivity 0.5000: \"quoted\" \\ and\nnewline";
  s.rows = 5000;
  s.matching = 2500;
  s.estimated_selectivity = 0.4375;
  s.actual_selectivity = 0.5;
  s.ef = 64;
  s.max_lists = 0;
  s.predicted_recall = 0.96;
  s.nodes_visited = 310;
  s.distances = 4096;
  s.lists_read = 0;
  s.bytes_read = uint64_t{1} << 40;
  s.results = 10;
  s.filter_ms = 0.25;
  s.search_ms = 1.0 / 3;
  e.segments = {s, SegmentExplain{.segment = "memory", .kind = "hnsw", .strategy = "scan"}};
  e.warnings = {"no record of collection 'c' has the attribute 'yaer' (misspelt?)", "second"};
  return e;
}

TEST(ExplainJson, RoundTrips) {
  const Explain e = SampleExplain();
  auto back = Explain::FromJson(e.ToJson());
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(*back, e);
  auto empty = Explain::FromJson(Explain{}.ToJson());
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(*empty, Explain{});
}

TEST(ExplainJson, AbsentKeysKeepDefaultsAndUnknownKeysAreIgnored) {
  auto e = Explain::FromJson(R"({"k": 3, "newer": [1, 2], "segments": [{"rows": 4, "x": "y"}]})");
  ASSERT_TRUE(e.has_value()) << e.error().ToString();
  EXPECT_EQ(e->k, 3u);
  EXPECT_EQ(e->recall_target, 0);
  ASSERT_EQ(e->segments.size(), 1u);
  EXPECT_EQ(e->segments[0].rows, 4u);
  EXPECT_EQ(e->segments[0].estimated_selectivity, 1);  // SegmentExplain's default
}

TEST(ExplainJson, WrongTypesAreInvalidArgumentNamingTheKey) {
  struct Case {
    const char* json;
    const char* names;
  };
  for (const Case& c : {Case{"[]", "not a JSON object"}, Case{"{", "not a JSON object"},
                        Case{R"({"k": "ten"})", "k"}, Case{R"({"k": -1})", "k"},
                        Case{R"({"k": 4294967296})", "k"},
                        Case{R"({"filter": 1})", "filter"},
                        Case{R"({"segments": {}})", "segments"},
                        Case{R"({"segments": [1]})", "segments[0]"},
                        Case{R"({"segments": [{"ef": 1.5}]})", "segments[0].ef"},
                        Case{R"({"segments": [{}, {"search_ms": "x"}]})", "segments[1].search_ms"}}) {
    auto e = Explain::FromJson(c.json);
    ASSERT_FALSE(e.has_value()) << c.json;
    EXPECT_EQ(e.error().code(), StatusCode::kInvalidArgument) << c.json;
    EXPECT_NE(e.error().message().find(c.names), std::string::npos)
        << c.json << ": " << e.error().message();
  }
}

TEST(ExplainJson, ClusterShardsRoundTripWithTheirPlansAsObjects) {
  Explain shard_plan;
  shard_plan.k = 5;
  shard_plan.segments.push_back({.segment = "memory", .kind = "hnsw", .rows = 40});
  Explain e;
  e.k = 5;
  e.shards.push_back({.shard = 1, .node = "n2", .address = "127.0.0.1:7420", .results = 5, .ms = 1.5,
                      .plan = shard_plan.ToJson()});
  const std::string json = e.ToJson();
  EXPECT_NE(json.find("\"plan\": {"), std::string::npos) << json;  // an object, not a string
  auto back = Explain::FromJson(json);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(*back, e);
  const std::string text = e.ToString();
  EXPECT_NE(text.find("shard 1 on node n2 (127.0.0.1:7420): 5 results"), std::string::npos) << text;
  EXPECT_NE(text.find("  memory"), std::string::npos) << text;  // the shard's plan, indented
  // A plain collection's plan has no "shards" key at all.
  EXPECT_EQ(shard_plan.ToJson().find("shards"), std::string::npos);
  EXPECT_FALSE(Explain::FromJson(R"({"shards": [{"plan": 3}]})").has_value());
}

TEST(ExplainText, NamesEverySegment) {
  const std::string text = SampleExplain().ToString();
  EXPECT_NE(text.find("segment 7"), std::string::npos) << text;
  EXPECT_NE(text.find("memory"), std::string::npos) << text;
  EXPECT_NE(text.find("why: selectivity"), std::string::npos) << text;
}

TEST(SearchStrategyNames, ParseAndPrint) {
  for (SearchStrategy s : {SearchStrategy::kAuto, SearchStrategy::kIndex, SearchStrategy::kScan,
                           SearchStrategy::kPostFilter}) {
    auto parsed = ParseSearchStrategy(SearchStrategyName(s));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, s);
  }
  EXPECT_EQ(*ParseSearchStrategy("postfilter"), SearchStrategy::kPostFilter);
  EXPECT_EQ(*ParseSearchStrategy("post_filter"), SearchStrategy::kPostFilter);
  EXPECT_FALSE(ParseSearchStrategy("fast").has_value());
  EXPECT_EQ(SearchStrategyName(static_cast<SearchStrategy>(9)), "unknown");
}

}  // namespace
}  // namespace strata

namespace strata {
namespace {

// The JSON Lines rows of `strata build --attributes` and `strata-cli upsert --attributes/--ids`.
TEST(AttributeRows, ParsesEveryValueTypeAndOptionalIds) {
  auto row = ParseAttributeRow(R"({"id": 7, "attributes": {"lang": "en", "year": 2024, "score": 0.5, "tags": ["a", "b"]}})");
  ASSERT_TRUE(row.has_value()) << row.error().ToString();
  EXPECT_EQ(row->id, VectorId{7});
  const Attributes want = {{"lang", std::string("en")}, {"year", int64_t{2024}}, {"score", 0.5},
                           {"tags", TagList{"a", "b"}}};
  EXPECT_EQ(row->attributes, want);
  row = ParseAttributeRow(R"({"attributes": {}})");
  ASSERT_TRUE(row.has_value());
  EXPECT_FALSE(row->id.has_value());
  row = ParseAttributeRow("42");  // a bare id (an --ids file)
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->id, VectorId{42});
  EXPECT_TRUE(row->attributes.empty());
  row = ParseAttributeRow(R"({"id": 18446744073709551614})");
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(*row->id, 18446744073709551614ull);
}

TEST(AttributeRows, RefusesWhatItCannotStore) {
  for (const char* bad : {"not json", R"({"id": -1})", R"({"id": 1.5})", R"({"id": "7"})", "[1, 2]",
                          R"({"attributes": []})", R"({"attributes": {"a": {"b": 1}}})",
                          R"({"attributes": {"a": [1, 2]}})", R"({"attributes": {"a": null}})",
                          R"({"attributes": {"a": 9223372036854775808}})", R"({"atributes": {}})"}) {
    auto row = ParseAttributeRow(bad);
    ASSERT_FALSE(row.has_value()) << bad;
    EXPECT_EQ(row.error().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(AttributeRows, ReadsAFileSkippingBlankLinesAndNamesTheLineAtFault) {
  const auto path = std::filesystem::temp_directory_path() / ("attribute_rows_" + std::to_string(::getpid()));
  std::ofstream(path) << "{\"id\": 1}\r\n\n   \n{\"attributes\": {\"a\": 1}}\n";
  auto rows = ReadAttributeRows(path);
  ASSERT_TRUE(rows.has_value()) << rows.error().ToString();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].id, VectorId{1});
  std::ofstream(path) << "{}\n{\"id\": -3}\n";
  rows = ReadAttributeRows(path);
  ASSERT_FALSE(rows.has_value());
  EXPECT_NE(rows.error().message().find("line 2"), std::string::npos) << rows.error().ToString();
  std::filesystem::remove(path);
  EXPECT_EQ(ReadAttributeRows(path).error().code(), StatusCode::kIOError);
}

}  // namespace
}  // namespace strata
