#pragma once
// A scripted stand-in for a Strata server, for client tests: it listens on 127.0.0.1:0,
// accepts one connection on its own thread and runs a script against it (read a request,
// answer it, answer out of order, send garbage, hang up, ...). The connection is closed when
// the script returns. Every blocking step has a safety timeout (kSafetyMs), so that a client
// bug fails the test instead of hanging it.
//
// Thread safety: construct and destroy on the test's thread; the script runs on the server's.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "protocol/protocol.h"

namespace strata::client::testing {

inline constexpr int kSafetyMs = 20000;

// The server side of one accepted connection.
class FakeConnection {
 public:
  explicit FakeConnection(int fd) : fd_(fd) {}

  struct Frame {
    protocol::FrameHeader header;
    protocol::Request request;
  };

  // The next request, or nullopt when the client closed the connection (or the safety
  // timeout passed, which is reported as a test failure).
  std::optional<Frame> Read() {
    uint8_t head[protocol::kHeaderSize];
    if (!ReadExact(head, sizeof(head))) return std::nullopt;
    auto header = protocol::DecodeHeader(std::span<const uint8_t, protocol::kHeaderSize>(head),
                                         protocol::kAbsoluteMaxPayload);
    if (!header) {
      ADD_FAILURE() << "fake server: bad header: " << header.error().ToString();
      return std::nullopt;
    }
    std::vector<uint8_t> payload(header->payload_size);
    if (!ReadExact(payload.data(), payload.size())) {
      ADD_FAILURE() << "fake server: connection closed inside a frame";
      return std::nullopt;
    }
    auto request = protocol::DecodeRequest(*header, payload);
    if (!request) {
      ADD_FAILURE() << "fake server: undecodable request: " << request.error().ToString();
      return std::nullopt;
    }
    return Frame{*header, std::move(*request)};
  }

  // Reads only the next frame's header (its payload stays unread), or nullopt.
  std::optional<protocol::FrameHeader> ReadHeader() {
    uint8_t head[protocol::kHeaderSize];
    if (!ReadExact(head, sizeof(head))) return std::nullopt;
    auto header = protocol::DecodeHeader(std::span<const uint8_t, protocol::kHeaderSize>(head),
                                         protocol::kAbsoluteMaxPayload);
    if (!header) {
      ADD_FAILURE() << "fake server: bad header: " << header.error().ToString();
      return std::nullopt;
    }
    return *header;
  }

  // Sends FIN (the client reads end of stream) while reading nothing more.
  void ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

  // Reads one request and checks that it is `op`.
  std::optional<Frame> Expect(protocol::Op op) {
    auto frame = Read();
    if (!frame) {
      ADD_FAILURE() << "fake server: expected a " << protocol::OpName(op) << " request";
      return std::nullopt;
    }
    EXPECT_EQ(frame->request.op, op) << "fake server got " << protocol::OpName(frame->request.op);
    return frame;
  }

  // Answers the hello with `reply`; returns the hello request.
  std::optional<protocol::HelloRequest> AcceptHello(const protocol::HelloReply& reply = {
                                                        .server_version = "fake",
                                                        .max_payload = 64u << 20,
                                                        .max_batch = 100000,
                                                        .max_k = 10000}) {
    auto frame = Expect(protocol::Op::kHello);
    if (!frame) return std::nullopt;
    Reply(frame->header.request_id, {.op = protocol::Op::kHello, .body = reply});
    return std::get<protocol::HelloRequest>(frame->request.body);
  }

  void Reply(uint64_t request_id, const protocol::Response& response) {
    std::vector<uint8_t> bytes;
    protocol::EncodeResponse(response, request_id, bytes);
    WriteRaw(bytes);
  }

  void ReplyError(uint64_t request_id, protocol::ErrorCode code, std::string message) {
    Reply(request_id, {.op = protocol::Op::kError,
                       .body = protocol::ErrorReply{.code = code, .message = std::move(message)}});
  }

  void WriteRaw(std::span<const uint8_t> bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ADD_FAILURE() << "fake server: send failed: " << std::strerror(errno);
        return;
      }
      done += size_t(n);
    }
  }

  // True when bytes are waiting to be read right now (without waiting).
  bool HasPendingBytes() {
    uint8_t b;
    return ::recv(fd_, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
  }

  // Blocks until the client closes its end; false on the safety timeout.
  bool WaitForClose() {
    uint8_t buf[4096];
    for (;;) {
      pollfd p{.fd = fd_, .events = POLLIN, .revents = 0};
      if (::poll(&p, 1, kSafetyMs) <= 0) return false;
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n == 0) return true;
      if (n < 0 && errno != EINTR) return true;
    }
  }

 private:
  bool ReadExact(uint8_t* out, size_t size) {
    size_t done = 0;
    while (done < size) {
      pollfd p{.fd = fd_, .events = POLLIN, .revents = 0};
      const int rc = ::poll(&p, 1, kSafetyMs);
      if (rc == 0) {
        ADD_FAILURE() << "fake server: nothing from the client for " << kSafetyMs << " ms";
        return false;
      }
      if (rc < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      const ssize_t n = ::recv(fd_, out + done, size - done, 0);
      if (n == 0) return false;
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      done += size_t(n);
    }
    return true;
  }

  int fd_;
};

class FakeServer {
 public:
  using Script = std::function<void(FakeConnection&)>;

  explicit FakeServer(Script script) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(listen_fd_, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(listen_fd_, 4), 0);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this, script = std::move(script)] {
      pollfd p{.fd = listen_fd_, .events = POLLIN, .revents = 0};
      if (::poll(&p, 1, kSafetyMs) <= 0) {
        ADD_FAILURE() << "fake server: no connection within " << kSafetyMs << " ms";
        return;
      }
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        ADD_FAILURE() << "fake server: accept failed: " << std::strerror(errno);
        return;
      }
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      FakeConnection connection(fd);
      script(connection);
      ::close(fd);
    });
  }

  ~FakeServer() {
    thread_.join();
    ::close(listen_fd_);
  }

  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  uint16_t port() const { return port_; }

 private:
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace strata::client::testing
