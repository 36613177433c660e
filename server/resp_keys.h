#pragma once
// What the RESP commands share about keys, elements, attributes and scores
// (docs/RESP.md):
//  - a key is a collection, so it follows the collection name rule;
//  - an element's attributes are a JSON object (SETATTR / VSETATTR): the text is kept as
//    given in the attribute kJsonAttribute (VGETATTR returns it), and its top-level
//    fields are stored as typed attributes that filters see -- numbers as int64 or double,
//    booleans as 1 / 0, strings, arrays of strings as tag lists; other values (null,
//    objects, arrays holding anything but strings) are not stored, so a filter on them
//    matches nothing, as in Redis. Text that is not a JSON object is kept as given with no
//    fields, again as in Redis (such an element matches no filter);
//  - a score is a similarity from 1 (identical) down to 0, from the engine's distance.
//
// Free functions; safe from any thread.

#include <string>
#include <string_view>

#include "api/attributes.h"
#include "core/metric.h"
#include "core/status.h"

namespace strata::server {

// The attribute that holds an element's JSON text as given.
inline constexpr std::string_view kJsonAttribute = "__json";

// True for a valid collection name: 1..64 characters of [A-Za-z0-9_-].
bool IsCollectionKey(std::string_view key);
// "ERR invalid key '...': ..." naming the rule.
std::string InvalidKeyMessage(std::string_view key);

// The attributes to store for SETATTR text `json` (empty text: none). InvalidArgument
// only for what the engine could not store: text over 64 KiB, or more than 255 fields.
Result<Attributes> AttributesFromJson(std::string_view json);
// The JSON text stored with `attributes`, or nullptr when there is none.
const std::string* JsonOf(const Attributes& attributes);

// Redis's similarity score for an engine distance (core/metric.h):
//   cosine         (1 + cos) / 2  (the engine reports -cos; Redis: 1 - cosine distance / 2)
//   inner product  (1 + dot) / 2  (the same on unit vectors)
//   l2             1 / (1 + squared distance)
double ScoreOf(Metric metric, float distance);

}  // namespace strata::server
