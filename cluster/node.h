#pragma once
// A Strata node's membership of a cluster (docs/CLUSTER.md): its registration in etcd under a
// lease it keeps alive, its part in electing the cluster leader (etcd's election API), and a
// mirror of the registry.
//
//   NodeOptions o{.etcd = "http://127.0.0.1:2379", .node_id = "n1", .advertise = "10.0.0.1:7420"};
//   STRATA_ASSIGN_OR_RETURN(auto node, ClusterNode::Start(o));
//   node->is_leader();  node->Members();
//   node.reset();       // resigns, revokes the lease: the node leaves at once
//
// Registration: the node's key /strata/<cluster>/nodes/<id> is created under a fresh lease with
// a compare-and-swap (create if absent). If the key is held by a live lease -- another process
// with the same id, or this node's previous life whose lease has not lapsed yet (after a
// SIGKILL) -- Start waits up to `register_wait_ms` for it to go, then fails with AlreadyExists.
// Except at start when the key advertises this node's own address: the process that held it
// must be gone (this one has the address now), so its lease is revoked and the key taken over.
//
// The lease: a thread renews it every ttl/3. A node knows its lease holds until the time it
// sent the last successful keep-alive plus the TTL etcd granted (`LeaseHeld()`); past that it
// must act as if it had left (layer 4: acknowledge no writes), even before etcd tells it so --
// a node stopped (SIGSTOP) longer than its TTL learns it only when it runs again. When etcd
// says the lease is gone, the node registers again under a new lease (a new `incarnation`),
// which later layers treat as a replica that must catch up.
// Incarnation: the etcd revision that created the registration (unique, growing).
//
// Election: a second thread campaigns with the current lease. The leader's key lives under its
// lease, so leadership ends with it. `leader_key()` is the fencing token for the leader's
// writes (compare its create revision in the same txn).
//
// Thread-safe: every method may be called from any thread; the destructor stops the threads.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cluster/etcd_client.h"
#include "cluster/keys.h"
#include "cluster/prefix_mirror.h"
#include "core/status.h"

namespace strata::cluster {

struct NodeOptions {
  std::string etcd;       // comma-separated etcd client URLs
  std::string node_id;    // ValidateName
  std::string advertise;  // HOST:PORT where clients and peers reach this node
  std::string cluster = "strata";
  uint32_t lease_ttl_s = 5;          // >= 1
  uint32_t etcd_timeout_ms = 2000;   // per etcd call
  uint32_t register_wait_ms = 0;     // 0: twice the lease TTL
  uint32_t campaign_timeout_ms = 1000;  // one campaign call; the election thread loops
};

// What a node publishes about itself (JSON in etcd).
struct NodeRecord {
  std::string id;
  std::string advertise;
  int64_t lease = 0;
  // The etcd revision that created the registration (the key's create_revision; not in the
  // JSON): unique to each registration, and larger for a later one, across restarts too.
  uint64_t incarnation = 0;
  std::string version;
  int64_t started_unix_ms = 0;

  std::string ToJson() const;
  static Result<NodeRecord> FromJson(std::string_view json);
  // FromJson, with the incarnation from the key-value's create revision.
  static Result<NodeRecord> FromKeyValue(const EtcdKeyValue& kv);
};

class ClusterNode {
 public:
  // Validates `options`, connects to etcd, registers, starts the threads. InvalidArgument for
  // bad options, IOError when etcd cannot be reached, AlreadyExists (see the header comment).
  static Result<std::unique_ptr<ClusterNode>> Start(const NodeOptions& options);
  ~ClusterNode();  // resigns if leading, revokes the lease, stops the threads
  ClusterNode(const ClusterNode&) = delete;
  ClusterNode& operator=(const ClusterNode&) = delete;

  const NodeOptions& options() const { return options_; }
  const ClusterKeys& keys() const { return keys_; }
  EtcdClient& etcd() { return *etcd_; }

  // Whether the lease is known to hold now (see the header comment).
  bool LeaseHeld() const;
  int64_t lease() const;
  uint64_t incarnation() const;
  // Whether this node leads, as far as it knows (and its lease holds).
  bool is_leader() const;
  // The fencing token while leading.
  std::optional<EtcdLeaderKey> leader_key() const;
  // The registered nodes, from the mirror, by id.
  std::vector<NodeRecord> Members() const;
  PrefixMirror& members_mirror() { return *members_; }

 private:
  ClusterNode(const NodeOptions& options, std::unique_ptr<EtcdClient> etcd);
  // Grants a lease and creates the node's key under it (waiting for an old holder to go).
  Status Register(uint32_t wait_ms);
  void KeepAliveLoop();
  void ElectionLoop();
  // Sleeps up to `ms` or until stopping; false when stopping.
  bool Sleep(uint32_t ms);

  const NodeOptions options_;
  const ClusterKeys keys_;
  std::unique_ptr<EtcdClient> etcd_;
  std::unique_ptr<PrefixMirror> members_;
  const int64_t started_unix_ms_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;                          // guarded by mu_
  int64_t lease_ = 0;                          // guarded by mu_; 0 while not registered
  int64_t lease_ttl_s_ = 0;                    // guarded by mu_: as granted
  std::chrono::steady_clock::time_point lease_until_{};  // guarded by mu_
  uint64_t incarnation_ = 0;                   // guarded by mu_
  std::optional<EtcdLeaderKey> leader_;        // guarded by mu_
  std::thread keepalive_thread_;
  std::thread election_thread_;
};

}  // namespace strata::cluster
