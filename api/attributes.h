#pragma once
// Per-vector attributes: named values of four kinds -- int64, double, string, and a
// list of strings (tags). The planner filters on them; the engine stores them next to
// each vector and returns them from Get; the wire carries them as types 0..3, in the
// variant's order (docs/PROTOCOL.md). The limits the engine enforces are in
// engine/attributes.h.
//
// Value types; thread-compatible.

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace strata {

using TagList = std::vector<std::string>;
// The alternatives' order is the wire's type byte (0 int64, 1 double, 2 string, 3 tags).
using AttributeValue = std::variant<int64_t, double, std::string, TagList>;

struct Attribute {
  std::string name;
  AttributeValue value;
  friend bool operator==(const Attribute&, const Attribute&) = default;
};
using Attributes = std::vector<Attribute>;

}  // namespace strata
