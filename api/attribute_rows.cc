#include "api/attribute_rows.h"

#include <algorithm>
#include <fstream>
#include <string>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

namespace strata {
namespace {

using Json = nlohmann::ordered_json;

Result<VectorId> IdFromJson(const Json& j) {
  if (j.is_number_unsigned()) return j.get<VectorId>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return VectorId(j.get<int64_t>());
  return Error(InvalidArgument("id must be a non-negative integer, got {}", j.dump()));
}

Result<Attributes> AttributesFromJson(const Json& j) {
  if (!j.is_object()) return Error(InvalidArgument("\"attributes\" must be an object"));
  Attributes out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const Json& v = it.value();
    if (v.is_number_integer()) {
      if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)) {
        return Error(InvalidArgument("attribute '{}': {} does not fit a 64-bit signed integer", it.key(),
                                     v.dump()));
      }
      out.push_back({it.key(), v.get<int64_t>()});
    } else if (v.is_number()) {
      out.push_back({it.key(), v.get<double>()});
    } else if (v.is_string()) {
      out.push_back({it.key(), v.get<std::string>()});
    } else if (v.is_array() && std::all_of(v.begin(), v.end(), [](const Json& e) { return e.is_string(); })) {
      out.push_back({it.key(), v.get<TagList>()});
    } else {
      return Error(InvalidArgument("attribute '{}' must be an integer, a number, a string or an array of "
                                   "strings", it.key()));
    }
  }
  return out;
}

}  // namespace

Result<AttributeRow> ParseAttributeRow(std::string_view line) {
  Json j = Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error(InvalidArgument("not JSON"));
  AttributeRow row;
  if (j.is_number()) {  // a bare id
    STRATA_ASSIGN_OR_RETURN(row.id, IdFromJson(j));
    return row;
  }
  if (!j.is_object()) {
    return Error(InvalidArgument("expected an object {{\"id\": ..., \"attributes\": {{...}}}} or an id"));
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "id") {
      STRATA_ASSIGN_OR_RETURN(row.id, IdFromJson(it.value()));
    } else if (it.key() == "attributes") {
      STRATA_ASSIGN_OR_RETURN(row.attributes, AttributesFromJson(it.value()));
    } else {
      return Error(InvalidArgument("unknown key \"{}\" (a row has \"id\" and \"attributes\")", it.key()));
    }
  }
  return row;
}

Result<std::vector<AttributeRow>> ReadAttributeRows(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(IOError("{}: cannot open", path.string()));
  std::vector<AttributeRow> rows;
  std::string text;
  size_t line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    auto row = ParseAttributeRow(text);
    if (!row) return Error(row.error().WithContext(fmt::format("{}: line {}", path.string(), line)));
    rows.push_back(std::move(*row));
  }
  if (in.bad()) return Error(IOError("{}: read failed after line {}", path.string(), line));
  return rows;
}

}  // namespace strata
