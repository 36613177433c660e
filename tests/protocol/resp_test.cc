// RESP request parser and reply writer (protocol/resp.h).

#include "protocol/resp.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace strata::protocol::resp {
namespace {

using Args = std::vector<std::string>;

std::vector<Args> ArgsOf(const std::vector<Command>& commands) {
  std::vector<Args> out;
  for (const auto& c : commands) out.push_back(c.args);
  return out;
}

TEST(RespParser, ParsesAnArrayOfBulkStrings) {
  RequestParser p;
  std::vector<Command> out;
  const std::string wire = "*3\r\n$4\r\nVADD\r\n$3\r\nkey\r\n$0\r\n\r\n";
  auto n = p.Feed(wire, out);
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_EQ(*n, wire.size());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].args, (Args{"VADD", "key", ""}));
  EXPECT_EQ(out[0].wire_bytes, wire.size());
  EXPECT_TRUE(p.idle());
}

TEST(RespParser, BinarySafeBulkStrings) {
  RequestParser p;
  std::vector<Command> out;
  const std::string blob("a\r\n\0b", 5);
  ASSERT_TRUE(p.Feed(EncodeCommand(Args{"ECHO", blob}), out));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].args[1], blob);
}

TEST(RespParser, EverySplitOfTheInputGivesTheSameCommands) {
  const std::string wire = EncodeCommand(Args{"VSIM", "k", "VALUES", "2", "0.5", "1"}) +
                           "PING\r\n" + "ECHO \"a b\" 'c\\'d'\n" +
                           EncodeCommand(Args{"GET", std::string(300, 'x')});
  const std::vector<Args> want = {{"VSIM", "k", "VALUES", "2", "0.5", "1"},
                                  {"PING"},
                                  {"ECHO", "a b", "c'd"},
                                  {"GET", std::string(300, 'x')}};
  for (size_t cut = 0; cut <= wire.size(); ++cut) {
    RequestParser p;
    std::vector<Command> out;
    ASSERT_TRUE(p.Feed(std::string_view(wire).substr(0, cut), out));
    ASSERT_TRUE(p.Feed(std::string_view(wire).substr(cut), out));
    ASSERT_EQ(ArgsOf(out), want) << "cut at " << cut;
  }
  // One byte at a time.
  RequestParser p;
  std::vector<Command> out;
  for (char c : wire) ASSERT_TRUE(p.Feed(std::string_view(&c, 1), out));
  EXPECT_EQ(ArgsOf(out), want);
  EXPECT_TRUE(p.idle());
}

TEST(RespParser, PartialCommandIsNotIdle) {
  RequestParser p;
  std::vector<Command> out;
  ASSERT_TRUE(p.Feed("*2\r\n$4\r\nPI", out));
  EXPECT_TRUE(out.empty());
  EXPECT_FALSE(p.idle());
  ASSERT_TRUE(p.Feed("NG\r\n$1\r\nx\r\n", out));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].args, (Args{"PING", "x"}));
}

TEST(RespParser, EmptyArraysAndEmptyLinesAreIgnored) {
  RequestParser p;
  std::vector<Command> out;
  ASSERT_TRUE(p.Feed("*0\r\n*-1\r\n\r\n   \r\nPING\r\n", out));
  EXPECT_EQ(ArgsOf(out), (std::vector<Args>{{"PING"}}));
}

TEST(RespParser, InlineQuotesAndEscapes) {
  auto w = SplitInline(R"(SET "a\x41\n" 'it''s' "" x)");
  // 'it''s' is one quoted word followed directly by another: unbalanced, as in Redis.
  EXPECT_FALSE(w);
  w = SplitInline(R"(SET "a\x41\n" 'it\'s' "" x)");
  ASSERT_TRUE(w) << w.error().ToString();
  EXPECT_EQ(*w, (Args{"SET", "aA\n", "it's", "", "x"}));
  EXPECT_FALSE(SplitInline("ECHO \"open"));
  EXPECT_FALSE(SplitInline("ECHO 'open"));
}

void ExpectProtocolError(const std::string& wire, const std::string& message_part,
                         const RespLimits& limits = {}) {
  RequestParser p(limits);
  std::vector<Command> out;
  auto n = p.Feed(wire, out);
  ASSERT_FALSE(n) << wire;
  EXPECT_TRUE(n.error().message().starts_with("Protocol error: ")) << n.error().message();
  EXPECT_NE(n.error().message().find(message_part), std::string::npos) << n.error().message();
  // The parser stays failed.
  EXPECT_TRUE(p.failed());
  EXPECT_FALSE(p.Feed("PING\r\n", out));
}

TEST(RespParser, MalformedRequests) {
  ExpectProtocolError("*x\r\n", "invalid multibulk length");
  ExpectProtocolError("*1\r\n:5\r\n", "expected '$', got ':'");
  ExpectProtocolError("*1\r\n*1\r\n$1\r\nx\r\n", "expected '$', got '*'");  // nesting
  ExpectProtocolError("*1\r\n$-2\r\n", "invalid bulk length");
  ExpectProtocolError("*1\r\n$1x\r\n", "invalid bulk length");
  ExpectProtocolError("*1\r\n$1\r\nxyz\r\n", "expected CRLF after a bulk string, got 'y'");
  ExpectProtocolError("ECHO \"unterminated\r\n", "unbalanced quotes");
  ExpectProtocolError("*" + std::string(40, '1') + "\r\n", "too big mbulk count string");
  ExpectProtocolError("*1\r\n$" + std::string(40, '1') + "\r\n", "too big bulk count string");
}

TEST(RespParser, LimitsAreCheckedBeforeTheBytesArrive) {
  RespLimits limits;
  limits.max_args = 4;
  limits.max_bulk_bytes = 100;
  limits.max_command_bytes = 150;
  limits.max_inline_bytes = 16;
  ExpectProtocolError("*5\r\n", "over the limit of 4", limits);
  ExpectProtocolError("*1\r\n$101\r\n", "over the limit of 100", limits);
  ExpectProtocolError("*2\r\n$100\r\n" + std::string(100, 'a') + "\r\n$51\r\n", "150 bytes", limits);
  ExpectProtocolError(std::string(20, 'a'), "too big inline request", limits);
  ExpectProtocolError("a b c d e\r\n", "inline command of 5 arguments", limits);
  // A header announcing the largest bulk string allocates nothing up front.
  RequestParser p(limits);
  std::vector<Command> out;
  ASSERT_TRUE(p.Feed("*1\r\n$100\r\n", out));
  EXPECT_EQ(p.buffered_bytes(), 100u);  // counted as announced, for the budgets
  ASSERT_TRUE(p.Feed(std::string(100, 'b') + "\r\n", out));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].args[0].size(), 100u);
}

TEST(RespWriter, Resp2Shapes) {
  std::string out;
  RespWriter w(out, 2);
  w.Ok();
  w.Error("ERR bad\r\nthing");
  w.Integer(-3);
  w.Bulk("hi");
  w.Null();
  w.NullArray();
  w.Map(1);
  w.Set(0);
  w.Double(0.5);
  w.Bool(true);
  w.Verbatim("x");
  EXPECT_EQ(out,
            "+OK\r\n-ERR bad  thing\r\n:-3\r\n$2\r\nhi\r\n$-1\r\n*-1\r\n*2\r\n*0\r\n$3\r\n0.5\r\n"
            ":1\r\n$1\r\nx\r\n");
}

TEST(RespWriter, Resp3Shapes) {
  std::string out;
  RespWriter w(out, 3);
  w.Null();
  w.NullArray();
  w.Map(2);
  w.Set(1);
  w.Double(1e300);
  w.Double(-std::numeric_limits<double>::infinity());
  w.Bool(false);
  w.Verbatim("ab");
  EXPECT_EQ(out, "_\r\n_\r\n%2\r\n~1\r\n,1e+300\r\n,-inf\r\n#f\r\n=6\r\ntxt:ab\r\n");
}

TEST(RespWriter, DoublesReadBackExactly) {
  for (double v : {0.9998867657923256, 1.0 / 3, 1e-7, 123456789.125, 0.0}) {
    EXPECT_EQ(std::stod(FormatDouble(v)), v);
  }
}

}  // namespace
}  // namespace strata::protocol::resp
