// big-ann-benchmarks data sets (.fbin / .u8bin / .ibin): a header of uint32 rows and
// uint32 dim, then the values (for .ibin ground truth, the distances may follow).

#include <limits>

#include "storage/dataset_format.h"

namespace strata::storage::dataset_detail {

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

// big-ann: uint32 n, uint32 dim, then the values; `extra` (the gt distances) follows.
Status WriteBin(const std::filesystem::path& path, const void* data, size_t n, size_t dim,
                size_t elem_size, const void* extra) {
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

}  // namespace strata::storage::dataset_detail
