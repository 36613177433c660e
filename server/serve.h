#pragma once
// What `strata-server` (and `strata serve`) run: the config file, flags over it,
// the engine, the server, and a graceful stop on SIGINT / SIGTERM.
//
//   CLI::App app{"..."};
//   strata::server::ServeArgs args;
//   strata::server::AddServeFlags(app, args);
//   CLI11_PARSE(app, argc, argv);
//   return strata::server::RunServe(args);
//
// Free functions; RunServe is meant for a process's main thread (it handles signals).

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/status.h"
#include "server/config.h"

namespace CLI {
class App;
}

namespace strata {
class Engine;
}

namespace strata::server {

class Server;

// Something that runs beside the server for the life of RunServe -- the cluster membership of
// cluster/ (strata-server --cluster-etcd, docs/CLUSTER.md), which sits above this layer and
// is handed in by the program's main. Made once the server listens; destroyed after the
// server has stopped, before the engine closes.
class ServeExtension {
 public:
  virtual ~ServeExtension() = default;
};
// Fails to refuse the start: InvalidArgument exits 2 (a bad configuration), anything else 1.
using ServeExtensionFactory = std::function<Result<std::unique_ptr<ServeExtension>>(
    Engine& engine, Server& server, const ServerConfig& config)>;

struct ServeArgs {
  std::string config_path;  // empty: the defaults of ServerConfig
  // Overrides of the file's values (unset: the file's, or the default).
  std::optional<std::string> listen;
  std::optional<uint16_t> port;
  std::optional<uint16_t> metrics_port;
  std::optional<uint16_t> resp_port;
  std::optional<std::string> data_dir;
  std::optional<std::string> snapshot_dir;
  std::optional<uint32_t> workers;
  std::optional<std::string> token;
  std::optional<std::string> log_level;
  // Once listening, the bound port is written here (decimal, one line, atomically:
  // written to PATH.tmp then renamed), for scripts and tests that start on port 0.
  std::string port_file;
};

// --config, --listen, --port, --metrics-port, --resp-port, --data-dir, --snapshot-dir,
// --workers, --token (or the STRATA_TOKEN environment variable), --log-level, --port-file.
void AddServeFlags(CLI::App& app, ServeArgs& args);

// The file (or the defaults), then the flags, validated.
Result<ServerConfig> ResolveServeConfig(const ServeArgs& args);

// Resolves the config, creates snapshot_dir when it is set and missing, opens the
// engine, starts the server, logs the effective
// config, waits for SIGINT or SIGTERM, shuts down gracefully, closes the engine
// (which syncs its logs) and flushes the log. Returns the process exit code:
// 0 after a clean stop, 2 for a bad configuration, 1 for any other failure.
// `extension`, when given, is started beside the server (see ServeExtension).
int RunServe(const ServeArgs& args, const ServeExtensionFactory& extension = {});

}  // namespace strata::server
