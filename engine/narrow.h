#pragma once
// Lossless narrowing of float32 vectors to the element types of core/element.h, for what the
// engine writes: a WAL record keeps a typed row in its own type, and a segment's records keep
// their vectors in the narrowest type that holds every value exactly (uint8, int8, float16,
// else float32). Reading widens back with WidenRow (core/element.h): the round trip is exact.
//
// Header-only; pure functions, safe from any thread.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "core/element.h"
#include "index/distance/half.h"

namespace strata::engine {

// Whether `x` is exactly a value of `t` (kFloat32: always).
inline bool HoldsExactly(ElementType t, float x) {
  switch (t) {
    // -0.0 is not an integer value: stored as 0, it would come back +0.0.
    case ElementType::kUint8:
      return x >= 0.0f && x <= 255.0f && x == std::nearbyint(x) && !std::signbit(x);
    case ElementType::kInt8:
      return x >= -128.0f && x <= 127.0f && x == std::nearbyint(x) && (x != 0.0f || !std::signbit(x));
    case ElementType::kFloat16:
      return HalfBitsToFloat(index::FloatToHalf(x)) == x;
    case ElementType::kFloat32:
      break;
  }
  return true;
}

// `dim` values at `v` in type `t` (little-endian) written to `out` (dim x ElementSize(t)
// bytes), when every value is exactly a value of `t`; false otherwise (`out` then holds
// a prefix). kFloat32 always fits.
inline bool NarrowRow(ElementType t, const float* v, size_t dim, uint8_t* out) {
  for (size_t j = 0; j < dim; ++j) {
    const float x = v[j];
    if (!HoldsExactly(t, x)) return false;
    switch (t) {
      case ElementType::kUint8:
        out[j] = uint8_t(x);
        break;
      case ElementType::kInt8:
        out[j] = uint8_t(int8_t(x));
        break;
      case ElementType::kFloat16: {
        const uint16_t h = index::FloatToHalf(x);
        out[2 * j] = uint8_t(h & 0xff);
        out[2 * j + 1] = uint8_t(h >> 8);
        break;
      }
      case ElementType::kFloat32:
        std::memcpy(out + 4 * j, &x, sizeof x);
        break;
    }
  }
  return true;
}

// Which narrower types hold every value seen so far exactly; Add each row, then Narrowest().
class NarrowestType {
 public:
  void Add(const float* v, size_t dim) {
    for (size_t j = 0; j < dim && (u8_ || i8_ || f16_); ++j) {
      const float x = v[j];
      u8_ = u8_ && HoldsExactly(ElementType::kUint8, x);
      i8_ = i8_ && HoldsExactly(ElementType::kInt8, x);
      f16_ = f16_ && HoldsExactly(ElementType::kFloat16, x);
    }
  }
  ElementType Narrowest() const {
    return u8_ ? ElementType::kUint8 : i8_ ? ElementType::kInt8 : f16_ ? ElementType::kFloat16 : ElementType::kFloat32;
  }

 private:
  bool u8_ = true, i8_ = true, f16_ = true;
};

}  // namespace strata::engine
