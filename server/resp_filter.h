#pragma once
// VSIM's FILTER: an expression in Redis's syntax (the vector-set module's expr.c),
// translated into Strata's filter language (engine/filter.h) so that the planner runs it
// -- with the attribute index, a scan of the matching rows or a filtered graph search --
// instead of testing candidates one by one.
//
// Syntax (Redis's): selectors `.field` (top-level JSON fields), numbers, 'strings' and
// "strings", tuples [1, "a"], `null`; operators by precedence, loosest first:
//   or ||   |   and &&   |   > >= < <= == != in   |   + -   |   * / %   |   **   |   ! not
// and parentheses.
//
// Translated (docs/RESP.md has the table):
//  - comparisons of a selector with a literal: `.year >= 1980`, `"x" == .name`;
//  - arithmetic that keeps one selector linear with literal coefficients, solved for the
//    selector: `.year - 2000 > 5` is `year > 2005`, `.rating / 2 > 4` is `rating > 8`,
//    `10 - .x < 3` is `x > 7`; arithmetic on literals alone is folded;
//  - `.f in [1, "a"]` (IN), `"a" in .tags` (`tags == "a"`: a tag of the list, or a
//    string equal to "a" -- Redis's substring test of two strings is not supported);
//  - and / or / not, && / || / !, parentheses; a bare selector as a condition is
//    `.f != 0` (JSON booleans are stored as 1 and 0).
// Semantics kept from Redis: an element lacking a field the expression names does not
// match, `not` included (`not (.a == 1)` requires `a`).
// Refused, with an error naming the position: `**` or `%` on a selector, arithmetic between
// two selectors, a selector compared with a selector, a comparison whose side is itself a
// condition, `null`, and syntax errors.
//
// Free functions; safe from any thread.

#include <string>
#include <string_view>

#include "core/status.h"

namespace strata::server {

struct TranslatedFilter {
  enum class Kind { kFilter, kAll, kNone };
  Kind kind = Kind::kAll;  // kAll: no filter at all; kNone: nothing can match
  std::string text;        // kFilter: Strata's filter text
};

// InvalidArgument "syntax error in FILTER expression at position P (near '...'): what",
// P the 1-based byte position in `expression`.
Result<TranslatedFilter> TranslateRedisFilter(std::string_view expression);

}  // namespace strata::server
