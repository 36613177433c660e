// RespConnection: reading and parsing RESP (protocol/resp.h), the order of replies, the
// connection's own commands, handing engine commands to the workers, writing replies.

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "server/auth.h"
#include "server/resp_listener.h"

#ifndef STRATA_VERSION
#define STRATA_VERSION "unknown"
#endif

namespace strata::server {

namespace resp = protocol::resp;

namespace {

// A wrong token past this many closes the connection (as a third failed hello does).
constexpr int kMaxFailedAuths = 3;
// Before AUTH on a server with a token, a command may be at most this large (AUTH and HELLO
// are a few words): an unauthenticated peer cannot make the server buffer a large one.
constexpr size_t kMaxCommandBeforeAuth = 64 * 1024;
// Bytes read from the socket at a time.
constexpr size_t kReadChunk = 64 * 1024;
// At most this many replies / bytes in one gathered write.
constexpr size_t kMaxRepliesPerWrite = 256;
constexpr size_t kMaxBytesPerWrite = 4u << 20;
// Consecutive VADDs to one key run as one engine write of at most this many.
constexpr size_t kMaxVaddBatch = 1024;
// The Redis version the listener claims in HELLO and INFO: the vector-set commands are
// Redis 8's; clients that gate features on the version see one that has them.
constexpr std::string_view kRedisVersion = "8.0.0";

std::string ErrorReply(std::string_view message) {
  std::string out;
  resp::RespWriter(out).Error(message);
  return out;
}

resp::RespLimits LimitsFor(const ServerConfig& c, bool authenticated) {
  resp::RespLimits l;
  l.max_bulk_bytes = c.max_frame_bytes;
  l.max_command_bytes = c.max_frame_bytes;
  // Every argument costs a std::string (32 bytes) even when empty: bounded by the bytes too.
  l.max_args = std::min<size_t>(1024 * 1024, c.max_frame_bytes / 4 + 16);
  if (!authenticated) {
    l.max_bulk_bytes = l.max_command_bytes = kMaxCommandBeforeAuth;
    l.max_args = 64;
    l.max_inline_bytes = std::min(l.max_inline_bytes, kMaxCommandBeforeAuth);
  }
  return l;
}

}  // namespace

RespConnection::RespConnection(RespListener& listener, uint64_t id, Strand strand,
                               tcp::socket socket)
    : listener_(listener),
      server_(listener.server()),
      config_(server_.config_),
      id_(id),
      strand_(std::move(strand)),
      socket_(std::move(socket)),
      peer_(EndpointString(socket_)),
      address_(AddressString(socket_)),
      write_signal_(strand_),
      read_signal_(strand_),
      watchdog_(strand_),
      parser_(LimitsFor(config_, config_.token.empty())),
      authenticated_(config_.token.empty()),
      last_activity_(Clock::now()),
      hello_deadline_(last_activity_ + Seconds(config_.hello_timeout_s)) {
  write_signal_.expires_at(Clock::time_point::max());
  read_signal_.expires_at(Clock::time_point::max());
}

template <typename Awaitable>
void RespConnection::Spawn(Awaitable a, const char* what) {
  asio::co_spawn(strand_, std::move(a), [self = shared_from_this(), what](std::exception_ptr e) {
    if (!e) return;
    LogCoroutineFailure(fmt::format("RESP connection {} {}", self->id_, what), e);
    self->Close("internal error");
  });
}

void RespConnection::Start() {
  ServerLog().debug("RESP connection {} from {} opened", id_, peer_);
  Spawn(ReadLoop(shared_from_this()), "reader");
  Spawn(WriteLoop(shared_from_this()), "writer");
  Spawn(Watchdog(shared_from_this()), "watchdog");
}

void RespConnection::StartRejected(std::string reply) {
  accepting_ = false;
  Fill(NewSlot(), std::move(reply));
  Start();
}

void RespConnection::StopAccepting() {
  if (closed_ || !accepting_) return;
  accepting_ = false;
  Kick();
}

void RespConnection::Kick() {
  write_signal_.cancel();
  read_signal_.cancel();
  watchdog_.cancel();
}

void RespConnection::Close(std::string_view why) {
  if (closed_) return;
  closed_ = true;
  gone_.store(true, std::memory_order_release);
  error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  Kick();
  // Every reply held, those being written included, is given back now; nothing is counted
  // for this connection after this (HoldReply).
  server_.AdjustReply(-int64_t(reply_bytes_));
  reply_bytes_ = 0;
  slots_.clear();
  pending_.clear();
  ServerLog().debug("RESP connection {} from {} closed: {} ({} commands)", id_, peer_, why,
                    commands_);
  listener_.Unregister(id_);
}

void RespConnection::HoldReply(int64_t delta) {
  if (delta == 0 || closed_) return;
  reply_bytes_ = uint64_t(int64_t(reply_bytes_) + delta);
  server_.AdjustReply(delta);
}

bool RespConnection::ShouldPause() const {
  return slots_.size() >= config_.max_pipeline ||
         reply_bytes_ >= config_.max_connection_reply_bytes;
}

uint64_t RespConnection::NewSlot() {
  slots_.emplace_back();
  return first_slot_ + slots_.size() - 1;
}

void RespConnection::Fill(uint64_t slot, std::string bytes) {
  if (closed_ || slot < first_slot_ || slot - first_slot_ >= slots_.size()) return;
  Slot& s = slots_[slot - first_slot_];
  HoldReply(int64_t(bytes.size()));
  s.bytes = std::move(bytes);
  s.ready = true;
  write_signal_.cancel();
}

asio::awaitable<void> RespConnection::ReadLoop(std::shared_ptr<RespConnection> /*keep_alive*/) {
  error_code ec;
  std::vector<char> buffer(kReadChunk);
  std::vector<resp::Command> commands;
  while (!closed_) {
    if (!accepting_) {
      // No new commands: read and drop until the client closes (or the writer, having
      // written every reply, closes the connection).
      co_await socket_.async_read_some(asio::buffer(buffer),
                                       asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      continue;
    }
    if (ShouldPause()) {
      co_await read_signal_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    const size_t n = co_await socket_.async_read_some(
        asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    const Clock::time_point now = Clock::now();
    last_activity_ = now;
    commands.clear();
    auto fed = parser_.Feed(std::string_view(buffer.data(), n), commands);
    for (resp::Command& c : commands) {
      if (!accepting_) break;  // QUIT: the rest is not run
      Handle(std::move(c));
    }
    if (!fed && accepting_) {
      // A malformed request: answered, then the connection closes (as Redis does).
      ServerLog().debug("RESP connection {} from {}: {}", id_, peer_, fed.error().message());
      Fill(NewSlot(), ErrorReply("ERR " + fed.error().message()));
      accepting_ = false;
      Kick();
    }
    partial_since_.reset();
    if (!parser_.idle()) partial_since_ = now;
    Pump();
  }
  reader_done_ = true;
  if (closed_) co_return;
  if (ec == asio::error::eof && !finishing_) {
    accepting_ = false;  // answer what was read, then close
    Kick();
  } else if (ec == asio::error::eof) {
    Close("closed by the client");
  } else {
    Close(fmt::format("read failed: {}", ec.message()));
  }
}

void RespConnection::Handle(resp::Command command) {
  ++commands_;
  std::vector<std::string>& args = command.args;
  const uint64_t slot = NewSlot();
  const RespCommandSpec* spec = FindRespCommand(args[0]);
  if (!authenticated_ && (spec == nullptr || !spec->before_auth)) {
    Fill(slot, ErrorReply("NOAUTH Authentication required."));
    return;
  }
  if (spec == nullptr) {
    Fill(slot, ErrorReply(UnknownCommandMessage(args)));
    return;
  }
  const int argc = static_cast<int>(args.size());
  if ((spec->arity > 0 && argc != spec->arity) || (spec->arity < 0 && argc < -spec->arity)) {
    Fill(slot, ErrorReply(WrongArityMessage(args[0])));
    return;
  }
  if (spec->lane != RespLane::kConnection) {
    pending_.push_back(Pending{std::move(args), slot, spec->lane, protocol_, command.wire_bytes});
    return;
  }
  std::string out;
  resp::RespWriter w(out, protocol_);
  const std::string_view name = spec->name;
  if (name == "PING") {
    if (argc > 2) {
      w.Error(WrongArityMessage(args[0]));
    } else if (argc == 2) {
      w.Bulk(args[1]);
    } else {
      w.SimpleString("PONG");
    }
  } else if (name == "ECHO") {
    w.Bulk(args[1]);
  } else if (name == "QUIT") {
    w.Ok();
    accepting_ = false;  // the reply goes out, then the connection closes
    Kick();
  } else if (name == "SELECT") {
    if (args[1] == "0") {
      w.Ok();
    } else {
      w.Error("ERR DB index is out of range");
    }
  } else if (name == "AUTH") {
    out = Auth(args);
  } else if (name == "HELLO") {
    out = Hello(args);
  } else if (name == "CLIENT") {
    out = Client(args);
  } else if (name == "COMMAND") {
    out = Command(args);
  } else {
    w.Error(UnknownCommandMessage(args));
  }
  Fill(slot, std::move(out));
}

std::string RespConnection::AuthFailed() {
  ++failed_auths_;
  server_.HelloFailed(address_, id_);
  ServerLog().warn("RESP connection {} from {}: AUTH with a wrong token ({} of {} on this "
                   "connection)",
                   id_, peer_, failed_auths_, kMaxFailedAuths);
  if (failed_auths_ >= kMaxFailedAuths) {
    accepting_ = false;
    Kick();
  }
  return ErrorReply("WRONGPASS invalid username-password pair or user is disabled.");
}

std::string RespConnection::Auth(const std::vector<std::string>& args) {
  if (args.size() > 3) return ErrorReply("ERR syntax error");
  if (config_.token.empty()) {
    return ErrorReply(
        "ERR AUTH <password> called without any password configured for the default user. "
        "Are you sure your configuration is correct?");
  }
  if (const Clock::duration left = server_.HelloBackoff(address_); left > Clock::duration::zero()) {
    server_.metrics_.HelloBackoffRefusal();
    accepting_ = false;
    Kick();
    return ErrorReply(fmt::format("ERR too many failed AUTH from {}; retry in {:.1f} s", address_,
                                  std::chrono::duration<double>(left).count()));
  }
  const bool user_ok = args.size() == 2 || args[1] == "default";
  if (!user_ok || !TokensEqual(config_.token, args.back())) return AuthFailed();
  if (!authenticated_) {
    authenticated_ = true;
    parser_.SetLimits(LimitsFor(config_, true));
    watchdog_.cancel();  // the AUTH deadline no longer applies
  }
  std::string out;
  resp::RespWriter(out, protocol_).Ok();
  return out;
}

std::string RespConnection::Hello(const std::vector<std::string>& args) {
  int protocol = protocol_;
  size_t i = 1;
  if (args.size() > 1) {
    if (args[1] == "2" || args[1] == "3") {
      protocol = args[1][0] - '0';
    } else {
      const bool number = !args[1].empty() &&
                          std::all_of(args[1].begin(), args[1].end(), [](char c) { return c >= '0' && c <= '9'; });
      return ErrorReply(number ? "NOPROTO unsupported protocol version"
                               : "ERR Protocol version is not an integer or out of range");
    }
    i = 2;
  }
  std::string name = client_name_;
  for (; i < args.size(); ++i) {
    const std::string option = UpperAscii(args[i]);
    if (option == "AUTH" && i + 2 < args.size()) {
      std::vector<std::string> auth = {"AUTH", args[i + 1], args[i + 2]};
      if (config_.token.empty()) {
        // Redis accepts any password for the default user without one set: so does this.
      } else {
        std::string reply = Auth(auth);
        if (!authenticated_) return reply;
      }
      i += 2;
    } else if (option == "SETNAME" && i + 1 < args.size()) {
      name = args[++i];
    } else {
      return ErrorReply(fmt::format("ERR Syntax error in HELLO option '{}'", args[i]));
    }
  }
  if (!authenticated_) {
    return ErrorReply(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
        "<proto> AUTH <user> <pass> option can be used to authenticate the client and select "
        "the RESP protocol version at the same time");
  }
  protocol_ = protocol;
  client_name_ = name;
  std::string out;
  resp::RespWriter w(out, protocol_);
  w.Map(8);
  w.Bulk("server");
  w.Bulk("strata");
  w.Bulk("version");
  w.Bulk(kRedisVersion);
  w.Bulk("strata_version");
  w.Bulk(STRATA_VERSION);
  w.Bulk("proto");
  w.Integer(protocol_);
  w.Bulk("id");
  w.Integer(int64_t(id_));
  w.Bulk("mode");
  w.Bulk("standalone");
  w.Bulk("role");
  w.Bulk("master");
  w.Bulk("modules");
  w.Array(0);
  return out;
}

std::string RespConnection::Client(const std::vector<std::string>& args) {
  std::string out;
  resp::RespWriter w(out, protocol_);
  const std::string sub = UpperAscii(args[1]);
  if (sub == "SETNAME" && args.size() == 3) {
    if (std::any_of(args[2].begin(), args[2].end(), [](char c) { return c <= ' ' || c > '~'; })) {
      w.Error("ERR Client names cannot contain spaces, newlines or special characters.");
    } else {
      client_name_ = args[2];
      w.Ok();
    }
  } else if (sub == "GETNAME" && args.size() == 2) {
    if (client_name_.empty()) {
      w.Null();
    } else {
      w.Bulk(client_name_);
    }
  } else if (sub == "SETINFO" && args.size() == 4) {
    const std::string attr = UpperAscii(args[2]);
    if (attr == "LIB-NAME" || attr == "LIB-VER") {
      w.Ok();
    } else {
      w.Error(fmt::format("ERR Unrecognized option '{}'", args[2]));
    }
  } else if (sub == "ID" && args.size() == 2) {
    w.Integer(int64_t(id_));
  } else if (sub == "SETNAME" || sub == "GETNAME" || sub == "SETINFO" || sub == "ID") {
    w.Error(fmt::format("ERR wrong number of arguments for 'client|{}' command",
                        fmt::format("{}", args[1])));
  } else {
    w.Error(fmt::format("ERR unknown subcommand '{}'. Try CLIENT HELP.", args[1]));
  }
  return out;
}

std::string RespConnection::Command(const std::vector<std::string>& args) {
  std::string out;
  resp::RespWriter w(out, protocol_);
  const auto table = RespCommandTable();
  auto lower = [](std::string_view s) {
    std::string r(s);
    for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return r;
  };
  auto info = [&](const RespCommandSpec& c) {
    // Redis 7's ten fields: name, arity, flags, first key, last key, step, ACL categories,
    // tips, key specs, subcommands.
    w.Array(10);
    w.Bulk(lower(c.name));
    w.Integer(c.arity);
    const bool write = c.lane == RespLane::kWrite || c.lane == RespLane::kMaintenance;
    w.Set(1);
    w.SimpleString(c.lane == RespLane::kConnection ? "fast" : write ? "write" : "readonly");
    w.Integer(c.first_key);
    w.Integer(c.first_key);
    w.Integer(c.first_key == 0 ? 0 : 1);
    w.Set(0);
    w.Array(0);
    w.Array(0);
    w.Array(0);
  };
  const std::string sub = args.size() > 1 ? UpperAscii(args[1]) : "";
  if (args.size() == 1) {
    w.Array(table.size());
    for (const auto& c : table) info(c);
  } else if (sub == "COUNT") {
    w.Integer(int64_t(table.size()));
  } else if (sub == "INFO" || sub == "DOCS") {
    std::vector<const RespCommandSpec*> which;
    if (args.size() == 2) {
      for (const auto& c : table) which.push_back(&c);
    } else {
      for (size_t i = 2; i < args.size(); ++i) which.push_back(FindRespCommand(args[i]));
    }
    if (sub == "INFO") {
      w.Array(which.size());
      for (const RespCommandSpec* c : which) {
        if (c == nullptr) {
          w.NullArray();
        } else {
          info(*c);
        }
      }
    } else {
      size_t known = 0;
      for (const RespCommandSpec* c : which) known += c != nullptr;
      w.Map(known);
      for (const RespCommandSpec* c : which) {
        if (c == nullptr) continue;
        w.Bulk(lower(c->name));
        w.Map(3);
        w.Bulk("summary");
        w.Bulk(c->summary);
        w.Bulk("since");
        w.Bulk(c->group == "vector_set" ? "8.0.0" : "1.0.0");
        w.Bulk("group");
        w.Bulk(c->group);
      }
    }
  } else {
    w.Error(fmt::format("ERR unknown subcommand '{}'. Try COMMAND HELP.", args[1]));
  }
  return out;
}

void RespConnection::Pump() {
  while (!pending_.empty() && !closed_) {
    Pending& front = pending_.front();
    const bool write = front.lane == RespLane::kWrite || front.lane == RespLane::kMaintenance;
    if (running_write_ || (write && running_ > 0)) return;
    std::vector<Pending> batch;
    batch.push_back(std::move(front));
    pending_.pop_front();
    if (write) {
      // VADDs to the same key right behind it join its batch (one engine write).
      const std::string_view key = RespCommands::BatchableVaddKey(batch[0].args);
      while (!key.empty() && !pending_.empty() && batch.size() < kMaxVaddBatch &&
             RespCommands::BatchableVaddKey(pending_.front().args) == key &&
             pending_.front().protocol == batch[0].protocol) {
        batch.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
    }
    Run(std::move(batch));
  }
}

void RespConnection::Run(std::vector<Pending> batch) {
  using Lane = Server::Impl::Lane;
  const RespLane lane = batch[0].lane;
  const protocol::Op op = lane == RespLane::kRead    ? protocol::Op::kSearch
                          : lane == RespLane::kWrite ? protocol::Op::kUpsert
                                                     : protocol::Op::kDropCollection;
  uint64_t payload = 0;
  for (const Pending& p : batch) payload += p.wire_bytes;
  const bool admitted = server_.TryAdmit(op);
  if (!admitted || !server_.TryReserveInflight(payload)) {
    if (admitted) server_.Release(0, op);
    server_.metrics_.BusyRejection();
    const std::string busy = ErrorReply(
        "BUSY " + (admitted ? server_.BusyMessage(Server::Impl::Admission::kBytesFull, payload)
                            : server_.BusyMessage(Server::Impl::Admission::kQueueFull, 0)));
    for (const Pending& p : batch) Fill(p.slot, busy);
    return;
  }
  ++running_;
  if (lane != RespLane::kRead) running_write_ = true;
  const Lane pool_lane = Server::Impl::LaneOf(op);
  asio::thread_pool& pool = pool_lane == Lane::kRead    ? server_.pool_
                            : pool_lane == Lane::kWrite ? server_.write_pool_
                                                        : server_.maintenance_pool_;
  asio::post(pool, [self = shared_from_this(), batch = std::move(batch), payload, pool_lane,
                    start = Clock::now(), work = asio::make_work_guard(strand_)]() mutable {
    if (pool_lane != Lane::kRead) {
      LowerThreadPriority(pool_lane == Lane::kWrite ? Server::Impl::kWriteNice
                                                    : Server::Impl::kMaintenanceNice);
    }
    std::vector<std::string> replies;
    if (!self->gone()) {
      RespCommands& commands = self->listener_.commands();
      if (batch.size() > 1) {
        std::vector<std::vector<std::string>> args;
        args.reserve(batch.size());
        for (Pending& p : batch) args.push_back(std::move(p.args));
        commands.ExecuteVaddBatch(args, batch[0].protocol, replies);
      } else {
        replies.emplace_back();
        commands.Execute(batch[0].args, batch[0].protocol, replies[0]);
      }
      const auto nanos = uint64_t(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
      for (const std::string& r : replies) {
        self->server_.metrics_.RespCommandAnswered(nanos, !r.empty() && r[0] == '-');
      }
    }
    const Strand strand = self->strand_;
    asio::post(strand, [self = std::move(self), batch = std::move(batch),
                        replies = std::move(replies), payload]() mutable {
      self->Completed(std::move(batch), std::move(replies), payload);
    });
  });
}

void RespConnection::Completed(std::vector<Pending> batch, std::vector<std::string> replies,
                               uint64_t payload) {
  const RespLane lane = batch[0].lane;
  const protocol::Op op = lane == RespLane::kRead    ? protocol::Op::kSearch
                          : lane == RespLane::kWrite ? protocol::Op::kUpsert
                                                     : protocol::Op::kDropCollection;
  server_.Release(payload, op);
  --running_;
  if (lane != RespLane::kRead) running_write_ = false;
  if (closed_) return;
  for (size_t i = 0; i < batch.size(); ++i) {
    Fill(batch[i].slot, i < replies.size() ? std::move(replies[i])
                                           : ErrorReply("ERR internal error: no reply was made"));
  }
  Pump();
  read_signal_.cancel();  // a reader paused on max_pipeline re-checks (Fill woke the writer)
}

asio::awaitable<void> RespConnection::WriteLoop(std::shared_ptr<RespConnection> /*keep_alive*/) {
  error_code ec;
  std::vector<std::string> batch;
  std::vector<asio::const_buffer> buffers;
  while (!closed_) {
    if (!slots_.empty() && slots_.front().ready) {
      batch.clear();
      buffers.clear();
      size_t bytes = 0;
      while (!slots_.empty() && slots_.front().ready && batch.size() < kMaxRepliesPerWrite &&
             bytes < kMaxBytesPerWrite) {
        bytes += slots_.front().bytes.size();
        batch.push_back(std::move(slots_.front().bytes));
        slots_.pop_front();
        ++first_slot_;
      }
      for (const auto& b : batch) buffers.push_back(asio::buffer(b));
      const Clock::duration timeout = Seconds(config_.request_timeout_s);
      co_await asio::async_write(
          socket_, buffers,
          [this, timeout](const error_code& e, size_t transferred) -> size_t {
            write_deadline_ = Clock::now() + timeout;  // progress, not the whole write
            return asio::transfer_all()(e, transferred);
          },
          asio::redirect_error(asio::use_awaitable, ec));
      write_deadline_.reset();
      HoldReply(-int64_t(bytes));
      if (ec) {
        Close(fmt::format("write failed: {}", ec.message()));
        co_return;
      }
      last_activity_ = Clock::now();
      read_signal_.cancel();  // room in the pipeline again
      continue;
    }
    if (!accepting_ && slots_.empty() && running_ == 0) {
      // Every reply is out: send FIN, then wait (bounded) for the client to close.
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

asio::awaitable<void> RespConnection::Watchdog(std::shared_ptr<RespConnection> /*keep_alive*/) {
  const Clock::duration idle_timeout = Seconds(config_.idle_timeout_s);
  const Clock::duration request_timeout = Seconds(config_.request_timeout_s);
  const Clock::duration cap = std::min(idle_timeout, request_timeout);
  error_code ec;
  while (!closed_) {
    const Clock::time_point now = Clock::now();
    const bool idle = accepting_ && slots_.empty() && !partial_since_;
    if (partial_since_ && now >= *partial_since_ + request_timeout) {
      ServerLog().warn("RESP connection {} from {}: a command begun {} s ago is still "
                       "incomplete (request_timeout_s); closing",
                       id_, peer_, config_.request_timeout_s);
      Close("request timeout");
      break;
    }
    if (write_deadline_ && now >= *write_deadline_) {
      ServerLog().warn("RESP connection {} from {}: the client has taken none of its replies "
                       "for {} s (request_timeout_s); closing",
                       id_, peer_, config_.request_timeout_s);
      server_.metrics_.SlowClientClosed();
      Close("write timeout");
      break;
    }
    if (!authenticated_ && now >= hello_deadline_) {
      ServerLog().warn("RESP connection {} from {}: no AUTH with the server's token within {} s "
                       "(hello_timeout_s); closing",
                       id_, peer_, config_.hello_timeout_s);
      Close("no AUTH");
      break;
    }
    if (finishing_ && now >= linger_deadline_) {
      Close("finished");
      break;
    }
    if (idle && now >= last_activity_ + idle_timeout) {
      ServerLog().info("RESP connection {} from {}: idle for {} s (idle_timeout_s); closing",
                       id_, peer_, config_.idle_timeout_s);
      Close("idle timeout");
      break;
    }
    Clock::time_point next = now + cap;
    if (partial_since_) next = std::min(next, *partial_since_ + request_timeout);
    if (write_deadline_) next = std::min(next, *write_deadline_);
    if (finishing_) next = std::min(next, linger_deadline_);
    if (idle) next = std::min(next, last_activity_ + idle_timeout);
    if (!authenticated_) next = std::min(next, hello_deadline_);
    watchdog_.expires_at(next);
    co_await watchdog_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace strata::server
