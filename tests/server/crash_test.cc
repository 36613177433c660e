// Crash test of the whole server: the `strata-server` binary (durability "sync")
// takes upsert batches over TCP and is killed with SIGKILL at a random moment,
// several times; after each restart every batch it acknowledged must be there,
// each record with its exact vector. The last round stops it with SIGTERM and
// expects a clean exit.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/server/test_client.h"

extern char** environ;

namespace strata::server {
namespace {

namespace fs = std::filesystem;
using protocol::Op;
using testing::AsError;
using testing::TestClient;

constexpr uint32_t kDim = 8;
constexpr size_t kBatch = 20;
constexpr int kRounds = 5;

std::vector<float> Vec(VectorId id) {
  std::vector<float> v(kDim);
  for (uint32_t j = 0; j < kDim; ++j) v[j] = float(id) * 0.5f + float(j) * 0.25f - 3.0f;
  return v;
}

class ServerProcess {
 public:
  ServerProcess(const fs::path& config, const fs::path& port_file, const fs::path& log) {
    std::error_code ec;
    fs::remove(port_file, ec);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
    const std::string c = config.string(), p = port_file.string();
    char* argv[] = {const_cast<char*>(STRATA_SERVER_BINARY),
                    const_cast<char*>("--config"),
                    const_cast<char*>(c.c_str()),
                    const_cast<char*>("--port-file"),
                    const_cast<char*>(p.c_str()),
                    nullptr};
    EXPECT_EQ(posix_spawn(&pid_, STRATA_SERVER_BINARY, &fa, nullptr, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    // Wait for the port file (written atomically once the server listens).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      std::ifstream in(port_file);
      int port = 0;
      if (in >> port && port > 0) {
        port_ = uint16_t(port);
        return;
      }
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        ADD_FAILURE() << "strata-server exited during start-up (see " << log << ")";
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "strata-server did not write " << port_file;
  }

  ~ServerProcess() {
    if (pid_ > 0) Kill(SIGKILL);
  }

  uint16_t port() const { return port_; }

  // Sends `signal` and waits for the process; returns its wait status.
  int Kill(int signal) {
    int status = 0;
    if (pid_ <= 0) return -1;
    ::kill(pid_, signal);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

std::unique_ptr<TestClient> Hello(uint16_t port) {
  auto c = TestClient::Connect(port);
  if (!c) return nullptr;
  auto f = c->Call({Op::kHello, protocol::HelloRequest{"crash-test", ""}});
  if (!f || AsError(f)) return nullptr;
  return c;
}

// Every acknowledged id is present with its exact vector.
void VerifyAcknowledged(TestClient& c, VectorId acknowledged_end) {
  for (VectorId first = 1; first < acknowledged_end; first += 500) {
    std::vector<VectorId> ids;
    for (VectorId id = first; id < std::min<VectorId>(first + 500, acknowledged_end); ++id)
      ids.push_back(id);
    auto f = c.Call({Op::kGet, protocol::GetRequest{"crash", ids}}, 9, 30000);
    ASSERT_TRUE(f.has_value()) << c.last_error();
    ASSERT_EQ(AsError(f), nullptr) << AsError(f)->message;
    const auto& reply = std::get<protocol::GetReply>(f->response.body);
    ASSERT_EQ(reply.records.size(), ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      ASSERT_TRUE(reply.records[i].has_value()) << "acknowledged id " << ids[i] << " is missing";
      EXPECT_EQ(reply.records[i]->vector, Vec(ids[i])) << "id " << ids[i];
    }
  }
}

TEST(ServerCrash, AcknowledgedUpsertsSurviveSigkill) {
  std::string tmpl = (fs::temp_directory_path() / "strata-server-crash-XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const fs::path dir = tmpl;
  const fs::path config = dir / "strata.toml";
  const fs::path port_file = dir / "port";
  const fs::path log = dir / "server.log";
  {
    std::ofstream out(config);
    out << "[server]\nport = 0\nmetrics_port = 0\nworker_threads = 2\nlog_level = \"warn\"\n"
        << "data_dir = \"" << (dir / "data").string() << "\"\n"
        << "[engine]\ndurability = \"sync\"\nbackground_compaction = false\n";
  }
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed) + ", log " + log.string());
  std::mt19937_64 rng(seed);

  VectorId next_id = 1;  // ids below it were acknowledged
  for (int round = 0; round < kRounds; ++round) {
    ServerProcess server(config, port_file, log);
    ASSERT_GT(server.port(), 0);
    auto c = Hello(server.port());
    ASSERT_NE(c, nullptr);
    if (round == 0) {
      CollectionSpec spec;
      spec.name = "crash";
      spec.dim = kDim;
      auto f = c->Call({Op::kCreateCollection, protocol::CreateCollectionRequest{spec}});
      ASSERT_TRUE(f.has_value() && !AsError(f));
    } else {
      VerifyAcknowledged(*c, next_id);
      if (HasFatalFailure() || HasFailure()) return;
    }
    // Kill at a random moment while batches are being written and acknowledged.
    const int kill_after_ms = 50 + int(rng() % 400);
    std::thread killer([&server, kill_after_ms] {
      std::this_thread::sleep_for(std::chrono::milliseconds(kill_after_ms));
      server.Kill(SIGKILL);
    });
    uint64_t request_id = 100;
    for (;;) {
      std::vector<Record> records;
      for (size_t i = 0; i < kBatch; ++i) records.push_back({next_id + i, Vec(next_id + i), {}});
      auto f = c->Call({Op::kUpsert, protocol::UpsertRequest{"crash", kDim, std::move(records)}},
                       ++request_id, 30000);
      if (!f) break;  // killed
      const auto* w = std::get_if<protocol::WriteReply>(&f->response.body);
      ASSERT_NE(w, nullptr) << (AsError(f) ? AsError(f)->message : "unexpected reply");
      ASSERT_EQ(w->applied, kBatch);
      next_id += kBatch;  // acknowledged: must survive
    }
    killer.join();
  }

  // A last restart: everything acknowledged is there; then a clean stop on SIGTERM.
  ServerProcess server(config, port_file, log);
  ASSERT_GT(server.port(), 0);
  auto c = Hello(server.port());
  ASSERT_NE(c, nullptr);
  VerifyAcknowledged(*c, next_id);
  EXPECT_GT(next_id, VectorId{1}) << "no batch was acknowledged before any kill";
  c.reset();
  const int status = server.Kill(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  RecordProperty("acknowledged_records", std::to_string(next_id - 1));

  if (!HasFailure()) {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
}

}  // namespace
}  // namespace strata::server
