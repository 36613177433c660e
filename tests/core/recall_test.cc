#include "core/recall.h"

#include <gtest/gtest.h>

#include <vector>

namespace strata {
namespace {

TEST(Recall, CountsReturnedIdsAmongTheTrueK) {
  const std::vector<VectorId> ids = {1, 2, 3, 4};
  const std::vector<Neighbor> got = {{1, 0.1f}, {9, 0.5f}, {3, 0.3f}, {8, 0.6f}};
  EXPECT_DOUBLE_EQ(RecallAtK({.ids = ids, .kth_distance = 0.4}, got), 0.5);
}

TEST(Recall, AnEquidistantSubstituteAtTheKthDistanceIsAHit) {
  // Ids 3 and 7 are both at distance 0.4; ground truth chose 3, the search returned 7.
  const std::vector<VectorId> ids = {1, 2, 3};
  const std::vector<Neighbor> got = {{1, 0.1f}, {2, 0.2f}, {7, 0.4f}};
  EXPECT_DOUBLE_EQ(RecallAtK({.ids = ids, .kth_distance = 0.4}, got), 1.0);
}

TEST(Recall, EpsilonIsRelativeToTheKthDistance) {
  const std::vector<VectorId> ids = {1};
  const double kth = 1000.0;
  const float within = float(kth * (1 + kRecallTieEpsilon / 2));
  const float beyond = float(kth * (1 + kRecallTieEpsilon * 4));
  EXPECT_DOUBLE_EQ(RecallAtK({.ids = ids, .kth_distance = kth}, std::vector<Neighbor>{{5, within}}),
                   1.0);
  EXPECT_DOUBLE_EQ(RecallAtK({.ids = ids, .kth_distance = kth}, std::vector<Neighbor>{{5, beyond}}),
                   0.0);
  // Below magnitude 1 the slack is absolute: kRecallTieEpsilon.
  EXPECT_DOUBLE_EQ(RecallAtK({.ids = ids, .kth_distance = -0.5},
                             std::vector<Neighbor>{{5, float(-0.5 + kRecallTieEpsilon / 2)}}),
                   1.0);
  EXPECT_DOUBLE_EQ(RecallAtK({.ids = ids, .kth_distance = -0.5},
                             std::vector<Neighbor>{{5, float(-0.5 + kRecallTieEpsilon * 4)}}),
                   0.0);
}

TEST(Recall, WithoutTheKthDistanceOnlyIdsCount) {
  const std::vector<VectorId> ids = {1, 2, 3};
  const std::vector<Neighbor> got = {{1, 0.1f}, {2, 0.2f}, {7, 0.0f}};
  EXPECT_DOUBLE_EQ(RecallAtK({.ids = ids, .kth_distance = std::nullopt}, got), 2.0 / 3.0);
}

TEST(Recall, ATrueIdCountsWhateverDistanceItWasReportedWith) {
  const std::vector<VectorId> ids = {1, 2};
  const std::vector<Neighbor> got = {{1, 0.1f}, {2, 0.9f}};  // 2 reported a little far
  EXPECT_DOUBLE_EQ(RecallAtK({.ids = ids, .kth_distance = 0.2}, got), 1.0);
}

TEST(Recall, OnlyTheFirstKResultsAreLookedAt) {
  const std::vector<VectorId> ids = {1, 2};
  const std::vector<Neighbor> got = {{1, 0.1f}, {9, 0.9f}, {2, 0.2f}};
  EXPECT_DOUBLE_EQ(RecallAtK({.ids = ids, .kth_distance = 0.2}, got), 0.5);
}

TEST(Recall, RepeatedIdsAndPaddingDoNotCount) {
  const std::vector<VectorId> ids = {1, 2, 3};
  const std::vector<Neighbor> got = {{1, 0.1f}, {1, 0.1f}, {kInvalidVectorId, 0.0f}};
  EXPECT_DOUBLE_EQ(RecallAtK({.ids = ids, .kth_distance = 0.3}, got), 1.0 / 3.0);
}

TEST(Recall, ShortResultListsAreMarkedDownAndEmptyTruthIsOne) {
  const std::vector<VectorId> ids = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(
      RecallAtK({.ids = ids, .kth_distance = std::nullopt}, std::vector<Neighbor>{{1, 0.1f}}),
      0.25);
  EXPECT_DOUBLE_EQ(RecallAtK({.ids = {}, .kth_distance = 0.5}, std::vector<Neighbor>{{1, 0.1f}}),
                   1.0);
}

TEST(Recall, TruthFromFileRowOffsetsIdsStopsAtPaddingAndTakesTheLargestDistance) {
  const std::vector<int32_t> row = {4, 0, 2, -1};
  const std::vector<float> dist = {0.1f, 0.3f, 0.2f, 9.0f};
  std::vector<VectorId> buffer;
  const RecallTruth t = TruthFromFileRow(row, dist, 100, buffer);
  EXPECT_EQ(std::vector<VectorId>(t.ids.begin(), t.ids.end()),
            (std::vector<VectorId>{104, 100, 102}));
  ASSERT_TRUE(t.kth_distance.has_value());
  EXPECT_FLOAT_EQ(float(*t.kth_distance), 0.3f);
  const RecallTruth ids_only = TruthFromFileRow(row, {}, 0, buffer);
  EXPECT_EQ(ids_only.ids.size(), 3u);
  EXPECT_FALSE(ids_only.kth_distance.has_value());
}

}  // namespace
}  // namespace strata
