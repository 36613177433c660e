// The cluster's records and placement rules (cluster/model.h), without etcd.

#include <set>

#include <gtest/gtest.h>

#include "cluster/model.h"

namespace strata::cluster {
namespace {

CollectionRecord Record(uint32_t shards, uint32_t replicas) {
  CollectionRecord r;
  r.name = "docs";
  r.dim = 8;
  r.metric = Metric::kCosine;
  r.shards = shards;
  r.replicas = replicas;
  return r;
}

TEST(ClusterModel, PlacesShardsOnDistinctLeastLoadedNodes) {
  const LiveNodes live = {{"n0", 10}, {"n1", 11}, {"n2", 12}};
  auto p = PlaceCollection(Record(4, 2), live, {});
  ASSERT_TRUE(p.has_value()) << p.error().ToString();
  EXPECT_EQ(p->collection, "docs");
  EXPECT_EQ(p->epoch, 1u);
  for (const ShardPlacement& sp : p->shards) EXPECT_EQ(sp.write_epoch, 1u);
  // The leader starts a collection's epochs at its record's creation revision: a name created
  // again never reuses the old collection's epochs.
  auto again = PlaceCollection(Record(4, 2), live, {}, 42);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->epoch, 42u);
  for (const ShardPlacement& sp : again->shards) EXPECT_EQ(sp.write_epoch, 42u);
  ASSERT_EQ(p->shards.size(), 4u);
  std::map<std::string, int> load;
  std::set<std::string> firsts;
  for (uint32_t s = 0; s < 4; ++s) {
    const ShardPlacement& sp = p->shards[s];
    EXPECT_EQ(sp.shard, s);
    ASSERT_EQ(sp.replicas.size(), 2u);
    EXPECT_NE(sp.replicas[0], sp.replicas[1]);
    // A new shard is empty: every replica starts in sync, at its incarnation.
    ASSERT_EQ(sp.in_sync.size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(sp.in_sync[i].node, sp.replicas[i]);
      EXPECT_EQ(sp.in_sync[i].incarnation, live.at(sp.replicas[i]));
      ++load[sp.replicas[i]];
    }
    firsts.insert(sp.replicas[0]);
  }
  // 8 replicas over 3 nodes: 3, 3, 2; and the first replicas are spread.
  for (const auto& [node, n] : load) EXPECT_TRUE(n == 2 || n == 3) << node << " " << n;
  EXPECT_EQ(firsts.size(), 3u);

  // Existing load steers a new collection to the emptier nodes.
  auto q = PlaceCollection(Record(1, 1), live, {{"n0", 5}, {"n1", 1}, {"n2", 3}});
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->shards[0].replicas, std::vector<std::string>{"n1"});
}

TEST(ClusterModel, RefusesPlacementWithTooFewNodesAndBadRecords) {
  auto p = PlaceCollection(Record(2, 3), {{"n0", 1}, {"n1", 2}}, {});
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(p.error().message().find("needs 3 replicas"), std::string::npos);
  EXPECT_FALSE(PlaceCollection(Record(0, 1), {{"n0", 1}}, {}).has_value());
  EXPECT_FALSE(Record(1, kMaxReplicas + 1).Validate().ok());
  EXPECT_FALSE(ValidateCollectionName("a.b").ok());
  EXPECT_FALSE(ValidateCollectionName("docs__s0").ok());
  EXPECT_TRUE(ValidateCollectionName("my_docs-2").ok());
  EXPECT_FALSE(ValidateCollectionName(std::string(57, 'a')).ok());
  EXPECT_TRUE(ValidateCollectionName(std::string(56, 'a')).ok());
  EXPECT_EQ(LocalShardName("docs", 3), "docs__s3");
}

TEST(ClusterModel, InSyncSetsFollowTheRegistry) {
  Placement p;
  p.collection = "docs";
  p.epoch = 4;
  p.shards = {{0, {"n0", "n1"}, {{"n0", 10}, {"n1", 11}}}, {1, {"n1", "n2"}, {{"n1", 11}, {"n2", 12}}}};
  // Nothing changed.
  Placement same = p;
  EXPECT_FALSE(UpdateInSync(same, {{"n0", 10}, {"n1", 11}, {"n2", 12}}, 5));
  EXPECT_EQ(same, p);
  // n1 lapsed: it leaves both sets.
  Placement lapsed = p;
  EXPECT_TRUE(UpdateInSync(lapsed, {{"n0", 10}, {"n2", 12}}, 5));
  EXPECT_EQ(lapsed.shards[0].in_sync, (std::vector<ReplicaRef>{{"n0", 10}}));
  EXPECT_EQ(lapsed.shards[1].in_sync, (std::vector<ReplicaRef>{{"n2", 12}}));
  // Shard 1 lost its primary: its write_epoch moves, so the replicas refuse what n1 still
  // sends at an older epoch; shard 0 keeps its primary and its write_epoch.
  EXPECT_EQ(lapsed.shards[0].write_epoch, 0u);
  EXPECT_EQ(lapsed.shards[1].write_epoch, 5u);
  // Then n0 lapses too: the last in-sync replica of shard 0 stays (only it has every write).
  EXPECT_TRUE(UpdateInSync(lapsed, {{"n2", 12}}, 5) == false);
  EXPECT_EQ(lapsed.shards[0].in_sync, (std::vector<ReplicaRef>{{"n0", 10}}));
  // n1 registered again while still listed: it stays, at its new incarnation.
  Placement back = p;
  EXPECT_TRUE(UpdateInSync(back, {{"n0", 10}, {"n1", 20}, {"n2", 12}}, 5));
  EXPECT_EQ(back.shards[0].in_sync[1], (ReplicaRef{"n1", 20}));
  // Its new incarnation is shard 1's primary: another process orders the writes now.
  EXPECT_EQ(back.shards[0].write_epoch, 0u);
  EXPECT_EQ(back.shards[1].write_epoch, 5u);
  // Replicas are never added back to the set here (that needs a catch-up first).
  EXPECT_FALSE(UpdateInSync(lapsed, {{"n0", 10}, {"n1", 11}, {"n2", 12}}, 5));
  EXPECT_EQ(lapsed.shards[1].in_sync.size(), 1u);
}

TEST(ClusterModel, AReturningReplicaCatchesUpBeforeItIsInSyncAgain) {
  Placement p;
  p.collection = "docs";
  p.epoch = 5;
  // n1 lapsed earlier and left shard 0's in-sync set.
  p.shards = {{0, {"n0", "n1"}, {{"n0", 10}}}, {1, {"n1", "n2"}, {{"n1", 11}, {"n2", 12}}}};
  ShardReports none(2);
  // Still gone: nothing to do.
  Placement gone = p;
  EXPECT_FALSE(UpdateCatchUp(gone, {{"n0", 10}, {"n2", 12}}, none, 6));
  // Back as incarnation 20: it catches up from epoch 6; shard 0's write set grew at 6.
  Placement back = p;
  EXPECT_TRUE(UpdateCatchUp(back, {{"n0", 10}, {"n1", 20}, {"n2", 12}}, none, 6));
  EXPECT_EQ(back.shards[0].catching_up, (std::vector<ReplicaRef>{{"n1", 20, 6}}));
  EXPECT_EQ(back.shards[0].write_epoch, 6u);
  EXPECT_EQ(back.shards[0].in_sync, (std::vector<ReplicaRef>{{"n0", 10}}));
  EXPECT_TRUE(back.shards[1].catching_up.empty());
  EXPECT_EQ(back.shards[1].write_epoch, 0u);
  back.epoch = 6;
  // No report yet, or a report of an older catch-up or incarnation: it stays catching up.
  ShardReports reports(2);
  EXPECT_FALSE(UpdateCatchUp(back, {{"n0", 10}, {"n1", 20}, {"n2", 12}}, reports, 7));
  reports[0]["n1"] = ReplicaReport{"n1", 20, "ready", 5, 9, 3};
  EXPECT_FALSE(UpdateCatchUp(back, {{"n0", 10}, {"n1", 20}, {"n2", 12}}, reports, 7));
  reports[0]["n1"] = ReplicaReport{"n1", 19, "ready", 5, 9, 6};
  EXPECT_FALSE(UpdateCatchUp(back, {{"n0", 10}, {"n1", 20}, {"n2", 12}}, reports, 7));
  // Caught up at 6: in sync; the write epoch stays (the write set did not grow).
  Placement done = back;
  reports[0]["n1"] = ReplicaReport{"n1", 20, "ready", 5, 9, 6};
  EXPECT_TRUE(UpdateCatchUp(done, {{"n0", 10}, {"n1", 20}, {"n2", 12}}, reports, 7));
  EXPECT_EQ(done.shards[0].in_sync, (std::vector<ReplicaRef>{{"n0", 10}, {"n1", 20}}));
  EXPECT_TRUE(done.shards[0].catching_up.empty());
  EXPECT_EQ(done.shards[0].write_epoch, 6u);
  // Gone again (or another incarnation) while catching up: it leaves catching_up, and comes
  // back at a later epoch.
  Placement lapsed = back;
  EXPECT_TRUE(UpdateCatchUp(lapsed, {{"n0", 10}, {"n2", 12}}, none, 7));
  EXPECT_TRUE(lapsed.shards[0].catching_up.empty());
  Placement again = back;
  EXPECT_TRUE(UpdateCatchUp(again, {{"n0", 10}, {"n1", 30}, {"n2", 12}}, none, 7));
  EXPECT_EQ(again.shards[0].catching_up, (std::vector<ReplicaRef>{{"n1", 30, 7}}));
  EXPECT_EQ(again.shards[0].write_epoch, 7u);
  // Through JSON, and a placement written before catch-up reads with the new fields empty.
  auto round = Placement::FromJson(back.ToJson());
  ASSERT_TRUE(round.has_value()) << round.error().ToString();
  EXPECT_EQ(*round, back);
  auto old = Placement::FromJson(
      R"({"collection":"x","epoch":1,"shards":[{"shard":0,"replicas":["a"],"in_sync":[{"node":"a","incarnation":3}]}]})");
  ASSERT_TRUE(old.has_value()) << old.error().ToString();
  EXPECT_TRUE(old->shards[0].catching_up.empty());
  EXPECT_EQ(old->shards[0].write_epoch, 0u);
}

TEST(ClusterModel, ShardAddresses) {
  EXPECT_EQ(MakeShardAddress("docs", 3, 17).ToString(), "docs__s3@17");
  EXPECT_EQ(MakeShardAddress("docs", 3, 17, true).ToString(), "docs__s3@17+");
  EXPECT_FALSE(ParseShardAddress("docs__s3").has_value());  // an engine name, not an address
  auto a = ParseShardAddress("my_docs__s12@99+");
  ASSERT_TRUE(a.has_value() && a->has_value());
  EXPECT_EQ((*a)->collection, "my_docs");
  EXPECT_EQ((*a)->local, "my_docs__s12");
  EXPECT_EQ((*a)->shard, 12u);
  EXPECT_EQ((*a)->epoch, 99u);
  EXPECT_TRUE((*a)->catching_up);
  EXPECT_FALSE((*a)->primary);
  EXPECT_EQ(MakePrimaryAddress("docs", 3, 17).ToString(), "docs__s3@17!");
  auto primary = ParseShardAddress("docs__s3@17!");
  ASSERT_TRUE(primary.has_value() && primary->has_value());
  EXPECT_TRUE((*primary)->primary);
  EXPECT_FALSE((*primary)->catching_up);
  EXPECT_EQ((*primary)->epoch, 17u);
  for (const char* bad : {"docs@1", "docs__s@1", "docs__sx@1", "docs__s1@", "docs__s1@1x",
                          "docs__s01@1", "a.b__s1@1", "docs__s1@1+!", "docs__s1@1!+", "docs__s1@!", "docs__s1@99999999999999999999"}) {
    auto b = ParseShardAddress(bad);
    ASSERT_TRUE(b.has_value()) << bad;
    EXPECT_FALSE(b->has_value()) << bad;
  }
}

TEST(ClusterModel, RecordsRoundTripThroughJson) {
  CollectionRecord c = Record(4, 2);
  c.created_unix_ms = 123;
  auto c2 = CollectionRecord::FromJson(c.ToJson());
  ASSERT_TRUE(c2.has_value()) << c2.error().ToString();
  EXPECT_EQ(c2->ToJson(), c.ToJson());
  EXPECT_EQ(c2->metric, Metric::kCosine);
  // The shards' engine options round-trip too, and make each shard's spec.
  c.codes = VectorCodes::kSq8;
  c.rerank = 40;
  c.seal_threshold = 777;
  c.memory_budget_bytes = 1 << 20;
  auto c3 = CollectionRecord::FromJson(c.ToJson());
  ASSERT_TRUE(c3.has_value()) << c3.error().ToString();
  EXPECT_EQ(c3->ToJson(), c.ToJson());
  const CollectionSpec shard = c3->ShardSpec(3);
  EXPECT_EQ(shard.name, "docs__s3");
  EXPECT_EQ(shard.dim, 8u);
  EXPECT_EQ(shard.codes, VectorCodes::kSq8);
  EXPECT_EQ(shard.rerank, 40u);
  EXPECT_EQ(shard.seal_threshold, 777u);
  EXPECT_EQ(shard.memory_budget_bytes, uint64_t{1} << 20);
  CollectionSpec back = shard;
  back.name = "docs";
  const CollectionRecord from = CollectionRecord::FromSpec(back, 4, 2);
  CollectionRecord expected = *c3;
  expected.created_unix_ms = 0;  // set when the record is written
  EXPECT_EQ(from.ToJson(), expected.ToJson());
  // A record written before these fields existed reads as the defaults.
  auto old_record = CollectionRecord::FromJson(
      R"({"name":"x","dim":4,"metric":"l2","shards":1,"replicas":1,"hnsw_M":16})");
  ASSERT_TRUE(old_record.has_value()) << old_record.error().ToString();
  EXPECT_EQ(old_record->codes, VectorCodes::kNone);
  EXPECT_EQ(old_record->seal_threshold, 100000u);
  EXPECT_EQ(old_record->ShardSpec(0), CollectionSpec({.name = "x__s0", .dim = 4}));
  // Unknown codes, or a rerank without codes, are refused.
  auto bad_codes = CollectionRecord::FromJson(
      R"({"name":"x","dim":4,"metric":"l2","shards":1,"replicas":1,"codes":"pq"})");
  ASSERT_FALSE(bad_codes.has_value());
  auto bad_rerank = CollectionRecord::FromJson(
      R"({"name":"x","dim":4,"metric":"l2","shards":1,"replicas":1,"rerank":5})");
  ASSERT_FALSE(bad_rerank.has_value());
  EXPECT_EQ(bad_rerank.error().code(), StatusCode::kInvalidArgument);

  auto p = PlaceCollection(c, {{"a", 1}, {"b", 2}}, {});
  ASSERT_TRUE(p.has_value());
  auto p2 = Placement::FromJson(p->ToJson());
  ASSERT_TRUE(p2.has_value()) << p2.error().ToString();
  EXPECT_EQ(*p2, *p);

  ReplicaReport r{"a", 7, "ready", 100, 42};
  auto r2 = ReplicaReport::FromJson(r.ToJson());
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->ToJson(), r.ToJson());

  for (const char* bad : {"", "[]", "{\"name\":\"x\"}", "{\"name\":\"x\",\"dim\":\"8\"}"}) {
    auto e = CollectionRecord::FromJson(bad);
    ASSERT_FALSE(e.has_value()) << bad;
    EXPECT_EQ(e.error().code(), StatusCode::kCorruption) << e.error().ToString();
  }
  // A record that parses but is not valid (dim 0).
  auto invalid = CollectionRecord::FromJson(
      R"({"name":"x","dim":0,"metric":"l2","shards":1,"replicas":1})");
  ASSERT_FALSE(invalid.has_value());
  EXPECT_EQ(invalid.error().code(), StatusCode::kInvalidArgument);
  // Shards out of order.
  auto disordered = Placement::FromJson(
      R"({"collection":"x","epoch":1,"shards":[{"shard":1,"replicas":[],"in_sync":[]}]})");
  ASSERT_FALSE(disordered.has_value());
  EXPECT_NE(disordered.error().message().find("position 0"), std::string::npos);
}

TEST(ClusterModel, RereplicatesAShortShardOnTheLeastLoadedNodeAfterItsGrace) {
  // 2 shards x 2 replicas on n0..n2; n1 died (the in-sync sets dropped it); n3 is new.
  Placement p;
  p.collection = "docs";
  p.epoch = 7;
  p.shards.push_back({.shard = 0, .replicas = {"n0", "n1"}, .in_sync = {{"n0", 10, 0}}});
  p.shards.push_back({.shard = 1, .replicas = {"n1", "n2"}, .in_sync = {{"n2", 12, 0}}});
  const LiveNodes live = {{"n0", 10}, {"n2", 12}, {"n3", 13}};
  EXPECT_EQ(ShortShards(p, 2, live), (std::vector<uint32_t>{0, 1}));
  std::map<std::string, uint32_t> load = {{"n0", 1}, {"n1", 2}, {"n2", 1}};

  // Not due yet: nothing changes.
  Placement q = p;
  EXPECT_TRUE(Rereplicate(q, 2, live, load, [](uint32_t) { return false; }).empty());
  EXPECT_EQ(q, p);

  // Due: shard 0 gets n3 (the least loaded: 0); then shard 1 can have n0 or n3 (1 each; n2
  // holds it already): ties go by id, n0. The dead n1 leaves both.
  auto done = Rereplicate(q, 2, live, load, [](uint32_t) { return true; });
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].shard, 0u);
  EXPECT_EQ(done[0].removed, "n1");
  EXPECT_EQ(done[0].added, "n3");
  EXPECT_EQ(done[1].shard, 1u);
  EXPECT_EQ(done[1].removed, "n1");
  EXPECT_EQ(done[1].added, "n0");
  EXPECT_EQ(q.shards[0].replicas, (std::vector<std::string>{"n0", "n3"}));
  EXPECT_EQ(q.shards[1].replicas, (std::vector<std::string>{"n2", "n0"}));
  EXPECT_EQ(load["n1"], 0u);
  EXPECT_EQ(load["n3"], 1u);
  EXPECT_EQ(load["n0"], 2u);
  EXPECT_TRUE(ShortShards(q, 2, live).empty());
  // The new replicas are in neither set: UpdateCatchUp makes them catch up.
  EXPECT_TRUE(UpdateCatchUp(q, live, ShardReports(2), 8));
  ASSERT_EQ(q.shards[0].catching_up.size(), 1u);
  EXPECT_EQ(q.shards[0].catching_up[0], (ReplicaRef{"n3", 13, 8}));
  EXPECT_EQ(q.shards[0].write_epoch, 8u);
  EXPECT_EQ(q.shards[1].catching_up[0], (ReplicaRef{"n0", 10, 8}));

  // n1 comes back: it holds no replica any more, so nothing lists it.
  LiveNodes back = live;
  back["n1"] = 20;
  EXPECT_FALSE(UpdateInSync(q, back, 5));
  EXPECT_FALSE(UpdateCatchUp(q, back, ShardReports(2), 9));
  EXPECT_TRUE(Rereplicate(q, 2, back, load, [](uint32_t) { return true; }).empty());
}

TEST(ClusterModel, DoesNotRereplicateWithoutALiveInSyncReplicaOrASpareNode) {
  Placement p;
  p.collection = "docs";
  // The last in-sync replica is dead (the set is never emptied): no peer to copy from.
  p.shards.push_back({.shard = 0, .replicas = {"n0", "n1"}, .in_sync = {{"n1", 11, 0}}});
  std::map<std::string, uint32_t> load;
  auto due = [](uint32_t) { return true; };
  EXPECT_TRUE(Rereplicate(p, 2, {{"n0", 10}, {"n2", 12}}, load, due).empty());
  // A live in-sync replica, but no registered node without a replica of the shard.
  p.shards[0].in_sync = {{"n0", 10, 0}};
  EXPECT_TRUE(Rereplicate(p, 2, {{"n0", 10}}, load, due).empty());
  // A dead replica still catching up is not replaced until UpdateCatchUp has taken it out.
  p.shards[0].catching_up = {{"n1", 11, 3}};
  EXPECT_TRUE(Rereplicate(p, 2, {{"n0", 10}, {"n2", 12}}, load, due).empty());
  p.shards[0].catching_up.clear();
  auto done = Rereplicate(p, 2, {{"n0", 10}, {"n2", 12}}, load, due);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].added, "n2");
}

}  // namespace
}  // namespace strata::cluster
