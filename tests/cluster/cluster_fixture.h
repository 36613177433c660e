#pragma once
// What the cluster tests that start processes share (cluster_server_test, router_test,
// shard_reply_test, rereplicate_test, recall_test): a real etcd and strata-server nodes n0, n1,
// ... of cluster "t" on loopback (etcd_process.h, server_process.h), the waits on them, and a
// few helpers.
//
//   testing::TestCluster cluster;
//   ASSERT_TRUE(cluster.Start(3, {"--lease-ttl", "2"}));  // etcd, then nodes n0 n1 n2
//   ASSERT_TRUE(cluster.WaitForNodes(3, 10000));          // registered, one of them leading
//   ASSERT_TRUE(cluster.CreateCollection("vec", 16, 4, 2));  // placed, every replica ready
//   ... cluster.etcd (an EtcdClient), cluster.nodes[i]->port(), cluster.url() ...
//
// Thread-compatible: one thread drives a TestCluster; others may read its nodes' ports.

#include <stdio.h>
#include <sys/wait.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "client/client.h"
#include "cluster/admin.h"
#include "cluster/etcd_client.h"
#include "cluster/model.h"
#include "tests/cluster/etcd_process.h"
#include "tests/cluster/server_process.h"
#include "tests/seeded_vector.h"

#ifndef STRATA_CLI_BINARY
#define STRATA_CLI_BINARY "strata-cli"
#endif

namespace strata::cluster::testing {

// Polls `pred` every `poll` for up to `timeout_ms`; whether it came true (a last try at the end).
template <typename Pred>
bool Eventually(Pred pred, uint32_t timeout_ms,
                std::chrono::milliseconds poll = std::chrono::milliseconds(50)) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(poll);
  }
  return pred();
}

// Runs a command line; its exit status and its stdout (stderr joined).
inline std::pair<int, std::string> RunCommand(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Every record of engine collection `local` on the node at `port`, read through the shard
// address at epoch 0 (which raises no fence): id -> vector.
inline std::map<VectorId, std::vector<float>> ShardContents(uint16_t port, const std::string& local) {
  std::map<VectorId, std::vector<float>> out;
  auto c = client::Client::Connect("127.0.0.1", port);
  EXPECT_TRUE(c.has_value());
  if (!c) return out;
  const std::string address = local + "@0";
  uint64_t cursor = 0;
  do {
    auto page = (*c)->ListKeys(address, cursor, 1000);
    EXPECT_TRUE(page.has_value()) << page.error().ToString();
    if (!page) return out;
    cursor = page->next_cursor;
    auto records = (*c)->Get(address, page->ids);
    EXPECT_TRUE(records.has_value()) << records.error().ToString();
    if (!records) return out;
    for (const auto& r : *records) {
      if (r) out[r->id] = r->vector;
    }
  } while (cursor != 0);
  return out;
}

// A real etcd, a client of it, and the strata-server nodes of cluster "t", all in one fresh
// temporary directory. Destroyed in reverse: the nodes (SIGKILL), the client, etcd, the
// directory.
class TestCluster {
 public:
  // Starts etcd and connects `etcd` to it.
  ::testing::AssertionResult StartEtcd() {
    auto process = EtcdProcess::Start();
    if (!process) return ::testing::AssertionFailure() << process.error().ToString();
    etcd_process = std::move(*process);
    auto client = EtcdClient::Create(etcd_process->url());
    if (!client) return ::testing::AssertionFailure() << client.error().ToString();
    etcd = std::move(*client);
    return ::testing::AssertionSuccess();
  }

  // StartEtcd, then StartNodes(count, flags).
  ::testing::AssertionResult Start(int count, std::vector<std::string> flags = {}) {
    if (auto started = StartEtcd(); !started) return started;
    return StartNodes(count, std::move(flags));
  }

  // Starts nodes n0 .. n{count-1} (appended to `nodes`), each with NodeArgs(id, flags); does
  // not wait for them to register (WaitForNodes).
  ::testing::AssertionResult StartNodes(int count, std::vector<std::string> flags = {}) {
    flags_ = std::move(flags);
    for (int i = 0; i < count; ++i) {
      const std::string id = "n" + std::to_string(i);
      auto p = ServerProcess::Start(dir.path(), id, NodeArgs(id, flags_));
      if (!p) return ::testing::AssertionFailure() << p.error().ToString();
      nodes.push_back(std::move(*p));
    }
    return ::testing::AssertionSuccess();
  }

  // Node `index` (n<index>) started again, with the flags StartNodes gave it.
  Status RestartNode(int index) {
    return nodes[index]->Restart(NodeArgs("n" + std::to_string(index), flags_));
  }

  // The flags that make node `id` join cluster "t" through this etcd, then `flags`.
  std::vector<std::string> NodeArgs(const std::string& id,
                                    const std::vector<std::string>& flags = {}) const {
    std::vector<std::string> args = {"--cluster-etcd", url(), "--node-id", id, "--advertise",
                                     "127.0.0.1",      "--cluster", "t"};
    args.insert(args.end(), flags.begin(), flags.end());
    return args;
  }

  // Whether, within `timeout_ms`, `count` nodes are registered and one of them leads.
  bool WaitForNodes(size_t count, uint32_t timeout_ms) {
    return Eventually([&] {
      auto st = ReadClusterStatus(*etcd, "t");
      return st && st->nodes.size() == count && !st->leader.empty();
    }, timeout_ms);
  }

  // Creates `record` in cluster "t" and waits (15 s at most) until it is placed and every
  // replica reports ready; for a cluster with no other collection.
  ::testing::AssertionResult CreateCollection(const CollectionRecord& record) {
    if (Status st = CreateClusterCollection(*etcd, "t", record); !st.ok()) {
      return ::testing::AssertionFailure() << st.ToString();
    }
    const bool ready = Eventually([&] {
      auto st = ReadClusterStatus(*etcd, "t");
      return st && st->collections.size() == 1 && st->AllReady();
    }, 15000);
    if (!ready) {
      return ::testing::AssertionFailure() << "collection '" << record.name
                                           << "' not placed and ready within 15 s";
    }
    return ::testing::AssertionSuccess();
  }

  // CreateCollection of a collection `name` (dim, shards x replicas, the rest as defaults).
  ::testing::AssertionResult CreateCollection(const std::string& name, uint32_t dim,
                                              uint32_t shards, uint32_t replicas) {
    CollectionRecord record;
    record.name = name;
    record.dim = dim;
    record.shards = shards;
    record.replicas = replicas;
    return CreateCollection(record);
  }

  // Whether node `node` is in no in-sync set of the cluster's first collection (which exists).
  bool OutOfEveryInSyncSet(const std::string& node) {
    auto st = ReadClusterStatus(*etcd, "t");
    if (!st || st->collections.empty()) return false;
    for (const ShardStatus& s : st->collections[0].shards) {
      for (const ReplicaRef& r : s.placement.in_sync) {
        if (r.node == node) return false;
      }
    }
    return true;
  }

  // Per replica of shard `s` of `collection` (placement order), its records (ShardContents).
  std::vector<std::map<VectorId, std::vector<float>>> ReplicaContents(const ShardStatus& s,
                                                                      const std::string& collection) {
    std::vector<std::map<VectorId, std::vector<float>>> copies;
    for (const std::string& n : s.placement.replicas) {
      copies.push_back(ShardContents(nodes[n[1] - '0']->port(), LocalShardName(collection, s.placement.shard)));
    }
    return copies;
  }

  std::string url() const { return etcd_process->url(); }

  TempDir dir;
  std::unique_ptr<EtcdProcess> etcd_process;
  std::unique_ptr<EtcdClient> etcd;
  std::vector<std::unique_ptr<ServerProcess>> nodes;

 private:
  std::vector<std::string> flags_;  // StartNodes', for RestartNode
};

}  // namespace strata::cluster::testing
