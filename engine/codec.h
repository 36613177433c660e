#pragma once
// Little-endian binary encoding with bounds checks, for the engine's own records
// (WAL batches, segment attribute blobs). The reader never reads past its span:
// every Get returns an error naming the field that did not fit.
//
// Thread-compatible: one writer or reader per thread.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/status.h"

namespace strata::engine {

static_assert(std::endian::native == std::endian::little, "Strata's formats are little-endian");

class ByteWriter {
 public:
  explicit ByteWriter(std::vector<std::byte>& out) : out_(out) {}
  template <typename T>
    requires std::is_arithmetic_v<T>
  void Put(T v) {
    const size_t at = out_.size();
    out_.resize(at + sizeof(T));
    std::memcpy(out_.data() + at, &v, sizeof(T));
  }
  void PutBytes(const void* data, size_t n) {
    const size_t at = out_.size();
    out_.resize(at + n);
    if (n) std::memcpy(out_.data() + at, data, n);
  }
  // u32 length, then the bytes.
  void PutString(std::string_view s) {
    Put<uint32_t>(uint32_t(s.size()));
    PutBytes(s.data(), s.size());
  }

 private:
  std::vector<std::byte>& out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::span<const std::byte> in) : in_(in) {}
  template <typename T>
    requires std::is_arithmetic_v<T>
  Status Get(T& v, std::string_view what) {
    if (in_.size() - pos_ < sizeof(T)) return Truncated(what, sizeof(T));
    std::memcpy(&v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::Ok();
  }
  Status GetBytes(void* out, size_t n, std::string_view what) {
    if (in_.size() - pos_ < n) return Truncated(what, n);
    if (n) std::memcpy(out, in_.data() + pos_, n);
    pos_ += n;
    return Status::Ok();
  }
  // A u32-length-prefixed string of at most max_bytes.
  Status GetString(std::string& s, size_t max_bytes, std::string_view what) {
    uint32_t n = 0;
    STRATA_RETURN_IF_ERROR(Get(n, what));
    if (n > max_bytes) {
      return Corruption("{} has length {} (most {}) at byte {}", what, n, max_bytes, pos_ - 4);
    }
    if (in_.size() - pos_ < n) return Truncated(what, n);
    s.assign(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return Status::Ok();
  }
  size_t remaining() const { return in_.size() - pos_; }
  size_t position() const { return pos_; }
  bool done() const { return pos_ == in_.size(); }

 private:
  Status Truncated(std::string_view what, size_t need) const {
    return Corruption("{} needs {} bytes at byte {}, only {} left", what, need, pos_,
                      in_.size() - pos_);
  }
  std::span<const std::byte> in_;
  size_t pos_ = 0;
};

}  // namespace strata::engine
