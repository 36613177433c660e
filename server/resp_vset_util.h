#pragma once
// Argument parsing shared by the vector-set commands (resp_vset.cc, resp_vset_read.cc).
//
// Free functions; safe from any thread.

#include <fmt/core.h>

#include <charconv>
#include <cstdint>
#include <cstring>
#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "api/types.h"
#include "server/resp_commands.h"

namespace strata::server {

// The largest dimension a vector may have (Redis: VSET_MAX_VECTOR_DIM; Strata: 65536).
inline constexpr size_t kMaxRespVectorDim = 65536;

// A whole decimal integer (an optional sign and digits), as Redis's string2ll.
inline bool ParseInt(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 20 || s[0] == '+') return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// A finite or infinite double (not NaN), with nothing after it, as Redis's string2d.
// std::from_chars: no allocation, no locale (VALUES parses up to 65536 of these per command).
inline bool ParseDouble(std::string_view s, double& out) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  if (s.empty() || s.size() > 256 || s[0] == '+' || s[0] == ' ') return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && out == out;
}

struct VectorArgs {
  std::vector<float> values;
  size_t consumed = 0;  // words of the command taken: FP32 + blob, or VALUES + n + n values
};

// `FP32 <blob>` (little-endian floats) or `VALUES n v1 .. vn` at args[at]; the error reply
// text (no leading '-') as Redis words it otherwise.
inline std::expected<VectorArgs, std::string> ParseVectorArgs(std::span<const std::string> args,
                                                              size_t at) {
  const std::string_view invalid = "ERR invalid vector specification";
  if (at >= args.size()) return std::unexpected(std::string(invalid));
  const std::string kind = UpperAscii(args[at]);
  VectorArgs out;
  if (kind == "FP32") {
    if (at + 1 >= args.size()) return std::unexpected(std::string(invalid));
    const std::string& blob = args[at + 1];
    if (blob.size() % 4 != 0 || blob.empty() || blob.size() / 4 > kMaxRespVectorDim) {
      return std::unexpected(std::string(invalid));
    }
    out.values.resize(blob.size() / 4);
    std::memcpy(out.values.data(), blob.data(), blob.size());
    out.consumed = 2;
    return out;
  }
  if (kind == "VALUES") {
    int64_t n = 0;
    if (at + 1 >= args.size() || !ParseInt(args[at + 1], n) || n < 1 ||
        n > int64_t(kMaxRespVectorDim) || args.size() - at - 2 < size_t(n)) {
      return std::unexpected(std::string(invalid));
    }
    out.values.resize(size_t(n));
    for (int64_t j = 0; j < n; ++j) {
      double v = 0;
      if (!ParseDouble(args[at + 2 + size_t(j)], v)) return std::unexpected(std::string(invalid));
      out.values[size_t(j)] = static_cast<float>(v);
    }
    out.consumed = size_t(n) + 2;
    return out;
  }
  return std::unexpected(std::string(invalid));
}

// The element a hit is: its key; a record written by id (the binary protocol) by its
// decimal id.
inline std::string ElementName(const KeyedNeighbor& hit) {
  return hit.key.empty() ? fmt::format("{}", hit.id) : hit.key;
}

}  // namespace strata::server
