// Redis FILTER expressions to Strata filters (resp_filter.h): a tokenizer and a
// precedence-climbing parser for Redis's syntax, then a translation that folds literals,
// solves linear arithmetic for its one selector and writes Strata's filter text.

#include "server/resp_filter.h"

#include <fmt/core.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <optional>
#include <set>
#include <variant>
#include <vector>

namespace strata::server {

namespace {

// Redis's operators, by precedence (expr.c's table).
enum class Op { kOr, kAnd, kGt, kGe, kLt, kLe, kEq, kNe, kIn, kAdd, kSub, kMul, kDiv, kMod, kPow, kNot };

int Precedence(Op op) {
  switch (op) {
    case Op::kOr: return 0;
    case Op::kAnd: return 1;
    case Op::kGt: case Op::kGe: case Op::kLt: case Op::kLe: case Op::kEq: case Op::kNe:
    case Op::kIn: return 2;
    case Op::kAdd: case Op::kSub: return 3;
    case Op::kMul: case Op::kDiv: case Op::kMod: return 4;
    case Op::kPow: return 5;
    case Op::kNot: return 6;
  }
  return -1;
}

std::string_view OpText(Op op) {
  static constexpr std::string_view kText[] = {"or", "and", ">", ">=", "<", "<=", "==", "!=",
                                               "in", "+", "-", "*", "/", "%", "**", "not"};
  return kText[static_cast<int>(op)];
}

using Literal = std::variant<double, std::string>;

struct Node {
  enum class Kind { kNumber, kString, kTuple, kSelector, kNull, kUnary, kBinary } kind;
  size_t pos = 0;  // 0-based byte offset in the expression
  double number = 0;
  std::string text;  // string literal, or selector name
  std::vector<Literal> tuple;
  Op op = Op::kOr;
  std::unique_ptr<Node> left, right;  // kUnary: left only
};

// Precedence climbing over Redis's grammar into a Node tree. Thread-compatible: one per call.
class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  Result<std::unique_ptr<Node>> ParseAll() {
    STRATA_ASSIGN_OR_RETURN(auto node, ParseExpr(0));
    SkipBlanks();
    if (i_ < s_.size()) return Fail(i_, "unexpected text after the expression");
    return node;
  }

  std::unexpected<Status> Fail(size_t pos, std::string_view what) const {
    const std::string_view near = s_.substr(std::min(pos, s_.size()), 24);
    return std::unexpected(InvalidArgument(
        "syntax error in FILTER expression at position {} (near '{}'): {}", pos + 1, near, what));
  }

 private:
  void SkipBlanks() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  static bool SelectorChar(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  }
  static bool OpChar(char c) {
    return std::isalpha(static_cast<unsigned char>(c)) ||
           std::string_view("+-*%/!()<>=|&").find(c) != std::string_view::npos;
  }

  // The binary operator at i_ (without consuming it), if any.
  std::optional<std::pair<Op, size_t>> PeekBinary() {
    SkipBlanks();
    static constexpr std::pair<std::string_view, Op> kOps[] = {
        {"||", Op::kOr},  {"or", Op::kOr},   {"&&", Op::kAnd}, {"and", Op::kAnd},
        {">=", Op::kGe},  {"<=", Op::kLe},   {"==", Op::kEq},  {"!=", Op::kNe},
        {">", Op::kGt},   {"<", Op::kLt},    {"in", Op::kIn},  {"**", Op::kPow},
        {"+", Op::kAdd},  {"-", Op::kSub},   {"*", Op::kMul},  {"/", Op::kDiv},
        {"%", Op::kMod}};
    for (const auto& [text, op] : kOps) {
      if (s_.size() - i_ < text.size()) continue;
      bool same = true;
      for (size_t k = 0; k < text.size(); ++k) {
        same &= std::tolower(static_cast<unsigned char>(s_[i_ + k])) == text[k];
      }
      if (!same) continue;
      // A word operator must not run into more letters ("index" is not "in").
      const bool word = std::isalpha(static_cast<unsigned char>(text[0]));
      if (word && i_ + text.size() < s_.size() &&
          std::isalnum(static_cast<unsigned char>(s_[i_ + text.size()]))) {
        continue;
      }
      return std::make_pair(op, text.size());
    }
    return std::nullopt;
  }

  Result<std::unique_ptr<Node>> ParseExpr(int min_prec) {
    STRATA_ASSIGN_OR_RETURN(auto left, ParseUnary());
    for (;;) {
      const auto bin = PeekBinary();
      if (!bin || Precedence(bin->first) < min_prec) return left;
      const size_t pos = i_;
      i_ += bin->second;
      // ** is right-associative; the rest left-associative.
      const int next = bin->first == Op::kPow ? Precedence(bin->first) : Precedence(bin->first) + 1;
      STRATA_ASSIGN_OR_RETURN(auto right, ParseExpr(next));
      auto n = std::make_unique<Node>(Node{Node::Kind::kBinary, pos});
      n->op = bin->first;
      n->left = std::move(left);
      n->right = std::move(right);
      left = std::move(n);
    }
  }

  Result<std::unique_ptr<Node>> ParseUnary() {
    SkipBlanks();
    const size_t pos = i_;
    const bool bang = i_ < s_.size() && s_[i_] == '!' && (i_ + 1 >= s_.size() || s_[i_ + 1] != '=');
    const bool word = s_.substr(i_, 3) == "not" || s_.substr(i_, 3) == "NOT";
    if (bang || (word && (i_ + 3 >= s_.size() || !SelectorChar(s_[i_ + 3])))) {
      i_ += bang ? 1 : 3;
      if (++depth_ > kMaxDepth) return Fail(pos, "nested too deeply");
      STRATA_ASSIGN_OR_RETURN(auto child, ParseUnary());
      --depth_;
      auto n = std::make_unique<Node>(Node{Node::Kind::kUnary, pos});
      n->op = Op::kNot;
      n->left = std::move(child);
      return n;
    }
    return ParsePrimary();
  }

  Result<double> ParseNumber() {
    const size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    while (i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.' ||
                              s_[i_] == 'e' || s_[i_] == 'E' ||
                              ((s_[i_] == '-' || s_[i_] == '+') && (s_[i_ - 1] == 'e' || s_[i_ - 1] == 'E')))) {
      ++i_;
    }
    const std::string text(s_.substr(start, i_ - start));
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v)) {
      return Fail(start, "not a number");
    }
    return v;
  }

  Result<std::string> ParseString() {
    const size_t start = i_;
    const char quote = s_[i_++];
    std::string out;
    while (i_ < s_.size()) {
      const char c = s_[i_++];
      if (c == quote) return out;
      if (c == '\\' && i_ < s_.size()) {
        const char e = s_[i_++];
        out.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e);
      } else {
        out.push_back(c);
      }
    }
    return Fail(start, "unterminated string");
  }

  Result<std::unique_ptr<Node>> ParsePrimary() {
    SkipBlanks();
    const size_t pos = i_;
    if (i_ >= s_.size()) return Fail(pos, "expected a value, found the end of the expression");
    const char c = s_[i_];
    auto node = [&](Node::Kind k) { return std::make_unique<Node>(Node{k, pos}); };
    if (std::isdigit(static_cast<unsigned char>(c)) ||
        (c == '-' && i_ + 1 < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_ + 1])))) {
      STRATA_ASSIGN_OR_RETURN(const double v, ParseNumber());
      auto n = node(Node::Kind::kNumber);
      n->number = v;
      return n;
    }
    if (c == '"' || c == '\'') {
      STRATA_ASSIGN_OR_RETURN(std::string s, ParseString());
      auto n = node(Node::Kind::kString);
      n->text = std::move(s);
      return n;
    }
    if (c == '.' && i_ + 1 < s_.size() && SelectorChar(s_[i_ + 1])) {
      ++i_;
      const size_t start = i_;
      while (i_ < s_.size() && SelectorChar(s_[i_])) ++i_;
      auto n = node(Node::Kind::kSelector);
      n->text = std::string(s_.substr(start, i_ - start));
      return n;
    }
    if (c == '[') {
      ++i_;
      auto n = node(Node::Kind::kTuple);
      for (;;) {
        SkipBlanks();
        if (i_ < s_.size() && s_[i_] == ']' && n->tuple.empty()) {
          ++i_;
          return n;
        }
        if (i_ >= s_.size()) return Fail(i_, "unterminated tuple: expected ']'");
        if (s_[i_] == '"' || s_[i_] == '\'') {
          STRATA_ASSIGN_OR_RETURN(std::string s, ParseString());
          n->tuple.emplace_back(std::move(s));
        } else if (std::isdigit(static_cast<unsigned char>(s_[i_])) || s_[i_] == '-' || s_[i_] == '.') {
          STRATA_ASSIGN_OR_RETURN(const double v, ParseNumber());
          n->tuple.emplace_back(v);
        } else {
          return Fail(i_, "a tuple holds numbers and strings only");
        }
        if (n->tuple.size() > 4096) return Fail(i_, "a tuple of more than 4096 values");
        SkipBlanks();
        if (i_ < s_.size() && s_[i_] == ']') {
          ++i_;
          return n;
        }
        if (i_ >= s_.size() || s_[i_] != ',') return Fail(i_, "expected ',' or ']' in a tuple");
        ++i_;
      }
    }
    if (c == '(') {
      ++i_;
      if (++depth_ > kMaxDepth) return Fail(pos, "nested too deeply");
      STRATA_ASSIGN_OR_RETURN(auto inner, ParseExpr(0));
      --depth_;
      SkipBlanks();
      if (i_ >= s_.size() || s_[i_] != ')') return Fail(i_, "expected ')'");
      ++i_;
      return inner;
    }
    if (s_.substr(i_, 4) == "null" && (i_ + 4 >= s_.size() || !SelectorChar(s_[i_ + 4]))) {
      i_ += 4;
      return node(Node::Kind::kNull);
    }
    if (OpChar(c)) return Fail(pos, "expected a value, found an operator");
    return Fail(pos, "expected a value (a number, a string, a .field, a [tuple] or '(')");
  }

  static constexpr int kMaxDepth = 48;  // under Strata's own limit of 64
  std::string_view s_;
  size_t i_ = 0;
  int depth_ = 0;
};

// ---------------------------------------------------------------------------
// Translation
// ---------------------------------------------------------------------------

struct Value {
  enum class Kind { kBool, kNumber, kString, kTuple, kLinear } kind = Kind::kBool;
  // kBool: a condition; constant when `constant`.
  bool constant = false;
  bool truth = false;
  std::string text;
  std::set<std::string> fields;  // the selectors the condition reads
  double number = 0;
  std::string string;
  std::vector<Literal> tuple;
  // kLinear: a * field + b
  std::string field;
  double a = 1, b = 0;
};

std::string Name(std::string_view field) { return fmt::format("`{}`", field); }

std::string NumberText(double v) {
  if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
    return fmt::format("{}", static_cast<int64_t>(v));
  }
  return fmt::format("{}", v);
}

std::string StringText(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default: out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

std::string LiteralText(const Literal& l) {
  if (const double* d = std::get_if<double>(&l)) return NumberText(*d);
  return StringText(std::get<std::string>(l));
}

Value Const(bool truth) {
  Value v;
  v.constant = true;
  v.truth = truth;
  return v;
}

Value Condition(std::string text, std::set<std::string> fields) {
  Value v;
  v.text = std::move(text);
  v.fields = std::move(fields);
  return v;
}

bool Truthy(const Value& v) {
  if (v.kind == Value::Kind::kNumber) return v.number != 0;
  if (v.kind == Value::Kind::kString) return !v.string.empty();
  if (v.kind == Value::Kind::kTuple) return !v.tuple.empty();
  return v.truth;
}

// Node tree to Strata's filter text (the rules in resp_filter.h). Thread-compatible: one per
// call; it borrows the Parser only to word its errors.
class Translator {
 public:
  explicit Translator(const Parser& parser) : parser_(parser) {}

  Result<Value> Translate(const Node& n) {
    switch (n.kind) {
      case Node::Kind::kNumber: {
        Value v;
        v.kind = Value::Kind::kNumber;
        v.number = n.number;
        return v;
      }
      case Node::Kind::kString: {
        Value v;
        v.kind = Value::Kind::kString;
        v.string = n.text;
        return v;
      }
      case Node::Kind::kTuple: {
        Value v;
        v.kind = Value::Kind::kTuple;
        v.tuple = n.tuple;
        return v;
      }
      case Node::Kind::kSelector: {
        Value v;
        v.kind = Value::Kind::kLinear;
        v.field = n.text;
        return v;
      }
      case Node::Kind::kNull:
        return parser_.Fail(n.pos, "null is not supported by Strata's filters");
      case Node::Kind::kUnary: {
        STRATA_ASSIGN_OR_RETURN(Value c, AsCondition(*n.left));
        if (c.constant) return Const(!c.truth);
        // Redis: an element lacking a field the expression reads does not match, `not`
        // included; Strata's NOT is the plain complement, so the fields are required too.
        std::string text = fmt::format("NOT ({})", c.text);
        for (const std::string& f : c.fields) {
          text += fmt::format(" AND ({0} >= \"\" OR {0} >= -1.7976931348623157e308)", Name(f));
        }
        return Condition(std::move(text), c.fields);
      }
      case Node::Kind::kBinary:
        return Binary(n);
    }
    return parser_.Fail(n.pos, "unexpected expression");
  }

  // A node used as a condition (an operand of and / or / not, or the whole expression).
  Result<Value> AsCondition(const Node& n) {
    STRATA_ASSIGN_OR_RETURN(Value v, Translate(n));
    switch (v.kind) {
      case Value::Kind::kBool:
        return v;
      case Value::Kind::kLinear:
        // A bare field as a condition: non-zero (JSON true is stored as 1).
        return Compare(n, Op::kNe, v, Number(0));
      default:
        return Const(Truthy(v));
    }
  }

 private:
  static Value Number(double x) {
    Value v;
    v.kind = Value::Kind::kNumber;
    v.number = x;
    return v;
  }

  Result<Value> Binary(const Node& n) {
    if (n.op == Op::kAnd || n.op == Op::kOr) {
      STRATA_ASSIGN_OR_RETURN(Value l, AsCondition(*n.left));
      STRATA_ASSIGN_OR_RETURN(Value r, AsCondition(*n.right));
      const bool is_and = n.op == Op::kAnd;
      if (l.constant) return l.truth == is_and ? r : l;
      if (r.constant) return r.truth == is_and ? l : r;
      std::set<std::string> fields = l.fields;
      fields.insert(r.fields.begin(), r.fields.end());
      return Condition(fmt::format("({}) {} ({})", l.text, is_and ? "AND" : "OR", r.text),
                       std::move(fields));
    }
    STRATA_ASSIGN_OR_RETURN(Value l, Translate(*n.left));
    STRATA_ASSIGN_OR_RETURN(Value r, Translate(*n.right));
    switch (n.op) {
      case Op::kAdd: case Op::kSub: case Op::kMul: case Op::kDiv: case Op::kMod: case Op::kPow:
        return Arithmetic(n, l, r);
      case Op::kIn:
        return In(n, l, r);
      default:
        return Compare(n, n.op, l, r);
    }
  }

  Result<Value> Arithmetic(const Node& n, const Value& l, const Value& r) {
    using K = Value::Kind;
    if (l.kind == K::kBool || r.kind == K::kBool) {
      return parser_.Fail(n.pos, fmt::format("'{}' on a condition is not supported", OpText(n.op)));
    }
    if (l.kind != K::kNumber && l.kind != K::kLinear) {
      return parser_.Fail(n.pos, fmt::format("'{}' needs numbers", OpText(n.op)));
    }
    if (r.kind != K::kNumber && r.kind != K::kLinear) {
      return parser_.Fail(n.pos, fmt::format("'{}' needs numbers", OpText(n.op)));
    }
    if (l.kind == K::kNumber && r.kind == K::kNumber) {
      const double x = l.number, y = r.number;
      switch (n.op) {
        case Op::kAdd: return Number(x + y);
        case Op::kSub: return Number(x - y);
        case Op::kMul: return Number(x * y);
        case Op::kDiv: return Number(x / y);
        case Op::kMod: return Number(std::fmod(x, y));
        default: return Number(std::pow(x, y));
      }
    }
    if (l.kind == K::kLinear && r.kind == K::kLinear) {
      return parser_.Fail(n.pos, fmt::format("'{}' between two fields is not supported by "
                                             "Strata's filters",
                                             OpText(n.op)));
    }
    if (n.op == Op::kMod || n.op == Op::kPow) {
      return parser_.Fail(n.pos, fmt::format("'{}' on a field is not supported by Strata's "
                                             "filters (only +, -, * and / by numbers)",
                                             OpText(n.op)));
    }
    Value v = l.kind == K::kLinear ? l : r;
    const double c = l.kind == K::kLinear ? r.number : l.number;
    const bool field_left = l.kind == K::kLinear;
    switch (n.op) {
      case Op::kAdd:
        v.b += c;
        break;
      case Op::kSub:
        if (field_left) {
          v.b -= c;
        } else {  // c - (a x + b)
          v.a = -v.a;
          v.b = c - v.b;
        }
        break;
      case Op::kMul:
        v.a *= c;
        v.b *= c;
        break;
      default:  // kDiv
        if (!field_left) {
          return parser_.Fail(n.pos, "dividing by a field is not supported by Strata's filters");
        }
        v.a /= c;
        v.b /= c;
        break;
    }
    if (v.a == 0 || !std::isfinite(v.a) || !std::isfinite(v.b)) {
      return parser_.Fail(n.pos, "the arithmetic leaves no field to compare (multiplied by 0?)");
    }
    return v;
  }

  Result<Value> Compare(const Node& n, Op op, const Value& l, const Value& r) {
    using K = Value::Kind;
    if (l.kind == K::kBool || r.kind == K::kBool) {
      return parser_.Fail(n.pos, fmt::format("'{}' between a condition and a value is not "
                                             "supported",
                                             OpText(op)));
    }
    if (l.kind == K::kTuple || r.kind == K::kTuple) {
      return parser_.Fail(n.pos, "a tuple can only be the right side of 'in'");
    }
    if (l.kind == K::kLinear && r.kind == K::kLinear) {
      return parser_.Fail(n.pos, "comparing two fields is not supported by Strata's filters");
    }
    if (l.kind != K::kLinear && r.kind != K::kLinear) {
      // Two literals: folded.
      if (l.kind == K::kNumber && r.kind == K::kNumber) return Const(Holds(op, l.number <=> r.number));
      if (l.kind == K::kString && r.kind == K::kString) return Const(Holds(op, l.string <=> r.string));
      return Const(false);
    }
    // field OP literal, with the field on the left.
    const bool field_left = l.kind == K::kLinear;
    const Value& f = field_left ? l : r;
    const Value& c = field_left ? r : l;
    if (!field_left) op = Mirror(op);
    if (c.kind == K::kString) {
      if (f.a != 1 || f.b != 0) return parser_.Fail(n.pos, "arithmetic on a field compared with a string");
      return Condition(fmt::format("{} {} {}", Name(f.field), OpText(op), StringText(c.string)),
                       {f.field});
    }
    // a x + b OP c  <=>  x OP' (c - b) / a, OP' mirrored when a < 0.
    double bound = c.number;
    if (f.a != 1 || f.b != 0) bound = (c.number - f.b) / f.a;
    if (f.a < 0) op = Mirror(op);
    if (!std::isfinite(bound)) return parser_.Fail(n.pos, "the comparison's bound is not finite");
    return Condition(fmt::format("{} {} {}", Name(f.field), OpText(op), NumberText(bound)), {f.field});
  }

  Result<Value> In(const Node& n, const Value& l, const Value& r) {
    using K = Value::Kind;
    if (r.kind == K::kTuple) {
      if (l.kind == K::kLinear) {
        if (l.a != 1 || l.b != 0) return parser_.Fail(n.pos, "arithmetic on a field before 'in'");
        if (r.tuple.empty()) return Const(false);
        std::string list;
        for (const Literal& x : r.tuple) list += (list.empty() ? "" : ", ") + LiteralText(x);
        return Condition(fmt::format("{} IN ({})", Name(l.field), list), {l.field});
      }
      if (l.kind == K::kNumber || l.kind == K::kString) {
        for (const Literal& x : r.tuple) {
          if (l.kind == K::kNumber && std::holds_alternative<double>(x) && std::get<double>(x) == l.number) return Const(true);
          if (l.kind == K::kString && std::holds_alternative<std::string>(x) && std::get<std::string>(x) == l.string) return Const(true);
        }
        return Const(false);
      }
      return parser_.Fail(n.pos, "'in' needs a field or a literal on its left");
    }
    if (r.kind == K::kLinear) {
      if (r.a != 1 || r.b != 0) return parser_.Fail(n.pos, "arithmetic on a field after 'in'");
      if (l.kind == K::kString) {
        // A tag of the field's list (or the field's string equal to it).
        return Condition(fmt::format("{} == {}", Name(r.field), StringText(l.string)), {r.field});
      }
      if (l.kind == K::kNumber) {
        return Condition(fmt::format("{} == {}", Name(r.field), NumberText(l.number)), {r.field});
      }
      return parser_.Fail(n.pos, "'in' a field needs a literal on its left");
    }
    if (l.kind == K::kString && r.kind == K::kString) {
      return Const(r.string.find(l.string) != std::string::npos);  // Redis: substring
    }
    return parser_.Fail(n.pos, "'in' needs a [tuple] or a field on its right");
  }

  static bool Holds(Op op, std::partial_ordering o) {
    if (o == std::partial_ordering::unordered) return false;
    switch (op) {
      case Op::kGt: return o > 0;
      case Op::kGe: return o >= 0;
      case Op::kLt: return o < 0;
      case Op::kLe: return o <= 0;
      case Op::kEq: return o == 0;
      case Op::kNe: return o != 0;
      default: return false;
    }
  }
  static Op Mirror(Op op) {
    switch (op) {
      case Op::kGt: return Op::kLt;
      case Op::kGe: return Op::kLe;
      case Op::kLt: return Op::kGt;
      case Op::kLe: return Op::kGe;
      default: return op;
    }
  }

  const Parser& parser_;
};

}  // namespace

Result<TranslatedFilter> TranslateRedisFilter(std::string_view expression) {
  Parser parser(expression);
  STRATA_ASSIGN_OR_RETURN(auto root, parser.ParseAll());
  Translator t(parser);
  STRATA_ASSIGN_OR_RETURN(Value v, t.AsCondition(*root));
  TranslatedFilter out;
  if (v.constant) {
    out.kind = v.truth ? TranslatedFilter::Kind::kAll : TranslatedFilter::Kind::kNone;
    return out;
  }
  out.kind = TranslatedFilter::Kind::kFilter;
  out.text = std::move(v.text);
  return out;
}

}  // namespace strata::server
