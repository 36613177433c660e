#pragma once
// Encoding helpers shared by Strata's binary formats (section files, the WAL, ...): fixed-width
// little-endian fields in byte buffers, and a printable form of a file's magic bytes for error
// messages. Pure functions; thread-safe.

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>

namespace strata::storage {

// Writes `v` at `dst` as sizeof(T) little-endian bytes. `dst` need not be aligned.
template <std::integral T>
void StoreLe(std::byte* dst, T v) {
  if constexpr (std::endian::native == std::endian::big) v = std::byteswap(v);
  std::memcpy(dst, &v, sizeof(T));
}

// Reads sizeof(T) little-endian bytes at `src`. `src` need not be aligned.
template <std::integral T>
T LoadLe(const std::byte* src) {
  T v;
  std::memcpy(&v, src, sizeof(T));
  if constexpr (std::endian::native == std::endian::big) v = std::byteswap(v);
  return v;
}

// Magic bytes as found in a file, for messages: in double quotes, trailing zero bytes dropped,
// printable ASCII as is and every other byte (and '"', '\') as \xNN.
std::string MagicForMessage(std::span<const std::byte> magic);

}  // namespace strata::storage
