#pragma once
// Filter: a boolean expression over a record's attributes (engine/attributes.h),
// parsed from text, evaluated row by row (Matches) or over a whole segment
// through an AttributeIndex (engine/attribute_index.h).
//
// Grammar (keywords AND OR NOT IN are case-insensitive):
//   expr      := or
//   or        := and (OR and)*
//   and       := unary (AND unary)*
//   unary     := NOT unary | '(' expr ')' | predicate
//   predicate := name op literal | name [NOT] IN '(' literal (',' literal)* ')'
//   op        := == | != | < | <= | > | >=        ('=' is accepted as '==')
//   name      := [A-Za-z_][A-Za-z0-9_.-]* that is not a keyword,
//                or `any name` in backquotes (escapes as in strings, plus \`)
//   literal   := integer (int64, optional sign: 42, -7, +3)
//              | float (1.5, -2e3, .5, 1e+20; finite)
//              | string in "double" or 'single' quotes, escapes \" \' \\ \n \t
// So AND binds tighter than OR and NOT tighter than AND.
//
// Limits: at most kMaxTextBytes of text, parentheses and NOTs nested at most
// kMaxDepth deep, at most kMaxLiterals values in all. Parse errors are
// InvalidArgument with a one-line message "filter: at position P: ..." where P is
// the 1-based byte position in the text, naming what was expected and what was
// found.
//
// Semantics (Matches; AttributeIndex::Evaluate gives exactly the same rows):
//  - A predicate on an attribute the record lacks is false (any operator, IN and
//    NOT IN included). If a record lists a name twice (ValidateAttributes refuses
//    that), the first occurrence counts.
//  - Numbers: an int64 attribute against an int64 literal compares exactly; any
//    other int64/double pair compares as doubles. A NaN attribute (refused by
//    ValidateAttributes) matches no predicate.
//  - Strings compare with strings, in lexicographic byte order (unsigned bytes).
//  - A numeric literal against a string or tag attribute, or a string literal
//    against a numeric attribute, is false, whatever the operator (!= included).
//  - Tag lists: `tags == "x"` is true when some tag equals "x"; `<, <=, >, >=` are
//    true when some tag satisfies them; `tags != "x"` is true when no tag equals
//    "x" (an empty list included).
//  - `name != v` is true when the record has `name`, of a kind comparable with v,
//    and its value is not equal to v.
//  - `name IN (a, b)` is `name == a OR name == b`; `name NOT IN (a, b)` is
//    `name != a AND name != b` (so it needs the attribute, and a list that mixes
//    numbers and strings matches nothing).
//  - `NOT e` is the plain complement of e: `NOT (a == 1)` matches records that
//    lack `a`.
//
// Filter is a value type (copyable, comparable); thread-compatible: its const
// methods may be called from any number of threads at once.

#include <algorithm>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <string>
#include <functional>
#include <string_view>
#include <variant>
#include <vector>

#include "core/status.h"
#include "engine/attributes.h"

namespace strata::engine {

enum class CompareOp : uint8_t { kEq, kNe, kLt, kLe, kGt, kGe };
// "==", "!=", "<", "<=", ">", ">=".
std::string_view CompareOpText(CompareOp op);

// A literal in a filter. Tag lists have no literal: tags match element-wise.
using FilterValue = std::variant<int64_t, double, std::string>;

// A node of the parsed expression, exposed read-only so that an index can walk it.
struct FilterNode {
  enum class Kind : uint8_t { kAnd, kOr, kNot, kCompare, kIn };
  Kind kind = Kind::kCompare;
  std::string name;                   // kCompare, kIn: the attribute
  CompareOp op = CompareOp::kEq;      // kCompare
  bool negated = false;               // kIn: NOT IN
  std::vector<FilterValue> literals;  // kCompare: exactly one; kIn: one or more
  std::vector<FilterNode> children;   // kAnd, kOr: two or more; kNot: exactly one
  friend bool operator==(const FilterNode&, const FilterNode&) = default;
};

class Filter {
 public:
  static constexpr size_t kMaxTextBytes = 64 * 1024;
  static constexpr size_t kMaxDepth = 64;
  static constexpr size_t kMaxLiterals = 4096;

  // InvalidArgument (see the header comment) for text that is empty, too long,
  // too deep, or not in the grammar.
  static Result<Filter> Parse(std::string_view text);

  // The reference evaluator: whether a record with `attrs` satisfies the filter.
  bool Matches(const Attributes& attrs) const;

  // Canonical text (keywords upper case, '==' for '=', strings in double quotes,
  // only the parentheses the tree needs); Parse(ToString()) gives an equal Filter.
  std::string ToString() const;

  const FilterNode& root() const { return root_; }

  // What may make this filter match nothing although it parsed, given `kinds_of`
  // (AttributeIndex::KindsOf over the whole collection): each attribute it names that
  // no record has, and each comparison of a number with an attribute that only held
  // text or of a string with one that only held numbers. One message per attribute
  // or comparison, in the filter's order.
  std::vector<std::string> Warnings(const std::function<uint8_t(std::string_view)>& kinds_of,
                                    std::string_view collection) const;

  friend bool operator==(const Filter&, const Filter&) = default;

 private:
  explicit Filter(FilterNode root) : root_(std::move(root)) {}
  FilterNode root_;
};

// The comparison rules above, shared by Filter::Matches and AttributeIndex so that
// the two cannot drift apart. Not for other callers.
namespace filter_internal {

inline bool Holds(CompareOp op, std::partial_ordering order) {
  if (order == std::partial_ordering::unordered) return false;
  switch (op) {
    case CompareOp::kEq:
      return order == 0;
    case CompareOp::kNe:
      return order != 0;
    case CompareOp::kLt:
      return order < 0;
    case CompareOp::kLe:
      return order <= 0;
    case CompareOp::kGt:
      return order > 0;
    case CompareOp::kGe:
      return order >= 0;
  }
  return false;
}

// `literal` must hold an int64 or a double.
inline std::partial_ordering CompareNumber(int64_t value, const FilterValue& literal) {
  if (const int64_t* i = std::get_if<int64_t>(&literal)) return value <=> *i;
  return static_cast<double>(value) <=> std::get<double>(literal);
}
inline std::partial_ordering CompareNumber(double value, const FilterValue& literal) {
  if (const int64_t* i = std::get_if<int64_t>(&literal)) return value <=> static_cast<double>(*i);
  return value <=> std::get<double>(literal);
}

// Whether an attribute holding `value` satisfies `value op literal`.
inline bool CompareMatches(const AttributeValue& value, CompareOp op, const FilterValue& literal) {
  if (const std::string* lit = std::get_if<std::string>(&literal)) {
    if (const std::string* s = std::get_if<std::string>(&value)) return Holds(op, *s <=> *lit);
    if (const TagList* tags = std::get_if<TagList>(&value)) {
      if (op == CompareOp::kNe) {
        return std::none_of(tags->begin(), tags->end(),
                            [&](const std::string& t) { return t == *lit; });
      }
      return std::any_of(tags->begin(), tags->end(),
                         [&](const std::string& t) { return Holds(op, t <=> *lit); });
    }
    return false;
  }
  if (const int64_t* i = std::get_if<int64_t>(&value)) return Holds(op, CompareNumber(*i, literal));
  if (const double* d = std::get_if<double>(&value)) return Holds(op, CompareNumber(*d, literal));
  return false;
}

}  // namespace filter_internal

}  // namespace strata::engine
