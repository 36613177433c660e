// The RESP listener in-process (server/resp_listener.h): concurrent pipelined clients whose
// replies keep their order, a connection's write seen by its next read, timeouts, graceful
// shutdown. Its threads (I/O threads, worker pools) run under ThreadSanitizer in
// scripts/test.sh; every reply of every command is checked by resp_cli_test against the real
// binary.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "engine/strata.h"
#include "protocol/resp.h"
#include "server/server.h"

namespace strata::server {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

uint16_t FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A blocking RESP client over a raw socket. Thread-compatible.
class RespClient {
 public:
  explicit RespClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~RespClient() { ::close(fd_); }
  bool connected() const { return connected_; }

  void Send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      bytes.remove_prefix(size_t(n));
    }
  }
  void Command(std::vector<std::string> args) { Send(protocol::resp::EncodeCommand(args)); }

  // Exactly `n` bytes, or fewer when the connection closes or `timeout` passes.
  std::string Read(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    std::string out;
    const auto deadline = Clock::now() + timeout;
    while (out.size() < n) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, int(left.count())) <= 0) break;
      char buf[65536];
      const ssize_t got = ::recv(fd_, buf, std::min(sizeof buf, n - out.size()), 0);
      if (got <= 0) break;
      out.append(buf, size_t(got));
    }
    return out;
  }
  // True when the server closed the connection within `timeout`.
  bool Closed(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, int(timeout.count())) <= 0) return false;
    char c;
    return ::recv(fd_, &c, 1, 0) == 0;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

class RespListenerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { spdlog::set_level(spdlog::level::err); }

  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "strata-resp-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    server_.reset();
    engine_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  ServerConfig Config() const {
    ServerConfig c;
    c.port = 0;
    c.metrics_port = 0;
    c.resp_port = FreePort();
    c.data_dir = dir_.string();
    c.worker_threads = 2;
    c.io_threads = 2;
    c.durability = Durability::kNone;
    c.background_compaction = false;
    c.log_level = "error";
    return c;
  }

  void Start(ServerConfig config) {
    auto engine = Engine::Open(config.data_dir, EngineOptionsFor(config));
    ASSERT_TRUE(engine.has_value()) << engine.error().ToString();
    engine_ = std::move(*engine);
    // FreePort's port can be taken by a test running beside this one before the server
    // binds it: then another one, a few times.
    auto server = Server::Start(config, *engine_);
    for (int attempt = 0; attempt < 5 && !server && config.resp_port != 0 &&
                          server.error().message().find("Address already in use") != std::string::npos;
         ++attempt) {
      config.resp_port = FreePort();
      server = Server::Start(config, *engine_);
    }
    ASSERT_TRUE(server.has_value()) << server.error().ToString();
    server_ = std::move(*server);
    ASSERT_EQ(server_->resp_port(), config.resp_port);
  }

  fs::path dir_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Server> server_;
};

TEST_F(RespListenerTest, OffUnlessAPortIsSet) {
  ServerConfig c = Config();
  c.resp_port = 0;
  Start(c);
  EXPECT_EQ(server_->resp_port(), 0);
}

TEST_F(RespListenerTest, ConcurrentPipelinedClientsGetTheirRepliesInOrder) {
  Start(Config());
  constexpr int kClients = 4;
  constexpr int kPerClient = 150;
  std::vector<std::thread> threads;
  std::vector<std::string> failures(kClients);
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      RespClient c(server_->resp_port());
      if (!c.connected()) {
        failures[t] = "cannot connect";
        return;
      }
      const std::string key = "set" + std::to_string(t);
      // Writes and reads interleaved in one burst: each VCARD must see the VADDs before it,
      // and the replies come back in command order.
      std::string burst;
      std::string want;
      for (int i = 0; i < kPerClient; ++i) {
        burst += protocol::resp::EncodeCommand(std::vector<std::string>{
            "VADD", key, "VALUES", "2", std::to_string(i + 1), "1", "e" + std::to_string(i)});
        burst += protocol::resp::EncodeCommand(std::vector<std::string>{"VCARD", key});
        burst += "PING\r\n";
        want += ":1\r\n:" + std::to_string(i + 1) + "\r\n+PONG\r\n";
      }
      burst += protocol::resp::EncodeCommand(std::vector<std::string>{
          "VSIM", key, "VALUES", "2", "1", "1", "COUNT", "1", "TRUTH"});
      want += "*1\r\n$2\r\ne0\r\n";
      c.Send(burst);
      const std::string got = c.Read(want.size());
      if (got != want) failures[t] = "replies differ: got " + got.substr(0, 200);
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kClients; ++t) EXPECT_EQ(failures[t], "") << "client " << t;
  EXPECT_EQ(engine_->ListCollections().size(), size_t(kClients));
}

TEST_F(RespListenerTest, AMalformedRequestIsAnsweredThenTheConnectionCloses) {
  Start(Config());
  RespClient c(server_->resp_port());
  c.Send("PING\r\n*2\r\n$4\r\nECHO\r\n*1\r\n");
  const std::string want = "+PONG\r\n-ERR Protocol error: expected '$', got '*'\r\n";
  EXPECT_EQ(c.Read(want.size()), want);
  EXPECT_TRUE(c.Closed(std::chrono::seconds(10)));
}

TEST_F(RespListenerTest, HalfACommandThenSilenceIsClosedAfterTheRequestTimeout) {
  ServerConfig config = Config();
  config.request_timeout_s = 0.3;
  Start(config);
  RespClient c(server_->resp_port());
  c.Send("*2\r\n$4\r\nECHO\r\n$5\r\nab");
  EXPECT_TRUE(c.Closed(std::chrono::seconds(10)));
}

TEST_F(RespListenerTest, AnIdleConnectionIsClosed) {
  ServerConfig config = Config();
  config.idle_timeout_s = 0.3;
  Start(config);
  RespClient c(server_->resp_port());
  c.Send("PING\r\n");
  EXPECT_EQ(c.Read(7), "+PONG\r\n");
  EXPECT_TRUE(c.Closed(std::chrono::seconds(10)));
}

TEST_F(RespListenerTest, WithATokenOnlyAuthHelloPingAndQuitComeFirst) {
  ServerConfig config = Config();
  config.token = "resp-listener-test-token";
  Start(config);
  RespClient c(server_->resp_port());
  c.Send("VCARD k\r\nPING\r\nAUTH nope-nope-nope\r\nAUTH default resp-listener-test-token\r\nVCARD k\r\n");
  const std::string want =
      "-NOAUTH Authentication required.\r\n+PONG\r\n"
      "-WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n:0\r\n";
  EXPECT_EQ(c.Read(want.size()), want);
  // Before AUTH a command may not be large.
  RespClient big(server_->resp_port());
  big.Send("*2\r\n$4\r\nECHO\r\n$100000\r\n");
  const std::string got = big.Read(200, std::chrono::seconds(10));
  EXPECT_EQ(got.rfind("-ERR Protocol error: invalid bulk length: 100000 bytes", 0), 0u) << got;
}

TEST_F(RespListenerTest, ShutdownAnswersWhatWasReadThenCloses) {
  Start(Config());
  RespClient c(server_->resp_port());
  c.Send("PING\r\n");
  EXPECT_EQ(c.Read(7), "+PONG\r\n");
  std::thread stop([&] {
    server_->Shutdown();
    server_->Wait();
  });
  EXPECT_TRUE(c.Closed(std::chrono::seconds(20)));
  stop.join();
}

}  // namespace
}  // namespace strata::server
