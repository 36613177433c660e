#include "cluster/router.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <type_traits>

#include <xxhash.h>

#include "cluster/keys.h"
#include "cluster/router_detail.h"
#include "cluster/node.h"

namespace strata::cluster {

uint32_t ShardOfId(VectorId id, uint32_t shards) {
  uint64_t z = id + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<uint32_t>(z % shards);
}

uint32_t ShardOfKey(std::string_view key, uint32_t shards) {
  return static_cast<uint32_t>(XXH64(key.data(), key.size(), 0) % shards);
}

Result<VectorId> ClusterKeyedId(uint32_t shard, VectorId local) {
  if (!IsKeyedId(local)) return local;
  const VectorId offset = local - kKeyedIdBase;
  if (offset >> kClusterKeyedLocalBits != 0 || shard >= kMaxShards) {
    return Error(OutOfRange("shard {}: keyed id {} is beyond the 2^{} keyed ids a shard may give "
                            "through the cluster (docs/CLUSTER.md)",
                            shard, local, kClusterKeyedLocalBits));
  }
  return kKeyedIdBase | (VectorId{shard} << kClusterKeyedLocalBits) | offset;
}

std::pair<uint32_t, VectorId> SplitClusterKeyedId(VectorId id) {
  const VectorId offset = id - kKeyedIdBase;
  return {static_cast<uint32_t>(offset >> kClusterKeyedLocalBits),
          kKeyedIdBase + (offset & ((VectorId{1} << kClusterKeyedLocalBits) - 1))};
}

namespace router_detail {

Status ToClusterId(const std::string& collection, uint32_t shard, VectorId& id) {
  auto cluster_id = ClusterKeyedId(shard, id);
  if (!cluster_id) return cluster_id.error().WithContext(fmt::format("collection '{}'", collection));
  id = *cluster_id;
  return Status::Ok();
}

bool Rerouted(const Status& error) {
  const std::string& m = error.message();
  return m.find("stale placement epoch") != std::string::npos ||
         m.find("is not the primary of") != std::string::npos;
}

protocol::Request Readdressed(const protocol::Request& request, const std::string& address) {
  protocol::Request out = request;
  std::visit([&](auto& m) {
    if constexpr (requires { m.collection; }) {
      if constexpr (std::is_same_v<std::decay_t<decltype(m.collection)>, std::string>) m.collection = address;
    }
  }, out.body);
  return out;
}

std::vector<uint32_t> AllShards(uint32_t shards) {
  std::vector<uint32_t> out(shards);
  for (uint32_t s = 0; s < shards; ++s) out[s] = s;
  return out;
}

std::vector<uint32_t> ShardsWith(const std::vector<std::vector<size_t>>& positions) {
  std::vector<uint32_t> out;
  for (uint32_t s = 0; s < positions.size(); ++s) {
    if (!positions[s].empty()) out.push_back(s);
  }
  return out;
}

Status CheckQueries(const CollectionRecord& record, const std::string& collection, uint32_t dim,
                    uint32_t count) {
  if (dim != record.dim) {
    return InvalidArgument("queries have dim {}, collection '{}' has {}", dim, collection, record.dim);
  }
  if (count == 0) return InvalidArgument("no queries");
  return Status::Ok();
}

std::function<protocol::Request(uint32_t shard)> ShardSearches(const std::string& collection,
                                                               protocol::Op op,
                                                               const SearchOptions& options,
                                                               const float* queries, uint32_t dim,
                                                               uint32_t count) {
  SearchOptions shard_options = options;
  shard_options.allow_partial = false;
  shard_options.shard_timeout_ms = 0;
  return [&collection, op, shard_options, queries, dim, count](uint32_t s) {
    protocol::SearchRequest q;
    q.collection = LocalShardName(collection, s);
    q.options = shard_options;
    q.dim = dim;
    q.count = count;
    q.queries.assign(queries, queries + size_t(dim) * count);
    return protocol::Request{op, std::move(q)};
  };
}

}  // namespace router_detail

using namespace router_detail;

ClusterView::~ClusterView() {
  // The mirrors' threads use etcd_: stop them first.
  placement_.reset();
  collections_.reset();
  nodes_.reset();
}

Result<std::shared_ptr<ClusterView>> ClusterView::Open(const RouterOptions& options) {
  STRATA_RETURN_IF_ERROR(ValidateName("cluster name", options.cluster));
  STRATA_ASSIGN_OR_RETURN(auto etcd,
                          EtcdClient::Create(options.etcd, {.timeout_ms = options.etcd_timeout_ms}));
  std::shared_ptr<ClusterView> v(
      new ClusterView(options.cluster, std::move(etcd), options.shard_timeout_ms));
  const ClusterKeys keys(options.cluster);
  STRATA_ASSIGN_OR_RETURN(v->nodes_, PrefixMirror::Start(*v->etcd_, keys.nodes()));
  STRATA_ASSIGN_OR_RETURN(v->collections_, PrefixMirror::Start(*v->etcd_, keys.collections()));
  STRATA_ASSIGN_OR_RETURN(v->placement_, PrefixMirror::Start(*v->etcd_, keys.placements()));
  return v;
}

bool ClusterView::HasCollection(const std::string& collection) const {
  return collections_->view()->kvs.contains(ClusterKeys(cluster_).collection(collection));
}

uint64_t ClusterView::WriteEpochOf(const std::string& collection, uint32_t shard) const {
  auto placements = placement_->view();
  auto it = placements->kvs.find(ClusterKeys(cluster_).placement(collection));
  if (it == placements->kvs.end()) return 0;
  auto p = Placement::FromJson(it->second.value);
  if (!p || shard >= p->shards.size()) return 0;
  return p->shards[shard].write_epoch;
}

uint64_t ClusterView::EpochOf(const std::string& collection) const {
  auto placements = placement_->view();
  auto it = placements->kvs.find(ClusterKeys(cluster_).placement(collection));
  if (it == placements->kvs.end()) return 0;
  auto p = Placement::FromJson(it->second.value);
  return p ? p->epoch : 0;
}

std::string ClusterView::MetricsText() const {
  std::string out;
  std::lock_guard lock(load_mu_);
  auto label = [](std::string_view v) {
    std::string s;
    for (char c : v) {
      if (c == '\\' || c == '"') s.push_back('\\');
      if (c == '\n') {
        s += "\\n";
        continue;
      }
      s.push_back(c);
    }
    return s;
  };
  out += "# HELP strata_cluster_shard_requests_total Requests this node routed to a shard replica, by operation and result.\n";
  out += "# TYPE strata_cluster_shard_requests_total counter\n";
  for (const auto& [key, c] : shard_counters_) {
    const auto& [collection, shard, node, op] = key;
    for (int failed = 0; failed < 2; ++failed) {
      out += fmt::format(
          "strata_cluster_shard_requests_total{{collection=\"{}\",shard=\"{}\",node=\"{}\",op=\"{}\",result=\"{}\"}} {}\n",
          label(collection), shard, label(node), label(op), failed ? "error" : "ok",
          failed ? c.failed : c.ok);
    }
  }
  out += "# HELP strata_cluster_shard_request_seconds_total Seconds the requests routed to a shard replica took (a fan-out's wall time, per request in it).\n";
  out += "# TYPE strata_cluster_shard_request_seconds_total counter\n";
  for (const auto& [key, c] : shard_counters_) {
    const auto& [collection, shard, node, op] = key;
    out += fmt::format(
        "strata_cluster_shard_request_seconds_total{{collection=\"{}\",shard=\"{}\",node=\"{}\",op=\"{}\"}} {}\n",
        label(collection), shard, label(node), label(op), c.seconds);
  }
  out += "# HELP strata_cluster_node_requests_in_flight Requests this node's routers have in flight to each node now.\n";
  out += "# TYPE strata_cluster_node_requests_in_flight gauge\n";
  for (const auto& [node, n] : in_flight_) {
    out += fmt::format("strata_cluster_node_requests_in_flight{{node=\"{}\"}} {}\n", label(node), n);
  }
  return out;
}

Result<std::unique_ptr<ClusterRouter>> ClusterRouter::Open(const RouterOptions& options) {
  STRATA_ASSIGN_OR_RETURN(auto view, ClusterView::Open(options));
  return Over(std::move(view), options.client);
}

std::unique_ptr<ClusterRouter> ClusterRouter::Over(std::shared_ptr<ClusterView> view,
                                                   const client::ClientOptions& client,
                                                   std::string self, LocalExecutor local) {
  return std::unique_ptr<ClusterRouter>(
      new ClusterRouter(std::move(view), client, std::move(self), std::move(local)));
}

Result<ClusterRouter::Route> ClusterRouter::RouteOf(const std::string& collection) const {
  const ClusterKeys keys(view_->cluster());
  auto collections = view_->collections_->view();
  auto c = collections->kvs.find(keys.collection(collection));
  if (c == collections->kvs.end()) {
    return Error(NotFound("cluster '{}' has no collection '{}'", view_->cluster(), collection));
  }
  auto placements = view_->placement_->view();
  auto p = placements->kvs.find(keys.placement(collection));
  if (p == placements->kvs.end()) {
    return Error(NotFound("collection '{}' is not placed yet (is a leader up, with enough nodes?)",
                          collection));
  }
  Route route;
  STRATA_ASSIGN_OR_RETURN(route.record, CollectionRecord::FromJson(c->second.value));
  STRATA_ASSIGN_OR_RETURN(route.placement, Placement::FromJson(p->second.value));
  if (route.placement.shards.size() != route.record.shards) {
    return Error(Corruption("placement of '{}' has {} shards, the collection {}", collection,
                            route.placement.shards.size(), route.record.shards));
  }
  return route;
}

Result<client::Client*> ClusterRouter::Connection(const std::string& node) {
  const ClusterKeys keys(view_->cluster());
  auto nodes = view_->nodes_->view();
  auto it = nodes->kvs.find(keys.node(node));
  if (it == nodes->kvs.end()) {
    return Error(IOError("node {} is not registered (gone, or its lease lapsed)", node));
  }
  STRATA_ASSIGN_OR_RETURN(NodeRecord record, NodeRecord::FromKeyValue(it->second));
  auto conn = connections_.find(node);
  if (conn != connections_.end() && conn->second->is_open() &&
      connected_to_[node] == record.advertise) {
    return conn->second.get();
  }
  const size_t colon = record.advertise.rfind(':');
  if (colon == std::string::npos) {
    return Error(Corruption("node {} advertises '{}', not HOST:PORT", node, record.advertise));
  }
  std::string host = record.advertise.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  const int port = std::atoi(record.advertise.c_str() + colon + 1);
  auto client = client::Client::Connect(host, static_cast<uint16_t>(port), client_options_);
  if (!client) {
    return Error(client.error().WithContext(fmt::format("node {} ({})", node, record.advertise)));
  }
  connected_to_[node] = record.advertise;
  connections_[node] = std::move(*client);
  return connections_[node].get();
}

std::vector<Result<protocol::Response>> ClusterRouter::FanOut(
    const std::vector<std::pair<std::string, protocol::Request>>& requests, Deadline deadline) {
  // This process's requests in flight per node (the least-loaded choice), and per shard
  // replica what they came to (ClusterView::MetricsText).
  {
    std::lock_guard lock(view_->load_mu_);
    for (const auto& [node, request] : requests) ++view_->in_flight_[node];
  }
  const auto started = std::chrono::steady_clock::now();
  auto out = FanOutOnce(requests, deadline);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::lock_guard lock(view_->load_mu_);
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& [node, request] = requests[i];
    --view_->in_flight_[node];
    // The shard the request went to (an engine collection name or a shard address).
    const std::string* named = protocol::RequestCollection(request);
    if (named == nullptr) continue;
    std::string name = *named;
    if (name.find('@') == std::string::npos) name += "@0";
    auto address = ParseShardAddress(name);
    if (!address || !address->has_value()) continue;
    auto& c = view_->shard_counters_[{(*address)->collection, (*address)->shard, node,
                                      std::string(protocol::OpName(request.op))}];
    if (out[i].has_value()) {
      ++c.ok;
    } else {
      ++c.failed;
    }
    c.seconds += seconds;
  }
  return out;
}

std::vector<Result<protocol::Response>> ClusterRouter::FanOutOnce(
    const std::vector<std::pair<std::string, protocol::Request>>& requests, Deadline deadline) {
  std::vector<Result<protocol::Response>> out(requests.size(), Error(Internal("not sent")));
  // Per request: its connection and request id once sent.
  std::vector<client::Client*> via(requests.size(), nullptr);
  std::vector<uint64_t> ids(requests.size(), 0);
  for (size_t i = 0; i < requests.size(); ++i) {
    if (local_ && !self_.empty() && requests[i].first == self_) continue;  // below
    auto conn = Connection(requests[i].first);
    if (!conn) {
      out[i] = Error(conn.error());
      continue;
    }
    auto id = (*conn)->Send(requests[i].second);
    if (!id) {
      out[i] = Error(id.error().WithContext(fmt::format("node {}", requests[i].first)));
      continue;
    }
    via[i] = *conn;
    ids[i] = *id;
  }
  // This node's own shards, while the others work.
  for (size_t i = 0; i < requests.size(); ++i) {
    if (!(local_ && !self_.empty() && requests[i].first == self_)) continue;
    auto r = local_(requests[i].second);
    out[i] = r ? std::move(r) : Error(r.error().WithContext(fmt::format("node {}", self_)));
  }
  // Collect: each connection answers its own requests (in any order).
  for (size_t i = 0; i < requests.size(); ++i) {
    client::Client* const conn = via[i];
    if (conn == nullptr) continue;
    // Responses that arrived for other requests on the same connection are matched by id.
    for (;;) {
      Result<std::pair<uint64_t, protocol::Response>> got = Error(Internal("unset"));
      if (deadline) {
        const auto left = std::chrono::duration_cast<std::chrono::microseconds>(
            *deadline - std::chrono::steady_clock::now());
        auto polled = conn->Poll(std::max(left, std::chrono::microseconds(0)));
        if (polled && !polled->has_value()) {
          // Out of time: every request still waiting on this connection fails; the
          // connection stays open (its late answers are skipped when they come).
          for (size_t j = i; j < requests.size(); ++j) {
            if (via[j] == conn) {
              out[j] = Error(IOError("node {}: no answer in time (shard timeout)", requests[j].first));
              via[j] = nullptr;
            }
          }
          break;
        }
        got = polled ? Result<std::pair<uint64_t, protocol::Response>>(std::move(**polled))
                     : Error(polled.error());
      } else {
        got = conn->Receive();
      }
      if (!got) {
        // The connection broke: every request still waiting on it fails.
        const Status failed = got.error().WithContext(fmt::format("node {}", requests[i].first));
        for (size_t j = i; j < requests.size(); ++j) {
          if (via[j] == conn) {
            out[j] = Error(failed);
            via[j] = nullptr;
          }
        }
        break;
      }
      size_t owner = requests.size();
      for (size_t j = i; j < requests.size(); ++j) {
        if (via[j] == conn && ids[j] == got->first) owner = j;
      }
      if (owner == requests.size()) continue;  // not ours (cannot happen: one user per router)
      protocol::Response& response = got->second;
      if (response.op == protocol::Op::kError) {
        const auto& e = std::get<protocol::ErrorReply>(response.body);
        out[owner] = Error(protocol::StatusFromError(e.code, e.message)
                               .WithContext(fmt::format("node {}", requests[owner].first)));
      } else {
        out[owner] = std::move(response);
      }
      via[owner] = nullptr;  // answered
      if (owner == i) break;
    }
  }
  return out;
}

Result<uint64_t> ClusterRouter::Upsert(const std::string& collection,
                                       std::span<const Record> records) {
  return Write(collection, records, {});
}

Result<uint64_t> ClusterRouter::Delete(const std::string& collection,
                                       std::span<const VectorId> ids) {
  if (ids.empty()) return uint64_t{0};
  return Write(collection, {}, ids);
}

template <typename F>
auto ClusterRouter::RetryStale(const std::string& collection, F once) -> decltype(once()) {
  // A replica that has seen a newer placement (a replica joined the shard, or another primary
  // took over) refuses a write routed with an older one, and so does a node that is not the
  // shard's primary (any more): wait for this view to reach it, then route again (upserts
  // and deletes are idempotent: the replicas that applied the first try apply the same again;
  // a keyed upsert finds the ids its first try gave).
  // (A primary whose lease may have lapsed refuses without "is not the primary of": that
  // write fails at once, as a write through a node whose lease lapsed does.)
  for (int attempt = 0;; ++attempt) {
    const uint64_t seen = view_->EpochOf(collection);  // about what `once` routes by
    auto r = once();
    if (r || !Rerouted(r.error())) return r;
    if (attempt >= 20) {
      return Error(r.error().WithContext(fmt::format(
          "collection '{}': routed again {} times, the placement still moving", collection, attempt)));
    }
    for (int i = 0; i < 100 && view_->EpochOf(collection) == seen; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
}

Result<uint64_t> ClusterRouter::Write(const std::string& collection,
                                      std::span<const Record> records,
                                      std::span<const VectorId> ids,
                                      std::span<const std::string> keys) {
  return RetryStale(collection, [&] { return WriteOnce(collection, records, ids, keys); });
}

Result<uint64_t> ClusterRouter::WriteOnce(const std::string& collection,
                                          std::span<const Record> records,
                                          std::span<const VectorId> ids,
                                          std::span<const std::string> keys) {
  STRATA_ASSIGN_OR_RETURN(Route route, RouteOf(collection));
  const uint32_t shards = route.record.shards;
  std::vector<std::vector<Record>> by_shard(shards);
  std::vector<std::vector<VectorId>> ids_by_shard(shards);
  for (const Record& r : records) {
    if (r.vector.size() != route.record.dim) {
      return Error(InvalidArgument("record {}: {} components, collection '{}' has dim {}", r.id,
                                   r.vector.size(), collection, route.record.dim));
    }
    by_shard[ShardOfId(r.id, shards)].push_back(r);
  }
  for (VectorId id : ids) {
    if (!IsKeyedId(id)) {
      ids_by_shard[ShardOfId(id, shards)].push_back(id);
      continue;
    }
    // A keyed id names its shard (ClusterKeyedId); one naming no shard is not there.
    auto [s, local] = SplitClusterKeyedId(id);
    if (s < shards) ids_by_shard[s].push_back(local);
  }
  std::vector<std::vector<std::string>> keys_by_shard(shards);
  for (const std::string& key : keys) {
    STRATA_RETURN_IF_ERROR(ValidateKey(key));
    keys_by_shard[ShardOfKey(key, shards)].push_back(key);
  }
  const bool deleting = records.empty();
  // Each shard's part goes to its primary, which applies it and passes it on (Replicate).
  std::vector<std::pair<std::string, protocol::Request>> requests;
  std::vector<uint32_t> shard_of;
  for (uint32_t s = 0; s < shards; ++s) {
    if (by_shard[s].empty() && ids_by_shard[s].empty() && keys_by_shard[s].empty()) continue;
    const ShardPlacement& sp = route.placement.shards[s];
    if (sp.in_sync.empty()) {
      return Error(IOError("collection '{}' shard {} has no in-sync replica", collection, s));
    }
    const std::string address = MakePrimaryAddress(collection, s, route.placement.epoch).ToString();
    const std::string& primary = sp.in_sync.front().node;
    if (!keys_by_shard[s].empty()) {
      requests.push_back({primary, protocol::Request{protocol::Op::kDeleteKeyed,
                                                     protocol::KeysRequest{address, keys_by_shard[s]}}});
    } else if (deleting) {
      requests.push_back({primary, protocol::Request{protocol::Op::kDelete,
                                                     protocol::DeleteRequest{address, ids_by_shard[s]}}});
    } else {
      protocol::UpsertRequest u;
      u.collection = address;
      u.dim = route.record.dim;
      u.records = std::move(by_shard[s]);
      requests.push_back({primary, protocol::Request{protocol::Op::kUpsert, std::move(u)}});
    }
    shard_of.push_back(s);
  }
  auto responses = FanOut(requests);
  for (size_t i = 0; i < responses.size(); ++i) {
    if (!responses[i]) {
      if (Rerouted(responses[i].error())) return Error(responses[i].error());  // routed again
      return Error(IOError("collection '{}' shard {}: the write did not reach every replica (not "
                           "acknowledged; the replicas that applied it keep it): {}",
                           collection, shard_of[i], responses[i].error().ToString()));
    }
  }
  return static_cast<uint64_t>(deleting ? ids.size() + keys.size() : records.size());
}

Result<uint64_t> ClusterRouter::DeleteKeyed(const std::string& collection,
                                            std::span<const std::string> keys) {
  if (keys.empty()) return uint64_t{0};
  return Write(collection, {}, {}, keys);
}

Result<std::vector<VectorId>> ClusterRouter::UpsertKeyed(const std::string& collection,
                                                         std::span<const Record> records) {
  if (records.empty()) return std::vector<VectorId>{};
  return RetryStale(collection, [&] { return UpsertKeyedOnce(collection, records); });
}

Result<std::vector<VectorId>> ClusterRouter::UpsertKeyedOnce(const std::string& collection,
                                                             std::span<const Record> records) {
  STRATA_ASSIGN_OR_RETURN(Route route, RouteOf(collection));
  const uint32_t shards = route.record.shards;
  std::vector<std::vector<size_t>> positions(shards);  // per shard, its records' positions
  for (size_t i = 0; i < records.size(); ++i) {
    const Record& r = records[i];
    if (Status s = ValidateKey(r.key); !s.ok()) return Error(s.WithContext(fmt::format("record {}", i)));
    if (r.vector.size() != route.record.dim) {
      return Error(InvalidArgument("record {} (key '{}'): {} components, collection '{}' has dim {}", i,
                                   KeyForMessage(r.key), r.vector.size(), collection, route.record.dim));
    }
    positions[ShardOfKey(r.key, shards)].push_back(i);
  }
  auto failed = [&](uint32_t s, const std::string& node, const Status& error) -> Status {
    if (Rerouted(error)) return error;  // routed again
    return IOError("collection '{}' shard {} (primary {}): the keyed write did not reach every "
                   "replica (not acknowledged; the replicas that applied it keep it): {}",
                   collection, s, node, error.ToString());
  };
  // Each shard's primary (the first of its in-sync set: replicas that catch up join the set
  // at its end, so it changes only when the primary leaves) finds or assigns the ids and
  // writes the keys with them on the other replicas (Replicate).
  std::vector<std::pair<std::string, protocol::Request>> requests;
  std::vector<uint32_t> shard_of;
  for (uint32_t s = 0; s < shards; ++s) {
    if (positions[s].empty()) continue;
    const ShardPlacement& sp = route.placement.shards[s];
    if (sp.in_sync.empty()) {
      return Error(IOError("collection '{}' shard {} has no in-sync replica", collection, s));
    }
    protocol::UpsertRequest u;
    u.collection = MakePrimaryAddress(collection, s, route.placement.epoch).ToString();
    u.dim = route.record.dim;
    for (size_t i : positions[s]) {
      u.records.push_back(records[i]);
      u.records.back().id = kInvalidVectorId;
    }
    requests.push_back({sp.in_sync.front().node, protocol::Request{protocol::Op::kUpsertKeyedIds, std::move(u)}});
    shard_of.push_back(s);
  }
  auto responses = FanOut(requests);
  std::vector<std::vector<VectorId>> ids_of(shards);
  for (size_t i = 0; i < responses.size(); ++i) {
    const uint32_t s = shard_of[i];
    if (!responses[i]) return Error(failed(s, requests[i].first, responses[i].error()));
    const auto* reply = std::get_if<protocol::IdsReply>(&responses[i]->body);
    if (reply == nullptr || reply->ids.size() != positions[s].size()) {
      return Error(failed(s, requests[i].first, Internal("a reply of the wrong shape")));
    }
    for (VectorId id : reply->ids) {
      if (!IsKeyedId(id)) {
        return Error(failed(s, requests[i].first, Internal("id {} is outside the keyed range", id)));
      }
    }
    ids_of[s] = reply->ids;
  }
  std::vector<VectorId> out(records.size(), kInvalidVectorId);
  for (uint32_t s = 0; s < shards; ++s) {
    for (size_t j = 0; j < positions[s].size(); ++j) {
      VectorId& id = out[positions[s][j]];
      id = ids_of[s][j];
      STRATA_RETURN_IF_ERROR(ToClusterId(collection, s, id));
    }
  }
  return out;
}

Status ClusterRouter::Drop(const std::string& collection, uint32_t wait_ms) {
  const ClusterKeys keys(view_->cluster());
  const std::string ckey = keys.collection(collection);
  // The record as etcd has it now, deleted only if nobody changed it since (a create of the
  // same name racing the drop keeps its own record).
  STRATA_ASSIGN_OR_RETURN(auto current, view_->etcd_->Get(ckey));
  if (!current) return NotFound("cluster '{}' has no collection '{}'", view_->cluster(), collection);
  STRATA_ASSIGN_OR_RETURN(
      EtcdTxnResult txn,
      view_->etcd_->Txn({.compare = {EtcdCompare::ModRevisionIs(ckey, current->mod_revision)},
                         .success = {EtcdOp::Delete(ckey)}}));
  if (!txn.succeeded) {
    return IOError("collection '{}' changed while it was being dropped; drop it again", collection);
  }
  // The leader deletes the placement (fenced), each replica drops its shard collections and
  // then withdraws its reports: wait for both.
  const std::string pkey = keys.placement(collection);
  const std::string reports = keys.replicas() + collection + "/";
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  std::string left;
  for (;;) {
    left.clear();
    auto placement = view_->etcd_->Get(pkey);
    if (!placement) {
      left = placement.error().ToString();
    } else if (placement->has_value()) {
      left = "the leader has not deleted its placement yet";
    } else if (auto r = view_->etcd_->GetPrefix(reports); !r) {
      left = r.error().ToString();
    } else if (!r->kvs.empty()) {
      left = fmt::format("{} shard replica(s) not dropped yet, e.g. {}", r->kvs.size(),
                         r->kvs.front().key.substr(keys.replicas().size()));
    }
    if (left.empty()) return Status::Ok();
    if (std::chrono::steady_clock::now() >= until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return IOError("collection '{}' is dropped from the cluster, but after {} ms {} (the rest "
                 "follows when the leader and the nodes get to it)",
                 collection, wait_ms, left);
}

}  // namespace strata::cluster
