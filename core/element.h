#pragma once
// Element types of vectors as they arrive (the wire's element-type byte, an .npy's dtype):
// float32, float16 (IEEE binary16), int8 and uint8, and the one place they are widened to
// float32 -- a row at a time (WidenRow), so that a batch of narrow vectors is never held as
// one float32 copy on its way into the engine (docs/PROTOCOL.md, upsert_typed).
//
// Header-only; pure functions, safe from any thread.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "core/status.h"

namespace strata {

// The values are the wire's element-type byte.
enum class ElementType : uint8_t { kFloat32 = 0, kFloat16 = 1, kInt8 = 2, kUint8 = 3 };
inline constexpr uint8_t kLastElementType = 3;

inline constexpr size_t ElementSize(ElementType t) {
  switch (t) {
    case ElementType::kFloat16:
      return 2;
    case ElementType::kInt8:
    case ElementType::kUint8:
      return 1;
    case ElementType::kFloat32:
      break;
  }
  return 4;
}

// "float32", "float16", "int8", "uint8"; "unknown" outside the enum.
inline constexpr std::string_view ElementTypeName(ElementType t) {
  switch (t) {
    case ElementType::kFloat32:
      return "float32";
    case ElementType::kFloat16:
      return "float16";
    case ElementType::kInt8:
      return "int8";
    case ElementType::kUint8:
      return "uint8";
  }
  return "unknown";
}

// The names above (also "f32", "f16", "half", "i8", "u8").
inline Result<ElementType> ParseElementType(std::string_view name) {
  if (name == "float32" || name == "f32") return ElementType::kFloat32;
  if (name == "float16" || name == "f16" || name == "half") return ElementType::kFloat16;
  if (name == "int8" || name == "i8") return ElementType::kInt8;
  if (name == "uint8" || name == "u8") return ElementType::kUint8;
  return Error(InvalidArgument("unknown element type '{}' (expected float32, float16, int8 or uint8)", name));
}

// A wire byte to an ElementType; InvalidArgument naming the value otherwise.
inline Result<ElementType> ElementTypeFromByte(uint8_t value) {
  if (value > kLastElementType) {
    return Error(InvalidArgument("element type: unknown value {} (0 float32, 1 float16, 2 int8, 3 uint8)", value));
  }
  return static_cast<ElementType>(value);
}

// IEEE 754 binary16 bits to float32, exactly (every half is a float). Infinity and NaN
// stay what they are (callers refuse non-finite vectors after widening).
inline float HalfBitsToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0) {  // zero or subnormal: mant x 2^-24, exact in float
    const float v = float(mant) * 0x1p-24f;
    return sign ? -v : v;
  }
  const uint32_t bits = exp == 0x1F ? (sign | 0x7F800000u | (mant << 13))
                                    : (sign | ((exp + 112u) << 23) | (mant << 13));
  return std::bit_cast<float>(bits);
}

// Widens one row of `dim` values of type `t` (little-endian, any alignment) at `src` into
// `out` (dim floats). int8 and uint8 values become the same integers as floats.
inline void WidenRow(ElementType t, const void* src, size_t dim, float* out) {
  const auto* p = static_cast<const unsigned char*>(src);
  switch (t) {
    case ElementType::kFloat32:
      std::memcpy(out, p, dim * sizeof(float));
      return;
    case ElementType::kFloat16:
      for (size_t j = 0; j < dim; ++j) {
        uint16_t h;
        std::memcpy(&h, p + 2 * j, 2);
        out[j] = HalfBitsToFloat(h);
      }
      return;
    case ElementType::kInt8:
      for (size_t j = 0; j < dim; ++j) out[j] = static_cast<float>(static_cast<int8_t>(p[j]));
      return;
    case ElementType::kUint8:
      for (size_t j = 0; j < dim; ++j) out[j] = static_cast<float>(p[j]);
      return;
  }
}

}  // namespace strata
