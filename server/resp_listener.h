#pragma once
// Internal to server/: the RESP (Redis protocol) listener, docs/RESP.md. Its own port
// (server.resp_port), the server's io_contexts (a connection on one, as the binary port's), worker pools, admission budgets, token,
// timeouts and metrics (Server::Impl, server_impl.h).
//
//   resp_listener.cc    RespListener: the acceptor, the registry of connections, shutdown
//   resp_connection.cc  RespConnection: reading and parsing (protocol/resp.h), ordering,
//                       the connection's own commands (AUTH, HELLO, PING, ...), writing
//   resp_commands.cc    RespCommands: the commands that reach the engine (resp_commands.h)
//
// Order: a connection's replies go out in the order of its commands (pipelining keeps
// order, as Redis does). Reads (VSIM, VCARD, ...) of one connection may run at once on the
// workers; a write (VADD, VREM, VSETATTR, DEL, FLUSHALL) waits for every earlier command of
// the connection and later ones wait for it, so each command sees the effects of those
// before it. Consecutive VADDs of one connection to one key that are waiting together run
// as one engine write batch (one log record, one fsync), each still answered on its own.

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "protocol/resp.h"
#include "server/resp_commands.h"
#include "server/server_impl.h"

namespace strata::server {

class RespConnection;

// The acceptor and the registry of RESP connections.
//
// Thread-safe: Bind and Start run before the I/O threads, Shutdown on any thread; the
// acceptor and the drain timer are used on their strand, the registry under mu_.
class RespListener {
 public:
  RespListener(Server::Impl& server, Engine& engine);
  ~RespListener();

  Status Bind(const asio::ip::address& address);  // IOError naming the port
  void Start();
  uint16_t port() const { return port_; }
  // Stops accepting; every connection answers what it has read and closes; past
  // shutdown_timeout_s the rest are closed.
  void Shutdown();

  void Unregister(uint64_t id);
  RespCommands& commands() { return commands_; }
  Server::Impl& server() { return server_; }

 private:
  asio::awaitable<void> AcceptLoop();
  std::vector<std::shared_ptr<RespConnection>> Live();

  Server::Impl& server_;
  RespCommands commands_;
  Strand strand_;
  tcp::acceptor acceptor_;
  asio::steady_timer drain_timer_;
  uint16_t port_ = 0;
  uint64_t next_id_ = 0;  // on strand_
  std::mutex mu_;
  std::unordered_map<uint64_t, std::weak_ptr<RespConnection>> conns_;  // guarded by mu_
};

// One RESP client socket: a reader, a writer and a watchdog coroutine.
//
// Thread-compatible, confined to strand_: every method runs there (workers post their
// results to it), except Start (before anything can reach it) and id()/gone().
class RespConnection : public std::enable_shared_from_this<RespConnection> {
 public:
  RespConnection(RespListener& listener, uint64_t id, Strand strand, tcp::socket socket);

  uint64_t id() const { return id_; }
  const Strand& strand() const { return strand_; }
  bool gone() const { return gone_.load(std::memory_order_acquire); }

  void Start();
  // Refused at accept: send `reply` (an error), then close.
  void StartRejected(std::string reply);
  void StopAccepting();  // shutdown: no new commands; close once the replies are out
  void Close(std::string_view why);

 private:
  // A reply to be written, in command order; `ready` once it is made.
  struct Slot {
    bool ready = false;
    std::string bytes;
  };
  // A command for the engine, waiting for its turn (see the ordering rule above).
  struct Pending {
    std::vector<std::string> args;
    uint64_t slot = 0;
    RespLane lane = RespLane::kRead;
    int protocol = 2;
    size_t wire_bytes = 0;
  };

  template <typename Awaitable>
  void Spawn(Awaitable a, const char* what);
  void Kick();
  asio::awaitable<void> ReadLoop(std::shared_ptr<RespConnection> keep_alive);
  asio::awaitable<void> WriteLoop(std::shared_ptr<RespConnection> keep_alive);
  asio::awaitable<void> Watchdog(std::shared_ptr<RespConnection> keep_alive);

  bool ShouldPause() const;
  // One parsed command: answered here, or queued for the workers.
  void Handle(protocol::resp::Command command);
  uint64_t NewSlot();
  void Fill(uint64_t slot, std::string bytes);
  // Dispatches the queued commands whose turn has come.
  void Pump();
  void Run(std::vector<Pending> batch);
  void Completed(std::vector<Pending> batch, std::vector<std::string> replies, uint64_t payload);
  void HoldReply(int64_t delta);

  // The connection's own commands (resp_connection.cc).
  std::string Auth(const std::vector<std::string>& args);
  std::string Hello(const std::vector<std::string>& args);
  std::string Client(const std::vector<std::string>& args);
  std::string Command(const std::vector<std::string>& args);
  // A wrong token: counted against the peer's address (the server's back-off).
  std::string AuthFailed();

  RespListener& listener_;
  Server::Impl& server_;
  const ServerConfig& config_;
  const uint64_t id_;
  Strand strand_;
  tcp::socket socket_;
  const std::string peer_;
  const std::string address_;
  asio::steady_timer write_signal_;
  asio::steady_timer read_signal_;
  asio::steady_timer watchdog_;
  protocol::resp::RequestParser parser_;

  int protocol_ = 2;
  bool authenticated_;
  std::string client_name_;
  int failed_auths_ = 0;

  std::deque<Slot> slots_;       // replies not yet written, in command order
  uint64_t first_slot_ = 0;      // the sequence number of slots_.front()
  std::deque<Pending> pending_;  // engine commands not yet dispatched, in order
  uint32_t running_ = 0;         // engine commands on the workers
  bool running_write_ = false;   // one of them is a write (nothing else runs meanwhile)
  uint64_t reply_bytes_ = 0;     // bytes of made replies held for this connection
  bool accepting_ = true;        // false: no new commands (QUIT, protocol error, shutdown)
  bool reader_done_ = false;
  bool finishing_ = false;
  bool closed_ = false;
  std::atomic<bool> gone_{false};
  uint64_t commands_ = 0;
  Clock::time_point last_activity_;
  const Clock::time_point hello_deadline_;
  std::optional<Clock::time_point> partial_since_;  // a command is partly read since then
  std::optional<Clock::time_point> write_deadline_;
  Clock::time_point linger_deadline_{};
};

}  // namespace strata::server
