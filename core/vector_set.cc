#include "core/vector_set.h"

#include <cmath>
#include <cstring>

namespace strata {

void* AlignedAlloc(size_t bytes, size_t alignment) {
  size_t rounded = (bytes + alignment - 1) / alignment * alignment;
  if (rounded == 0) rounded = alignment;
  return std::aligned_alloc(alignment, rounded);
}

Result<VectorSet> VectorSet::Create(size_t n, size_t dim) {
  if (dim == 0) return Error(InvalidArgument("vector dimension must be > 0"));
  VectorSet s;
  s.dim_ = dim;
  STRATA_RETURN_IF_ERROR(s.Reserve(n));
  size_t bytes = n * dim * sizeof(float);  // checked by Reserve
  if (bytes) std::memset(s.data_.get(), 0, bytes);
  s.size_ = n;
  return s;
}

Status VectorSet::Reserve(size_t n) {
  if (n <= capacity_) return Status::Ok();
  size_t floats = 0, bytes = 0;
  if (!CheckedMul(n, dim_, &floats) || !CheckedMul(floats, sizeof(float), &bytes)) {
    return InvalidArgument("vector set of {} x {} floats overflows size_t", n, dim_);
  }
  std::unique_ptr<float[], AlignedFree> fresh(static_cast<float*>(AlignedAlloc(bytes)));
  if (!fresh) return ResourceExhausted("cannot allocate {} bytes for {} vectors", bytes, n);
  if (size_) std::memcpy(fresh.get(), data_.get(), size_ * dim_ * sizeof(float));
  data_ = std::move(fresh);
  capacity_ = n;
  return Status::Ok();
}

Status VectorSet::Append(VectorView v) {
  if (dim_ == 0 && size_ == 0) dim_ = v.dim;
  if (v.dim != dim_) {
    return InvalidArgument("vector has dimension {}, expected {}", v.dim, dim_);
  }
  if (size_ == capacity_) {
    STRATA_RETURN_IF_ERROR(Reserve(capacity_ < 16 ? 16 : capacity_ + capacity_ / 2));
  }
  std::memcpy(data_.get() + size_ * dim_, v.data, dim_ * sizeof(float));
  ++size_;
  return Status::Ok();
}

Result<VectorSet> VectorSet::Clone() const {
  VectorSet c;
  c.dim_ = dim_;
  STRATA_RETURN_IF_ERROR(c.Reserve(size_));
  if (size_) std::memcpy(c.data_.get(), data_.get(), size_bytes());
  c.size_ = size_;
  return c;
}

void VectorSet::NormalizeRows() {
  for (size_t i = 0; i < size_; ++i) NormalizeInPlace(mutable_row(i), dim_);
}

float NormalizeInPlace(float* v, size_t dim) {
  double sum = 0;
  for (size_t i = 0; i < dim; ++i) sum += double(v[i]) * v[i];
  double norm = std::sqrt(sum);
  if (norm > 0) {
    float inv = float(1.0 / norm);
    for (size_t i = 0; i < dim; ++i) v[i] *= inv;
  }
  return float(norm);
}

bool AllFinite(const float* v, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) return false;
  }
  return true;
}

}  // namespace strata
