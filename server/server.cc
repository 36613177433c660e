#include "server/server.h"

#include <fmt/core.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "protocol/protocol.h"
#include "server/auth.h"
#include "server/handler.h"
#include "server/log.h"

namespace strata::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;
using Strand = asio::strand<asio::io_context::executor_type>;
using protocol::ErrorCode;
using protocol::Op;

spdlog::logger& ServerLog() {
  static const std::shared_ptr<spdlog::logger> logger = [] {
    if (auto existing = spdlog::get("server")) return existing;
    auto l = spdlog::default_logger()->clone("server");
    try {
      spdlog::register_logger(l);
    } catch (const spdlog::spdlog_ex&) {
      // Registered by someone else in the meantime: use theirs.
      if (auto existing = spdlog::get("server")) return existing;
    }
    return l;
  }();
  return *logger;
}

namespace {

Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// A failed hello past this many closes the connection.
constexpr int kMaxFailedHellos = 3;
// After the last reply the server shuts its sending side and waits this long at
// most for the client to close, reading and dropping whatever it still sends:
// closing a socket with unread input resets the connection, and a reset can
// destroy replies the client has not read yet.
constexpr double kLingerSeconds = 1.0;
// Before a successful hello on a server with a token, a frame's payload may be at most
// this large (a hello is a name and a token): an unauthenticated peer cannot make the
// server buffer a max_frame_bytes payload.
constexpr uint32_t kMaxPayloadBeforeHello = 64 * 1024;
// A metrics request must arrive whole within this long (or request_timeout_s, if shorter).
constexpr double kHttpTimeoutSeconds = 10.0;
// The metrics text is rendered at most once per this period (engine.counters() takes the
// engine's locks and walks every collection) and by one worker at a time; scrapes in
// between get the cached text.
constexpr auto kMetricsCacheTtl = std::chrono::seconds(1);
constexpr size_t kMaxHttpHeadBytes = 16 * 1024;
// A writer sends at most this many frames / bytes in one gathered write.
constexpr size_t kMaxFramesPerWrite = 64;
constexpr size_t kMaxBytesPerWrite = 4u << 20;
// Failed hellos per peer address (max_failed_hellos): failures are forgotten after this
// long without one; past the limit the address is refused for kFirstBackoff, doubling
// with each further failure up to kMaxBackoff.
constexpr auto kFailureMemory = std::chrono::seconds(60);
constexpr auto kFirstBackoff = std::chrono::seconds(1);
constexpr auto kMaxBackoff = std::chrono::seconds(60);
// Addresses whose failures are remembered at most; past it those neither refused nor
// recently failed are forgotten first.
constexpr size_t kMaxTrackedAddresses = 65536;
// Refused connections are logged at most once per this period (the rest are counted in
// the metrics and summed in the next line), so that a flood does not flood the log.
constexpr auto kRefusalLogPeriod = std::chrono::seconds(1);

// The peer's address without the port ("127.0.0.1", "::1"): the key of the per-address limits.
std::string AddressString(const tcp::socket& s) {
  error_code ec;
  const tcp::endpoint e = s.remote_endpoint(ec);
  if (ec) return "unknown";
  return e.address().to_string();
}

std::string EndpointString(const tcp::socket& s) {
  error_code ec;
  const tcp::endpoint e = s.remote_endpoint(ec);
  if (ec) return "unknown peer";
  if (e.address().is_v6()) return fmt::format("[{}]:{}", e.address().to_string(), e.port());
  return fmt::format("{}:{}", e.address().to_string(), e.port());
}

void LogCoroutineFailure(std::string_view what, std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    ServerLog().error("{}: {}", what, x.what());
  } catch (...) {
    ServerLog().error("{}: unknown exception", what);
  }
}

// Raises the calling thread's nice value to `nice` once (Linux: nice is per thread, and
// threads it creates -- OpenMP teams of a seal or compaction -- inherit it). Lowering
// priority needs no privilege; failure only costs the protection, so it is logged once.
void LowerThreadPriority(int nice) {
  thread_local bool done = false;
  if (done) return;
  done = true;
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice) != 0) {
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true)) {
      ServerLog().warn("cannot lower the priority of write/maintenance threads: {}", std::strerror(errno));
    }
  }
}

}  // namespace

class Connection;

// ---------------------------------------------------------------------------
// Server::Impl: the threads, the acceptors and the registry of connections.
//
// Thread-safe as Server is. The acceptors, the drain timer and next_connection_id_
// are used only on control_; conns_ under conns_mu_; the metrics cache under
// metrics_cache_mu_; pending_, inflight_bytes_, stopping_, drain_expired_ and the
// metrics are atomics; the rest is set before the threads start and then read-only.
// ---------------------------------------------------------------------------
class Server::Impl {
 public:
  Impl(const ServerConfig& config, Engine& engine)
      : config_(config),
        engine_(engine),
        workers_(EffectiveWorkerThreads(config)),
        pool_(workers_),
        write_pool_(workers_),
        maintenance_pool_(kMaintenanceThreads),
        control_(asio::make_strand(io_)),
        acceptor_(control_),
        metrics_acceptor_(control_),
        drain_timer_(control_),
        handler_(engine, config, metrics_),
        linger_(Seconds(std::min(kLingerSeconds, config.request_timeout_s))) {
    // A batch over max_batch is refused while decoding (OutOfRange, answered with
    // kTooLarge), before anything is allocated for its records.
    decode_limits_.max_batch = config.max_batch;
  }

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
  enum class Admission { kAdmitted, kQueueFull, kBytesFull, kReplyFull };
  bool TryReserveInflight(uint64_t payload_bytes);
  void ReleaseInflight(uint64_t payload_bytes);
  // Searches and other reads, writes, and maintenance (flush, compact, create, drop) run
  // on three pools: reads on `pool_` at normal priority; writes on `write_pool_` and
  // maintenance on `maintenance_pool_`, whose threads lower their CPU priority (nice) on
  // their first job, so that a big upsert, a seal or a compaction -- and the OpenMP
  // threads they start, which inherit the priority -- take the cores only when searches
  // leave them idle. Writes and maintenance together may hold at most half of the queue
  // slots, so reads are always admitted while the queue has room for them.
  enum class Lane { kRead, kWrite, kMaintenance };
  static Lane LaneOf(Op op);
  bool TryAdmit(Op op);
  void Release(uint64_t payload_bytes, Op op);  // the slot, and payload bytes reserved
  bool TryReserveReply(uint64_t bytes);
  // Reply bytes held change by `delta` (a bound replaced by the encoded frame, a frame
  // written or dropped).
  void AdjustReply(int64_t delta);
  std::string BusyMessage(Admission why, uint64_t bytes) const;
  void Submit(std::shared_ptr<Connection> conn, uint64_t request_id, protocol::Request request,
              uint64_t payload_bytes, uint64_t reply_bytes, Clock::time_point start);

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
  asio::io_context io_;
  asio::thread_pool pool_;              // reads
  asio::thread_pool write_pool_;        // upserts and deletes, nice kWriteNice
  asio::thread_pool maintenance_pool_;  // flush, compact, create, drop, nice kMaintenanceNice
  static constexpr uint32_t kMaintenanceThreads = 2;
  static constexpr int kWriteNice = 10;
  static constexpr int kMaintenanceNice = 19;
  std::atomic<uint32_t> pending_background_{0};  // the part of pending_ in writes and maintenance
  Strand control_;  // the acceptors, the drain timer, the accept loops
  tcp::acceptor acceptor_;
  tcp::acceptor metrics_acceptor_;
  asio::steady_timer drain_timer_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> io_work_;
  ServerMetrics metrics_;
  RequestHandler handler_;
  protocol::DecodeLimits decode_limits_;
  const Clock::duration linger_;
  uint16_t port_ = 0;
  uint16_t metrics_port_ = 0;

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
  void RunIo();
};

// ---------------------------------------------------------------------------
// Connection: one client socket, its three coroutines and its queue of replies.
//
// Thread-compatible, confined to strand_: every method runs there (other threads
// post to it), except Start, which runs before anything else can reach it, and
// gone() and id(), which any thread may call.
// Owned jointly by its coroutines and by the replies in flight for it.
//
// Memory it holds: the payload of the frame being read (reserved from max_inflight_bytes
// from its header on); the replies of its requests, as bounds and then as frames
// (reply_bytes_, also counted server-wide): at or over max_connection_reply_bytes the
// reader pauses, as at max_pipeline requests in flight.
// ---------------------------------------------------------------------------
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Server::Impl& server, uint64_t id, Strand strand, tcp::socket socket, bool admitted)
      : server_(server),
        config_(server.config_),
        id_(id),
        admitted_(admitted),
        strand_(std::move(strand)),
        socket_(std::move(socket)),
        peer_(EndpointString(socket_)),
        address_(AddressString(socket_)),
        write_signal_(strand_),
        read_signal_(strand_),
        watchdog_(strand_),
        authenticated_(config_.token.empty()),
        counted_unauthenticated_(admitted && !authenticated_),
        last_activity_(Clock::now()),
        hello_deadline_(last_activity_ + Seconds(config_.hello_timeout_s)) {
    write_signal_.expires_at(Clock::time_point::max());
    read_signal_.expires_at(Clock::time_point::max());
  }

  const Strand& strand() const { return strand_; }
  uint64_t id() const { return id_; }
  // True once the connection has been closed (any thread may ask: a worker checks it
  // before running a request whose reply nobody could read).
  bool gone() const { return gone_.load(std::memory_order_acquire); }

  // Spawns the reader, the writer and the watchdog.
  void Start() {
    if (admitted_) ServerLog().debug("connection {} from {} opened", id_, peer_);
    Spawn(ReadLoop(shared_from_this()), "reader");
    Spawn(WriteLoop(shared_from_this()), "writer");
    Spawn(Watchdog(shared_from_this()), "watchdog");
  }

  // A connection refused at accept (max_connections, the limits on connections without a
  // hello, an address in back-off): send one error frame, then close.
  void StartRejected(std::vector<uint8_t> frame) {
    accepting_ = false;
    ++in_flight_;
    out_.push_back(std::move(frame));
    Start();
  }

  // Made room for a new connection (Server::Impl::Refusal): closed unless it has said
  // its hello in the meantime.
  void Displace() {
    if (closed_ || authenticated_) return;
    ServerLog().debug("connection {} from {}: no hello yet; closed to make room for a new one",
                      id_, peer_);
    counted_unauthenticated_ = false;  // already out of the count
    Close("displaced before its hello");
  }

  // Graceful shutdown: take no new frames; close once every reply has been written.
  void StopAccepting() {
    if (closed_ || !accepting_) return;
    accepting_ = false;
    Kick();
  }

  // A reply for a request of this connection (from a worker, posted to the strand, or
  // made here), for which `reserved` reply bytes were taken (0 for replies made here): from
  // now on the frame's own size is held instead, until it is written.
  // An empty frame means the reply could not be made: the connection is closed.
  void Deliver(std::vector<uint8_t> frame, uint64_t reserved = 0) {
    if (closed_ || finishing_ || frame.empty()) {
      --in_flight_;
      HoldReply(-int64_t(reserved));
      // Gone: the reply is dropped; empty: it could not be made.
      if (!closed_ && !finishing_) Close("a reply could not be encoded");
      return;
    }
    HoldReply(int64_t(frame.size()) - int64_t(reserved));
    out_.push_back(std::move(frame));
    write_signal_.cancel();
    read_signal_.cancel();  // the bytes held may have dropped under the limit
  }

  void Close(std::string_view why) {
    if (closed_) return;
    closed_ = true;
    gone_.store(true, std::memory_order_release);
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    write_signal_.cancel();
    read_signal_.cancel();
    watchdog_.cancel();
    int64_t queued = 0;
    for (const auto& frame : out_) queued += int64_t(frame.size());
    out_.clear();
    HoldReply(-queued);
    if (counted_unauthenticated_) {
      counted_unauthenticated_ = false;
      server_.Authenticated(id_);
    }
    if (admitted_) {
      ServerLog().debug("connection {} from {} closed: {} ({} requests)", id_, peer_, why,
                        requests_);
      server_.Unregister(id_);
    }
  }

 private:
  enum class Phase { kIdle, kInFrame, kPaused };

  template <typename Awaitable>
  void Spawn(Awaitable a, const char* what) {
    asio::co_spawn(strand_, std::move(a), [self = shared_from_this(), what](std::exception_ptr e) {
      if (!e) return;
      LogCoroutineFailure(fmt::format("connection {} {}", self->id_, what), e);
      self->Close("internal error");
    });
  }

  // Wakes every coroutine so that it re-checks the state.
  void Kick() {
    write_signal_.cancel();
    read_signal_.cancel();
    watchdog_.cancel();
  }

  // Each coroutine takes a reference to the connection as a parameter: parameters
  // live in the coroutine frame, so the connection outlives the coroutine.
  asio::awaitable<void> ReadLoop(std::shared_ptr<Connection> keep_alive);
  asio::awaitable<void> WriteLoop(std::shared_ptr<Connection> keep_alive);
  asio::awaitable<void> Watchdog(std::shared_ptr<Connection> keep_alive);
  asio::awaitable<void> ReadPayload(uint32_t size, error_code& ec);
  // Reads `size` bytes and drops them (a payload refused for want of budget).
  asio::awaitable<void> DiscardPayload(uint32_t size, error_code& ec);
  // The reply bytes this connection holds change by `delta` (and the server's with them).
  void HoldReply(int64_t delta) {
    if (delta == 0) return;
    reply_bytes_ = uint64_t(int64_t(reply_bytes_) + delta);
    server_.AdjustReply(delta);
  }
  // The reader pauses: max_pipeline requests in flight, or max_connection_reply_bytes held.
  bool ShouldPause() const {
    return in_flight_ >= config_.max_pipeline || reply_bytes_ >= config_.max_connection_reply_bytes;
  }
  void Hello(const protocol::HelloRequest& hello, uint64_t request_id, uint16_t opcode,
             Clock::time_point start);
  void HandleFrame(const protocol::FrameHeader& header, Clock::time_point start);
  void FramingError(const Status& error, Clock::time_point start);
  // The error reply to a payload DecodeRequest refused.
  void DecodeFailed(uint64_t request_id, uint16_t opcode, const Status& error,
                    Clock::time_point start);
  void ReplyError(uint64_t request_id, uint16_t opcode, ErrorCode code, std::string message,
                  Clock::time_point start) {
    Deliver(server_.ErrorFrame(request_id, opcode, code, std::move(message), start));
  }

  Server::Impl& server_;
  const ServerConfig& config_;
  const uint64_t id_;
  const bool admitted_;  // counted in max_connections (a rejected one is not)
  Strand strand_;
  tcp::socket socket_;
  const std::string peer_;
  const std::string address_;        // peer_ without the port
  asio::steady_timer write_signal_;  // cancelled to wake the writer
  asio::steady_timer read_signal_;   // cancelled to wake a reader paused by max_pipeline
  asio::steady_timer watchdog_;      // the deadlines; cancelled to re-evaluate them

  std::deque<std::vector<uint8_t>> out_;  // frames waiting to be written
  uint32_t in_flight_ = 0;  // frames read (or rejections queued) whose reply is not written yet
  Phase phase_ = Phase::kIdle;
  bool accepting_ = true;   // false: no new frames (shutdown, framing error, failed hellos, EOF)
  bool finishing_ = false;  // every reply written and the sending side shut
  bool reader_done_ = false;
  bool closed_ = false;
  std::atomic<bool> gone_{false};  // closed_, for other threads
  bool authenticated_;
  bool counted_unauthenticated_;  // in the server's count of connections without a hello
  int failed_hellos_ = 0;
  uint64_t requests_ = 0;
  uint64_t reply_bytes_ = 0;       // reply bounds and frames held for this connection
  uint64_t reserved_payload_ = 0;  // max_inflight_bytes taken for the frame being read
  Clock::time_point last_activity_;    // the idle clock starts here
  const Clock::time_point hello_deadline_;  // a token is set: no valid hello by then closes
  Clock::time_point frame_deadline_;   // while kInFrame
  Clock::time_point linger_deadline_;  // while finishing_
  std::optional<Clock::time_point> write_deadline_;  // progress: while a write is pending
  // min_write_bytes_per_s: since when replies have been waiting to be written (unset
  // when all are out), and the bytes written since then.
  std::optional<Clock::time_point> backlog_since_;
  uint64_t backlog_written_ = 0;
  std::array<uint8_t, protocol::kHeaderSize> header_{};
  std::vector<uint8_t> payload_;
};

asio::awaitable<void> Connection::ReadPayload(uint32_t size, error_code& ec) {
  // Grown as bytes arrive rather than allocated from the header up front, so that
  // a peer announcing a large frame and sending nothing costs no memory.
  payload_.clear();
  size_t got = 0;
  while (got < size) {
    const size_t want = std::min<size_t>(size, std::max<size_t>(2 * got, 64 * 1024));
    payload_.resize(want);
    co_await asio::async_read(socket_, asio::buffer(payload_.data() + got, want - got),
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    got = want;
  }
}

asio::awaitable<void> Connection::DiscardPayload(uint32_t size, error_code& ec) {
  std::array<uint8_t, 4096> scratch;
  size_t left = size;
  while (left > 0) {
    const size_t n = co_await socket_.async_read_some(
        asio::buffer(scratch.data(), std::min(left, scratch.size())),
        asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    left -= n;
  }
}

asio::awaitable<void> Connection::ReadLoop(std::shared_ptr<Connection> /*keep_alive*/) {
  error_code ec;
  std::array<uint8_t, 4096> scratch;
  while (!closed_) {
    if (!accepting_) {
      // No new frames: read and drop whatever the client sends until it closes
      // (or the watchdog or the writer closes the connection).
      co_await socket_.async_read_some(asio::buffer(scratch),
                                       asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      continue;
    }
    if (ShouldPause()) {
      phase_ = Phase::kPaused;
      co_await read_signal_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;  // woken by a write that completed (or by a state change): check again
    }
    phase_ = Phase::kIdle;
    last_activity_ = std::max(last_activity_, Clock::now());
    const size_t n = co_await socket_.async_read_some(
        asio::buffer(header_), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    const Clock::time_point start = Clock::now();
    phase_ = Phase::kInFrame;
    frame_deadline_ = start + Seconds(config_.request_timeout_s);
    if (n < header_.size()) {
      co_await asio::async_read(socket_, asio::buffer(header_.data() + n, header_.size() - n),
                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    auto header = protocol::DecodeHeader(header_, config_.max_frame_bytes);
    if (header && !authenticated_ && header->payload_size > kMaxPayloadBeforeHello) {
      header = Error(OutOfRange(
          "frame header: payload_size {} exceeds the limit {} that applies until a hello with "
          "this server's token has succeeded",
          header->payload_size, kMaxPayloadBeforeHello));
    }
    if (!header) {
      phase_ = Phase::kIdle;
      FramingError(header.error(), start);
      continue;
    }
    if (!server_.TryReserveInflight(header->payload_size)) {
      // No budget for the payload: read it without keeping it, and answer busy (the
      // connection stays in step with the frames, and keeps no memory for this one).
      co_await DiscardPayload(header->payload_size, ec);
      if (ec) break;
      phase_ = Phase::kIdle;
      if (finishing_) continue;
      ++in_flight_;
      ++requests_;
      server_.metrics_.BusyRejection();
      ReplyError(header->request_id, header->opcode, ErrorCode::kBusy,
                 server_.BusyMessage(Server::Impl::Admission::kBytesFull, header->payload_size),
                 start);
      write_signal_.cancel();
      continue;
    }
    reserved_payload_ = header->payload_size;
    co_await ReadPayload(header->payload_size, ec);
    if (ec) break;
    phase_ = Phase::kIdle;
    HandleFrame(*header, start);  // takes reserved_payload_ when it submits the request
    server_.ReleaseInflight(std::exchange(reserved_payload_, 0));
    // The writer does not finish while a frame is being read (its request must be
    // answered, if only with kShuttingDown): let it re-check now that it is done.
    write_signal_.cancel();
    // What an idle connection keeps is small: a large payload's buffer is not kept.
    if (payload_.capacity() > kMaxPayloadBeforeHello) std::vector<uint8_t>().swap(payload_);
  }
  server_.ReleaseInflight(std::exchange(reserved_payload_, 0));
  reader_done_ = true;
  phase_ = Phase::kIdle;
  if (closed_) co_return;
  if (ec == asio::error::eof && !finishing_) {
    // The client has finished sending: answer what is in flight, then close.
    accepting_ = false;
    Kick();
  } else if (ec == asio::error::eof) {
    Close("closed by the client");
  } else {
    Close(fmt::format("read failed: {}", ec.message()));
  }
}

asio::awaitable<void> Connection::WriteLoop(std::shared_ptr<Connection> /*keep_alive*/) {
  error_code ec;
  std::vector<std::vector<uint8_t>> batch;
  std::vector<asio::const_buffer> buffers;
  while (!closed_) {
    if (!out_.empty()) {
      batch.clear();
      buffers.clear();
      size_t bytes = 0;
      while (!out_.empty() && batch.size() < kMaxFramesPerWrite && bytes < kMaxBytesPerWrite) {
        bytes += out_.front().size();
        batch.push_back(std::move(out_.front()));
        out_.pop_front();
      }
      for (const auto& frame : batch) buffers.push_back(asio::buffer(frame));
      // The deadline is for progress: request_timeout_s from the start of the write and
      // again from each partial write (the completion condition runs before each one, on
      // this strand), so a client that reads a large reply slowly but steadily is kept --
      // as long as it keeps up min_write_bytes_per_s since its replies began waiting
      // (backlog_since_; the watchdog checks).
      const Clock::duration timeout = Seconds(config_.request_timeout_s);
      if (!backlog_since_) {
        backlog_since_ = Clock::now();
        backlog_written_ = 0;
      }
      const uint64_t written_before = backlog_written_;
      co_await asio::async_write(
          socket_, buffers,
          [this, timeout, written_before](const error_code& e, size_t transferred) -> size_t {
            write_deadline_ = Clock::now() + timeout;
            backlog_written_ = written_before + transferred;
            return asio::transfer_all()(e, transferred);
          },
          asio::redirect_error(asio::use_awaitable, ec));
      write_deadline_.reset();
      in_flight_ -= uint32_t(batch.size());
      HoldReply(-int64_t(bytes));  // written, or lost with the connection
      batch.clear();
      if (out_.empty()) backlog_since_.reset();
      if (ec) {
        Close(fmt::format("write failed: {}", ec.message()));
        co_return;
      }
      last_activity_ = Clock::now();
      read_signal_.cancel();  // room in the pipeline again
      continue;
    }
    if (!accepting_ && in_flight_ == 0 && phase_ != Phase::kInFrame) {
      // Every reply is out, and no frame is half read (the reader kicks the writer once
      // it has handled one): send FIN, then wait (bounded) for the client to close.
      finishing_ = true;
      socket_.shutdown(tcp::socket::shutdown_send, ec);
      if (reader_done_ || ec) {
        Close("finished");
      } else {
        linger_deadline_ = Clock::now() + server_.linger_;
        watchdog_.cancel();
      }
      co_return;
    }
    co_await write_signal_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> Connection::Watchdog(std::shared_ptr<Connection> /*keep_alive*/) {
  const Clock::duration idle_timeout = Seconds(config_.idle_timeout_s);
  const Clock::duration request_timeout = Seconds(config_.request_timeout_s);
  // Deadlines are only ever set to at least `now + cap` (except the linger one,
  // which cancels the timer), so sleeping at most `cap` never wakes up late.
  const Clock::duration cap = std::min(idle_timeout, request_timeout);
  const double min_rate = config_.min_write_bytes_per_s;
  error_code ec;
  while (!closed_) {
    const Clock::time_point now = Clock::now();
    const bool idle = phase_ == Phase::kIdle && accepting_ && in_flight_ == 0;
    if (phase_ == Phase::kInFrame && now >= frame_deadline_) {
      ServerLog().warn(
          "connection {} from {}: request timeout: a frame begun {} s ago is still "
          "incomplete (request_timeout_s); closing",
          id_, peer_, config_.request_timeout_s);
      Close("request timeout");
      break;
    }
    if (write_deadline_ && now >= *write_deadline_) {
      ServerLog().warn(
          "connection {} from {}: write timeout: the client has taken none of its replies "
          "for {} s (request_timeout_s); closing",
          id_, peer_, config_.request_timeout_s);
      server_.metrics_.SlowClientClosed();
      Close("write timeout");
      break;
    }
    if (backlog_since_ && min_rate > 0 && now >= *backlog_since_ + request_timeout) {
      const double waited = std::chrono::duration<double>(now - *backlog_since_).count();
      if (double(backlog_written_) < min_rate * waited) {
        ServerLog().warn(
            "connection {} from {}: write too slow: the client took {} bytes of its replies in "
            "{:.1f} s, under min_write_bytes_per_s {}; closing",
            id_, peer_, backlog_written_, waited, config_.min_write_bytes_per_s);
        server_.metrics_.SlowClientClosed();
        Close("write too slow");
        break;
      }
    }
    if (!authenticated_ && now >= hello_deadline_) {
      ServerLog().warn(
          "connection {} from {}: no hello with the server's token within {} s "
          "(hello_timeout_s); closing",
          id_, peer_, config_.hello_timeout_s);
      Close("no valid hello");
      break;
    }
    if (finishing_ && now >= linger_deadline_) {
      Close("finished");
      break;
    }
    if (idle && now >= last_activity_ + idle_timeout) {
      ServerLog().warn("connection {} from {}: idle for {} s (idle_timeout_s); closing", id_, peer_,
                       config_.idle_timeout_s);
      Close("idle timeout");
      break;
    }
    Clock::time_point next = now + cap;
    if (phase_ == Phase::kInFrame) next = std::min(next, frame_deadline_);
    if (write_deadline_) next = std::min(next, *write_deadline_);
    if (backlog_since_ && min_rate > 0) {
      // The first check once the replies have waited request_timeout_s; then when the
      // bytes written would fall under the rate if no more were taken (writes only move
      // that later, so the watchdog never wakes late).
      const double ahead_s = std::min(double(backlog_written_) / min_rate, 1e6);
      const auto behind = *backlog_since_ + Seconds(ahead_s);
      next = std::min(next, std::max(*backlog_since_ + request_timeout, behind));
    }
    if (finishing_) next = std::min(next, linger_deadline_);
    if (idle) next = std::min(next, last_activity_ + idle_timeout);
    if (!authenticated_) next = std::min(next, hello_deadline_);
    watchdog_.expires_at(next);
    co_await watchdog_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

void Connection::FramingError(const Status& error, Clock::time_point start) {
  // Best effort: the request id where it would be, whatever the rest of the header says.
  uint64_t request_id = 0;
  std::memcpy(&request_id, header_.data() + 8, sizeof request_id);
  uint16_t opcode = 0;
  std::memcpy(&opcode, header_.data() + 6, sizeof opcode);
  ServerLog().warn("connection {} from {}: framing error: {}; closing", id_, peer_,
                   error.message());
  const ErrorCode code =
      error.code() == StatusCode::kOutOfRange ? ErrorCode::kTooLarge : ErrorCode::kMalformed;
  accepting_ = false;
  ++in_flight_;
  ReplyError(request_id, opcode, code, error.message(), start);
  Kick();
}

void Connection::HandleFrame(const protocol::FrameHeader& header, Clock::time_point start) {
  const uint64_t rid = header.request_id;
  const uint16_t opcode = header.opcode;
  if (finishing_) return;  // the sending side is shut: nothing can be answered
  ++in_flight_;
  ++requests_;
  if (!accepting_) {
    ReplyError(rid, opcode, ErrorCode::kShuttingDown, "the server is shutting down", start);
    return;
  }
  if (!protocol::IsKnownRequestOp(opcode)) {
    ReplyError(rid, opcode, ErrorCode::kUnknownOp,
               fmt::format("unknown opcode {} (0x{:04x})", opcode, opcode), start);
    return;
  }
  const Op op = static_cast<Op>(opcode);
  // Before decoding, so that a client without the token cannot make the server
  // decode (and allocate for) anything but a hello.
  if (!authenticated_ && op != Op::kHello) {
    ReplyError(
        rid, opcode, ErrorCode::kUnauthenticated,
        fmt::format("{}: this server requires a hello with its token first", protocol::OpName(op)),
        start);
    return;
  }
  if (op == Op::kHello || op == Op::kPing) {
    // Answered here, on the I/O thread: small, and needing no worker.
    auto request = protocol::DecodeRequest(header, payload_, server_.decode_limits_);
    if (!request) {
      DecodeFailed(rid, opcode, request.error(), start);
      return;
    }
    if (op == Op::kPing) {
      Deliver(server_.EncodeReply({Op::kPing, protocol::EmptyReply{}}, rid, opcode, start));
      return;
    }
    Hello(std::get<protocol::HelloRequest>(request->body), rid, opcode, start);
    return;
  }
  // A request for the workers: admitted (a queue slot; its payload's bytes were taken
  // when its header was read) before it is decoded, so that a busy server spends nothing
  // on the requests it refuses.
  if (!server_.TryAdmit(op)) {
    server_.metrics_.BusyRejection();
    ReplyError(rid, opcode, ErrorCode::kBusy,
               server_.BusyMessage(Server::Impl::Admission::kQueueFull, 0), start);
    return;
  }
  auto request = protocol::DecodeRequest(header, payload_, server_.decode_limits_);
  if (!request) {
    server_.Release(0, op);
    DecodeFailed(rid, opcode, request.error(), start);
    return;
  }
  // Its reply's upper bound, held from now until the reply is written: past
  // max_reply_bytes server-wide it is busy; this connection's share is checked by the
  // reader before it takes the next frame (ShouldPause).
  const uint64_t reply = protocol::kHeaderSize + server_.handler_.ReplyBound(*request);
  if (!server_.TryReserveReply(reply)) {
    server_.Release(0, op);
    server_.metrics_.BusyRejection();
    ReplyError(rid, opcode, ErrorCode::kBusy,
               server_.BusyMessage(Server::Impl::Admission::kReplyFull, reply), start);
    return;
  }
  reply_bytes_ += reply;
  server_.Submit(shared_from_this(), rid, std::move(*request), std::exchange(reserved_payload_, 0),
                 reply, start);
}

void Connection::Hello(const protocol::HelloRequest& hello, uint64_t rid, uint16_t opcode,
                       Clock::time_point start) {
  if (config_.token.empty()) {
    // No token needed: the hello only asks for the limits.
    Deliver(server_.EncodeReply({Op::kHello, server_.handler_.Hello()}, rid, opcode, start));
    return;
  }
  // An address in back-off gets no comparison at all: a guess then tells nothing.
  if (const Clock::duration left = server_.HelloBackoff(address_); left > Clock::duration::zero()) {
    server_.metrics_.HelloBackoffRefusal();
    ReplyError(rid, opcode, ErrorCode::kUnauthenticated,
               fmt::format("hello: refused: too many failed hellos from {}; retry in {:.1f} s",
                           address_, std::chrono::duration<double>(left).count()),
               start);
    accepting_ = false;  // the error goes out, then the connection closes
    Kick();
    return;
  }
  if (!TokensEqual(config_.token, hello.token)) {
    ++failed_hellos_;
    const bool missing = hello.token.empty();
    ServerLog().warn("connection {} from {}: hello {} ({} of {} on this connection)", id_, peer_,
                     missing ? "without a token" : "with a wrong token", failed_hellos_,
                     kMaxFailedHellos);
    server_.HelloFailed(address_, id_);
    // A missing token is told apart from a wrong one: the first is a client not given
    // the token at all (--token, STRATA_TOKEN), the second a token that differs.
    ReplyError(rid, opcode, ErrorCode::kUnauthenticated,
               missing ? "hello: token required: this server requires a token and the hello "
                         "carried none"
                       : "hello: wrong token",
               start);
    if (failed_hellos_ >= kMaxFailedHellos) {
      accepting_ = false;  // the error goes out, then the connection closes
      Kick();
    }
    return;
  }
  authenticated_ = true;
  if (counted_unauthenticated_) {
    counted_unauthenticated_ = false;
    server_.Authenticated(id_);
  }
  watchdog_.cancel();  // the hello deadline no longer applies
  ServerLog().debug("connection {} from {}: hello from '{}'", id_, peer_, hello.client_name);
  Deliver(server_.EncodeReply({Op::kHello, server_.handler_.Hello()}, rid, opcode, start));
}

void Connection::DecodeFailed(uint64_t request_id, uint16_t opcode, const Status& error,
                              Clock::time_point start) {
  // A count, dim or string over the decoder's limits (max_batch is the server's) is
  // OutOfRange: the request is well formed but too large; anything else is malformed.
  ErrorCode code = ErrorCode::kMalformed;
  if (error.code() == StatusCode::kUnimplemented) code = ErrorCode::kUnknownOp;
  if (error.code() == StatusCode::kOutOfRange) code = ErrorCode::kTooLarge;
  ServerLog().debug("connection {} from {}: {}", id_, peer_, error.message());
  ReplyError(request_id, opcode, code, error.message(), start);
}

// ---------------------------------------------------------------------------
// Server::Impl
// ---------------------------------------------------------------------------

namespace {

// Adds `bytes` to `counter` unless that would pass `limit`; a caller holding nothing
// else may always take `bytes` up to the limit.
bool TryTake(std::atomic<uint64_t>& counter, uint64_t bytes, uint64_t limit) {
  uint64_t held = counter.load(std::memory_order_relaxed);
  do {
    if (bytes > limit || held > limit - bytes) return false;
  } while (!counter.compare_exchange_weak(held, held + bytes, std::memory_order_acq_rel));
  return true;
}

}  // namespace

bool Server::Impl::TryReserveInflight(uint64_t payload_bytes) {
  // ValidateServerConfig keeps max_inflight_bytes >= max_frame_bytes, so a frame alone
  // always fits.
  return TryTake(inflight_bytes_, payload_bytes, config_.max_inflight_bytes);
}

void Server::Impl::ReleaseInflight(uint64_t payload_bytes) {
  if (payload_bytes != 0) inflight_bytes_.fetch_sub(payload_bytes, std::memory_order_acq_rel);
}

Server::Impl::Lane Server::Impl::LaneOf(Op op) {
  switch (op) {
    case Op::kUpsert:
    case Op::kDelete:
      return Lane::kWrite;
    case Op::kFlush:
    case Op::kCompact:
    case Op::kCreateCollection:
    case Op::kDropCollection:
      return Lane::kMaintenance;
    default:
      return Lane::kRead;
  }
}

bool Server::Impl::TryAdmit(Op op) {
  const uint32_t limit = workers_ + config_.queue_limit;
  const bool background = LaneOf(op) != Lane::kRead;
  if (background) {
    const uint32_t background_limit = std::max<uint32_t>(1, limit / 2);
    if (pending_background_.fetch_add(1, std::memory_order_acq_rel) >= background_limit) {
      pending_background_.fetch_sub(1, std::memory_order_acq_rel);
      return false;
    }
  }
  if (pending_.fetch_add(1, std::memory_order_acq_rel) >= limit) {
    pending_.fetch_sub(1, std::memory_order_acq_rel);
    if (background) pending_background_.fetch_sub(1, std::memory_order_acq_rel);
    return false;
  }
  metrics_.WorkQueued();
  return true;
}

void Server::Impl::Release(uint64_t payload_bytes, Op op) {
  ReleaseInflight(payload_bytes);
  pending_.fetch_sub(1, std::memory_order_acq_rel);
  if (LaneOf(op) != Lane::kRead) pending_background_.fetch_sub(1, std::memory_order_acq_rel);
  metrics_.WorkDone();
}

bool Server::Impl::TryReserveReply(uint64_t bytes) {
  // ValidateServerConfig keeps max_reply_bytes >= max_frame_bytes, and bounds are at most
  // a frame: a request alone always fits.
  if (!TryTake(reply_bytes_, bytes, config_.max_reply_bytes)) return false;
  metrics_.ReplyBytes(reply_bytes_.load(std::memory_order_relaxed));
  return true;
}

void Server::Impl::AdjustReply(int64_t delta) {
  // Unsigned wrap-around adds a negative delta.
  const uint64_t now = reply_bytes_.fetch_add(uint64_t(delta), std::memory_order_acq_rel) +
                       uint64_t(delta);
  metrics_.ReplyBytes(now);
}

std::string Server::Impl::BusyMessage(Admission why, uint64_t bytes) const {
  switch (why) {
    case Admission::kBytesFull:
      return fmt::format(
          "server busy: requests of {} payload bytes are being read, queued or running, and "
          "this one's {} would pass max_inflight_bytes {}; retry later",
          inflight_bytes_.load(std::memory_order_relaxed), bytes, config_.max_inflight_bytes);
    case Admission::kReplyFull:
      return fmt::format(
          "server busy: replies of {} bytes are being made or wait to be written, and this "
          "request's could take up to {} more, over max_reply_bytes {}; retry later",
          reply_bytes_.load(std::memory_order_relaxed), bytes, config_.max_reply_bytes);
    case Admission::kQueueFull:
    case Admission::kAdmitted:
      break;
  }
  return fmt::format(
      "server busy: {} requests queued or running (worker_threads {} + queue_limit {}); retry "
      "later",
      workers_ + config_.queue_limit, workers_, config_.queue_limit);
}

void Server::Impl::Authenticated(uint64_t connection_id) {
  std::lock_guard<std::mutex> l(conns_mu_);
  ForgetUnauthenticated(connection_id);
}

void Server::Impl::ForgetUnauthenticated(uint64_t connection_id) {
  auto it = unauthenticated_.find(connection_id);
  if (it == unauthenticated_.end()) return;
  auto by_address = unauthenticated_by_address_.find(it->second.second);
  if (by_address != unauthenticated_by_address_.end() && --by_address->second == 0) {
    unauthenticated_by_address_.erase(by_address);
  }
  unauthenticated_.erase(it);
}

Clock::duration Server::Impl::HelloFailed(const std::string& address, uint64_t connection_id) {
  metrics_.FailedHello();
  const Clock::time_point now = Clock::now();
  std::lock_guard<std::mutex> l(auth_mu_);
  if (failures_by_address_.size() >= kMaxTrackedAddresses &&
      !failures_by_address_.contains(address)) {
    // Forget addresses neither refused nor failing recently; an address refused now
    // stays remembered.
    std::erase_if(failures_by_address_, [now](const auto& entry) {
      return entry.second.refused_until <= now &&
             now - entry.second.last_failure > kFailureMemory;
    });
    if (failures_by_address_.size() >= kMaxTrackedAddresses) {
      std::erase_if(failures_by_address_,
                    [now](const auto& entry) { return entry.second.refused_until <= now; });
    }
  }
  PeerFailures& p = failures_by_address_[address];
  if (now - p.last_failure > kFailureMemory) {
    p.failures = 0;
    p.backoff = Clock::duration::zero();
  }
  ++p.failures;
  p.last_failure = now;
  if (p.failures < config_.max_failed_hellos) return Clock::duration::zero();
  p.backoff = p.backoff == Clock::duration::zero()
                  ? Clock::duration(kFirstBackoff)
                  : std::min<Clock::duration>(2 * p.backoff, kMaxBackoff);
  p.refused_until = now + p.backoff;
  ServerLog().warn(
      "connection {}: {} failed hellos from {} within {} s (max_failed_hellos {}); refusing "
      "its connections and hellos for {:.0f} s",
      connection_id, p.failures, address,
      std::chrono::duration_cast<std::chrono::seconds>(kFailureMemory).count(),
      config_.max_failed_hellos, std::chrono::duration<double>(p.backoff).count());
  return p.backoff;
}

Clock::duration Server::Impl::HelloBackoff(const std::string& address) {
  const Clock::time_point now = Clock::now();
  std::lock_guard<std::mutex> l(auth_mu_);
  auto it = failures_by_address_.find(address);
  if (it == failures_by_address_.end() || it->second.refused_until <= now) {
    return Clock::duration::zero();
  }
  return it->second.refused_until - now;
}

void Server::Impl::Submit(std::shared_ptr<Connection> conn, uint64_t request_id,
                          protocol::Request request, uint64_t payload_bytes,
                          uint64_t reply_bytes, Clock::time_point start) {
  // The work guard keeps the I/O threads running until the reply has been handed back.
  // `reply_bytes` (the reply's bound, held since admission) goes back with the reply.
  const Op op = request.op;
  const Lane lane = LaneOf(op);
  asio::thread_pool& pool = lane == Lane::kRead    ? pool_
                            : lane == Lane::kWrite ? write_pool_
                                                   : maintenance_pool_;
  asio::post(pool, [this, conn = std::move(conn), request_id, request = std::move(request),
                    payload_bytes, reply_bytes, start, op, lane,
                    work = asio::make_work_guard(io_)]() mutable {
    if (lane != Lane::kRead) LowerThreadPriority(lane == Lane::kWrite ? kWriteNice : kMaintenanceNice);
    const uint16_t opcode = static_cast<uint16_t>(op);
    std::vector<uint8_t> frame;
    if (conn->gone()) {
      // Closed before its turn came (reset, a timeout, the shutdown deadline): nobody can
      // read the reply, so the request is not run. For a write this means it is not
      // applied -- the client never got an acknowledgement, so it cannot tell this from a
      // write lost with the connection. Deliver drops the (empty) reply.
      ServerLog().debug("{}: skipped, its connection {} closed before it started",
                        protocol::OpName(request.op), conn->id());
    } else {
      try {
        if (drain_expired_.load(std::memory_order_acquire)) {
          // The connection is being closed too; the reply goes out if it still can.
          frame = ErrorFrame(request_id, opcode, ErrorCode::kShuttingDown,
                             fmt::format("the server is shutting down: shutdown_timeout_s ({} s) "
                                         "passed before this request started",
                                         config_.shutdown_timeout_s),
                             start);
        } else {
          protocol::Response response = handler_.Execute(request);
          request = {};  // free the payload before the reply is queued
          frame = EncodeReply(std::move(response), request_id, opcode, start);
        }
      } catch (const std::exception& e) {
        // Out of memory while encoding, typically. An empty frame makes the
        // connection close (every request must get exactly one reply).
        ServerLog().error("{}: cannot encode the reply: {}",
                          protocol::OpName(static_cast<Op>(opcode)), e.what());
        frame.clear();
        try {
          frame = ErrorFrame(request_id, opcode, ErrorCode::kInternal,
                             fmt::format("cannot encode the reply: {}", e.what()), start);
        } catch (const std::exception&) {
          frame.clear();
        }
      }
    }
    request = {};
    Release(payload_bytes, op);
    const Strand strand = conn->strand();
    asio::post(strand, [conn = std::move(conn), frame = std::move(frame), reply_bytes]() mutable {
      conn->Deliver(std::move(frame), reply_bytes);
    });
  });
}

std::vector<uint8_t> Server::Impl::EncodeReply(protocol::Response response, uint64_t request_id,
                                               uint16_t opcode, Clock::time_point start) {
  std::vector<uint8_t> frame;
  protocol::EncodeResponse(response, request_id, frame);
  const size_t payload = frame.size() - protocol::kHeaderSize;
  if (payload > config_.max_frame_bytes) {
    response = {Op::kError,
                protocol::ErrorReply{
                    ErrorCode::kTooLarge,
                    fmt::format("{}: the reply would take {} bytes, over the "
                                "server's frame limit of {} (max_frame_bytes)",
                                protocol::OpName(response.op), payload, config_.max_frame_bytes)}};
    frame.clear();
    protocol::EncodeResponse(response, request_id, frame);
  }
  metrics_.RequestAnswered(
      opcode,
      uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count()));
  if (const auto* error = std::get_if<protocol::ErrorReply>(&response.body)) {
    metrics_.ErrorSent(error->code);
  }
  return frame;
}

std::vector<uint8_t> Server::Impl::ErrorFrame(uint64_t request_id, uint16_t opcode, ErrorCode code,
                                              std::string message, Clock::time_point start) {
  return EncodeReply({Op::kError, protocol::ErrorReply{code, std::move(message)}}, request_id,
                     opcode, start);
}

void Server::Impl::Unregister(uint64_t id) {
  std::lock_guard<std::mutex> l(conns_mu_);
  if (conns_.erase(id) == 0) return;
  metrics_.ConnectionClosed();
  if (stopping_.load() && conns_.empty()) {
    asio::post(control_, [this] { drain_timer_.cancel(); });
  }
}

std::vector<std::shared_ptr<Connection>> Server::Impl::LiveConnections() {
  std::vector<std::shared_ptr<Connection>> out;
  std::lock_guard<std::mutex> l(conns_mu_);
  for (const auto& [id, weak] : conns_) {
    if (auto c = weak.lock()) out.push_back(std::move(c));
  }
  return out;
}

Status Server::Impl::Bind() {
  error_code ec;
  const std::string host = config_.listen == "localhost" ? "127.0.0.1" : config_.listen;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) return InvalidArgument("server.listen: '{}' is not an IP address", config_.listen);
  auto listen = [&](tcp::acceptor& a, uint16_t port, std::string_view what) -> Result<uint16_t> {
    const tcp::endpoint endpoint(address, port);
    error_code e;
    a.open(endpoint.protocol(), e);
    if (!e) a.set_option(tcp::acceptor::reuse_address(true), e);
    if (!e) a.bind(endpoint, e);
    if (!e) a.listen(asio::socket_base::max_listen_connections, e);
    if (e) {
      return Error(
          IOError("cannot listen on {}:{} ({}): {}", config_.listen, port, what, e.message()));
    }
    const uint16_t bound = a.local_endpoint(e).port();
    if (e) return Error(IOError("{}: cannot read the bound port: {}", what, e.message()));
    return bound;
  };
  STRATA_ASSIGN_OR_RETURN(port_, listen(acceptor_, config_.port, "server.port"));
  if (config_.metrics_port != 0) {
    STRATA_ASSIGN_OR_RETURN(metrics_port_,
                            listen(metrics_acceptor_, config_.metrics_port, "server.metrics_port"));
  }
  return Status::Ok();
}

void Server::Impl::Run() {
  io_work_.emplace(io_.get_executor());
  asio::co_spawn(control_, AcceptLoop(),
                 [](std::exception_ptr e) { LogCoroutineFailure("accept loop", e); });
  if (metrics_acceptor_.is_open()) {
    asio::co_spawn(control_, MetricsAcceptLoop(),
                   [](std::exception_ptr e) { LogCoroutineFailure("metrics accept loop", e); });
  }
  for (uint32_t i = 0; i < config_.io_threads; ++i) io_threads_.emplace_back([this] { RunIo(); });
}

void Server::Impl::RunIo() {
  for (;;) {
    try {
      io_.run();
      return;
    } catch (const std::exception& e) {
      ServerLog().error("I/O thread: {}", e.what());
    } catch (...) {
      ServerLog().error("I/O thread: unknown exception");
    }
  }
}

asio::awaitable<void> Server::Impl::AcceptLoop() {
  asio::steady_timer backoff(control_);
  for (;;) {
    Strand strand = asio::make_strand(io_);
    tcp::socket socket(strand);
    error_code ec;
    co_await acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_.load()) co_return;
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // Out of file descriptors, typically: wait a little rather than spin.
      ServerLog().warn("accept on port {} failed: {}", port_, ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    const uint64_t id = ++next_connection_id_;
    const std::string address = AddressString(socket);
    std::optional<protocol::ErrorReply> refusal;
    std::shared_ptr<Connection> conn;
    std::shared_ptr<Connection> displaced;
    {
      std::lock_guard<std::mutex> l(conns_mu_);
      refusal = Refusal(address, displaced);
      conn = std::make_shared<Connection>(*this, id, strand, std::move(socket), !refusal);
      if (!refusal) {
        conns_.emplace(id, conn);
        metrics_.ConnectionOpened();
        if (!config_.token.empty()) {
          unauthenticated_.emplace(id, std::make_pair(std::weak_ptr<Connection>(conn), address));
          ++unauthenticated_by_address_[address];
        }
      }
    }
    if (displaced) asio::post(displaced->strand(), [displaced] { displaced->Displace(); });
    if (!refusal) {
      conn->Start();
      continue;
    }
    LogRefusal(address, refusal->message);
    // Not a request: counted as a rejection and an error frame, not in requests_total.
    if (refusal->code == ErrorCode::kBusy) metrics_.BusyRejection();
    metrics_.ErrorSent(refusal->code);
    std::vector<uint8_t> frame;
    protocol::EncodeResponse({Op::kError, std::move(*refusal)}, 0, frame);
    asio::post(strand, [conn, frame = std::move(frame)]() mutable {
      conn->StartRejected(std::move(frame));
    });
  }
}

std::optional<protocol::ErrorReply> Server::Impl::Refusal(
    const std::string& address, std::shared_ptr<Connection>& displaced) {
  const bool token = !config_.token.empty();
  if (token) {
    // Before any byte is read: an address in back-off, then the per-address limit on
    // connections that have not said a valid hello.
    if (const Clock::duration left = HelloBackoff(address); left > Clock::duration::zero()) {
      metrics_.HelloBackoffRefusal();
      return protocol::ErrorReply{
          ErrorCode::kUnauthenticated,
          fmt::format("too many failed hellos from {}: its connections are refused for {:.1f} s",
                      address, std::chrono::duration<double>(left).count())};
    }
    auto it = unauthenticated_by_address_.find(address);
    if (it != unauthenticated_by_address_.end() &&
        it->second >= config_.max_unauthenticated_per_address) {
      metrics_.UnauthenticatedRefusal();
      return protocol::ErrorReply{
          ErrorCode::kBusy,
          fmt::format("too many connections from {} that have not said hello yet ({}, "
                      "max_unauthenticated_per_address)",
                      address, config_.max_unauthenticated_per_address)};
    }
  }
  const bool over_total = conns_.size() >= config_.max_connections;
  const bool over_unauthenticated =
      token && unauthenticated_.size() >=
                   std::min(config_.max_unauthenticated_connections, config_.max_connections);
  if (!over_total && !over_unauthenticated) return std::nullopt;
  // The oldest connection without a hello makes room (it is closed on its strand; until
  // then the connections may number one more than the limit). Taken out of the count now,
  // so that the next accept picks the next one.
  while (token && !unauthenticated_.empty()) {
    const auto oldest = unauthenticated_.begin();
    std::shared_ptr<Connection> c = oldest->second.first.lock();
    ForgetUnauthenticated(oldest->first);
    if (c && !c->gone()) {
      displaced = std::move(c);
      metrics_.UnauthenticatedDisplaced();
      return std::nullopt;
    }
  }
  if (!over_total) return std::nullopt;  // those counted had closed meanwhile
  return protocol::ErrorReply{ErrorCode::kBusy,
                              fmt::format("too many connections ({})", config_.max_connections)};
}

void Server::Impl::LogRefusal(const std::string& address, const std::string& why) {
  const Clock::time_point now = Clock::now();
  if (now - last_refusal_log_ < kRefusalLogPeriod) {
    ++refusals_not_logged_;
    return;
  }
  last_refusal_log_ = now;
  if (refusals_not_logged_ > 0) {
    ServerLog().warn("refused a connection from {}: {} (and {} more refusals since the last "
                     "such line)",
                     address, why, refusals_not_logged_);
  } else {
    ServerLog().warn("refused a connection from {}: {}", address, why);
  }
  refusals_not_logged_ = 0;
}

asio::awaitable<void> Server::Impl::MetricsAcceptLoop() {
  asio::steady_timer backoff(control_);
  for (;;) {
    auto socket = std::make_shared<tcp::socket>(asio::make_strand(io_));
    error_code ec;
    co_await metrics_acceptor_.async_accept(*socket, asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_.load() || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      ServerLog().warn("accept on metrics port {} failed: {}", metrics_port_, ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    asio::co_spawn(socket->get_executor(), ServeHttp(socket),
                   [](std::exception_ptr e) { LogCoroutineFailure("metrics connection", e); });
  }
}

asio::awaitable<std::string> Server::Impl::RenderMetricsOnPool() {
  // engine.counters() takes the engine's locks and walks every collection: it runs
  // on a worker, never on an I/O thread. The work guard keeps the I/O threads up
  // until the text has been handed back.
  return asio::async_initiate<decltype(asio::use_awaitable), void(std::string)>(
      [this](auto handler) {
        asio::post(pool_, [this, handler = std::move(handler),
                           work = asio::make_work_guard(io_)]() mutable {
          std::string text;
          try {
            text = RenderPrometheus(engine_.counters(), metrics_.Snapshot());
          } catch (const std::exception& e) {
            text = fmt::format("# rendering failed: {}\n", e.what());
          }
          auto ex = asio::get_associated_executor(handler);
          asio::dispatch(ex, [handler = std::move(handler), text = std::move(text)]() mutable {
            handler(std::move(text));
          });
        });
      },
      asio::use_awaitable);
}

asio::awaitable<std::optional<std::string>> Server::Impl::MetricsText(
    Clock::time_point deadline) {
  asio::steady_timer poll(co_await asio::this_coro::executor);
  for (;;) {
    {
      std::lock_guard<std::mutex> l(metrics_cache_mu_);
      if (metrics_rendered_at_ && Clock::now() - *metrics_rendered_at_ < kMetricsCacheTtl) {
        co_return metrics_text_;
      }
      if (!metrics_rendering_) {
        metrics_rendering_ = true;
        break;
      }
    }
    // Another scrape is rendering: wait for its text rather than render a second time.
    if (Clock::now() >= deadline) co_return std::nullopt;
    poll.expires_after(std::chrono::milliseconds(10));
    error_code ec;
    co_await poll.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  std::string text = co_await RenderMetricsOnPool();
  std::lock_guard<std::mutex> l(metrics_cache_mu_);
  metrics_text_ = text;
  metrics_rendered_at_ = Clock::now();
  metrics_rendering_ = false;
  co_return text;
}

asio::awaitable<void> Server::Impl::ServeHttp(std::shared_ptr<tcp::socket> socket) {
  asio::steady_timer deadline(socket->get_executor());
  deadline.expires_after(Seconds(std::min(kHttpTimeoutSeconds, config_.request_timeout_s)));
  deadline.async_wait([socket](error_code ec) {
    if (ec) return;
    error_code ignored;
    socket->close(ignored);
  });
  std::string head;
  error_code ec;
  const size_t n =
      co_await asio::async_read_until(*socket, asio::dynamic_buffer(head, kMaxHttpHeadBytes),
                                      "\r\n\r\n", asio::redirect_error(asio::use_awaitable, ec));
  HttpResponse response;
  if (ec == asio::error::not_found) {
    response.status = 431;
    response.body = "request head too large\n";
  } else if (ec) {
    deadline.cancel();
    co_return;  // the client went away or timed out
  } else {
    bool wants_metrics = false;
    // Ready: the engine is open and recovered (the server starts after both) and no
    // shutdown has begun.
    const bool ready = !stopping_.load(std::memory_order_acquire);
    response = HandleMetricsRequest(
        std::string_view(head).substr(0, n),
        [&wants_metrics] {
          wants_metrics = true;
          return std::string();
        },
        ready);
    if (wants_metrics) {
      std::optional<std::string> text = co_await MetricsText(deadline.expiry());
      if (text) {
        response.body = std::move(*text);
      } else {
        response = HttpResponse{};
        response.status = 503;
        response.body = "metrics are being rendered for another scrape; retry\n";
        response.extra_headers.emplace_back("Retry-After", "1");
      }
    }
  }
  const std::string bytes = SerializeHttpResponse(response);
  co_await asio::async_write(*socket, asio::buffer(bytes),
                             asio::redirect_error(asio::use_awaitable, ec));
  socket->shutdown(tcp::socket::shutdown_send, ec);
  // Drain what the client may still send (bounded by the deadline), then close.
  std::array<char, 512> scratch;
  while (!ec) {
    co_await socket->async_read_some(asio::buffer(scratch),
                                     asio::redirect_error(asio::use_awaitable, ec));
  }
  socket->close(ec);
  deadline.cancel();
}

void Server::Impl::Shutdown() {
  if (stopping_.exchange(true)) return;
  shutdown_started_.store(Clock::now().time_since_epoch().count());
  ServerLog().info("shutting down: no new connections or requests; answering those in flight");
  asio::post(control_, [this] {
    error_code ec;
    acceptor_.close(ec);
    if (metrics_acceptor_.is_open()) metrics_acceptor_.close(ec);
    const auto conns = LiveConnections();
    for (const auto& c : conns) {
      asio::post(c->strand(), [c] { c->StopAccepting(); });
    }
    if (!conns.empty()) {
      drain_timer_.expires_after(Seconds(config_.shutdown_timeout_s));
      drain_timer_.async_wait([this](error_code e) {
        if (e) return;  // every connection closed in time
        // Requests still queued are not started any more (a running one cannot be
        // interrupted: Wait returns once it has finished).
        drain_expired_.store(true, std::memory_order_release);
        const auto left = LiveConnections();
        ServerLog().warn(
            "shutdown: {} connections still busy after {} s (shutdown_timeout_s); closing them",
            left.size(), config_.shutdown_timeout_s);
        for (const auto& c : left) asio::post(c->strand(), [c] { c->Close("shutdown timeout"); });
      });
    }
    io_work_.reset();
  });
}

void Server::Impl::Wait() {
  std::lock_guard<std::mutex> l(wait_mu_);
  if (joined_) return;
  for (auto& t : io_threads_) t.join();
  pool_.join();
  write_pool_.join();
  maintenance_pool_.join();
  joined_ = true;
  const ServerMetricsSnapshot m = metrics_.Snapshot();
  ServerLog().info(
      "server stopped after {:.3f} s of shutdown: {} connections, {} requests answered, {} errors, "
      "{} busy rejections",
      std::chrono::duration<double>(Clock::now() -
                                    Clock::time_point(Clock::duration(shutdown_started_.load())))
          .count(),
      m.connections_total, m.requests, m.errors, m.busy_rejections);
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  Shutdown();
  Wait();
}

Result<std::unique_ptr<Server>> Server::Start(const ServerConfig& config, Engine& engine) {
  STRATA_RETURN_IF_ERROR(ValidateServerConfig(config));
  auto impl = std::make_unique<Impl>(config, engine);
  STRATA_RETURN_IF_ERROR(impl->Bind());
  impl->Run();
  if (impl->metrics_port_ != 0) {
    ServerLog().info("listening on {}:{} (metrics on port {}), {} I/O threads, {} workers",
                     config.listen, impl->port_, impl->metrics_port_, config.io_threads,
                     impl->workers_);
  } else {
    ServerLog().info("listening on {}:{} (metrics off), {} I/O threads, {} workers", config.listen,
                     impl->port_, config.io_threads, impl->workers_);
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

uint16_t Server::port() const { return impl_->port_; }
uint16_t Server::metrics_port() const { return impl_->metrics_port_; }
ServerMetricsSnapshot Server::metrics() const { return impl_->metrics_.Snapshot(); }
void Server::Shutdown() { impl_->Shutdown(); }
void Server::Wait() { impl_->Wait(); }

}  // namespace strata::server
