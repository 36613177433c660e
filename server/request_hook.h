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
  // Whether Handle routes a request naming `collection` to other nodes (it may then wait on
  // them). The server runs such requests on pools of their own, so that the requests other
  // nodes send here (a shard replica's reads and writes, answered from this node's engine
  // alone) never queue behind them: two nodes routing to each other with every worker waiting
  // on the other node would otherwise wait forever (docs/CLUSTER.md, "Requests between
  // nodes"). Called on an I/O thread for every request for the workers: cheap, no engine call.
  virtual bool Routes(const std::string& collection) const {
    (void)collection;
    return false;
  }
  // Whether Handle passes a write naming `collection` on to other nodes after applying it here
  // (a cluster shard's primary orders its shard's writes). The server runs such writes on a
  // pool of their own, between the routed ones (which wait on them) and everything else (which
  // they wait on), so that no pool waits on itself across nodes. Called as Routes is.
  virtual bool Orders(const std::string& collection) const {
    (void)collection;
    return false;
  }
  // Whether Handle leaves every request naming `collection` to the engine (it would answer
  // nullopt): such a request may then run where the engine's requests may, on the I/O thread
  // that read it (ServerConfig::inline_reads) included. The default, false, keeps every
  // request of a server with a hook off the I/O threads. Called as Routes is.
  virtual bool LeavesToEngine(const std::string& collection) const {
    (void)collection;
    return false;
  }
  // Prometheus text appended to the server's metrics (the cluster's per-shard counters); empty:
  // nothing. Called on a worker thread, concurrently with Handle; must not throw.
  virtual std::string MetricsText() const { return {}; }
};

}  // namespace strata::server
