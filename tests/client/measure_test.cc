#include "client/measure.h"

#include <gtest/gtest.h>

#include <vector>

namespace strata::client {
namespace {

// Two queries, k = 3; result ids are base rows + 1000.
storage::GroundTruth Truth(bool with_distances) {
  storage::GroundTruth t;
  t.num_queries = 2;
  t.k = 3;
  t.ids = {5, 6, 7, 1, 2, 3};
  if (with_distances) t.distances = {0.1f, 0.2f, 0.3f, 1.0f, 2.0f, 3.0f};
  return t;
}

TEST(MeasureRecall, IdsOnlyCountsTheTrueRowsAfterTheOffset) {
  const storage::GroundTruth t = Truth(false);
  const std::vector<Neighbor> got = {{1001, 1.0f}, {1002, 2.0f}, {1009, 3.0f}};
  EXPECT_DOUBLE_EQ(RecallAtK(t, 1, got, 3, 1000), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(RecallAtK(t, 1, got, 3, 0), 0.0);  // offset not removed: no id matches
}

TEST(MeasureRecall, FileDistancesCreditATieAtTheKthDistanceOfThatQuery) {
  const storage::GroundTruth t = Truth(true);
  // 1009 is not a true id but lies at the k-th distance of query 1 (3.0), not of query 0 (0.3).
  const std::vector<Neighbor> got = {{1001, 1.0f}, {1002, 2.0f}, {1009, 3.0f}};
  EXPECT_DOUBLE_EQ(RecallAtK(t, 1, got, 3, 1000), 1.0);
  const std::vector<Neighbor> got0 = {{1005, 0.1f}, {1006, 0.2f}, {1009, 3.0f}};
  EXPECT_DOUBLE_EQ(RecallAtK(t, 0, got0, 3, 1000), 2.0 / 3.0);
}

TEST(MeasureRecall, KIsCappedAtTheGroundTruthsK) {
  const storage::GroundTruth t = Truth(true);
  // k = 2: the k-th distance is the second one (2.0), so a result at 3.0 is a miss.
  const std::vector<Neighbor> got = {{1001, 1.0f}, {1009, 3.0f}};
  EXPECT_DOUBLE_EQ(RecallAtK(t, 1, got, 2, 1000), 0.5);
  // k = 10 is capped at 3: the k-th distance is 3.0 again, and 2 of 3 are found.
  EXPECT_DOUBLE_EQ(RecallAtK(t, 1, got, 10, 1000), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(RecallAtK(t, 2, got, 3, 1000), 0.0);  // no such query
}

TEST(MeasureLatency, SummaryUsesNearestRank) {
  std::vector<double> ms;
  for (int i = 100; i >= 1; --i) ms.push_back(i);
  const LatencySummary s = SummarizeLatencies(ms);
  EXPECT_EQ(s.count, 100u);
  EXPECT_DOUBLE_EQ(s.mean_ms, 50.5);
  EXPECT_EQ(s.p50_ms, 50.0);
  EXPECT_EQ(s.p90_ms, 90.0);
  EXPECT_EQ(s.p99_ms, 99.0);
  EXPECT_EQ(s.p999_ms, 100.0);
  EXPECT_EQ(s.max_ms, 100.0);
}

}  // namespace
}  // namespace strata::client
