#include "core/topk.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace strata {
namespace {

TEST(TopK, KeepsSmallestInOrder) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<std::pair<float, uint32_t>> all;
  TopK<uint32_t> top(10);
  for (uint32_t i = 0; i < 1000; ++i) {
    float d = u(rng);
    all.push_back({d, i});
    top.Push(d, i);
  }
  std::sort(all.begin(), all.end());
  auto got = top.TakeSorted();
  ASSERT_EQ(got.size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(got[i].id, all[i].second);
    EXPECT_EQ(got[i].distance, all[i].first);
  }
}

TEST(TopK, ThresholdIsInfiniteUntilFull) {
  TopK<uint32_t> top(2);
  EXPECT_TRUE(std::isinf(top.threshold()));
  top.Push(3, 1);
  EXPECT_TRUE(std::isinf(top.threshold()));
  top.Push(1, 2);
  EXPECT_EQ(top.threshold(), 3.0f);
  EXPECT_FALSE(top.Push(4, 3));
  EXPECT_TRUE(top.Push(2, 4));
  EXPECT_EQ(top.threshold(), 2.0f);
}

TEST(TopK, TiesBrokenBySmallerId) {
  TopK<uint32_t> top(2);
  top.Push(1, 9);
  top.Push(1, 5);
  top.Push(1, 7);
  auto got = top.TakeSorted();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].id, 5u);
  EXPECT_EQ(got[1].id, 7u);
}

TEST(TopK, ZeroKKeepsNothing) {
  TopK<uint32_t> top(0);
  EXPECT_FALSE(top.Push(1, 1));
  EXPECT_EQ(top.size(), 0u);
}

TEST(TopK, TakeSortedNeighborsNearestFirstWithIds) {
  TopK<VectorId> top(3);
  top.Push(0.5f, 40);
  top.Push(0.1f, 10);
  top.Push(0.9f, 90);
  top.Push(0.3f, 30);
  const std::vector<Neighbor> got = top.TakeSortedNeighbors();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], (Neighbor{10, 0.1f}));
  EXPECT_EQ(got[1], (Neighbor{30, 0.3f}));
  EXPECT_EQ(got[2], (Neighbor{40, 0.5f}));
  EXPECT_EQ(top.size(), 0u);
}

}  // namespace
}  // namespace strata
