#pragma once
// Internal to storage/: what the readers and writers of the data-set formats share --
// the layout of a validated vector file, element types, the big-ann header -- and the
// parsers and writers of each format family, defined in
//   dataset_texmex.cc  .fvecs / .ivecs / .bvecs
//   dataset_bigann.cc  .fbin / .u8bin / .ibin
//   dataset_npy.cc     NumPy .npy
// dataset_io.cc implements the public API (dataset_io.h) on top of them.
// Pure functions over a mapped file; thread-safe.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/status.h"
#include "storage/dataset_io.h"
#include "storage/file_util.h"

namespace strata::storage::dataset_detail {

// Every format here is little-endian on disk and is read by memcpy into host values.
static_assert(std::endian::native == std::endian::little,
              "dataset readers assume a little-endian host; add byte swapping to port them");
// Row sizes are computed as 4 + dim * 4 with dim < 2^32 without an overflow check.
static_assert(sizeof(size_t) == 8, "dataset readers assume a 64-bit size_t");

// kFloat64, kFloat16 and kInt8 come only from .npy files; readers convert them to float32.
enum class ElemType : uint8_t { kFloat32, kUint8, kInt32, kFloat64, kFloat16, kInt8 };

constexpr size_t ElemSize(ElemType t) {
  switch (t) {
    case ElemType::kUint8:
    case ElemType::kInt8:
      return 1;
    case ElemType::kFloat16:
      return 2;
    case ElemType::kFloat64:
      return 8;
    case ElemType::kFloat32:
    case ElemType::kInt32:
      break;
  }
  return 4;
}

constexpr std::string_view ElemName(ElemType t) {
  switch (t) {
    case ElemType::kFloat32:
      return "float32";
    case ElemType::kUint8:
      return "uint8";
    case ElemType::kInt32:
      return "int32";
    case ElemType::kFloat64:
      return "float64";
    case ElemType::kFloat16:
      return "float16";
    case ElemType::kInt8:
      return "int8";
  }
  return "?";
}

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

inline std::string PathString(const MappedFile& file) { return file.path().string(); }

inline Status CheckNotEmpty(const MappedFile& file, DatasetFormat format) {
  if (file.size() != 0) return Status::Ok();
  return Corruption("{}: empty file (0 bytes); expected {} data from byte offset 0",
                    PathString(file), DatasetFormatName(format));
}

// ---- dataset_texmex.cc ----
// Validates a texmex file's structure (every record the first one's size, the first
// dimension > 0); `elem` is the value type of the format.
Result<Layout> ParseVecs(const MappedFile& file, DatasetFormat format, ElemType elem);
// Checks the dimension prefix of one texmex record (rows other than the first are only
// checked as they are read, so probing stays cheap); OK for formats without prefixes.
Status CheckRecordDim(const MappedFile& file, const Layout& layout, size_t row);
// Each row is its int32 dimension followed by the values.
Status WriteVecs(const std::filesystem::path& path, const void* data, size_t n, size_t dim,
                 size_t elem_size);

// ---- dataset_bigann.cc ----
inline constexpr size_t kBinHeaderBytes = 8;

struct BinHeader {
  size_t rows = 0;
  size_t dim = 0;
  size_t payload_bytes = 0;  // rows * dim * element size, overflow-checked
};

// The 8-byte header (uint32 rows, uint32 `dim_name`), its payload size overflow-checked.
Result<BinHeader> ParseBinHeader(const MappedFile& file, DatasetFormat format, ElemType elem,
                                 std::string_view dim_name);
// Checks that the file holds exactly `payload_bytes` after the header at `data_offset`.
Status CheckPayloadSize(const MappedFile& file, size_t data_offset, size_t rows, size_t dim,
                        ElemType elem, size_t payload_bytes);
// A dense .fbin / .u8bin matrix.
Result<Layout> ParseDenseBin(const MappedFile& file, DatasetFormat format, ElemType elem);
// uint32 n, uint32 dim, then the values; `extra` (the gt distances) follows.
Status WriteBin(const std::filesystem::path& path, const void* data, size_t n, size_t dim,
                size_t elem_size, const void* extra = nullptr);

// ---- dataset_npy.cc ----
// Validates an npy file as a C-order 2-D matrix of one of the supported dtypes.
Result<Layout> ParseNpy(const MappedFile& file);
// Ids: a 1-D (n,) or (n, 1) array of '<i8' (non-negative) or '<u8'.
Result<std::vector<uint64_t>> ReadNpyIds(const MappedFile& file);
// NumPy 1.0, C order, 2-D, `descr` the dtype ("<f4", "|u1", "<i4").
Status WriteNpy(const std::filesystem::path& path, std::string_view descr, const void* data,
                size_t n, size_t dim, size_t elem_size);

// ---- dataset_io.cc ----
// Sets `payload_bytes` to n * dim * elem_size; InvalidArgument for dim 0 or an overflow.
Status CheckWritable(const std::filesystem::path& path, size_t n, size_t dim, size_t elem_size,
                     size_t* payload_bytes);

}  // namespace strata::storage::dataset_detail
