#include "storage/dataset_io.h"

#include <gtest/gtest.h>

#include <fmt/core.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "tests/storage/test_util.h"

namespace strata::storage {
namespace {

namespace fs = std::filesystem;
using testing::Bytes;
using testing::ReadRawFile;
using testing::TempDir;
using testing::WriteRawFile;

// Integer-valued floats so every format round-trips exactly.
VectorSet MakeVectors(size_t n, size_t dim) {
  auto v = VectorSet::Create(n, dim);
  EXPECT_TRUE(v.has_value());
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < dim; ++j) v->mutable_row(i)[j] = float(int(i * 31 + j * 7) % 251) - 3;
  }
  return std::move(*v);
}

std::vector<uint8_t> MakeBytes(size_t n, size_t dim) {
  std::vector<uint8_t> b(n * dim);
  for (size_t i = 0; i < b.size(); ++i) b[i] = uint8_t(i * 13 + 5);
  return b;
}

void ExpectSameVectors(const VectorSet& a, const VectorSet& b, size_t b_first_row = 0) {
  ASSERT_EQ(a.dim(), b.dim());
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < a.dim(); ++j) {
      ASSERT_EQ(a.row(i)[j], b.row(b_first_row + i)[j]) << "row " << i << " component " << j;
    }
  }
}

// Every malformed-input error must carry the code, name the file, and give a byte offset.
template <typename R>
void ExpectError(const R& result, StatusCode code, const fs::path& path,
                 std::string_view also = {}) {
  Status s;
  if constexpr (std::is_same_v<R, Status>) {
    s = result;
  } else {
    ASSERT_FALSE(result.has_value()) << "expected an error for " << path;
    s = result.error();
  }
  EXPECT_EQ(s.code(), code) << s.ToString();
  EXPECT_NE(s.message().find(path.filename().string()), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("offset"), std::string::npos) << s.ToString();
  if (!also.empty()) {
    EXPECT_NE(s.message().find(also), std::string::npos) << s.ToString();
  }
}

// An npy file with the given version and header dict text, padded as NumPy does.
std::string MakeNpy(int major, std::string dict, std::string_view payload) {
  const size_t preamble = major == 1 ? 10 : 12;
  size_t total = preamble + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict.push_back('\n');
  Bytes b;
  b.Raw(std::string_view("\x93NUMPY", 6)).U8(uint8_t(major)).U8(0);
  if (major == 1) {
    b.Put(uint16_t(dict.size()));
  } else {
    b.U32(uint32_t(dict.size()));
  }
  b.Raw(dict).Raw(payload);
  return b.str();
}

std::string FloatPayload(size_t n) {
  Bytes b;
  for (size_t i = 0; i < n; ++i) b.F32(float(i));
  return b.str();
}

// A well-formed fvecs file of n rows x dim.
std::string MakeFvecs(size_t n, size_t dim) {
  Bytes b;
  for (size_t i = 0; i < n; ++i) {
    b.I32(int32_t(dim));
    for (size_t j = 0; j < dim; ++j) b.F32(float(i + j));
  }
  return b.str();
}

class DatasetIoTest : public ::testing::Test {
 protected:
  TempDir dir_;
};

// ---------------------------------------------------------------------------------------------
// Formats and round trips

TEST_F(DatasetIoTest, FormatFromPath) {
  EXPECT_EQ(*FormatFromPath("a/b.fvecs"), DatasetFormat::kFvecs);
  EXPECT_EQ(*FormatFromPath("b.ivecs"), DatasetFormat::kIvecs);
  EXPECT_EQ(*FormatFromPath("b.bvecs"), DatasetFormat::kBvecs);
  EXPECT_EQ(*FormatFromPath("b.fbin"), DatasetFormat::kFbin);
  EXPECT_EQ(*FormatFromPath("b.u8bin"), DatasetFormat::kU8bin);
  EXPECT_EQ(*FormatFromPath("b.ibin"), DatasetFormat::kIbin);
  EXPECT_EQ(*FormatFromPath("B.NPY"), DatasetFormat::kNpy);
  for (const char* bad : {"x.txt", "x", "x.fvec", "fvecs"}) {
    auto f = FormatFromPath(bad);
    ASSERT_FALSE(f.has_value()) << bad;
    EXPECT_EQ(f.error().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(f.error().message().find(bad), std::string::npos);
  }
}

TEST_F(DatasetIoTest, FloatRoundTripEveryFormat) {
  const VectorSet v = MakeVectors(37, 13);
  for (const char* name : {"v.fvecs", "v.fbin", "v.npy"}) {
    SCOPED_TRACE(name);
    const fs::path path = dir_ / name;
    Status s = WriteVectors(path, v);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_FALSE(fs::exists(fs::path(path.string() + ".tmp")));
    auto read = ReadVectors(path);
    ASSERT_TRUE(read.has_value()) << read.error().ToString();
    ASSERT_EQ(read->size(), 37u);
    ExpectSameVectors(v, *read);
    auto shape = ProbeVectors(path);
    ASSERT_TRUE(shape.has_value()) << shape.error().ToString();
    EXPECT_EQ(shape->rows, 37u);
    EXPECT_EQ(shape->dim, 13u);
    EXPECT_EQ(shape->format, *FormatFromPath(path));
  }
}

TEST_F(DatasetIoTest, FileSizesMatchTheLayouts) {
  const VectorSet v = MakeVectors(5, 3);
  ASSERT_TRUE(WriteVectors(dir_ / "v.fvecs", v).ok());
  ASSERT_TRUE(WriteVectors(dir_ / "v.fbin", v).ok());
  ASSERT_TRUE(WriteVectors(dir_ / "v.npy", v).ok());
  EXPECT_EQ(fs::file_size(dir_ / "v.fvecs"), 5u * (4 + 3 * 4));
  EXPECT_EQ(fs::file_size(dir_ / "v.fbin"), 8u + 5 * 3 * 4);
  // NumPy aligns the data to 64 bytes; a 2-D header fits in the first 64 + 64.
  const std::string npy = ReadRawFile(dir_ / "v.npy");
  EXPECT_EQ((npy.size() - 5 * 3 * 4) % 64, 0u);
  EXPECT_EQ(npy.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_NE(npy.find("'descr': '<f4'"), std::string::npos);
  EXPECT_NE(npy.find("'shape': (5, 3)"), std::string::npos);
}

TEST_F(DatasetIoTest, U8RoundTripEveryFormat) {
  const size_t n = 21, dim = 9;
  const std::vector<uint8_t> data = MakeBytes(n, dim);
  for (const char* name : {"b.bvecs", "b.u8bin", "b.npy"}) {
    SCOPED_TRACE(name);
    const fs::path path = dir_ / name;
    Status s = WriteU8Vectors(path, data.data(), n, dim);
    ASSERT_TRUE(s.ok()) << s.ToString();
    auto read = ReadVectors(path);
    ASSERT_TRUE(read.has_value()) << read.error().ToString();
    ASSERT_EQ(read->size(), n);
    ASSERT_EQ(read->dim(), dim);
    for (size_t i = 0; i < n * dim; ++i) ASSERT_EQ(read->data()[i], float(data[i])) << i;
    auto shape = ProbeVectors(path);
    ASSERT_TRUE(shape.has_value());
    EXPECT_EQ(shape->rows, n);
    EXPECT_EQ(shape->dim, dim);
  }
}

GroundTruth MakeGroundTruth(size_t nq, size_t k, bool with_distances) {
  GroundTruth gt;
  gt.num_queries = nq;
  gt.k = k;
  for (size_t i = 0; i < nq * k; ++i) {
    gt.ids.push_back(int32_t(i * 17 % 1000));
    if (with_distances) gt.distances.push_back(float(i) * 0.5f);
  }
  return gt;
}

TEST_F(DatasetIoTest, GroundTruthIvecsRoundTrip) {
  const GroundTruth gt = MakeGroundTruth(11, 10, /*with_distances=*/true);
  const fs::path path = dir_ / "gt.ivecs";
  ASSERT_TRUE(WriteGroundTruth(path, gt).ok());
  auto read = ReadGroundTruth(path);
  ASSERT_TRUE(read.has_value()) << read.error().ToString();
  EXPECT_EQ(read->num_queries, 11u);
  EXPECT_EQ(read->k, 10u);
  EXPECT_EQ(read->ids, gt.ids);
  EXPECT_TRUE(read->distances.empty());  // ivecs holds ids only
  EXPECT_EQ(read->row(3)[2], gt.ids[32]);
}

TEST_F(DatasetIoTest, GroundTruthIbinRoundTrip) {
  const GroundTruth gt = MakeGroundTruth(7, 5, /*with_distances=*/true);
  const fs::path path = dir_ / "gt.ibin";
  ASSERT_TRUE(WriteGroundTruth(path, gt).ok());
  EXPECT_EQ(fs::file_size(path), 8u + 7 * 5 * 8);
  auto read = ReadGroundTruth(path);
  ASSERT_TRUE(read.has_value()) << read.error().ToString();
  EXPECT_EQ(read->num_queries, 7u);
  EXPECT_EQ(read->k, 5u);
  EXPECT_EQ(read->ids, gt.ids);
  EXPECT_EQ(read->distances, gt.distances);
}

TEST_F(DatasetIoTest, GroundTruthNpyRoundTrip) {
  const GroundTruth gt = MakeGroundTruth(4, 6, /*with_distances=*/false);
  const fs::path path = dir_ / "gt.npy";
  ASSERT_TRUE(WriteGroundTruth(path, gt).ok());
  auto read = ReadGroundTruth(path);
  ASSERT_TRUE(read.has_value()) << read.error().ToString();
  EXPECT_EQ(read->num_queries, 4u);
  EXPECT_EQ(read->k, 6u);
  EXPECT_EQ(read->ids, gt.ids);
  EXPECT_TRUE(read->distances.empty());
}

TEST_F(DatasetIoTest, PlainIbinIdMatrixHasNoDistances) {
  Bytes b;
  b.U32(3).U32(2);
  for (int32_t i = 0; i < 6; ++i) b.I32(i * 10);
  const fs::path path = dir_ / "ids.ibin";
  WriteRawFile(path, b.str());
  auto read = ReadGroundTruth(path);
  ASSERT_TRUE(read.has_value()) << read.error().ToString();
  EXPECT_EQ(read->num_queries, 3u);
  EXPECT_EQ(read->k, 2u);
  EXPECT_EQ(read->ids, (std::vector<int32_t>{0, 10, 20, 30, 40, 50}));
  EXPECT_TRUE(read->distances.empty());
}

TEST_F(DatasetIoTest, WriteIbinGroundTruthNeedsDistances) {
  const GroundTruth gt = MakeGroundTruth(3, 2, /*with_distances=*/false);
  const fs::path path = dir_ / "gt.ibin";
  EXPECT_EQ(WriteGroundTruth(path, gt).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(DatasetIoTest, WriteGroundTruthChecksSizes) {
  GroundTruth gt = MakeGroundTruth(3, 2, /*with_distances=*/true);
  gt.ids.pop_back();
  EXPECT_EQ(WriteGroundTruth(dir_ / "gt.ivecs", gt).code(), StatusCode::kInvalidArgument);
  gt = MakeGroundTruth(3, 2, /*with_distances=*/true);
  gt.distances.pop_back();
  EXPECT_EQ(WriteGroundTruth(dir_ / "gt.ibin", gt).code(), StatusCode::kInvalidArgument);
}

TEST_F(DatasetIoTest, WritersRejectWrongExtensions) {
  const VectorSet v = MakeVectors(2, 2);
  EXPECT_EQ(WriteVectors(dir_ / "v.ivecs", v).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteVectors(dir_ / "v.bvecs", v).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteVectors(dir_ / "v.txt", v).code(), StatusCode::kInvalidArgument);
  const uint8_t bytes[4] = {1, 2, 3, 4};
  EXPECT_EQ(WriteU8Vectors(dir_ / "b.fvecs", bytes, 2, 2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteGroundTruth(dir_ / "g.fbin", MakeGroundTruth(1, 1, true)).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(fs::is_empty(dir_.path()));
}

TEST_F(DatasetIoTest, EmptyMatrixRoundTripsInBinAndNpy) {
  auto empty = VectorSet::Create(0, 8);
  ASSERT_TRUE(empty.has_value());
  for (const char* name : {"e.fbin", "e.npy"}) {
    const fs::path path = dir_ / name;
    ASSERT_TRUE(WriteVectors(path, *empty).ok()) << name;
    auto read = ReadVectors(path);
    ASSERT_TRUE(read.has_value()) << read.error().ToString();
    EXPECT_EQ(read->size(), 0u);
    EXPECT_EQ(read->dim(), 8u);
  }
  // texmex stores the dimension per row, so it cannot represent an empty set.
  EXPECT_EQ(WriteVectors(dir_ / "e.fvecs", *empty).code(), StatusCode::kInvalidArgument);
}

TEST_F(DatasetIoTest, ReadVectorsRejectsIdFormats) {
  ASSERT_TRUE(WriteGroundTruth(dir_ / "gt.ivecs", MakeGroundTruth(2, 2, false)).ok());
  ASSERT_TRUE(WriteGroundTruth(dir_ / "gt.ibin", MakeGroundTruth(2, 2, true)).ok());
  ASSERT_TRUE(WriteGroundTruth(dir_ / "gt.npy", MakeGroundTruth(2, 2, false)).ok());
  for (const char* name : {"gt.ivecs", "gt.ibin", "gt.npy"}) {
    auto r = ReadVectors(dir_ / name);
    ASSERT_FALSE(r.has_value()) << name;
    EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument) << r.error().ToString();
  }
  ASSERT_TRUE(WriteVectors(dir_ / "v.fbin", MakeVectors(2, 2)).ok());
  auto gt = ReadGroundTruth(dir_ / "v.fbin");
  ASSERT_FALSE(gt.has_value());
  EXPECT_EQ(gt.error().code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(WriteVectors(dir_ / "v.npy", MakeVectors(2, 2)).ok());
  gt = ReadGroundTruth(dir_ / "v.npy");
  ASSERT_FALSE(gt.has_value());
  EXPECT_EQ(gt.error().code(), StatusCode::kInvalidArgument);
}

TEST_F(DatasetIoTest, MissingFileIsNotFound) {
  auto r = ReadVectors(dir_ / "nope.fbin");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kNotFound);
  EXPECT_NE(r.error().message().find("nope.fbin"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// ReadOptions slicing

TEST_F(DatasetIoTest, SlicingEveryFormat) {
  const VectorSet v = MakeVectors(50, 6);
  std::vector<uint8_t> bytes = MakeBytes(50, 6);
  ASSERT_TRUE(WriteVectors(dir_ / "v.fvecs", v).ok());
  ASSERT_TRUE(WriteVectors(dir_ / "v.fbin", v).ok());
  ASSERT_TRUE(WriteVectors(dir_ / "v.npy", v).ok());
  ASSERT_TRUE(WriteU8Vectors(dir_ / "b.bvecs", bytes.data(), 50, 6).ok());
  for (const char* name : {"v.fvecs", "v.fbin", "v.npy", "b.bvecs"}) {
    SCOPED_TRACE(name);
    const fs::path path = dir_ / name;
    auto all = ReadVectors(path);
    ASSERT_TRUE(all.has_value());

    auto middle = ReadVectors(path, {.first_row = 10, .max_rows = 15});
    ASSERT_TRUE(middle.has_value()) << middle.error().ToString();
    EXPECT_EQ(middle->size(), 15u);
    ExpectSameVectors(*middle, *all, 10);

    auto tail = ReadVectors(path, {.first_row = 45, .max_rows = 100});  // clamped
    ASSERT_TRUE(tail.has_value());
    EXPECT_EQ(tail->size(), 5u);
    ExpectSameVectors(*tail, *all, 45);

    auto at_end = ReadVectors(path, {.first_row = 50});
    ASSERT_TRUE(at_end.has_value());
    EXPECT_EQ(at_end->size(), 0u);
    EXPECT_EQ(at_end->dim(), 6u);

    auto past_end = ReadVectors(path, {.first_row = 51});
    ASSERT_FALSE(past_end.has_value());
    EXPECT_EQ(past_end.error().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(past_end.error().message().find(name), std::string::npos);
  }
}

// ---------------------------------------------------------------------------------------------
// npy header parsing

TEST_F(DatasetIoTest, NpyVersions1To3) {
  for (int major : {1, 2, 3}) {
    SCOPED_TRACE(major);
    const fs::path path = dir_ / fmt::format("v{}.npy", major);
    WriteRawFile(path, MakeNpy(major, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
                               FloatPayload(6)));
    auto r = ReadVectors(path);
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    ASSERT_EQ(r->size(), 3u);
    ASSERT_EQ(r->dim(), 2u);
    EXPECT_EQ(r->row(2)[1], 5.0f);
  }
}

TEST_F(DatasetIoTest, NpyHeaderVariants) {
  // Key order, double quotes, no trailing comma, Python 2 long suffixes.
  const fs::path path = dir_ / "variant.npy";
  WriteRawFile(path,
               MakeNpy(1, "{\"shape\": (2L, 3L), \"fortran_order\": False, \"descr\": \"<f4\"}",
                       FloatPayload(6)));
  auto r = ReadVectors(path);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->size(), 2u);
  EXPECT_EQ(r->dim(), 3u);
}

TEST_F(DatasetIoTest, NpyUnsupportedDtype) {
  const fs::path path = dir_ / "c8.npy";
  WriteRawFile(path, MakeNpy(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2, 2), }",
                             std::string(32, '\0')));
  ExpectError(ReadVectors(path), StatusCode::kInvalidArgument, path, "<c8");
  ExpectError(ProbeVectors(path), StatusCode::kInvalidArgument, path, "<c8");
}

// float64, float16 and int8 (and uint8) matrices are read as float32, and the probe says
// which type the file held (issue 13).
TEST_F(DatasetIoTest, NpyConvertsFloat64Float16AndInt8) {
  const std::vector<float> expect = {0.5f, -2.0f, 65504.0f, 1.0f / 1024, 0.0f, -0.25f};
  Bytes f8, f2, i1;
  for (float v : expect) f8.Put(double(v));
  // The same values as IEEE binary16 bit patterns.
  for (uint16_t h : {uint16_t{0x3800}, uint16_t{0xc000}, uint16_t{0x7bff}, uint16_t{0x1400},
                     uint16_t{0x0000}, uint16_t{0xb400}}) {
    f2.Put(h);
  }
  for (int8_t v : {int8_t{1}, int8_t{-128}, int8_t{127}, int8_t{0}, int8_t{-3}, int8_t{42}}) i1.Put(v);
  struct Case {
    const char* descr;
    std::string payload;
    std::vector<float> values;
  };
  const std::vector<Case> cases = {
      {"<f8", f8.str(), expect},
      {"<f2", f2.str(), expect},
      {"|i1", i1.str(), {1, -128, 127, 0, -3, 42}},
  };
  for (const Case& c : cases) {
    const fs::path path = dir_ / fmt::format("m{}.npy", c.descr + 1);
    WriteRawFile(path, MakeNpy(1, fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': (2, 3), }}",
                                              c.descr),
                               c.payload));
    auto v = ReadVectors(path);
    ASSERT_TRUE(v.has_value()) << c.descr << ": " << v.error().ToString();
    ASSERT_EQ(v->size(), 2u);
    ASSERT_EQ(v->dim(), 3u);
    for (size_t i = 0; i < 6; ++i) EXPECT_EQ(v->row(i / 3)[i % 3], c.values[i]) << c.descr << " value " << i;
    auto shape = ProbeVectors(path);
    ASSERT_TRUE(shape.has_value());
    EXPECT_EQ(shape->value_type, c.descr[1] == 'f' ? (c.descr[2] == '8' ? "float64" : "float16") : "int8");
  }
  // A half subnormal (the smallest, 2^-24) and a float64 beyond float's range.
  const fs::path sub = dir_ / "sub.npy";
  WriteRawFile(sub, MakeNpy(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (1, 1), }",
                            Bytes().Put(uint16_t{0x0001}).str()));
  auto s = ReadVectors(sub);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->row(0)[0], std::ldexp(1.0f, -24));
  const fs::path big = dir_ / "big.npy";
  WriteRawFile(big, MakeNpy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }",
                            Bytes().Put(1.0).Put(1e300).str()));
  ExpectError(ReadVectors(big), StatusCode::kCorruption, big, "non-finite");
}

TEST_F(DatasetIoTest, NpyStructuredDtype) {
  const fs::path path = dir_ / "rec.npy";
  WriteRawFile(path, MakeNpy(1,
                             "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, "
                             "'shape': (1, 1), }",
                             std::string(8, '\0')));
  ExpectError(ReadVectors(path), StatusCode::kInvalidArgument, path);
}

TEST_F(DatasetIoTest, NpyFortranOrder) {
  const fs::path path = dir_ / "fortran.npy";
  WriteRawFile(path, MakeNpy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }",
                             FloatPayload(6)));
  ExpectError(ReadVectors(path), StatusCode::kInvalidArgument, path, "Fortran");
}

TEST_F(DatasetIoTest, NpyBadMagic) {
  const fs::path path = dir_ / "magic.npy";
  std::string bytes =
      MakeNpy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", FloatPayload(6));
  bytes[1] = 'X';
  WriteRawFile(path, bytes);
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path, "magic");
}

TEST_F(DatasetIoTest, NpyUnsupportedVersion) {
  const fs::path path = dir_ / "v9.npy";
  std::string bytes =
      MakeNpy(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", FloatPayload(6));
  bytes[6] = 9;
  WriteRawFile(path, bytes);
  ExpectError(ReadVectors(path), StatusCode::kInvalidArgument, path, "version 9.0");
}

TEST_F(DatasetIoTest, NpyHeaderLengthPastEnd) {
  const fs::path path = dir_ / "hdr.npy";
  Bytes b;
  b.Raw(std::string_view("\x93NUMPY\x01\x00", 8)).Put(uint16_t(5000)).Raw("{'descr': '<f4'");
  WriteRawFile(path, b.str());
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path, "5000");
}

TEST_F(DatasetIoTest, NpyMalformedHeaderText) {
  const char* bad_dicts[] = {
      "not a dict",
      "{'descr': '<f4', 'fortran_order': False}",                      // no shape
      "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (3, 2), }",   // bad bool
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3, -2), }",  // negative
      "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 2), }",
      "{'descr': '<f4, 'fortran_order': False, 'shape': (3, 2), }",         // quote
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), 'x': 1}",  // extra key
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2) }junk",
  };
  int i = 0;
  for (const char* dict : bad_dicts) {
    SCOPED_TRACE(dict);
    const fs::path path = dir_ / ("bad" + std::to_string(i++) + ".npy");
    WriteRawFile(path, MakeNpy(1, dict, FloatPayload(6)));
    ExpectError(ReadVectors(path), StatusCode::kCorruption, path);
  }
}

TEST_F(DatasetIoTest, NpyShapeMustBe2D) {
  const fs::path path = dir_ / "1d.npy";
  WriteRawFile(path, MakeNpy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }",
                             FloatPayload(6)));
  ExpectError(ReadVectors(path), StatusCode::kInvalidArgument, path);
}

TEST_F(DatasetIoTest, NpyZeroDim) {
  const fs::path path = dir_ / "zero.npy";
  WriteRawFile(path, MakeNpy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6, 0), }", ""));
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path);
}

TEST_F(DatasetIoTest, NpyDataTruncated) {
  const fs::path path = dir_ / "short.npy";
  WriteRawFile(path, MakeNpy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
                             FloatPayload(5)));
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path);
}

TEST_F(DatasetIoTest, NpyShapeOverflow) {
  const fs::path path = dir_ / "huge.npy";
  WriteRawFile(path, MakeNpy(1,
                             "{'descr': '<f4', 'fortran_order': False, "
                             "'shape': (4611686018427387904, 4611686018427387904), }",
                             FloatPayload(6)));
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path, "overflow");
}

// ---------------------------------------------------------------------------------------------
// texmex malformed inputs

TEST_F(DatasetIoTest, FvecsTruncatedRecord) {
  const fs::path path = dir_ / "trunc.fvecs";
  std::string bytes = MakeFvecs(5, 4);  // 20 bytes per record
  bytes.resize(bytes.size() - 6);
  WriteRawFile(path, bytes);
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path, "record 4 at byte offset 80");
  ExpectError(ProbeVectors(path), StatusCode::kCorruption, path, "truncated");
}

TEST_F(DatasetIoTest, FvecsTruncatedInsideDimension) {
  const fs::path path = dir_ / "trunc2.fvecs";
  std::string bytes = MakeFvecs(3, 4);
  bytes.resize(bytes.size() + 2, '\0');
  WriteRawFile(path, bytes);
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path, "record 3 at byte offset 60");
}

TEST_F(DatasetIoTest, FvecsDifferingDimension) {
  // The example from the issue: 100-d records, record 7 claims 99 dims.
  Bytes b;
  for (int i = 0; i < 10; ++i) {
    const int dim = i == 7 ? 99 : 100;
    b.I32(dim);
    for (int j = 0; j < dim; ++j) b.F32(1.0f);
  }
  const fs::path path = dir_ / "x.fvecs";
  WriteRawFile(path, b.str());
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path,
              "record 7 at byte offset 2828 has dimension 99, expected 100");
}

TEST_F(DatasetIoTest, FvecsDifferingDimensionWithConsistentSize) {
  // The file size is a whole number of records, so only the per-record check can catch it.
  std::string bytes = MakeFvecs(4, 3);  // 16 bytes per record
  Bytes bad;
  bad.I32(5);
  bytes.replace(2 * 16, 4, bad.str());
  const fs::path path = dir_ / "y.fvecs";
  WriteRawFile(path, bytes);
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path,
              "record 2 at byte offset 32 has dimension 5, expected 3");
  // Rows before the bad record can still be read.
  auto head = ReadVectors(path, {.first_row = 0, .max_rows = 2});
  ASSERT_TRUE(head.has_value()) << head.error().ToString();
}

TEST_F(DatasetIoTest, IvecsDifferingDimension) {
  Bytes b;
  b.I32(2).I32(1).I32(2);
  b.I32(3).I32(1).I32(2).I32(3);
  b.I32(2).I32(1).I32(2);
  const fs::path path = dir_ / "gt.ivecs";
  WriteRawFile(path, b.str());
  ExpectError(ReadGroundTruth(path), StatusCode::kCorruption, path,
              "record 1 at byte offset 12 has dimension 3, expected 2");
}

TEST_F(DatasetIoTest, IvecsDifferingDimensionWithConsistentSize) {
  Bytes b;
  b.I32(2).I32(1).I32(2);
  b.I32(7).I32(1).I32(2);
  const fs::path path = dir_ / "gt2.ivecs";
  WriteRawFile(path, b.str());
  ExpectError(ReadGroundTruth(path), StatusCode::kCorruption, path, "record 1 at byte offset 12");
}

TEST_F(DatasetIoTest, FvecsZeroAndNegativeDimension) {
  for (int32_t dim : {0, -4}) {
    SCOPED_TRACE(dim);
    Bytes b;
    b.I32(dim).F32(1).F32(2).F32(3);
    const fs::path path = dir_ / fmt::format("d{}.fvecs", dim + 10);
    WriteRawFile(path, b.str());
    ExpectError(ReadVectors(path), StatusCode::kCorruption, path,
                "dimension " + std::to_string(dim));
  }
}

TEST_F(DatasetIoTest, BvecsHugeDimensionDoesNotAllocate) {
  Bytes b;
  b.I32(std::numeric_limits<int32_t>::max()).U8(1).U8(2);
  const fs::path path = dir_ / "huge.bvecs";
  WriteRawFile(path, b.str());
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path, "truncated");
}

// ---------------------------------------------------------------------------------------------
// big-ann malformed inputs

TEST_F(DatasetIoTest, FbinHeaderClaimsMoreThanFile) {
  Bytes b;
  b.U32(1000).U32(16);
  for (int i = 0; i < 16 * 10; ++i) b.F32(1.0f);
  const fs::path path = dir_ / "short.fbin";
  WriteRawFile(path, b.str());
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path, "1000 rows x 16 dim");
  ExpectError(ProbeVectors(path), StatusCode::kCorruption, path);
}

TEST_F(DatasetIoTest, FbinSizeOverflow) {
  Bytes b;
  b.U32(0xFFFFFFFFu).U32(0xFFFFFFFFu).F32(1.0f);
  const fs::path path = dir_ / "overflow.fbin";
  WriteRawFile(path, b.str());
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path, "overflow");
}

TEST_F(DatasetIoTest, FbinLargeClaimDoesNotAllocate) {
  // 2^31 x 2^20 floats (8 PiB) fits size_t but not the file; must fail before allocating.
  Bytes b;
  b.U32(1u << 31).U32(1u << 20);
  const fs::path path = dir_ / "big.u8bin";
  WriteRawFile(path, b.str());
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path);
}

TEST_F(DatasetIoTest, FbinZeroDim) {
  Bytes b;
  b.U32(3).U32(0);
  const fs::path path = dir_ / "zero.fbin";
  WriteRawFile(path, b.str());
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path);
}

TEST_F(DatasetIoTest, FbinTrailingBytes) {
  Bytes b;
  b.U32(1).U32(2).F32(1).F32(2).U8(0);
  const fs::path path = dir_ / "trailing.fbin";
  WriteRawFile(path, b.str());
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path, "trailing");
}

TEST_F(DatasetIoTest, FbinTruncatedHeader) {
  const fs::path path = dir_ / "hdr.fbin";
  WriteRawFile(path, std::string(5, '\1'));
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path);
}

TEST_F(DatasetIoTest, GroundTruthIbinWrongSize) {
  Bytes b;
  b.U32(4).U32(3);
  for (int i = 0; i < 4 * 3 + 5; ++i) b.I32(i);  // neither ids-only nor ids + distances
  const fs::path path = dir_ / "gt.ibin";
  WriteRawFile(path, b.str());
  // Names both acceptable sizes and the actual one.
  ExpectError(ReadGroundTruth(path), StatusCode::kCorruption, path, "104 bytes");
  ExpectError(ReadGroundTruth(path), StatusCode::kCorruption, path, "56 bytes");
  ExpectError(ReadGroundTruth(path), StatusCode::kCorruption, path, "76");
}

TEST_F(DatasetIoTest, GroundTruthIbinHugeHeader) {
  Bytes b;
  b.U32(0xFFFFFFFFu).U32(0x7FFFFFFFu).I32(1);
  const fs::path path = dir_ / "gt_huge.ibin";
  WriteRawFile(path, b.str());
  ExpectError(ReadGroundTruth(path), StatusCode::kCorruption, path);
}

// ---------------------------------------------------------------------------------------------
// Empty files, non-finite values

TEST_F(DatasetIoTest, EmptyFileEveryFormat) {
  for (const char* name : {"e.fvecs", "e.bvecs", "e.fbin", "e.u8bin", "e.npy"}) {
    SCOPED_TRACE(name);
    const fs::path path = dir_ / name;
    WriteRawFile(path, "");
    ExpectError(ReadVectors(path), StatusCode::kCorruption, path, "empty");
    ExpectError(ProbeVectors(path), StatusCode::kCorruption, path, "empty");
  }
  for (const char* name : {"e.ivecs", "e.ibin", "e2.npy"}) {
    SCOPED_TRACE(name);
    const fs::path path = dir_ / name;
    WriteRawFile(path, "");
    ExpectError(ReadGroundTruth(path), StatusCode::kCorruption, path, "empty");
  }
}

TEST_F(DatasetIoTest, NanInFbin) {
  Bytes b;
  b.U32(3).U32(4);
  for (int i = 0; i < 12; ++i) b.F32(i == 9 ? std::numeric_limits<float>::quiet_NaN() : 1.0f);
  const fs::path path = dir_ / "nan.fbin";
  WriteRawFile(path, b.str());
  // Row 2, component 1: 8 + 9 * 4 = 44.
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path, "row 2 at byte offset 44");
  // Rows before it are fine.
  EXPECT_TRUE(ReadVectors(path, {.first_row = 0, .max_rows = 2}).has_value());
}

TEST_F(DatasetIoTest, InfinityInFvecs) {
  std::string bytes = MakeFvecs(4, 3);  // 16 bytes per record
  Bytes inf;
  inf.F32(-std::numeric_limits<float>::infinity());
  bytes.replace(3 * 16 + 4 + 2 * 4, 4, inf.str());
  const fs::path path = dir_ / "inf.fvecs";
  WriteRawFile(path, bytes);
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path, "row 3 at byte offset 60");
}

TEST_F(DatasetIoTest, NanInNpy) {
  Bytes payload;
  for (int i = 0; i < 6; ++i) payload.F32(i == 0 ? std::nanf("") : 0.0f);
  const fs::path path = dir_ / "nan.npy";
  WriteRawFile(path, MakeNpy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
                             payload.str()));
  // 10-byte preamble + 60-byte dict + '\n' is padded to 128, where the data starts.
  ExpectError(ReadVectors(path), StatusCode::kCorruption, path, "row 0 at byte offset 128");
}

// Ids (strata-cli upsert --ids): int64 or uint64, (n,) or (n, 1); negative ids, other dtypes
// and shapes, and a short payload are refused naming the file.
TEST_F(DatasetIoTest, IdsNpy) {
  Bytes ids;
  for (uint64_t v : {7ull, 0ull, 1ull << 40}) ids.Put(v);
  const fs::path a = dir_ / "ids.npy";
  WriteRawFile(a, MakeNpy(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", ids.str()));
  auto read = ReadIdsNpy(a);
  ASSERT_TRUE(read.has_value()) << read.error().ToString();
  EXPECT_EQ(*read, (std::vector<uint64_t>{7, 0, 1ull << 40}));
  const fs::path b = dir_ / "col.npy";
  WriteRawFile(b, MakeNpy(1, "{'descr': '<u8', 'fortran_order': False, 'shape': (3, 1), }", ids.str()));
  ASSERT_TRUE(ReadIdsNpy(b).has_value());
  Bytes neg;
  neg.Put(uint64_t{1}).Put(int64_t{-2});
  const fs::path c = dir_ / "neg.npy";
  WriteRawFile(c, MakeNpy(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", neg.str()));
  auto bad = ReadIdsNpy(c);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("row 1"), std::string::npos) << bad.error().ToString();
  const fs::path d = dir_ / "f4.npy";
  WriteRawFile(d, MakeNpy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", FloatPayload(2)));
  EXPECT_EQ(ReadIdsNpy(d).error().code(), StatusCode::kInvalidArgument);
  const fs::path e = dir_ / "wide.npy";
  WriteRawFile(e, MakeNpy(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 3), }", ids.str()));
  EXPECT_EQ(ReadIdsNpy(e).error().code(), StatusCode::kInvalidArgument);
  const fs::path f = dir_ / "short.npy";
  WriteRawFile(f, MakeNpy(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }", ids.str()));
  auto cut = ReadIdsNpy(f);
  ASSERT_FALSE(cut.has_value());
  EXPECT_EQ(cut.error().code(), StatusCode::kCorruption);
  EXPECT_NE(cut.error().message().find("short.npy"), std::string::npos);
}

// Every prefix of a valid file is either read correctly (a whole number of records) or
// rejected with a Status; under ASan this also proves no read runs past the end.
TEST_F(DatasetIoTest, EveryTruncationIsHandled) {
  const VectorSet v = MakeVectors(3, 5);
  const std::vector<uint8_t> bytes = MakeBytes(3, 5);
  ASSERT_TRUE(WriteVectors(dir_ / "full.fvecs", v).ok());
  ASSERT_TRUE(WriteVectors(dir_ / "full.fbin", v).ok());
  ASSERT_TRUE(WriteVectors(dir_ / "full.npy", v).ok());
  ASSERT_TRUE(WriteU8Vectors(dir_ / "full.bvecs", bytes.data(), 3, 5).ok());
  ASSERT_TRUE(WriteGroundTruth(dir_ / "full.ibin", MakeGroundTruth(3, 5, true)).ok());
  for (const char* name : {"full.fvecs", "full.fbin", "full.npy", "full.bvecs", "full.ibin"}) {
    const std::string full = ReadRawFile(dir_ / name);
    const std::string ext = fs::path(name).extension().string();
    for (size_t len = 0; len < full.size(); ++len) {
      const fs::path path = dir_ / ("cut" + ext);
      WriteRawFile(path, std::string_view(full).substr(0, len));
      if (ext == ".ibin") {
        auto r = ReadGroundTruth(path);
        if (!r) {
          EXPECT_EQ(r.error().code(), StatusCode::kCorruption) << r.error().ToString();
        }
      } else {
        auto r = ReadVectors(path);
        if (r) {
          EXPECT_LT(r->size(), 3u) << name << " len " << len;
        } else {
          EXPECT_EQ(r.error().code(), StatusCode::kCorruption) << r.error().ToString();
        }
      }
    }
  }
}

// Flipping any single byte of a small file never crashes the readers.
TEST_F(DatasetIoTest, ByteFlipsNeverCrash) {
  const VectorSet v = MakeVectors(2, 3);
  ASSERT_TRUE(WriteVectors(dir_ / "src.fvecs", v).ok());
  ASSERT_TRUE(WriteVectors(dir_ / "src.fbin", v).ok());
  ASSERT_TRUE(WriteVectors(dir_ / "src.npy", v).ok());
  for (const char* name : {"src.fvecs", "src.fbin", "src.npy"}) {
    const std::string full = ReadRawFile(dir_ / name);
    const std::string ext = fs::path(name).extension().string();
    for (size_t i = 0; i < full.size(); ++i) {
      for (unsigned char x : {0x01, 0x80, 0xFF}) {
        std::string bytes = full;
        bytes[i] = char(bytes[i] ^ x);
        const fs::path path = dir_ / ("flip" + ext);
        WriteRawFile(path, bytes);
        auto r = ReadVectors(path);
        if (r) {
          EXPECT_LE(r->size() * r->dim(), 6u);
        }
        (void)ProbeVectors(path);
        (void)ReadGroundTruth(path);
      }
    }
  }
}

}  // namespace
}  // namespace strata::storage
