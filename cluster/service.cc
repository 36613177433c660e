#include "cluster/service.h"

#include <algorithm>
#include <chrono>
#include <set>

#include "cluster/log.h"
#include "engine/strata.h"

namespace strata::cluster {

using Clock = std::chrono::steady_clock;

ClusterService::ClusterService(std::unique_ptr<ClusterNode> node, Engine& engine,
                               const ServiceOptions& options)
    : node_(std::move(node)), engine_(engine), options_(options), gate_(engine), copies_(engine, gate_) {}

Result<std::unique_ptr<ClusterService>> ClusterService::Start(const NodeOptions& node_options,
                                                              Engine& engine,
                                                              const ServiceOptions& options) {
  STRATA_ASSIGN_OR_RETURN(auto node, ClusterNode::Start(node_options));
  std::unique_ptr<ClusterService> s(new ClusterService(std::move(node), engine, options));
  auto wake = [p = s.get()](const PrefixMirror::View&) { p->Wake(); };
  STRATA_ASSIGN_OR_RETURN(s->collections_,
                          PrefixMirror::Start(s->node_->etcd(), s->node_->keys().collections(), wake));
  STRATA_ASSIGN_OR_RETURN(s->placement_,
                          PrefixMirror::Start(s->node_->etcd(), s->node_->keys().placements(), wake));
  STRATA_ASSIGN_OR_RETURN(s->reports_,
                          PrefixMirror::Start(s->node_->etcd(), s->node_->keys().replicas(), wake));
  s->thread_ = std::thread([p = s.get()] { p->Run(); });
  return s;
}

ClusterService::~ClusterService() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  gate_.CancelCatchUps();  // a long copy stops at its next piece instead of holding the exit up
  if (thread_.joinable()) thread_.join();
  if (catchup_thread_.joinable()) catchup_thread_.join();
  // The mirrors call Wake: stop them before anything else goes.
  reports_.reset();
  placement_.reset();
  collections_.reset();
  node_.reset();
}

void ClusterService::Wake() {
  {
    std::lock_guard lock(mu_);
    dirty_ = true;
  }
  wake_.notify_all();
}

Result<Placement> ClusterService::PlacementOf(const std::string& collection) const {
  auto view = placement_->view();
  auto it = view->kvs.find(node_->keys().placement(collection));
  if (it == view->kvs.end()) {
    return Error(NotFound("collection '{}' has no placement (yet)", collection));
  }
  return Placement::FromJson(it->second.value);
}

void ClusterService::Run() {
  auto next_figures = Clock::now();
  for (;;) {
    {
      std::unique_lock lock(mu_);
      wake_.wait_for(lock, std::chrono::milliseconds(options_.poll_ms),
                     [&] { return stop_ || dirty_; });
      if (stop_) return;
      dirty_ = false;
    }
    ReconcileAsLeader();
    bool figures = Clock::now() >= next_figures;
    {
      std::lock_guard lock(mu_);
      figures = figures || force_report_;
      force_report_ = false;
      if (!catchup_running_ && catchup_thread_.joinable()) catchup_thread_.join();
    }
    if (figures) next_figures = Clock::now() + std::chrono::milliseconds(options_.report_every_ms);
    ReconcileReplicas(figures);
  }
}

void ClusterService::ReconcileAsLeader() {
  const auto token = node_->leader_key();
  if (!token) {
    short_since_.clear();  // a leader again later starts the grace periods afresh
    return;
  }
  const ClusterKeys& keys = node_->keys();
  LiveNodes live;
  for (const NodeRecord& r : node_->Members()) live[r.id] = r.incarnation;
  if (live.empty()) return;  // the registry mirror is not up yet

  auto collections = collections_->view();
  auto placements = placement_->view();
  std::map<std::string, uint32_t> load;
  for (const auto& [key, kv] : placements->kvs) {
    if (auto p = Placement::FromJson(kv.value)) {
      for (const ShardPlacement& s : p->shards) {
        for (const std::string& n : s.replicas) ++load[n];
      }
    }
  }
  const EtcdCompare fence = EtcdCompare::CreateRevisionIs(token->key, token->rev);
  // Grace periods of collections dropped since (a name created again starts afresh).
  std::erase_if(short_since_, [&](const auto& kv) {
    return !collections->kvs.contains(keys.collection(kv.first.first));
  });

  for (const auto& [key, kv] : collections->kvs) {
    auto record = CollectionRecord::FromJson(kv.value);
    if (!record) {
      ClusterLog().warn("{}: {}", key, record.error().ToString());
      continue;
    }
    const std::string pkey = keys.placement(record->name);
    auto existing = placements->kvs.find(pkey);
    if (existing == placements->kvs.end()) {
      // Epochs start at the record's creation revision: a name dropped and created again
      // never reuses the old collection's epochs (model.h).
      auto placed = PlaceCollection(*record, live, load, uint64_t(std::max<int64_t>(kv.create_revision, 1)));
      if (!placed) {
        const std::string why = placed.error().ToString();
        if (place_failures_[record->name] != why) {
          ClusterLog().warn("cannot place collection '{}' yet: {}", record->name, why);
          place_failures_[record->name] = why;
        }
        continue;
      }
      place_failures_.erase(record->name);
      auto txn = node_->etcd().Txn({.compare = {fence, EtcdCompare::Absent(pkey)},
                                    .success = {EtcdOp::Put(pkey, placed->ToJson())}});
      if (!txn) {
        ClusterLog().warn("placing collection '{}': {}", record->name, txn.error().ToString());
      } else if (txn->succeeded) {
        for (const ShardPlacement& s : placed->shards) {
          for (const std::string& n : s.replicas) ++load[n];
        }
        std::string summary;
        for (const ShardPlacement& s : placed->shards) {
          summary += fmt::format(" s{}:", s.shard);
          for (size_t i = 0; i < s.replicas.size(); ++i) summary += (i ? "," : "") + s.replicas[i];
        }
        ClusterLog().info("placed collection '{}' ({} shards x {} replicas):{}", record->name,
                          record->shards, record->replicas, summary);
      }
      continue;
    }
    auto placement = Placement::FromJson(existing->second.value);
    if (!placement) {
      ClusterLog().warn("{}: {}", pkey, placement.error().ToString());
      continue;
    }
    Placement next = *placement;
    bool changed = UpdateInSync(next, live, next.epoch + 1);
    // Re-replication: shards short of live replicas for longer than the grace period.
    {
      const auto now = Clock::now();
      std::set<uint32_t> shorts;
      for (uint32_t s : ShortShards(next, record->replicas, live)) {
        shorts.insert(s);
        short_since_.try_emplace({record->name, s}, now);
      }
      for (auto it = short_since_.lower_bound({record->name, 0});
           it != short_since_.end() && it->first.first == record->name;) {
        it = shorts.contains(it->first.second) ? std::next(it) : short_since_.erase(it);
      }
      const auto grace = std::chrono::milliseconds(options_.rereplicate_after_ms);
      auto replaced = Rereplicate(next, record->replicas, live, load, [&](uint32_t s) {
        return now - short_since_.at({record->name, s}) >= grace;
      });
      for (const Replacement& r : replaced) {
        ClusterLog().info("collection '{}' shard {} had fewer live replicas than {} for {} ms: "
                          "node {} replaces {} and catches up",
                          record->name, r.shard, record->replicas, options_.rereplicate_after_ms,
                          r.added, r.removed.empty() ? "nothing" : r.removed);
        short_since_.erase({record->name, r.shard});
        changed = true;
      }
    }
    ShardReports reports(next.shards.size());
    {
      auto reported = reports_->view();
      for (size_t s = 0; s < next.shards.size(); ++s) {
        for (const std::string& n : next.shards[s].replicas) {
          auto it = reported->kvs.find(keys.replica(record->name, uint32_t(s), n));
          if (it == reported->kvs.end()) continue;
          if (auto r = ReplicaReport::FromJson(it->second.value)) reports[s][n] = std::move(*r);
        }
      }
    }
    changed = UpdateCatchUp(next, live, reports, next.epoch + 1) || changed;
    if (!changed) continue;
    ++next.epoch;
    auto txn = node_->etcd().Txn(
        {.compare = {fence, EtcdCompare::ModRevisionIs(pkey, existing->second.mod_revision)},
         .success = {EtcdOp::Put(pkey, next.ToJson())}});
    if (!txn) {
      ClusterLog().warn("updating the in-sync sets of '{}': {}", record->name,
                        txn.error().ToString());
      continue;
    }
    if (!txn->succeeded) continue;  // lost the leadership, or a newer placement: next round
    for (size_t s = 0; s < next.shards.size(); ++s) {
      if (next.shards[s].in_sync == placement->shards[s].in_sync &&
          next.shards[s].catching_up == placement->shards[s].catching_up &&
          next.shards[s].replicas == placement->shards[s].replicas) {
        continue;
      }
      std::string before, after;
      for (const ReplicaRef& r : placement->shards[s].in_sync) before += fmt::format(" {}#{}", r.node, r.incarnation);
      for (const ReplicaRef& r : placement->shards[s].catching_up) before += fmt::format(" +{}#{}", r.node, r.incarnation);
      for (const ReplicaRef& r : next.shards[s].in_sync) after += fmt::format(" {}#{}", r.node, r.incarnation);
      for (const ReplicaRef& r : next.shards[s].catching_up) after += fmt::format(" +{}#{}", r.node, r.incarnation);
      std::string nodes;
      for (const std::string& n : next.shards[s].replicas) nodes += " " + n;
      ClusterLog().info("collection '{}' shard {} in sync (+ catching up):{} ->{} (epoch {}; replicas{})",
                        record->name, s, before, after, next.epoch, nodes);
    }
  }
  DeleteDroppedPlacements(fence);
}

void ClusterService::DeleteDroppedPlacements(const EtcdCompare& fence) {
  const ClusterKeys& keys = node_->keys();
  auto collections = collections_->view();
  auto placements = placement_->view();
  for (const auto& [pkey, kv] : placements->kvs) {
    const std::string name = pkey.substr(keys.placements().size());
    const std::string ckey = keys.collection(name);
    if (collections->kvs.contains(ckey)) continue;
    // Dropped (its record deleted: ClusterRouter::Drop). etcd checks that the record is
    // absent, in the same transaction: this node's mirrors may lag one another.
    auto txn = node_->etcd().Txn(
        {.compare = {fence, EtcdCompare::Absent(ckey), EtcdCompare::ModRevisionIs(pkey, kv.mod_revision)},
         .success = {EtcdOp::Delete(pkey)}});
    if (!txn) {
      ClusterLog().warn("deleting the placement of dropped collection '{}': {}", name,
                        txn.error().ToString());
    } else if (txn->succeeded) {
      ClusterLog().info("collection '{}' was dropped: its placement is deleted", name);
    }
  }
}

void ClusterService::DropDroppedShards() {
  const ClusterKeys& keys = node_->keys();
  auto collections = collections_->view();
  auto placements = placement_->view();
  for (auto it = held_.begin(); it != held_.end();) {
    const auto& [local, where] = *it;
    const auto& [name, shard] = where;
    if (collections->kvs.contains(keys.collection(name)) || placements->kvs.contains(keys.placement(name))) {
      ++it;
      continue;
    }
    // The record and then the placement are gone: the collection was dropped.
    Status st = engine_.DropCollection(local);
    if (!st.ok() && st.code() != StatusCode::kNotFound) {
      ClusterLog().warn("dropping shard collection {} of dropped collection '{}': {} (retrying)",
                        local, name, st.ToString());
      ++it;
      continue;
    }
    gate_.Dropped(local);  // its fence too: a collection created again starts at epoch 1
    const std::string rkey = keys.replica(name, shard, node_->options().node_id);
    if (auto del = node_->etcd().Delete(rkey); !del) {
      ClusterLog().warn("withdrawing report {}: {} (retrying)", rkey, del.error().ToString());
      ++it;
      continue;
    }
    reported_.erase(rkey);
    {
      std::lock_guard lock(mu_);
      caught_up_.erase(local);
    }
    ClusterLog().info("node {} dropped shard {} of dropped collection '{}' (engine collection {})",
                      node_->options().node_id, shard, name, local);
    it = held_.erase(it);
  }
}

void ClusterService::ReconcileReplicas(bool refresh_figures) {
  if (!node_->LeaseHeld()) return;
  DropDroppedShards();
  const int64_t lease = node_->lease();
  const uint64_t incarnation = node_->incarnation();
  const std::string& me = node_->options().node_id;
  const ClusterKeys& keys = node_->keys();
  auto collections = collections_->view();
  auto placements = placement_->view();
  for (const auto& [pkey, kv] : placements->kvs) {
    auto placement = Placement::FromJson(kv.value);
    if (!placement) continue;
    auto ckv = collections->kvs.find(keys.collection(placement->collection));
    if (ckv == collections->kvs.end()) continue;
    auto record = CollectionRecord::FromJson(ckv->second.value);
    if (!record) continue;
    for (const ShardPlacement& s : placement->shards) {
      if (std::find(s.replicas.begin(), s.replicas.end(), me) == s.replicas.end()) {
        // A shard collection of a replica that was replaced while this node was gone
        // (Rereplicate): kept out of the placement, so never read nor written; its data stays
        // on disk, left to the operator (this node cannot tell it made it).
        const std::string local = LocalShardName(record->name, s.shard);
        if (!stale_logged_.contains(local) && engine_.DescribeCollection(local)) {
          std::string holders;
          for (const std::string& n : s.replicas) holders += " " + n;
          ClusterLog().warn("node {} holds engine collection {} but the placement of '{}' (epoch "
                            "{}) gives shard {} to{}: it is not used; drop it by hand to free "
                            "its disk",
                            me, local, record->name, placement->epoch, s.shard, holders);
          stale_logged_[local] = placement->epoch;
        }
        continue;
      }
      const std::string local = LocalShardName(record->name, s.shard);
      const std::string rkey = keys.replica(record->name, s.shard, me);
      held_[local] = {record->name, s.shard};
      stale_logged_.erase(local);
      ReplicaReport report;
      report.node = me;
      report.incarnation = incarnation;
      auto info = engine_.DescribeCollection(local);
      if (!info && info.error().code() == StatusCode::kNotFound) {
        if (Status st = engine_.CreateCollection(record->ShardSpec(s.shard)); !st.ok()) {
          report.state = "error: " + st.ToString();
        } else {
          ClusterLog().info("node {} holds shard {} of '{}' (engine collection {})", me, s.shard,
                            record->name, local);
          info = engine_.DescribeCollection(local);
        }
      }
      if (report.state.empty()) {
        if (!info) {
          report.state = "error: " + info.error().ToString();
        } else {
          report.state = "ready";
          report.num_vectors = info->num_vectors;
          report.last_sequence = info->last_sequence;
        }
      }
      // Catch-up: this incarnation listed as catching up, and not caught up for that epoch yet.
      const ReplicaRef* catching = nullptr;
      for (const ReplicaRef& r : s.catching_up) {
        if (r.node == me && r.incarnation == incarnation) catching = &r;
      }
      {
        std::lock_guard lock(mu_);
        if (auto c = caught_up_.find(local); c != caught_up_.end()) report.caught_up_epoch = c->second;
        if (catching != nullptr && info && report.caught_up_epoch < catching->since &&
            !catchup_running_ && !catchup_thread_.joinable()) {
          // From the first in-sync replica that is registered (not this node).
          std::string peer;
          for (const ReplicaRef& r : s.in_sync) {
            if (r.node != me && AddressOf(r.node)) {
              peer = r.node;
              break;
            }
          }
          if (!peer.empty()) {
            catchup_running_ = true;
            catchup_thread_ = std::thread(
                [this, a = MakeShardAddress(record->name, s.shard, catching->since), peer] {
                  RunCatchUp(a, peer);
                });
          }
        }
        if (catching == nullptr && std::any_of(s.in_sync.begin(), s.in_sync.end(), [&](const ReplicaRef& r) {
              return r.node == me && r.incarnation == incarnation;
            })) {
          gate_.Forget(local);
        }
      }
      auto last = reported_.find(rkey);
      const std::string tag = fmt::format("{}:", lease);
      // Figures change with every write: refresh them every report_every_ms only.
      if (last != reported_.end() && last->second.starts_with(tag) && !refresh_figures) continue;
      const std::string json = report.ToJson();
      if (last != reported_.end() && last->second == tag + json) continue;
      if (auto put = node_->etcd().Put(rkey, json, lease); put) {
        reported_[rkey] = tag + json;
      } else {
        ClusterLog().warn("reporting {}: {}", rkey, put.error().ToString());
      }
    }
  }
}

}  // namespace strata::cluster

namespace strata::cluster {

std::optional<std::string> ClusterService::AddressOf(const std::string& node) const {
  for (const NodeRecord& r : node_->Members()) {
    if (r.id == node) return r.advertise;
  }
  return std::nullopt;
}

void ClusterService::RunCatchUp(ShardAddress address, std::string peer) {
  // A catch-up copies a shard through the engine: background work, off the searches' CPU.
  if (Status s = engine_.RunAsBackground(); !s.ok()) ClusterLog().warn("catch-up thread: {}", s.message());
  const auto start = Clock::now();
  Status status;
  CatchUpReport report;
  if (auto at = AddressOf(peer); !at) {
    status = IOError("node {} is not registered", peer);
  } else {
    const size_t colon = at->rfind(':');
    std::string host = at->substr(0, colon);
    if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    auto client = client::Client::Connect(
        host, static_cast<uint16_t>(std::atoi(at->c_str() + colon + 1)), {});
    if (!client) {
      status = client.error();
    } else if (auto r = options_.catch_up == ServiceOptions::CatchUpMode::kFiles
                            ? gate_.CatchUpFromFiles(address, **client)
                            : gate_.CatchUp(address, **client);
               !r) {
      status = r.error();
    } else {
      report = *r;
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!status.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(500));  // before a retry
  {
    std::lock_guard lock(mu_);
    if (status.ok()) {
      caught_up_[address.local] = address.epoch;
      force_report_ = true;
      dirty_ = true;
    }
    catchup_running_ = false;
  }
  if (status.ok() && options_.catch_up == ServiceOptions::CatchUpMode::kFiles) {
    ClusterLog().info("caught up {} from {} (catch-up of epoch {}) in {:.3f} s: {} files, {} bytes copied, "
                      "{} vectors; {} records written live meanwhile carried over into the copy (the peer's "
                      "copy {:.3f} s, transfer {:.3f} s, open {:.3f} s, swap and carry-over {:.3f} s)",
                      address.local, peer, address.epoch, seconds, report.files, report.bytes, report.vectors,
                      report.carried, report.offer_s, report.copy_s, report.open_s, report.carry_s);
  } else if (status.ok()) {
    ClusterLog().info("caught up {} from {} (catch-up of epoch {}) in {:.3f} s: {} ids listed, {} "
                      "held already, {} copied ({} of them by key repaired: the key or id was held otherwise here), "
                      "{} written live meanwhile, {} deleted",
                      address.local, peer, address.epoch, seconds, report.listed, report.same,
                      report.copied, report.repaired, report.skipped, report.deleted);
  } else {
    ClusterLog().warn("catch-up of {} from {} failed after {:.3f} s (retrying): {}", address.local,
                      peer, seconds, status.ToString());
  }
  wake_.notify_all();
}

}  // namespace strata::cluster
