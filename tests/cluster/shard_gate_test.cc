// ShardGate (cluster/catch_up.h) over a real engine in a temporary directory: the write fence
// refuses writes routed with an older placement, and a dropped shard forgets its fence.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "cluster/catch_up.h"
#include "cluster/model.h"
#include "engine/strata.h"
#include "engine/write_batch.h"

namespace strata::cluster {
namespace {

class ShardGateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("strata_shard_gate_test_" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(dir_);
    auto e = Engine::Open(dir_);
    ASSERT_TRUE(e.has_value()) << e.error().ToString();
    engine_ = std::move(*e);
  }
  void TearDown() override {
    engine_.reset();
    std::filesystem::remove_all(dir_);  // the directory this test created
  }
  Status WriteAt(ShardGate& gate, uint64_t epoch, VectorId id) {
    engine::WriteBatch batch;
    const float v[] = {1.0f, 2.0f};
    batch.Upsert(id, v);
    const VectorId ids[] = {id};
    return gate.Write(MakeShardAddress("docs", 0, epoch), 0, ids, {}, batch);
  }
  std::filesystem::path dir_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(ShardGateTest, RefusesWritesOlderThanItsFenceOrAnAppliedWriteUntilDropped) {
  const std::string local = LocalShardName("docs", 0);
  ASSERT_TRUE(engine_->CreateCollection({.name = local, .dim = 2}).ok());
  ShardGate gate(*engine_);
  ASSERT_TRUE(WriteAt(gate, 1, 1).ok());
  gate.Fence(local, 5);  // a catch-up of epoch 5 listed this replica
  Status stale = WriteAt(gate, 4, 2);
  EXPECT_EQ(stale.code(), StatusCode::kCancelled);
  EXPECT_NE(stale.message().find("stale placement epoch"), std::string::npos) << stale.ToString();
  EXPECT_TRUE(WriteAt(gate, 5, 3).ok());
  // A write at epoch 6 applied: one routed at 5 that comes later (a replaced primary's, late)
  // is refused, whatever the fence.
  EXPECT_TRUE(WriteAt(gate, 6, 4).ok());
  Status late = WriteAt(gate, 5, 4);
  EXPECT_EQ(late.code(), StatusCode::kCancelled);
  EXPECT_NE(late.message().find("stale placement epoch"), std::string::npos) << late.ToString();
  // In sync again: the fence stays.
  gate.Forget(local);
  EXPECT_EQ(WriteAt(gate, 4, 2).code(), StatusCode::kCancelled);
  // Dropped and created again: placement epochs start at 1 again, and writes go through.
  ASSERT_TRUE(engine_->DropCollection(local).ok());
  gate.Dropped(local);
  ASSERT_TRUE(engine_->CreateCollection({.name = local, .dim = 2}).ok());
  Status again = WriteAt(gate, 1, 1);
  EXPECT_TRUE(again.ok()) << again.ToString();
  auto got = engine_->Get(local, 1);
  EXPECT_TRUE(got.has_value());
}

}  // namespace
}  // namespace strata::cluster
