#include "server/config.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "server/serve.h"

namespace strata::server {
namespace {

Result<ServerConfig> Parse(const std::string& text) { return ParseServerConfig(text, "test.toml"); }

TEST(ServerConfig, ShippedFileEqualsTheDefaults) {
  auto c = LoadServerConfig(std::string(STRATA_SOURCE_DIR) + "/configs/strata.toml");
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(*c, ServerConfig{});
  EXPECT_TRUE(ValidateServerConfig(*c).ok());
}

TEST(ServerConfig, ShippedFileSetsEveryKey) {
  // Every key DescribeServerConfig lists (all of them) appears in the shipped file,
  // so that the file documents each one.
  auto text = [] {
    std::string path = std::string(STRATA_SOURCE_DIR) + "/configs/strata.toml";
    FILE* f = std::fopen(path.c_str(), "rb");
    std::string s;
    char buf[4096];
    size_t n;
    while (f && (n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    if (f) std::fclose(f);
    return s;
  }();
  const std::string described = DescribeServerConfig(ServerConfig{});
  size_t keys = 0;
  for (size_t pos = 0; pos < described.size();) {
    const size_t eol = described.find('\n', pos);
    const std::string line = described.substr(pos, eol - pos);
    pos = eol + 1;
    const std::string qualified = line.substr(0, line.find(' '));
    const std::string key = qualified.substr(qualified.find('.') + 1);
    EXPECT_NE(text.find("\n" + key + " = "), std::string::npos) << key;
    ++keys;
  }
  EXPECT_EQ(keys, 37u);
}

TEST(ServerConfig, RespPortIsReadAndMustDifferFromTheOthers) {
  auto c = Parse("[server]\nresp_port = 7422\nresp_allow_flushall = true\n");
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->resp_port, 7422);
  EXPECT_TRUE(c->resp_allow_flushall);
  EXPECT_TRUE(ValidateServerConfig(*c).ok());
  c->resp_port = c->port;
  const Status s = ValidateServerConfig(*c);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("server.resp_port"), std::string::npos) << s.message();
}

TEST(ServerConfig, ValuesAreRead) {
  auto c = Parse(R"(
[server]
listen = "::1"
port = 9000
metrics_port = 0
worker_threads = 3
idle_timeout_s = 0.25
request_timeout_s = 2
token = "abc"
log_level = "debug"
[engine]
durability = "interval"
sync_interval_ms = 5
background_compaction = false
background_idle = true
background_cpus = "0"
)");
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->listen, "::1");
  EXPECT_EQ(c->port, 9000);
  EXPECT_EQ(c->metrics_port, 0);
  EXPECT_EQ(c->worker_threads, 3u);
  EXPECT_DOUBLE_EQ(c->idle_timeout_s, 0.25);
  EXPECT_DOUBLE_EQ(c->request_timeout_s, 2);
  EXPECT_EQ(c->token, "abc");
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->durability, Durability::kInterval);
  EXPECT_EQ(c->sync_interval_ms, 5u);
  EXPECT_FALSE(c->background_compaction);
  EXPECT_TRUE(c->background_idle);
  EXPECT_EQ(c->background_cpus, "0");
  EXPECT_EQ(ServerConfig{}.background_cpus, "auto");  // the default leaves a core to searches
  EXPECT_EQ(c->max_batch, ServerConfig{}.max_batch);  // absent: the default
  auto bytes = Parse("[server]\nmax_inflight_bytes = 1073741824\n");
  ASSERT_TRUE(bytes.has_value()) << bytes.error().ToString();
  EXPECT_EQ(bytes->max_inflight_bytes, uint64_t{1} << 30);
}

TEST(ServerConfig, UnknownKeyIsAnErrorNamingItAndTheFile) {
  auto c = Parse("[server]\nprot = 1\n");
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message().find("server.prot"), std::string::npos) << c.error().message();
  EXPECT_NE(c.error().message().find("test.toml:2"), std::string::npos) << c.error().message();
}

TEST(ServerConfig, UnknownTableIsAnError) {
  auto c = Parse("[servre]\nport = 1\n");
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message().find("servre"), std::string::npos) << c.error().message();
  auto top = Parse("port = 1\n");
  ASSERT_FALSE(top.has_value());
  EXPECT_NE(top.error().message().find("port"), std::string::npos);
}

TEST(ServerConfig, WrongTypeIsAnErrorNamingTheKey) {
  for (const char* text : {"[server]\nport = \"7420\"\n", "[server]\nlisten = 1\n",
                           "[engine]\nbackground_compaction = 1\n",
                           "[server]\nidle_timeout_s = \"x\"\n", "server = 3\n"}) {
    auto c = Parse(text);
    ASSERT_FALSE(c.has_value()) << text;
    EXPECT_EQ(c.error().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(c.error().message().find("test.toml"), std::string::npos) << c.error().message();
  }
  auto c = Parse("[server]\nport = \"7420\"\n");
  EXPECT_NE(c.error().message().find("server.port"), std::string::npos) << c.error().message();
  EXPECT_NE(c.error().message().find("integer"), std::string::npos) << c.error().message();
}

// Byte limits take the size syntax of every Strata program (core/byte_size.h) as well as integers.
TEST(ServerConfig, ByteLimitsTakeSizeStrings) {
  auto c = Parse("[server]\nmax_frame_bytes = \"32M\"\nmax_inflight_bytes = \"1GiB\"\nmax_reply_bytes = 536870912\n");
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->max_frame_bytes, 32u << 20);
  EXPECT_EQ(c->max_inflight_bytes, uint64_t{1} << 30);
  EXPECT_EQ(c->max_reply_bytes, uint64_t{512} << 20);
  for (const char* bad : {"[server]\nmax_frame_bytes = \"12Q\"\n", "[server]\nmax_frame_bytes = \"20%\"\n",
                          "[server]\nmax_frame_bytes = \"8G\"\n", "[server]\nmax_frame_bytes = true\n"}) {
    auto e = Parse(bad);
    ASSERT_FALSE(e.has_value()) << bad;
    EXPECT_NE(e.error().message().find("server.max_frame_bytes"), std::string::npos) << e.error().message();
  }
}

TEST(ServerConfig, OutOfRangeValuesAreErrors) {
  auto port = Parse("[server]\nport = 70000\n");
  ASSERT_FALSE(port.has_value());
  EXPECT_NE(port.error().message().find("server.port"), std::string::npos);
  auto negative = Parse("[server]\nmax_batch = -1\n");
  ASSERT_FALSE(negative.has_value());
  EXPECT_NE(negative.error().message().find("server.max_batch"), std::string::npos);
  auto zero_timeout = Parse("[server]\nidle_timeout_s = 0\n");
  ASSERT_FALSE(zero_timeout.has_value());
  EXPECT_NE(zero_timeout.error().message().find("server.idle_timeout_s"), std::string::npos);
}

TEST(ServerConfig, BadDurabilityIsAnError) {
  auto c = Parse("[engine]\ndurability = \"always\"\n");
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message().find("engine.durability"), std::string::npos)
      << c.error().message();
  EXPECT_NE(c.error().message().find("always"), std::string::npos);
}

TEST(ServerConfig, SyntaxErrorNamesTheFile) {
  auto c = Parse("[server\nport = 1\n");
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message().find("test.toml:1"), std::string::npos) << c.error().message();
}

TEST(ServerConfig, MissingFileIsAnIOError) {
  auto c = LoadServerConfig("/nonexistent/strata.toml");
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), StatusCode::kIOError);
  EXPECT_NE(c.error().message().find("/nonexistent/strata.toml"), std::string::npos);
}

TEST(ServerConfig, NonLoopbackListenNeedsAToken) {
  ServerConfig c;
  c.listen = "0.0.0.0";
  Status s = ValidateServerConfig(c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("server.listen"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("token"), std::string::npos) << s.message();
  c.token = "0123456789abcdef";
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  for (const char* loopback : {"127.0.0.1", "127.1.2.3", "::1", "localhost", "::ffff:127.0.0.1"}) {
    ServerConfig l;
    l.listen = loopback;
    EXPECT_TRUE(ValidateServerConfig(l).ok()) << loopback;
  }
  ServerConfig v6;
  v6.listen = "::";
  EXPECT_FALSE(ValidateServerConfig(v6).ok());
}

TEST(ServerConfig, ValidationNamesTheKey) {
  auto check = [](auto mutate, const char* key) {
    ServerConfig c;
    mutate(c);
    Status s = ValidateServerConfig(c);
    EXPECT_FALSE(s.ok()) << key;
    EXPECT_NE(s.message().find(key), std::string::npos) << s.message();
  };
  check([](ServerConfig& c) { c.listen = "not an address"; }, "server.listen");
  check([](ServerConfig& c) { c.max_k = 0; }, "server.max_k");
  check([](ServerConfig& c) { c.max_k = 20000; }, "server.max_k");
  check([](ServerConfig& c) { c.max_batch = 0; }, "server.max_batch");
  check([](ServerConfig& c) { c.io_threads = 257; }, "server.io_threads");
  check([](ServerConfig& c) { c.io_spin_us = 10001; }, "server.io_spin_us");
  check([](ServerConfig& c) { c.memory_ef_construction = 5000; }, "engine.memory_ef_construction");
  check([](ServerConfig& c) { c.background_cpus = "one"; }, "engine.background_cpus");
  {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof(set), &set) == 0 && !CPU_ISSET(CPU_SETSIZE - 1, &set)) {
      check([](ServerConfig& c) { c.background_cpus = std::to_string(CPU_SETSIZE - 1); }, "engine.background_cpus");
    }
  }
  check([](ServerConfig& c) { c.max_connections = 0; }, "server.max_connections");
  check([](ServerConfig& c) { c.max_pipeline = 0; }, "server.max_pipeline");
  check([](ServerConfig& c) { c.max_frame_bytes = 10; }, "server.max_frame_bytes");
  check([](ServerConfig& c) { c.log_level = "loud"; }, "server.log_level");
  check([](ServerConfig& c) { c.metrics_port = c.port; }, "server.metrics_port");
  check([](ServerConfig& c) { c.data_dir = ""; }, "server.data_dir");
  // worker_threads + queue_limit must not wrap a uint32_t.
  check([](ServerConfig& c) { c.queue_limit = 1000001; }, "server.queue_limit");
  check([](ServerConfig& c) { c.queue_limit = 0xffffffffu; }, "server.queue_limit");
  // A request of the largest frame size must be admissible.
  check([](ServerConfig& c) { c.max_inflight_bytes = c.max_frame_bytes - 1; },
        "server.max_inflight_bytes");
  // Timeouts under a millisecond (a positive double can be as small as 5e-324).
  check([](ServerConfig& c) { c.idle_timeout_s = 0.0005; }, "server.idle_timeout_s");
  check([](ServerConfig& c) { c.request_timeout_s = 1e-300; }, "server.request_timeout_s");
  check([](ServerConfig& c) { c.shutdown_timeout_s = 0.0009; }, "server.shutdown_timeout_s");
  check([](ServerConfig& c) { c.hello_timeout_s = 0.0005; }, "server.hello_timeout_s");
  // A reply of the largest frame size must be admissible.
  check([](ServerConfig& c) { c.max_reply_bytes = c.max_frame_bytes - 1; },
        "server.max_reply_bytes");
  check([](ServerConfig& c) { c.max_connection_reply_bytes = 0; },
        "server.max_connection_reply_bytes");
  check([](ServerConfig& c) { c.max_connection_reply_bytes = c.max_reply_bytes + 1; },
        "server.max_connection_reply_bytes");
  check([](ServerConfig& c) { c.max_unauthenticated_connections = 0; },
        "server.max_unauthenticated_connections");
  check([](ServerConfig& c) { c.max_unauthenticated_per_address = 0; },
        "server.max_unauthenticated_per_address");
  check([](ServerConfig& c) { c.max_failed_hellos = 0; }, "server.max_failed_hellos");
  {
    ServerConfig c;
    c.queue_limit = 1000000;
    c.request_timeout_s = 0.001;
    c.max_inflight_bytes = c.max_frame_bytes;
    EXPECT_TRUE(ValidateServerConfig(c).ok());
  }
  check(
      [](ServerConfig& c) {
        c.durability = Durability::kInterval;
        c.sync_interval_ms = 0;
      },
      "engine.sync_interval_ms");
}

TEST(ServerConfig, TokensAreLongAndHaveNoBlanksAround) {
  ServerConfig c;
  for (const char* bad : {" ", "s3cret", "0123456789abcde", " 0123456789abcdef",
                          "0123456789abcdef ", "0123456789abcdef\n", "\t0123456789abcdef"}) {
    c.token = bad;
    Status s = ValidateServerConfig(c);
    EXPECT_FALSE(s.ok()) << "'" << bad << "'";
    EXPECT_NE(s.message().find("server.token"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("--token"), std::string::npos) << s.message();
  }
  c.token = "0123456789abcdef";  // 16 bytes
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  c.token = "a token with inner spaces";
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  // The issue's case: a blank token on a non-loopback address no longer passes.
  c.listen = "0.0.0.0";
  c.token = " ";
  EXPECT_FALSE(ValidateServerConfig(c).ok());
}

TEST(ServerConfig, DescribeListsEveryKeyAndHidesTheToken) {
  ServerConfig c;
  c.token = "very-secret-value";
  const std::string d = DescribeServerConfig(c);
  EXPECT_EQ(d.find("very-secret-value"), std::string::npos);
  for (const char* key : {"server.listen",
                          "server.port",
                          "server.metrics_port",
                          "server.data_dir",
                          "server.snapshot_dir",
                          "server.worker_threads",
                          "server.io_threads",
                          "server.inline_reads",
                          "server.io_spin_us",
                          "server.max_connections",
                          "server.max_frame_bytes",
                          "server.max_batch",
                          "server.max_k",
                          "server.queue_limit",
                          "server.max_inflight_bytes",
                          "server.max_pipeline",
                          "server.max_reply_bytes",
                          "server.max_connection_reply_bytes",
                          "server.min_write_bytes_per_s",
                          "server.hello_timeout_s",
                          "server.max_unauthenticated_connections",
                          "server.max_unauthenticated_per_address",
                          "server.max_failed_hellos",
                          "server.idle_timeout_s",
                          "server.request_timeout_s",
                          "server.shutdown_timeout_s",
                          "server.token",
                          "server.log_level",
                          "engine.durability",
                          "engine.sync_interval_ms",
                          "engine.background_compaction",
                          "engine.background_idle",
                          "engine.background_cpus"}) {
    EXPECT_NE(d.find(std::string(key) + " = "), std::string::npos) << key;
  }
}

TEST(ServerConfig, EngineOptionsFollowTheConfig) {
  ServerConfig c;
  c.durability = Durability::kNone;
  c.sync_interval_ms = 7;
  c.background_compaction = false;
  c.background_idle = true;
  int lowest = 0;  // the lowest CPU these tests may run on (a cpuset need not hold CPU 0)
  {
    cpu_set_t set;
    CPU_ZERO(&set);
    ASSERT_EQ(::sched_getaffinity(0, sizeof(set), &set), 0);
    while (!CPU_ISSET(lowest, &set)) ++lowest;
  }
  c.background_cpus = std::to_string(lowest);
  c.max_batch = 500000;
  const EngineOptions o = EngineOptionsFor(c);
  EXPECT_TRUE(o.background_idle);
  EXPECT_EQ(o.background_cpus, std::vector<int>{lowest});
  EXPECT_EQ(o.durability, Durability::kNone);
  EXPECT_EQ(o.sync_interval_ms, 7u);
  EXPECT_FALSE(o.background_compaction);
  EXPECT_GE(o.max_batch_ops, 500000u);
}

// Parses `argv` with the serve flags; the config file is the shipped one.
Result<ServerConfig> ResolveWith(std::vector<std::string> argv) {
  CLI::App app{"test"};
  ServeArgs args;
  AddServeFlags(app, args);
  std::vector<const char*> raw{"strata-server"};
  for (const auto& a : argv) raw.push_back(a.c_str());
  try {
    app.parse(int(raw.size()), raw.data());
  } catch (const CLI::ParseError& e) {
    return Error(InvalidArgument("flags: {}", e.what()));
  }
  return ResolveServeConfig(args);
}

TEST(ServeFlags, FlagsOverrideTheFile) {
  const std::string file = std::string(STRATA_SOURCE_DIR) + "/configs/strata.toml";
  auto c = ResolveWith({"--config", file, "--listen", "0.0.0.0", "--port", "9001", "--metrics-port",
                        "0", "--data-dir", "/tmp/x", "--workers", "3", "--token", "t0k-0123456789abcdef",
                        "--log-level", "warn"});
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->listen, "0.0.0.0");
  EXPECT_EQ(c->port, 9001);
  EXPECT_EQ(c->metrics_port, 0);
  EXPECT_EQ(c->data_dir, "/tmp/x");
  EXPECT_EQ(c->worker_threads, 3u);
  EXPECT_EQ(c->token, "t0k-0123456789abcdef");
  EXPECT_EQ(c->log_level, "warn");
  EXPECT_EQ(c->max_batch, ServerConfig{}.max_batch);  // not overridden: the file's
}

TEST(ServeFlags, WithoutFlagsTheFileWins) {
  auto c = ResolveWith({"--config", std::string(STRATA_SOURCE_DIR) + "/configs/strata.toml"});
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(*c, ServerConfig{});
}

TEST(ServerConfig, SnapshotDirIsReadAndMustBeOutsideTheDataDir) {
  EXPECT_EQ(ServerConfig{}.snapshot_dir, "");  // snapshots are off unless asked for
  auto c = Parse("[server]\ndata_dir = \"/srv/strata\"\nsnapshot_dir = \"/srv/strata-snapshots\"\n");
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->snapshot_dir, "/srv/strata-snapshots");
  EXPECT_TRUE(ValidateServerConfig(*c).ok());  // a sibling whose name starts like the data dir's
  for (const char* inside : {"/srv/strata", "/srv/strata/", "/srv/strata/snaps", "/srv/x/../strata/s"}) {
    c->snapshot_dir = inside;
    const Status s = ValidateServerConfig(*c);
    EXPECT_FALSE(s.ok()) << inside;
    EXPECT_NE(s.message().find("server.snapshot_dir"), std::string::npos) << s.message();
  }
  EXPECT_FALSE(Parse("[server]\nsnapshot_dir = 3\n").has_value());
}

TEST(ServeFlags, SnapshotDirFlagOverridesTheFile) {
  auto c = ResolveWith({"--data-dir", "/tmp/d", "--snapshot-dir", "/tmp/d-snaps"});
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->snapshot_dir, "/tmp/d-snaps");
  auto inside = ResolveWith({"--data-dir", "/tmp/d", "--snapshot-dir", "/tmp/d/snaps"});
  ASSERT_FALSE(inside.has_value());
  EXPECT_NE(inside.error().message().find("server.snapshot_dir"), std::string::npos);
}

TEST(ServeFlags, OverridesAreValidated) {
  auto c = ResolveWith({"--listen", "0.0.0.0"});  // no token
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message().find("server.listen"), std::string::npos);
  // A token given on the command line is checked like one in the file.
  for (const char* token : {" ", "t0k"}) {
    auto t = ResolveWith({"--token", token});
    ASSERT_FALSE(t.has_value()) << token;
    EXPECT_NE(t.error().message().find("server.token"), std::string::npos);
  }
  auto level = ResolveWith({"--log-level", "chatty"});
  ASSERT_FALSE(level.has_value());
  EXPECT_NE(level.error().message().find("server.log_level"), std::string::npos);
}

}  // namespace
}  // namespace strata::server
