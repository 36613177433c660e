#include "core/stats.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace strata {
namespace {

std::vector<double> OneTo(size_t n) {
  std::vector<double> v(n);
  std::iota(v.begin(), v.end(), 1.0);
  return v;
}

TEST(Stats, NearestRankPicksAnObservedSample) {
  const std::vector<double> v = OneTo(100);  // 1..100
  const std::span<const double> s(v);
  EXPECT_EQ(PercentileOfSorted(s, 0.50), 50.0);
  EXPECT_EQ(PercentileOfSorted(s, 0.99), 99.0);
  EXPECT_EQ(PercentileOfSorted(s, 0.999), 100.0);
  EXPECT_EQ(PercentileOfSorted(s, 0.0), 1.0);
  EXPECT_EQ(PercentileOfSorted(s, 1.0), 100.0);
  // 0.07 x 100 is 7.000000000000001 in binary floating point; the rank is still 7.
  EXPECT_EQ(PercentileOfSorted(s, 0.07), 7.0);
}

TEST(Stats, FewSamplesGiveTheMaximumForHighPercentiles) {
  const std::vector<double> v = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_EQ(PercentileOfSorted(std::span<const double>(v), 0.99), 10.0);
  EXPECT_EQ(PercentileOfSorted(std::span<const double>(v), 0.5), 5.0);
  EXPECT_EQ(PercentileOfSorted(std::span<const double>(v), 0.91), 10.0);
  EXPECT_EQ(PercentileOfSorted(std::span<const double>(v), 0.9), 9.0);
}

TEST(Stats, PercentileSortsACopyAndWorksOnIntegers) {
  const std::vector<uint32_t> sizes = {9, 1, 5, 3, 7};
  EXPECT_EQ(Percentile(sizes, 0.5), 5u);
  EXPECT_EQ(Percentile(sizes, 0.2), 1u);
  EXPECT_EQ(sizes.front(), 9u);  // untouched
  EXPECT_EQ(Percentile(std::vector<double>{}, 0.5), 0.0);
}

TEST(Stats, SummarizeSortsAndReportsEveryField) {
  std::vector<double> v = OneTo(1000);
  std::reverse(v.begin(), v.end());
  const SampleSummary s = Summarize(v);
  EXPECT_EQ(s.count, 1000u);
  EXPECT_DOUBLE_EQ(s.mean, 500.5);
  EXPECT_EQ(s.min, 1.0);
  EXPECT_EQ(s.p50, 500.0);
  EXPECT_EQ(s.p90, 900.0);
  EXPECT_EQ(s.p95, 950.0);
  EXPECT_EQ(s.p99, 990.0);
  EXPECT_EQ(s.p999, 999.0);
  EXPECT_EQ(s.max, 1000.0);
  EXPECT_EQ(v.front(), 1.0);  // sorted in place
  std::vector<double> none;
  EXPECT_EQ(Summarize(none).count, 0u);
  EXPECT_EQ(Summarize(none).p99, 0.0);
}

}  // namespace
}  // namespace strata
