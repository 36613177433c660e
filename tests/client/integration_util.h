#pragma once
// A real Strata server on an ephemeral loopback port over a temporary data directory, for the
// client's integration tests; and deterministic test vectors.
//
// Thread safety: the fixture is used from the test's thread; Connect() may be called from any.

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "client/client.h"
#include "engine/strata.h"
#include "server/server.h"
#include "tests/seeded_vector.h"

namespace strata::client::testing {

// Components in [-1, 1), a pure function of `seed` (splitmix64: tests/seeded_vector.h).
inline std::vector<float> VectorFor(uint64_t seed, uint32_t dim) {
  return test_vectors::SeededVector(seed, dim);
}

inline float L2(const std::vector<float>& a, const float* b) {
  float s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return s;
}

class ServerFixture : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(""); }

  // Stops the server (if any) and starts a new one over the same engine; `token` empty:
  // none required.
  void StartServer(const std::string& token) {
    if (server_) {
      server_->Shutdown();
      server_->Wait();
      server_.reset();
    }
    if (engine_) {
      server::ServerConfig config = Config();
      config.token = token;
      auto server = server::Server::Start(config, *engine_);
      ASSERT_TRUE(server.has_value()) << server.error().ToString();
      server_ = std::move(*server);
      return;
    }
    static std::atomic<int> counter{0};
    dir_ = std::filesystem::temp_directory_path() /
           ("strata_client_it_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(dir_);
    EngineOptions engine_options;
    // The tests check what the server answers, not what survives a crash: skip the fsyncs.
    engine_options.durability = Durability::kNone;
    engine_options.background_compaction = false;
    auto engine = Engine::Open(dir_, engine_options);
    ASSERT_TRUE(engine.has_value()) << engine.error().ToString();
    engine_ = std::move(*engine);
    server::ServerConfig config = Config();
    config.token = token;
    auto server = server::Server::Start(config, *engine_);
    ASSERT_TRUE(server.has_value()) << server.error().ToString();
    server_ = std::move(*server);
  }

  server::ServerConfig Config() const {
    server::ServerConfig config;
    config.listen = "127.0.0.1";
    config.port = 0;
    config.metrics_port = 0;
    config.data_dir = dir_.string();
    config.worker_threads = 4;
    config.log_level = "warn";
    return config;
  }

  void TearDown() override {
    if (server_) {
      server_->Shutdown();
      server_->Wait();
      server_.reset();
    }
    engine_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  uint16_t port() const { return server_->port(); }

  std::unique_ptr<Client> Connect() {
    auto client = Client::Connect("127.0.0.1", port(), {.io_timeout_ms = 30000});
    EXPECT_TRUE(client.has_value()) << client.error().ToString();
    return client ? std::move(*client) : nullptr;
  }

  std::filesystem::path dir_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<server::Server> server_;
};

}  // namespace strata::client::testing
