#pragma once
// Per-vector attributes: named values of four kinds -- int64, double, string,
// and a list of strings (tags). The planner filters on them; the engine stores
// them next to each vector and returns them from Get.
//
// Limits (checked by ValidateAttributes, so that a bad request is refused up
// front rather than stored): at most kMaxAttributes per vector, names of 1 to
// kMaxAttributeName bytes and unique, strings and tags of at most
// kMaxAttributeString bytes, at most kMaxTags tags, doubles finite.
//
// Value types; thread-compatible.

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "core/status.h"

namespace strata::engine {

using TagList = std::vector<std::string>;
using AttributeValue = std::variant<int64_t, double, std::string, TagList>;

struct Attribute {
  std::string name;
  AttributeValue value;
  friend bool operator==(const Attribute&, const Attribute&) = default;
};
using Attributes = std::vector<Attribute>;

inline constexpr size_t kMaxAttributes = 256;
inline constexpr size_t kMaxAttributeName = 256;
inline constexpr size_t kMaxAttributeString = 64 * 1024;
inline constexpr size_t kMaxTags = 1024;

Status ValidateAttributes(const Attributes& attributes);

}  // namespace strata::engine
