// ShardGate (cluster/catch_up.h) over a real engine in a temporary directory: the write fence
// refuses writes routed with an older placement, and a dropped shard forgets its fence.
// ShardCopies (cluster/shard_copy.h): the peer's side of a catch-up by files.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <map>
#include <random>

#include <xxhash.h>

#include "cluster/catch_up.h"
#include "cluster/model.h"
#include "cluster/shard_copy.h"
#include "client/client.h"
#include "server/config.h"
#include "server/request_hook.h"
#include "server/server.h"
#include "engine/strata.h"
#include "engine/write_batch.h"

namespace strata::cluster {
namespace {

// The folders in `dir` (an engine's scratch folder: its copies; the marker file aside); 0 when
// it does not exist.
size_t Folders(const std::filesystem::path& dir) {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) n += e.is_directory() ? 1 : 0;
  return n;
}

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
  EXPECT_EQ(Folders(scratch), ShardCopies::kMaxCopies);
  for (const std::string& t : tokens) ASSERT_TRUE(copies.Done(address, t).ok());
  EXPECT_TRUE(copies.Done(address, tokens[0]).ok());
  EXPECT_EQ(copies.size(), 0u);
  EXPECT_EQ(Folders(scratch), 0u);
  EXPECT_EQ(copies.Read(address, offer->token, "MANIFEST", 0, 10).error().code(), StatusCode::kNotFound);
  // The copies never touched the shard.
  EXPECT_EQ(engine_->DescribeCollection(local)->num_vectors, 25u);
}

// The peer's side of the shard requests over a real server, as a cluster node's hook answers
// them (ShardCopies for the files, the engine for gets), with `after_take` run once the copy
// is taken: writes that land after the peer's copy and before the replica's swap.
class PeerHook : public server::RequestHook {
 public:
  PeerHook(Engine& engine, ShardCopies& copies, std::function<void()> after_take)
      : engine_(engine), copies_(copies), after_take_(std::move(after_take)) {}
  std::optional<protocol::Response> Handle(const protocol::Request& request) override {
    const std::string* collection = protocol::RequestCollection(request);
    if (collection == nullptr) return std::nullopt;
    auto address = ParseShardAddress(*collection);
    if (!address || !address->has_value()) return std::nullopt;
    const ShardAddress& a = **address;
    auto fail = [](const Status& s) {
      return protocol::Response{protocol::Op::kError,
                                protocol::ErrorReply{protocol::ErrorCodeFromStatus(s.code()), s.message()}};
    };
    const auto* m = std::get_if<protocol::ShardFilesRequest>(&request.body);
    switch (request.op) {
      case protocol::Op::kShardFiles: {
        auto r = copies_.Take(a);
        if (!r) return fail(r.error());
        if (after_take_) after_take_();
        return protocol::Response{request.op, std::move(*r)};
      }
      case protocol::Op::kShardFileRead: {
        auto r = copies_.Read(a, m->token, m->path, m->offset, m->length);
        if (!r) return fail(r.error());
        return protocol::Response{request.op, protocol::ShardFileChunkReply{std::move(*r)}};
      }
      case protocol::Op::kShardFilesDone:
        (void)copies_.Done(a, m->token);
        return protocol::Response{request.op, protocol::EmptyReply{}};
      case protocol::Op::kGetKeyed: {
        protocol::GetReply reply;
        for (const std::string& key : std::get<protocol::KeysRequest>(request.body).keys) {
          auto r = engine_.GetByKey(a.local, key);
          reply.records.push_back(r ? std::optional<Record>(std::move(*r)) : std::nullopt);
        }
        return protocol::Response{request.op, std::move(reply)};
      }
      case protocol::Op::kGet: {
        protocol::GetReply reply;
        for (VectorId id : std::get<protocol::GetRequest>(request.body).ids) {
          auto r = engine_.Get(a.local, id);
          reply.records.push_back(r ? std::optional<Record>(std::move(*r)) : std::nullopt);
        }
        return protocol::Response{request.op, std::move(reply)};
      }
      default:
        return fail(InvalidArgument("not a peer request"));
    }
  }

 private:
  Engine& engine_;
  ShardCopies& copies_;
  std::function<void()> after_take_;
};

// Every live record of `local` in `engine`: id -> (key, vector).
std::map<VectorId, std::pair<std::string, std::vector<float>>> Contents(Engine& engine, const std::string& local) {
  std::map<VectorId, std::pair<std::string, std::vector<float>>> out;
  uint64_t cursor = 0;
  do {
    auto page = engine.ListIds(local, cursor, 1000);
    EXPECT_TRUE(page.has_value());
    if (!page) break;
    for (VectorId id : page->ids) {
      auto r = engine.Get(local, id);
      EXPECT_TRUE(r.has_value());
      if (r) out[id] = {r->key, r->vector};
    }
    cursor = page->next_cursor;
  } while (cursor != 0);
  return out;
}

// A catch-up by files over the network: the replica held stale data from before (ids the
// cluster rewrote, an id it never acknowledged, a key under an id of its own); writes land
// after the peer's copy is taken -- one of them a keyed write its stale data refuses -- and
// the replica ends with exactly the peer's records.
TEST_F(ShardGateTest, CatchUpFromFilesEndsWithThePeersRecordsWhateverWasHeldOrRefusedHere) {
  const std::string local = LocalShardName("docs", 0);
  const VectorId ka = kKeyedIdBase + 1, kb = kKeyedIdBase + 2, ka_stray = kKeyedIdBase + 50;
  auto vec = [](float x, float y) { return std::vector<float>{x, y}; };
  // The peer (this fixture's engine): ids 1..30, keys a and b.
  ASSERT_TRUE(engine_->CreateCollection({.name = local, .dim = 2, .seal_threshold = 16}).ok());
  {
    engine::WriteBatch b;
    for (VectorId id = 1; id <= 30; ++id) b.Upsert(id, vec(float(id), 0));
    b.UpsertByKeyWithId("a", ka, vec(1, 1));
    b.UpsertByKeyWithId("b", kb, vec(2, 2));
    ASSERT_TRUE(engine_->Write(local, b).ok());
  }
  // The replica, with stale data.
  const auto rdir = dir_ / "replica";  // removed with the fixture's folder
  auto replica = Engine::Open(rdir);
  ASSERT_TRUE(replica.has_value());
  ASSERT_TRUE((*replica)->CreateCollection({.name = local, .dim = 2}).ok());
  {
    engine::WriteBatch b;
    for (VectorId id = 1; id <= 10; ++id) b.Upsert(id, vec(-1, -1));
    b.Upsert(99, vec(9, 9));                         // never acknowledged
    b.UpsertByKeyWithId("a", ka_stray, vec(3, 3));  // the key under an id of its own
    ASSERT_TRUE((*replica)->Write(local, b).ok());
  }
  ShardGate peer_gate(*engine_), gate(**replica);
  ShardCopies copies(*engine_, peer_gate);
  constexpr uint64_t kSince = 4;
  Status refused;
  // Live writes routed at the catch-up's epoch: to the peer (in sync) and here ("+").
  auto live = [&](const engine::WriteBatch& batch, std::vector<VectorId> ids, std::vector<std::string> keys) {
    Status at_peer = peer_gate.Write(MakeShardAddress("docs", 0, kSince), 0, ids, keys, batch);
    EXPECT_TRUE(at_peer.ok()) << at_peer.ToString();
    return gate.Write(MakeShardAddress("docs", 0, kSince, true), 0, ids, keys, batch);
  };
  ShardGate* cancel_on_take = nullptr;  // a gate to stop once the peer's copy is taken
  auto after_take = [&] {
    if (cancel_on_take != nullptr) {
      cancel_on_take->CancelCatchUps();
      return;
    }
    engine::WriteBatch w1, w2, w3, w4;
    w1.Upsert(5, vec(500, 0));
    EXPECT_TRUE(live(w1, {5}, {}).ok());
    w2.UpsertByKeyWithId("a", ka, vec(7, 7));  // refused here: "a" is held under ka_stray
    refused = live(w2, {ka}, {"a"});
    w3.Delete(20);
    EXPECT_TRUE(live(w3, {20}, {}).ok());
    w4.DeleteByKey("b");
    EXPECT_TRUE(live(w4, {}, {"b"}).ok());
  };
  // A live write before the copy too: in the peer's copy and marked here.
  {
    engine::WriteBatch w0;
    w0.Upsert(3, vec(300, 0));
    ASSERT_TRUE(live(w0, {3}, {}).ok());
  }
  auto hook = std::make_shared<PeerHook>(*engine_, copies, after_take);
  server::ServerConfig config;
  config.port = 0;
  config.metrics_port = 0;
  config.data_dir = dir_.string();
  config.worker_threads = 2;
  config.log_level = "error";
  auto srv = server::Server::Start(config, *engine_);
  ASSERT_TRUE(srv.has_value()) << srv.error().ToString();
  (*srv)->SetRequestHook(hook);
  auto client = client::Client::Connect("127.0.0.1", (*srv)->port(), {});
  ASSERT_TRUE(client.has_value()) << client.error().ToString();
  for (const bool before : {true, false}) {
    // A gate told to stop (its node shuts down) -- before it starts, or once the peer has taken
    // its copy -- stops with Cancelled, lets the peer's copy go, and the replica keeps its data.
    SCOPED_TRACE(before ? "stopped before" : "stopped during the copy");
    ShardGate stopping(**replica);
    if (before) stopping.CancelCatchUps();
    cancel_on_take = before ? nullptr : &stopping;
    auto stopped = stopping.CatchUpFromFiles(MakeShardAddress("docs", 0, kSince), **client);
    cancel_on_take = nullptr;
    ASSERT_FALSE(stopped.has_value());
    EXPECT_EQ(stopped.error().code(), StatusCode::kCancelled) << stopped.error().ToString();
    EXPECT_TRUE((*replica)->Get(local, 99).has_value());
    EXPECT_EQ(copies.size(), 0u);
  }
  auto report = gate.CatchUpFromFiles(MakeShardAddress("docs", 0, kSince), **client);
  ASSERT_TRUE(report.has_value()) << report.error().ToString();
  EXPECT_FALSE(refused.ok()) << "the stale key was expected to refuse the live keyed write";
  EXPECT_GT(report->files, 1u);
  EXPECT_EQ(copies.size(), 0u);  // let go
  const auto want = Contents(*engine_, local);
  EXPECT_EQ(want.size(), 30u);  // 1..30 less 20, plus a
  EXPECT_EQ(want.at(5).second, vec(500, 0));
  EXPECT_EQ(want.at(ka), std::make_pair(std::string("a"), vec(7, 7)));
  EXPECT_EQ(Contents(**replica, local), want);
  EXPECT_EQ(Folders(rdir / "scratch"), 0u);
  // Later live writes go to the copy.
  engine::WriteBatch w5;
  w5.Upsert(6, vec(600, 0));
  ASSERT_TRUE(live(w5, {6}, {}).ok());
  EXPECT_EQ(Contents(**replica, local), Contents(*engine_, local));
  client->reset();
  srv->reset();
  replica->reset();
}

}  // namespace
}  // namespace strata::cluster
