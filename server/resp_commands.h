#pragma once
// The RESP commands (docs/RESP.md): the table of every command the listener knows, and
// RespCommands, which runs those that reach the engine -- the generic key commands over
// collections (DEL, EXISTS, TYPE, SCAN, KEYS, DBSIZE, FLUSHALL, INFO) and the vector-set
// commands (VADD, VSIM, ... in resp_vset.cc). The connection's own commands (AUTH, HELLO,
// PING, ECHO, SELECT, QUIT, CLIENT, COMMAND) are answered by the connection
// (resp_connection.cc), which keeps the session they change.
//
// A key is a collection; an element is a record written by string key (api/types.h). A
// key must be a valid collection name (1..64 of [A-Za-z0-9_-]); others are refused with an
// error naming the rule. Replies and errors follow Redis's (the vector-set module's) shapes
// and messages wherever Strata can give the same answer; docs/RESP.md lists the differences.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/strata.h"
#include "protocol/resp.h"
#include "server/config.h"

namespace strata::server {

// Where a command runs: on the connection's strand (it touches only the session), or on
// the read, write or maintenance workers (it calls the engine).
enum class RespLane : uint8_t { kConnection, kRead, kWrite, kMaintenance };

struct RespCommandSpec {
  std::string_view name;  // upper case
  // Redis's convention: n > 0 exactly n words (the name included), n < 0 at least -n.
  int arity;
  RespLane lane;
  bool before_auth;        // allowed before AUTH when a token is set
  int first_key;           // position of the first key (COMMAND's reply), 0: none
  std::string_view group;  // COMMAND DOCS: "connection", "generic", "server", "vector_set"
  std::string_view summary;
};

// Every command, in the order COMMAND lists them.
std::span<const RespCommandSpec> RespCommandTable();
// The command named `name` (any case), or nullptr.
const RespCommandSpec* FindRespCommand(std::string_view name);
// "ERR wrong number of arguments for 'vadd' command" (no leading '-').
std::string WrongArityMessage(std::string_view name);
// "ERR unknown command 'x', with args beginning with: 'a' 'b' ".
std::string UnknownCommandMessage(std::span<const std::string> args);
// Upper-cased ASCII copy.
std::string UpperAscii(std::string_view s);

// Runs the engine commands.
//
// Thread-safe: Execute and ExecuteVaddBatch may run on any number of threads at once.
// `engine` is borrowed and must outlive it.
class RespCommands {
 public:
  RespCommands(Engine& engine, const ServerConfig& config);

  // Runs one command whose lane is not kConnection (its arity already checked) and appends
  // its reply, in RESP `protocol` (2 or 3), to `out`. Never throws.
  void Execute(std::span<const std::string> args, int protocol, std::string& out);

  // Whether `args` is a VADD that may share one engine write with the VADDs next to it
  // (see RespListener): the key it writes, or empty.
  static std::string_view BatchableVaddKey(std::span<const std::string> args);
  // Runs consecutive VADDs to one key as one write batch; one reply per command, in order
  // (a VADD whose arguments are wrong gets its error and is left out of the batch).
  void ExecuteVaddBatch(std::span<const std::vector<std::string>> commands, int protocol,
                        std::vector<std::string>& replies);

 private:
  void Dispatch(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void Info(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void Del(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void Exists(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void Type(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void Scan(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void Keys(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void DbSize(protocol::resp::RespWriter& w);
  void FlushAll(std::span<const std::string> args, protocol::resp::RespWriter& w);

  // Vector sets (resp_vset.cc).
  void VAdd(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void VSim(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void VRem(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void VCard(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void VDim(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void VEmb(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void VGetAttr(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void VSetAttr(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void VIsMember(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void VInfo(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void VRandMember(std::span<const std::string> args, protocol::resp::RespWriter& w);
  void VLinks(std::span<const std::string> args, protocol::resp::RespWriter& w);

  Engine& engine_;
  const ServerConfig config_;
};

}  // namespace strata::server
