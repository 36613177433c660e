#pragma once
// A real etcd (Debian's etcd-server) for the cluster tests: one member on free loopback ports,
// its data in a fresh temporary directory that it removes when done (that directory only).
//
//   STRATA_ASSIGN_OR_RETURN(auto etcd, EtcdProcess::Start());
//   auto client = cluster::EtcdClient::Create(etcd->url());
//   etcd->Stop();  etcd->Restart();   // same ports, same data
//
// The ports come from the kernel (bind to port 0, then close): a test beside this one may take
// one before etcd binds it, so Start tries again with new ports when etcd cannot listen.
// The child gets SIGKILL if the test process dies (PR_SET_PDEATHSIG), so no etcd outlives it.
//
// Thread-compatible: one thread drives an EtcdProcess.

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cluster/etcd_http.h"
#include "core/status.h"

#ifndef STRATA_ETCD_BINARY
#define STRATA_ETCD_BINARY "etcd"
#endif

namespace strata::cluster::testing {

// A port the kernel had free a moment ago on 127.0.0.1.
inline uint16_t FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  uint16_t port = 0;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    socklen_t len = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) port = ntohs(addr.sin_port);
  }
  if (fd >= 0) ::close(fd);
  return port;
}

// Starts `argv` with stdout and stderr appended to `log`; the child dies with its parent.
// Returns the pid, or -1.
inline pid_t SpawnWithLog(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  // Child: only async-signal-safe calls until exec.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd >= 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
  }
  ::execvp(argv[0], argv.data());
  ::_exit(127);
}

class EtcdProcess {
 public:
  static Result<std::unique_ptr<EtcdProcess>> Start() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "strata_etcd_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) return Error(IOError("mkdtemp {} failed", tmpl));
    std::unique_ptr<EtcdProcess> p(new EtcdProcess(tmpl));
    Status last;
    for (int attempt = 0; attempt < 5; ++attempt) {
      p->client_port_ = FreeLoopbackPort();
      p->peer_port_ = FreeLoopbackPort();
      last = p->Launch();
      if (last.ok()) return p;
    }
    return Error(last);
  }

  ~EtcdProcess() {
    Kill();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);  // the directory Start created, nothing else
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(client_port_); }
  uint16_t client_port() const { return client_port_; }
  pid_t pid() const { return pid_; }
  const std::filesystem::path& dir() const { return dir_; }

  // SIGTERM, then waits for the exit (SIGKILL after 10 s).
  void Stop() { Signal(SIGTERM); }
  void Kill() { Signal(SIGKILL); }
  // The same member again: same ports, same data.
  Status Restart() {
    Stop();
    Status last;
    for (int attempt = 0; attempt < 3; ++attempt) {
      last = Launch();
      if (last.ok()) return last;
    }
    return last;
  }
  std::string Log() const {
    std::ifstream in(dir_ / "etcd.log");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  explicit EtcdProcess(std::filesystem::path dir) : dir_(std::move(dir)) {}

  void Signal(int signal) {
    if (pid_ <= 0) return;
    ::kill(pid_, signal);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > until) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_ = -1;
  }

  Status Launch() {
    const std::string client = url();
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    // Short raft timings: one member elects itself at once, and a lease's minimum TTL
    // (derived from the election timeout) stays under a second.
    const std::vector<std::string> args = {
        STRATA_ETCD_BINARY, "--name", "strata-test", "--data-dir", (dir_ / "data").string(),
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", "strata-test=" + peer, "--heartbeat-interval", "10",
        "--election-timeout", "100", "--logger", "zap", "--log-level", "warn"};
    pid_ = SpawnWithLog(args, (dir_ / "etcd.log").string());
    if (pid_ < 0) return IOError("cannot start {}", STRATA_ETCD_BINARY);
    EtcdEndpoint ep{.host = "127.0.0.1", .port = client_port_, .url = client};
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return IOError("{} exited ({}) at start; its log:\n{}", STRATA_ETCD_BINARY,
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1, Log());
      }
      auto reply = HttpPost(ep, "/v3/kv/range", R"({"key":"AA=="})", std::chrono::milliseconds(500));
      if (reply && reply->status == 200) return Status::Ok();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    Kill();
    return IOError("{} did not answer on {} within 20 s; its log:\n{}", STRATA_ETCD_BINARY, client,
                   Log());
  }

  std::filesystem::path dir_;
  uint16_t client_port_ = 0;
  uint16_t peer_port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace strata::cluster::testing
