// Redis FILTER expressions translated to Strata's filter language (server/resp_filter.h),
// and the JSON attributes they run over (server/resp_keys.h).

#include "server/resp_filter.h"

#include <gtest/gtest.h>

#include "engine/filter.h"
#include "server/resp_keys.h"

namespace strata::server {
namespace {

std::string Text(std::string_view redis) {
  auto t = TranslateRedisFilter(redis);
  EXPECT_TRUE(t) << redis << ": " << t.error().ToString();
  if (!t) return "";
  EXPECT_EQ(t->kind, TranslatedFilter::Kind::kFilter) << redis;
  // Whatever is produced must parse in Strata's grammar.
  auto parsed = engine::Filter::Parse(t->text);
  EXPECT_TRUE(parsed) << t->text << ": " << parsed.error().ToString();
  return t->text;
}

TEST(RespFilter, ComparisonsAndLogic) {
  EXPECT_EQ(Text(".year >= 1980 and .rating > 7"), "(`year` >= 1980) AND (`rating` > 7)");
  EXPECT_EQ(Text(".a == 1 || .b != 'x' && .c < 2.5"),
            "(`a` == 1) OR ((`b` != \"x\") AND (`c` < 2.5))");
  EXPECT_EQ(Text("1980 <= .year"), "`year` >= 1980");
  EXPECT_EQ(Text("(.a > 1 or .a < -1) and .b == \"q\\\"\""),
            "((`a` > 1) OR (`a` < -1)) AND (`b` == \"q\\\"\")");
}

TEST(RespFilter, LinearArithmeticIsSolvedForTheField) {
  EXPECT_EQ(Text(".year - 2000 > 5"), "`year` > 2005");
  EXPECT_EQ(Text(".rating / 2 > 4"), "`rating` > 8");
  EXPECT_EQ(Text("10 - .x < 3"), "`x` > 7");
  EXPECT_EQ(Text(".x * -2 >= 4"), "`x` <= -2");
  EXPECT_EQ(Text(".x > 2 * 3 + 1"), "`x` > 7");
}

TEST(RespFilter, InTuplesAndTags) {
  EXPECT_EQ(Text(".director in [\"Spielberg\", \"Nolan\"]"),
            "`director` IN (\"Spielberg\", \"Nolan\")");
  EXPECT_EQ(Text(".n in [1, 2.5]"), "`n` IN (1, 2.5)");
  EXPECT_EQ(Text("\"x\" in .tags"), "`tags` == \"x\"");
}

TEST(RespFilter, NotRequiresTheFields) {
  const std::string t = Text("not (.a == 1)");
  EXPECT_EQ(t.rfind("NOT (`a` == 1) AND", 0), 0u) << t;
  EXPECT_EQ(Text("!.flag").rfind("NOT (`flag` != 0) AND", 0), 0u);
  // And the Strata filter it gives behaves as Redis: a record without `a` does not match.
  auto f = engine::Filter::Parse(t);
  ASSERT_TRUE(f);
  EXPECT_FALSE(f->Matches({}));
  EXPECT_TRUE(f->Matches({{"a", int64_t(2)}}));
  EXPECT_FALSE(f->Matches({{"a", int64_t(1)}}));
  EXPECT_TRUE(f->Matches({{"a", std::string("s")}}));
}

TEST(RespFilter, LiteralsFold) {
  auto all = TranslateRedisFilter("1 + 1 == 2");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->kind, TranslatedFilter::Kind::kAll);
  auto none = TranslateRedisFilter(".a > 1 and 2 < 1");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->kind, TranslatedFilter::Kind::kNone);
  auto keep = TranslateRedisFilter(".a > 1 and 1 < 2");
  ASSERT_TRUE(keep);
  EXPECT_EQ(keep->text, "`a` > 1");
  auto sub = TranslateRedisFilter("\"oo\" in \"foo\"");
  ASSERT_TRUE(sub);
  EXPECT_EQ(sub->kind, TranslatedFilter::Kind::kAll);
}

void ExpectError(std::string_view redis, size_t position, std::string_view what) {
  auto t = TranslateRedisFilter(redis);
  ASSERT_FALSE(t) << redis << " -> " << t->text;
  const std::string& m = t.error().message();
  EXPECT_NE(m.find(fmt::format("at position {} ", position)), std::string::npos) << m;
  EXPECT_NE(m.find(what), std::string::npos) << m;
}

TEST(RespFilter, ErrorsNameThePosition) {
  ExpectError(".year >= ", 10, "expected a value");
  ExpectError(".a > 1 and", 11, "expected a value");
  ExpectError("(.a > 1", 8, "expected ')'");
  ExpectError(".a > 'x", 6, "unterminated string");
  ExpectError(".a ** 2 > 4", 4, "'**' on a field is not supported");
  ExpectError(".a % 2 == 0", 4, "'%' on a field is not supported");
  ExpectError(".a + .b > 1", 4, "between two fields");
  ExpectError(".a > .b", 4, "comparing two fields");
  ExpectError(".a == null", 7, "null is not supported");
  ExpectError(".a > 1 .b", 8, "unexpected text");
  ExpectError(".a in [1, x]", 11, "numbers and strings only");
}

TEST(RespAttributes, JsonFieldsBecomeTypedAttributes) {
  auto a = AttributesFromJson(
      R"({"year": 1980, "rating": 7.5, "ok": true, "name": "x", "tags": ["a", "b"],
          "nested": {"y": 1}, "mixed": [1, "a"], "none": null})");
  ASSERT_TRUE(a) << a.error().ToString();
  ASSERT_NE(JsonOf(*a), nullptr);
  auto find = [&](std::string_view name) -> const AttributeValue* {
    for (const auto& x : *a) {
      if (x.name == name) return &x.value;
    }
    return nullptr;
  };
  EXPECT_EQ(*find("year"), AttributeValue(int64_t(1980)));
  EXPECT_EQ(*find("rating"), AttributeValue(7.5));
  EXPECT_EQ(*find("ok"), AttributeValue(int64_t(1)));
  EXPECT_EQ(*find("name"), AttributeValue(std::string("x")));
  EXPECT_EQ(*find("tags"), AttributeValue(TagList{"a", "b"}));
  EXPECT_EQ(find("nested"), nullptr);
  EXPECT_EQ(find("mixed"), nullptr);
  EXPECT_EQ(find("none"), nullptr);
  // Not an object: kept as given, no fields (as Redis, it matches no filter).
  auto text = AttributesFromJson("not json");
  ASSERT_TRUE(text);
  ASSERT_EQ(text->size(), 1u);
  EXPECT_EQ(*JsonOf(*text), "not json");
  EXPECT_TRUE(AttributesFromJson("")->empty());
}

TEST(RespScores, AsRedisReportsThem) {
  // Cosine: the engine reports -cos; Redis's score is 1 - (1 - cos) / 2.
  EXPECT_DOUBLE_EQ(ScoreOf(Metric::kCosine, -1.0f), 1.0);
  EXPECT_DOUBLE_EQ(ScoreOf(Metric::kCosine, 0.0f), 0.5);
  EXPECT_DOUBLE_EQ(ScoreOf(Metric::kCosine, 1.0f), 0.0);
  EXPECT_DOUBLE_EQ(ScoreOf(Metric::kL2, 0.0f), 1.0);
  EXPECT_DOUBLE_EQ(ScoreOf(Metric::kL2, 1.0f), 0.5);
}

}  // namespace
}  // namespace strata::server
