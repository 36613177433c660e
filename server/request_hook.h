#pragma once
// A layer above the server may take some requests before the engine does: the cluster layer
// (cluster/, docs/CLUSTER.md) routes the requests for a cluster collection to the nodes that
// hold its shards. Set with Server::SetRequestHook; RequestHandler::Execute asks the hook first,
// on the worker thread that runs the request, and answers with its response when it gives one.
//
// Thread-safe: Handle is called from every worker thread at once.

#include <optional>
#include <string>

#include "protocol/protocol.h"

namespace strata::server {

class RequestHook {
 public:
  virtual ~RequestHook() = default;
  // The response to `request`, or nullopt when the hook leaves it to the engine. Must not
  // throw (an exception becomes a kInternal error reply, as from the engine).
  virtual std::optional<protocol::Response> Handle(const protocol::Request& request) = 0;
  // Where a request naming `collection` is answered, which decides the thread it runs on:
  //  - kEngine: Handle leaves it to the engine (it would answer nullopt): it may run where the
  //    engine's requests may, on the I/O thread that read it (ServerConfig::inline_reads)
  //    included (a cluster node: a shard replica's NAME__sK);
  //  - kHere: Handle may answer it from this node alone (a shard address: what another node's
  //    router or catch-up asks of this replica); on the workers;
  //  - kRouted: Handle routes it to other nodes and may wait on them (a cluster collection);
  //    on pools of their own, so that the requests other nodes send here never queue behind
  //    them: two nodes routing to each other with every worker waiting on the other node would
  //    otherwise wait forever (docs/CLUSTER.md, "Requests between nodes");
  //  - kOrdered: a write Handle orders and passes on to other nodes after applying it here (a
  //    cluster shard's primary); on a pool of its own, between the routed ones (which wait on
  //    it) and everything else (which it waits on), so that no pool waits on itself across
  //    nodes.
  // The default, kHere, keeps every request of a server with a hook off the I/O threads and
  // off the routed pools. Called on an I/O thread for every request (to pick its pool, and
  // whether a small read may run inline): cheap, no engine call.
  enum class Place { kEngine, kHere, kRouted, kOrdered };
  virtual Place PlaceOf(const std::string& collection) const {
    (void)collection;
    return Place::kHere;
  }
  // Prometheus text appended to the server's metrics (the cluster's per-shard counters); empty:
  // nothing. Called on a worker thread, concurrently with Handle; must not throw.
  virtual std::string MetricsText() const { return {}; }
};

}  // namespace strata::server
