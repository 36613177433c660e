#pragma once
// Internal to server/: Server::Impl -- the threads, the acceptors, the admission
// budgets and the registry of connections -- and what its files share. Defined in
//   server.cc        budgets, admission, authentication, workers, accept, shutdown
//   metrics_http.cc  the metrics port: /metrics (cached), /healthz, /readyz
// Connections (one client socket each) are in connection.h / connection.cc.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "protocol/protocol.h"
#include "server/config.h"
#include "server/frame_buffer.h"
#include "server/handler.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/server.h"

namespace strata::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;
using Strand = asio::strand<asio::io_context::executor_type>;
using protocol::ErrorCode;
using protocol::Op;

inline Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// The peer's address without the port ("127.0.0.1", "::1"): the key of the per-address limits.
std::string AddressString(const tcp::socket& s);
// The peer's address and port, for log lines ("127.0.0.1:5000", "[::1]:5000").
std::string EndpointString(const tcp::socket& s);
// Logs the exception a coroutine ended with, if any.
void LogCoroutineFailure(std::string_view what, std::exception_ptr e);

class Connection;
class RespListener;  // resp_listener.h

// Raises the calling thread's nice value to `nice` once (the write and maintenance pools'
// threads call it on their first job; see Server::Impl::Lane).
void LowerThreadPriority(int nice);

// ---------------------------------------------------------------------------
// Server::Impl: the threads, the acceptors and the registry of connections.
//
// Thread-safe as Server is. The acceptors, the drain timer, next_connection_id_, next_io_
// and io_work_ (after Run fills it) are used only on control_; conns_ under conns_mu_; the metrics cache under
// metrics_cache_mu_; pending_, inflight_bytes_, stopping_, drain_expired_ and the
// metrics are atomics; the rest is set before the threads start and then read-only.
// ---------------------------------------------------------------------------
class Server::Impl {
 public:
  Impl(const ServerConfig& config, Engine& engine);

  Status Bind();
  void Run();
  void Shutdown();
  void Wait();

  // The connection side (called on the connection's strand).
  //
  // A frame's payload takes its bytes from max_inflight_bytes as soon as its header is
  // read (TryReserveInflight; refused: the payload is read and dropped, and the request
  // answered kBusy), so that frames being read are budgeted too. A request for the workers
  // then takes a slot (worker_threads + queue_limit of them, TryAdmit) before it is
  // decoded, and an upper bound of its reply from max_reply_bytes (TryReserveReply) once
  // decoded; the worker gives the slot and the payload bytes back (Release) once the reply
  // is encoded, and the reply bytes follow the reply until it is written (AdjustReply).
  // Decoded requests are several times their wire size, and a reply can be thousands of
  // times its request's: the two byte budgets are what bound the memory of queued work.
  // Typed vectors (upsert_typed, search_typed of float16, int8, uint8) take their float32
  // width from max_inflight_bytes too, on top of the payload, once the payload is read
  // (kWidenedFull when it does not fit; Connection::TakeWidened).
  enum class Admission { kAdmitted, kQueueFull, kBytesFull, kReplyFull, kWidenedFull };
  bool TryReserveInflight(uint64_t payload_bytes);
  void ReleaseInflight(uint64_t payload_bytes);
  // Searches and other reads, writes, and maintenance (flush, compact, snapshot, create, drop) run
  // on three pools (and a cluster node's routed and ordered requests on four more: HookPools):
  // reads on `pool_` at normal priority; writes on `write_pool_` and
  // maintenance on `maintenance_pool_`, whose threads lower their CPU priority (nice) on
  // their first job, so that a big upsert, a seal or a compaction -- and the OpenMP
  // threads they start, which inherit the priority -- take the cores only when searches
  // leave them idle. Writes and maintenance together may hold at most half of the queue
  // slots, so reads are always admitted while the queue has room for them.
  enum class Lane { kRead, kWrite, kMaintenance };
  static Lane LaneOf(Op op);
  static const char* LaneName(Lane lane);  // "worker", "write", "maintenance" (logs)
  bool TryAdmit(Op op);
  void Release(uint64_t payload_bytes, Op op);  // the slot, and payload bytes reserved
  bool TryReserveReply(uint64_t bytes);
  // Reply bytes held change by `delta` (a bound replaced by the encoded frame, a frame
  // written or dropped).
  void AdjustReply(int64_t delta);
  std::string BusyMessage(Admission why, uint64_t bytes) const;
  // A write still in its wire form: the write pool's thread decodes it, so that an I/O
  // thread, which reads every connection's frames, spends nothing on a large write's
  // payload beyond reading it (a 56 MiB upsert decodes in tens of milliseconds).
  struct EncodedRequest {
    protocol::FrameHeader header;
    FrameBytes payload;
  };
  using PendingRequest = std::variant<protocol::Request, EncodedRequest>;
  // The error code of a payload DecodeRequest refused: too large (a count, dim or string
  // over the decoder's limits), an unknown op, or malformed.
  static ErrorCode DecodeErrorCode(const Status& error);
  void Submit(std::shared_ptr<Connection> conn, uint64_t request_id, Op op, PendingRequest request,
              uint64_t payload_bytes, uint64_t reply_bytes, Clock::time_point start);
  // Where a request runs (docs/CLUSTER.md, "Requests between nodes"): kRouted when the
  // request hook routes it to other nodes (RequestHook::Routes: hook_pools_' routed ones), kOrdered
  // when the hook orders it and passes it on to other nodes as a shard's primary
  // (RequestHook::Orders: hook_pools_->ordered_write), else kLocal (the engine alone answers it).
  // A write still in its wire form is asked by the collection at the head of its payload.
  enum class Tier { kLocal, kRouted, kOrdered };
  Tier TierOf(const PendingRequest& request) const;
  // ServerConfig::inline_reads: whether `request` is small enough to run on the I/O thread
  // that read it: a search of one query with k <= kInlineMaxK at the planner's own choice
  // (no strategy, ef, max_lists or filter given, recall below 1), or a get of at most
  // kInlineMaxRecords, of a collection the engine holds (looked up in its catalog the first
  // time) that has no memory budget (so no SPANN segment: no disk read). Any thread.
  bool RunsInline(const protocol::Request& request);
  static constexpr uint32_t kInlineMaxK = 1000;
  static constexpr size_t kInlineMaxRecords = 64;
  // Runs an admitted request (RunsInline) on the calling I/O thread and returns its reply
  // frame, having given the slot and the payload bytes back (Release); nullopt, with nothing
  // given back, when a hook is set that may take the request (a cluster's router, which may
  // wait on other nodes: RequestHook::PlaceOf): the caller then submits it to the
  // workers.
  std::optional<std::vector<uint8_t>> ExecuteInline(const protocol::Request& request, uint64_t request_id,
                                                    uint64_t payload_bytes, Clock::time_point start);

  // Authentication (any thread). A connection that has not said a valid hello (with a
  // token set) is counted from accept until its hello succeeds, it closes or it is
  // displaced (idempotent).
  void Authenticated(uint64_t connection_id);
  // A failed hello from `address`: counted, logged; returns how long the address is now
  // refused (zero: not refused).
  Clock::duration HelloFailed(const std::string& address, uint64_t connection_id);
  // How much longer `address` is refused after failed hellos (zero: not refused).
  Clock::duration HelloBackoff(const std::string& address);
  std::vector<uint8_t> EncodeReply(protocol::Response response, uint64_t request_id,
                                   uint16_t opcode, Clock::time_point start);
  std::vector<uint8_t> ErrorFrame(uint64_t request_id, uint16_t opcode, ErrorCode code,
                                  std::string message, Clock::time_point start);
  void Unregister(uint64_t id);

  const ServerConfig config_;
  Engine& engine_;
  const uint32_t workers_;
  // One io_context per I/O thread, each run by its thread alone: a connection lives on one
  // of them (NextConnectionIo, round robin), so reading a request, running a small read
  // inline and writing its reply happen on one thread, with no hand-off between I/O threads
  // (on one shared io_context the thread that waited in epoll woke another to run each
  // handler: ~0.1 ms per request here). io_ also holds the acceptors, the control strand and
  // the metrics endpoint; more_io_ the others (io_threads - 1), declared first so that they
  // outlive io_ (whose accept loop holds a socket of the next one).
  std::vector<std::unique_ptr<asio::io_context>> more_io_;
  asio::io_context io_{1};
  std::atomic<uint32_t> next_io_{0};
  asio::io_context& NextConnectionIo();
  asio::thread_pool pool_;              // reads
  asio::thread_pool write_pool_;        // upserts and deletes, nice kWriteNice
  asio::thread_pool maintenance_pool_;  // flush, compact, create, drop, nice kMaintenanceNice
  // The pools of a server with a request hook (a cluster node), made when the first hook is
  // set (Server::SetRequestHook, before has_hook_ is: a request reaches them only through a
  // Tier other than kLocal, which needs the hook) and kept until the server stops.
  // Reads and writes that the request hook routes to other nodes (RequestHook::Routes: a
  // cluster collection's), apart from everything else: a routed request may wait on another
  // node, whose own routed requests may be waiting on this one; the requests they send each
  // other (shard replicas' reads and writes, answered by the engine alone) run on pool_ and
  // write_pool_, which then never wait on another node, so neither node waits forever.
  // The writes a shard's primary orders and passes on (RequestHook::Orders): routed writes
  // wait on them, and they wait on the replicas' write_pool_, so they need threads of their
  // own as well.
  struct HookPools {
    explicit HookPools(uint32_t workers)
        : routed(workers), routed_write(workers), routed_maintenance(kMaintenanceThreads),
          ordered_write(workers) {}
    void join() {
      routed.join();
      routed_write.join();
      routed_maintenance.join();
      ordered_write.join();
    }
    asio::thread_pool routed;              // reads, as pool_
    asio::thread_pool routed_write;        // writes, as write_pool_ (nice kWriteNice)
    asio::thread_pool routed_maintenance;  // flush, compact, drop, as maintenance_pool_
    asio::thread_pool ordered_write;       // as write_pool_ (nice kWriteNice)
  };
  std::once_flag hook_pools_once_;
  std::unique_ptr<HookPools> hook_pools_;  // set once, under hook_pools_once_
  static constexpr uint32_t kMaintenanceThreads = 2;
  static constexpr int kWriteNice = 10;
  static constexpr int kMaintenanceNice = 19;
  std::atomic<uint32_t> pending_background_{0};  // the part of pending_ in writes and maintenance
  Strand control_;  // the acceptors, the drain timer, the accept loops
  tcp::acceptor acceptor_;
  tcp::acceptor metrics_acceptor_;
  asio::steady_timer drain_timer_;
  // Keep every io_context running until Shutdown (io_ first, then more_io_'s in order).
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> io_work_;
  ServerMetrics metrics_;
  RequestHandler handler_;
  protocol::DecodeLimits decode_limits_;
  const Clock::duration linger_;
  uint16_t port_ = 0;
  uint16_t metrics_port_ = 0;
  // The RESP listener (server.resp_port != 0), set by Bind; destroyed before io_.
  std::unique_ptr<RespListener> resp_;

  std::atomic<uint32_t> pending_{0};         // requests queued for or running on the pool
  std::atomic<uint64_t> inflight_bytes_{0};  // payload bytes being read, queued or running
  std::atomic<uint64_t> reply_bytes_{0};     // reply bounds, then encoded replies not written
  std::atomic<bool> stopping_{false};
  std::atomic<bool> drain_expired_{false};  // shutdown_timeout_s has passed
  std::atomic<Clock::rep> shutdown_started_{0};  // Clock ticks, set by Shutdown

  std::mutex conns_mu_;
  std::unordered_map<uint64_t, std::weak_ptr<Connection>> conns_;  // guarded by conns_mu_
  // Connections without a valid hello yet (a token is set), oldest first (ids grow), with
  // their peer address; and their number per address. Guarded by conns_mu_.
  std::map<uint64_t, std::pair<std::weak_ptr<Connection>, std::string>> unauthenticated_;
  std::unordered_map<std::string, uint32_t> unauthenticated_by_address_;
  uint64_t next_connection_id_ = 0;                                // on control_
  Clock::time_point last_refusal_log_{};                           // on control_
  uint64_t refusals_not_logged_ = 0;                               // on control_

  // Failed hellos per peer address (HelloFailed, HelloBackoff).
  struct PeerFailures {
    uint32_t failures = 0;  // within kFailureMemory of each other
    Clock::time_point last_failure{};
    Clock::duration backoff{};
    Clock::time_point refused_until{};
  };
  std::mutex auth_mu_;
  std::unordered_map<std::string, PeerFailures> failures_by_address_;  // guarded by auth_mu_

  std::vector<std::thread> io_threads_;
  std::mutex wait_mu_;
  bool joined_ = false;  // guarded by wait_mu_

  std::mutex metrics_cache_mu_;
  std::string metrics_text_;                            // guarded by metrics_cache_mu_
  std::optional<Clock::time_point> metrics_rendered_at_;  // guarded by metrics_cache_mu_
  bool metrics_rendering_ = false;                      // guarded by metrics_cache_mu_

 private:
  asio::awaitable<void> AcceptLoop();
  // Why a new connection from `address` is refused, or nullopt (under conns_mu_). When
  // it is admitted past max_connections or max_unauthenticated_connections, the oldest
  // connection without a hello is taken out of the count and set in `displaced`, to be
  // closed: connections that never say hello cannot keep out one that does.
  std::optional<protocol::ErrorReply> Refusal(const std::string& address,
                                              std::shared_ptr<Connection>& displaced);
  void ForgetUnauthenticated(uint64_t connection_id);  // under conns_mu_
  void LogRefusal(const std::string& address, const std::string& why);
  asio::awaitable<void> MetricsAcceptLoop();
  asio::awaitable<void> ServeHttp(std::shared_ptr<tcp::socket> socket);
  asio::awaitable<std::string> RenderMetricsOnPool();
  // The metrics text, at most kMetricsCacheTtl old; nullopt when another scrape's
  // rendering did not finish by `deadline`.
  asio::awaitable<std::optional<std::string>> MetricsText(Clock::time_point deadline);
  std::vector<std::shared_ptr<Connection>> LiveConnections();
  void RunIo(asio::io_context& io);
};

}  // namespace strata::server
