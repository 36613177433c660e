// libFuzzer target for the RESP request parser (protocol/resp.h).
//
// An input is a byte stream as a client would send it. The first byte picks how the stream is
// cut into reads (all at once, every byte alone, or cuts every 1..255 bytes), and tight limits
// are used for inputs whose second byte is odd, so that the limit checks run too. The rest is
// fed to a RequestParser. Checks (a failure aborts: that is a finding):
//  - the parser never consumes more than it was given, and after an error keeps failing;
//  - cutting the stream differently gives the same commands and the same outcome (the parser
//    is incremental: no state may depend on where a read ended);
//  - every command parsed, written back as an array of bulk strings (EncodeCommand), parses to
//    the same arguments in one command;
//  - no argument passes max_bulk_bytes, no command more than max_args arguments;
//  - what one input allocates stays under a small multiple of its size (the limits are
//    checked before allocating, and strings grow with the bytes that arrive).
//
// Built two ways, like protocol_fuzz.cc: with clang's -fsanitize=fuzzer (scripts/fuzz.sh resp)
// and, with gcc, into resp_fuzz_corpus_test, whose main() replays tests/fuzz/corpus/resp.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "protocol/resp.h"
#include "tests/protocol/counting_new.h"

namespace {

using namespace strata::protocol::resp;

// Each byte of input may become a byte of an argument, a vector slot of a command (an empty
// argument costs a std::string), and the copies below (three parses, one re-encoding).
constexpr size_t kAllocFactor = 512;
constexpr size_t kAllocSlack = 256 << 10;

size_t g_commands = 0;

[[noreturn]] void Finding(const char* what) {
  std::fprintf(stderr, "resp_fuzz: %s\n", what);
  std::abort();
}

struct Outcome {
  std::vector<std::vector<std::string>> commands;
  bool failed = false;
  std::string error;
};

Outcome Parse(std::span<const char> stream, size_t cut, const RespLimits& limits) {
  Outcome o;
  RequestParser p(limits);
  std::vector<Command> out;
  size_t pos = 0;
  while (pos < stream.size()) {
    const size_t n = cut == 0 ? stream.size() - pos : std::min(cut, stream.size() - pos);
    auto r = p.Feed(std::string_view(stream.data() + pos, n), out);
    if (!r) {
      o.failed = true;
      o.error = r.error().message();
      if (!p.failed()) Finding("an error left the parser usable");
      if (p.Feed("P", out)) Finding("a failed parser accepted more");
      break;
    }
    if (*r != n) Finding("Feed consumed a different number of bytes than given");
    pos += n;
  }
  for (auto& c : out) {
    if (c.args.empty()) Finding("an empty command was returned");
    if (c.args.size() > limits.max_args) Finding("a command passed max_args");
    size_t bytes = 0;
    for (const auto& a : c.args) {
      if (a.size() > std::max(limits.max_bulk_bytes, limits.max_inline_bytes)) {
        Finding("an argument passed max_bulk_bytes");
      }
      bytes += a.size();
    }
    if (c.wire_bytes < bytes) Finding("a command took fewer wire bytes than its arguments");
    o.commands.push_back(std::move(c.args));
  }
  return o;
}

void FuzzOne(const uint8_t* data, size_t size) {
  if (size < 2) return;
  const uint8_t how = data[0];
  RespLimits limits;
  if (data[1] & 1) {
    limits.max_args = 8;
    limits.max_bulk_bytes = 64;
    limits.max_command_bytes = 200;
    limits.max_inline_bytes = 48;
  }
  std::span<const char> stream(reinterpret_cast<const char*>(data + 2), size - 2);
  const size_t cut = how == 0 ? 0 : how == 1 ? 1 : how;
  const Outcome whole = Parse(stream, 0, limits);
  const Outcome split = Parse(stream, cut, limits);
  if (whole.commands != split.commands || whole.failed != split.failed || whole.error != split.error) {
    Finding("the same stream cut differently parsed differently");
  }
  for (const auto& args : whole.commands) {
    const std::string again = EncodeCommand(args);
    RequestParser p;  // default limits: anything parsed under the tight ones fits
    std::vector<Command> out;
    auto r = p.Feed(again, out);
    if (!r || out.size() != 1 || out[0].args != args || !p.idle()) {
      Finding("a parsed command re-encoded does not parse back to itself");
    }
    if (out[0].wire_bytes != again.size()) Finding("wire_bytes of a re-encoded command is wrong");
    ++g_commands;
  }
}

}  // namespace

// How many commands so far have survived the re-encoding check (the corpus driver uses it to
// tell a corpus of valid requests from one that no longer parses).
extern "C" size_t StrataFuzzRoundTrips() { return g_commands; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  strata::protocol::testing::CountAllocations count(kAllocFactor * size + kAllocSlack);
  FuzzOne(data, size);
  return 0;
}
