#include "engine/filter.h"

#include <fmt/core.h>

#include <charconv>
#include <system_error>
#include <utility>

namespace strata::engine {

std::string_view CompareOpText(CompareOp op) {
  switch (op) {
    case CompareOp::kEq:
      return "==";
    case CompareOp::kNe:
      return "!=";
    case CompareOp::kLt:
      return "<";
    case CompareOp::kLe:
      return "<=";
    case CompareOp::kGt:
      return ">";
    case CompareOp::kGe:
      return ">=";
  }
  return "?";
}

namespace {

bool IsNameStart(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c) || c == '.' || c == '-'; }
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool IsOpChar(char c) { return c == '<' || c == '>' || c == '=' || c == '!'; }

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }
bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

// Shortens user text quoted in an error message, so that one message stays one short line.
std::string Excerpt(std::string_view s) {
  constexpr size_t kMax = 32;
  std::string out;
  for (char c : s.substr(0, kMax)) {
    if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  if (s.size() > kMax) out += "...";
  return out;
}

enum class Tok : uint8_t {
  kEnd,
  kName,
  kAnd,
  kOr,
  kNot,
  kIn,
  kLParen,
  kRParen,
  kComma,
  kOp,
  kInt,
  kDouble,
  kString
};

struct Token {
  Tok kind = Tok::kEnd;
  size_t pos = 0;        // 0-based byte offset of the first character
  std::string_view raw;  // the token as written
  std::string text;      // kName: the name (unquoted); kString: the value (unescaped)
  CompareOp op = CompareOp::kEq;
  int64_t int_value = 0;
  double double_value = 0;
};

std::string Describe(const Token& t) {
  switch (t.kind) {
    case Tok::kEnd:
      return "end of input";
    case Tok::kName:
      return fmt::format("name '{}'", Excerpt(t.text));
    case Tok::kAnd:
    case Tok::kOr:
    case Tok::kNot:
    case Tok::kIn:
      return fmt::format("keyword {}", Excerpt(t.raw));
    case Tok::kInt:
    case Tok::kDouble:
      return fmt::format("number {}", Excerpt(t.raw));
    case Tok::kString:
      return fmt::format("string {}", Excerpt(t.raw));
    default:
      return fmt::format("'{}'", Excerpt(t.raw));
  }
}

Status ErrorAt(size_t pos, std::string_view what) {
  return InvalidArgument("filter: at position {}: {}", pos + 1, what);
}

// Turns text into tokens one at a time, so that the first error in reading
// order is the one reported.
class Lexer {
 public:
  explicit Lexer(std::string_view text) : text_(text) {}

  Result<Token> Next() {
    while (at_ < text_.size() && IsSpace(text_[at_])) ++at_;
    Token t;
    t.pos = at_;
    if (at_ == text_.size()) return t;
    const char c = text_[at_];
    if (IsNameStart(c)) {
      size_t end = at_ + 1;
      while (end < text_.size() && IsNameChar(text_[end])) ++end;
      t.raw = text_.substr(at_, end - at_);
      at_ = end;
      if (EqualsIgnoreCase(t.raw, "and")) {
        t.kind = Tok::kAnd;
      } else if (EqualsIgnoreCase(t.raw, "or")) {
        t.kind = Tok::kOr;
      } else if (EqualsIgnoreCase(t.raw, "not")) {
        t.kind = Tok::kNot;
      } else if (EqualsIgnoreCase(t.raw, "in")) {
        t.kind = Tok::kIn;
      } else {
        t.kind = Tok::kName;
        t.text = std::string(t.raw);
      }
      return t;
    }
    if (c == '`') {
      STRATA_RETURN_IF_ERROR(Quoted(t, "quoted name"));
      if (t.text.empty()) return Error(ErrorAt(t.pos, "empty attribute name ``"));
      t.kind = Tok::kName;
      return t;
    }
    if (c == '"' || c == '\'') {
      STRATA_RETURN_IF_ERROR(Quoted(t, "string"));
      t.kind = Tok::kString;
      return t;
    }
    if (IsDigit(c) || ((c == '-' || c == '+' || c == '.') && StartsNumber(at_))) {
      STRATA_RETURN_IF_ERROR(Number(t));
      return t;
    }
    if (c == '(' || c == ')' || c == ',') {
      t.kind = c == '(' ? Tok::kLParen : c == ')' ? Tok::kRParen : Tok::kComma;
      t.raw = text_.substr(at_++, 1);
      return t;
    }
    if (IsOpChar(c)) {
      size_t end = at_ + 1;
      while (end < text_.size() && IsOpChar(text_[end])) ++end;
      t.raw = text_.substr(at_, end - at_);
      at_ = end;
      t.kind = Tok::kOp;
      if (t.raw == "==" || t.raw == "=") {
        t.op = CompareOp::kEq;
      } else if (t.raw == "!=") {
        t.op = CompareOp::kNe;
      } else if (t.raw == "<") {
        t.op = CompareOp::kLt;
      } else if (t.raw == "<=") {
        t.op = CompareOp::kLe;
      } else if (t.raw == ">") {
        t.op = CompareOp::kGt;
      } else if (t.raw == ">=") {
        t.op = CompareOp::kGe;
      } else {
        return Error(
            ErrorAt(t.pos, fmt::format("unknown operator '{}' (expected one of == != < <= > >=)",
                                       Excerpt(t.raw))));
      }
      return t;
    }
    return Error(
        ErrorAt(t.pos, fmt::format("unexpected character '{}'", Excerpt(text_.substr(at_, 1)))));
  }

 private:
  // Whether a sign or '.' at `i` begins a number: "-1", "+.5", ".5".
  bool StartsNumber(size_t i) const {
    if (text_[i] == '-' || text_[i] == '+') ++i;
    if (i < text_.size() && IsDigit(text_[i])) return true;
    return i + 1 < text_.size() && text_[i] == '.' && IsDigit(text_[i + 1]);
  }

  Status Number(Token& t) {
    size_t end = at_;
    if (text_[end] == '-' || text_[end] == '+') ++end;
    bool is_float = false;
    while (end < text_.size() && IsDigit(text_[end])) ++end;
    if (end < text_.size() && text_[end] == '.') {
      is_float = true;
      ++end;
      while (end < text_.size() && IsDigit(text_[end])) ++end;
    }
    bool bad = false;
    if (end < text_.size() && (text_[end] == 'e' || text_[end] == 'E')) {
      is_float = true;
      ++end;
      if (end < text_.size() && (text_[end] == '-' || text_[end] == '+')) ++end;
      if (end == text_.size() || !IsDigit(text_[end])) bad = true;
      while (end < text_.size() && IsDigit(text_[end])) ++end;
    }
    // "12abc", "1.2.3", "1e": a number glued to more name characters.
    while (end < text_.size() && IsNameChar(text_[end])) {
      bad = true;
      ++end;
    }
    t.raw = text_.substr(at_, end - at_);
    at_ = end;
    if (bad) return ErrorAt(t.pos, fmt::format("malformed number '{}'", Excerpt(t.raw)));
    // from_chars accepts '-' but not '+'.
    std::string_view digits = t.raw[0] == '+' ? t.raw.substr(1) : t.raw;
    const char* first = digits.data();
    const char* last = first + digits.size();
    if (is_float) {
      t.kind = Tok::kDouble;
      auto [ptr, ec] = std::from_chars(first, last, t.double_value);
      if (ec == std::errc::result_out_of_range) {
        return ErrorAt(t.pos, fmt::format("number {} is out of the double range", Excerpt(t.raw)));
      }
      if (ec != std::errc() || ptr != last) {
        return ErrorAt(t.pos, fmt::format("malformed number '{}'", Excerpt(t.raw)));
      }
    } else {
      t.kind = Tok::kInt;
      auto [ptr, ec] = std::from_chars(first, last, t.int_value);
      if (ec == std::errc::result_out_of_range) {
        return ErrorAt(t.pos, fmt::format("integer {} is out of the int64 range", Excerpt(t.raw)));
      }
      if (ec != std::errc() || ptr != last) {
        return ErrorAt(t.pos, fmt::format("malformed number '{}'", Excerpt(t.raw)));
      }
    }
    return Status::Ok();
  }

  // A string or backquoted name starting at at_; the unescaped value goes to t.text.
  Status Quoted(Token& t, std::string_view what) {
    const char quote = text_[at_];
    size_t i = at_ + 1;
    while (true) {
      if (i >= text_.size()) {
        return ErrorAt(t.pos, fmt::format("unterminated {} (no closing {})", what, quote));
      }
      const char c = text_[i];
      if (c == quote) break;
      if (c != '\\') {
        t.text += c;
        ++i;
        continue;
      }
      if (i + 1 >= text_.size()) {
        return ErrorAt(t.pos, fmt::format("unterminated {} (no closing {})", what, quote));
      }
      switch (const char e = text_[i + 1]) {
        case '"':
        case '\'':
        case '\\':
        case '`':
          t.text += e;
          break;
        case 'n':
          t.text += '\n';
          break;
        case 't':
          t.text += '\t';
          break;
        default:
          return ErrorAt(i,
                         fmt::format("unknown escape '\\{}' in {} (known: \\\" \\' \\\\ \\n \\t)",
                                     Excerpt(text_.substr(i + 1, 1)), what));
      }
      i += 2;
    }
    t.raw = text_.substr(at_, i + 1 - at_);
    at_ = i + 1;
    return Status::Ok();
  }

  std::string_view text_;
  size_t at_ = 0;
};

// Recursive descent, one function per grammar rule; `depth` counts the open
// parentheses and NOTs, so recursion is bounded by Filter::kMaxDepth.
class Parser {
 public:
  explicit Parser(std::string_view text) : lexer_(text) {}

  Result<FilterNode> ParseAll() {
    STRATA_RETURN_IF_ERROR(Advance());
    STRATA_ASSIGN_OR_RETURN(FilterNode root, ParseOr(0));
    if (cur_.kind == Tok::kRParen) return Error(ErrorAt(cur_.pos, "')' without a matching '('"));
    if (cur_.kind != Tok::kEnd) {
      return Error(ErrorAt(
          cur_.pos,
          fmt::format("expected AND, OR or the end of the filter, found {}", Describe(cur_))));
    }
    return root;
  }

 private:
  Status Advance() {
    STRATA_ASSIGN_OR_RETURN(cur_, lexer_.Next());
    return Status::Ok();
  }

  Result<FilterNode> ParseOr(size_t depth) {
    STRATA_ASSIGN_OR_RETURN(FilterNode first, ParseAnd(depth));
    if (cur_.kind != Tok::kOr) return first;
    FilterNode node;
    node.kind = FilterNode::Kind::kOr;
    node.children.push_back(std::move(first));
    while (cur_.kind == Tok::kOr) {
      STRATA_RETURN_IF_ERROR(Advance());
      STRATA_ASSIGN_OR_RETURN(FilterNode next, ParseAnd(depth));
      node.children.push_back(std::move(next));
    }
    return node;
  }

  Result<FilterNode> ParseAnd(size_t depth) {
    STRATA_ASSIGN_OR_RETURN(FilterNode first, ParseUnary(depth));
    if (cur_.kind != Tok::kAnd) return first;
    FilterNode node;
    node.kind = FilterNode::Kind::kAnd;
    node.children.push_back(std::move(first));
    while (cur_.kind == Tok::kAnd) {
      STRATA_RETURN_IF_ERROR(Advance());
      STRATA_ASSIGN_OR_RETURN(FilterNode next, ParseUnary(depth));
      node.children.push_back(std::move(next));
    }
    return node;
  }

  Status CheckDepth(size_t depth) const {
    if (depth + 1 > Filter::kMaxDepth) {
      return ErrorAt(cur_.pos, fmt::format("parentheses and NOTs nested more than {} deep",
                                           Filter::kMaxDepth));
    }
    return Status::Ok();
  }

  Result<FilterNode> ParseUnary(size_t depth) {
    if (cur_.kind == Tok::kNot) {
      STRATA_RETURN_IF_ERROR(CheckDepth(depth));
      STRATA_RETURN_IF_ERROR(Advance());
      FilterNode node;
      node.kind = FilterNode::Kind::kNot;
      STRATA_ASSIGN_OR_RETURN(FilterNode child, ParseUnary(depth + 1));
      node.children.push_back(std::move(child));
      return node;
    }
    if (cur_.kind == Tok::kLParen) {
      STRATA_RETURN_IF_ERROR(CheckDepth(depth));
      const size_t open = cur_.pos;
      STRATA_RETURN_IF_ERROR(Advance());
      STRATA_ASSIGN_OR_RETURN(FilterNode inner, ParseOr(depth + 1));
      if (cur_.kind != Tok::kRParen) {
        return Error(
            ErrorAt(cur_.pos, fmt::format("expected ')' to close the '(' at position {}, found {}",
                                          open + 1, Describe(cur_))));
      }
      STRATA_RETURN_IF_ERROR(Advance());
      return inner;
    }
    if (cur_.kind == Tok::kName) return ParsePredicate();
    return Error(ErrorAt(
        cur_.pos, fmt::format("expected an attribute name, NOT or '(', found {}", Describe(cur_))));
  }

  Result<FilterNode> ParsePredicate() {
    FilterNode node;
    node.name = std::move(cur_.text);
    const std::string name_excerpt = Excerpt(node.name);
    STRATA_RETURN_IF_ERROR(Advance());
    if (cur_.kind == Tok::kOp) {
      node.kind = FilterNode::Kind::kCompare;
      node.op = cur_.op;
      const std::string after = fmt::format("after '{}'", cur_.raw);
      STRATA_RETURN_IF_ERROR(Advance());
      STRATA_ASSIGN_OR_RETURN(FilterValue v, ParseLiteral(after));
      node.literals.push_back(std::move(v));
      return node;
    }
    if (cur_.kind == Tok::kNot) {
      STRATA_RETURN_IF_ERROR(Advance());
      if (cur_.kind != Tok::kIn) {
        return Error(ErrorAt(cur_.pos, fmt::format("expected IN after '{} NOT', found {}",
                                                   name_excerpt, Describe(cur_))));
      }
      node.negated = true;
    }
    if (cur_.kind != Tok::kIn) {
      return Error(
          ErrorAt(cur_.pos, fmt::format("expected a comparison operator, IN or NOT IN after "
                                        "name '{}', found {}",
                                        name_excerpt, Describe(cur_))));
    }
    node.kind = FilterNode::Kind::kIn;
    STRATA_RETURN_IF_ERROR(Advance());
    if (cur_.kind != Tok::kLParen) {
      return Error(
          ErrorAt(cur_.pos, fmt::format("expected '(' after IN, found {}", Describe(cur_))));
    }
    STRATA_RETURN_IF_ERROR(Advance());
    std::string context = "in the IN list";
    while (true) {
      STRATA_ASSIGN_OR_RETURN(FilterValue v, ParseLiteral(context));
      node.literals.push_back(std::move(v));
      if (cur_.kind == Tok::kRParen) break;
      if (cur_.kind != Tok::kComma) {
        return Error(ErrorAt(
            cur_.pos, fmt::format("expected ',' or ')' in the IN list, found {}", Describe(cur_))));
      }
      STRATA_RETURN_IF_ERROR(Advance());
      context = "after ','";
    }
    STRATA_RETURN_IF_ERROR(Advance());
    return node;
  }

  Result<FilterValue> ParseLiteral(std::string_view context) {
    FilterValue v;
    switch (cur_.kind) {
      case Tok::kInt:
        v = cur_.int_value;
        break;
      case Tok::kDouble:
        v = cur_.double_value;
        break;
      case Tok::kString:
        v = std::move(cur_.text);
        break;
      default:
        return Error(ErrorAt(
            cur_.pos, fmt::format("expected a value {}, found {}", context, Describe(cur_))));
    }
    if (++literals_ > Filter::kMaxLiterals) {
      return Error(ErrorAt(cur_.pos,
                           fmt::format("more than {} values in the filter", Filter::kMaxLiterals)));
    }
    STRATA_RETURN_IF_ERROR(Advance());
    return v;
  }

  Lexer lexer_;
  Token cur_;
  size_t literals_ = 0;
};

// --- Evaluation ---

const AttributeValue* FindAttribute(const Attributes& attrs, std::string_view name) {
  for (const Attribute& a : attrs) {
    if (a.name == name) return &a.value;
  }
  return nullptr;
}

bool Eval(const FilterNode& node, const Attributes& attrs) {
  using Kind = FilterNode::Kind;
  switch (node.kind) {
    case Kind::kAnd:
      return std::all_of(node.children.begin(), node.children.end(),
                         [&](const FilterNode& c) { return Eval(c, attrs); });
    case Kind::kOr:
      return std::any_of(node.children.begin(), node.children.end(),
                         [&](const FilterNode& c) { return Eval(c, attrs); });
    case Kind::kNot:
      return !Eval(node.children[0], attrs);
    case Kind::kCompare: {
      const AttributeValue* v = FindAttribute(attrs, node.name);
      return v != nullptr && filter_internal::CompareMatches(*v, node.op, node.literals[0]);
    }
    case Kind::kIn: {
      const AttributeValue* v = FindAttribute(attrs, node.name);
      if (v == nullptr) return false;
      if (node.negated) {
        return std::all_of(node.literals.begin(), node.literals.end(), [&](const FilterValue& l) {
          return filter_internal::CompareMatches(*v, CompareOp::kNe, l);
        });
      }
      return std::any_of(node.literals.begin(), node.literals.end(), [&](const FilterValue& l) {
        return filter_internal::CompareMatches(*v, CompareOp::kEq, l);
      });
    }
  }
  return false;
}

// --- Printing ---

void AppendQuoted(std::string& out, std::string_view s, char quote) {
  out += quote;
  for (char c : s) {
    if (c == quote || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += c;
    }
  }
  out += quote;
}

void AppendName(std::string& out, std::string_view name) {
  bool bare =
      !name.empty() && IsNameStart(name[0]) && std::all_of(name.begin(), name.end(), IsNameChar);
  for (std::string_view keyword : {"and", "or", "not", "in"}) {
    if (EqualsIgnoreCase(name, keyword)) bare = false;
  }
  if (bare) {
    out += name;
  } else {
    AppendQuoted(out, name, '`');
  }
}

void AppendLiteral(std::string& out, const FilterValue& v) {
  if (const int64_t* i = std::get_if<int64_t>(&v)) {
    out += fmt::format("{}", *i);
  } else if (const double* d = std::get_if<double>(&v)) {
    // Shortest text that reads back to the same double; ".0" keeps it a float.
    std::string s = fmt::format("{}", *d);
    if (s.find_first_of(".eE") == std::string::npos) s += ".0";
    out += s;
  } else {
    AppendQuoted(out, std::get<std::string>(v), '"');
  }
}

void Print(std::string& out, const FilterNode& node) {
  using Kind = FilterNode::Kind;
  switch (node.kind) {
    case Kind::kAnd:
    case Kind::kOr: {
      const std::string_view sep = node.kind == Kind::kAnd ? " AND " : " OR ";
      for (size_t i = 0; i < node.children.size(); ++i) {
        if (i > 0) out += sep;
        const FilterNode& c = node.children[i];
        // A nested AND/OR keeps its parentheses so that the tree reads back the same.
        const bool parens = c.kind == Kind::kAnd || c.kind == Kind::kOr;
        if (parens) out += '(';
        Print(out, c);
        if (parens) out += ')';
      }
      return;
    }
    case Kind::kNot: {
      out += "NOT ";
      const FilterNode& c = node.children[0];
      const bool parens = c.kind == Kind::kAnd || c.kind == Kind::kOr;
      if (parens) out += '(';
      Print(out, c);
      if (parens) out += ')';
      return;
    }
    case Kind::kCompare:
      AppendName(out, node.name);
      out += ' ';
      out += CompareOpText(node.op);
      out += ' ';
      AppendLiteral(out, node.literals[0]);
      return;
    case Kind::kIn:
      AppendName(out, node.name);
      out += node.negated ? " NOT IN (" : " IN (";
      for (size_t i = 0; i < node.literals.size(); ++i) {
        if (i > 0) out += ", ";
        AppendLiteral(out, node.literals[i]);
      }
      out += ')';
      return;
  }
}

}  // namespace

Result<Filter> Filter::Parse(std::string_view text) {
  if (text.size() > kMaxTextBytes) {
    return Error(InvalidArgument("filter: the text has {} bytes, at most {} allowed", text.size(),
                                 kMaxTextBytes));
  }
  if (std::all_of(text.begin(), text.end(), IsSpace)) {
    return Error(InvalidArgument("filter: the text is empty"));
  }
  Parser parser(text);
  STRATA_ASSIGN_OR_RETURN(FilterNode root, parser.ParseAll());
  return Filter(std::move(root));
}

bool Filter::Matches(const Attributes& attrs) const { return Eval(root_, attrs); }

std::string Filter::ToString() const {
  std::string out;
  Print(out, root_);
  return out;
}

}  // namespace strata::engine

namespace strata::engine {

namespace {

void CollectWarnings(const FilterNode& n, const std::function<uint8_t(std::string_view)>& kinds_of,
                     std::string_view collection, std::vector<std::string>& seen_missing,
                     std::vector<std::string>& out) {
  if (n.kind != FilterNode::Kind::kCompare && n.kind != FilterNode::Kind::kIn) {
    for (const FilterNode& c : n.children) CollectWarnings(c, kinds_of, collection, seen_missing, out);
    return;
  }
  const uint8_t kinds = kinds_of(n.name);
  if (kinds == 0) {
    if (std::find(seen_missing.begin(), seen_missing.end(), n.name) == seen_missing.end()) {
      seen_missing.push_back(n.name);
      out.push_back(fmt::format("no record of collection '{}' has the attribute '{}' (misspelt?)", collection,
                                n.name));
    }
    return;
  }
  bool number = false, text = false;
  for (const FilterValue& v : n.literals) (std::holds_alternative<std::string>(v) ? text : number) = true;
  const bool has_number = kinds & 1, has_text = kinds & 2;  // AttributeIndex::kHoldsNumber, kHoldsText
  if (text && !has_text) {
    out.push_back(fmt::format("attribute '{}' of collection '{}' only ever held numbers; compared with a string "
                              "it matches no record", n.name, collection));
  } else if (number && !has_number) {
    out.push_back(fmt::format("attribute '{}' of collection '{}' only ever held strings or tags; compared with a "
                              "number it matches no record", n.name, collection));
  }
}

}  // namespace

std::vector<std::string> Filter::Warnings(const std::function<uint8_t(std::string_view)>& kinds_of,
                                          std::string_view collection) const {
  std::vector<std::string> out, missing;
  CollectWarnings(root_, kinds_of, collection, missing, out);
  return out;
}

}  // namespace strata::engine
