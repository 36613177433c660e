#include "core/status.h"

#include <gtest/gtest.h>

#include "core/metric.h"

namespace strata {
namespace {

Result<int> Half(int x) {
  if (x % 2) return Error(InvalidArgument("{} is odd", x));
  return x / 2;
}

Result<int> Quarter(int x) {
  STRATA_ASSIGN_OR_RETURN(int h, Half(x));
  STRATA_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckEven(int x) {
  STRATA_RETURN_IF_ERROR(Half(x));
  return Status::Ok();
}

TEST(Status, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(Status, FactoryFormatsMessageAndCode) {
  Status s = Corruption("{}: bad byte at offset {}", "x.fbin", 42);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_EQ(s.ToString(), "Corruption: x.fbin: bad byte at offset 42");
}

TEST(Status, WithContextPrependsAndKeepsCode) {
  Status s = NotFound("no such id").WithContext("collection 'a'");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "collection 'a': no such id");
  EXPECT_TRUE(Status::Ok().WithContext("x").ok());
}

TEST(Result, AssignOrReturnPropagatesFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  auto r = Quarter(6);  // 6 -> 3 -> odd
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(), "3 is odd");
}

TEST(Result, ReturnIfErrorWorksInStatusFunctions) {
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_EQ(CheckEven(5).code(), StatusCode::kInvalidArgument);
}

TEST(Metric, ParsesAliasesAndRejectsUnknown) {
  EXPECT_EQ(*ParseMetric("L2"), Metric::kL2);
  EXPECT_EQ(*ParseMetric("euclidean"), Metric::kL2);
  EXPECT_EQ(*ParseMetric("ip"), Metric::kInnerProduct);
  EXPECT_EQ(*ParseMetric("angular"), Metric::kCosine);
  auto bad = ParseMetric("manhattan");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("manhattan"), std::string::npos);
  for (Metric m : {Metric::kL2, Metric::kInnerProduct, Metric::kCosine}) {
    EXPECT_EQ(*ParseMetric(MetricName(m)), m);
  }
}

}  // namespace
}  // namespace strata
