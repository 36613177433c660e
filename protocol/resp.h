#pragma once
// RESP, the Redis serialization protocol (RESP2, and RESP3 after `HELLO 3`): the
// request parser and the reply writer that strata-server's RESP listener uses
// (docs/RESP.md). Nothing here knows a command: a request is a list of byte strings.
//
// Requests. A client sends either an array of bulk strings
//   *3\r\n$4\r\nVCARD\r\n$3\r\nkey\r\n...
// (what every client library and redis-cli send) or an inline command, one line of
// words separated by blanks, with "double" (escapes \n \r \t \b \a \\ \" \xHH) and
// 'single' (escape \') quotes, as typed over telnet. Both are parsed incrementally:
// Feed() takes whatever bytes a read returned, however they are split, and yields
// the commands completed so far; a bulk string split over many reads is never
// re-scanned.
//
// Limits (RespLimits), checked BEFORE anything is allocated for what a header
// announces: an array (or an inline line) of more than max_args elements, a bulk string over
// max_bulk_bytes, a command whose bulk strings add up to more than
// max_command_bytes, an inline line over max_inline_bytes, a length line over 32
// bytes. Bulk strings grow as their bytes arrive, so a header announcing a large
// string costs nothing until the bytes come. A request array holds bulk strings
// only: any other type inside it (a nested array, a map, ...) is a protocol error,
// so nesting is bounded at one level.
//
// Errors. Anything malformed -- a bad length, a missing CRLF, an element that is not
// a bulk string, unbalanced quotes, a limit passed -- is a protocol error: Feed
// returns it (the message starts "Protocol error: " like Redis's own) and the parser
// stays failed; the server answers `-ERR <message>` and closes the connection, as
// Redis does. A parser never crashes or aborts on any input (tests/fuzz/resp_fuzz.cc).
//
// Replies. RespWriter appends replies to a byte string in the connection's protocol
// version: in RESP2 a map is a flat array of 2n elements, a set an array, a double a
// bulk string, a boolean an integer 1 or 0, every null `$-1` (or `*-1` for a null
// array); RESP3 has its own type for each.
//
// Thread-compatible value types: one parser per connection.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace strata::protocol::resp {

struct RespLimits {
  size_t max_args = 1024 * 1024;              // elements of one request array
  size_t max_bulk_bytes = 512u << 20;         // one bulk string
  size_t max_command_bytes = 512u << 20;      // all the bulk strings of one command
  size_t max_inline_bytes = 64 * 1024;        // one inline command line
};

// The longest "*<count>" or "$<length>" line accepted (Redis: same order of size).
inline constexpr size_t kMaxLengthLine = 32;

// One request: its words ("VADD", "key", ...), binary-safe.
struct Command {
  std::vector<std::string> args;
  size_t wire_bytes = 0;  // bytes it took on the wire
  friend bool operator==(const Command&, const Command&) = default;
};

// Incremental request parser.
//
// Thread-compatible: confined to one connection.
class RequestParser {
 public:
  explicit RequestParser(const RespLimits& limits = {}) : limits_(limits) {}

  // Consumes bytes from `data` and appends every command completed to `out`. Returns
  // the number of bytes consumed: all of them, unless a protocol error stopped it
  // (then the Status, InvalidArgument or OutOfRange for a limit; every later call
  // returns the same error). Bytes of an incomplete command are kept inside the
  // parser: the caller never feeds them again.
  Result<size_t> Feed(std::string_view data, std::vector<Command>& out);

  // New limits for what is read from now on (a connection raises them once authenticated);
  // a command partly read keeps its state.
  void SetLimits(const RespLimits& limits) { limits_ = limits; }

  // True when no command is partly read (the connection may idle here).
  bool idle() const { return state_ == State::kStart && line_.empty(); }
  // Bytes held for the command being read (for budgets).
  size_t buffered_bytes() const { return command_bytes_ + line_.size(); }
  bool failed() const { return !error_.ok(); }

 private:
  enum class State { kStart, kInline, kArrayHeader, kBulkHeader, kBulkBody, kBulkCrlf };

  Status Fail(Status s);
  // Appends bytes to line_ up to and including '\n' (limit: `max`). Returns true once
  // the line is complete (line_ then holds it without the "\r\n").
  Result<bool> TakeLine(std::span<const char>& data, size_t max, const char* too_big);
  void FinishCommand(std::vector<Command>& out);

  RespLimits limits_;
  State state_ = State::kStart;
  Status error_;
  std::string line_;         // the header or inline line being read
  Command current_;          // the command being read
  size_t args_expected_ = 0;
  size_t bulk_left_ = 0;     // bytes of the current bulk string still to come
  size_t crlf_left_ = 0;     // bytes of the CRLF after a bulk string still to come
  size_t command_bytes_ = 0; // bulk bytes of the current command so far
  size_t wire_bytes_ = 0;    // wire bytes of the current command so far
};

// Splits one inline command line into words (Redis's sdssplitargs rules); an
// InvalidArgument "Protocol error: unbalanced quotes in request" for a line whose
// quotes do not close.
Result<std::vector<std::string>> SplitInline(std::string_view line);

// Appends RESP replies to a byte string.
//
// Thread-compatible.
class RespWriter {
 public:
  explicit RespWriter(std::string& out, int protocol = 2) : out_(out), protocol_(protocol) {}
  int protocol() const { return protocol_; }
  bool resp3() const { return protocol_ >= 3; }

  void SimpleString(std::string_view s);  // '+'; CR and LF are replaced by blanks
  void Ok() { SimpleString("OK"); }
  void Error(std::string_view message);  // '-'; the message must start with its code ("ERR ...")
  void Integer(int64_t v);
  void Bulk(std::string_view s);
  void Null();       // RESP2 `$-1`, RESP3 `_`
  void NullArray();  // RESP2 `*-1`, RESP3 `_`
  void Array(size_t n);
  void Map(size_t pairs);  // RESP2: an array of 2 x pairs
  void Set(size_t n);      // RESP2: an array
  void Double(double v);   // RESP2: a bulk string ("0.5", "inf", "nan")
  void Bool(bool v);       // RESP2: the integer 1 or 0
  void Verbatim(std::string_view text);  // RESP3 `=` "txt:"; RESP2: a bulk string
  void Raw(std::string_view encoded) { out_.append(encoded); }  // replies written elsewhere

 private:
  std::string& out_;
  int protocol_;
};

// The shortest text that reads back as `v` ("0.5", "1e+20", "inf", "-inf", "nan"), as
// Redis writes doubles.
std::string FormatDouble(double v);

// A request written the way clients send one: an array of bulk strings.
std::string EncodeCommand(std::span<const std::string> args);

}  // namespace strata::protocol::resp
