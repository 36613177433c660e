#include "tools/eval.h"

#include <gtest/gtest.h>

namespace strata::tools {
namespace {

// Base on a line: x = 0, 1, 2, 3, 3(dup), 10. Query at 0.
struct Fixture {
  VectorSet base = *VectorSet::Create(6, 1);
  VectorSet queries = *VectorSet::Create(1, 1);
  storage::GroundTruth gt;
  Fixture() {
    float xs[6] = {0, 1, 2, 3, 3, 10};
    for (int i = 0; i < 6; ++i) base.mutable_row(i)[0] = xs[i];
    gt.num_queries = 1;
    gt.k = 4;
    gt.ids = {0, 1, 2, 3};  // row 4 ties with row 3
  }
};

TEST(RecallEvaluator, ExactMatchIsOne) {
  Fixture f;
  auto ev = *RecallEvaluator::Create(f.base, f.queries, f.gt, Metric::kL2, 4);
  std::vector<Neighbor> r = {{0, 0}, {1, 1}, {2, 4}, {3, 9}};
  EXPECT_DOUBLE_EQ(ev.Recall(r, 4, 1), 1.0);
  EXPECT_DOUBLE_EQ(ev.ExactSetAgreement(r, 4, 1), 1.0);
}

TEST(RecallEvaluator, TiedNeighbourCountsAsHit) {
  Fixture f;
  auto ev = *RecallEvaluator::Create(f.base, f.queries, f.gt, Metric::kL2, 4);
  std::vector<Neighbor> r = {{0, 0}, {1, 1}, {2, 4}, {4, 9}};
  EXPECT_DOUBLE_EQ(ev.Recall(r, 4, 1), 1.0);
  EXPECT_DOUBLE_EQ(ev.ExactSetAgreement(r, 4, 1), 0.0);
}

TEST(RecallEvaluator, JudgesRecomputedDistancesNotReportedOnes) {
  Fixture f;
  auto ev = *RecallEvaluator::Create(f.base, f.queries, f.gt, Metric::kL2, 4);
  // Row 4 reported far off (as an approximate index might) is still the exact tie of row 3;
  // row 5 reported at the k-th distance is still 100 away.
  EXPECT_DOUBLE_EQ(ev.Recall({{0, 0}, {1, 1}, {2, 4}, {4, 50}}, 4, 1), 1.0);
  EXPECT_DOUBLE_EQ(ev.Recall({{0, 0}, {1, 1}, {2, 4}, {5, 9}}, 4, 1), 0.75);
}

TEST(RecallEvaluator, FartherNeighbourIsAMiss) {
  Fixture f;
  auto ev = *RecallEvaluator::Create(f.base, f.queries, f.gt, Metric::kL2, 4);
  std::vector<Neighbor> r = {{0, 0}, {1, 1}, {5, 100}, {kInvalidVectorId, 0}};
  EXPECT_DOUBLE_EQ(ev.Recall(r, 4, 1), 0.5);
}

TEST(RecallEvaluator, RejectsShortOrOutOfRangeGroundTruth) {
  Fixture f;
  EXPECT_FALSE(RecallEvaluator::Create(f.base, f.queries, f.gt, Metric::kL2, 5).has_value());
  f.gt.ids[2] = 99;
  auto r = RecallEvaluator::Create(f.base, f.queries, f.gt, Metric::kL2, 4);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("99"), std::string::npos);
}

}  // namespace
}  // namespace strata::tools
