#include "protocol/resp.h"

#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

namespace strata::protocol::resp {

namespace {

// "123" or "-1" (digits, an optional leading '-'), nothing else.
bool ParseLength(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  const char* first = s.data();
  const char* last = s.data() + s.size();
  if (*first == '+') return false;
  auto [ptr, ec] = std::from_chars(first, last, out);
  return ec == std::errc() && ptr == last;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Arguments reserved from an array header at most (32 bytes each).
constexpr size_t kReserveArgs = 1024;

bool IsBlank(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f'; }

// A printable rendering of one byte for an error message ("'x'", "'\x00'").
std::string ShowByte(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return fmt::format("'{}'", c);
  return fmt::format("'\\x{:02x}'", u);
}

}  // namespace

Status RequestParser::Fail(Status s) {
  error_ = std::move(s);
  line_.clear();
  line_.shrink_to_fit();
  current_ = {};
  return error_;
}

Result<bool> RequestParser::TakeLine(std::span<const char>& data, size_t max, const char* too_big) {
  // Room for the line, its '\r' and its '\n'.
  const size_t room = max + 2 > line_.size() ? max + 2 - line_.size() : 0;
  const size_t scan = std::min(room, data.size());
  const void* nl = std::memchr(data.data(), '\n', scan);
  if (nl == nullptr) {
    line_.append(data.data(), scan);
    data = data.subspan(scan);
    wire_bytes_ += scan;
    if (line_.size() > max + 1 || (line_.size() == max + 1 && line_.back() != '\r')) {
      return Error(Fail(InvalidArgument("Protocol error: {}", too_big)));
    }
    return false;
  }
  const size_t n = static_cast<size_t>(static_cast<const char*>(nl) - data.data());
  line_.append(data.data(), n);
  data = data.subspan(n + 1);
  wire_bytes_ += n + 1;
  if (!line_.empty() && line_.back() == '\r') line_.pop_back();
  if (line_.size() > max) return Error(Fail(InvalidArgument("Protocol error: {}", too_big)));
  return true;
}

void RequestParser::FinishCommand(std::vector<Command>& out) {
  current_.wire_bytes = wire_bytes_;
  out.push_back(std::move(current_));
  current_ = {};
  state_ = State::kStart;
  args_expected_ = 0;
  command_bytes_ = 0;
  wire_bytes_ = 0;
}

Result<size_t> RequestParser::Feed(std::string_view input, std::vector<Command>& out) {
  if (!error_.ok()) return Error(error_);
  std::span<const char> data(input.data(), input.size());
  const size_t total = data.size();
  while (!data.empty()) {
    switch (state_) {
      case State::kStart:
        state_ = data[0] == '*' ? State::kArrayHeader : State::kInline;
        break;
      case State::kInline: {
        STRATA_ASSIGN_OR_RETURN(const bool done,
                                TakeLine(data, limits_.max_inline_bytes, "too big inline request"));
        if (!done) break;
        auto words = SplitInline(line_);
        line_.clear();
        if (!words) return Error(Fail(words.error()));
        if (words->size() > limits_.max_args) {
          return Error(Fail(OutOfRange(
              "Protocol error: inline command of {} arguments, over the limit of {}",
              words->size(), limits_.max_args)));
        }
        if (words->empty()) {  // an empty line: ignored, as Redis does
          state_ = State::kStart;
          wire_bytes_ = 0;
          break;
        }
        current_.args = std::move(*words);
        FinishCommand(out);
        break;
      }
      case State::kArrayHeader: {
        STRATA_ASSIGN_OR_RETURN(const bool done,
                                TakeLine(data, kMaxLengthLine, "too big mbulk count string"));
        if (!done) break;
        int64_t n = 0;
        if (!ParseLength(std::string_view(line_).substr(1), n) ||
            n > static_cast<int64_t>(limits_.max_args)) {
          return Error(Fail(n > static_cast<int64_t>(limits_.max_args)
                                ? OutOfRange("Protocol error: invalid multibulk length: {} "
                                             "arguments, over the limit of {}",
                                             n, limits_.max_args)
                                : InvalidArgument("Protocol error: invalid multibulk length")));
        }
        line_.clear();
        if (n <= 0) {  // "*0" and "*-1": no command, as in Redis
          state_ = State::kStart;
          wire_bytes_ = 0;
          break;
        }
        args_expected_ = static_cast<size_t>(n);
        // Reserved up to kReserveArgs only: a peer announcing a million arguments and sending
        // none costs little; past that the vector grows with the arguments that do arrive.
        current_.args.reserve(std::min(args_expected_, kReserveArgs));
        state_ = State::kBulkHeader;
        break;
      }
      case State::kBulkHeader: {
        if (line_.empty() && data[0] != '$') {
          return Error(Fail(InvalidArgument("Protocol error: expected '$', got {}", ShowByte(data[0]))));
        }
        int64_t n = 0;
        // Fast path: the whole "$<n>\r\n" line is in this read (the usual case) and is parsed
        // where it lies; otherwise it is gathered in line_ across reads.
        const void* nl = line_.empty() ? std::memchr(data.data(), '\n',
                                                     std::min(data.size(), kMaxLengthLine + 2))
                                       : nullptr;
        if (nl != nullptr) {
          const size_t len = static_cast<size_t>(static_cast<const char*>(nl) - data.data());
          std::string_view line(data.data(), len);
          if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
          if (line.size() > kMaxLengthLine) {
            return Error(Fail(InvalidArgument("Protocol error: too big bulk count string")));
          }
          if (!ParseLength(line.substr(1), n) || n < 0) {
            return Error(Fail(InvalidArgument("Protocol error: invalid bulk length")));
          }
          data = data.subspan(len + 1);
          wire_bytes_ += len + 1;
        } else {
          STRATA_ASSIGN_OR_RETURN(const bool done,
                                  TakeLine(data, kMaxLengthLine, "too big bulk count string"));
          if (!done) break;
          if (!ParseLength(std::string_view(line_).substr(1), n) || n < 0) {
            return Error(Fail(InvalidArgument("Protocol error: invalid bulk length")));
          }
          line_.clear();
        }
        const auto len = static_cast<uint64_t>(n);
        if (len > limits_.max_bulk_bytes) {
          return Error(Fail(OutOfRange(
              "Protocol error: invalid bulk length: {} bytes, over the limit of {}", len,
              limits_.max_bulk_bytes)));
        }
        if (len > limits_.max_command_bytes - std::min(command_bytes_, limits_.max_command_bytes)) {
          return Error(Fail(OutOfRange(
              "Protocol error: command too large: its arguments pass the limit of {} bytes",
              limits_.max_command_bytes)));
        }
        command_bytes_ += len;
        current_.args.emplace_back();
        bulk_left_ = len;
        crlf_left_ = 2;
        state_ = State::kBulkBody;
        break;
      }
      case State::kBulkBody: {
        const size_t n = std::min(bulk_left_, data.size());
        current_.args.back().append(data.data(), n);
        data = data.subspan(n);
        wire_bytes_ += n;
        bulk_left_ -= n;
        if (bulk_left_ == 0) state_ = State::kBulkCrlf;
        break;
      }
      case State::kBulkCrlf: {
        const char want = crlf_left_ == 2 ? '\r' : '\n';
        if (data[0] != want) {
          return Error(Fail(InvalidArgument(
              "Protocol error: expected CRLF after a bulk string, got {}", ShowByte(data[0]))));
        }
        data = data.subspan(1);
        ++wire_bytes_;
        if (--crlf_left_ > 0) break;
        if (current_.args.size() == args_expected_) {
          FinishCommand(out);
        } else {
          state_ = State::kBulkHeader;
        }
        break;
      }
    }
  }
  return total;
}

Result<std::vector<std::string>> SplitInline(std::string_view line) {
  std::vector<std::string> words;
  size_t i = 0;
  const size_t n = line.size();
  auto unbalanced = [] { return Error(InvalidArgument("Protocol error: unbalanced quotes in request")); };
  while (true) {
    while (i < n && IsBlank(line[i])) ++i;
    if (i == n) return words;
    std::string word;
    bool in_double = false;
    bool in_single = false;
    while (true) {
      if (in_double) {
        if (i == n) return unbalanced();
        if (line[i] == '\\' && i + 3 < n && line[i + 1] == 'x' && HexValue(line[i + 2]) >= 0 &&
            HexValue(line[i + 3]) >= 0) {
          word.push_back(static_cast<char>(HexValue(line[i + 2]) * 16 + HexValue(line[i + 3])));
          i += 4;
        } else if (line[i] == '\\' && i + 1 < n) {
          char c = line[i + 1];
          switch (c) {
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'b': c = '\b'; break;
            case 'a': c = '\a'; break;
            default: break;
          }
          word.push_back(c);
          i += 2;
        } else if (line[i] == '"') {
          // A closing quote must be followed by a blank or the end.
          if (i + 1 < n && !IsBlank(line[i + 1])) return unbalanced();
          in_double = false;
          ++i;
          break;
        } else {
          word.push_back(line[i++]);
        }
      } else if (in_single) {
        if (i == n) return unbalanced();
        if (line[i] == '\\' && i + 1 < n && line[i + 1] == '\'') {
          word.push_back('\'');
          i += 2;
        } else if (line[i] == '\'') {
          if (i + 1 < n && !IsBlank(line[i + 1])) return unbalanced();
          in_single = false;
          ++i;
          break;
        } else {
          word.push_back(line[i++]);
        }
      } else {
        if (i == n || IsBlank(line[i])) break;
        if (line[i] == '"') {
          in_double = true;
        } else if (line[i] == '\'') {
          in_single = true;
        } else {
          word.push_back(line[i]);
        }
        ++i;
      }
    }
    words.push_back(std::move(word));
  }
}

// ---------------------------------------------------------------------------
// RespWriter
// ---------------------------------------------------------------------------

namespace {
void AppendLine(std::string& out, char type, std::string_view body) {
  out.push_back(type);
  out.append(body);
  out.append("\r\n");
}
// A simple string or error may not hold CR or LF.
std::string OneLine(std::string_view s) {
  std::string r(s);
  for (char& c : r) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  return r;
}
}  // namespace

void RespWriter::SimpleString(std::string_view s) { AppendLine(out_, '+', OneLine(s)); }
void RespWriter::Error(std::string_view message) { AppendLine(out_, '-', OneLine(message)); }
void RespWriter::Integer(int64_t v) { AppendLine(out_, ':', fmt::format("{}", v)); }
void RespWriter::Bulk(std::string_view s) {
  AppendLine(out_, '$', fmt::format("{}", s.size()));
  out_.append(s);
  out_.append("\r\n");
}
void RespWriter::Null() { out_.append(resp3() ? "_\r\n" : "$-1\r\n"); }
void RespWriter::NullArray() { out_.append(resp3() ? "_\r\n" : "*-1\r\n"); }
void RespWriter::Array(size_t n) { AppendLine(out_, '*', fmt::format("{}", n)); }
void RespWriter::Map(size_t pairs) {
  if (resp3()) {
    AppendLine(out_, '%', fmt::format("{}", pairs));
  } else {
    Array(2 * pairs);
  }
}
void RespWriter::Set(size_t n) {
  if (resp3()) {
    AppendLine(out_, '~', fmt::format("{}", n));
  } else {
    Array(n);
  }
}
void RespWriter::Double(double v) {
  if (resp3()) {
    AppendLine(out_, ',', FormatDouble(v));
  } else {
    Bulk(FormatDouble(v));
  }
}
void RespWriter::Bool(bool v) {
  if (resp3()) {
    out_.append(v ? "#t\r\n" : "#f\r\n");
  } else {
    Integer(v ? 1 : 0);
  }
}
void RespWriter::Verbatim(std::string_view text) {
  if (!resp3()) {
    Bulk(text);
    return;
  }
  AppendLine(out_, '=', fmt::format("{}", text.size() + 4));
  out_.append("txt:");
  out_.append(text);
  out_.append("\r\n");
}

std::string FormatDouble(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format("{}", v);
}

std::string EncodeCommand(std::span<const std::string> args) {
  std::string out = fmt::format("*{}\r\n", args.size());
  for (const std::string& a : args) {
    out += fmt::format("${}\r\n", a.size());
    out += a;
    out += "\r\n";
  }
  return out;
}

}  // namespace strata::protocol::resp
