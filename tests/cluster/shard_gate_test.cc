// ShardGate (cluster/catch_up.h) over a real engine in a temporary directory: the write fence
// refuses writes routed with an older placement, and a dropped shard forgets its fence.
// ShardCopies (cluster/shard_copy.h): the peer's side of a catch-up by files.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include <xxhash.h>

#include "cluster/catch_up.h"
#include "cluster/model.h"
#include "cluster/shard_copy.h"
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

TEST_F(ShardGateTest, ShardCopiesRaiseTheFenceListCheckedFilesAndServeThemUntilDone) {
  const std::string local = LocalShardName("docs", 0);
  ASSERT_TRUE(engine_->CreateCollection({.name = local, .dim = 2, .seal_threshold = 10}).ok());
  ShardGate gate(*engine_);
  for (VectorId id = 1; id <= 25; ++id) ASSERT_TRUE(WriteAt(gate, 1, id).ok());  // sealed + logged
  ShardCopies copies(*engine_, gate);
  auto offer = copies.Take(MakeShardAddress("docs", 0, 3));
  ASSERT_TRUE(offer.has_value()) << offer.error().ToString();
  // The catch-up's epoch is this replica's fence now.
  EXPECT_EQ(WriteAt(gate, 2, 26).code(), StatusCode::kCancelled);
  EXPECT_EQ(offer->token.size(), 32u);
  EXPECT_GT(offer->sequence, 0u);
  ASSERT_FALSE(offer->files.empty());
  EXPECT_EQ(offer->files.front().path, "MANIFEST");
  const auto address = MakeShardAddress("docs", 0, 3);
  for (const protocol::ShardFile& f : offer->files) {
    SCOPED_TRACE(f.path);
    EXPECT_FALSE(f.path.starts_with("/"));
    // Read back in pieces of 1,000 bytes: the bytes the listing's size and xxh64 describe.
    std::string all;
    for (uint64_t at = 0;; at += 1000) {
      auto piece = copies.Read(address, offer->token, f.path, at, 1000);
      ASSERT_TRUE(piece.has_value()) << piece.error().ToString();
      all += *piece;
      if (piece->size() < 1000) break;
    }
    EXPECT_EQ(all.size(), f.size);
    EXPECT_EQ(XXH64(all.data(), all.size(), 0), f.xxh64);
  }
  // Only what the copy lists, only with its token, only for its shard.
  EXPECT_EQ(copies.Read(address, offer->token, "../LOCK", 0, 10).error().code(), StatusCode::kNotFound);
  EXPECT_EQ(copies.Read(address, "nope", "MANIFEST", 0, 10).error().code(), StatusCode::kNotFound);
  EXPECT_EQ(copies.Read(MakeShardAddress("docs", 1, 3), offer->token, "MANIFEST", 0, 10).error().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(copies.Take(MakeShardAddress("docs", 7, 3)).error().code(), StatusCode::kNotFound);
  // At most kMaxCopies at once.
  std::vector<std::string> tokens{offer->token};
  while (tokens.size() < ShardCopies::kMaxCopies) {
    auto more = copies.Take(address);
    ASSERT_TRUE(more.has_value()) << more.error().ToString();
    tokens.push_back(more->token);
  }
  EXPECT_EQ(copies.Take(address).error().code(), StatusCode::kResourceExhausted);
  // Done removes a copy (and its files); a second Done is no error.
  const auto scratch = dir_ / "scratch";
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(scratch), std::filesystem::directory_iterator()),
            long(ShardCopies::kMaxCopies));
  for (const std::string& t : tokens) ASSERT_TRUE(copies.Done(address, t).ok());
  EXPECT_TRUE(copies.Done(address, tokens[0]).ok());
  EXPECT_EQ(copies.size(), 0u);
  EXPECT_TRUE(std::filesystem::is_empty(scratch));
  EXPECT_EQ(copies.Read(address, offer->token, "MANIFEST", 0, 10).error().code(), StatusCode::kNotFound);
  // The copies never touched the shard.
  EXPECT_EQ(engine_->DescribeCollection(local)->num_vectors, 25u);
}

}  // namespace
}  // namespace strata::cluster
