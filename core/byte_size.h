#pragma once
// Sizes and memory budgets as users write them, parsed the same way by every program
// (`strata`, `strata-cli`, `strata-server`):
//
//   "1048576", "512K", "64M", "2G", "1T"   bytes; suffixes are powers of 1024, with an
//                                          optional "B"/"iB" ("512MiB", "2GB") and any case
//   "20%", "12.5%"                         a memory budget's share of the data it holds
//                                          (for an index: its raw float32 vectors)
//
// A bare fraction such as "0.2" is refused with a hint to write "20%", so that a number is
// never read as bytes by one command and as a share by another. Pure functions; thread-safe.

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace strata {

// A byte count; InvalidArgument (quoting the text) for anything else, including a percentage.
Result<uint64_t> ParseByteSize(std::string_view text);

// Either a byte count or a share of the data.
struct MemoryBudget {
  uint64_t bytes = 0;
  double share = 0;  // in (0, 1] when given as a percentage; 0 otherwise
  bool is_share() const { return share > 0; }
  // The budget for data of `data_bytes` bytes.
  uint64_t BytesFor(uint64_t data_bytes) const {
    return is_share() ? uint64_t(share * double(data_bytes)) : bytes;
  }
  // As the user would write it ("20%", "2G", "1536M", "1000").
  std::string ToString() const;
};

// Bytes (as ParseByteSize) or a percentage in (0, 100].
Result<MemoryBudget> ParseMemoryBudget(std::string_view text);

}  // namespace strata
