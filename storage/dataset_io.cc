#include "storage/dataset_io.h"

#include <fmt/core.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "storage/file_util.h"

namespace strata::storage {
namespace {

// Every format here is little-endian on disk and is read by memcpy into host values.
static_assert(std::endian::native == std::endian::little,
              "dataset readers assume a little-endian host; add byte swapping to port them");
// Row sizes are computed as 4 + dim * 4 with dim < 2^32 without an overflow check.
static_assert(sizeof(size_t) == 8, "dataset readers assume a 64-bit size_t");

enum class ElemType : uint8_t { kFloat32, kUint8, kInt32 };

constexpr size_t ElemSize(ElemType t) { return t == ElemType::kUint8 ? 1 : 4; }

constexpr std::string_view ElemName(ElemType t) {
  switch (t) {
    case ElemType::kFloat32:
      return "float32";
    case ElemType::kUint8:
      return "uint8";
    case ElemType::kInt32:
      return "int32";
  }
  return "?";
}

// Dense float rows are copied and checked in blocks of about this size, so the
// finiteness check reads data that is still in L2 rather than a second pass over RAM.
constexpr size_t kCopyBlockBytes = size_t{256} << 10;

// Where the rows of a validated file lie: record i starts at data_offset + i * record_bytes.
// texmex records begin with a 4-byte dimension (prefix_bytes == 4) that must equal `dim`;
// the other formats have no per-record prefix.
struct Layout {
  DatasetFormat format = DatasetFormat::kFbin;
  ElemType elem = ElemType::kFloat32;
  size_t rows = 0;
  size_t dim = 0;
  size_t data_offset = 0;
  size_t record_bytes = 0;
  size_t prefix_bytes = 0;

  size_t RecordOffset(size_t row) const { return data_offset + row * record_bytes; }
  size_t ValueOffset(size_t row, size_t component) const {
    return RecordOffset(row) + prefix_bytes + component * ElemSize(elem);
  }
};

template <typename T>
T Load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

std::string PathString(const MappedFile& file) { return file.path().string(); }

bool IsIdFormat(DatasetFormat f) { return f == DatasetFormat::kIvecs || f == DatasetFormat::kIbin; }

Status CheckNotEmpty(const MappedFile& file, DatasetFormat format) {
  if (file.size() != 0) return Status::Ok();
  return Corruption("{}: empty file (0 bytes); expected {} data from byte offset 0",
                    PathString(file), DatasetFormatName(format));
}

// ---------------------------------------------------------------------------------------------
// texmex: .fvecs / .ivecs / .bvecs

// Called only when the file size is not a whole number of records: walks the records
// to name the first one that is wrong (a differing dimension or a short tail).
Status DiagnoseVecs(const MappedFile& file, const Layout& layout) {
  const size_t size = file.size();
  size_t offset = 0;
  for (size_t record = 0;; ++record, offset += layout.record_bytes) {
    const size_t left = size - offset;
    if (left < 4) {
      return Corruption(
          "{}: record {} at byte offset {} is truncated: {} bytes left, shorter than the 4-byte "
          "dimension",
          PathString(file), record, offset, left);
    }
    const int32_t dim = Load<int32_t>(file.data() + offset);
    if (dim < 0 || static_cast<size_t>(dim) != layout.dim) {
      return Corruption("{}: record {} at byte offset {} has dimension {}, expected {}",
                        PathString(file), record, offset, dim, layout.dim);
    }
    if (left < layout.record_bytes) {
      return Corruption("{}: record {} at byte offset {} is truncated: {} bytes left, expected {}",
                        PathString(file), record, offset, left, layout.record_bytes);
    }
  }
}

Result<Layout> ParseVecs(const MappedFile& file, DatasetFormat format, ElemType elem) {
  STRATA_RETURN_IF_ERROR(CheckNotEmpty(file, format));
  if (file.size() < 4) {
    return Error(Corruption(
        "{}: record 0 at byte offset 0 is truncated: {} bytes, shorter than the 4-byte dimension",
        PathString(file), file.size()));
  }
  const int32_t first_dim = Load<int32_t>(file.data());
  if (first_dim <= 0) {
    return Error(Corruption("{}: record 0 at byte offset 0 has dimension {}; it must be > 0",
                            PathString(file), first_dim));
  }
  Layout layout;
  layout.format = format;
  layout.elem = elem;
  layout.dim = static_cast<size_t>(first_dim);
  layout.prefix_bytes = 4;
  layout.record_bytes = 4 + layout.dim * ElemSize(elem);  // dim < 2^31: cannot overflow
  if (file.size() % layout.record_bytes != 0) return Error(DiagnoseVecs(file, layout));
  layout.rows = file.size() / layout.record_bytes;
  return layout;
}

// Checks the dimension prefix of one texmex record (rows other than the first are only
// checked as they are read, so probing stays cheap).
Status CheckRecordDim(const MappedFile& file, const Layout& layout, size_t row) {
  if (layout.prefix_bytes == 0) return Status::Ok();
  const size_t offset = layout.RecordOffset(row);
  const int32_t dim = Load<int32_t>(file.data() + offset);
  if (dim < 0 || static_cast<size_t>(dim) != layout.dim) {
    return Corruption("{}: record {} at byte offset {} has dimension {}, expected {}",
                      PathString(file), row, offset, dim, layout.dim);
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// big-ann-benchmarks: .fbin / .u8bin / .ibin

constexpr size_t kBinHeaderBytes = 8;

struct BinHeader {
  size_t rows = 0;
  size_t dim = 0;
  size_t payload_bytes = 0;  // rows * dim * element size, overflow-checked
};

Result<BinHeader> ParseBinHeader(const MappedFile& file, DatasetFormat format, ElemType elem,
                                 std::string_view dim_name) {
  STRATA_RETURN_IF_ERROR(CheckNotEmpty(file, format));
  if (file.size() < kBinHeaderBytes) {
    return Error(
        Corruption("{}: header truncated: the file has {} bytes, the header ends at byte offset {}",
                   PathString(file), file.size(), kBinHeaderBytes));
  }
  BinHeader h;
  h.rows = Load<uint32_t>(file.data());
  h.dim = Load<uint32_t>(file.data() + 4);
  if (h.dim == 0) {
    return Error(Corruption("{}: header field {} at byte offset 4 is 0; it must be > 0",
                            PathString(file), dim_name));
  }
  size_t values = 0;
  if (!CheckedMul(h.rows, h.dim, &values) ||
      !CheckedMul(values, ElemSize(elem), &h.payload_bytes) ||
      h.payload_bytes > std::numeric_limits<size_t>::max() - kBinHeaderBytes) {
    return Error(Corruption("{}: header at byte offset 0 claims {} x {} {} values, which overflows",
                            PathString(file), h.rows, h.dim, ElemName(elem)));
  }
  return h;
}

// Checks that the file holds exactly `payload_bytes` after the header at `data_offset`.
Status CheckPayloadSize(const MappedFile& file, size_t data_offset, size_t rows, size_t dim,
                        ElemType elem, size_t payload_bytes) {
  const size_t expected = data_offset + payload_bytes;
  if (file.size() < expected) {
    return Corruption(
        "{}: header claims {} rows x {} dim of {} ({} bytes of data from byte offset {}, {} bytes "
        "in all), but the file ends at byte offset {}",
        PathString(file), rows, dim, ElemName(elem), payload_bytes, data_offset, expected,
        file.size());
  }
  if (file.size() > expected) {
    return Corruption("{}: {} unexpected trailing bytes at byte offset {} after {} rows x {} dim",
                      PathString(file), file.size() - expected, expected, rows, dim);
  }
  return Status::Ok();
}

Result<Layout> ParseDenseBin(const MappedFile& file, DatasetFormat format, ElemType elem) {
  STRATA_ASSIGN_OR_RETURN(BinHeader h, ParseBinHeader(file, format, elem, "dim"));
  STRATA_RETURN_IF_ERROR(
      CheckPayloadSize(file, kBinHeaderBytes, h.rows, h.dim, elem, h.payload_bytes));
  Layout layout;
  layout.format = format;
  layout.elem = elem;
  layout.rows = h.rows;
  layout.dim = h.dim;
  layout.data_offset = kBinHeaderBytes;
  layout.record_bytes = h.dim * ElemSize(elem);
  return layout;
}

// ---------------------------------------------------------------------------------------------
// NumPy .npy

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

// Validates an npy file as a C-order 2-D matrix of one of the supported dtypes.
Result<Layout> ParseNpy(const MappedFile& file) {
  STRATA_ASSIGN_OR_RETURN(NpyHeader h, ReadNpyHeader(file));
  ElemType elem;
  if (!h.descr_structured && h.descr == "<f4") {
    elem = ElemType::kFloat32;
  } else if (!h.descr_structured && h.descr == "|u1") {
    elem = ElemType::kUint8;
  } else if (!h.descr_structured && h.descr == "<i4") {
    elem = ElemType::kInt32;
  } else {
    return Error(InvalidArgument(
        "{}: unsupported npy dtype '{}' at byte offset {}; expected '<f4', '|u1' or '<i4'",
        PathString(file), h.descr_structured ? std::string("structured") : h.descr,
        h.descr_offset));
  }
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

// ---------------------------------------------------------------------------------------------
// Reading

Status IdFormatError(const std::filesystem::path& path, DatasetFormat format) {
  return InvalidArgument("{}: .{} files hold ids, not vectors; read them with ReadGroundTruth",
                         path.string(), DatasetFormatName(format));
}

// Validates the structure of a vector file (not its values) and returns where its rows lie.
Result<Layout> ParseVectorFile(const MappedFile& file, DatasetFormat format) {
  switch (format) {
    case DatasetFormat::kFvecs:
      return ParseVecs(file, format, ElemType::kFloat32);
    case DatasetFormat::kBvecs:
      return ParseVecs(file, format, ElemType::kUint8);
    case DatasetFormat::kFbin:
      return ParseDenseBin(file, format, ElemType::kFloat32);
    case DatasetFormat::kU8bin:
      return ParseDenseBin(file, format, ElemType::kUint8);
    case DatasetFormat::kNpy: {
      STRATA_ASSIGN_OR_RETURN(Layout layout, ParseNpy(file));
      if (layout.elem == ElemType::kInt32) {
        return Error(
            InvalidArgument("{}: npy dtype '<i4' holds ids, not vectors; expected '<f4' or '|u1'",
                            PathString(file)));
      }
      return layout;
    }
    case DatasetFormat::kIvecs:
    case DatasetFormat::kIbin:
      break;
  }
  return Error(IdFormatError(file.path(), format));
}

Status NonFiniteError(const MappedFile& file, const Layout& layout, size_t row,
                      const float* values) {
  size_t j = 0;
  while (j + 1 < layout.dim && std::isfinite(values[j])) ++j;
  return Corruption("{}: row {} at byte offset {} has a non-finite value ({}) in component {}",
                    PathString(file), row, layout.ValueOffset(row, j), values[j], j);
}

// Copies rows [first, first + count) into float32 rows, checking texmex dimension
// prefixes and rejecting NaN / infinity.
Result<VectorSet> ConvertRows(const MappedFile& file, const Layout& layout, size_t first,
                              size_t count) {
  auto created = VectorSet::Create(count, layout.dim);
  if (!created) return Error(created.error().WithContext(PathString(file)));
  VectorSet out = std::move(*created);
  const std::byte* base = file.data();
  const size_t dim = layout.dim;

  if (layout.elem == ElemType::kFloat32 && layout.prefix_bytes == 0) {
    // Rows are contiguous on disk and in memory: copy in blocks, then check each block
    // while it is still in cache.
    const size_t block_rows = std::max<size_t>(1, kCopyBlockBytes / layout.record_bytes);
    for (size_t r = 0; r < count; r += block_rows) {
      const size_t n = std::min(block_rows, count - r);
      std::memcpy(out.mutable_row(r), base + layout.RecordOffset(first + r),
                  n * layout.record_bytes);
      if (!AllFinite(out.row(r), n * dim)) {
        for (size_t i = r; i < r + n; ++i) {
          if (!AllFinite(out.row(i), dim))
            return Error(NonFiniteError(file, layout, first + i, out.row(i)));
        }
      }
    }
    return out;
  }

  for (size_t i = 0; i < count; ++i) {
    const size_t row = first + i;
    STRATA_RETURN_IF_ERROR(CheckRecordDim(file, layout, row));
    const std::byte* src = base + layout.RecordOffset(row) + layout.prefix_bytes;
    float* dst = out.mutable_row(i);
    if (layout.elem == ElemType::kFloat32) {
      std::memcpy(dst, src, dim * sizeof(float));
      if (!AllFinite(dst, dim)) return Error(NonFiniteError(file, layout, row, dst));
    } else {  // kUint8; id layouts never reach here
      const auto* bytes = reinterpret_cast<const uint8_t*>(src);
      for (size_t j = 0; j < dim; ++j) dst[j] = static_cast<float>(bytes[j]);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing

Status CheckWritable(const std::filesystem::path& path, size_t n, size_t dim, size_t elem_size,
                     size_t* payload_bytes) {
  if (dim == 0) return InvalidArgument("{}: cannot write vectors of dimension 0", path.string());
  size_t values = 0;
  if (!CheckedMul(n, dim, &values) || !CheckedMul(values, elem_size, payload_bytes)) {
    return InvalidArgument("{}: {} x {} values overflow size_t", path.string(), n, dim);
  }
  return Status::Ok();
}

// texmex: each row is its int32 dimension followed by the values.
Status WriteVecs(const std::filesystem::path& path, const void* data, size_t n, size_t dim,
                 size_t elem_size) {
  size_t payload = 0;
  STRATA_RETURN_IF_ERROR(CheckWritable(path, n, dim, elem_size, &payload));
  if (dim > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return InvalidArgument("{}: dimension {} does not fit the int32 field of texmex files",
                           path.string(), dim);
  }
  if (n == 0) {
    // The dimension lives in each row, so an empty file could not be read back.
    return InvalidArgument("{}: texmex files cannot hold 0 rows", path.string());
  }
  STRATA_ASSIGN_OR_RETURN(AtomicFileWriter writer, AtomicFileWriter::Open(path));
  const int32_t dim32 = static_cast<int32_t>(dim);
  const size_t row_bytes = dim * elem_size;
  const auto* bytes = static_cast<const char*>(data);
  for (size_t i = 0; i < n; ++i) {
    STRATA_RETURN_IF_ERROR(writer.Append(&dim32, sizeof(dim32)));
    STRATA_RETURN_IF_ERROR(writer.Append(bytes + i * row_bytes, row_bytes));
  }
  return writer.Commit();
}

// big-ann: uint32 n, uint32 dim, then the values; `extra` (the gt distances) follows.
Status WriteBin(const std::filesystem::path& path, const void* data, size_t n, size_t dim,
                size_t elem_size, const void* extra = nullptr) {
  size_t payload = 0;
  STRATA_RETURN_IF_ERROR(CheckWritable(path, n, dim, elem_size, &payload));
  if (n > std::numeric_limits<uint32_t>::max() || dim > std::numeric_limits<uint32_t>::max()) {
    return InvalidArgument("{}: {} x {} does not fit the uint32 header of big-ann files",
                           path.string(), n, dim);
  }
  const uint32_t header[2] = {static_cast<uint32_t>(n), static_cast<uint32_t>(dim)};
  STRATA_ASSIGN_OR_RETURN(AtomicFileWriter writer, AtomicFileWriter::Open(path));
  STRATA_RETURN_IF_ERROR(writer.Append(header, sizeof(header)));
  STRATA_RETURN_IF_ERROR(writer.Append(data, payload));
  if (extra != nullptr) STRATA_RETURN_IF_ERROR(writer.Append(extra, payload));
  return writer.Commit();
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

}  // namespace

std::string_view DatasetFormatName(DatasetFormat f) {
  switch (f) {
    case DatasetFormat::kFvecs:
      return "fvecs";
    case DatasetFormat::kIvecs:
      return "ivecs";
    case DatasetFormat::kBvecs:
      return "bvecs";
    case DatasetFormat::kFbin:
      return "fbin";
    case DatasetFormat::kU8bin:
      return "u8bin";
    case DatasetFormat::kIbin:
      return "ibin";
    case DatasetFormat::kNpy:
      return "npy";
  }
  return "unknown";
}

Result<DatasetFormat> FormatFromPath(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static constexpr DatasetFormat kAll[] = {
      DatasetFormat::kFvecs, DatasetFormat::kIvecs, DatasetFormat::kBvecs, DatasetFormat::kFbin,
      DatasetFormat::kU8bin, DatasetFormat::kIbin,  DatasetFormat::kNpy};
  for (DatasetFormat f : kAll) {
    if (ext.size() == DatasetFormatName(f).size() + 1 && ext[0] == '.' &&
        std::string_view(ext).substr(1) == DatasetFormatName(f)) {
      return f;
    }
  }
  return Error(InvalidArgument(
      "{}: unknown data-set extension '{}'; expected .fvecs, .ivecs, .bvecs, .fbin, .u8bin, "
      ".ibin or .npy",
      path.string(), ext));
}

Result<VectorSet> ReadVectors(const std::filesystem::path& path, const ReadOptions& options) {
  STRATA_ASSIGN_OR_RETURN(DatasetFormat format, FormatFromPath(path));
  if (IsIdFormat(format)) return Error(IdFormatError(path, format));
  STRATA_ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  STRATA_ASSIGN_OR_RETURN(Layout layout, ParseVectorFile(file, format));
  if (options.first_row > layout.rows) {
    return Error(InvalidArgument("{}: first_row {} is past the end of the file ({} rows)",
                                 path.string(), options.first_row, layout.rows));
  }
  const size_t count = std::min(options.max_rows, layout.rows - options.first_row);
  return ConvertRows(file, layout, options.first_row, count);
}

Result<DatasetShape> ProbeVectors(const std::filesystem::path& path) {
  STRATA_ASSIGN_OR_RETURN(DatasetFormat format, FormatFromPath(path));
  if (IsIdFormat(format)) return Error(IdFormatError(path, format));
  STRATA_ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  STRATA_ASSIGN_OR_RETURN(Layout layout, ParseVectorFile(file, format));
  return DatasetShape{layout.rows, layout.dim, format};
}

Result<GroundTruth> ReadGroundTruth(const std::filesystem::path& path) {
  STRATA_ASSIGN_OR_RETURN(DatasetFormat format, FormatFromPath(path));
  if (format != DatasetFormat::kIvecs && format != DatasetFormat::kIbin &&
      format != DatasetFormat::kNpy) {
    return Error(InvalidArgument(
        "{}: .{} files hold vectors, not ground truth; expected .ivecs, .ibin or .npy",
        path.string(), DatasetFormatName(format)));
  }
  STRATA_ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  GroundTruth gt;

  if (format == DatasetFormat::kIbin) {
    STRATA_ASSIGN_OR_RETURN(BinHeader h, ParseBinHeader(file, format, ElemType::kInt32, "k"));
    // ids + distances (big-ann ground truth) or ids alone (a plain int32 matrix).
    // ParseBinHeader guarantees ids_only fits; the doubled size may not, and then only
    // the ids-only reading can match the file.
    const size_t ids_only = kBinHeaderBytes + h.payload_bytes;
    size_t with_distances = 0;
    const bool distances_fit = !__builtin_add_overflow(ids_only, h.payload_bytes, &with_distances);
    if (file.size() != ids_only && (!distances_fit || file.size() != with_distances)) {
      return Error(Corruption(
          "{}: header at byte offset 0 claims {} queries x k {}, so the file should have {} "
          "bytes (ids and distances) or {} bytes (ids only), but it has {}",
          path.string(), h.rows, h.dim,
          distances_fit ? fmt::format("{}", with_distances) : std::string("(overflowing)"),
          ids_only, file.size()));
    }
    gt.num_queries = h.rows;
    gt.k = h.dim;
    gt.ids.resize(h.rows * h.dim);
    if (!gt.ids.empty()) std::memcpy(gt.ids.data(), file.data() + kBinHeaderBytes, h.payload_bytes);
    if (distances_fit && file.size() == with_distances && h.payload_bytes > 0) {
      gt.distances.resize(h.rows * h.dim);
      std::memcpy(gt.distances.data(), file.data() + ids_only, h.payload_bytes);
    }
    return gt;
  }

  Layout layout;
  if (format == DatasetFormat::kIvecs) {
    STRATA_ASSIGN_OR_RETURN(layout, ParseVecs(file, format, ElemType::kInt32));
  } else {
    STRATA_ASSIGN_OR_RETURN(layout, ParseNpy(file));
    if (layout.elem != ElemType::kInt32) {
      return Error(
          InvalidArgument("{}: npy dtype is {}, but ground truth must be '<i4' (int32) ids",
                          path.string(), ElemName(layout.elem)));
    }
  }
  gt.num_queries = layout.rows;
  gt.k = layout.dim;
  gt.ids.resize(layout.rows * layout.dim);  // bounded by the file size checked above
  const size_t row_bytes = layout.dim * sizeof(int32_t);
  for (size_t q = 0; q < layout.rows; ++q) {
    STRATA_RETURN_IF_ERROR(CheckRecordDim(file, layout, q));
    std::memcpy(gt.ids.data() + q * layout.dim,
                file.data() + layout.RecordOffset(q) + layout.prefix_bytes, row_bytes);
  }
  return gt;
}

Status WriteVectors(const std::filesystem::path& path, const VectorSet& vectors) {
  STRATA_ASSIGN_OR_RETURN(DatasetFormat format, FormatFromPath(path));
  const size_t n = vectors.size(), dim = vectors.dim();
  switch (format) {
    case DatasetFormat::kFvecs:
      return WriteVecs(path, vectors.data(), n, dim, sizeof(float));
    case DatasetFormat::kFbin:
      return WriteBin(path, vectors.data(), n, dim, sizeof(float));
    case DatasetFormat::kNpy:
      return WriteNpy(path, "<f4", vectors.data(), n, dim, sizeof(float));
    default:
      break;
  }
  return InvalidArgument("{}: WriteVectors writes .fvecs, .fbin or .npy, not .{}", path.string(),
                         DatasetFormatName(format));
}

Status WriteU8Vectors(const std::filesystem::path& path, const uint8_t* data, size_t n,
                      size_t dim) {
  STRATA_ASSIGN_OR_RETURN(DatasetFormat format, FormatFromPath(path));
  if (data == nullptr && n > 0)
    return InvalidArgument("{}: null data for {} rows", path.string(), n);
  switch (format) {
    case DatasetFormat::kBvecs:
      return WriteVecs(path, data, n, dim, 1);
    case DatasetFormat::kU8bin:
      return WriteBin(path, data, n, dim, 1);
    case DatasetFormat::kNpy:
      return WriteNpy(path, "|u1", data, n, dim, 1);
    default:
      break;
  }
  return InvalidArgument("{}: WriteU8Vectors writes .bvecs, .u8bin or .npy, not .{}", path.string(),
                         DatasetFormatName(format));
}

Status WriteGroundTruth(const std::filesystem::path& path, const GroundTruth& gt) {
  STRATA_ASSIGN_OR_RETURN(DatasetFormat format, FormatFromPath(path));
  if (gt.k == 0) return InvalidArgument("{}: ground truth with k == 0", path.string());
  size_t expected = 0;
  if (!CheckedMul(gt.num_queries, gt.k, &expected) || gt.ids.size() != expected) {
    return InvalidArgument("{}: ground truth has {} ids, expected num_queries {} x k {}",
                           path.string(), gt.ids.size(), gt.num_queries, gt.k);
  }
  if (!gt.distances.empty() && gt.distances.size() != expected) {
    return InvalidArgument("{}: ground truth has {} distances, expected num_queries {} x k {}",
                           path.string(), gt.distances.size(), gt.num_queries, gt.k);
  }
  switch (format) {
    case DatasetFormat::kIvecs:
      return WriteVecs(path, gt.ids.data(), gt.num_queries, gt.k, sizeof(int32_t));
    case DatasetFormat::kIbin:
      if (gt.distances.empty() && expected > 0) {
        return InvalidArgument(
            "{}: big-ann .ibin ground truth stores distances, but this ground truth has none",
            path.string());
      }
      return WriteBin(path, gt.ids.data(), gt.num_queries, gt.k, sizeof(int32_t),
                      gt.distances.data());
    case DatasetFormat::kNpy:
      return WriteNpy(path, "<i4", gt.ids.data(), gt.num_queries, gt.k, sizeof(int32_t));
    default:
      break;
  }
  return InvalidArgument("{}: WriteGroundTruth writes .ivecs, .ibin or .npy, not .{}",
                         path.string(), DatasetFormatName(format));
}

}  // namespace strata::storage
