#pragma once
// Strata's network server: the wire protocol (protocol/protocol.h) over TCP,
// served with Boost.Asio and C++20 coroutines, in front of an Engine.
//
//   STRATA_ASSIGN_OR_RETURN(auto server, server::Server::Start(config, *engine));
//   fmt::print("listening on {}\n", server->port());
//   ...                       // from a signal handler's thread, a test, ...
//   server->Shutdown();       // graceful: in-flight requests are answered first
//   server->Wait();
//
// Threads: `io_threads` each run an io_context of their own, and a connection stays on one
// of them (accept, read and write frames, hello
// and ping, the metrics endpoint) and, with `inline_reads`, the small reads (a search
// of one query at a recall target, a get of a few records; Server::Impl::RunsInline); `worker_threads` run every
// other read's engine call and encode its reply, which is handed back to the
// connection's strand to be written; writes and maintenance have pools of their own.
//
// Per connection: one coroutine reads frames, one writes replies (replies may go
// out in any order: pipelining), one enforces the deadlines (idle_timeout_s with
// nothing in progress; request_timeout_s for a frame begun and for each step of a
// write to make progress; min_write_bytes_per_s for replies waiting to be written;
// hello_timeout_s, when a token is set, for a valid hello to arrive).
// A framing error (bad header, payload over max_frame_bytes, or over 64 KiB before a
// successful hello when a token is set) is answered with an error frame and closes
// that connection only; a payload that cannot be decoded is answered with kMalformed,
// or kTooLarge for a count over max_batch (the decoder's limit), and the connection
// stays open. Past `max_pipeline` requests in flight, or `max_connection_reply_bytes`
// of replies held, the connection is not read until replies drain. A frame's payload
// is budgeted from its header on: past `max_inflight_bytes` of payloads being read,
// queued or running server-wide it is read, dropped and answered kBusy. A request for
// the workers is admitted before it is decoded (past `worker_threads + queue_limit`
// requests: kBusy), and with an upper bound of its reply (past `max_reply_bytes` of
// replies being made or waiting to be written: kBusy) before it runs.
//
// With a token: connections without a valid hello are limited per peer address
// (max_unauthenticated_per_address: refused) and in all (max_unauthenticated_connections,
// and max_connections: the oldest is closed to make room); an address with
// max_failed_hellos failed hellos within a minute is refused (connections and hellos)
// for 1 s, doubling up to 60 s.
//
// Graceful shutdown: stop accepting, stop taking new frames (a frame already being
// read is answered with kShuttingDown), let queued and running requests finish and
// their replies be written, close every connection, stop the threads.
// shutdown_timeout_s bounds the wait for the replies: past it every connection is
// closed and requests not yet started are skipped, but a request already running in
// the engine cannot be interrupted, so Wait returns only once it has finished. A
// worker also skips a request whose connection closed before it started.

#include <cstdint>
#include <memory>

#include "core/status.h"
#include "engine/strata.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/request_hook.h"

namespace strata::server {

// Thread-safe: port, metrics_port, metrics, Shutdown and Wait may be called from
// any thread, concurrently -- except that Wait and the destructor must not run
// on one of the server's own threads (they join them).
class Server {
 public:
  // Validates `config`, binds the listening sockets (IOError naming the address
  // when that fails) and starts the threads. `engine` is not owned and must
  // outlive the server.
  static Result<std::unique_ptr<Server>> Start(const ServerConfig& config, Engine& engine);
  ~Server();  // Shutdown() then Wait()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t port() const;          // the bound port (config port 0: an ephemeral one)
  uint16_t metrics_port() const;  // 0 when the metrics endpoint is off
  uint16_t resp_port() const;     // the RESP listener's bound port; 0 when it is off
  ServerMetricsSnapshot metrics() const;
  // Requests go to `hook` first (server/request_hook.h: the cluster layer's routing); nullptr
  // removes it. Any thread, any time.
  void SetRequestHook(std::shared_ptr<RequestHook> hook);

  void Shutdown();  // graceful, idempotent; returns at once
  void Wait();      // until every thread has stopped (after Shutdown)

  class Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::server
