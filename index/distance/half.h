#pragma once
// IEEE 754 binary16 ("half") conversions, scalar. The SIMD levels convert with
// F16C / AVX-512 instructions and are tested bit-equal against these.
//
// FloatToHalf rounds to nearest, ties to even, like the hardware's
// _MM_FROUND_TO_NEAREST_INT: magnitudes from 65520 up become infinity, NaN stays
// NaN (quiet), and values below 2^-14 become subnormal halves.

#include <bit>
#include <cstdint>

#include "core/element.h"

namespace strata::index {

// Largest finite half.
inline constexpr float kHalfMax = 65504.0f;

inline uint16_t FloatToHalf(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7FFFFFFFu;
  uint16_t out;
  if (u >= 0x47800000u) {  // >= 65536, infinity or NaN
    out = u > 0x7F800000u ? 0x7E00u : 0x7C00u;
  } else if (u < 0x38800000u) {  // below 2^-14: subnormal half or zero
    // Adding 0.5 (as float: exponent 126) shifts the value so that the float
    // adder's own round-to-nearest-even leaves the half's subnormal mantissa in
    // the low bits.
    const float shifted = std::bit_cast<float>(u) + 0.5f;
    out = uint16_t(std::bit_cast<uint32_t>(shifted) - 0x3F000000u);
  } else {
    // Normal: rebias the exponent (127 -> 15) and round the 13 dropped mantissa
    // bits to nearest even; a carry may roll into the exponent (up to infinity).
    const uint32_t odd = (u >> 13) & 1u;
    u += 0xC8000000u + 0x0FFFu + odd;  // (15 - 127) << 23, wrapped, plus rounding
    out = uint16_t(u >> 13);
  }
  return uint16_t(out | sign);
}

// The one scalar widening (core/element.h), under the name the kernels use.
inline float HalfToFloat(uint16_t h) { return HalfBitsToFloat(h); }

}  // namespace strata::index
