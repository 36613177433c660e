#pragma once
// Readers and writers for the standard ANN data-set formats.
//
//   .fvecs / .ivecs / .bvecs   texmex: per row, int32 dim then dim float32 / int32 / uint8
//   .fbin / .u8bin / .ibin     big-ann-benchmarks: uint32 n, uint32 dim, then n*dim values
//   ground truth (.ibin gt)    big-ann-benchmarks: uint32 n, uint32 k, n*k int32 ids, n*k float32 distances
//   .npy                       NumPy v1/v2/v3, C order, dtype <f4, <f8, <f2, |u1 or |i1 (or <i4 for
//                              id matrices); float64, float16 and integer values are converted
//                              to float32
//
// Readers memory-map the file, validate every size before allocating (n*dim
// overflow, header claiming more than the file holds, truncated records, a record
// whose dimension differs from the first), and convert to float32 rows in an
// aligned VectorSet. Every error is a Status naming the file and the byte offset.
// Writers write "<path>.tmp", fsync, rename over <path>, and fsync the directory.
// All functions are thread-safe (no shared state).

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string_view>
#include <vector>

#include "core/element.h"
#include "core/status.h"
#include "core/vector_set.h"

namespace strata::storage {

enum class DatasetFormat : uint8_t { kFvecs, kIvecs, kBvecs, kFbin, kU8bin, kIbin, kNpy };

std::string_view DatasetFormatName(DatasetFormat f);
// From the file extension (.fvecs, .ivecs, .bvecs, .fbin, .u8bin, .ibin, .npy).
Result<DatasetFormat> FormatFromPath(const std::filesystem::path& path);

struct ReadOptions {
  size_t first_row = 0;                                  // skip rows before this one
  size_t max_rows = std::numeric_limits<size_t>::max();  // read at most this many rows
};

// Reads float vectors from fvecs, bvecs, fbin, u8bin or npy (f4, f8, f2, u1, i1); other
// types than float32 are converted to float (a float64 beyond float's range is refused as
// non-finite, like NaN). Fails with InvalidArgument for an id format (ivecs/ibin).
Result<VectorSet> ReadVectors(const std::filesystem::path& path, const ReadOptions& options = {});

// Rows exactly as stored, for files of narrow values: .npy '<f2' (float16), '|i1' (int8) or
// '|u1' (uint8), .bvecs and .u8bin (uint8). No conversion, no finiteness check (a float16
// file may hold infinities; whoever widens the rows checks them). `bytes` holds rows x dim
// values, row-major (texmex dimension prefixes dropped and checked). InvalidArgument for a
// file of float32 or float64 values (read those with ReadVectors), naming its type.
struct RawRows {
  ElementType element = ElementType::kUint8;
  size_t rows = 0;
  size_t dim = 0;
  std::vector<uint8_t> bytes;
  const uint8_t* row(size_t i) const { return bytes.data() + i * dim * ElementSize(element); }
};
Result<RawRows> ReadRawRows(const std::filesystem::path& path, const ReadOptions& options = {});

// Shape of a vector file without reading its payload: header and file size are validated
// like ReadVectors; per-record texmex dimensions and NaN/Inf are checked only when rows are
// read (checking them here would touch every page of the file).
struct DatasetShape {
  size_t rows = 0;
  size_t dim = 0;
  DatasetFormat format = DatasetFormat::kFbin;
  // The values' type on disk: "float32", "uint8", "float64", "float16" or "int8"; readers
  // return float32 rows whatever it is.
  std::string_view value_type = "float32";
};
Result<DatasetShape> ProbeVectors(const std::filesystem::path& path);
// The element type a file's rows can be sent as without widening (what ReadRawRows reads);
// nullopt for float32 and float64 files.
std::optional<ElementType> NarrowElementType(const DatasetShape& shape);

// k nearest ids per query, row-major; `distances` is empty when the file holds none (ivecs).
struct GroundTruth {
  size_t num_queries = 0;
  size_t k = 0;
  std::vector<int32_t> ids;        // num_queries * k
  std::vector<float> distances;    // num_queries * k, or empty

  const int32_t* row(size_t q) const { return ids.data() + q * k; }
};

// Reads .ivecs (all rows must share one k), big-ann gt .ibin (n, k, ids, distances),
// or an int32 .npy matrix.
Result<GroundTruth> ReadGroundTruth(const std::filesystem::path& path);

// Ids, one per row: an .npy of int64 ('<i8', none negative) or uint64 ('<u8'), shape (n,)
// or (n, 1). InvalidArgument for another dtype or shape, Corruption for a damaged file.
Result<std::vector<uint64_t>> ReadIdsNpy(const std::filesystem::path& path);

// Writes float vectors as .fvecs, .fbin or .npy (chosen by extension).
Status WriteVectors(const std::filesystem::path& path, const VectorSet& vectors);
// Writes uint8 vectors (n x dim, row-major) as .bvecs, .u8bin or .npy.
Status WriteU8Vectors(const std::filesystem::path& path, const uint8_t* data, size_t n, size_t dim);
// Writes ground truth as .ivecs (ids only), big-ann gt .ibin (ids and distances;
// distances must then be present), or an int32 .npy matrix (ids only).
Status WriteGroundTruth(const std::filesystem::path& path, const GroundTruth& gt);

}  // namespace strata::storage
