// Server::Impl: the admission budgets (payload bytes, queue slots per lane, reply
// bytes), authentication back-off, the worker pools, the accept loop with its
// refusals, and graceful shutdown; and Server, which fronts it. The metrics port is
// in metrics_http.cc, the connections in connection.cc.

#include "server/server.h"

#include <fmt/core.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "engine/background_priority.h"
#include "protocol/protocol.h"
#include "server/connection.h"
#include "server/resp_listener.h"
#include "server/server_impl.h"

namespace strata::server {

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

// After the last reply the server shuts its sending side and waits this long at
// most for the client to close, reading and dropping whatever it still sends:
// closing a socket with unread input resets the connection, and a reset can
// destroy replies the client has not read yet.
constexpr double kLingerSeconds = 1.0;
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

}  // namespace

namespace {
// ServerConfig::background_idle and background_cpus, set once when a server is made (every
// server of a process is made with the same values in practice; the last one made wins).
std::mutex g_background_mu;
engine::BackgroundPriority g_background;  // guarded by g_background_mu; nice set per call
}  // namespace

// Linux: nice (or SCHED_IDLE) and the CPU mask are per thread, and threads it creates --
// OpenMP teams of a seal or compaction -- inherit them. Lowering priority needs no
// privilege; failure only costs the protection, so it is logged once.
void LowerThreadPriority(int nice) {
  thread_local bool done = false;
  if (done) return;
  done = true;
  engine::BackgroundPriority p;
  {
    std::lock_guard<std::mutex> g(g_background_mu);
    p = g_background;
  }
  p.nice = nice;
  if (Status s = engine::ApplyToThisThread(p); !s.ok()) {
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true)) ServerLog().warn("write/maintenance threads: {}", s.message());
  }
}

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

// ---------------------------------------------------------------------------
// Server::Impl
// ---------------------------------------------------------------------------

Server::Impl::Impl(const ServerConfig& config, Engine& engine)
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
  for (uint32_t i = 1; i < EffectiveIoThreads(config_); ++i) more_io_.push_back(std::make_unique<asio::io_context>(1));
  // A batch over max_batch is refused while decoding (OutOfRange, answered with
  // kTooLarge), before anything is allocated for its records.
  decode_limits_.max_batch = config.max_batch;
  {
    std::lock_guard<std::mutex> g(g_background_mu);
    g_background.idle = config.background_idle;
    // ValidateServerConfig has checked the list; an unchecked bad one confines nothing.
    auto cpus = engine::ParseCpuList(config.background_cpus);
    g_background.cpus = cpus ? std::move(*cpus) : std::vector<int>{};
  }
}

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
    case Op::kUpsertKeyed:
    case Op::kUpsertKeyedIds:
    case Op::kDeleteKeyed:
    case Op::kUpsertTyped:
      return Lane::kWrite;
    case Op::kFlush:
    case Op::kCompact:
    case Op::kSnapshot:
    case Op::kShardFiles:
    case Op::kCreateCollection:
    case Op::kCreateCollectionWith:
    case Op::kDropCollection:
      return Lane::kMaintenance;
    default:
      return Lane::kRead;
  }
}

const char* Server::Impl::LaneName(Lane lane) {
  switch (lane) {
    case Lane::kRead:
      return "worker";
    case Lane::kWrite:
      return "write";
    case Lane::kMaintenance:
      return "maintenance";
  }
  return "?";
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
    case Admission::kWidenedFull:
      return fmt::format(
          "server busy: requests of {} payload bytes are being read, queued or running, and this "
          "one's vectors widened to float32 take {} more, over max_inflight_bytes {}; retry later",
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

ErrorCode Server::Impl::DecodeErrorCode(const Status& error) {
  if (error.code() == StatusCode::kUnimplemented) return ErrorCode::kUnknownOp;
  if (error.code() == StatusCode::kOutOfRange) return ErrorCode::kTooLarge;
  return ErrorCode::kMalformed;
}

Server::Impl::Tier Server::Impl::TierOf(const PendingRequest& request) const {
  if (!handler_.HasHook()) return Tier::kLocal;  // a node outside a cluster routes nothing
  const std::string* name = nullptr;
  std::string peeked;
  if (const auto* encoded = std::get_if<EncodedRequest>(&request)) {
    if (auto r = protocol::PeekWriteCollection(encoded->header, encoded->payload, decode_limits_)) {
      peeked = std::move(*r);
      name = &peeked;
    }
  } else {
    name = protocol::RequestCollection(std::get<protocol::Request>(request));
  }
  if (name == nullptr) return Tier::kLocal;
  switch (handler_.PlaceOf(*name)) {
    case RequestHook::Place::kRouted:
      return Tier::kRouted;
    case RequestHook::Place::kOrdered:
      return Tier::kOrdered;
    case RequestHook::Place::kEngine:
    case RequestHook::Place::kHere:
      break;
  }
  return Tier::kLocal;
}

void Server::Impl::Submit(std::shared_ptr<Connection> conn, uint64_t request_id, Op op,
                          PendingRequest pending, uint64_t payload_bytes, uint64_t reply_bytes,
                          Clock::time_point start) {
  // The work guard keeps the I/O threads running until the reply has been handed back.
  // `reply_bytes` (the reply's bound, held since admission) goes back with the reply.
  const Lane lane = LaneOf(op);
  const Tier tier = TierOf(pending);
  const bool routed = tier == Tier::kRouted;
  // A tier other than kLocal needs the hook, set after hook_pools_ (Server::SetRequestHook).
  asio::thread_pool& pool = tier == Tier::kOrdered ? hook_pools_->ordered_write
                            : lane == Lane::kRead  ? (routed ? hook_pools_->routed : pool_)
                            : lane == Lane::kWrite ? (routed ? hook_pools_->routed_write : write_pool_)
                                                   : (routed ? hook_pools_->routed_maintenance : maintenance_pool_);
  const Clock::time_point submitted = Clock::now();
  // Keeps the connection's I/O thread running until the reply is posted back to its strand.
  auto work = asio::make_work_guard(conn->strand());
  asio::post(pool, [this, conn = std::move(conn), request_id, pending = std::move(pending),
                    payload_bytes, reply_bytes, start, submitted, op, lane,
                    work = std::move(work)]() mutable {
    const Clock::time_point began = Clock::now();
    if (lane != Lane::kRead) LowerThreadPriority(lane == Lane::kWrite ? kWriteNice : kMaintenanceNice);
    const uint16_t opcode = static_cast<uint16_t>(op);
    std::vector<uint8_t> frame;
    protocol::Request request;
    // Everything that can throw (decoding a large write, running it, encoding the reply)
    // is inside the try: an exception escaping a pool's thread would end the process.
    try {
      bool refused = false;
      if (auto* decoded = std::get_if<protocol::Request>(&pending)) {
        request = std::move(*decoded);
      } else if (!conn->gone()) {
        auto& encoded = std::get<EncodedRequest>(pending);
        auto r = protocol::DecodeRequest(encoded.header, encoded.payload, decode_limits_);
        if (r) {
          request = std::move(*r);
        } else {
          refused = true;
          ServerLog().debug("connection {}: {}", conn->id(), r.error().message());
          frame = ErrorFrame(request_id, opcode, DecodeErrorCode(r.error()), r.error().message(), start);
        }
      }
      pending = protocol::Request{};  // the payload's bytes: decoded, or refused
      if (refused) {
        // Refused by the decoder: the error frame is the reply.
      } else if (conn->gone()) {
        // Closed before its turn came (reset, a timeout, the shutdown deadline): nobody can
        // read the reply, so the request is not run. For a write this means it is not
        // applied -- the client never got an acknowledgement, so it cannot tell this from a
        // write lost with the connection. Deliver drops the (empty) reply.
        ServerLog().debug("{}: skipped, its connection {} closed before it started",
                          protocol::OpName(op), conn->id());
      } else if (drain_expired_.load(std::memory_order_acquire)) {
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
      // Out of memory while decoding or encoding, typically. An empty frame makes the
      // connection close (every request must get exactly one reply).
      ServerLog().error("{}: cannot decode the request or encode the reply: {}",
                        protocol::OpName(static_cast<Op>(opcode)), e.what());
      frame.clear();
      pending = protocol::Request{};
      try {
        frame = ErrorFrame(request_id, opcode, ErrorCode::kInternal,
                           fmt::format("cannot decode the request or encode the reply: {}", e.what()),
                           start);
      } catch (const std::exception&) {
        frame.clear();
      }
    }
    request = {};
    Release(payload_bytes, op);
    const Clock::time_point ran = Clock::now();
    const Strand strand = conn->strand();
    asio::post(strand, [this, conn = std::move(conn), frame = std::move(frame), reply_bytes, op,
                        start, submitted, began, ran]() mutable {
      const Clock::time_point now = Clock::now();
      auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
      if (config_.slow_request_ms > 0 && ms(now - start) >= config_.slow_request_ms) {
        ServerLog().warn(
            "slow request: {} on connection {}: {:.2f} ms = reading the frame {:.2f} + waiting "
            "for a {} thread {:.2f} + running {:.2f} + reaching the writer {:.2f}",
            protocol::OpName(op), conn->id(), ms(now - start), ms(submitted - start),
            LaneName(LaneOf(op)), ms(began - submitted), ms(ran - began), ms(now - ran));
      }
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
  if (config_.resp_port != 0) {
    resp_ = std::make_unique<RespListener>(*this, engine_);
    STRATA_RETURN_IF_ERROR(resp_->Bind(address));
  }
  return Status::Ok();
}

void Server::Impl::Run() {
  io_work_.push_back(asio::make_work_guard(io_));
  for (auto& io : more_io_) io_work_.push_back(asio::make_work_guard(*io));
  asio::co_spawn(control_, AcceptLoop(),
                 [](std::exception_ptr e) { LogCoroutineFailure("accept loop", e); });
  if (metrics_acceptor_.is_open()) {
    asio::co_spawn(control_, MetricsAcceptLoop(),
                   [](std::exception_ptr e) { LogCoroutineFailure("metrics accept loop", e); });
  }
  if (resp_) resp_->Start();
  io_threads_.emplace_back([this] { RunIo(io_); });
  for (auto& io : more_io_) io_threads_.emplace_back([this, &io = *io] { RunIo(io); });
}

asio::io_context& Server::Impl::NextConnectionIo() {
  const uint32_t i = next_io_.fetch_add(1, std::memory_order_relaxed) % uint32_t(more_io_.size() + 1);
  return i == 0 ? io_ : *more_io_[i - 1];
}

void Server::Impl::RunIo(asio::io_context& io) {
  for (;;) {
    try {
      if (config_.io_spin_us == 0) {
        io.run();
        return;
      }
      // ServerConfig::io_spin_us: after each handler, poll (without sleeping) until nothing
      // has been ready for io_spin_us; run_one sleeps until the next one.
      const auto spin = std::chrono::microseconds(config_.io_spin_us);
      for (;;) {
        if (io.run_one() == 0) return;  // stopped, or out of work (shutdown)
        for (auto until = Clock::now() + spin; Clock::now() < until;) {
          if (io.poll_one() > 0) until = Clock::now() + spin;
          if (io.stopped()) return;
        }
      }
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
    Strand strand = asio::make_strand(NextConnectionIo());
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

void Server::Impl::Shutdown() {
  if (stopping_.exchange(true)) return;
  shutdown_started_.store(Clock::now().time_since_epoch().count());
  ServerLog().info("shutting down: no new connections or requests; answering those in flight");
  if (resp_) resp_->Shutdown();
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
    io_work_.clear();
  });
}

void Server::Impl::Wait() {
  std::lock_guard<std::mutex> l(wait_mu_);
  if (joined_) return;
  for (auto& t : io_threads_) t.join();
  pool_.join();
  write_pool_.join();
  maintenance_pool_.join();
  if (hook_pools_) hook_pools_->join();
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
  if (impl->resp_) {
    ServerLog().info("RESP (Redis protocol) listening on {}:{}", config.listen, impl->resp_->port());
  }
  if (impl->metrics_port_ != 0) {
    ServerLog().info("listening on {}:{} (metrics on port {}), {} I/O threads, {} workers",
                     config.listen, impl->port_, impl->metrics_port_, EffectiveIoThreads(config),
                     impl->workers_);
  } else {
    ServerLog().info("listening on {}:{} (metrics off), {} I/O threads, {} workers", config.listen,
                     impl->port_, EffectiveIoThreads(config), impl->workers_);
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

uint16_t Server::port() const { return impl_->port_; }
uint16_t Server::metrics_port() const { return impl_->metrics_port_; }
uint16_t Server::resp_port() const { return impl_->resp_ ? impl_->resp_->port() : 0; }
ServerMetricsSnapshot Server::metrics() const { return impl_->metrics_.Snapshot(); }
void Server::SetRequestHook(std::shared_ptr<RequestHook> hook) {
  if (hook) {
    std::call_once(impl_->hook_pools_once_,
                   [&] { impl_->hook_pools_ = std::make_unique<Impl::HookPools>(impl_->workers_); });
  }
  impl_->handler_.SetHook(std::move(hook));
}
void Server::Shutdown() { impl_->Shutdown(); }
void Server::Wait() { impl_->Wait(); }

}  // namespace strata::server
