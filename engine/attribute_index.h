#pragma once
// RowBitmap and AttributeIndex: the per-segment attribute index that the query
// planner uses to turn a Filter into the set of rows a search may return.
//
// AttributeIndex keeps, per attribute name:
//  - the rows holding a number (int64, or a double that is not NaN), and two
//    columns of (value, row) -- one for int64 values, one for doubles -- sorted by
//    value, plus an unsorted tail of the values added since the last merge;
//  - the rows holding a string or a tag list, and an ordered dictionary from each
//    distinct string (a string value, or any tag) to the sorted rows holding it.
// Evaluate answers `==`/IN on strings and tags from the postings, numeric ranges
// by binary search in the columns (and a scan of the short tail), string ranges by
// walking the dictionary between the bounds, and `!=`, NOT IN and NOT as
// complements against the rows holding the attribute or the live rows. Its cost is
// the postings it touches plus a few passes over rows()/64 words; `tenant == "t17"`
// costs one posting list and two passes over the words.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "engine/attributes.h"
#include "engine/filter.h"

namespace strata::engine {

// A fixed number of rows, one bit each, in 64-bit words. Bits past size() in the
// last word are always zero. Value type; thread-compatible.
class RowBitmap {
 public:
  RowBitmap() = default;
  // `num_rows` rows, all clear.
  explicit RowBitmap(size_t num_rows) : size_(num_rows), words_((num_rows + 63) / 64, 0) {}

  size_t size() const { return size_; }
  // Grows (new rows clear) or shrinks to `num_rows` rows.
  void Resize(size_t num_rows);

  void Set(uint32_t row) {
    STRATA_CHECK(row < size_);
    words_[row >> 6] |= uint64_t{1} << (row & 63);
  }
  void Reset(uint32_t row) {
    STRATA_CHECK(row < size_);
    words_[row >> 6] &= ~(uint64_t{1} << (row & 63));
  }
  bool Test(uint32_t row) const {
    STRATA_CHECK(row < size_);
    return (words_[row >> 6] >> (row & 63)) & 1;
  }
  void SetAll();
  void ClearAll();

  // Number of set rows.
  size_t Count() const;
  bool None() const;

  // In place; `other` must have the same size().
  void And(const RowBitmap& other);
  void Or(const RowBitmap& other);
  void AndNot(const RowBitmap& other);

  // fn(uint32_t row) for every set row, in increasing order.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (size_t w = 0; w < words_.size(); ++w) {
      for (uint64_t bits = words_[w]; bits != 0; bits &= bits - 1) {
        fn(static_cast<uint32_t>(w * 64 + std::countr_zero(bits)));
      }
    }
  }
  // The set rows, in increasing order.
  std::vector<uint32_t> ToRows() const;

  std::span<const uint64_t> words() const { return words_; }
  size_t memory_bytes() const { return words_.capacity() * sizeof(uint64_t); }

  friend bool operator==(const RowBitmap&, const RowBitmap&) = default;

 private:
  size_t size_ = 0;
  std::vector<uint64_t> words_;
};

// The attribute index of one segment's rows 0..rows()-1.
//
// Evaluate(f) is exactly the set of live rows r for which f.Matches(attributes of r)
// holds (see engine/filter.h for the semantics); the property test in
// tests/engine/filter_test.cc holds the two to bit-for-bit equality.
//
// Thread safety: thread-compatible. Evaluate, EstimateSelectivity and the other
// const methods may run concurrently with each other; Add, Remove and Seal need
// exclusive access (the owning segment's lock).
class AttributeIndex {
 public:
  AttributeIndex() = default;

  // Adds live row `row` with `attrs` (expected to pass ValidateAttributes; of a
  // name given twice only the first counts, as in Filter::Matches). Rows come in
  // increasing order, gaps allowed: `row` must be >= rows() (checked) and below
  // UINT32_MAX. Rows never added are not live.
  void Add(uint32_t row, const Attributes& attrs);
  // The row stops being live and never matches again (its postings stay). A row
  // that is not live, or was never added, is ignored.
  void Remove(uint32_t row);
  // Optional, after bulk adds: merges the numeric tails into the sorted columns
  // and releases spare capacity. Adds may follow. Without it, Add keeps each
  // tail below max(kMaxTail, column size / kTailFraction) by merging as it goes.
  void Seal();

  // The live rows that match `f`; size() == rows().
  RowBitmap Evaluate(const Filter& f) const;

  // An estimate of the fraction of live rows matching `f`, in [0, 1], built from
  // per-predicate counts without bitmaps, assuming predicates are independent:
  // AND multiplies, OR is a + b - ab, NOT is 1 - x.
  //  - ==, !=, numeric ranges and IN / NOT IN on one kind of literal: the count of
  //    postings or column entries involved, exact while no row was removed or
  //    while the entries involved number at most kExactCountLimit (their live bits
  //    are tested); above that, live bits are tested on an even sample of that
  //    many entries. A single == is therefore exact on small segments.
  //  - string ranges: the postings of up to kMaxEstimateValues distinct values,
  //    scaled by the live fraction of rows added and capped by the rows that hold
  //    a string or tags; 1/3 of those rows when the range spans more values.
  //  - IN sums the == counts and NOT IN subtracts them from the rows holding the
  //    attribute (both clamped), so duplicate literals and tags that match several
  //    literals skew them.
  double EstimateSelectivity(const Filter& f) const;
  // What kinds of value rows of this index ever held under `name` (live or not):
  // kHoldsNumber, kHoldsText (strings and tag lists), both, or 0 (never set here).
  static constexpr uint8_t kHoldsNumber = 1, kHoldsText = 2;
  uint8_t KindsOf(std::string_view name) const;

  bool IsLive(uint32_t row) const { return row < live_.size() && live_.Test(row); }
  const RowBitmap& live() const { return live_; }
  size_t live_rows() const { return live_count_; }
  // One past the highest row added (0 when empty).
  size_t rows() const { return live_.size(); }
  // Approximate heap bytes held (vectors by capacity, map and hash nodes estimated).
  size_t memory_bytes() const;

  static constexpr size_t kMaxTail = 1024;
  static constexpr size_t kTailFraction = 16;
  static constexpr size_t kExactCountLimit = 4096;
  static constexpr size_t kMaxEstimateValues = 256;

 private:
  template <typename T>
  struct Entry {
    T value;
    uint32_t row;
  };
  // Values of one numeric kind: `sorted` by (value, row), `tail` in adding order.
  template <typename T>
  struct NumericColumn {
    std::vector<Entry<T>> sorted;
    std::vector<Entry<T>> tail;
  };
  struct Column {
    uint32_t last_row = UINT32_MAX;      // the row added last, to skip a name given twice
    std::vector<uint32_t> numeric_rows;  // rows holding an int64 or non-NaN double
    NumericColumn<int64_t> ints;
    NumericColumn<double> doubles;
    std::vector<uint32_t> text_rows;  // rows holding a string or a tag list
    // Distinct string -> rows whose string equals it or whose tags contain it.
    std::map<std::string, std::vector<uint32_t>, std::less<>> text;
  };
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  template <typename T>
  static void MergeTail(NumericColumn<T>& column);
  template <typename T>
  void AddNumber(NumericColumn<T>& column, T value, uint32_t row);

  const Column* FindColumn(std::string_view name) const;
  RowBitmap EvalNode(const FilterNode& node) const;
  // Sets in `out` the rows (live or not) satisfying `name op literal`, op != kNe
  // for numbers; sets nothing for an incomparable literal.
  void SetMatching(const Column& column, CompareOp op, const FilterValue& literal,
                   RowBitmap& out) const;
  // Sets the rows for `name != literal` (kNe) or NOT IN over `literals`.
  void SetNotEqual(const Column& column, std::span<const FilterValue> literals,
                   RowBitmap& out) const;

  double EstimateNode(const FilterNode& node) const;
  // Estimated live rows satisfying `name op literal`.
  double EstimateCount(const Column& column, CompareOp op, const FilterValue& literal) const;
  double LiveCount(std::span<const uint32_t> rows) const;
  template <typename T>
  double LiveCount(std::span<const Entry<T>> entries) const;

  std::unordered_map<std::string, Column, NameHash, std::equal_to<>> columns_;
  RowBitmap live_;
  size_t live_count_ = 0;
  size_t added_ = 0;
};

}  // namespace strata::engine
