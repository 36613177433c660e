// Connection: reading frames (with their budgets and deadlines), answering hello
// and ping, and the small reads of ServerConfig::inline_reads, on the I/O thread, handing
// other requests to Server::Impl::Submit, and
// writing the replies back in gathered writes.

#include "server/connection.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "server/auth.h"

namespace strata::server {

namespace {

// A failed hello past this many closes the connection.
constexpr int kMaxFailedHellos = 3;
// Before a successful hello on a server with a token, a frame's payload may be at most
// this large (a hello is a name and a token): an unauthenticated peer cannot make the
// server buffer a max_frame_bytes payload.
constexpr uint32_t kMaxPayloadBeforeHello = 64 * 1024;
// A writer sends at most this many frames / bytes in one gathered write.
constexpr size_t kMaxFramesPerWrite = 64;
constexpr size_t kMaxBytesPerWrite = 4u << 20;

}  // namespace

asio::awaitable<void> Connection::ReadPayload(uint32_t size, error_code& ec) {
  // Sized from the header at once but not initialized (FrameBytes): a large block's pages
  // are mapped only as the socket's bytes land in them, so a peer announcing a large frame
  // and sending nothing costs no memory (and max_inflight_bytes was taken for it anyway),
  // and no byte is zeroed or copied on growth.
  payload_.resize(size);
  co_await asio::async_read(socket_, asio::buffer(payload_.data(), size),
                            asio::redirect_error(asio::use_awaitable, ec));
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
    if (payload_.capacity() > kMaxPayloadBeforeHello) FrameBytes().swap(payload_);
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
  if (Server::Impl::LaneOf(op) == Server::Impl::Lane::kWrite) {
    // A write is decoded by the write pool's thread that runs it (EncodedRequest); what it
    // will hold besides its payload is known from the payload's head: its reply (an
    // acknowledgement or an error, or upsert_keyed_ids' ids) and typed rows widened.
    const RequestHandler::WriteCost cost =
        server_.handler_.CostOfWrite(header, payload_, server_.decode_limits_);
    if (!TakeWidened(cost.widened, rid, op, start)) return;
    const uint64_t reply = protocol::kHeaderSize + cost.reply;
    if (!server_.TryReserveReply(reply)) {
      server_.Release(0, op);
      server_.metrics_.BusyRejection();
      ReplyError(rid, opcode, ErrorCode::kBusy,
                 server_.BusyMessage(Server::Impl::Admission::kReplyFull, reply), start);
      return;
    }
    reply_bytes_ += reply;
    server_.Submit(shared_from_this(), rid, op,
                   Server::Impl::EncodedRequest{header, std::move(payload_)},
                   std::exchange(reserved_payload_, 0), reply, start);
    payload_.clear();  // moved from: empty, to be sized by the next frame
    return;
  }
  auto request = protocol::DecodeRequest(header, payload_, server_.decode_limits_);
  if (!request) {
    server_.Release(0, op);
    DecodeFailed(rid, opcode, request.error(), start);
    return;
  }
  if (!TakeWidened(RequestHandler::WidenedQueryBytes(*request), rid, op, start)) return;
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
  if (server_.RunsInline(*request)) {
    // Small: run here, on the I/O thread that read it (ServerConfig::inline_reads).
    if (auto frame = server_.ExecuteInline(*request, rid, reserved_payload_, start)) {
      reserved_payload_ = 0;  // given back by ExecuteInline
      Deliver(std::move(*frame), reply);
      return;
    }
  }
  server_.Submit(shared_from_this(), rid, op, std::move(*request), std::exchange(reserved_payload_, 0),
                 reply, start);
}

bool Connection::TakeWidened(uint64_t widened, uint64_t rid, Op op, Clock::time_point start) {
  if (widened == 0) return true;
  const uint16_t opcode = static_cast<uint16_t>(op);
  if (widened > config_.max_inflight_bytes - std::min(reserved_payload_, config_.max_inflight_bytes)) {
    // Never admitted, however idle the server: refused for good rather than busy.
    server_.Release(0, op);
    ReplyError(rid, opcode, ErrorCode::kTooLarge,
               fmt::format("{}: its payload ({} bytes) and its vectors widened to float32 ({} bytes) "
                           "would take more than the server's max_inflight_bytes ({}); send fewer "
                           "vectors per request",
                           protocol::OpName(op), reserved_payload_, widened, config_.max_inflight_bytes),
               start);
    return false;
  }
  if (!server_.TryReserveInflight(widened)) {
    server_.Release(0, op);
    server_.metrics_.BusyRejection();
    ReplyError(rid, opcode, ErrorCode::kBusy, server_.BusyMessage(Server::Impl::Admission::kWidenedFull, widened),
               start);
    return false;
  }
  reserved_payload_ += widened;
  return true;
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
  ServerLog().debug("connection {} from {}: {}", id_, peer_, error.message());
  ReplyError(request_id, opcode, Server::Impl::DecodeErrorCode(error), error.message(), start);
}

}  // namespace strata::server
