#pragma once
// The server's own counters, and the metrics endpoint's pure parts: rendering
// the Prometheus text format (version 0.0.4) and answering one HTTP request.
// The socket side lives in metrics_http.cc; everything here is tested without one.
//
//   GET /metrics  -> 200, Content-Type: text/plain; version=0.0.4
//   other paths   -> 404;  other methods -> 405;  anything unparsable -> 400

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/metrics.h"
#include "engine/strata.h"
#include "protocol/protocol.h"

namespace strata::server {

// A point-in-time copy of ServerMetrics.
struct ServerMetricsSnapshot {
  uint64_t connections = 0;        // open now
  uint64_t connections_total = 0;  // accepted since start (refused ones excluded)
  uint64_t requests = 0;           // answered since start (error frames included)
  uint64_t errors = 0;             // error frames sent since start
  uint64_t busy_rejections = 0;    // requests (and connections) refused with kBusy
  uint64_t in_progress = 0;        // requests queued for or running on the worker pool now
  uint64_t reply_bytes = 0;        // held for replies now (bounds, then encoded frames)
  uint64_t reply_bytes_peak = 0;   // the most reply_bytes has been since start
  uint64_t failed_hellos = 0;      // hellos with a wrong or missing token since start
  uint64_t hello_backoff_refusals = 0;  // connections and hellos refused: address in back-off
  uint64_t unauthenticated_refusals = 0;  // connections refused: too many from one address
                                          // without a hello
  uint64_t unauthenticated_displaced = 0;  // connections without a hello closed for a new one
  uint64_t slow_client_closes = 0;  // connections closed: replies not taken fast enough
  uint64_t resp_commands = 0;  // RESP commands run on the workers since start
  uint64_t resp_errors = 0;    // of which answered with an error
  HistogramSnapshot resp_command_duration;  // RESP: queued to reply made, seconds
  // Every request op ("hello", "ping", ..., then "unknown"), in opcode order.
  std::vector<std::pair<std::string, uint64_t>> requests_by_op;
  // Every error code ("invalid_argument", ..., "busy", ...), in code order.
  std::vector<std::pair<std::string, uint64_t>> errors_by_code;
  HistogramSnapshot request_duration;  // frame read to reply handed to the writer, seconds
};

// The label of an error code in metrics: snake_case ("busy", "unknown_op", "not_found").
std::string_view ErrorCodeLabel(protocol::ErrorCode code);

// Counters of one server.
//
// Thread-safe: every method may be called from any thread (relaxed atomics; a
// snapshot sees each counter at some recent value).
class ServerMetrics {
 public:
  void ConnectionOpened();
  void ConnectionClosed();
  // One request answered: `opcode` as received (an unknown opcode is counted as "unknown").
  void RequestAnswered(uint16_t opcode, uint64_t nanos);
  void ErrorSent(protocol::ErrorCode code);
  void BusyRejection() { busy_rejections_.fetch_add(1, std::memory_order_relaxed); }
  void WorkQueued() { in_progress_.fetch_add(1, std::memory_order_relaxed); }
  void WorkDone() { in_progress_.fetch_sub(1, std::memory_order_relaxed); }
  // The reply bytes held now (the server keeps the count; this records it and its peak).
  void ReplyBytes(uint64_t now);
  void FailedHello() { failed_hellos_.fetch_add(1, std::memory_order_relaxed); }
  void HelloBackoffRefusal() { hello_backoff_refusals_.fetch_add(1, std::memory_order_relaxed); }
  void UnauthenticatedRefusal() {
    unauthenticated_refusals_.fetch_add(1, std::memory_order_relaxed);
  }
  void UnauthenticatedDisplaced() {
    unauthenticated_displaced_.fetch_add(1, std::memory_order_relaxed);
  }
  void SlowClientClosed() { slow_client_closes_.fetch_add(1, std::memory_order_relaxed); }
  // One RESP command run on the workers (docs/RESP.md), `error` when answered with one.
  void RespCommandAnswered(uint64_t nanos, bool error);
  ServerMetricsSnapshot Snapshot() const;

 private:
  // Opcodes 1..kLastRequestOp, slot 0: unknown.
  static constexpr size_t kOps = size_t(protocol::kLastRequestOp) + 1;
  static constexpr size_t kErrorCodes = 17;  // 1..10, 100..105, and one slot for anything else
  static size_t ErrorSlot(protocol::ErrorCode code);

  std::atomic<uint64_t> connections_{0};
  std::atomic<uint64_t> connections_total_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> busy_rejections_{0};
  std::atomic<uint64_t> in_progress_{0};
  std::atomic<uint64_t> reply_bytes_{0};
  std::atomic<uint64_t> reply_bytes_peak_{0};
  std::atomic<uint64_t> failed_hellos_{0};
  std::atomic<uint64_t> hello_backoff_refusals_{0};
  std::atomic<uint64_t> unauthenticated_refusals_{0};
  std::atomic<uint64_t> unauthenticated_displaced_{0};
  std::atomic<uint64_t> slow_client_closes_{0};
  std::atomic<uint64_t> resp_commands_{0};
  std::atomic<uint64_t> resp_errors_{0};
  LatencyHistogram resp_command_duration_;
  std::array<std::atomic<uint64_t>, kOps> requests_by_op_{};
  std::array<std::atomic<uint64_t>, kErrorCodes> errors_by_code_{};
  LatencyHistogram request_duration_;
};

// The Prometheus text exposition (format 0.0.4) of the engine's and the server's
// counters: every metric with # HELP and # TYPE; histograms with cumulative
// `_bucket{le="..."}` lines ending in `+Inf`, then `_sum` and `_count`.
// With `collections` (Engine::ListCollections), per-collection gauges labelled
// collection="NAME": strata_collection_vectors, _memory_bytes, _sealed_segments and
// _last_sequence, plus strata_collection_info{collection, metric, dim} = 1.
// A pure function.
std::string RenderPrometheus(const EngineCounters& engine, const ServerMetricsSnapshot& server,
                             const std::vector<CollectionInfo>& collections = {});

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> extra_headers;
};
// The response as bytes: status line, Content-Type, Content-Length, Connection: close.
std::string SerializeHttpResponse(const HttpResponse& response);

inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// Answers one HTTP/1.x request given its head (request line and headers, the
// blank line optional): GET /metrics (`render_metrics` is called only for it),
// GET /healthz (200 while the process answers at all) and GET /readyz (200 when
// `ready` -- the engine is open, recovery done and the server not shutting down --
// else 503). A pure function of its arguments.
HttpResponse HandleMetricsRequest(std::string_view head,
                                  const std::function<std::string()>& render_metrics,
                                  bool ready = true);

}  // namespace strata::server
