#include "storage/byte_format.h"

#include <fmt/core.h>

namespace strata::storage {

std::string MagicForMessage(std::span<const std::byte> magic) {
  size_t n = magic.size();
  while (n > 0 && magic[n - 1] == std::byte{0}) --n;
  std::string out = "\"";
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(magic[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  out += '"';
  return out;
}

}  // namespace strata::storage
