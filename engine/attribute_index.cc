#include "engine/attribute_index.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <variant>

namespace strata::engine {

using filter_internal::CompareNumber;
using filter_internal::Holds;

// --- RowBitmap ---

void RowBitmap::Resize(size_t num_rows) {
  words_.resize((num_rows + 63) / 64, 0);
  size_ = num_rows;
  // Shrinking may leave bits past the end in the last word; growing leaves them zero.
  if (size_ % 64 != 0) words_.back() &= (uint64_t{1} << (size_ % 64)) - 1;
}

void RowBitmap::SetAll() {
  std::fill(words_.begin(), words_.end(), ~uint64_t{0});
  if (size_ % 64 != 0) words_.back() = (uint64_t{1} << (size_ % 64)) - 1;
}

void RowBitmap::ClearAll() { std::fill(words_.begin(), words_.end(), 0); }

size_t RowBitmap::Count() const {
  size_t n = 0;
  for (uint64_t w : words_) n += static_cast<size_t>(std::popcount(w));
  return n;
}

bool RowBitmap::None() const {
  return std::all_of(words_.begin(), words_.end(), [](uint64_t w) { return w == 0; });
}

void RowBitmap::And(const RowBitmap& other) {
  STRATA_CHECK(other.size_ == size_);
  for (size_t i = 0; i < words_.size(); ++i) words_[i] &= other.words_[i];
}

void RowBitmap::Or(const RowBitmap& other) {
  STRATA_CHECK(other.size_ == size_);
  for (size_t i = 0; i < words_.size(); ++i) words_[i] |= other.words_[i];
}

void RowBitmap::AndNot(const RowBitmap& other) {
  STRATA_CHECK(other.size_ == size_);
  for (size_t i = 0; i < words_.size(); ++i) words_[i] &= ~other.words_[i];
}

std::vector<uint32_t> RowBitmap::ToRows() const {
  std::vector<uint32_t> rows;
  rows.reserve(Count());
  ForEach([&](uint32_t row) { rows.push_back(row); });
  return rows;
}

// --- AttributeIndex ---

namespace {

bool IsNumber(const FilterValue& v) { return !std::holds_alternative<std::string>(v); }

void SetRows(std::span<const uint32_t> rows, RowBitmap& out) {
  for (uint32_t r : rows) out.Set(r);
}

// [begin, end) of the entries of a column sorted by value that satisfy
// `value op literal` (op is not kNe). Correct because CompareNumber is monotone in
// the value: converting int64 to double never reverses an order.
template <typename E>
std::pair<size_t, size_t> SortedRange(const std::vector<E>& sorted, CompareOp op,
                                      const FilterValue& literal) {
  const size_t lt =
      std::partition_point(sorted.begin(), sorted.end(),
                           [&](const E& e) { return CompareNumber(e.value, literal) < 0; }) -
      sorted.begin();
  const size_t le =
      std::partition_point(sorted.begin() + lt, sorted.end(),
                           [&](const E& e) { return CompareNumber(e.value, literal) <= 0; }) -
      sorted.begin();
  switch (op) {
    case CompareOp::kEq:
      return {lt, le};
    case CompareOp::kLt:
      return {0, lt};
    case CompareOp::kLe:
      return {0, le};
    case CompareOp::kGt:
      return {le, sorted.size()};
    case CompareOp::kGe:
      return {lt, sorted.size()};
    case CompareOp::kNe:
      break;
  }
  STRATA_CHECK(false && "SortedRange: kNe");
  return {0, 0};
}

// Calls fn(row) for each entry of `column` satisfying `value op literal` (op is not kNe).
template <typename Column, typename Fn>
void ForEachNumeric(const Column& column, CompareOp op, const FilterValue& literal, Fn&& fn) {
  const auto [begin, end] = SortedRange(column.sorted, op, literal);
  for (size_t i = begin; i < end; ++i) fn(column.sorted[i].row);
  for (const auto& e : column.tail) {
    if (Holds(op, CompareNumber(e.value, literal))) fn(e.row);
  }
}

// Dictionary entries [begin, end) whose key satisfies `key op literal` (op is a range).
template <typename Map>
std::pair<typename Map::const_iterator, typename Map::const_iterator> TextRange(
    const Map& text, CompareOp op, const std::string& literal) {
  switch (op) {
    case CompareOp::kLt:
      return {text.begin(), text.lower_bound(literal)};
    case CompareOp::kLe:
      return {text.begin(), text.upper_bound(literal)};
    case CompareOp::kGt:
      return {text.upper_bound(literal), text.end()};
    case CompareOp::kGe:
      return {text.lower_bound(literal), text.end()};
    case CompareOp::kEq:
      return text.equal_range(literal);
    case CompareOp::kNe:
      break;
  }
  STRATA_CHECK(false && "TextRange: kNe");
  return {text.end(), text.end()};
}

}  // namespace

template <typename T>
void AttributeIndex::MergeTail(NumericColumn<T>& column) {
  if (column.tail.empty()) return;
  const auto by_value = [](const Entry<T>& a, const Entry<T>& b) { return a.value < b.value; };
  std::sort(column.tail.begin(), column.tail.end(), by_value);
  const size_t middle = column.sorted.size();
  column.sorted.insert(column.sorted.end(), column.tail.begin(), column.tail.end());
  std::inplace_merge(column.sorted.begin(), column.sorted.begin() + middle, column.sorted.end(),
                     by_value);
  column.tail.clear();
}

template <typename T>
void AttributeIndex::AddNumber(NumericColumn<T>& column, T value, uint32_t row) {
  column.tail.push_back({value, row});
  // Merging once the tail outgrows 1/kTailFraction of the column costs each add
  // O(kTailFraction) moves amortized and keeps the linear part of a range query
  // to a small fraction of the column.
  if (column.tail.size() > std::max(kMaxTail, column.sorted.size() / kTailFraction))
    MergeTail(column);
}

void AttributeIndex::Add(uint32_t row, const Attributes& attrs) {
  STRATA_CHECK(row >= live_.size() && row != UINT32_MAX);
  live_.Resize(size_t{row} + 1);
  live_.Set(row);
  ++live_count_;
  ++added_;
  for (const Attribute& a : attrs) {
    auto it = columns_.find(std::string_view(a.name));
    if (it == columns_.end()) it = columns_.emplace(a.name, Column{}).first;
    Column& c = it->second;
    if (c.last_row == row) continue;  // the name given twice: the first counts
    c.last_row = row;
    if (const int64_t* i = std::get_if<int64_t>(&a.value)) {
      c.numeric_rows.push_back(row);
      AddNumber(c.ints, *i, row);
    } else if (const double* d = std::get_if<double>(&a.value)) {
      if (std::isnan(*d)) continue;  // NaN matches nothing, not even !=
      c.numeric_rows.push_back(row);
      AddNumber(c.doubles, *d, row);
    } else if (const std::string* s = std::get_if<std::string>(&a.value)) {
      c.text_rows.push_back(row);
      c.text[*s].push_back(row);
    } else {
      c.text_rows.push_back(row);
      for (const std::string& tag : std::get<TagList>(a.value)) {
        std::vector<uint32_t>& posting = c.text[tag];
        if (posting.empty() || posting.back() != row) posting.push_back(row);  // repeated tag
      }
    }
  }
}

void AttributeIndex::Remove(uint32_t row) {
  if (!IsLive(row)) return;
  live_.Reset(row);
  --live_count_;
}

void AttributeIndex::Seal() {
  for (auto& [name, c] : columns_) {
    MergeTail(c.ints);
    MergeTail(c.doubles);
    c.ints.sorted.shrink_to_fit();
    c.doubles.sorted.shrink_to_fit();
    c.numeric_rows.shrink_to_fit();
    c.text_rows.shrink_to_fit();
    for (auto& [value, rows] : c.text) rows.shrink_to_fit();
  }
}

uint8_t AttributeIndex::KindsOf(std::string_view name) const {
  const Column* c = FindColumn(name);
  if (c == nullptr) return 0;
  return uint8_t((c->numeric_rows.empty() ? 0 : kHoldsNumber) | (c->text_rows.empty() ? 0 : kHoldsText));
}

const AttributeIndex::Column* AttributeIndex::FindColumn(std::string_view name) const {
  auto it = columns_.find(name);
  return it == columns_.end() ? nullptr : &it->second;
}

void AttributeIndex::SetMatching(const Column& column, CompareOp op, const FilterValue& literal,
                                 RowBitmap& out) const {
  const auto set = [&](uint32_t row) { out.Set(row); };
  if (IsNumber(literal)) {
    ForEachNumeric(column.ints, op, literal, set);
    ForEachNumeric(column.doubles, op, literal, set);
    return;
  }
  const auto [begin, end] = TextRange(column.text, op, std::get<std::string>(literal));
  for (auto it = begin; it != end; ++it) SetRows(it->second, out);
}

void AttributeIndex::SetNotEqual(const Column& column, std::span<const FilterValue> literals,
                                 RowBitmap& out) const {
  const bool numbers = std::all_of(literals.begin(), literals.end(), IsNumber);
  const bool strings = std::none_of(literals.begin(), literals.end(), IsNumber);
  if (numbers) {
    SetRows(column.numeric_rows, out);
    const auto reset = [&](uint32_t row) { out.Reset(row); };
    for (const FilterValue& l : literals) {
      ForEachNumeric(column.ints, CompareOp::kEq, l, reset);
      ForEachNumeric(column.doubles, CompareOp::kEq, l, reset);
    }
  } else if (strings) {
    SetRows(column.text_rows, out);
    for (const FilterValue& l : literals) {
      auto it = column.text.find(std::get<std::string>(l));
      if (it == column.text.end()) continue;
      for (uint32_t r : it->second) out.Reset(r);
    }
  }
  // Mixed numbers and strings: `!=` to an incomparable literal is false, so nothing matches.
}

// Invariant: on live rows, EvalNode(node) agrees with Matches; bits of rows that are
// not live may be anything. NOT subtracts from the live rows and Evaluate ANDs
// the result with them, so such bits never reach a caller.
RowBitmap AttributeIndex::EvalNode(const FilterNode& node) const {
  using Kind = FilterNode::Kind;
  switch (node.kind) {
    case Kind::kAnd: {
      // Start from a positive child, and subtract NOT children directly (a AND NOT b
      // is a minus b on live rows), saving the complement.
      auto first = std::find_if(node.children.begin(), node.children.end(),
                                [](const FilterNode& c) { return c.kind != Kind::kNot; });
      RowBitmap result = first == node.children.end() ? live_ : EvalNode(*first);
      for (auto it = node.children.begin(); it != node.children.end(); ++it) {
        if (it == first) continue;
        if (it->kind == Kind::kNot) {
          result.AndNot(EvalNode(it->children[0]));
        } else {
          result.And(EvalNode(*it));
        }
      }
      return result;
    }
    case Kind::kOr: {
      RowBitmap result = EvalNode(node.children[0]);
      for (size_t i = 1; i < node.children.size(); ++i) result.Or(EvalNode(node.children[i]));
      return result;
    }
    case Kind::kNot: {
      RowBitmap result = live_;
      result.AndNot(EvalNode(node.children[0]));
      return result;
    }
    case Kind::kCompare: {
      RowBitmap result(rows());
      if (const Column* c = FindColumn(node.name)) {
        if (node.op == CompareOp::kNe) {
          SetNotEqual(*c, node.literals, result);
        } else {
          SetMatching(*c, node.op, node.literals[0], result);
        }
      }
      return result;
    }
    case Kind::kIn: {
      RowBitmap result(rows());
      if (const Column* c = FindColumn(node.name)) {
        if (node.negated) {
          SetNotEqual(*c, node.literals, result);
        } else {
          for (const FilterValue& l : node.literals) SetMatching(*c, CompareOp::kEq, l, result);
        }
      }
      return result;
    }
  }
  return RowBitmap(rows());
}

RowBitmap AttributeIndex::Evaluate(const Filter& f) const {
  RowBitmap result = EvalNode(f.root());
  result.And(live_);
  return result;
}

// --- Estimates ---

double AttributeIndex::LiveCount(std::span<const uint32_t> rows) const {
  if (live_count_ == added_) return static_cast<double>(rows.size());  // nothing removed
  if (rows.size() <= kExactCountLimit) {
    return static_cast<double>(
        std::count_if(rows.begin(), rows.end(), [&](uint32_t r) { return live_.Test(r); }));
  }
  size_t hits = 0;
  for (size_t k = 0; k < kExactCountLimit; ++k)
    hits += live_.Test(rows[k * rows.size() / kExactCountLimit]);
  return static_cast<double>(hits) * static_cast<double>(rows.size()) / kExactCountLimit;
}

template <typename T>
double AttributeIndex::LiveCount(std::span<const Entry<T>> entries) const {
  if (live_count_ == added_) return static_cast<double>(entries.size());
  if (entries.size() <= kExactCountLimit) {
    return static_cast<double>(std::count_if(entries.begin(), entries.end(),
                                             [&](const Entry<T>& e) { return live_.Test(e.row); }));
  }
  size_t hits = 0;
  for (size_t k = 0; k < kExactCountLimit; ++k) {
    hits += live_.Test(entries[k * entries.size() / kExactCountLimit].row);
  }
  return static_cast<double>(hits) * static_cast<double>(entries.size()) / kExactCountLimit;
}

double AttributeIndex::EstimateCount(const Column& column, CompareOp op,
                                     const FilterValue& literal) const {
  if (IsNumber(literal)) {
    if (op == CompareOp::kNe) {
      return std::max(0.0, LiveCount(std::span<const uint32_t>(column.numeric_rows)) -
                               EstimateCount(column, CompareOp::kEq, literal));
    }
    double count = 0;
    const auto add = [&]<typename T>(const NumericColumn<T>& c) {
      const auto [begin, end] = SortedRange(c.sorted, op, literal);
      count += LiveCount(std::span<const Entry<T>>(c.sorted).subspan(begin, end - begin));
      for (const Entry<T>& e : c.tail) {
        if (Holds(op, CompareNumber(e.value, literal)) && live_.Test(e.row)) ++count;
      }
    };
    add(column.ints);
    add(column.doubles);
    return count;
  }
  const std::string& s = std::get<std::string>(literal);
  if (op == CompareOp::kEq || op == CompareOp::kNe) {
    auto it = column.text.find(s);
    const double eq =
        it == column.text.end() ? 0.0 : LiveCount(std::span<const uint32_t>(it->second));
    if (op == CompareOp::kEq) return eq;
    return std::max(0.0, LiveCount(std::span<const uint32_t>(column.text_rows)) - eq);
  }
  const double holders = LiveCount(std::span<const uint32_t>(column.text_rows));
  const auto [begin, end] = TextRange(column.text, op, s);
  size_t postings = 0;
  size_t values = 0;
  for (auto it = begin; it != end; ++it) {
    // Beyond this many values the walk stops being cheap; 1/3 is the classic
    // default selectivity of a range (Selinger et al., System R, 1979).
    if (++values > kMaxEstimateValues) return holders / 3;
    postings += it->second.size();
  }
  const double live_fraction = added_ == 0 ? 0.0 : static_cast<double>(live_count_) / added_;
  return std::min(holders, static_cast<double>(postings) * live_fraction);
}

double AttributeIndex::EstimateNode(const FilterNode& node) const {
  using Kind = FilterNode::Kind;
  const double live = static_cast<double>(live_count_);
  switch (node.kind) {
    case Kind::kAnd: {
      double p = 1;
      for (const FilterNode& c : node.children) p *= EstimateNode(c);
      return p;
    }
    case Kind::kOr: {
      double p = 0;
      for (const FilterNode& c : node.children) {
        const double q = EstimateNode(c);
        p = p + q - p * q;
      }
      return p;
    }
    case Kind::kNot:
      return 1 - EstimateNode(node.children[0]);
    case Kind::kCompare: {
      const Column* c = FindColumn(node.name);
      if (c == nullptr) return 0;
      return std::clamp(EstimateCount(*c, node.op, node.literals[0]) / live, 0.0, 1.0);
    }
    case Kind::kIn: {
      const Column* c = FindColumn(node.name);
      if (c == nullptr) return 0;
      double eq = 0;
      for (const FilterValue& l : node.literals) eq += EstimateCount(*c, CompareOp::kEq, l);
      if (!node.negated) return std::clamp(eq / live, 0.0, 1.0);
      const bool numbers = std::all_of(node.literals.begin(), node.literals.end(), IsNumber);
      const bool strings = std::none_of(node.literals.begin(), node.literals.end(), IsNumber);
      if (!numbers && !strings) return 0;
      const double holders =
          LiveCount(std::span<const uint32_t>(numbers ? c->numeric_rows : c->text_rows));
      return std::clamp((holders - eq) / live, 0.0, 1.0);
    }
  }
  return 0;
}

double AttributeIndex::EstimateSelectivity(const Filter& f) const {
  if (live_count_ == 0) return 0;
  return std::clamp(EstimateNode(f.root()), 0.0, 1.0);
}

size_t AttributeIndex::memory_bytes() const {
  // Node sizes of the standard containers are estimates: payload plus two or
  // three pointers and a color/hash word.
  constexpr size_t kMapNodeOverhead = 4 * sizeof(void*);
  constexpr size_t kHashNodeOverhead = 2 * sizeof(void*);
  const auto heap_string = [](const std::string& s) {
    return s.capacity() > 15 ? s.capacity() + 1 : 0;
  };
  size_t bytes = sizeof(*this) + live_.memory_bytes() + columns_.bucket_count() * sizeof(void*);
  for (const auto& [name, c] : columns_) {
    bytes += sizeof(std::pair<const std::string, Column>) + kHashNodeOverhead + heap_string(name);
    bytes += (c.numeric_rows.capacity() + c.text_rows.capacity()) * sizeof(uint32_t);
    bytes += (c.ints.sorted.capacity() + c.ints.tail.capacity()) * sizeof(Entry<int64_t>);
    bytes += (c.doubles.sorted.capacity() + c.doubles.tail.capacity()) * sizeof(Entry<double>);
    for (const auto& [value, rows] : c.text) {
      bytes += sizeof(std::pair<const std::string, std::vector<uint32_t>>) + kMapNodeOverhead +
               heap_string(value) + rows.capacity() * sizeof(uint32_t);
    }
  }
  return bytes;
}

}  // namespace strata::engine
