#pragma once
// VectorView and VectorSet: contiguous float32 vectors.
//
// VectorSet owns n rows of `dim` floats in one 64-byte aligned allocation, row i at
// data() + i * dim (no padding between rows, so files map 1:1 onto it). It grows
// by Append. Thread-compatible: concurrent const access is safe; any mutation
// needs external synchronization.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>

#include "core/status.h"

namespace strata {

// A borrowed, read-only view of one vector.
struct VectorView {
  const float* data = nullptr;
  size_t dim = 0;

  VectorView() = default;
  VectorView(const float* d, size_t n) : data(d), dim(n) {}
  explicit VectorView(std::span<const float> s) : data(s.data()), dim(s.size()) {}
  float operator[](size_t i) const { return data[i]; }
  std::span<const float> span() const { return {data, dim}; }
};

// Deleter for memory from AlignedAlloc.
struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

inline constexpr size_t kVectorAlignment = 64;

// Allocates `bytes` rounded up to the alignment; returns nullptr on failure.
void* AlignedAlloc(size_t bytes, size_t alignment = kVectorAlignment);

// Overflow-checked a*b; false on overflow.
inline bool CheckedMul(size_t a, size_t b, size_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}

class VectorSet {
 public:
  VectorSet() = default;
  // Zero-filled n x dim. Fails on dim == 0, overflow, or allocation failure.
  static Result<VectorSet> Create(size_t n, size_t dim);

  VectorSet(VectorSet&&) noexcept = default;
  VectorSet& operator=(VectorSet&&) noexcept = default;
  VectorSet(const VectorSet&) = delete;
  VectorSet& operator=(const VectorSet&) = delete;

  size_t size() const { return size_; }
  size_t dim() const { return dim_; }
  bool empty() const { return size_ == 0; }
  const float* data() const { return data_.get(); }
  float* mutable_data() { return data_.get(); }
  const float* row(size_t i) const { return data_.get() + i * dim_; }
  float* mutable_row(size_t i) { return data_.get() + i * dim_; }
  VectorView operator[](size_t i) const { return VectorView(row(i), dim_); }
  size_t size_bytes() const { return size_ * dim_ * sizeof(float); }

  // Appends one row; `v.dim` must equal dim() (or set it when the set is empty and dim()==0).
  Status Append(VectorView v);
  // Drops rows from the end so that size() == n (n <= size()); capacity is kept.
  void Truncate(size_t n) {
    if (n < size_) size_ = n;
  }
  // Ensures capacity for n rows without changing size().
  Status Reserve(size_t n);
  // Deep copy (explicit, because copying large sets by accident is a bug).
  Result<VectorSet> Clone() const;
  // Normalizes every row to unit L2 norm (zero rows are left as zero).
  void NormalizeRows();

 private:
  std::unique_ptr<float[], AlignedFree> data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
  size_t dim_ = 0;
};

// Normalizes `v` in place to unit L2 norm; returns the original norm.
float NormalizeInPlace(float* v, size_t dim);

// True when every component is finite (no NaN or infinity).
bool AllFinite(const float* v, size_t n);

}  // namespace strata
