#pragma once
// Internal to server/: Connection, one client socket of the server (Server::Impl,
// server_impl.h) with its reader, writer and watchdog coroutines (connection.cc).

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>

#include "server/frame_buffer.h"
#include "server/server_impl.h"

namespace strata::server {

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
  // Takes `widened` more bytes of max_inflight_bytes for the request being handled (typed
  // vectors widened to float32: RequestHandler::CostOfWrite, WidenedQueryBytes), held with
  // its payload (reserved_payload_). False when refused: the request was answered (TooLarge
  // when it could never fit, else Busy) and its queue slot given back.
  bool TakeWidened(uint64_t widened, uint64_t request_id, protocol::Op op, Clock::time_point start);
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
  FrameBytes payload_;
};

}  // namespace strata::server
