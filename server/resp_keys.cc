#include "server/resp_keys.h"

#include <fmt/core.h>

#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "api/types.h"
#include "engine/attributes.h"

namespace strata::server {

bool IsCollectionKey(std::string_view key) {
  if (key.empty() || key.size() > 64) return false;
  for (char c : key) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string InvalidKeyMessage(std::string_view key) {
  return fmt::format(
      "ERR invalid key '{}': a key is a Strata collection, named by 1..64 characters of "
      "[A-Za-z0-9_-]",
      KeyForMessage(key));
}

Result<Attributes> AttributesFromJson(std::string_view json) {
  Attributes out;
  if (json.empty()) return out;
  if (json.size() > engine::kMaxAttributeString) {
    return Error(InvalidArgument("attributes of {} bytes; at most {} are stored", json.size(),
                                 engine::kMaxAttributeString));
  }
  out.push_back(Attribute{std::string(kJsonAttribute), std::string(json)});
  const nlohmann::json doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return out;  // kept as given, with no fields (Redis: matches nothing)
  for (const auto& [name, value] : doc.items()) {
    if (name.empty() || name.size() > engine::kMaxAttributeName || name == kJsonAttribute) continue;
    AttributeValue v;
    if (value.is_boolean()) {
      v = int64_t(value.get<bool>() ? 1 : 0);
    } else if (value.is_number_integer() && !value.is_number_unsigned()) {
      v = value.get<int64_t>();
    } else if (value.is_number_unsigned()) {
      const uint64_t u = value.get<uint64_t>();
      if (u <= uint64_t(std::numeric_limits<int64_t>::max())) {
        v = int64_t(u);
      } else {
        v = double(u);
      }
    } else if (value.is_number_float()) {
      const double d = value.get<double>();
      if (!std::isfinite(d)) continue;
      v = d;
    } else if (value.is_string()) {
      v = value.get<std::string>();
    } else if (value.is_array() && value.size() <= engine::kMaxTags &&
               std::all_of(value.begin(), value.end(), [](const auto& e) { return e.is_string(); })) {
      TagList tags;
      for (const auto& e : value) tags.push_back(e.get<std::string>());
      v = std::move(tags);
    } else {
      continue;  // null, objects, mixed arrays: not stored
    }
    out.push_back(Attribute{name, std::move(v)});
  }
  if (out.size() > engine::kMaxAttributes) {
    return Error(InvalidArgument("attributes with {} fields; at most {} are stored", out.size() - 1,
                                 engine::kMaxAttributes - 1));
  }
  return out;
}

const std::string* JsonOf(const Attributes& attributes) {
  for (const Attribute& a : attributes) {
    if (a.name == kJsonAttribute) return std::get_if<std::string>(&a.value);
  }
  return nullptr;
}

double ScoreOf(Metric metric, float distance) {
  const double d = distance;
  switch (metric) {
    case Metric::kCosine:
      return std::clamp((1.0 - d) / 2.0, 0.0, 1.0);
    case Metric::kInnerProduct:
      return (1.0 - d) / 2.0;
    case Metric::kL2:
      return 1.0 / (1.0 + std::max(d, 0.0));
  }
  return 0;
}

}  // namespace strata::server
