#include "storage/dataset_io.h"

#include <fmt/core.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "storage/dataset_format.h"
#include "storage/file_util.h"

namespace strata::storage {

namespace dataset_detail {

Status CheckWritable(const std::filesystem::path& path, size_t n, size_t dim, size_t elem_size,
                     size_t* payload_bytes) {
  if (dim == 0) return InvalidArgument("{}: cannot write vectors of dimension 0", path.string());
  size_t values = 0;
  if (!CheckedMul(n, dim, &values) || !CheckedMul(values, elem_size, payload_bytes)) {
    return InvalidArgument("{}: {} x {} values overflow size_t", path.string(), n, dim);
  }
  return Status::Ok();
}

}  // namespace dataset_detail

namespace {

using dataset_detail::BinHeader;
using dataset_detail::CheckRecordDim;
using dataset_detail::ElemName;
using dataset_detail::ElemType;
using dataset_detail::kBinHeaderBytes;
using dataset_detail::Layout;
using dataset_detail::ParseBinHeader;
using dataset_detail::ParseDenseBin;
using dataset_detail::ParseNpy;
using dataset_detail::ParseVecs;
using dataset_detail::PathString;
using dataset_detail::WriteBin;
using dataset_detail::WriteNpy;
using dataset_detail::WriteVecs;

// Dense float rows are copied and checked in blocks of about this size, so the
// finiteness check reads data that is still in L2 rather than a second pass over RAM.
constexpr size_t kCopyBlockBytes = size_t{256} << 10;

bool IsIdFormat(DatasetFormat f) { return f == DatasetFormat::kIvecs || f == DatasetFormat::kIbin; }

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
            InvalidArgument("{}: npy dtype '<i4' holds ids, not vectors; expected '<f4', '<f8', "
                            "'<f2', '|u1' or '|i1'",
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
    } else if (layout.elem == ElemType::kUint8) {
      const auto* bytes = reinterpret_cast<const uint8_t*>(src);
      for (size_t j = 0; j < dim; ++j) dst[j] = static_cast<float>(bytes[j]);
    } else if (layout.elem == ElemType::kInt8) {
      const auto* bytes = reinterpret_cast<const int8_t*>(src);
      for (size_t j = 0; j < dim; ++j) dst[j] = static_cast<float>(bytes[j]);
    } else if (layout.elem == ElemType::kFloat64) {
      // A double beyond float's range becomes infinite and is refused below, as NaN is.
      for (size_t j = 0; j < dim; ++j) dst[j] = static_cast<float>(dataset_detail::Load<double>(src + 8 * j));
      if (!AllFinite(dst, dim)) return Error(NonFiniteError(file, layout, row, dst));
    } else {  // kFloat16; id layouts never reach here
      for (size_t j = 0; j < dim; ++j) dst[j] = HalfBitsToFloat(dataset_detail::Load<uint16_t>(src + 2 * j));
      if (!AllFinite(dst, dim)) return Error(NonFiniteError(file, layout, row, dst));
    }
  }
  return out;
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

std::optional<ElementType> NarrowElementType(const DatasetShape& shape) {
  if (shape.value_type == "float16") return ElementType::kFloat16;
  if (shape.value_type == "int8") return ElementType::kInt8;
  if (shape.value_type == "uint8") return ElementType::kUint8;
  return std::nullopt;
}

Result<RawRows> ReadRawRows(const std::filesystem::path& path, const ReadOptions& options) {
  STRATA_ASSIGN_OR_RETURN(DatasetFormat format, FormatFromPath(path));
  if (IsIdFormat(format)) return Error(IdFormatError(path, format));
  STRATA_ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  STRATA_ASSIGN_OR_RETURN(Layout layout, ParseVectorFile(file, format));
  RawRows out;
  switch (layout.elem) {
    case ElemType::kFloat16:
      out.element = ElementType::kFloat16;
      break;
    case ElemType::kInt8:
      out.element = ElementType::kInt8;
      break;
    case ElemType::kUint8:
      out.element = ElementType::kUint8;
      break;
    default:
      return Error(InvalidArgument("{}: holds {} values; raw rows are read from float16, int8 or uint8 files only",
                                   path.string(), ElemName(layout.elem)));
  }
  if (options.first_row > layout.rows) {
    return Error(InvalidArgument("{}: first_row {} is past the end of the file ({} rows)", path.string(),
                                 options.first_row, layout.rows));
  }
  const size_t count = std::min(options.max_rows, layout.rows - options.first_row);
  const size_t row_bytes = layout.dim * ElemSize(layout.elem);
  out.rows = count;
  out.dim = layout.dim;
  out.bytes.resize(count * row_bytes);  // count <= rows, and the file holds rows x row_bytes
  for (size_t i = 0; i < count; ++i) {
    const size_t row = options.first_row + i;
    STRATA_RETURN_IF_ERROR(CheckRecordDim(file, layout, row));
    std::memcpy(out.bytes.data() + i * row_bytes, file.data() + layout.RecordOffset(row) + layout.prefix_bytes,
                row_bytes);
  }
  return out;
}

Result<DatasetShape> ProbeVectors(const std::filesystem::path& path) {
  STRATA_ASSIGN_OR_RETURN(DatasetFormat format, FormatFromPath(path));
  if (IsIdFormat(format)) return Error(IdFormatError(path, format));
  STRATA_ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  STRATA_ASSIGN_OR_RETURN(Layout layout, ParseVectorFile(file, format));
  return DatasetShape{layout.rows, layout.dim, format, ElemName(layout.elem)};
}

Result<std::vector<uint64_t>> ReadIdsNpy(const std::filesystem::path& path) {
  STRATA_ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  return dataset_detail::ReadNpyIds(file);
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
