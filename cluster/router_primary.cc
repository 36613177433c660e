// The primary's part of a write (ClusterRouter::Replicate; docs/CLUSTER.md, "Writes through
// the primary").

#include <chrono>
#include <thread>

#include "cluster/router.h"
#include "cluster/router_detail.h"

namespace strata::cluster {

using namespace router_detail;

namespace {

bool IsWrite(protocol::Op op) {
  return op == protocol::Op::kUpsert || op == protocol::Op::kUpsertKeyedIds ||
         op == protocol::Op::kDelete || op == protocol::Op::kDeleteKeyed;
}

}  // namespace

Result<protocol::Response> ClusterRouter::Replicate(const ShardAddress& address,
                                                    const protocol::Request& request,
                                                    std::mutex& order,
                                                    const std::function<bool()>& lease_held) {
  if (!IsWrite(request.op)) {
    return Error(InvalidArgument("{} is not a write a shard's primary passes on ('{}')",
                                 protocol::OpName(request.op), address.ToString()));
  }
  if (!local_ || self_.empty()) {
    return Error(Internal("a router without a node of its own cannot act as a shard's primary"));
  }
  // This node's view may lag the router's by a watch event (waited for outside the lock).
  for (int i = 0; i < 400 && view_->EpochOf(address.collection) < address.epoch; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // One write of the shard at a time from here to the last replica's answer: every replica
  // applies them in this order. The placement is read under the lock, so that a write that
  // waited for it routes by the newest one (not to a replica the leader has removed since)
  // and the epochs it sends are never older than those of the writes before it.
  std::lock_guard lock(order);
  STRATA_ASSIGN_OR_RETURN(Route route, RouteOf(address.collection));
  const uint64_t epoch = route.placement.epoch;
  if (epoch < address.epoch) {
    return Error(Cancelled("stale placement epoch {} at node {} for {}: the write was routed at "
                           "epoch {}, which this node has not seen yet (retry)",
                           epoch, self_, address.local, address.epoch));
  }
  if (address.shard >= route.placement.shards.size()) {
    return Error(InvalidArgument("collection '{}' has no shard {}", address.collection, address.shard));
  }
  const ShardPlacement& sp = route.placement.shards[address.shard];
  if (sp.in_sync.empty() || sp.in_sync.front().node != self_) {
    return Error(Cancelled("node {} is not the primary of {} at placement epoch {} (the primary is "
                           "{}): route the write again",
                           self_, address.local, epoch,
                           sp.in_sync.empty() ? std::string("none") : sp.in_sync.front().node));
  }
  if (lease_held && !lease_held()) {
    return Error(Cancelled("node {} orders no write for {} while its cluster lease may have lapsed "
                           "(not until it has registered again): not acknowledged, retry (the leader "
                           "gives the shard another primary once the lease has lapsed)",
                           self_, address.local));
  }
  auto to = [&](const std::string& node, bool catching, const protocol::Request& base) {
    return std::pair<std::string, protocol::Request>{
        node, Readdressed(base, MakeShardAddress(address.collection, address.shard, epoch, catching).ToString())};
  };
  // What the other replicas get: the request as it came, or for a keyed upsert, with the ids
  // this replica gave (copied only then).
  std::optional<protocol::Request> with_ids;
  std::optional<protocol::Response> own;
  if (request.op == protocol::Op::kUpsertKeyedIds) {
    // Here first: this replica finds or gives each key's id; the others take the same ids.
    with_ids = Readdressed(request, MakeShardAddress(address.collection, address.shard, epoch).ToString());
    auto r = local_(*with_ids);
    if (!r) return Error(r.error());
    const auto* reply = std::get_if<protocol::IdsReply>(&r->body);
    auto& upsert = std::get<protocol::UpsertRequest>(with_ids->body);
    if (reply == nullptr || reply->ids.size() != upsert.records.size()) {
      return Error(Internal("{}: the keyed write's ids came back in the wrong shape", address.local));
    }
    for (size_t i = 0; i < upsert.records.size(); ++i) upsert.records[i].id = reply->ids[i];
    own = std::move(*r);
  }
  const protocol::Request& base = with_ids ? *with_ids : request;
  std::vector<std::pair<std::string, protocol::Request>> requests;
  for (size_t i = own ? 1 : 0; i < sp.in_sync.size(); ++i) requests.push_back(to(sp.in_sync[i].node, false, base));
  for (const ReplicaRef& r : sp.catching_up) requests.push_back(to(r.node, true, base));
  auto responses = FanOut(requests);
  for (size_t i = 0; i < responses.size(); ++i) {
    if (responses[i]) continue;
    if (Rerouted(responses[i].error())) return Error(responses[i].error());  // routed again
    return Error(IOError("replica {} did not apply the write: {}", requests[i].first,
                         responses[i].error().ToString()));
  }
  if (own) return std::move(*own);
  return std::move(*responses.front());  // this node's own answer (in_sync[0])
}

}  // namespace strata::cluster
