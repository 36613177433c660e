#include "engine/filter.h"

#include <fmt/core.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/attribute_index.h"

namespace strata::engine {
namespace {

using Kind = FilterNode::Kind;

Filter MustParse(std::string_view text) {
  Result<Filter> f = Filter::Parse(text);
  EXPECT_TRUE(f.has_value()) << text << ": " << f.error().ToString();
  return f.has_value() ? *std::move(f) : *Filter::Parse("never_used == 0");
}

std::string ParseError(std::string_view text) {
  Result<Filter> f = Filter::Parse(text);
  if (f.has_value()) return "parsed as: " + f->ToString();
  EXPECT_EQ(f.error().code(), StatusCode::kInvalidArgument) << text;
  return f.error().message();
}

bool Match(std::string_view text, const Attributes& attrs) {
  return MustParse(text).Matches(attrs);
}

// --- Parser ---

TEST(FilterParse, EveryOperator) {
  const std::pair<const char*, CompareOp> cases[] = {
      {"==", CompareOp::kEq}, {"=", CompareOp::kEq}, {"!=", CompareOp::kNe}, {"<", CompareOp::kLt},
      {"<=", CompareOp::kLe}, {">", CompareOp::kGt}, {">=", CompareOp::kGe},
  };
  for (const auto& [text, op] : cases) {
    Filter f = MustParse(std::string("price ") + text + " 10");
    const FilterNode& n = f.root();
    EXPECT_EQ(n.kind, Kind::kCompare) << text;
    EXPECT_EQ(n.name, "price");
    EXPECT_EQ(n.op, op) << text;
    ASSERT_EQ(n.literals.size(), 1u);
    EXPECT_EQ(n.literals[0], FilterValue(int64_t{10}));
  }
  // No spaces needed around operators.
  EXPECT_EQ(MustParse("a>=-3").root().literals[0], FilterValue(int64_t{-3}));
}

TEST(FilterParse, AndBindsTighterThanOr) {
  const Filter n_filter = MustParse("a == 1 OR b == 2 AND c == 3");
  const FilterNode& n = n_filter.root();
  ASSERT_EQ(n.kind, Kind::kOr);
  ASSERT_EQ(n.children.size(), 2u);
  EXPECT_EQ(n.children[0].name, "a");
  ASSERT_EQ(n.children[1].kind, Kind::kAnd);
  EXPECT_EQ(n.children[1].children[0].name, "b");
  EXPECT_EQ(n.children[1].children[1].name, "c");
}

TEST(FilterParse, NotBindsTighterThanAnd) {
  const Filter n_filter = MustParse("NOT a == 1 AND b == 2");
  const FilterNode& n = n_filter.root();
  ASSERT_EQ(n.kind, Kind::kAnd);
  ASSERT_EQ(n.children[0].kind, Kind::kNot);
  EXPECT_EQ(n.children[0].children[0].name, "a");
  EXPECT_EQ(n.children[1].name, "b");
}

TEST(FilterParse, ParenthesesGroup) {
  const Filter n_filter = MustParse("(a == 1 OR b == 2) AND NOT (c == 3 AND d == 4)");
  const FilterNode& n = n_filter.root();
  ASSERT_EQ(n.kind, Kind::kAnd);
  EXPECT_EQ(n.children[0].kind, Kind::kOr);
  ASSERT_EQ(n.children[1].kind, Kind::kNot);
  EXPECT_EQ(n.children[1].children[0].kind, Kind::kAnd);
  // Redundant parentheses around a predicate disappear.
  EXPECT_EQ(MustParse("((a == 1))"), MustParse("a == 1"));
}

TEST(FilterParse, ChainsAreFlat) {
  const Filter n_filter = MustParse("a == 1 AND b == 2 AND c == 3");
  const FilterNode& n = n_filter.root();
  ASSERT_EQ(n.kind, Kind::kAnd);
  EXPECT_EQ(n.children.size(), 3u);
}

TEST(FilterParse, InAndNotIn) {
  const Filter in_filter = MustParse("color IN ('red', \"green\", 3, 2.5)");
  const FilterNode& in = in_filter.root();
  ASSERT_EQ(in.kind, Kind::kIn);
  EXPECT_FALSE(in.negated);
  EXPECT_EQ(in.literals,
            (std::vector<FilterValue>{std::string("red"), std::string("green"), int64_t{3}, 2.5}));
  const Filter not_in_filter = MustParse("color not in (1)");
  const FilterNode& not_in = not_in_filter.root();
  ASSERT_EQ(not_in.kind, Kind::kIn);
  EXPECT_TRUE(not_in.negated);
  EXPECT_EQ(not_in.literals.size(), 1u);
}

TEST(FilterParse, KeywordsAreCaseInsensitive) {
  EXPECT_EQ(MustParse("a == 1 and not b == 2 Or c In (3) OR d nOt iN (4)"),
            MustParse("a == 1 AND NOT b == 2 OR c IN (3) OR d NOT IN (4)"));
}

TEST(FilterParse, QuotingAndEscapes) {
  EXPECT_EQ(MustParse(R"(s == "a\"b")").root().literals[0], FilterValue(std::string("a\"b")));
  EXPECT_EQ(MustParse(R"(s == 'it\'s')").root().literals[0], FilterValue(std::string("it's")));
  EXPECT_EQ(MustParse(R"(s == 'say "hi"')").root().literals[0],
            FilterValue(std::string("say \"hi\"")));
  EXPECT_EQ(MustParse(R"(s == "\\ \n \t")").root().literals[0],
            FilterValue(std::string("\\ \n \t")));
  EXPECT_EQ(MustParse(R"(s == "")").root().literals[0], FilterValue(std::string()));
  EXPECT_EQ(MustParse("`my name` == 1").root().name, "my name");
  EXPECT_EQ(MustParse(R"(`a\`b` == 1)").root().name, "a`b");
  EXPECT_EQ(MustParse("`and` == 1").root().name, "and");  // a keyword as a name
  EXPECT_EQ(MustParse("meta.created-at_2 == 1").root().name, "meta.created-at_2");
}

TEST(FilterParse, Literals) {
  const auto lit = [](std::string_view text) { return MustParse(text).root().literals[0]; };
  EXPECT_EQ(lit("x == 42"), FilterValue(int64_t{42}));
  EXPECT_EQ(lit("x == -7"), FilterValue(int64_t{-7}));
  EXPECT_EQ(lit("x == +3"), FilterValue(int64_t{3}));
  EXPECT_EQ(lit("x == 9223372036854775807"), FilterValue(std::numeric_limits<int64_t>::max()));
  EXPECT_EQ(lit("x == -9223372036854775808"), FilterValue(std::numeric_limits<int64_t>::min()));
  EXPECT_EQ(lit("x == 1.5"), FilterValue(1.5));
  EXPECT_EQ(lit("x == -2e3"), FilterValue(-2000.0));
  EXPECT_EQ(lit("x == .5"), FilterValue(0.5));
  EXPECT_EQ(lit("x == -.5"), FilterValue(-0.5));
  EXPECT_EQ(lit("x == 1e+20"), FilterValue(1e20));
  EXPECT_EQ(lit("x == 2E-3"), FilterValue(0.002));
  EXPECT_EQ(lit("x == 3."), FilterValue(3.0));
}

TEST(FilterParse, ToStringIsCanonical) {
  EXPECT_EQ(MustParse("a=1 and (b<2 or c >= 'x')").ToString(), R"(a == 1 AND (b < 2 OR c >= "x"))");
  EXPECT_EQ(MustParse("not not a != 1.0").ToString(), "NOT NOT a != 1.0");
  EXPECT_EQ(MustParse("NOT (a = 1 OR b = 2)").ToString(), "NOT (a == 1 OR b == 2)");
  EXPECT_EQ(MustParse("t not in ('a' , 'b')").ToString(), R"(t NOT IN ("a", "b"))");
  EXPECT_EQ(MustParse("`or` == 'it\\'s\\n'").ToString(), R"(`or` == "it's\n")");
  EXPECT_EQ(MustParse("`1st` == 1e300").ToString(), "`1st` == 1e+300");
}

TEST(FilterParse, ToStringRoundTrips) {
  const char* inputs[] = {
      "a == 1",
      "a = -1 AND b != 2.25 AND c < 'x' AND d <= \"y\" AND e > 0.1 AND f >= -1e-7",
      "(a == 1 AND b == 2) AND c == 3",
      "a == 1 AND (b == 2 AND c == 3)",
      "(a == 1 OR b == 2) OR (c == 3 OR NOT (d == 4))",
      "NOT (a IN (1, 'x', 2.5) AND b NOT IN ('p', \"q\\\"\"))",
      "`we ird\\`name` == 'tab\\there\\\\'",
      "x == -9223372036854775808 OR y == 0.30000000000000004 OR z == -0.0",
      "s == '\xc3\xa9t\xc3\xa9'",
  };
  for (const char* text : inputs) {
    Filter f = MustParse(text);
    Filter again = MustParse(f.ToString());
    EXPECT_EQ(f, again) << text << " -> " << f.ToString();
    EXPECT_EQ(f.ToString(), again.ToString());
  }
}

TEST(FilterParse, ErrorsNamePositionAndExpectation) {
  const std::pair<std::string, std::string> cases[] = {
      {"price <= )", "filter: at position 10: expected a value after '<=', found ')'"},
      {"a == \"abc", "filter: at position 6: unterminated string (no closing \")"},
      {"a == 'abc\\'", "filter: at position 6: unterminated string (no closing ')"},
      {"a == 1 AND",
       "filter: at position 11: expected an attribute name, NOT or '(', found end of input"},
      {"a <> 1", "filter: at position 3: unknown operator '<>' (expected one of == != < <= > >=)"},
      {"a == 1 b",
       "filter: at position 8: expected AND, OR or the end of the filter, found name 'b'"},
      {"(a == 1",
       "filter: at position 8: expected ')' to close the '(' at position 1, found end of input"},
      {"(a == 1 OR (b == 2)",
       "filter: at position 20: expected ')' to close the '(' at position 1, found end of input"},
      {"a == 1)", "filter: at position 7: ')' without a matching '('"},
      {"a IN ()", "filter: at position 7: expected a value in the IN list, found ')'"},
      {"a IN (1,)", "filter: at position 9: expected a value after ',', found ')'"},
      {"a IN (1 2)", "filter: at position 9: expected ',' or ')' in the IN list, found number 2"},
      {"a IN 1", "filter: at position 6: expected '(' after IN, found number 1"},
      {"a NOT b", "filter: at position 7: expected IN after 'a NOT', found name 'b'"},
      {"a 1",
       "filter: at position 3: expected a comparison operator, IN or NOT IN after name 'a', found "
       "number 1"},
      {"a == b", "filter: at position 6: expected a value after '==', found name 'b'"},
      {"a == 9223372036854775808",
       "filter: at position 6: integer 9223372036854775808 is out of the int64 range"},
      {"a == -9223372036854775809",
       "filter: at position 6: integer -9223372036854775809 is out of the int64 range"},
      {"a == 1e999", "filter: at position 6: number 1e999 is out of the double range"},
      {"a == 12abc", "filter: at position 6: malformed number '12abc'"},
      {"a == 1.2.3", "filter: at position 6: malformed number '1.2.3'"},
      {"a == 1e", "filter: at position 6: malformed number '1e'"},
      {"a == 1 # x", "filter: at position 8: unexpected character '#'"},
      {"a == \"x\\q\"",
       "filter: at position 8: unknown escape '\\q' in string (known: \\\" \\' \\\\ \\n \\t)"},
      {"`abc == 1", "filter: at position 1: unterminated quoted name (no closing `)"},
      {"`` == 1", "filter: at position 1: empty attribute name ``"},
      {"AND a == 1",
       "filter: at position 1: expected an attribute name, NOT or '(', found keyword AND"},
      {"a == 1 OR or b == 2",
       "filter: at position 11: expected an attribute name, NOT or '(', found keyword or"},
      {"", "filter: the text is empty"},
      {" \t\n ", "filter: the text is empty"},
  };
  for (const auto& [text, message] : cases) EXPECT_EQ(ParseError(text), message) << text;
}

TEST(FilterParse, DeepNestingIsAnErrorNotACrash) {
  const std::string deep(10000, '(');
  EXPECT_EQ(ParseError(deep + "a == 1"),
            "filter: at position 65: parentheses and NOTs nested more than 64 deep");
  std::string nots;
  for (int i = 0; i < 10000; ++i) nots += "NOT ";
  EXPECT_EQ(ParseError(nots + "a == 1"),
            "filter: at position 257: parentheses and NOTs nested more than 64 deep");
  // 64 levels are fine, 65 are not.
  const std::string ok = std::string(64, '(') + "a == 1" + std::string(64, ')');
  EXPECT_TRUE(Filter::Parse(ok).has_value());
  const std::string too_deep = std::string(65, '(') + "a == 1" + std::string(65, ')');
  EXPECT_FALSE(Filter::Parse(too_deep).has_value());
  std::string mixed;
  for (int i = 0; i < 32; ++i) mixed += "NOT (";
  mixed += "a == 1" + std::string(32, ')');
  EXPECT_TRUE(Filter::Parse(mixed).has_value());
  EXPECT_FALSE(Filter::Parse("NOT " + mixed).has_value());
}

TEST(FilterParse, OverlongTextIsAnError) {
  std::string text = "s == '" + std::string(Filter::kMaxTextBytes, 'x') + "'";
  EXPECT_EQ(ParseError(text), "filter: the text has 65543 bytes, at most 65536 allowed");
  text = "s == '" + std::string(Filter::kMaxTextBytes - 7, 'x') + "'";
  EXPECT_EQ(text.size(), Filter::kMaxTextBytes);
  EXPECT_TRUE(Filter::Parse(text).has_value());
}

TEST(FilterParse, TooManyValuesIsAnError) {
  std::string in = "a IN (0";
  for (int i = 1; i < 4096; ++i) in += ",1";
  EXPECT_TRUE(Filter::Parse(in + ")").has_value());
  EXPECT_EQ(ParseError(in + " ,2)"),
            "filter: at position 8200: more than 4096 values in the filter");
}

// --- Semantics ---

Attributes Attrs(std::initializer_list<Attribute> list) { return Attributes(list); }

TEST(FilterMatches, MissingAttributeIsFalse) {
  const Attributes none = Attrs({{"other", int64_t{1}}});
  for (const char* text : {"a == 1", "a != 1", "a < 1", "a <= 1", "a > 1", "a >= 1", "a == 'x'",
                           "a != 'x'", "a IN (1, 'x')", "a NOT IN (1)", "a NOT IN ('x')"}) {
    EXPECT_FALSE(Match(text, none)) << text;
  }
  // NOT is the plain complement.
  EXPECT_TRUE(Match("NOT a == 1", none));
  EXPECT_TRUE(Match("NOT a != 1", none));
  EXPECT_TRUE(Match("NOT a NOT IN (1)", none));
}

TEST(FilterMatches, IntAndDoubleCompareNumerically) {
  const Attributes a = Attrs({{"i", int64_t{3}}, {"d", 2.5}});
  EXPECT_TRUE(Match("i == 3", a));
  EXPECT_TRUE(Match("i == 3.0", a));
  EXPECT_TRUE(Match("i < 3.5", a));
  EXPECT_TRUE(Match("i > 2.99", a));
  EXPECT_TRUE(Match("i != 3.1", a));
  EXPECT_TRUE(Match("d > 2", a));
  EXPECT_TRUE(Match("d < 3", a));
  EXPECT_TRUE(Match("d != 2", a));
  EXPECT_TRUE(Match("d == 2.5", a));
  EXPECT_FALSE(Match("d == 2", a));
  EXPECT_TRUE(Match("d IN (1, 2.5)", a));
  EXPECT_TRUE(Match("i NOT IN (1, 2.5)", a));
  EXPECT_FALSE(Match("i NOT IN (1, 3.0)", a));
  // int64 against int64 is exact; against a double it is compared as doubles.
  const Attributes big = Attrs({{"n", int64_t{9007199254740993}}, {"f", 9007199254740992.0}});
  EXPECT_TRUE(Match("n == 9007199254740993", big));
  EXPECT_TRUE(Match("n != 9007199254740992", big));
  EXPECT_TRUE(Match("n > 9007199254740992", big));
  EXPECT_TRUE(Match("n == 9007199254740992.0", big));  // the int rounds to 2^53
  EXPECT_TRUE(Match("f == 9007199254740993", big));    // so does the literal
}

TEST(FilterMatches, StringsCompareByBytes) {
  const Attributes a = Attrs({{"s", std::string("apple")}, {"u", std::string("\xc3\xa9")}});
  EXPECT_TRUE(Match("s == 'apple'", a));
  EXPECT_TRUE(Match("s != 'Apple'", a));
  EXPECT_TRUE(Match("s > 'Apple'", a));   // 'a' (0x61) > 'A' (0x41)
  EXPECT_TRUE(Match("s < 'apples'", a));  // a prefix sorts first
  EXPECT_TRUE(Match("s >= 'apple'", a));
  EXPECT_FALSE(Match("s < 'apple'", a));
  EXPECT_TRUE(Match("u > 'z'", a));  // bytes are unsigned: 0xc3 > 'z'
  EXPECT_TRUE(Match("s IN ('pear', 'apple')", a));
  EXPECT_TRUE(Match("s NOT IN ('pear', 'fig')", a));
}

TEST(FilterMatches, KindMismatchIsFalseForEveryOperator) {
  const Attributes a = Attrs({{"s", std::string("5")}, {"n", int64_t{5}}, {"t", TagList{"5"}}});
  for (const char* op : {"==", "!=", "<", "<=", ">", ">="}) {
    EXPECT_FALSE(Match(std::string("s ") + op + " 5", a)) << op;
    EXPECT_FALSE(Match(std::string("t ") + op + " 5", a)) << op;
    EXPECT_FALSE(Match(std::string("n ") + op + " '5'", a)) << op;
  }
  // NOT IN is != to every value, so a list that mixes kinds matches nothing.
  EXPECT_FALSE(Match("n NOT IN (1, 'x')", a));
  EXPECT_FALSE(Match("s NOT IN (1, 'x')", a));
  // IN is == to any value.
  EXPECT_TRUE(Match("n IN ('x', 5)", a));
  EXPECT_TRUE(Match("s IN ('5', 7)", a));
}

TEST(FilterMatches, TagLists) {
  const Attributes a = Attrs({{"tags", TagList{"red", "blue"}}, {"empty", TagList{}}});
  EXPECT_TRUE(Match("tags == 'red'", a));
  EXPECT_TRUE(Match("tags == 'blue'", a));
  EXPECT_FALSE(Match("tags == 'green'", a));
  EXPECT_TRUE(Match("tags != 'green'", a));
  EXPECT_FALSE(Match("tags != 'red'", a));
  EXPECT_TRUE(Match("tags < 'c'", a));  // "blue"
  EXPECT_TRUE(Match("tags > 'q'", a));  // "red"
  EXPECT_FALSE(Match("tags > 's'", a));
  EXPECT_TRUE(Match("tags >= 'red'", a));
  EXPECT_TRUE(Match("tags IN ('green', 'blue')", a));
  EXPECT_FALSE(Match("tags NOT IN ('green', 'blue')", a));
  EXPECT_TRUE(Match("tags NOT IN ('green', 'pink')", a));
  EXPECT_FALSE(Match("empty == 'x'", a));
  EXPECT_TRUE(Match("empty != 'x'", a));  // has the attribute, no tag equals "x"
  EXPECT_TRUE(Match("empty NOT IN ('x')", a));
  EXPECT_FALSE(Match("empty < 'z'", a));
}

TEST(FilterMatches, NanMatchesNothingAndFirstOfTwiceGivenNameCounts) {
  const Attributes nan = Attrs({{"d", std::nan("")}});
  for (const char* text : {"d == 1", "d != 1", "d < 1", "d > 1", "d NOT IN (1)"}) {
    EXPECT_FALSE(Match(text, nan)) << text;
  }
  const Attributes twice = Attrs({{"a", int64_t{1}}, {"a", int64_t{2}}});
  EXPECT_TRUE(Match("a == 1", twice));
  EXPECT_FALSE(Match("a == 2", twice));
}

TEST(FilterMatches, BooleanStructure) {
  const Attributes a = Attrs({{"x", int64_t{1}}, {"y", int64_t{2}}});
  EXPECT_TRUE(Match("x == 1 AND y == 2", a));
  EXPECT_FALSE(Match("x == 1 AND y == 3", a));
  EXPECT_TRUE(Match("x == 9 OR y == 2", a));
  EXPECT_TRUE(Match("x == 9 AND y == 9 OR x == 1", a));     // (F AND F) OR T
  EXPECT_FALSE(Match("x == 9 AND (y == 9 OR x == 1)", a));  // F AND (...)
  EXPECT_FALSE(Match("NOT x == 1 AND y == 2", a));          // (NOT T) AND T
  EXPECT_TRUE(Match("NOT (x == 1 AND y == 3)", a));
}

// --- RowBitmap ---

TEST(RowBitmap, SetResetCountAndForEach) {
  RowBitmap b(130);
  EXPECT_TRUE(b.None());
  for (uint32_t r : {0u, 1u, 63u, 64u, 127u, 129u}) b.Set(r);
  b.Reset(1);
  EXPECT_TRUE(b.Test(63));
  EXPECT_FALSE(b.Test(1));
  EXPECT_EQ(b.Count(), 5u);
  EXPECT_EQ(b.ToRows(), (std::vector<uint32_t>{0, 63, 64, 127, 129}));
  std::vector<uint32_t> seen;
  b.ForEach([&](uint32_t r) { seen.push_back(r); });
  EXPECT_EQ(seen, b.ToRows());
}

TEST(RowBitmap, SetOperationsAndTailBits) {
  RowBitmap a(70), b(70);
  a.SetAll();
  EXPECT_EQ(a.Count(), 70u);  // no bits past the end
  b.Set(3);
  b.Set(69);
  RowBitmap c = a;
  c.AndNot(b);
  EXPECT_EQ(c.Count(), 68u);
  c.And(b);
  EXPECT_TRUE(c.None());
  c.Or(b);
  EXPECT_EQ(c, b);
  a.Resize(65);
  EXPECT_EQ(a.Count(), 65u);
  a.Resize(200);
  EXPECT_EQ(a.Count(), 65u);
  EXPECT_FALSE(a.Test(199));
  a.ClearAll();
  EXPECT_TRUE(a.None());
}

// --- AttributeIndex ---

std::vector<uint32_t> Rows(const AttributeIndex& index, std::string_view text) {
  return index.Evaluate(MustParse(text)).ToRows();
}

TEST(AttributeIndex, RemovedRowsNeverMatch) {
  AttributeIndex index;
  for (uint32_t r = 0; r < 6; ++r) index.Add(r, Attrs({{"k", int64_t{r % 2}}}));
  index.Remove(2);
  index.Remove(2);   // again: ignored
  index.Remove(99);  // never added: ignored
  EXPECT_EQ(index.live_rows(), 5u);
  EXPECT_EQ(Rows(index, "k == 0"), (std::vector<uint32_t>{0, 4}));
  EXPECT_EQ(Rows(index, "NOT k == 1"), (std::vector<uint32_t>{0, 4}));
  EXPECT_EQ(Rows(index, "k != 1"), (std::vector<uint32_t>{0, 4}));
  EXPECT_EQ(Rows(index, "NOT missing == 1"), (std::vector<uint32_t>{0, 1, 3, 4, 5}));
}

TEST(AttributeIndex, GapsAreNotLive) {
  AttributeIndex index;
  index.Add(2, Attrs({{"k", int64_t{1}}}));
  index.Add(5, Attrs({}));
  EXPECT_EQ(index.rows(), 6u);
  EXPECT_EQ(index.live_rows(), 2u);
  EXPECT_EQ(Rows(index, "NOT k == 1"), (std::vector<uint32_t>{5}));
  EXPECT_EQ(Rows(index, "NOT k == 2"), (std::vector<uint32_t>{2, 5}));
}

TEST(AttributeIndex, AddsAfterSealAreFound) {
  AttributeIndex index;
  for (uint32_t r = 0; r < 3000; ++r)
    index.Add(r, Attrs({{"v", int64_t(r % 100)}, {"d", r * 0.5}}));
  index.Seal();
  for (uint32_t r = 3000; r < 3010; ++r) index.Add(r, Attrs({{"v", int64_t{1000}}, {"d", -1.0}}));
  EXPECT_EQ(index.Evaluate(MustParse("v >= 1000")).Count(), 10u);
  EXPECT_EQ(index.Evaluate(MustParse("v == 7")).Count(), 30u);
  EXPECT_EQ(index.Evaluate(MustParse("d < 0")).Count(), 10u);
  EXPECT_EQ(index.Evaluate(MustParse("d < 1")).Count(), 12u);
  EXPECT_EQ(index.Evaluate(MustParse("d != -1")).Count(), 3000u);
}

TEST(AttributeIndex, MultiTenantEquality) {
  // 100,000 rows over 1,000 tenants: each tenant holds 0.1% of the rows.
  AttributeIndex index;
  constexpr uint32_t kRows = 100000;
  for (uint32_t r = 0; r < kRows; ++r)
    index.Add(r, Attrs({{"tenant", "t" + std::to_string(r % 1000)}}));
  index.Seal();
  const Filter f = MustParse("tenant == 't17'");
  const std::vector<uint32_t> rows = index.Evaluate(f).ToRows();
  ASSERT_EQ(rows.size(), 100u);
  for (uint32_t r : rows) EXPECT_EQ(r % 1000, 17u);
  EXPECT_DOUBLE_EQ(index.EstimateSelectivity(f), 0.001);
  EXPECT_GT(index.memory_bytes(), kRows * sizeof(uint32_t));
}

TEST(AttributeIndex, EstimatesCombineIndependently) {
  AttributeIndex index;
  for (uint32_t r = 0; r < 100; ++r) {
    index.Add(r, Attrs({{"a", int64_t{r % 2}}, {"b", std::string(r % 4 == 0 ? "x" : "y")}}));
  }
  EXPECT_DOUBLE_EQ(index.EstimateSelectivity(MustParse("a == 0")), 0.5);
  EXPECT_DOUBLE_EQ(index.EstimateSelectivity(MustParse("b == 'x'")), 0.25);
  EXPECT_DOUBLE_EQ(index.EstimateSelectivity(MustParse("a == 0 AND b == 'x'")), 0.125);
  EXPECT_DOUBLE_EQ(index.EstimateSelectivity(MustParse("a == 0 OR b == 'x'")), 0.5 + 0.25 - 0.125);
  EXPECT_DOUBLE_EQ(index.EstimateSelectivity(MustParse("NOT b == 'x'")), 0.75);
  EXPECT_DOUBLE_EQ(index.EstimateSelectivity(MustParse("b != 'x'")), 0.75);
  EXPECT_DOUBLE_EQ(index.EstimateSelectivity(MustParse("a < 1")), 0.5);
  EXPECT_DOUBLE_EQ(index.EstimateSelectivity(MustParse("b IN ('x', 'y')")), 1.0);
  EXPECT_DOUBLE_EQ(index.EstimateSelectivity(MustParse("b NOT IN ('x')")), 0.75);
  EXPECT_DOUBLE_EQ(index.EstimateSelectivity(MustParse("b NOT IN ('x', 1)")), 0.0);
  EXPECT_DOUBLE_EQ(index.EstimateSelectivity(MustParse("missing == 1")), 0.0);
  EXPECT_DOUBLE_EQ(AttributeIndex().EstimateSelectivity(MustParse("a == 1")), 0.0);
}

TEST(AttributeIndex, ConcurrentEvaluateAgrees) {
  AttributeIndex index;
  for (uint32_t r = 0; r < 5000; ++r) index.Add(r, Attrs({{"v", int64_t(r % 37)}}));
  const Filter f = MustParse("v < 5 OR NOT v != 20");
  const RowBitmap expected = index.Evaluate(f);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i)
        ok[t] += index.Evaluate(f) == expected && index.EstimateSelectivity(f) > 0;
    });
  }
  for (std::thread& t : threads) t.join();
  for (int n : ok) EXPECT_EQ(n, 20);
}

// --- Property test: Evaluate equals per-row Matches ---

class RandomData {
 public:
  explicit RandomData(uint32_t seed) : rng_(seed) {}

  int Uniform(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }

  int64_t Int() {
    static constexpr int64_t kSpecial[] = {std::numeric_limits<int64_t>::min(),
                                           std::numeric_limits<int64_t>::max(), 9007199254740993};
    if (Chance(0.03)) return kSpecial[Uniform(3)];
    return Uniform(11) - 5;
  }
  double Double() {
    static constexpr double kValues[] = {-2.5, -1.0, -0.0, 0.0, 0.5, 1.0, 2.0, 2.5, 3.25, 1e300};
    return kValues[Uniform(10)];
  }
  std::string String() {
    static const char* kValues[] = {"", "a", "ab", "b", "B", "ba", "\xc3\xa9", "\xff", "zz"};
    return kValues[Uniform(9)];
  }
  TagList Tags() {
    TagList tags;
    for (int n = Uniform(4); n > 0; --n) tags.push_back(String());  // repeats allowed
    return tags;
  }

  Attributes Record() {
    Attributes a;
    if (Chance(0.8))
      a.push_back({"i", Chance(0.9) ? AttributeValue(Int()) : AttributeValue(Double())});
    if (Chance(0.8)) a.push_back({"d", Double()});
    if (Chance(0.8)) a.push_back({"s", String()});
    if (Chance(0.8)) a.push_back({"t", Tags()});
    if (Chance(0.9)) {  // one name, every kind
      switch (Uniform(4)) {
        case 0:
          a.push_back({"m", Int()});
          break;
        case 1:
          a.push_back({"m", Double()});
          break;
        case 2:
          a.push_back({"m", String()});
          break;
        default:
          a.push_back({"m", Tags()});
          break;
      }
    }
    std::shuffle(a.begin(), a.end(), rng_);
    return a;
  }

  std::string Literal() {
    switch (Uniform(3)) {
      case 0:
        return std::to_string(Int());
      case 1: {
        std::string s = fmt::format("{}", Double());
        if (s.find_first_of(".e") == std::string::npos) s += ".0";
        return s;
      }
      default: {
        std::string s;
        for (char c : String()) {
          if (c == '\'' || c == '\\') s += '\\';
          s += c;
        }
        return "'" + s + "'";
      }
    }
  }

  std::string Predicate() {
    static const char* kNames[] = {"i", "d", "s", "t", "m", "absent"};
    static const char* kOps[] = {"==", "=", "!=", "<", "<=", ">", ">="};
    std::string name = kNames[Uniform(6)];
    if (Chance(0.25)) {
      std::string list = Literal();
      for (int n = Uniform(3); n > 0; --n) list += ", " + Literal();
      return name + (Chance(0.5) ? " NOT IN (" : " IN (") + list + ")";
    }
    return name + " " + kOps[Uniform(7)] + " " + Literal();
  }

  std::string Expression(int depth) {
    if (depth == 0 || Chance(0.3)) return Predicate();
    switch (Uniform(3)) {
      case 0:
        return "NOT (" + Expression(depth - 1) + ")";
      case 1:
        return "(" + Expression(depth - 1) + ") AND (" + Expression(depth - 1) + ")";
      default:
        return "(" + Expression(depth - 1) + ") OR (" + Expression(depth - 1) + ")";
    }
  }

  std::mt19937 rng_;
};

struct Segment {
  AttributeIndex index;
  std::vector<Attributes> attrs;  // by row
  std::vector<bool> live;
};

void CheckAgainstMatches(const Segment& seg, const Filter& f, const std::string& text) {
  RowBitmap expected(seg.index.rows());
  for (uint32_t r = 0; r < seg.index.rows(); ++r) {
    if (seg.live[r] && f.Matches(seg.attrs[r])) expected.Set(r);
  }
  const RowBitmap got = seg.index.Evaluate(f);
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected) << text << ": index " << got.Count() << " rows, Matches "
                               << expected.Count();
  const double estimate = seg.index.EstimateSelectivity(f);
  EXPECT_GE(estimate, 0.0) << text;
  EXPECT_LE(estimate, 1.0) << text;
  const FilterNode& root = f.root();
  if (root.kind == Kind::kCompare && root.op == CompareOp::kEq) {
    EXPECT_DOUBLE_EQ(estimate, double(expected.Count()) / double(seg.index.live_rows())) << text;
  }
}

TEST(AttributeIndex, EvaluateEqualsMatchesOnRandomData) {
  RandomData rnd(20240611);
  Segment seg;
  constexpr int kRowsBeforeSeal = 1800;
  constexpr int kRowsAfterSeal = 200;
  uint32_t next = 0;
  const auto add = [&] {
    next += rnd.Chance(0.05) ? 2 : 1;  // a gap now and then
    const uint32_t row = next - 1;
    seg.attrs.resize(row + 1);
    seg.live.resize(row + 1, false);
    seg.attrs[row] = rnd.Record();
    seg.live[row] = true;
    seg.index.Add(row, seg.attrs[row]);
  };
  const auto remove_some = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const uint32_t row = uint32_t(rnd.Uniform(int(seg.attrs.size())));
      seg.index.Remove(row);
      seg.live[row] = false;
    }
  };
  std::vector<std::string> texts;
  for (int i = 0; i < 500; ++i) texts.push_back(rnd.Expression(1 + rnd.Uniform(4)));
  for (int i = 0; i < 100; ++i) texts.push_back(rnd.Predicate());

  for (int i = 0; i < kRowsBeforeSeal; ++i) add();
  remove_some(100);
  // Before Seal: part sorted (merged as the tails grew), part tail.
  for (size_t i = 0; i < texts.size(); i += 5) {
    Filter f = MustParse(texts[i]);
    CheckAgainstMatches(seg, f, texts[i]);
  }
  seg.index.Seal();
  for (int i = 0; i < kRowsAfterSeal; ++i) add();
  remove_some(100);
  size_t matched_something = 0;
  for (const std::string& text : texts) {
    Filter f = MustParse(text);
    EXPECT_EQ(MustParse(f.ToString()), f) << text;
    CheckAgainstMatches(seg, f, text);
    matched_something += seg.index.Evaluate(f).Count() > 0;
    if (::testing::Test::HasFailure()) break;
  }
  // The data and expressions are varied enough to exercise both outcomes.
  EXPECT_GT(matched_something, texts.size() / 4);
  EXPECT_LT(matched_something, texts.size());
  EXPECT_EQ(seg.index.live_rows(), size_t(std::count(seg.live.begin(), seg.live.end(), true)));
}

}  // namespace
}  // namespace strata::engine
