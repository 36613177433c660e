#pragma once
// Per-vector attributes (the types: api/attributes.h) and the limits the engine
// enforces on them.
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

#include "api/attributes.h"
#include "core/status.h"

namespace strata::engine {

// The types are the shared vocabulary's (api/attributes.h); the engine's names for them.
using strata::Attribute;
using strata::Attributes;
using strata::AttributeValue;
using strata::TagList;

inline constexpr size_t kMaxAttributes = 256;
inline constexpr size_t kMaxAttributeName = 256;
inline constexpr size_t kMaxAttributeString = 64 * 1024;
inline constexpr size_t kMaxTags = 1024;

Status ValidateAttributes(const Attributes& attributes);

}  // namespace strata::engine
