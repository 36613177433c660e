#include "core/vector_set.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

namespace strata {
namespace {

TEST(VectorSet, CreateIsZeroedAndAligned) {
  auto s = VectorSet::Create(5, 3);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->size(), 5u);
  EXPECT_EQ(s->dim(), 3u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(s->data()) % kVectorAlignment, 0u);
  for (size_t i = 0; i < 15; ++i) EXPECT_EQ(s->data()[i], 0.0f);
}

TEST(VectorSet, RejectsZeroDimAndOverflow) {
  EXPECT_EQ(VectorSet::Create(1, 0).error().code(), StatusCode::kInvalidArgument);
  auto huge = VectorSet::Create(std::numeric_limits<size_t>::max() / 2, 4);
  ASSERT_FALSE(huge.has_value());
  EXPECT_NE(huge.error().message().find("overflow"), std::string::npos);
}

TEST(VectorSet, AppendGrowsAndKeepsRows) {
  auto s = *VectorSet::Create(0, 2);
  for (int i = 0; i < 100; ++i) {
    float v[2] = {float(i), float(-i)};
    ASSERT_TRUE(s.Append(VectorView(v, 2)).ok());
  }
  EXPECT_EQ(s.size(), 100u);
  EXPECT_EQ(s[77][0], 77.0f);
  EXPECT_EQ(s[77][1], -77.0f);
  float wrong[3] = {1, 2, 3};
  EXPECT_EQ(s.Append(VectorView(wrong, 3)).code(), StatusCode::kInvalidArgument);
}

TEST(VectorSet, CloneIsDeepAndTruncateDropsTail) {
  auto s = *VectorSet::Create(3, 2);
  s.mutable_row(1)[0] = 5;
  auto c = *s.Clone();
  s.mutable_row(1)[0] = 6;
  EXPECT_EQ(c[1][0], 5.0f);
  c.Truncate(1);
  EXPECT_EQ(c.size(), 1u);
}

TEST(VectorSet, NormalizeRowsGivesUnitNormsAndLeavesZeroRows) {
  auto s = *VectorSet::Create(2, 2);
  s.mutable_row(0)[0] = 3;
  s.mutable_row(0)[1] = 4;
  s.NormalizeRows();
  EXPECT_FLOAT_EQ(s[0][0], 0.6f);
  EXPECT_FLOAT_EQ(s[0][1], 0.8f);
  EXPECT_EQ(s[1][0], 0.0f);
}

TEST(VectorSet, AllFiniteDetectsNanAndInf) {
  float ok[3] = {1, 2, 3};
  float nan[3] = {1, std::nanf(""), 3};
  float inf[3] = {1, 2, std::numeric_limits<float>::infinity()};
  EXPECT_TRUE(AllFinite(ok, 3));
  EXPECT_FALSE(AllFinite(nan, 3));
  EXPECT_FALSE(AllFinite(inf, 3));
}

}  // namespace
}  // namespace strata
