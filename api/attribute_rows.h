#pragma once
// Attribute rows in JSON Lines, the one format `strata build --attributes` and
// `strata-cli upsert --attributes` read: one JSON object per line, line i for row i of
// the vectors,
//
//   {"id": 7, "attributes": {"lang": "en", "year": 2024, "score": 0.5, "tags": ["a", "b"]}}
//
// "id" (optional) is a non-negative integer; "attributes" (optional) maps names to an
// integer, a number, a string or an array of strings (api/attributes.h). Blank lines are
// skipped. An id file in JSON Lines (`strata-cli upsert --ids`) is the same format with
// an id on every line; a line may also be the bare integer (`7`).
//
// Free functions; safe to call from any thread.

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

#include "api/attributes.h"
#include "core/status.h"
#include "core/types.h"

namespace strata {

struct AttributeRow {
  std::optional<VectorId> id{};
  Attributes attributes{};
  friend bool operator==(const AttributeRow&, const AttributeRow&) = default;
};

// One line. InvalidArgument saying what is wrong (not JSON, an id that is not a
// non-negative integer, an attribute of another type, unknown keys).
Result<AttributeRow> ParseAttributeRow(std::string_view line);

// Every non-blank line of `path`; errors name the file and the line. IOError when the
// file cannot be read.
Result<std::vector<AttributeRow>> ReadAttributeRows(const std::filesystem::path& path);

}  // namespace strata
