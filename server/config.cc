#include "server/config.h"

#include <fmt/core.h>
#include <toml++/toml.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <thread>

#include "core/byte_size.h"
#include "engine/background_priority.h"
#include "protocol/protocol.h"

namespace strata::server {

namespace {

std::string_view NodeTypeName(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

// Names one key of one file, with the line where it appears: "strata.toml:12: server.port".
class KeyContext {
 public:
  KeyContext(std::string_view source, std::string key, const toml::node& node)
      : source_(source), key_(std::move(key)), line_(node.source().begin.line) {}

  template <typename... Args>
  Status Fail(fmt::format_string<Args...> format, Args&&... args) const {
    return InvalidArgument("{}:{}: {}: {}", source_, line_, key_,
                           fmt::format(format, std::forward<Args>(args)...));
  }

 private:
  std::string_view source_;
  std::string key_;
  uint32_t line_;
};

template <typename T>
Status ReadInteger(const toml::node& node, const KeyContext& ctx, T& out) {
  const auto* v = node.as_integer();
  if (v == nullptr) return ctx.Fail("expected an integer, got {}", NodeTypeName(node));
  const int64_t x = v->get();
  if (x < 0 || uint64_t(x) > uint64_t(std::numeric_limits<T>::max())) {
    return ctx.Fail("{} is out of range 0..{}", x, uint64_t(std::numeric_limits<T>::max()));
  }
  out = T(x);
  return Status::Ok();
}

// A size in bytes: an integer, or a string in the one size syntax of every Strata program
// (core/byte_size.h: "64M", "256MiB", "1G").
template <typename T>
Status ReadBytes(const toml::node& node, const KeyContext& ctx, T& out) {
  if (node.as_integer() != nullptr) return ReadInteger(node, ctx, out);
  const auto* s = node.as_string();
  if (s == nullptr) return ctx.Fail("expected a byte size (an integer, or a string such as \"64M\"), got {}",
                                    NodeTypeName(node));
  auto bytes = ParseByteSize(s->get());
  if (!bytes) return ctx.Fail("{}", bytes.error().message());
  if (*bytes > uint64_t(std::numeric_limits<T>::max())) {
    return ctx.Fail("{} is out of range 0..{}", *bytes, uint64_t(std::numeric_limits<T>::max()));
  }
  out = T(*bytes);
  return Status::Ok();
}

// Seconds: an integer or a float (so that tests can use fractions of a second).
Status ReadSeconds(const toml::node& node, const KeyContext& ctx, double& out) {
  double x;
  if (const auto* i = node.as_integer()) {
    x = double(i->get());
  } else if (const auto* f = node.as_floating_point()) {
    x = f->get();
  } else {
    return ctx.Fail("expected a number of seconds, got {}", NodeTypeName(node));
  }
  if (!std::isfinite(x) || x <= 0) return ctx.Fail("{} must be a positive number of seconds", x);
  out = x;
  return Status::Ok();
}

Status ReadString(const toml::node& node, const KeyContext& ctx, std::string& out) {
  const auto* v = node.as_string();
  if (v == nullptr) return ctx.Fail("expected a string, got {}", NodeTypeName(node));
  out = v->get();
  return Status::Ok();
}

Status ReadBool(const toml::node& node, const KeyContext& ctx, bool& out) {
  const auto* v = node.as_boolean();
  if (v == nullptr) return ctx.Fail("expected a boolean, got {}", NodeTypeName(node));
  out = v->get();
  return Status::Ok();
}

using Setter = std::function<Status(const toml::node&, const KeyContext&, ServerConfig&)>;

template <typename T>
Setter Integer(T ServerConfig::*member) {
  return [member](const toml::node& n, const KeyContext& ctx, ServerConfig& c) {
    return ReadInteger(n, ctx, c.*member);
  };
}
template <typename T>
Setter Bytes(T ServerConfig::*member) {
  return [member](const toml::node& n, const KeyContext& ctx, ServerConfig& c) {
    return ReadBytes(n, ctx, c.*member);
  };
}
Setter Seconds(double ServerConfig::*member) {
  return [member](const toml::node& n, const KeyContext& ctx, ServerConfig& c) {
    return ReadSeconds(n, ctx, c.*member);
  };
}
Setter String(std::string ServerConfig::*member) {
  return [member](const toml::node& n, const KeyContext& ctx, ServerConfig& c) {
    return ReadString(n, ctx, c.*member);
  };
}
Setter Bool(bool ServerConfig::*member) {
  return [member](const toml::node& n, const KeyContext& ctx, ServerConfig& c) {
    return ReadBool(n, ctx, c.*member);
  };
}

const std::map<std::string, std::map<std::string, Setter>>& Schema() {
  static const auto* schema = new std::map<std::string, std::map<std::string, Setter>>{
      {"server",
       {
           {"listen", String(&ServerConfig::listen)},
           {"port", Integer(&ServerConfig::port)},
           {"metrics_port", Integer(&ServerConfig::metrics_port)},
           {"resp_port", Integer(&ServerConfig::resp_port)},
           {"resp_allow_flushall", Bool(&ServerConfig::resp_allow_flushall)},
           {"data_dir", String(&ServerConfig::data_dir)},
           {"snapshot_dir", String(&ServerConfig::snapshot_dir)},
           {"worker_threads", Integer(&ServerConfig::worker_threads)},
           {"io_threads", Integer(&ServerConfig::io_threads)},
           {"inline_reads", Bool(&ServerConfig::inline_reads)},
           {"io_spin_us", Integer(&ServerConfig::io_spin_us)},
           {"max_connections", Integer(&ServerConfig::max_connections)},
           {"max_frame_bytes", Bytes(&ServerConfig::max_frame_bytes)},
           {"max_batch", Integer(&ServerConfig::max_batch)},
           {"max_k", Integer(&ServerConfig::max_k)},
           {"queue_limit", Integer(&ServerConfig::queue_limit)},
           {"max_inflight_bytes", Bytes(&ServerConfig::max_inflight_bytes)},
           {"max_pipeline", Integer(&ServerConfig::max_pipeline)},
           {"max_reply_bytes", Bytes(&ServerConfig::max_reply_bytes)},
           {"max_connection_reply_bytes", Bytes(&ServerConfig::max_connection_reply_bytes)},
           {"min_write_bytes_per_s", Integer(&ServerConfig::min_write_bytes_per_s)},
           {"idle_timeout_s", Seconds(&ServerConfig::idle_timeout_s)},
           {"request_timeout_s", Seconds(&ServerConfig::request_timeout_s)},
           {"shutdown_timeout_s", Seconds(&ServerConfig::shutdown_timeout_s)},
           {"slow_request_ms", Integer(&ServerConfig::slow_request_ms)},
           {"hello_timeout_s", Seconds(&ServerConfig::hello_timeout_s)},
           {"max_unauthenticated_connections",
            Integer(&ServerConfig::max_unauthenticated_connections)},
           {"max_unauthenticated_per_address",
            Integer(&ServerConfig::max_unauthenticated_per_address)},
           {"max_failed_hellos", Integer(&ServerConfig::max_failed_hellos)},
           {"token", String(&ServerConfig::token)},
           {"log_level", String(&ServerConfig::log_level)},
       }},
      {"engine",
       {
           {"durability",
            [](const toml::node& n, const KeyContext& ctx, ServerConfig& c) -> Status {
              std::string name;
              STRATA_RETURN_IF_ERROR(ReadString(n, ctx, name));
              auto d = ParseDurability(name);
              if (!d) return ctx.Fail("{}", d.error().message());
              c.durability = *d;
              return Status::Ok();
            }},
           {"sync_interval_ms", Integer(&ServerConfig::sync_interval_ms)},
           {"background_compaction", Bool(&ServerConfig::background_compaction)},
           {"background_idle", Bool(&ServerConfig::background_idle)},
           {"background_cpus", String(&ServerConfig::background_cpus)},
           {"memory_ef_construction", Integer(&ServerConfig::memory_ef_construction)},
       }},
  };
  return *schema;
}

constexpr std::string_view kLogLevels[] = {"trace", "debug",    "info", "warn",
                                           "error", "critical", "off"};

}  // namespace

std::string_view DurabilityName(Durability d) {
  switch (d) {
    case Durability::kSync:
      return "sync";
    case Durability::kInterval:
      return "interval";
    case Durability::kNone:
      return "none";
  }
  return "unknown";
}

Result<Durability> ParseDurability(std::string_view name) {
  if (name == "sync") return Durability::kSync;
  if (name == "interval") return Durability::kInterval;
  if (name == "none") return Durability::kNone;
  return Error(InvalidArgument("durability '{}' is not one of sync, interval, none", name));
}

bool IsLoopbackAddress(std::string_view address) {
  if (address == "localhost") return true;
  boost::system::error_code ec;
  const auto a = boost::asio::ip::make_address(std::string(address), ec);
  if (ec) return false;
  if (a.is_loopback()) return true;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6()).is_loopback();
  }
  return false;
}

Result<ServerConfig> ParseServerConfig(std::string_view toml_text, std::string_view source) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    return Error(InvalidArgument("{}:{}:{}: not valid TOML: {}", source, e.source().begin.line,
                                 e.source().begin.column, e.description()));
  }
  ServerConfig config;
  const auto& schema = Schema();
  for (const auto& [table_key, table_node] : root) {
    const std::string table_name(table_key.str());
    auto table_schema = schema.find(table_name);
    if (table_schema == schema.end()) {
      return Error(
          InvalidArgument("{}:{}: unknown table or key '{}' (expected [server] or [engine])",
                          source, table_node.source().begin.line, table_name));
    }
    const toml::table* table = table_node.as_table();
    if (table == nullptr) {
      return Error(InvalidArgument("{}:{}: '{}' must be a table ([{}]), got {}", source,
                                   table_node.source().begin.line, table_name, table_name,
                                   NodeTypeName(table_node)));
    }
    for (const auto& [key, node] : *table) {
      const std::string qualified = fmt::format("{}.{}", table_name, key.str());
      auto setter = table_schema->second.find(std::string(key.str()));
      if (setter == table_schema->second.end()) {
        return Error(InvalidArgument("{}:{}: unknown key '{}'", source, node.source().begin.line,
                                     qualified));
      }
      STRATA_RETURN_IF_ERROR(setter->second(node, KeyContext(source, qualified, node), config));
    }
  }
  return config;
}

Result<ServerConfig> LoadServerConfig(const std::filesystem::path& toml_file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(toml_file, ec)) {
    return Error(IOError("{}: cannot read the configuration: {}", toml_file.string(),
                         ec ? ec.message() : "not a regular file"));
  }
  std::string text;
  {
    FILE* f = std::fopen(toml_file.c_str(), "rb");
    if (f == nullptr) {
      return Error(IOError("{}: cannot open the configuration: {}", toml_file.string(),
                           std::strerror(errno)));
    }
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    const bool failed = std::ferror(f) != 0;
    std::fclose(f);
    if (failed) return Error(IOError("{}: cannot read the configuration", toml_file.string()));
  }
  return ParseServerConfig(text, toml_file.string());
}

Status ValidateServerConfig(const ServerConfig& c) {
  boost::system::error_code ec;
  if (c.listen != "localhost") {
    boost::asio::ip::make_address(c.listen, ec);
    if (ec) {
      return InvalidArgument("server.listen: '{}' is not an IPv4 or IPv6 address", c.listen);
    }
  }
  if (!c.token.empty()) {
    // Checked wherever the token came from (the file, --token, STRATA_TOKEN): a short
    // token is guessable, and a blank one (" ") would satisfy the rule below by accident.
    if (c.token.size() < kMinTokenBytes) {
      return InvalidArgument(
          "server.token (or --token, STRATA_TOKEN): {} bytes; a token must be at least {} bytes "
          "(for example: openssl rand -hex 16)",
          c.token.size(), kMinTokenBytes);
    }
    auto blank = [](char ch) {
      return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
    };
    if (blank(c.token.front()) || blank(c.token.back())) {
      return InvalidArgument(
          "server.token (or --token, STRATA_TOKEN): starts or ends with a blank (space, tab or "
          "newline), which is easily lost on the client's side; remove it");
    }
  }
  if (c.token.empty() && !IsLoopbackAddress(c.listen)) {
    return InvalidArgument(
        "server.listen: '{}' is not a loopback address, and server.token is empty: set a token "
        "(clients must send it in their hello) or listen on 127.0.0.1",
        c.listen);
  }
  if (c.metrics_port != 0 && c.metrics_port == c.port) {
    return InvalidArgument("server.metrics_port: {} is also server.port", c.metrics_port);
  }
  if (c.resp_port != 0 && (c.resp_port == c.port || c.resp_port == c.metrics_port)) {
    return InvalidArgument("server.resp_port: {} is also server.{}", c.resp_port,
                           c.resp_port == c.port ? "port" : "metrics_port");
  }
  if (c.data_dir.empty()) return InvalidArgument("server.data_dir: must not be empty");
  if (!c.snapshot_dir.empty()) {
    // A snapshot inside the data directory would be taken for the engine's own files (the
    // engine refuses such a destination too; this says so at start-up).
    std::error_code fs_ec;
    const auto resolve = [&fs_ec](const std::string& p) {
      auto r = std::filesystem::weakly_canonical(std::filesystem::absolute(p), fs_ec);
      return (fs_ec ? std::filesystem::absolute(p).lexically_normal() : r).string() + "/";
    };
    if (resolve(c.snapshot_dir).starts_with(resolve(c.data_dir))) {
      return InvalidArgument(
          "server.snapshot_dir: '{}' is server.data_dir '{}' or inside it; give a directory "
          "outside the data directory (e.g. beside it)",
          c.snapshot_dir, c.data_dir);
    }
  }
  if (c.worker_threads > 1024) {
    return InvalidArgument("server.worker_threads: {} is over 1024", c.worker_threads);
  }
  if (c.io_threads > 256) {
    return InvalidArgument("server.io_threads: {} must be in 0..256 (0: one per core)", c.io_threads);
  }
  if (c.io_spin_us > 10000) {
    return InvalidArgument("server.io_spin_us: {} must be in 0..10000 (microseconds)", c.io_spin_us);
  }
  if (c.max_connections < 1) return InvalidArgument("server.max_connections: must be at least 1");
  if (c.max_frame_bytes < 1024 || c.max_frame_bytes > protocol::kAbsoluteMaxPayload) {
    return InvalidArgument("server.max_frame_bytes: {} must be in 1024..{}", c.max_frame_bytes,
                           protocol::kAbsoluteMaxPayload);
  }
  if (c.max_batch < 1 || c.max_batch > 1000000) {
    return InvalidArgument("server.max_batch: {} must be in 1..1000000", c.max_batch);
  }
  if (c.max_k < 1 || c.max_k > kMaxSearchK) {
    return InvalidArgument("server.max_k: {} must be in 1..{} (the engine's limit)", c.max_k,
                           kMaxSearchK);
  }
  // Bounded so that worker_threads (<= 1024) + queue_limit cannot wrap a uint32_t.
  if (c.queue_limit > 1000000) {
    return InvalidArgument("server.queue_limit: {} must be in 0..1000000", c.queue_limit);
  }
  if (c.max_inflight_bytes < c.max_frame_bytes) {
    return InvalidArgument(
        "server.max_inflight_bytes: {} must be at least server.max_frame_bytes ({}), so that "
        "a request of the largest size can be admitted",
        c.max_inflight_bytes, c.max_frame_bytes);
  }
  if (c.max_pipeline < 1) return InvalidArgument("server.max_pipeline: must be at least 1");
  if (c.max_reply_bytes < c.max_frame_bytes) {
    return InvalidArgument(
        "server.max_reply_bytes: {} must be at least server.max_frame_bytes ({}), so that a "
        "request whose reply may take the largest frame can be admitted",
        c.max_reply_bytes, c.max_frame_bytes);
  }
  if (c.max_connection_reply_bytes < 1 || c.max_connection_reply_bytes > c.max_reply_bytes) {
    return InvalidArgument(
        "server.max_connection_reply_bytes: {} must be in 1..server.max_reply_bytes ({})",
        c.max_connection_reply_bytes, c.max_reply_bytes);
  }
  // Not tied to max_connections (a smaller max_connections caps them in effect), so that
  // lowering max_connections alone stays valid.
  if (c.max_unauthenticated_connections < 1) {
    return InvalidArgument("server.max_unauthenticated_connections: must be at least 1");
  }
  if (c.max_unauthenticated_per_address < 1) {
    return InvalidArgument("server.max_unauthenticated_per_address: must be at least 1");
  }
  if (c.max_failed_hellos < 1) {
    return InvalidArgument("server.max_failed_hellos: must be at least 1");
  }
  for (const auto& [name, value] :
       {std::pair<std::string_view, double>{"idle_timeout_s", c.idle_timeout_s},
        {"request_timeout_s", c.request_timeout_s},
        {"shutdown_timeout_s", c.shutdown_timeout_s},
        {"hello_timeout_s", c.hello_timeout_s}}) {
    if (!std::isfinite(value) || value < 0.001 || value > 1e6) {
      return InvalidArgument("server.{}: {} must be a number of seconds in 0.001..1e6", name,
                             value);
    }
  }
  if (std::find(std::begin(kLogLevels), std::end(kLogLevels), c.log_level) ==
      std::end(kLogLevels)) {
    return InvalidArgument(
        "server.log_level: '{}' is not one of trace, debug, info, warn, error, critical, off",
        c.log_level);
  }
  if (c.durability == Durability::kInterval && c.sync_interval_ms == 0) {
    return InvalidArgument(
        "engine.sync_interval_ms: must be at least 1 with durability \"interval\"");
  }
  if (auto cpus = engine::ParseCpuList(c.background_cpus); !cpus) {
    return InvalidArgument("engine.background_cpus: {}", cpus.error().message());
  }
  if (c.memory_ef_construction > 4096) {
    return InvalidArgument("engine.memory_ef_construction: {} must be in 0..4096 (0: each collection's "
                           "hnsw_ef_construction)",
                           c.memory_ef_construction);
  }
  return Status::Ok();
}

std::string DescribeServerConfig(const ServerConfig& c) {
  std::string out;
  auto line = [&out](std::string_view key, const auto& value) {
    out += fmt::format("{} = {}\n", key, value);
  };
  line("server.listen", fmt::format("\"{}\"", c.listen));
  line("server.port", c.port);
  line("server.metrics_port",
       c.metrics_port == 0 ? std::string("0 (off)") : fmt::format("{}", c.metrics_port));
  line("server.resp_port",
       c.resp_port == 0 ? std::string("0 (off)") : fmt::format("{}", c.resp_port));
  line("server.resp_allow_flushall", c.resp_allow_flushall);
  line("server.data_dir", fmt::format("\"{}\"", c.data_dir));
  line("server.snapshot_dir",
       c.snapshot_dir.empty() ? std::string("\"\" (snapshots off)") : fmt::format("\"{}\"", c.snapshot_dir));
  line("server.worker_threads", c.worker_threads == 0
                                    ? fmt::format("0 ({} cores)", EffectiveWorkerThreads(c))
                                    : fmt::format("{}", c.worker_threads));
  line("server.io_threads", c.io_threads == 0 ? fmt::format("0 ({} cores)", EffectiveIoThreads(c))
                                              : fmt::format("{}", c.io_threads));
  line("server.inline_reads", c.inline_reads);
  line("server.io_spin_us", c.io_spin_us == 0 ? std::string("0 (off)") : fmt::format("{}", c.io_spin_us));
  line("server.max_connections", c.max_connections);
  line("server.max_frame_bytes", c.max_frame_bytes);
  line("server.max_batch", c.max_batch);
  line("server.max_k", c.max_k);
  line("server.queue_limit", c.queue_limit);
  line("server.max_inflight_bytes", c.max_inflight_bytes);
  line("server.max_pipeline", c.max_pipeline);
  line("server.max_reply_bytes", c.max_reply_bytes);
  line("server.max_connection_reply_bytes", c.max_connection_reply_bytes);
  line("server.min_write_bytes_per_s",
       c.min_write_bytes_per_s == 0 ? std::string("0 (off)")
                                    : fmt::format("{}", c.min_write_bytes_per_s));
  line("server.idle_timeout_s", c.idle_timeout_s);
  line("server.request_timeout_s", c.request_timeout_s);
  line("server.shutdown_timeout_s", c.shutdown_timeout_s);
  line("server.slow_request_ms",
       c.slow_request_ms == 0 ? std::string("0 (off)") : fmt::format("{}", c.slow_request_ms));
  line("server.hello_timeout_s", c.hello_timeout_s);
  line("server.max_unauthenticated_connections", c.max_unauthenticated_connections);
  line("server.max_unauthenticated_per_address", c.max_unauthenticated_per_address);
  line("server.max_failed_hellos", c.max_failed_hellos);
  line("server.token", c.token.empty() ? std::string("(none)") : std::string("(set)"));
  line("server.log_level", fmt::format("\"{}\"", c.log_level));
  line("engine.durability", fmt::format("\"{}\"", DurabilityName(c.durability)));
  line("engine.sync_interval_ms", c.sync_interval_ms);
  line("engine.background_compaction", c.background_compaction);
  line("engine.background_idle", c.background_idle);
  {
    auto cpus = engine::ParseCpuList(c.background_cpus);
    const std::string list = cpus ? engine::FormatCpuList(*cpus) : std::string("?");
    line("engine.background_cpus", fmt::format("\"{}\" ({})", c.background_cpus,
                                               list.empty() ? std::string("any CPU") : "CPUs " + list));
  }
  line("engine.memory_ef_construction",
       c.memory_ef_construction == 0 ? std::string("0 (each collection's hnsw_ef_construction)")
                                     : fmt::format("{}", c.memory_ef_construction));
  return out;
}

EngineOptions EngineOptionsFor(const ServerConfig& c) {
  EngineOptions o;
  o.durability = c.durability;
  o.sync_interval_ms = c.sync_interval_ms;
  o.background_compaction = c.background_compaction;
  o.background_idle = c.background_idle;
  // ValidateServerConfig has checked the list; an unchecked bad one confines nothing.
  if (auto cpus = engine::ParseCpuList(c.background_cpus)) o.background_cpus = std::move(*cpus);
  o.memory_ef_construction = c.memory_ef_construction;
  // The server refuses larger batches itself (kTooLarge); the engine's own limit is
  // kept at least as large so that it never refuses what the server let through.
  o.max_batch_ops = std::max<size_t>(o.max_batch_ops, c.max_batch);
  return o;
}

uint32_t EffectiveIoThreads(const ServerConfig& c) {
  if (c.io_threads > 0) return c.io_threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

uint32_t EffectiveWorkerThreads(const ServerConfig& c) {
  if (c.worker_threads > 0) return c.worker_threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace strata::server
