#include "core/byte_size.h"

#include <gtest/gtest.h>

namespace strata {
namespace {

TEST(ByteSize, SuffixesArePowersOf1024InAnySpelling) {
  EXPECT_EQ(*ParseByteSize("1048576"), 1048576u);
  EXPECT_EQ(*ParseByteSize("0"), 0u);
  EXPECT_EQ(*ParseByteSize("512K"), 512u << 10);
  EXPECT_EQ(*ParseByteSize("64m"), 64u << 20);
  EXPECT_EQ(*ParseByteSize("2G"), uint64_t{2} << 30);
  EXPECT_EQ(*ParseByteSize("2GB"), uint64_t{2} << 30);
  EXPECT_EQ(*ParseByteSize("2GiB"), uint64_t{2} << 30);
  EXPECT_EQ(*ParseByteSize("1T"), uint64_t{1} << 40);
  EXPECT_EQ(*ParseByteSize("100B"), 100u);
}

TEST(ByteSize, RefusesWhatIsNotAByteCountNamingTheText) {
  for (const char* bad : {"", "G", "2X", "-1", "1.5G", "0.2", "20%", "99999999999999999999", "16777216T"}) {
    auto r = ParseByteSize(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.error().message().find(std::string("'") + bad + "'"), std::string::npos) << r.error().ToString();
  }
  EXPECT_NE(ParseByteSize("0.2").error().message().find("20%"), std::string::npos);
}

TEST(MemoryBudget, BytesOrAPercentageOfTheData) {
  auto b = ParseMemoryBudget("20%");
  ASSERT_TRUE(b.has_value());
  EXPECT_TRUE(b->is_share());
  EXPECT_DOUBLE_EQ(b->share, 0.2);
  EXPECT_EQ(b->BytesFor(1000), 200u);
  EXPECT_EQ(b->ToString(), "20%");
  auto g = ParseMemoryBudget("2G");
  ASSERT_TRUE(g.has_value());
  EXPECT_FALSE(g->is_share());
  EXPECT_EQ(g->BytesFor(1), uint64_t{2} << 30);
  EXPECT_EQ(g->ToString(), "2G");
  EXPECT_DOUBLE_EQ(ParseMemoryBudget("12.5%")->share, 0.125);
  for (const char* bad : {"0%", "101%", "%", "x%", "0.2", "2Q"}) {
    EXPECT_FALSE(ParseMemoryBudget(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace strata
