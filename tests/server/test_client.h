#pragma once
// A raw-socket client for the server tests: blocking POSIX sockets and the
// protocol's encoders, nothing from client/. It can send anything, including
// broken frames, and tell a closed connection from a slow one.
//
// Thread-compatible: one TestClient per thread.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "protocol/protocol.h"

namespace strata::server::testing {

using Clock = std::chrono::steady_clock;

struct Frame {
  protocol::FrameHeader header;
  protocol::Response response;
};

class TestClient {
 public:
  // nullptr when the connection cannot be made. `receive_buffer_bytes` > 0 fixes the
  // socket's receive buffer (no autotuning), so that a client that does not read
  // stalls the server's writes sooner. `source_address` (an IPv4 loopback address such
  // as "127.0.0.2"): the address the server sees, for its per-address limits.
  static std::unique_ptr<TestClient> Connect(uint16_t port, int receive_buffer_bytes = 0,
                                             const char* source_address = nullptr) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return nullptr;
    if (receive_buffer_bytes > 0) {
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes, sizeof receive_buffer_bytes);
    }
    if (source_address != nullptr) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      local.sin_port = 0;
      if (::inet_pton(AF_INET, source_address, &local.sin_addr) != 1 ||
          ::bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
        ::close(fd);
        return nullptr;
      }
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd);
      return nullptr;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return std::unique_ptr<TestClient>(new TestClient(fd));
  }

  ~TestClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  int fd() const { return fd_; }

  bool SendRaw(std::span<const uint8_t> bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += size_t(n);
    }
    return true;
  }

  bool Send(const protocol::Request& request, uint64_t request_id) {
    std::vector<uint8_t> frame;
    protocol::EncodeRequest(request, request_id, frame);
    return SendRaw(frame);
  }

  // One whole frame within `timeout_ms`; nullopt on end of stream, reset, timeout or an
  // undecodable frame (then `closed()` tells whether the server closed the connection).
  std::optional<Frame> ReadFrame(int timeout_ms = 10000) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    std::array<uint8_t, protocol::kHeaderSize> header;
    if (!ReadExact(header.data(), header.size(), deadline)) return std::nullopt;
    auto h = protocol::DecodeHeader(header, protocol::kAbsoluteMaxPayload);
    if (!h) {
      last_error_ = h.error().ToString();
      return std::nullopt;
    }
    std::vector<uint8_t> payload(h->payload_size);
    if (!ReadExact(payload.data(), payload.size(), deadline)) return std::nullopt;
    protocol::DecodeLimits limits;
    limits.max_batch = 1u << 30;
    auto r = protocol::DecodeResponse(*h, payload, limits);
    if (!r) {
      last_error_ = r.error().ToString();
      return std::nullopt;
    }
    return Frame{*h, std::move(*r)};
  }

  // Sends one request and reads the next frame (nullopt as ReadFrame).
  std::optional<Frame> Call(const protocol::Request& request, uint64_t request_id = 1,
                            int timeout_ms = 20000) {
    if (!Send(request, request_id)) return std::nullopt;
    return ReadFrame(timeout_ms);
  }

  // True when the server closes the connection (end of stream or reset) within
  // `timeout_ms`; frames that arrive first are read and dropped.
  bool WaitClosed(int timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    uint8_t buf[4096];
    for (;;) {
      const int wait = RemainingMs(deadline);
      if (wait <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      const int rc = ::poll(&p, 1, wait);
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) return false;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) return true;  // reset
    }
  }

  bool closed() const { return closed_; }
  const std::string& last_error() const { return last_error_; }

 private:
  explicit TestClient(int fd) : fd_(fd) {}

  static int RemainingMs(Clock::time_point deadline) {
    return int(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
  }

  bool ReadExact(uint8_t* out, size_t n, Clock::time_point deadline) {
    size_t done = 0;
    while (done < n) {
      const int wait = RemainingMs(deadline);
      if (wait <= 0) {
        last_error_ = "timed out";
        return false;
      }
      pollfd p{fd_, POLLIN, 0};
      const int rc = ::poll(&p, 1, wait);
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) {
        last_error_ = "timed out";
        return false;
      }
      const ssize_t got = ::recv(fd_, out + done, n - done, 0);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) {
        closed_ = true;
        last_error_ = got == 0 ? "end of stream" : std::strerror(errno);
        return false;
      }
      done += size_t(got);
    }
    return true;
  }

  int fd_;
  bool closed_ = false;
  std::string last_error_;
};

// Request builders.
inline protocol::Request PingRequest() { return {protocol::Op::kPing, protocol::PingRequest{}}; }

inline protocol::Request HelloRequest(std::string token) {
  return {protocol::Op::kHello, protocol::HelloRequest{"server-test", std::move(token)}};
}

inline protocol::Request CreateRequest(std::string name, uint32_t dim,
                                       Metric metric = Metric::kL2) {
  CollectionSpec spec;
  spec.name = std::move(name);
  spec.dim = dim;
  spec.metric = metric;
  return {protocol::Op::kCreateCollection, protocol::CreateCollectionRequest{spec}};
}

inline protocol::Request UpsertRequest(std::string collection, uint32_t dim,
                                       std::vector<Record> records) {
  return {protocol::Op::kUpsert,
          protocol::UpsertRequest{std::move(collection), dim, std::move(records)}};
}

inline protocol::Request GetRequest(std::string collection, std::vector<VectorId> ids) {
  return {protocol::Op::kGet, protocol::GetRequest{std::move(collection), std::move(ids)}};
}

inline protocol::Request DeleteRequest(std::string collection, std::vector<VectorId> ids) {
  return {protocol::Op::kDelete, protocol::DeleteRequest{std::move(collection), std::move(ids)}};
}

// `queries`: count rows of dim floats.
inline protocol::Request SearchRequest(
    protocol::Op op, std::string collection, uint32_t dim, std::vector<float> queries, uint32_t k,
    SearchStrategy strategy = SearchStrategy::kAuto) {
  protocol::SearchRequest m;
  m.collection = std::move(collection);
  m.options.k = k;
  m.options.strategy = strategy;
  m.dim = dim;
  m.count = dim == 0 ? 0 : uint32_t(queries.size() / dim);
  m.queries = std::move(queries);
  return {op, std::move(m)};
}

// The error of an error frame, or nullptr.
inline const protocol::ErrorReply* AsError(const std::optional<Frame>& f) {
  if (!f) return nullptr;
  return std::get_if<protocol::ErrorReply>(&f->response.body);
}

}  // namespace strata::server::testing
