#include "core/byte_size.h"

#include <cctype>
#include <charconv>
#include <limits>

#include <fmt/core.h>

namespace strata {
namespace {

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

Result<uint64_t> ParseByteSize(std::string_view text) {
  const std::string_view t = Trim(text);
  if (!t.empty() && t.back() == '%') {
    return Error(InvalidArgument("'{}' is a percentage; a byte size is wanted here (e.g. 512M, 2G)", text));
  }
  uint64_t value = 0;
  const char* begin = t.data();
  const char* end = t.data() + t.size();
  auto [p, ec] = std::from_chars(begin, end, value);
  if (ec == std::errc::result_out_of_range) return Error(InvalidArgument("'{}' is too large", text));
  if (ec != std::errc() || p == begin) {
    return Error(InvalidArgument("'{}' is not a byte size (e.g. 1048576, 512M, 2G)", text));
  }
  if (p != end && *p == '.') {
    return Error(InvalidArgument("'{}' is not a whole number of bytes (a share is written as a percentage, "
                                 "e.g. 20%)", text));
  }
  const std::string suffix = Upper(std::string_view(p, size_t(end - p)));
  int shift = -1;
  if (suffix.empty() || suffix == "B") shift = 0;
  const char units[] = {'K', 'M', 'G', 'T'};
  for (int i = 0; i < 4; ++i) {
    const std::string u(1, units[i]);
    if (suffix == u || suffix == u + "B" || suffix == u + "IB") shift = 10 * (i + 1);
  }
  if (shift < 0) {
    return Error(InvalidArgument("'{}': unknown size suffix '{}' (K, M, G or T, powers of 1024)", text,
                                 std::string_view(p, size_t(end - p))));
  }
  if (shift > 0 && value > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return Error(InvalidArgument("'{}' is too large", text));
  }
  return value << shift;
}

Result<MemoryBudget> ParseMemoryBudget(std::string_view text) {
  const std::string_view t = Trim(text);
  MemoryBudget b;
  if (!t.empty() && t.back() == '%') {
    double pct = 0;
    const std::string_view num = Trim(t.substr(0, t.size() - 1));
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), pct);
    if (ec != std::errc() || p != num.data() + num.size() || num.empty()) {
      return Error(InvalidArgument("'{}' is not a percentage (e.g. 20%)", text));
    }
    if (!(pct > 0 && pct <= 100)) {
      return Error(InvalidArgument("'{}': a percentage must be above 0 and at most 100", text));
    }
    b.share = pct / 100.0;
    return b;
  }
  STRATA_ASSIGN_OR_RETURN(b.bytes, ParseByteSize(text));
  return b;
}

std::string MemoryBudget::ToString() const {
  if (is_share()) return fmt::format("{:g}%", share * 100.0);
  for (const auto& [shift, unit] : {std::pair{40, "T"}, std::pair{30, "G"}, std::pair{20, "M"}, std::pair{10, "K"}}) {
    if (bytes != 0 && bytes % (uint64_t{1} << shift) == 0) return fmt::format("{}{}", bytes >> shift, unit);
  }
  return fmt::format("{}", bytes);
}

}  // namespace strata
