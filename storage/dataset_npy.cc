// NumPy .npy data sets: a magic, a version, a Python dict literal describing the array
// (dtype, order, shape), then the values.

#include <fmt/core.h>

#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "storage/dataset_format.h"

namespace strata::storage::dataset_detail {
namespace {

struct NpyHeader {
  std::string descr;
  bool descr_structured = false;  // a list descr, i.e. a record dtype
  bool fortran_order = false;
  std::vector<uint64_t> shape;
  size_t descr_offset = 0;  // byte offsets of the values, for error messages
  size_t fortran_offset = 0;
  size_t shape_offset = 0;
  size_t data_offset = 0;
};

// Parses the Python dict literal that NumPy writes as the header, e.g.
// "{'descr': '<f4', 'fortran_order': False, 'shape': (100, 128), }". Only the
// subset NumPy emits is accepted; anything else is reported with its byte offset.
class NpyHeaderParser {
 public:
  NpyHeaderParser(std::string_view text, size_t base_offset, std::string path)
      : text_(text), base_(base_offset), path_(std::move(path)) {}

  Result<NpyHeader> Parse() {
    NpyHeader h;
    bool have_descr = false, have_fortran = false, have_shape = false;
    SkipSpace();
    if (!Consume('{')) return Error(Fail("expected '{'"));
    while (true) {
      SkipSpace();
      if (Consume('}')) break;
      STRATA_ASSIGN_OR_RETURN(std::string key, ParseString());
      SkipSpace();
      if (!Consume(':')) return Error(Fail("expected ':' after key"));
      SkipSpace();
      const size_t value_offset = base_ + pos_;
      if (key == "descr") {
        h.descr_offset = value_offset;
        if (Peek() == '[') {
          h.descr_structured = true;
          STRATA_RETURN_IF_ERROR(SkipBracketed());
        } else {
          STRATA_ASSIGN_OR_RETURN(h.descr, ParseString());
        }
        have_descr = true;
      } else if (key == "fortran_order") {
        h.fortran_offset = value_offset;
        STRATA_ASSIGN_OR_RETURN(h.fortran_order, ParseBool());
        have_fortran = true;
      } else if (key == "shape") {
        h.shape_offset = value_offset;
        STRATA_ASSIGN_OR_RETURN(h.shape, ParseTuple());
        have_shape = true;
      } else {
        return Error(Fail(fmt::format("unexpected key '{}'", key)));
      }
      SkipSpace();
      if (Consume(',')) continue;
      if (Peek() != '}') return Error(Fail("expected ',' or '}'"));
    }
    SkipSpace();
    if (pos_ != text_.size()) return Error(Fail("unexpected text after the header dict"));
    if (!have_descr) return Error(Fail("missing key 'descr'"));
    if (!have_fortran) return Error(Fail("missing key 'fortran_order'"));
    if (!have_shape) return Error(Fail("missing key 'shape'"));
    return h;
  }

 private:
  Status Fail(std::string_view what) const {
    return Corruption("{}: malformed npy header at byte offset {}: {}", path_, base_ + pos_, what);
  }
  char Peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool Consume(char c) {
    if (Peek() != c || pos_ >= text_.size()) return false;
    ++pos_;
    return true;
  }
  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  Result<std::string> ParseString() {
    const char quote = Peek();
    if (quote != '\'' && quote != '"') return Error(Fail("expected a quoted string"));
    const size_t start = ++pos_;
    const size_t end = text_.find(quote, start);
    if (end == std::string_view::npos) return Error(Fail("unterminated string"));
    pos_ = end + 1;
    return std::string(text_.substr(start, end - start));
  }

  Result<bool> ParseBool() {
    if (text_.substr(pos_).starts_with("True")) {
      pos_ += 4;
      return true;
    }
    if (text_.substr(pos_).starts_with("False")) {
      pos_ += 5;
      return false;
    }
    return Error(Fail("expected True or False"));
  }

  Result<std::vector<uint64_t>> ParseTuple() {
    if (!Consume('(')) return Error(Fail("expected '(' to start the shape tuple"));
    std::vector<uint64_t> values;
    while (true) {
      SkipSpace();
      if (Consume(')')) break;
      // NumPy arrays have at most 64 dimensions; more means garbage, not a shape.
      if (values.size() >= 64) return Error(Fail("shape has more than 64 dimensions"));
      if (Peek() == '-') return Error(Fail("shape has a negative dimension"));
      if (Peek() < '0' || Peek() > '9') return Error(Fail("expected an integer in the shape"));
      uint64_t v = 0;
      while (Peek() >= '0' && Peek() <= '9') {
        if (__builtin_mul_overflow(v, uint64_t{10}, &v) ||
            __builtin_add_overflow(v, uint64_t(Peek() - '0'), &v)) {
          return Error(Fail("shape value overflows 64 bits"));
        }
        ++pos_;
      }
      Consume('L');  // Python 2 era files write long integers as "100L"
      values.push_back(v);
      SkipSpace();
      if (Consume(',')) continue;
      if (Consume(')')) break;
      return Error(Fail("expected ',' or ')' in the shape"));
    }
    return values;
  }

  // Skips a (possibly nested) [...] value, honoring quoted strings.
  Status SkipBracketed() {
    int depth = 0;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '\'' || c == '"') {
        STRATA_RETURN_IF_ERROR(ParseString());
        continue;
      }
      ++pos_;
      if (c == '[' || c == '(') ++depth;
      if (c == ']' || c == ')') {
        if (--depth == 0) return Status::Ok();
      }
    }
    return Fail("unterminated list");
  }

  std::string_view text_;
  size_t base_;
  std::string path_;
  size_t pos_ = 0;
};

Result<NpyHeader> ReadNpyHeader(const MappedFile& file) {
  STRATA_RETURN_IF_ERROR(CheckNotEmpty(file, DatasetFormat::kNpy));
  constexpr std::string_view kMagic("\x93NUMPY", 6);
  const char* bytes = reinterpret_cast<const char*>(file.data());
  const size_t size = file.size();
  if (size < kMagic.size() || std::string_view(bytes, kMagic.size()) != kMagic) {
    return Error(Corruption("{}: bad npy magic at byte offset 0 (expected \"\\x93NUMPY\")",
                            PathString(file)));
  }
  if (size < 10) {
    return Error(
        Corruption("{}: npy preamble truncated: the file has {} bytes, it ends at byte "
                   "offset 10",
                   PathString(file), size));
  }
  const uint8_t major = static_cast<uint8_t>(bytes[6]);
  const uint8_t minor = static_cast<uint8_t>(bytes[7]);
  size_t header_start = 0, header_len = 0;
  if (major == 1) {
    header_start = 10;
    header_len = Load<uint16_t>(file.data() + 8);
  } else if (major == 2 || major == 3) {  // 3.0 only changes the header text to UTF-8
    if (size < 12) {
      return Error(
          Corruption("{}: npy {}.{} preamble truncated: the file has {} bytes, it ends "
                     "at byte offset 12",
                     PathString(file), major, minor, size));
    }
    header_start = 12;
    header_len = Load<uint32_t>(file.data() + 8);
  } else {
    return Error(InvalidArgument("{}: unsupported npy version {}.{} at byte offset 6",
                                 PathString(file), major, minor));
  }
  if (header_len > size - header_start) {
    return Error(
        Corruption("{}: npy header at byte offset {} claims {} bytes, but only {} bytes follow",
                   PathString(file), header_start, header_len, size - header_start));
  }
  NpyHeaderParser parser(std::string_view(bytes + header_start, header_len), header_start,
                         PathString(file));
  STRATA_ASSIGN_OR_RETURN(NpyHeader header, parser.Parse());
  header.data_offset = header_start + header_len;
  return header;
}

}  // namespace

// Validates an npy file as a C-order 2-D matrix of one of the supported dtypes.
Result<Layout> ParseNpy(const MappedFile& file) {
  STRATA_ASSIGN_OR_RETURN(NpyHeader h, ReadNpyHeader(file));
  // NumPy's spellings: '<' little-endian, '|' byte-sized (no order), '=' native (little
  // here, see dataset_format.h).
  static constexpr std::pair<std::string_view, ElemType> kDtypes[] = {
      {"<f4", ElemType::kFloat32}, {"=f4", ElemType::kFloat32}, {"|u1", ElemType::kUint8},
      {"<u1", ElemType::kUint8},   {"=u1", ElemType::kUint8},   {"<i4", ElemType::kInt32},
      {"=i4", ElemType::kInt32},   {"<f8", ElemType::kFloat64}, {"=f8", ElemType::kFloat64},
      {"<f2", ElemType::kFloat16}, {"=f2", ElemType::kFloat16}, {"|i1", ElemType::kInt8},
      {"<i1", ElemType::kInt8},    {"=i1", ElemType::kInt8}};
  std::optional<ElemType> found;
  for (const auto& [descr, type] : kDtypes) {
    if (!h.descr_structured && h.descr == descr) found = type;
  }
  if (!found) {
    return Error(InvalidArgument(
        "{}: unsupported npy dtype '{}' at byte offset {}; expected '<f4', '<f8', '<f2', '|u1', "
        "'|i1' (vectors) or '<i4' (ids)",
        PathString(file), h.descr_structured ? std::string("structured") : h.descr,
        h.descr_offset));
  }
  const ElemType elem = *found;
  if (h.fortran_order) {
    return Error(InvalidArgument(
        "{}: npy array is in Fortran order (fortran_order at byte offset {}); only C order is "
        "supported",
        PathString(file), h.fortran_offset));
  }
  if (h.shape.size() != 2) {
    return Error(
        InvalidArgument("{}: npy shape at byte offset {} has {} dimensions; expected 2 (rows, dim)",
                        PathString(file), h.shape_offset, h.shape.size()));
  }
  const uint64_t rows = h.shape[0], dim = h.shape[1];
  if (dim == 0) {
    return Error(Corruption("{}: npy shape at byte offset {} has dimension 0; it must be > 0",
                            PathString(file), h.shape_offset));
  }
  size_t values = 0, payload = 0;
  if (!CheckedMul(rows, dim, &values) || !CheckedMul(values, ElemSize(elem), &payload) ||
      payload > std::numeric_limits<size_t>::max() - h.data_offset) {
    return Error(Corruption("{}: npy shape at byte offset {} ({} x {}) overflows", PathString(file),
                            h.shape_offset, rows, dim));
  }
  STRATA_RETURN_IF_ERROR(CheckPayloadSize(file, h.data_offset, rows, dim, elem, payload));
  Layout layout;
  layout.format = DatasetFormat::kNpy;
  layout.elem = elem;
  layout.rows = rows;
  layout.dim = dim;
  layout.data_offset = h.data_offset;
  layout.record_bytes = dim * ElemSize(elem);
  return layout;
}

// A 1-D (n,) or 2-D (n, 1) C-order array of int64 ('<i8') or uint64 ('<u8') ids; negative
// int64 values are refused, naming the row.
Result<std::vector<uint64_t>> ReadNpyIds(const MappedFile& file) {
  STRATA_ASSIGN_OR_RETURN(NpyHeader h, ReadNpyHeader(file));
  const bool is_signed = !h.descr_structured && (h.descr == "<i8" || h.descr == "=i8");
  const bool is_unsigned = !h.descr_structured && (h.descr == "<u8" || h.descr == "=u8");
  if (!is_signed && !is_unsigned) {
    return Error(InvalidArgument(
        "{}: npy dtype '{}' at byte offset {} is not an id type; ids are '<i8' (int64) or '<u8' "
        "(uint64)",
        PathString(file), h.descr_structured ? std::string("structured") : h.descr, h.descr_offset));
  }
  if (h.fortran_order && h.shape.size() == 2 && h.shape[1] != 1) {
    return Error(InvalidArgument("{}: npy array is in Fortran order; only C order is supported",
                                 PathString(file)));
  }
  if (h.shape.empty() || h.shape.size() > 2 || (h.shape.size() == 2 && h.shape[1] != 1)) {
    return Error(InvalidArgument(
        "{}: npy shape at byte offset {} is not (n,) or (n, 1); ids are one column",
        PathString(file), h.shape_offset));
  }
  const uint64_t rows = h.shape[0];
  size_t payload = 0;
  if (!CheckedMul(rows, size_t{8}, &payload) || payload > std::numeric_limits<size_t>::max() - h.data_offset) {
    return Error(Corruption("{}: npy shape at byte offset {} ({} ids) overflows", PathString(file),
                            h.shape_offset, rows));
  }
  if (file.size() != h.data_offset + payload) {
    return Error(Corruption("{}: the header claims {} ids ({} bytes from byte offset {}), the file has {} bytes",
                            PathString(file), rows, payload, h.data_offset, file.size()));
  }
  std::vector<uint64_t> ids(rows);
  for (size_t i = 0; i < rows; ++i) {
    ids[i] = Load<uint64_t>(file.data() + h.data_offset + i * 8);
    if (is_signed && int64_t(ids[i]) < 0) {
      return Error(InvalidArgument("{}: id {} (row {}) is negative; ids are 0..2^64-2", PathString(file),
                                   int64_t(ids[i]), i));
    }
  }
  return ids;
}

// NumPy 1.0 (2.0 if the header would not fit 64 KiB), C order, 2-D.
Status WriteNpy(const std::filesystem::path& path, std::string_view descr, const void* data,
                size_t n, size_t dim, size_t elem_size) {
  size_t payload = 0;
  STRATA_RETURN_IF_ERROR(CheckWritable(path, n, dim, elem_size, &payload));
  std::string dict =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}, {}), }}", descr, n, dim);
  // NumPy pads the header with spaces and ends it with '\n' so the data starts on a
  // 64-byte boundary; readers that mmap the data rely on that alignment.
  const size_t preamble = 10;
  size_t total = preamble + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict.push_back('\n');
  std::string head("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(dict.size());  // < 200 bytes for a 2-D shape
  head.append(reinterpret_cast<const char*>(&len), sizeof(len));
  STRATA_ASSIGN_OR_RETURN(AtomicFileWriter writer, AtomicFileWriter::Open(path));
  STRATA_RETURN_IF_ERROR(writer.Append(head.data(), head.size()));
  STRATA_RETURN_IF_ERROR(writer.Append(dict.data(), dict.size()));
  STRATA_RETURN_IF_ERROR(writer.Append(data, payload));
  return writer.Commit();
}

}  // namespace strata::storage::dataset_detail
