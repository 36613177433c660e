#include "cluster/admin.h"

#include <chrono>

#include "cluster/keys.h"

namespace strata::cluster {

using Json = nlohmann::ordered_json;

Status CreateClusterCollection(EtcdClient& etcd, const std::string& cluster,
                               CollectionRecord record) {
  STRATA_RETURN_IF_ERROR(ValidateName("cluster name", cluster));
  STRATA_RETURN_IF_ERROR(record.Validate());
  if (record.created_unix_ms == 0) {
    record.created_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
  }
  const ClusterKeys keys(cluster);
  const std::string key = keys.collection(record.name);
  const std::string placement = keys.placement(record.name);
  // A name dropped a moment ago: its placement and the replicas' reports go after its record
  // (the leader deletes the placement, each node drops its shard collections, then withdraws
  // its reports). A record created meanwhile would adopt the old shards: refuse until they are
  // gone. (The placement is compared in the transaction; the reports are read just before it,
  // and a node withdraws them only after the placement is gone.)
  auto in_progress = [&](std::string_view what) {
    return AlreadyExists("cluster '{}': the drop of collection '{}' is still in progress ({} "
                         "still there); create it again once they are gone",
                         cluster, record.name, what);
  };
  auto exists = [&] {
    return AlreadyExists("cluster '{}' has a collection '{}' already", cluster, record.name);
  };
  STRATA_ASSIGN_OR_RETURN(auto existing, etcd.Get(key));
  if (existing) return exists();  // (its replicas report on it)
  STRATA_ASSIGN_OR_RETURN(EtcdRangeResult reports,
                          etcd.GetPrefix(keys.replicas() + record.name + "/"));
  if (!reports.kvs.empty()) {
    return in_progress(fmt::format("{} replica report(s)", reports.kvs.size()));
  }
  STRATA_ASSIGN_OR_RETURN(EtcdTxnResult txn,
                          etcd.Txn({.compare = {EtcdCompare::Absent(key), EtcdCompare::Absent(placement)},
                                    .success = {EtcdOp::Put(key, record.ToJson())}}));
  if (!txn.succeeded) {
    STRATA_ASSIGN_OR_RETURN(existing, etcd.Get(key));
    return existing ? exists() : in_progress("its placement");
  }
  return Status::Ok();
}

bool ClusterStatus::AllReady() const {
  for (const CollectionStatus& c : collections) {
    if (!c.placement_epoch) return false;
    for (const ShardStatus& s : c.shards) {
      if (s.placement.in_sync.size() != s.placement.replicas.size()) return false;
      if (s.reports.size() != s.placement.replicas.size()) return false;
      for (const ReplicaReport& r : s.reports) {
        if (r.state != "ready") return false;
      }
    }
  }
  return true;
}

Result<ClusterStatus> ReadClusterStatus(EtcdClient& etcd, const std::string& cluster) {
  STRATA_RETURN_IF_ERROR(ValidateName("cluster name", cluster));
  const ClusterKeys keys(cluster);
  STRATA_ASSIGN_OR_RETURN(EtcdRangeResult all, etcd.GetPrefix(keys.root));
  ClusterStatus st;
  st.cluster = cluster;
  st.etcd = etcd.preferred().url;
  st.revision = all.revision;
  std::map<std::string, Placement> placements;
  std::map<std::string, ReplicaReport> reports;  // by key
  int64_t leader_rev = 0;
  for (const EtcdKeyValue& kv : all.kvs) {
    const std::string& k = kv.key;
    if (k.starts_with(keys.nodes())) {
      auto r = NodeRecord::FromKeyValue(kv);
      if (!r) {
        st.problems.push_back(k + ": " + r.error().message());
        continue;
      }
      st.nodes.push_back({*r, -1, false});
    } else if (k.starts_with(keys.election() + "/")) {
      // The oldest election key leads.
      if (leader_rev == 0 || kv.create_revision < leader_rev) {
        leader_rev = kv.create_revision;
        st.leader = kv.value;
      }
    } else if (k.starts_with(keys.collections())) {
      auto r = CollectionRecord::FromJson(kv.value);
      if (!r) {
        st.problems.push_back(k + ": " + r.error().message());
        continue;
      }
      st.collections.push_back({*r, std::nullopt, {}});
    } else if (k.starts_with(keys.placements())) {
      auto p = Placement::FromJson(kv.value);
      if (!p) {
        st.problems.push_back(k + ": " + p.error().message());
        continue;
      }
      placements[p->collection] = *p;
    } else if (k.starts_with(keys.replicas())) {
      auto r = ReplicaReport::FromJson(kv.value);
      if (!r) {
        st.problems.push_back(k + ": " + r.error().message());
        continue;
      }
      reports[k] = *r;
    }
  }
  for (NodeStatus& n : st.nodes) {
    n.leader = n.record.id == st.leader;
    if (auto ttl = etcd.LeaseTimeToLive(n.record.lease)) n.lease_ttl_left_s = *ttl;
  }
  for (CollectionStatus& c : st.collections) {
    auto p = placements.find(c.record.name);
    if (p == placements.end()) continue;
    c.placement_epoch = p->second.epoch;
    for (const ShardPlacement& sp : p->second.shards) {
      ShardStatus s;
      s.placement = sp;
      for (const std::string& node : sp.replicas) {
        auto r = reports.find(keys.replica(c.record.name, sp.shard, node));
        if (r != reports.end()) s.reports.push_back(r->second);
      }
      c.shards.push_back(std::move(s));
    }
  }
  return st;
}

Json ClusterStatus::ToJson() const {
  Json j;
  j["cluster"] = cluster;
  j["etcd"] = etcd;
  j["revision"] = revision;
  j["leader"] = leader;
  j["nodes"] = Json::array();
  for (const NodeStatus& n : nodes) {
    j["nodes"].push_back({{"id", n.record.id},
                          {"advertise", n.record.advertise},
                          {"leader", n.leader},
                          {"incarnation", n.record.incarnation},
                          {"lease", fmt::format("{:x}", n.record.lease)},
                          {"lease_ttl_left_s", n.lease_ttl_left_s},
                          {"version", n.record.version}});
  }
  j["collections"] = Json::array();
  for (const CollectionStatus& c : collections) {
    Json cj = {{"name", c.record.name},
               {"dim", c.record.dim},
               {"metric", std::string(MetricName(c.record.metric))},
               {"shards", c.record.shards},
               {"replicas", c.record.replicas},
               {"codes", std::string(VectorCodesName(c.record.codes))},
               {"placed", c.placement_epoch.has_value()}};
    if (c.placement_epoch) cj["epoch"] = *c.placement_epoch;
    cj["shard_status"] = Json::array();
    for (const ShardStatus& s : c.shards) {
      Json sj = {{"shard", s.placement.shard}, {"replicas", s.placement.replicas}};
      sj["in_sync"] = Json::array();
      for (const ReplicaRef& r : s.placement.in_sync) {
        sj["in_sync"].push_back({{"node", r.node}, {"incarnation", r.incarnation}});
      }
      sj["catching_up"] = Json::array();
      for (const ReplicaRef& r : s.placement.catching_up) {
        sj["catching_up"].push_back({{"node", r.node}, {"incarnation", r.incarnation}, {"since", r.since}});
      }
      sj["write_epoch"] = s.placement.write_epoch;
      uint64_t newest = 0;
      for (const ReplicaReport& r : s.reports) newest = std::max(newest, r.last_sequence);
      sj["reports"] = Json::array();
      for (const ReplicaReport& r : s.reports) {
        sj["reports"].push_back({{"node", r.node},
                                 {"incarnation", r.incarnation},
                                 {"state", r.state},
                                 {"num_vectors", r.num_vectors},
                                 {"last_sequence", r.last_sequence},
                                 {"lag_batches", newest - r.last_sequence},
                                 {"caught_up_epoch", r.caught_up_epoch}});
      }
      cj["shard_status"].push_back(std::move(sj));
    }
    j["collections"].push_back(std::move(cj));
  }
  j["problems"] = problems;
  j["all_ready"] = AllReady();
  return j;
}

std::string ClusterStatus::ToText() const {
  std::string out = fmt::format("cluster '{}' (etcd {}, revision {}): {} nodes, leader {}\n",
                                cluster, etcd, revision, nodes.size(),
                                leader.empty() ? "(none)" : leader);
  for (const NodeStatus& n : nodes) {
    out += fmt::format("  node {:<12} {:<22} incarnation {:<3} lease {:x} ttl {}{}\n", n.record.id,
                       n.record.advertise, n.record.incarnation, n.record.lease,
                       n.lease_ttl_left_s >= 0 ? fmt::format("{} s", n.lease_ttl_left_s)
                                               : std::string("?"),
                       n.leader ? "  (leader)" : "");
  }
  for (const CollectionStatus& c : collections) {
    out += fmt::format("collection '{}': dim {} {}{}, {} shards x {} replicas, {}\n", c.record.name,
                       c.record.dim, MetricName(c.record.metric),
                       c.record.codes == VectorCodes::kNone
                           ? std::string()
                           : fmt::format(", codes {}", VectorCodesName(c.record.codes)),
                       c.record.shards, c.record.replicas,
                       c.placement_epoch ? fmt::format("placement epoch {}", *c.placement_epoch)
                                         : std::string("not placed yet"));
    for (const ShardStatus& s : c.shards) {
      std::string replicas, in_sync, reports;
      for (const std::string& r : s.placement.replicas) replicas += (replicas.empty() ? "" : ",") + r;
      for (const ReplicaRef& r : s.placement.in_sync) {
        in_sync += (in_sync.empty() ? "" : ",") + fmt::format("{}#{}", r.node, r.incarnation);
      }
      for (const ReplicaRef& r : s.placement.catching_up) {
        in_sync += fmt::format(" (catching up: {}#{} since epoch {})", r.node, r.incarnation, r.since);
      }
      uint64_t newest = 0;
      for (const ReplicaReport& r : s.reports) newest = std::max(newest, r.last_sequence);
      for (const ReplicaReport& r : s.reports) {
        reports += fmt::format(" {}={}/{} vectors/lag {}", r.node, r.state, r.num_vectors,
                               newest - r.last_sequence);
      }
      out += fmt::format("  shard {:<3} replicas {:<16} in sync {:<20}{}\n", s.placement.shard,
                         replicas, in_sync, reports);
    }
  }
  for (const std::string& p : problems) out += "problem: " + p + "\n";
  return out;
}

}  // namespace strata::cluster
