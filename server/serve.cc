#include "server/serve.h"

#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "engine/strata.h"
#include "server/log.h"
#include "server/server.h"

#ifndef STRATA_VERSION
#define STRATA_VERSION "unknown"
#endif

namespace strata::server {

namespace asio = boost::asio;

void AddServeFlags(CLI::App& app, ServeArgs& args) {
  app.add_option("-c,--config", args.config_path,
                 "Server configuration (TOML; see configs/strata.toml). Without it: the defaults")
      ->check(CLI::ExistingFile);
  app.add_option_function<std::string>(
      "--listen", [&args](const std::string& v) { args.listen = v; },
      "Address to listen on (overrides server.listen)");
  app.add_option_function<uint16_t>(
      "-p,--port", [&args](const uint16_t& v) { args.port = v; },
      "TCP port; 0: an ephemeral one (overrides server.port)");
  app.add_option_function<uint16_t>(
      "--metrics-port", [&args](const uint16_t& v) { args.metrics_port = v; },
      "HTTP port of GET /metrics; 0: off (overrides server.metrics_port)");
  app.add_option_function<uint16_t>(
      "--resp-port", [&args](const uint16_t& v) { args.resp_port = v; },
      "RESP (Redis protocol) port, e.g. 7422; 0: off, the default (overrides server.resp_port)");
  app.add_option_function<std::string>(
      "-d,--data-dir", [&args](const std::string& v) { args.data_dir = v; },
      "Data directory (overrides server.data_dir)");
  app.add_option_function<std::string>(
      "--snapshot-dir", [&args](const std::string& v) { args.snapshot_dir = v; },
      "Allow the snapshot request: each snapshot is a new folder of DIR, created when missing "
      "(outside the data directory; overrides server.snapshot_dir; default: snapshots off)");
  app.add_option_function<uint32_t>(
      "--workers", [&args](const uint32_t& v) { args.workers = v; },
      "Worker threads; 0: one per core (overrides server.worker_threads)");
  app.add_option_function<std::string>(
         "--token", [&args](const std::string& v) { args.token = v; },
         "Shared secret clients send in their hello (overrides server.token)")
      ->envname("STRATA_TOKEN");
  app.add_option_function<std::string>(
      "--log-level", [&args](const std::string& v) { args.log_level = v; },
      "trace, debug, info, warn, error, critical or off (overrides server.log_level)");
  app.add_option("--port-file", args.port_file,
                 "Write the bound port to this file once listening (for port 0)");
}

Result<ServerConfig> ResolveServeConfig(const ServeArgs& args) {
  ServerConfig config;
  if (!args.config_path.empty()) {
    STRATA_ASSIGN_OR_RETURN(config, LoadServerConfig(args.config_path));
  }
  if (args.listen) config.listen = *args.listen;
  if (args.port) config.port = *args.port;
  if (args.metrics_port) config.metrics_port = *args.metrics_port;
  if (args.resp_port) config.resp_port = *args.resp_port;
  if (args.data_dir) config.data_dir = *args.data_dir;
  if (args.snapshot_dir) config.snapshot_dir = *args.snapshot_dir;
  if (args.workers) config.worker_threads = *args.workers;
  if (args.token) config.token = *args.token;
  if (args.log_level) config.log_level = *args.log_level;
  STRATA_RETURN_IF_ERROR(ValidateServerConfig(config));
  return config;
}

namespace {

Status WritePortFile(const std::string& path, uint16_t port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n";
    out.flush();
    if (!out) return IOError("{}: cannot write the port file", tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return IOError("{}: cannot rename to {}: {}", tmp, path, ec.message());
  return Status::Ok();
}

void FlushLogs() {
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->flush(); });
}

}  // namespace

int RunServe(const ServeArgs& args, const ServeExtensionFactory& extension) {
  auto config = ResolveServeConfig(args);
  if (!config) {
    fmt::print(stderr, "strata-server: error: {}\n", config.error().ToString());
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(config->log_level));
  spdlog::logger& log = ServerLog();
  log.info("strata {} server starting{}; effective configuration:", STRATA_VERSION,
           args.config_path.empty() ? std::string(" (no config file: defaults)")
                                    : fmt::format(" from {}", args.config_path));
  std::istringstream lines(DescribeServerConfig(*config));
  for (std::string line; std::getline(lines, line);) log.info("  {}", line);

  // Installed before any thread starts, so that SIGINT / SIGTERM always reach it.
  asio::io_context signal_io;
  asio::signal_set signals(signal_io, SIGINT, SIGTERM);

  if (!config->snapshot_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(config->snapshot_dir, ec);
    if (ec || !std::filesystem::is_directory(config->snapshot_dir)) {
      log.error("cannot use the snapshot directory {}: {}", config->snapshot_dir,
                ec ? ec.message() : "not a directory");
      FlushLogs();
      return 1;
    }
  }
  auto engine = Engine::Open(config->data_dir, EngineOptionsFor(*config));
  if (!engine) {
    log.error("cannot open the data directory {}: {}", config->data_dir, engine.error().ToString());
    FlushLogs();
    return 1;
  }
  const RecoveryReport& recovery = (*engine)->recovery();
  log.info("opened {}: {} collections, {} log batches replayed, {} torn bytes dropped",
           config->data_dir, recovery.collections, recovery.batches_replayed,
           recovery.torn_bytes_dropped);

  auto server = Server::Start(*config, **engine);
  if (!server) {
    log.error("cannot start the server: {}", server.error().ToString());
    engine->reset();
    FlushLogs();
    return 1;
  }
  if (!args.port_file.empty()) {
    if (Status s = WritePortFile(args.port_file, (*server)->port()); !s.ok()) {
      log.error("{}", s.ToString());
      (*server)->Shutdown();
      server->reset();
      engine->reset();
      FlushLogs();
      return 1;
    }
  }
  std::unique_ptr<ServeExtension> beside;
  if (extension) {
    auto made = extension(**engine, **server, *config);
    if (!made) {
      log.error("{}", made.error().ToString());
      (*server)->Shutdown();
      server->reset();
      engine->reset();
      FlushLogs();
      return made.error().code() == StatusCode::kInvalidArgument ? 2 : 1;
    }
    beside = std::move(*made);
  }
  FlushLogs();

  signals.async_wait([&](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    log.info("received signal {} ({}); shutting down", signal,
             signal == SIGINT ? "SIGINT" : "SIGTERM");
    (*server)->Shutdown();
    // A second signal while draining: stop at once. Acknowledged writes survive this only
    // with durability "sync" (fsynced before the reply); with "interval" or "none" the
    // operating system still holds them, which survives a process exit but not a crash.
    signals.async_wait([&log](const boost::system::error_code& e, int s) {
      if (e) return;
      log.warn("received signal {} again; exiting without waiting", s);
      FlushLogs();
      std::_Exit(130);
    });
  });
  std::thread signal_thread([&signal_io] { signal_io.run(); });
  (*server)->Wait();
  // The signal_set belongs to signal_thread now: cancel it there, which lets run() return.
  asio::post(signal_io, [&signals] { signals.cancel(); });
  signal_thread.join();
  beside.reset();
  server->reset();
  engine->reset();  // closes the collections and syncs their logs
  log.info("stopped");
  FlushLogs();
  return 0;
}

}  // namespace strata::server
