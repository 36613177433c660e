#include "server/auth.h"

#include <algorithm>
#include <cstddef>

namespace strata::server {

bool TokensEqual(std::string_view expected, std::string_view given) {
  const size_t n = std::max(expected.size(), given.size());
  // A length mismatch is folded into the same accumulator rather than returned
  // early. `volatile` keeps the compiler from turning the loop into a memcmp
  // that stops at the first difference.
  volatile unsigned char diff = expected.size() == given.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char a = i < expected.size() ? static_cast<unsigned char>(expected[i]) : 0;
    const unsigned char b = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff = diff | static_cast<unsigned char>(a ^ b);
  }
  return diff == 0;
}

}  // namespace strata::server
