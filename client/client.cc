#include "client/client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <unordered_map>

#include <fmt/core.h>

#include "client/client_internal.h"

namespace strata::client {
namespace {

using protocol::Op;
using protocol::Request;
using protocol::Response;
using Clock = std::chrono::steady_clock;

// Receive buffer: grown geometrically as bytes arrive (never straight to the size a header
// claims, so a bad header cannot make the client allocate a gigabyte up front), and released
// after a frame this large so that one huge reply does not pin its memory for the connection's life.
constexpr size_t kInitialReceiveBytes = 64 * 1024;
constexpr size_t kKeepBufferBytes = 64u << 20;

std::string ErrnoText(int err) { return std::strerror(err); }

std::optional<Clock::time_point> DeadlineAfterMs(uint32_t timeout_ms) {
  if (timeout_ms == 0) return std::nullopt;
  return Clock::now() + std::chrono::milliseconds(timeout_ms);
}

// Waits for `events` on `fd` until `deadline` (nullopt: forever), with ppoll's nanosecond
// resolution (open-loop load generation waits for sub-millisecond send times). Retries EINTR.
// Returns the events that occurred (an error or hang-up counts as all of `events`: the next
// send or recv reports it), or 0 on timeout.
Result<short> PollFd(int fd, short events, std::optional<Clock::time_point> deadline) {
  for (;;) {
    pollfd p{.fd = fd, .events = events, .revents = 0};
    timespec ts{};
    if (deadline) {
      const auto left = std::max(Clock::duration::zero(), *deadline - Clock::now());
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      ts.tv_sec = time_t(ns / 1000000000);
      ts.tv_nsec = long(ns % 1000000000);
    }
    const int rc = ::ppoll(&p, 1, deadline ? &ts : nullptr, nullptr);
    if (rc > 0) {
      if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return events;
      return short(p.revents & events);
    }
    if (rc == 0) return short(0);
    if (errno != EINTR) return Error(IOError("poll: {}", ErrnoText(errno)));
  }
}

std::string PeerName(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

// Connects one resolved address within the timeout; returns the connected non-blocking socket.
Result<int> ConnectAddress(const addrinfo& ai, uint32_t timeout_ms) {
  const int fd = ::socket(ai.ai_family, ai.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                          ai.ai_protocol);
  if (fd < 0) return Error(IOError("socket: {}", ErrnoText(errno)));
  auto fail = [fd](Status s) {
    ::close(fd);
    return Error(std::move(s));
  };
  if (::connect(fd, ai.ai_addr, ai.ai_addrlen) != 0) {
    if (errno != EINPROGRESS && errno != EINTR) return fail(IOError("connect: {}", ErrnoText(errno)));
    auto ready = PollFd(fd, POLLOUT, DeadlineAfterMs(timeout_ms));
    if (!ready) return fail(ready.error());
    if (*ready == 0) return fail(IOError("connect timed out after {} ms", timeout_ms));
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) return fail(IOError("connect: {}", ErrnoText(err)));
  }
  const int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
    return fail(IOError("setsockopt(TCP_NODELAY): {}", ErrnoText(errno)));
  }
  return fd;
}

// The decoder's limits for replies: a client trusts its server's shapes more than a server
// trusts its clients (the frame size still bounds every allocation).
protocol::DecodeLimits ReplyLimits() {
  protocol::DecodeLimits limits;
  limits.max_batch = std::numeric_limits<uint32_t>::max();
  limits.max_dim = 1u << 20;
  limits.max_string = protocol::kAbsoluteMaxPayload;
  limits.max_attributes = std::numeric_limits<uint16_t>::max();
  limits.max_tags = 1u << 20;
  return limits;
}

}  // namespace

using detail::Body;
using detail::ErrorStatus;

// ---------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------

Client::Client(int fd, std::string peer, const ClientOptions& options)
    : fd_(fd), peer_(std::move(peer)), options_(options), io_timeout_ms_(options.io_timeout_ms) {}

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<Client>> Client::Connect(const std::string& host, uint16_t port,
                                                const ClientOptions& options) {
  const std::string peer = PeerName(host, port);
  if (host.empty()) return Error(InvalidArgument("host is empty"));
  if (port == 0) return Error(InvalidArgument("{}: port must be 1..65535", peer));

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
  if (rc != 0) {
    return Error(IOError("{}: cannot resolve host '{}': {}", peer, host,
                         rc == EAI_SYSTEM ? ErrnoText(errno) : std::string(gai_strerror(rc))));
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> addresses(found, ::freeaddrinfo);

  Status last = IOError("{}: no address to connect to", peer);
  int fd = -1;
  for (const addrinfo* ai = addresses.get(); ai != nullptr; ai = ai->ai_next) {
    auto connected = ConnectAddress(*ai, options.connect_timeout_ms);
    if (connected) {
      fd = *connected;
      break;
    }
    last = connected.error().WithContext(peer);
  }
  if (fd < 0) return Error(last);

  std::unique_ptr<Client> client(new Client(fd, peer, options));
  Request hello{.op = Op::kHello,
                .body = protocol::HelloRequest{.client_name = options.client_name,
                                               .token = options.token}};
  auto reply = client->Call(hello);
  if (!reply) {
    // Connection errors already name the peer; the server's refusals do not.
    const bool named = reply.error().message().starts_with(peer);
    return Error(reply.error().WithContext(named ? std::string("hello") : peer + ": hello"));
  }
  STRATA_ASSIGN_OR_RETURN(client->server_,
                          Body<protocol::HelloReply>(std::move(*reply), Op::kHello));
  if (client->server_.protocol_version != protocol::kProtocolVersion) {
    return Error(InvalidArgument("{}: server speaks protocol version {}, this client {}", peer,
                                 client->server_.protocol_version, protocol::kProtocolVersion));
  }
  return client;
}

Status Client::Break(Status why) {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (broken_.ok()) broken_ = why;
  in_flight_.clear();
  user_outstanding_ = 0;
  stashed_.clear();
  recv_begin_ = recv_end_ = 0;
  return why;
}

Status Client::ClosedError() const {
  return IOError("connection to {} is closed: {}", peer_, broken_.message());
}

std::optional<Clock::time_point> Client::IoDeadline() const {
  return DeadlineAfterMs(io_timeout_ms_);
}

std::string Client::BufferedServerError() const {
  std::string last;
  size_t pos = recv_begin_;
  while (recv_end_ - pos >= protocol::kHeaderSize) {
    std::span<const uint8_t, protocol::kHeaderSize> head(recv_buffer_.data() + pos,
                                                         protocol::kHeaderSize);
    auto header = protocol::DecodeHeader(head, protocol::kAbsoluteMaxPayload);
    if (!header || recv_end_ - pos - protocol::kHeaderSize < header->payload_size) break;
    if (header->opcode == static_cast<uint16_t>(Op::kError)) {
      std::span<const uint8_t> payload(recv_buffer_.data() + pos + protocol::kHeaderSize,
                                       header->payload_size);
      auto error = protocol::DecodeResponse(*header, payload, ReplyLimits());
      if (error && error->op == Op::kError) last = ErrorStatus(*error).ToString();
    }
    pos += protocol::kHeaderSize + header->payload_size;
  }
  return last;
}

Result<short> Client::WaitFor(short events, std::optional<Clock::time_point> deadline) {
  auto ready = PollFd(fd_, events, deadline);
  if (!ready) return Error(Break(ready.error().WithContext(peer_)));
  return *ready;
}

Status Client::ReadAvailable() {
  if (recv_begin_ > 0 && recv_begin_ == recv_end_) recv_begin_ = recv_end_ = 0;
  if (recv_buffer_.size() - recv_end_ < kInitialReceiveBytes / 4) {
    recv_buffer_.resize(std::max(kInitialReceiveBytes, recv_buffer_.size() * 2));
  }
  for (;;) {
    const ssize_t n = ::recv(fd_, recv_buffer_.data() + recv_end_,
                             recv_buffer_.size() - recv_end_, 0);
    if (n > 0) {
      recv_end_ += size_t(n);
      return Status::Ok();
    }
    if (n == 0) {
      // Whatever the server said before hanging up (typically an error frame naming why) has
      // been buffered while sending: keep it in the message.
      const std::string said = BufferedServerError();
      return Break(IOError("{}: the server closed the connection while a request was being "
                           "sent{}",
                           peer_, said.empty() ? "" : fmt::format("; it said: {}", said)));
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::Ok();
    return Break(IOError("{}: recv: {}", peer_, ErrnoText(errno)));
  }
}

Status Client::WriteAll(std::span<const uint8_t> bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += size_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // While the send buffer is full, keep taking in answers to earlier requests: a server
      // that stops reading until its replies drain must not deadlock against a pipelining client.
      STRATA_ASSIGN_OR_RETURN(short ready, WaitFor(POLLOUT | POLLIN, IoDeadline()));
      if (ready == 0) {
        return Break(IOError("{}: timed out after {} ms sending a request", peer_,
                             io_timeout_ms_));
      }
      if (ready & POLLIN) STRATA_RETURN_IF_ERROR(ReadAvailable());
      continue;
    }
    const std::string why = n < 0 ? ErrnoText(errno) : "no progress";
    const std::string said = BufferedServerError();
    return Break(IOError("{}: send: {}{}", peer_, why,
                         said.empty() ? "" : fmt::format("; the server said: {}", said)));
  }
  return Status::Ok();
}

Result<uint64_t> Client::SendRequest(const Request& request, bool user) {
  if (fd_ < 0) return Error(ClosedError());
  // EncodeRequest aborts on a request it cannot encode faithfully; refuse those here instead.
  STRATA_RETURN_IF_ERROR(protocol::ValidateForEncoding(request));
  send_buffer_.clear();
  const uint64_t id = next_request_id_++;
  protocol::EncodeRequest(request, id, send_buffer_);
  const size_t payload = send_buffer_.size() - protocol::kHeaderSize;
  // Before the hello reply the server's limit is unknown; the absolute one still holds.
  const uint32_t limit = server_.max_payload != 0 ? server_.max_payload
                                                  : protocol::kAbsoluteMaxPayload;
  if (payload > limit) {
    // Refused here: the server would take an oversized frame for a framing error and close.
    return Error(InvalidArgument("{} request of {} bytes is over the server's frame limit of {} "
                                 "bytes; send fewer records or queries per request",
                                 protocol::OpName(request.op), payload, limit));
  }
  STRATA_RETURN_IF_ERROR(WriteAll(send_buffer_));
  if (send_buffer_.capacity() > kKeepBufferBytes) std::vector<uint8_t>().swap(send_buffer_);
  in_flight_.emplace(id, InFlight{.op = request.op, .user = user});
  if (user) ++user_outstanding_;
  return id;
}

Result<std::optional<Client::Received>> Client::ReadResponse(
    std::optional<Clock::time_point> deadline) {
  if (fd_ < 0) return Error(ClosedError());
  for (;;) {
    const size_t buffered = recv_end_ - recv_begin_;
    size_t need = protocol::kHeaderSize;
    if (buffered >= protocol::kHeaderSize) {
      std::span<const uint8_t, protocol::kHeaderSize> head(recv_buffer_.data() + recv_begin_,
                                                           protocol::kHeaderSize);
      auto header = protocol::DecodeHeader(head, protocol::kAbsoluteMaxPayload);
      if (!header) {
        return Error(Break(IOError("{}: undecodable frame from the server: {}", peer_,
                                   header.error().message())));
      }
      need = protocol::kHeaderSize + header->payload_size;
      if (buffered >= need) {
        std::span<const uint8_t> payload(
            recv_buffer_.data() + recv_begin_ + protocol::kHeaderSize, header->payload_size);
        auto it = in_flight_.find(header->request_id);
        if (it == in_flight_.end()) {
          // A server refusing the connection itself (too many connections) sends an error frame
          // with request id 0 and hangs up: keep its words.
          if (header->opcode == static_cast<uint16_t>(Op::kError)) {
            auto error = protocol::DecodeResponse(*header, payload, ReplyLimits());
            if (error && error->op == Op::kError) {
              return Error(Break(IOError("{}: the server sent an error outside any request: {}",
                                         peer_, ErrorStatus(*error).ToString())));
            }
          }
          return Error(Break(IOError("{}: response with request id {}, which no request in "
                                     "flight has", peer_, header->request_id)));
        }
        auto response = protocol::DecodeResponse(*header, payload, ReplyLimits());
        if (!response) {
          return Error(Break(IOError("{}: undecodable {} response: {}", peer_,
                                     protocol::OpName(it->second.op),
                                     response.error().message())));
        }
        if (response->op != Op::kError && response->op != it->second.op) {
          return Error(Break(IOError("{}: request {} ({}) was answered with a {} reply", peer_,
                                     header->request_id, protocol::OpName(it->second.op),
                                     protocol::OpName(response->op))));
        }
        Received received{.id = header->request_id, .user = it->second.user,
                          .response = std::move(*response)};
        in_flight_.erase(it);
        if (received.user) --user_outstanding_;
        recv_begin_ += need;
        if (recv_begin_ == recv_end_) {
          recv_begin_ = recv_end_ = 0;
          if (recv_buffer_.size() > kKeepBufferBytes) std::vector<uint8_t>().swap(recv_buffer_);
        }
        return std::optional<Received>(std::move(received));
      }
    }

    // Room for more bytes: move what is buffered to the front, then grow towards `need`.
    if (recv_begin_ > 0 && recv_buffer_.size() - recv_end_ < need - buffered) {
      std::memmove(recv_buffer_.data(), recv_buffer_.data() + recv_begin_, buffered);
      recv_begin_ = 0;
      recv_end_ = buffered;
    }
    if (recv_buffer_.size() - recv_end_ < need - buffered) {
      recv_buffer_.resize(std::max(kInitialReceiveBytes,
                                   std::min(recv_begin_ + need, recv_buffer_.size() * 2)));
    }

    const ssize_t n = ::recv(fd_, recv_buffer_.data() + recv_end_,
                             recv_buffer_.size() - recv_end_, 0);
    if (n > 0) {
      recv_end_ += size_t(n);
      continue;
    }
    if (n == 0) {
      return Error(Break(IOError("{}: the server closed the connection{}", peer_,
                                 buffered > 0 ? " in the middle of a response" : "")));
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return Error(Break(IOError("{}: recv: {}", peer_, ErrnoText(errno))));
    }
    if (!deadline) {
      STRATA_ASSIGN_OR_RETURN(short ready, WaitFor(POLLIN, IoDeadline()));
      if (ready == 0) {
        return Error(Break(IOError("{}: no response within {} ms (I/O timeout)", peer_,
                                   io_timeout_ms_)));
      }
    } else {
      if (Clock::now() >= *deadline) return std::optional<Received>();
      STRATA_ASSIGN_OR_RETURN(short ready, WaitFor(POLLIN, deadline));
      if (ready == 0) return std::optional<Received>();
    }
  }
}

void Client::Stash(uint64_t id, Response response) {
  stashed_.emplace_back(id, std::move(response));
}

Result<Response> Client::AwaitResponse(uint64_t id) {
  for (;;) {
    STRATA_ASSIGN_OR_RETURN(std::optional<Received> received, ReadResponse(std::nullopt));
    if (received->id == id) return std::move(received->response);
    // Only one call waits at a time, so anything else answers a Send request.
    STRATA_CHECK(received->user);
    Stash(received->id, std::move(received->response));
  }
}

Result<Response> Client::Call(const Request& request, uint32_t io_timeout_ms) {
  io_timeout_ms_ = io_timeout_ms;
  auto response = Call(request);
  io_timeout_ms_ = options_.io_timeout_ms;
  return response;
}

Result<Response> Client::Call(const Request& request) {
  STRATA_ASSIGN_OR_RETURN(uint64_t id, SendRequest(request, false));
  STRATA_ASSIGN_OR_RETURN(Response response, AwaitResponse(id));
  if (response.op == Op::kError) return Error(ErrorStatus(response));
  return response;
}

// ---------------------------------------------------------------------------
// Low level
// ---------------------------------------------------------------------------

Result<uint64_t> Client::Send(const Request& request) { return SendRequest(request, true); }

Result<std::pair<uint64_t, Response>> Client::Receive() {
  if (fd_ < 0) return Error(ClosedError());
  if (!stashed_.empty()) {
    auto front = std::move(stashed_.front());
    stashed_.pop_front();
    return front;
  }
  if (user_outstanding_ == 0) {
    return Error(InvalidArgument("Receive with no request outstanding (Send one first)"));
  }
  STRATA_ASSIGN_OR_RETURN(std::optional<Received> received, ReadResponse(std::nullopt));
  STRATA_CHECK(received->user);  // no other call is waiting, so only Send requests are in flight
  return std::make_pair(received->id, std::move(received->response));
}

Result<std::optional<std::pair<uint64_t, Response>>> Client::Poll(std::chrono::microseconds wait) {
  using Out = std::optional<std::pair<uint64_t, Response>>;
  if (fd_ < 0) return Error(ClosedError());
  if (!stashed_.empty()) {
    auto front = std::move(stashed_.front());
    stashed_.pop_front();
    return Out(std::move(front));
  }
  if (user_outstanding_ == 0) {
    return Error(InvalidArgument("Poll with no request outstanding (Send one first)"));
  }
  STRATA_ASSIGN_OR_RETURN(std::optional<Received> received, ReadResponse(Clock::now() + wait));
  if (!received) return Out();
  STRATA_CHECK(received->user);
  return Out(std::make_pair(received->id, std::move(received->response)));
}

}  // namespace strata::client
