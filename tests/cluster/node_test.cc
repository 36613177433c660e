// ClusterNode (cluster/node.h) in-process against a real etcd: registration under a lease,
// one leader at a time, leaving, a lapsed lease, a taken node id.

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "cluster/admin.h"
#include "cluster/keys.h"
#include "cluster/node.h"
#include "tests/cluster/etcd_process.h"

namespace strata::cluster {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Polls `pred` every 20 ms for up to `timeout_ms`.
template <typename Pred>
bool Eventually(Pred pred, uint32_t timeout_ms) {
  const auto until = Clock::now() + milliseconds(timeout_ms);
  while (Clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return pred();
}

class ClusterNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto process = testing::EtcdProcess::Start();
    ASSERT_TRUE(process.has_value()) << process.error().ToString();
    etcd_ = std::move(*process);
    auto client = EtcdClient::Create(etcd_->url());
    ASSERT_TRUE(client.has_value());
    etcd = std::move(*client);
  }
  NodeOptions Options(const std::string& id, uint16_t port) const {
    NodeOptions o;
    o.etcd = etcd_->url();
    o.node_id = id;
    o.advertise = "127.0.0.1:" + std::to_string(port);
    o.cluster = "test";
    o.lease_ttl_s = 2;
    return o;
  }
  std::unique_ptr<testing::EtcdProcess> etcd_;
  std::unique_ptr<EtcdClient> etcd;
};

TEST_F(ClusterNodeTest, RegistersUnderItsLeaseAndLeavesAtOnce) {
  auto node = ClusterNode::Start(Options("n1", 7001));
  ASSERT_TRUE(node.has_value()) << node.error().ToString();
  auto kv = etcd->Get("/strata/test/nodes/n1");
  ASSERT_TRUE(kv.has_value() && kv->has_value());
  EXPECT_EQ((*kv)->lease, (*node)->lease());
  auto record = NodeRecord::FromJson((*kv)->value);
  ASSERT_TRUE(record.has_value()) << record.error().ToString();
  EXPECT_EQ(record->id, "n1");
  EXPECT_EQ(record->advertise, "127.0.0.1:7001");
  EXPECT_EQ((*node)->incarnation(), static_cast<uint64_t>((*kv)->create_revision));
  EXPECT_TRUE((*node)->LeaseHeld());
  // Alone, it leads.
  EXPECT_TRUE(Eventually([&] { return (*node)->is_leader(); }, 3000));
  EXPECT_EQ(etcd->Leader("/strata/test/leader").value()->value, "n1");
  node->reset();
  EXPECT_FALSE(etcd->Get("/strata/test/nodes/n1").value().has_value());
  EXPECT_FALSE(etcd->Leader("/strata/test/leader").value().has_value());
}

TEST_F(ClusterNodeTest, OneLeaderAtATimeAndAnotherTakesOver) {
  std::vector<std::unique_ptr<ClusterNode>> nodes;
  for (int i = 0; i < 3; ++i) {
    auto n = ClusterNode::Start(Options("n" + std::to_string(i), 7000 + i));
    ASSERT_TRUE(n.has_value()) << n.error().ToString();
    nodes.push_back(std::move(*n));
  }
  auto leaders = [&] {
    int count = 0;
    for (auto& n : nodes) count += n && n->is_leader() ? 1 : 0;
    return count;
  };
  ASSERT_TRUE(Eventually([&] { return leaders() == 1; }, 5000));
  // Everyone sees every member.
  for (auto& n : nodes) {
    ASSERT_TRUE(Eventually([&] { return n->Members().size() == 3; }, 3000));
  }
  size_t leader = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i]->is_leader()) leader = i;
  }
  auto token = nodes[leader]->leader_key();
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ(etcd->Leader("/strata/test/leader").value()->value, "n" + std::to_string(leader));

  nodes[leader].reset();  // leaves: resigns, revokes
  const auto t0 = Clock::now();
  ASSERT_TRUE(Eventually([&] { return leaders() == 1; }, 5000));
  EXPECT_LT(Clock::now() - t0, milliseconds(4000));
  for (auto& n : nodes) {
    if (n && n->is_leader()) {
      EXPECT_GT(n->leader_key()->rev, token->rev);
    }
  }
  for (auto& n : nodes) {
    if (n) {
      EXPECT_TRUE(Eventually([&] { return n->Members().size() == 2; }, 3000));
    }
  }
}

TEST_F(ClusterNodeTest, ALapsedLeaseRegistersAgainAsANewIncarnation) {
  auto node = ClusterNode::Start(Options("n1", 7001));
  ASSERT_TRUE(node.has_value()) << node.error().ToString();
  ASSERT_TRUE(Eventually([&] { return (*node)->is_leader(); }, 3000));
  const int64_t first = (*node)->lease();
  const uint64_t incarnation = (*node)->incarnation();
  // What etcd does when a node stops renewing: the lease and its keys go.
  ASSERT_TRUE(etcd->LeaseRevoke(first).ok());
  ASSERT_TRUE(Eventually([&] { return (*node)->incarnation() > incarnation; }, 5000));
  EXPECT_NE((*node)->lease(), first);
  auto kv = etcd->Get("/strata/test/nodes/n1");
  ASSERT_TRUE(kv.has_value() && kv->has_value());
  EXPECT_EQ((*kv)->lease, (*node)->lease());
  EXPECT_EQ(NodeRecord::FromKeyValue(**kv)->incarnation, (*node)->incarnation());
  EXPECT_TRUE(Eventually([&] { return (*node)->is_leader(); }, 5000));
}

TEST_F(ClusterNodeTest, ATakenNodeIdIsRefused) {
  auto first = ClusterNode::Start(Options("n1", 7001));
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  NodeOptions o = Options("n1", 7002);
  o.register_wait_ms = 300;
  auto second = ClusterNode::Start(o);
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(second.error().message().find("127.0.0.1:7001"), std::string::npos)
      << second.error().message();
  // The same address is this node's previous life: it takes the registration over.
  auto again = ClusterNode::Start(Options("n1", 7001));
  ASSERT_TRUE(again.has_value()) << again.error().ToString();
  EXPECT_NE((*again)->lease(), (*first)->lease());
}

TEST_F(ClusterNodeTest, CreateWaitsForTheDropOfTheNameToFinish) {
  // What a drop leaves for a moment after the record: the placement, the replicas' reports.
  const ClusterKeys keys("test");
  CollectionRecord record;
  record.name = "docs";
  record.dim = 4;
  ASSERT_TRUE(etcd->Put(keys.placement("docs"), "{}").has_value());
  ASSERT_TRUE(etcd->Put(keys.replica("docs", 0, "n1"), "{}").has_value());
  ASSERT_TRUE(etcd->Put(keys.replica("docsx", 0, "n1"), "{}").has_value());  // another name
  Status st = CreateClusterCollection(*etcd, "test", record);
  EXPECT_EQ(st.code(), StatusCode::kAlreadyExists) << st.ToString();
  EXPECT_NE(st.message().find("the drop of collection 'docs' is still in progress"), std::string::npos)
      << st.ToString();
  ASSERT_TRUE(etcd->Delete(keys.replica("docs", 0, "n1")).has_value());
  st = CreateClusterCollection(*etcd, "test", record);
  EXPECT_EQ(st.code(), StatusCode::kAlreadyExists) << st.ToString();
  EXPECT_NE(st.message().find("still in progress (its placement still there"), std::string::npos) << st.ToString();
  auto none = etcd->Get(keys.collection("docs"));
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->has_value());  // nothing written
  ASSERT_TRUE(etcd->Delete(keys.placement("docs")).has_value());
  st = CreateClusterCollection(*etcd, "test", record);
  EXPECT_TRUE(st.ok()) << st.ToString();
  st = CreateClusterCollection(*etcd, "test", record);
  EXPECT_EQ(st.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(st.message().find("has a collection 'docs' already"), std::string::npos) << st.ToString();
  // A live collection has its placement and reports too: still "already".
  ASSERT_TRUE(etcd->Put(keys.placement("docs"), "{}").has_value());
  ASSERT_TRUE(etcd->Put(keys.replica("docs", 0, "n1"), "{}").has_value());
  st = CreateClusterCollection(*etcd, "test", record);
  EXPECT_EQ(st.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(st.message().find("has a collection 'docs' already"), std::string::npos) << st.ToString();
}

TEST_F(ClusterNodeTest, BadOptionsAreRefused) {
  NodeOptions o = Options("n/1", 7001);
  EXPECT_EQ(ClusterNode::Start(o).error().code(), StatusCode::kInvalidArgument);
  o = Options("n1", 7001);
  o.advertise = "nohost";
  auto r = ClusterNode::Start(o);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("HOST:PORT"), std::string::npos);
  o = Options("n1", 7001);
  o.etcd = "http://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  o.etcd_timeout_ms = 300;
  r = ClusterNode::Start(o);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kIOError);
}

}  // namespace
}  // namespace strata::cluster
