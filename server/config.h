#pragma once
// The server's configuration: one typed struct with every default in one place,
// loaded from a TOML file (configs/strata.toml documents every key), checked by
// ValidateServerConfig, and logged at start by DescribeServerConfig.
//
//   [server]                                [engine]
//   listen, port, metrics_port, resp_port,  durability, sync_interval_ms,
//   resp_allow_flushall, data_dir,
//   snapshot_dir,
//   worker_threads, io_threads, io_spin_us, background_compaction, background_idle,
//   inline_reads,                           background_cpus, memory_ef_construction
//   max_connections, max_frame_bytes,
//   max_batch, max_k, queue_limit,
//   max_inflight_bytes, max_pipeline,
//   max_reply_bytes,
//   max_connection_reply_bytes,
//   min_write_bytes_per_s, idle_timeout_s,
//   request_timeout_s, shutdown_timeout_s,
//   hello_timeout_s,
//   max_unauthenticated_connections,
//   max_unauthenticated_per_address,
//   max_failed_hellos, token, log_level
//
// Unknown tables and keys, and values of the wrong type, are errors naming the
// key and the file: a misspelt key must not silently leave a default in place.
//
// Value types and free functions; thread-compatible.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/status.h"
#include "engine/strata.h"

namespace strata::server {

struct ServerConfig {
  // [server]
  std::string listen = "127.0.0.1";  // IPv4 or IPv6 address literal, or "localhost"
  uint16_t port = 7420;              // 0: an ephemeral port (Server::port() tells which)
  uint16_t metrics_port = 7421;      // HTTP GET /metrics; 0: off
  // The RESP (Redis protocol) listener, docs/RESP.md; 0: off (the default, so that servers
  // started side by side never contend for one port; 7422 is the suggested port).
  uint16_t resp_port = 0;
  // RESP FLUSHALL drops every collection; refused unless this is set.
  bool resp_allow_flushall = false;
  std::string data_dir = "./strata-data";
  // Where the snapshot request (docs/PROTOCOL.md) writes: each snapshot is a new folder
  // of this directory, named by the client with one path component; nothing outside it is
  // ever written. Empty: snapshots are refused (the default). Must not be inside data_dir.
  std::string snapshot_dir;
  uint32_t worker_threads = 0;     // engine calls run here; 0: one per core
  // Sockets, framing, hello and ping, and the small reads run inline (below); each thread runs
  // an io_context of its own and a connection stays on one (round robin). 0: one per core.
  uint32_t io_threads = 0;
  // After running a request's handlers, an I/O thread keeps polling its sockets for this many
  // microseconds before it sleeps: a client that sends its next request within that time
  // finds the thread awake (on a virtual machine, waking a halted vCPU costs tens of
  // microseconds per request). Costs up to that much CPU per request. 0 (default): sleep at once.
  uint32_t io_spin_us = 0;
  // A single-query search at a recall target, or a get of a few records, of a collection
  // without a memory budget runs on the I/O thread that read it (Server::Impl::RunsInline)
  // instead of waiting for a worker and then for the I/O thread again: one thread wake-up
  // per search instead of three, which is what a search waits for when other work holds
  // the cores. Everything else, and requests a cluster routes, still goes to the pools.
  bool inline_reads = true;
  uint32_t max_connections = 256;  // beyond it a new connection gets a kBusy frame and is closed
  uint32_t max_frame_bytes = 64u << 20;  // largest payload accepted (and sent)
  uint32_t max_batch = 10000;            // records / ids / queries per request
  uint32_t max_k = 10000;                // largest k of a search
  uint32_t queue_limit = 1024;           // requests waiting for a worker; beyond it: kBusy
  // Payload bytes of the requests being read, queued for or running on the workers,
  // server-wide; beyond it: kBusy. Decoded requests take several times their wire size.
  uint64_t max_inflight_bytes = uint64_t{256} << 20;
  uint32_t max_pipeline = 128;           // requests in flight per connection before reading pauses
  // Reply bytes held server-wide: for each request admitted, an upper bound of its reply
  // until the reply is encoded, then the encoded frame until it is written. A request that
  // would pass it gets kBusy at once. At least max_frame_bytes.
  uint64_t max_reply_bytes = uint64_t{256} << 20;
  // The same, per connection: while a connection holds this much, it is not read (its
  // requests wait in the socket) until replies have been written. One request is always
  // admitted, so a connection holds at most this plus one reply (<= max_frame_bytes).
  uint64_t max_connection_reply_bytes = uint64_t{16} << 20;
  // Replies waiting to be written must drain at least this fast, averaged from when they
  // began waiting (checked once they have waited request_timeout_s); slower: closed. 0: off.
  uint32_t min_write_bytes_per_s = 256 * 1024;
  double idle_timeout_s = 300;     // no request started for this long: the connection is closed
  // A frame begun must be complete by then, and a write must make progress within it.
  double request_timeout_s = 30;
  // Graceful shutdown: longest wait for replies to drain. Then connections are closed and
  // requests not yet started are skipped; one already running in the engine is not
  // interrupted (Server::Wait returns once it has finished).
  double shutdown_timeout_s = 30;
  // A request run by a worker, write or maintenance thread that takes at least this many
  // milliseconds, from its frame's first byte to its reply handed to the writer, is logged
  // (warn) with where the time went: reading the frame (and, for reads, decoding it),
  // waiting for the thread, running (a write's decoding included), handing the reply
  // over. Requests answered on the I/O thread (ping, hello, refusals) are not. 0: off.
  uint32_t slow_request_ms = 0;
  // With a token: a connection must send a valid hello within this long of connecting.
  double hello_timeout_s = 5;
  // With a token: connections that have not said a valid hello yet. Server-wide: one more
  // (or one past max_connections) closes the oldest of them to make room, so that they
  // cannot keep out a client that knows the token. Per peer address: one more from that
  // address is refused at once (a kBusy frame, then closed).
  uint32_t max_unauthenticated_connections = 64;
  uint32_t max_unauthenticated_per_address = 8;
  // Failed hellos from one peer address within a minute before that address is refused
  // (connections and hellos alike) for 1 s, doubling with each further failure up to 60 s.
  uint32_t max_failed_hellos = 10;
  // Shared secret for hello; empty: none required. Otherwise at least kMinTokenBytes,
  // without leading or trailing blanks.
  std::string token;
  std::string log_level = "info";  // trace, debug, info, warn, error, critical, off
  // [engine]
  Durability durability = Durability::kSync;
  uint32_t sync_interval_ms = 100;
  bool background_compaction = true;
  // Run writes, maintenance and the engine's insert, seal and compaction threads under
  // SCHED_IDLE instead of nice 10/19: searches then never wait for them, but on a busy
  // machine they get only idle CPU (EngineOptions::background_idle).
  bool background_idle = false;
  // CPUs that writes, maintenance and the engine's insert, seal and compaction threads are
  // confined to, as taskset writes a list ("1", "1-3", "0,2"), or "auto" (every CPU the
  // server may run on except the lowest, when there are two or more), or "" (any CPU).
  // Searches run on every CPU; a core kept free of background work is what keeps their tail
  // latency while big writes and maintenance run (EngineOptions::background_cpus).
  std::string background_cpus = "auto";
  // Caps the ef_construction of each collection's in-memory graph (EngineOptions::
  // memory_ef_construction); 0: the collection's hnsw_ef_construction.
  uint32_t memory_ef_construction = EngineOptions{}.memory_ef_construction;

  friend bool operator==(const ServerConfig&, const ServerConfig&) = default;
};

// The shortest token ValidateServerConfig accepts.
inline constexpr size_t kMinTokenBytes = 16;

// Reads `toml_file`. Keys absent from the file keep their defaults. Errors (IOError
// for an unreadable file, InvalidArgument otherwise) name the file and the key.
// The result is not validated: call ValidateServerConfig after applying overrides.
Result<ServerConfig> LoadServerConfig(const std::filesystem::path& toml_file);
// Parses TOML text; `source` names it in errors (LoadServerConfig passes the path).
Result<ServerConfig> ParseServerConfig(std::string_view toml_text, std::string_view source);

// Ranges and combinations: a valid listen address, a non-loopback address only
// with a token, a token of at least kMinTokenBytes with no leading or trailing blank,
// non-zero limits, max_k within the engine's limit, queue_limit at most 1000000,
// max_inflight_bytes and max_reply_bytes at least max_frame_bytes,
// max_connection_reply_bytes at most max_reply_bytes, timeouts of at least 1 ms, a known
// log level, a snapshot_dir that is neither data_dir nor inside it (compared as written and,
// where they exist, after resolving links).
// InvalidArgument naming the key.
Status ValidateServerConfig(const ServerConfig& config);

// One "key = value" line per key (the token is shown only as set or not), for the start-up log.
std::string DescribeServerConfig(const ServerConfig& config);

// The engine options the config implies (durability, sync interval, compaction, batch limit).
EngineOptions EngineOptionsFor(const ServerConfig& config);
// worker_threads with 0 resolved to the number of cores (at least 1).
uint32_t EffectiveWorkerThreads(const ServerConfig& config);
// io_threads with 0 resolved to the number of cores (at least 1).
uint32_t EffectiveIoThreads(const ServerConfig& config);

std::string_view DurabilityName(Durability d);
Result<Durability> ParseDurability(std::string_view name);

// True for 127.0.0.0/8, ::1, IPv4-mapped loopback and "localhost".
bool IsLoopbackAddress(std::string_view address);

}  // namespace strata::server
