#include "cluster/node.h"

#include <nlohmann/json.hpp>

#include "cluster/log.h"

#ifndef STRATA_VERSION
#define STRATA_VERSION "unknown"
#endif

namespace strata::cluster {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

Status ValidateName(std::string_view what, std::string_view name) {
  if (name.empty() || name.size() > 64) {
    return InvalidArgument("{} '{}' must have 1 to 64 characters", what, name);
  }
  if (name == "." || name == "..") return InvalidArgument("{} must not be '{}'", what, name);
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return InvalidArgument("{} '{}' may hold only [A-Za-z0-9._-]", what, name);
  }
  return Status::Ok();
}

std::string NodeRecord::ToJson() const {
  return json{{"id", id},
              {"advertise", advertise},
              {"lease", std::to_string(lease)},
              {"version", version},
              {"started_unix_ms", started_unix_ms}}
      .dump();
}

Result<NodeRecord> NodeRecord::FromKeyValue(const EtcdKeyValue& kv) {
  STRATA_ASSIGN_OR_RETURN(NodeRecord r, FromJson(kv.value));
  r.incarnation = static_cast<uint64_t>(kv.create_revision);
  return r;
}

Result<NodeRecord> NodeRecord::FromJson(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Error(Corruption("node record is not a JSON object: '{}'", text.substr(0, 120)));
  }
  NodeRecord r;
  try {
    r.id = j.at("id").get<std::string>();
    r.advertise = j.at("advertise").get<std::string>();
    r.lease = std::stoll(j.value("lease", std::string("0")));
    r.version = j.value("version", std::string());
    r.started_unix_ms = j.value("started_unix_ms", int64_t{0});
  } catch (const std::exception& e) {
    return Error(Corruption("node record '{}': {}", text.substr(0, 120), e.what()));
  }
  return r;
}

namespace {

Status ValidateOptions(const NodeOptions& o) {
  if (o.etcd.empty()) return InvalidArgument("cluster: no etcd endpoint (--cluster-etcd)");
  STRATA_RETURN_IF_ERROR(ValidateName("cluster name", o.cluster));
  STRATA_RETURN_IF_ERROR(ValidateName("node id", o.node_id));
  const size_t colon = o.advertise.rfind(':');
  if (o.advertise.empty() || colon == std::string::npos || colon == 0 ||
      colon + 1 == o.advertise.size()) {
    return InvalidArgument("cluster: advertise address '{}' must be HOST:PORT", o.advertise);
  }
  if (o.lease_ttl_s == 0) return InvalidArgument("cluster: the lease TTL must be >= 1 s");
  if (o.etcd_timeout_ms == 0) return InvalidArgument("cluster: the etcd timeout must be > 0");
  return Status::Ok();
}

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

ClusterNode::ClusterNode(const NodeOptions& options, std::unique_ptr<EtcdClient> etcd)
    : options_(options), keys_(options.cluster), etcd_(std::move(etcd)), started_unix_ms_(UnixMs()) {}

Result<std::unique_ptr<ClusterNode>> ClusterNode::Start(const NodeOptions& options) {
  STRATA_RETURN_IF_ERROR(ValidateOptions(options));
  STRATA_ASSIGN_OR_RETURN(auto etcd,
                          EtcdClient::Create(options.etcd, {.timeout_ms = options.etcd_timeout_ms}));
  std::unique_ptr<ClusterNode> node(new ClusterNode(options, std::move(etcd)));
  STRATA_RETURN_IF_ERROR(node->Register(options.register_wait_ms ? options.register_wait_ms
                                                                 : 2000 * options.lease_ttl_s));
  auto members = PrefixMirror::Start(*node->etcd_, node->keys_.nodes());
  if (!members) {
    (void)node->etcd_->LeaseRevoke(node->lease());
    return Error(members.error());
  }
  node->members_ = std::move(*members);
  node->keepalive_thread_ = std::thread([n = node.get()] { n->KeepAliveLoop(); });
  node->election_thread_ = std::thread([n = node.get()] { n->ElectionLoop(); });
  ClusterLog().info("node {} joined cluster '{}' through {} (advertise {}, lease {:x}, TTL {} s)",
                    options.node_id, options.cluster, node->etcd_->preferred().url,
                    options.advertise, node->lease(), options.lease_ttl_s);
  return node;
}

ClusterNode::~ClusterNode() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (keepalive_thread_.joinable()) keepalive_thread_.join();
  if (election_thread_.joinable()) election_thread_.join();
  std::optional<EtcdLeaderKey> leader;
  int64_t lease = 0;
  {
    std::lock_guard lock(mu_);
    leader = leader_;
    lease = lease_;
  }
  if (leader) {
    if (Status s = etcd_->Resign(*leader); !s.ok()) {
      ClusterLog().warn("node {}: resigning the leadership: {}", options_.node_id, s.ToString());
    }
  }
  // Revoking the lease deletes the registration (and any election key) at once.
  if (lease != 0) {
    if (Status s = etcd_->LeaseRevoke(lease); !s.ok() && s.code() != StatusCode::kNotFound) {
      ClusterLog().warn("node {}: revoking lease {:x}: {} (it lapses in {} s)", options_.node_id,
                        lease, s.ToString(), options_.lease_ttl_s);
    }
  }
  const bool joined = members_ != nullptr;
  members_.reset();
  if (joined) ClusterLog().info("node {} left cluster '{}'", options_.node_id, options_.cluster);
}

bool ClusterNode::Sleep(uint32_t ms) {
  std::unique_lock lock(mu_);
  return !wake_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stop_; });
}

Status ClusterNode::Register(uint32_t wait_ms) {
  const bool first_start = incarnation() == 0;
  const std::string key = keys_.node(options_.node_id);
  const auto deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
  bool logged_wait = false;
  for (;;) {
    const auto sent = Clock::now();
    STRATA_ASSIGN_OR_RETURN(EtcdLease lease, etcd_->LeaseGrant(options_.lease_ttl_s));
    NodeRecord record;
    record.id = options_.node_id;
    record.advertise = options_.advertise;
    record.lease = lease.id;
    record.version = STRATA_VERSION;
    record.started_unix_ms = started_unix_ms_;
    auto txn = etcd_->Txn({.compare = {EtcdCompare::Absent(key)},
                           .success = {EtcdOp::Put(key, record.ToJson(), lease.id)},
                           .failure = {EtcdOp::Get(key)}});
    if (!txn) {
      (void)etcd_->LeaseRevoke(lease.id);
      return Error(txn.error());
    }
    if (txn->succeeded) {
      std::lock_guard lock(mu_);
      lease_ = lease.id;
      lease_ttl_s_ = lease.ttl_s;
      lease_until_ = sent + std::chrono::seconds(lease.ttl_s);
      incarnation_ = static_cast<uint64_t>(txn->revision);
      return Status::Ok();
    }
    (void)etcd_->LeaseRevoke(lease.id);
    std::string holder = "?";
    if (!txn->results.empty() && !txn->results[0].kvs.empty()) {
      const EtcdKeyValue& kv = txn->results[0].kvs[0];
      auto existing = NodeRecord::FromJson(kv.value);
      // Only at start: a node that registers again after its lease lapsed finds its key taken
      // only when another process has claimed its id (and address) meanwhile.
      if (first_start && existing && existing->advertise == options_.advertise &&
          options_.advertise.substr(options_.advertise.rfind(':') + 1) != "0") {
        // Our previous life (this address is ours now, so that process is gone): its lease
        // has not lapsed yet. Take the registration over.
        ClusterLog().info("node {}: removing the registration of its previous life (lease {:x})",
                          options_.node_id, kv.lease);
        (void)etcd_->LeaseRevoke(kv.lease);
        (void)etcd_->Txn({.compare = {EtcdCompare::ModRevisionIs(key, kv.mod_revision)},
                          .success = {EtcdOp::Delete(key)}});
        continue;
      }
      holder = existing ? fmt::format("{} (lease {:x})", existing->advertise, kv.lease)
                        : fmt::format("lease {:x}", kv.lease);
    }
    if (Clock::now() >= deadline) {
      return AlreadyExists(
          "node id '{}' is registered already in cluster '{}' by {}: another node has this id, "
          "or this node's previous registration has not lapsed within {} ms",
          options_.node_id, options_.cluster, holder, wait_ms);
    }
    if (!logged_wait) {
      ClusterLog().info("node {}: id registered by {}; waiting for it to lapse", options_.node_id,
                        holder);
      logged_wait = true;
    }
    if (!Sleep(200)) return Cancelled("stopping");
  }
}

bool ClusterNode::LeaseHeld() const {
  std::lock_guard lock(mu_);
  return lease_ != 0 && Clock::now() < lease_until_;
}

int64_t ClusterNode::lease() const {
  std::lock_guard lock(mu_);
  return lease_;
}

uint64_t ClusterNode::incarnation() const {
  std::lock_guard lock(mu_);
  return incarnation_;
}

bool ClusterNode::is_leader() const {
  std::lock_guard lock(mu_);
  return leader_.has_value() && lease_ != 0 && Clock::now() < lease_until_;
}

std::optional<EtcdLeaderKey> ClusterNode::leader_key() const {
  std::lock_guard lock(mu_);
  if (lease_ == 0 || Clock::now() >= lease_until_) return std::nullopt;
  return leader_;
}

std::vector<NodeRecord> ClusterNode::Members() const {
  std::vector<NodeRecord> out;
  if (!members_) return out;
  // Hold the view: a range-for over `view()->kvs` would let the temporary shared_ptr go before
  // the loop (C++20 lifetime rules), and the mirror may drop that view meanwhile.
  const std::shared_ptr<const PrefixMirror::View> view = members_->view();
  for (const auto& [key, kv] : view->kvs) {
    if (auto r = NodeRecord::FromKeyValue(kv)) out.push_back(std::move(*r));
  }
  return out;
}

void ClusterNode::KeepAliveLoop() {
  bool logged_failure = false;
  for (;;) {
    int64_t lease = 0;
    int64_t ttl_s = 0;
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      lease = lease_;
      ttl_s = lease_ttl_s_;
    }
    if (lease == 0) {
      // Registering again after the lease was lost.
      if (Status s = Register(2000 * options_.lease_ttl_s); !s.ok()) {
        if (s.code() == StatusCode::kCancelled) return;
        ClusterLog().warn("node {}: registering again: {}", options_.node_id, s.ToString());
        if (!Sleep(500)) return;
        continue;
      }
      ClusterLog().info("node {} registered again (incarnation {}, lease {:x})", options_.node_id,
                        incarnation(), this->lease());
      wake_.notify_all();
      continue;
    }
    const uint32_t interval_ms = logged_failure ? 200 : static_cast<uint32_t>(ttl_s * 1000 / 3);
    if (!Sleep(interval_ms)) return;
    const auto sent = Clock::now();
    auto ttl = etcd_->LeaseKeepAlive(lease);
    if (ttl) {
      std::lock_guard lock(mu_);
      if (lease_ == lease) lease_until_ = sent + std::chrono::seconds(*ttl);
      if (logged_failure) ClusterLog().info("node {}: lease renewed again", options_.node_id);
      logged_failure = false;
      continue;
    }
    if (ttl.error().code() == StatusCode::kNotFound) {
      ClusterLog().warn("node {}: lease {:x} lapsed ({}); it left the cluster, registering again",
                        options_.node_id, lease, ttl.error().message());
      {
        std::lock_guard lock(mu_);
        if (lease_ == lease) {
          lease_ = 0;
          leader_.reset();
        }
      }
      wake_.notify_all();
      logged_failure = false;
      continue;
    }
    if (!logged_failure) {
      ClusterLog().warn("node {}: renewing lease {:x}: {} (retrying)", options_.node_id, lease,
                        ttl.error().ToString());
      logged_failure = true;
    }
  }
}

void ClusterNode::ElectionLoop() {
  for (;;) {
    int64_t lease = 0;
    std::optional<EtcdLeaderKey> leading;
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      lease = Clock::now() < lease_until_ ? lease_ : 0;
      leading = leader_;
    }
    if (leading) {
      // Still the leader? The key goes with the lease, or by hand.
      if (!Sleep(500)) return;
      auto current = etcd_->Leader(keys_.election());
      if (current && (!current->has_value() || (*current)->key != leading->key)) {
        ClusterLog().warn("node {} no longer leads cluster '{}'", options_.node_id,
                          options_.cluster);
        std::lock_guard lock(mu_);
        if (leader_ && leader_->key == leading->key) leader_.reset();
      }
      continue;
    }
    if (lease == 0) {
      if (!Sleep(100)) return;
      continue;
    }
    auto won = etcd_->Campaign(keys_.election(), lease, options_.node_id,
                               options_.campaign_timeout_ms);
    if (won) {
      std::lock_guard lock(mu_);
      if (!stop_ && lease_ == won->lease) {
        leader_ = *won;
        ClusterLog().info("node {} leads cluster '{}' (election key revision {})",
                          options_.node_id, options_.cluster, won->rev);
      }
      continue;
    }
    // A campaign that timed out is the normal wait of a follower: go again at once.
    if (won.error().message().find("timed out") == std::string::npos) {
      if (!Sleep(200)) return;
    }
  }
}

}  // namespace strata::cluster
