#pragma once
// The HTTP/1.1 side of the etcd client (internal to cluster/): endpoint URLs, and one POST of
// a JSON body on a fresh connection under a deadline. EtcdClient (etcd_client.h) is the API.
//
// A connection per call: etcd calls are rare (membership, leases, placement), and a fresh
// connection never meets one the server closed while it sat idle -- so a call that fails can
// be told apart as "never sent" (connect failed: safe to try the next endpoint) or "sent"
// (the request may have been applied).
//
// Pure functions over their arguments; thread-safe.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace strata::cluster {

// One etcd client URL: http://HOST:PORT (HOST a name, an IPv4 address, or [IPv6]).
struct EtcdEndpoint {
  std::string host;  // without brackets
  uint16_t port = 0;
  std::string url;   // "http://HOST:PORT", as errors name it
};

// "http://127.0.0.1:2379", or "127.0.0.1:2379" (http assumed). InvalidArgument naming the URL
// for https (TLS is not supported), another scheme, a path, a missing or bad port.
Result<EtcdEndpoint> ParseEtcdEndpoint(std::string_view url);
// A comma-separated list ("http://a:2379,http://b:2379"); at least one.
Result<std::vector<EtcdEndpoint>> ParseEtcdEndpoints(std::string_view urls);

struct HttpReply {
  unsigned status = 0;
  std::string body;
};

// How far a failed POST got.
enum class HttpFailure {
  kNotSent,  // resolve or connect failed: the server never saw the request
  kSent,     // failed after the request began to go out: it may have been applied
};

struct HttpError {
  HttpFailure failure;
  Status status;  // IOError naming the URL, the path and what failed ("timed out after 2000 ms")
};

// POSTs `body` (JSON) to `path` ("/v3/kv/put") on a new connection; the whole call --
// resolve, connect, write, read -- within `timeout`. Any HTTP status is a reply (etcd's
// gateway answers errors as JSON with a 4xx / 5xx status).
std::expected<HttpReply, HttpError> HttpPost(const EtcdEndpoint& endpoint, std::string_view path,
                                             const std::string& body,
                                             std::chrono::milliseconds timeout);

}  // namespace strata::cluster
