#pragma once
// Measured runs against a Strata server, for strata-cli's `search --queries` and `load`:
//
//   RunQueries  every query of a list once, over one connection, with up to `window` requests
//               in flight; the results in query order and each query's latency.
//   RunLoad     a timed load over several connections (one Client and one thread each), closed
//               loop (each connection keeps `pipeline` requests in flight) or open loop (a target
//               rate, requests sent at scheduled times whatever the server's speed).
//
// Latency in the open loop is measured from a request's *scheduled* send time, not from when it
// could actually be sent: when the server falls behind and the window is full, the wait for a
// free slot counts, so coordinated omission does not hide queueing.
//
// Recall@k, when ground truth is given, follows core/recall.h: the true k nearest are the first k
// of the ground-truth row (result ids minus `id_offset` are rows). When the file carries distances
// (.ibin from `strata gt`), a result whose distance, as the server reported it, is within the tie
// slack of the k-th true distance is a hit too; with ids only (.ivecs) only the true ids count (the
// client has no base vectors to recompute distances).
//
// Thread safety: free functions; RunLoad starts and joins its own threads.

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "client/client.h"
#include "core/status.h"
#include "core/types.h"
#include "storage/dataset_io.h"

namespace strata::client {

// Latency percentiles in milliseconds, by core/stats.h's rule (nearest rank).
struct LatencySummary {
  uint64_t count = 0;
  double mean_ms = 0, p50_ms = 0, p90_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;
};
// Sorts `ms` in place.
LatencySummary SummarizeLatencies(std::vector<double>& ms);

// Recall@k of one result list against row `query` of `truth` (see the header comment).
// k is capped at truth.k; 0 when the capped k is 0.
double RecallAtK(const storage::GroundTruth& truth, size_t query, std::span<const Neighbor> result,
                 uint32_t k, uint64_t id_offset);

struct QueryRun {
  std::vector<std::vector<Neighbor>> results;  // per query, in query order
  std::vector<double> latency_ms;              // per query: send to answer
  double elapsed_s = 0;                        // first send to last answer
};

// Searches rows of `queries` (row-major, count x dim) one request each, up to `window` (>= 1) in
// flight. The first error answer fails the run after the requests in flight have been drained
// (the client stays usable); its message names the query.
Result<QueryRun> RunQueries(Client& client, const std::string& collection, const float* queries,
                            uint32_t dim, uint32_t count, const SearchOptions& options,
                            uint32_t window);

struct LoadConfig {
  std::string host = "127.0.0.1";
  uint16_t port = 7420;
  ClientOptions client_options;
  std::string collection;
  const float* queries = nullptr;  // num_queries x dim, row-major; reused round robin
  uint32_t dim = 0;
  uint32_t num_queries = 0;
  SearchOptions search;
  uint32_t connections = 4;
  double duration_s = 10;
  uint32_t pipeline = 1;           // requests in flight per connection, at most
  double rate = 0;                 // total requests per second over all connections; 0: closed loop
  const storage::GroundTruth* truth = nullptr;  // recall when set; rows must cover the queries
  uint64_t id_offset = 0;
};

struct LoadReport {
  uint64_t sent = 0;
  uint64_t ok = 0;
  std::map<std::string, uint64_t> errors;  // error frames by code name; "connection" for a
                                           // request lost with a broken connection
  std::vector<std::string> connection_errors;  // why connections broke, one line each
  uint64_t unsent = 0;       // open loop: due before the end but never sent (window full)
  double elapsed_s = 0;      // start to the last answer
  double qps = 0;            // ok / elapsed_s
  LatencySummary latency;    // of the successful requests
  std::optional<double> recall;  // mean recall@k over the successful requests
};

// Connects every connection first (a failure there fails the run), then runs the load for
// duration_s, stops sending and drains what is in flight. Errors answered by the server and
// connections that break during the run are counted in the report, not returned.
Result<LoadReport> RunLoad(const LoadConfig& config);

}  // namespace strata::client
