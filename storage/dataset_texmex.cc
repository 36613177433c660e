// texmex data sets (.fvecs / .ivecs / .bvecs): every record is its int32 dimension
// followed by that many values.

#include <limits>

#include "storage/dataset_format.h"

namespace strata::storage::dataset_detail {
namespace {

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

}  // namespace

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

}  // namespace strata::storage::dataset_detail
