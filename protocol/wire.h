#pragma once
// Internal to protocol/: the payload primitives every message codec is written in --
// Writer (little-endian appends, or only a byte count) and Reader (bounds-checked
// reads that name their field) -- and the smallest encoded size of a string, which
// counts are checked against. The codecs are declared in messages.h.

#include <fmt/core.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/status.h"

namespace strata::protocol::wire {

// The wire is little-endian and values are copied with memcpy; on a big-endian host every
// Fixed<T> below would need a byte swap. Strata is only built for little-endian hosts.
static_assert(std::endian::native == std::endian::little,
              "the wire encoding assumes little-endian");
static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559);
static_assert(sizeof(double) == 8 && std::numeric_limits<double>::is_iec559);

// Smallest encoded size of a string (its u32 length), used to refuse a count before
// allocating for it: a count whose elements cannot fit in the bytes left is malformed
// whatever the elements hold. Each message family defines the other sizes it needs.
inline constexpr uint64_t kMinStringBytes = 4;

// ---------------------------------------------------------------------------
// Writer: appends little-endian primitives to a byte vector, or, with no vector, only counts
// them (so that ValidateForEncoding and the encoder share one description of the format).
// Thread-compatible.
// ---------------------------------------------------------------------------
class Writer {
 public:
  explicit Writer(std::vector<uint8_t>* out) : out_(out) {}

  uint64_t size() const { return size_; }

  template <typename T>
  void Fixed(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    uint8_t bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof(T));
    Bytes(bytes, sizeof(T));
  }
  void U8(uint8_t v) { Fixed(v); }
  void U16(uint16_t v) { Fixed(v); }
  void U32(uint32_t v) { Fixed(v); }
  void U64(uint64_t v) { Fixed(v); }
  void I64(int64_t v) { Fixed(v); }
  void F64(double v) { Fixed(v); }
  void Bool(bool v) { U8(v ? 1 : 0); }
  void String(std::string_view s) {
    STRATA_CHECK(s.size() <= std::numeric_limits<uint32_t>::max());
    U32(static_cast<uint32_t>(s.size()));
    Bytes(s.data(), s.size());
  }
  void Floats(std::span<const float> v) { Bytes(v.data(), v.size_bytes()); }
  void Raw(std::span<const uint8_t> v) { Bytes(v.data(), v.size()); }
  void Count(size_t n) {
    STRATA_CHECK(n <= std::numeric_limits<uint32_t>::max());
    U32(static_cast<uint32_t>(n));
  }

 private:
  void Bytes(const void* data, size_t n) {
    size_ += n;
    if (out_ != nullptr && n > 0) {
      const auto* p = static_cast<const uint8_t*>(data);
      out_->insert(out_->end(), p, p + n);
    }
  }

  std::vector<uint8_t>* out_;
  uint64_t size_ = 0;
};

// ---------------------------------------------------------------------------
// Reader: bounds-checked little-endian reads from one payload. Every read names its field in
// the error; callers add the outer context ("upsert: record 3: ...") with WithContext.
// Thread-compatible.
// ---------------------------------------------------------------------------
inline std::string Prefix(std::string_view field) {
  return field.empty() ? std::string() : fmt::format("{}: ", field);
}

// A well-formed value over one of the DecodeLimits: OutOfRange (a server answers kTooLarge),
// naming the field, the value, the limit and the DecodeLimits member that sets it:
// "count: 5 exceeds the limit 4 (max_batch)".
inline Status OverLimit(std::string_view field, std::string_view what, uint64_t value,
                        uint64_t limit, std::string_view limit_name) {
  return OutOfRange("{}{}{} exceeds the limit {} ({})", Prefix(field), what, value, limit,
                    limit_name);
}

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}

  uint64_t left() const { return in_.size() - pos_; }

  template <typename T>
  Result<T> Fixed(std::string_view field) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (left() < sizeof(T)) {
      return Error(InvalidArgument("{}needs {} bytes, {} left", Prefix(field), sizeof(T), left()));
    }
    T value;
    std::memcpy(&value, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  Result<uint8_t> U8(std::string_view field) { return Fixed<uint8_t>(field); }
  Result<uint16_t> U16(std::string_view field) { return Fixed<uint16_t>(field); }
  Result<uint32_t> U32(std::string_view field) { return Fixed<uint32_t>(field); }
  Result<uint64_t> U64(std::string_view field) { return Fixed<uint64_t>(field); }
  Result<int64_t> I64(std::string_view field) { return Fixed<int64_t>(field); }
  Result<float> F32(std::string_view field) { return Fixed<float>(field); }
  Result<double> F64(std::string_view field) { return Fixed<double>(field); }

  Result<bool> Bool(std::string_view field) {
    STRATA_ASSIGN_OR_RETURN(uint8_t b, U8(field));
    if (b > 1) return Error(InvalidArgument("{}bool byte {} is neither 0 nor 1", Prefix(field), b));
    return b == 1;
  }

  // A string of at most `max_len` bytes (the length is checked against the bytes left first).
  Result<std::string> String(std::string_view field, uint32_t max_len) {
    STRATA_ASSIGN_OR_RETURN(uint32_t len, U32(field));
    if (len > left()) {
      return Error(
          InvalidArgument("{}string length {} exceeds {} bytes left", Prefix(field), len, left()));
    }
    if (len > max_len) return Error(OverLimit(field, "string length ", len, max_len, "max_string"));
    std::string s(reinterpret_cast<const char*>(in_.data() + pos_), len);
    pos_ += len;
    return s;
  }

  // A u32 count of elements that each take at least `min_bytes` bytes, refused before anything
  // is allocated for them: InvalidArgument (malformed) when that many elements cannot fit in the
  // bytes left, else OutOfRange when over `limit` (the DecodeLimits field `limit_name`). The fit
  // is checked first, so that a count the payload could not hold is reported as malformed
  // whatever the limit.
  Result<uint32_t> Count(std::string_view field, uint32_t limit, std::string_view limit_name,
                         uint64_t min_bytes) {
    STRATA_ASSIGN_OR_RETURN(uint32_t n, U32(field));
    return CheckCount(field, n, limit, limit_name, min_bytes);
  }
  Result<uint32_t> CheckCount(std::string_view field, uint64_t n, uint64_t limit,
                              std::string_view limit_name, uint64_t min_bytes) {
    // n < 2^32 and min_bytes < 2^40 here, so the product cannot overflow 64 bits.
    if (n * min_bytes > left()) {
      return Error(InvalidArgument("{}{} entries need at least {} bytes, {} left", Prefix(field), n,
                                   n * min_bytes, left()));
    }
    if (n > limit) return Error(OverLimit(field, "", n, limit, limit_name));
    return static_cast<uint32_t>(n);
  }

  // `n` floats (already bounded by a count check or a dim limit), copied with memcpy.
  Status Floats(std::string_view field, uint64_t n, std::vector<float>& out) {
    if (n > left() / sizeof(float)) {
      return InvalidArgument("{}{} floats need {} bytes, {} left", Prefix(field), n,
                             n * sizeof(float), left());
    }
    out.resize(n);
    if (n > 0) std::memcpy(out.data(), in_.data() + pos_, n * sizeof(float));
    pos_ += n * sizeof(float);
    return Status::Ok();
  }

  // `n` bytes (already bounded), appended to `out`.
  Status AppendBytes(std::string_view field, uint64_t n, std::vector<uint8_t>& out) {
    if (n > left()) return InvalidArgument("{}{} bytes needed, {} left", Prefix(field), n, left());
    out.insert(out.end(), in_.data() + pos_, in_.data() + pos_ + n);
    pos_ += n;
    return Status::Ok();
  }

  Status Finish() const {
    if (left() != 0) return InvalidArgument("{} trailing bytes after the last field", left());
    return Status::Ok();
  }

 private:
  std::span<const uint8_t> in_;
  uint64_t pos_ = 0;
};

}  // namespace strata::protocol::wire
