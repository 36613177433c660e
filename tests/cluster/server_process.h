#pragma once
// A real strata-server process for the cluster tests: its own data directory under the test's
// temporary directory, port 0 (the bound port read back from --port-file), the log in a file.
//
// Thread-compatible: one thread drives a ServerProcess.

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "tests/cluster/etcd_process.h"

#ifndef STRATA_SERVER_BINARY
#define STRATA_SERVER_BINARY "strata-server"
#endif

namespace strata::cluster::testing {

class ServerProcess {
 public:
  // Starts strata-server with `args` (after --data-dir DIR/ID --port-file ...); `port` 0: an
  // ephemeral one. Waits until the port file appears (the server listens).
  static Result<std::unique_ptr<ServerProcess>> Start(const std::filesystem::path& dir,
                                                      const std::string& id,
                                                      const std::vector<std::string>& args,
                                                      uint16_t port = 0) {
    std::unique_ptr<ServerProcess> p(new ServerProcess(dir, id));
    STRATA_RETURN_IF_ERROR(p->Launch(args, port));
    return p;
  }
  ~ServerProcess() { Signal(SIGKILL); }

  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // Sends `signal`; SIGSTOP and SIGCONT return once the process is stopped / running again
  // (its state in /proc: kill() only queues the signal, and a test that then expects the node
  // to be silent must not race its last replies).
  void Signal(int signal) {
    if (pid_ <= 0) return;
    ::kill(pid_, signal);
    if (signal != SIGSTOP && signal != SIGCONT) return;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (Stopped() != (signal == SIGSTOP) && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  // The process is stopped by a signal (state T in /proc/PID/stat).
  bool Stopped() const {
    std::ifstream f("/proc/" + std::to_string(pid_) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const size_t close = stat.rfind(')');  // the name may hold spaces and parentheses
    return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'T';
  }
  // Waits for the process to exit; its exit code (128 + signal when killed), or nullopt on
  // timeout.
  std::optional<int> WaitExit(uint32_t timeout_ms) {
    if (pid_ <= 0) return exit_code_;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    int status = 0;
    for (;;) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_code_;
      }
      if (std::chrono::steady_clock::now() >= until) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  // Kill and reap (SIGKILL).
  void Kill() {
    Signal(SIGKILL);
    WaitExit(10000);
  }
  // Starts the same node again (same data directory; same port unless told otherwise).
  Status Restart(const std::vector<std::string>& args) {
    Kill();
    return Launch(args, port_);
  }
  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  ServerProcess(std::filesystem::path dir, std::string id)
      : dir_(std::move(dir)), id_(std::move(id)), log_(dir_ / (id_ + ".log")) {}

  Status Launch(const std::vector<std::string>& extra, uint16_t port) {
    const auto port_file = dir_ / (id_ + ".port");
    std::error_code ec;
    std::filesystem::remove(port_file, ec);
    std::vector<std::string> args = {STRATA_SERVER_BINARY, "--data-dir", (dir_ / ("data-" + id_)).string(),
                                     "--port", std::to_string(port), "--port-file", port_file.string(),
                                     "--metrics-port", "0"};
    // Two workers unless the test says otherwise.
    if (std::find(extra.begin(), extra.end(), "--workers") == extra.end()) {
      args.insert(args.end(), {"--workers", "2"});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = SpawnWithLog(args, log_.string());
    if (pid_ < 0) return IOError("cannot start {}", STRATA_SERVER_BINARY);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < until) {
      if (auto code = WaitExit(0)) {
        return IOError("strata-server {} exited with {} at start; its log:\n{}", id_, *code, Log());
      }
      std::ifstream in(port_file);
      unsigned p = 0;
      if (in >> p && p > 0) {
        port_ = static_cast<uint16_t>(p);
        return Status::Ok();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return IOError("strata-server {} did not listen within 30 s; its log:\n{}", id_, Log());
  }

  std::filesystem::path dir_;
  std::string id_;
  std::filesystem::path log_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::optional<int> exit_code_;
};

// A fresh temporary directory, removed (that directory only) at the end.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "strata_cluster_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace strata::cluster::testing
