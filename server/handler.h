#pragma once
// One decoded request against the engine: the server's own checks first (limits,
// finite vectors, dimensions, k), then the engine call, then the reply. No
// sockets here: server.cc runs Execute on a worker thread and writes what it returns.
//
// What the server checks before the engine, and answers with:
//   records / ids / queries over max_batch, k over max_k,
//   a reply that could not fit in max_frame_bytes          kTooLarge
//   k = 0, a NaN or infinite component (naming the record
//   or query and the component), a dimension that is not
//   the collection's                                        kInvalidArgument
//   an unknown collection                                   kNotFound
// Everything else is the engine's error, mapped by ErrorCodeFromStatus.

#include <mutex>
#include <string>
#include <unordered_map>

#include "engine/strata.h"
#include "protocol/protocol.h"
#include "server/config.h"
#include "server/metrics.h"

namespace strata::server {

// Thread-safe: Execute may run on any number of threads at once. `engine` and
// `metrics` are borrowed and must outlive the handler.
class RequestHandler {
 public:
  RequestHandler(Engine& engine, const ServerConfig& config, const ServerMetrics& metrics);

  // Any request except hello (the connection answers that itself, see Hello).
  // Never throws: an exception from below becomes a kInternal error reply.
  protocol::Response Execute(const protocol::Request& request);

  // The reply to a successful hello: version and limits.
  protocol::HelloReply Hello() const;

 private:
  using Outcome = std::expected<protocol::ResponseBody, protocol::ErrorReply>;

  Outcome Dispatch(const protocol::Request& request);
  Outcome Search(protocol::Op op, const protocol::SearchRequest& m);
  Outcome Upsert(const protocol::UpsertRequest& m);
  Outcome Delete(const protocol::DeleteRequest& m);
  Outcome Get(const protocol::GetRequest& m);

  // The collection's dimension, from a cache filled by DescribeCollection (which
  // is not cheap: it walks the collection's graph). `refresh` re-reads it, for a
  // mismatch that may come from a collection dropped and created again.
  Result<size_t> CollectionDim(const std::string& name, bool refresh);
  void ForgetCollection(const std::string& name);
  // InvalidArgument naming the request's and the collection's dimensions, or OK.
  Status CheckDim(const std::string& collection, uint32_t dim, std::string_view what);

  Engine& engine_;
  const ServerConfig config_;
  const ServerMetrics& metrics_;
  std::mutex dims_mu_;
  std::unordered_map<std::string, size_t> dims_;  // guarded by dims_mu_
};

}  // namespace strata::server
