// RespCommands: the command table, and the generic key and server commands over the
// engine's collections (a key is a collection). The vector-set commands are in
// resp_vset.cc.

#include "server/resp_commands.h"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <exception>
#include <string>

#include "server/resp_keys.h"

#ifndef STRATA_VERSION
#define STRATA_VERSION "unknown"
#endif

namespace strata::server {

namespace resp = protocol::resp;

namespace {

using L = RespLane;

// name, arity, lane, before AUTH, first key, group, summary.
constexpr RespCommandSpec kCommands[] = {
    {"PING", -1, L::kConnection, true, 0, "connection", "Returns PONG, or the message given."},
    {"ECHO", 2, L::kConnection, false, 0, "connection", "Returns the message given."},
    {"HELLO", -1, L::kConnection, true, 0, "connection",
     "Handshakes: picks RESP2 or RESP3, optionally authenticates and names the client."},
    {"AUTH", -2, L::kConnection, true, 0, "connection",
     "Authenticates the connection with the server's token."},
    {"SELECT", 2, L::kConnection, false, 0, "connection", "Selects database 0 (the only one)."},
    {"QUIT", -1, L::kConnection, true, 0, "connection", "Closes the connection."},
    {"CLIENT", -2, L::kConnection, false, 0, "connection",
     "CLIENT SETNAME / GETNAME / SETINFO / ID."},
    {"COMMAND", -1, L::kConnection, false, 0, "server",
     "Lists the commands (COMMAND, COMMAND COUNT, COMMAND INFO, COMMAND DOCS)."},
    {"INFO", -1, L::kRead, false, 0, "server", "Server, keyspace and engine statistics."},
    {"DBSIZE", 1, L::kRead, false, 0, "server", "Returns the number of keys (collections)."},
    {"FLUSHALL", -1, L::kMaintenance, false, 0, "server",
     "Drops every collection (only with server.resp_allow_flushall)."},
    {"DEL", -2, L::kMaintenance, false, 1, "generic", "Drops the collections named."},
    {"EXISTS", -2, L::kRead, false, 1, "generic", "Counts the keys that exist."},
    {"TYPE", 2, L::kRead, false, 1, "generic", "Returns vectorset, or none."},
    {"SCAN", -2, L::kRead, false, 0, "generic", "Iterates over the keys (collections)."},
    {"KEYS", 2, L::kRead, false, 0, "generic", "Returns the keys matching a pattern."},
    {"VADD", -5, L::kWrite, false, 1, "vector_set", "Adds an element to a vector set."},
    {"VSIM", -4, L::kRead, false, 1, "vector_set", "Returns elements by vector similarity."},
    {"VREM", 3, L::kWrite, false, 1, "vector_set", "Removes an element from a vector set."},
    {"VCARD", 2, L::kRead, false, 1, "vector_set", "Returns the number of elements."},
    {"VDIM", 2, L::kRead, false, 1, "vector_set", "Returns the dimension of the vectors."},
    {"VEMB", -3, L::kRead, false, 1, "vector_set", "Returns the vector of an element."},
    {"VGETATTR", 3, L::kRead, false, 1, "vector_set",
     "Returns the JSON attributes of an element."},
    {"VSETATTR", 4, L::kWrite, false, 1, "vector_set",
     "Sets or removes the JSON attributes of an element."},
    {"VISMEMBER", 3, L::kRead, false, 1, "vector_set", "Tells whether an element exists."},
    {"VINFO", 2, L::kRead, false, 1, "vector_set", "Returns information about a vector set."},
    {"VRANDMEMBER", -2, L::kRead, false, 1, "vector_set", "Returns random elements."},
    {"VLINKS", -3, L::kRead, false, 1, "vector_set",
     "Returns the neighbours of an element (see docs/RESP.md)."},
};

// Redis's glob (stringmatch): * ? [abc] [^a] [a-z] and \ escapes.
bool GlobMatch(std::string_view p, std::string_view s) {
  size_t pi = 0, si = 0;
  size_t star_p = std::string_view::npos, star_s = 0;
  while (si < s.size()) {
    if (pi < p.size()) {
      const char c = p[pi];
      if (c == '*') {
        star_p = pi++;
        star_s = si;
        continue;
      }
      if (c == '?') {
        ++pi;
        ++si;
        continue;
      }
      if (c == '[') {
        size_t j = pi + 1;
        const bool negate = j < p.size() && p[j] == '^';
        if (negate) ++j;
        bool match = false;
        while (j < p.size() && p[j] != ']') {
          if (p[j] == '\\' && j + 1 < p.size()) {
            match |= p[j + 1] == s[si];
            j += 2;
          } else if (j + 2 < p.size() && p[j + 1] == '-' && p[j + 2] != ']') {
            char lo = p[j], hi = p[j + 2];
            if (lo > hi) std::swap(lo, hi);
            match |= s[si] >= lo && s[si] <= hi;
            j += 3;
          } else {
            match |= p[j] == s[si];
            ++j;
          }
        }
        if (negate) match = !match;
        if (match) {
          pi = j < p.size() ? j + 1 : j;
          ++si;
          continue;
        }
      } else {
        const bool escaped = c == '\\' && pi + 1 < p.size();
        const char want = escaped ? p[pi + 1] : c;
        if (want == s[si]) {
          pi += escaped ? 2 : 1;
          ++si;
          continue;
        }
      }
    }
    if (star_p == std::string_view::npos) return false;
    pi = star_p + 1;
    si = ++star_s;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

bool ParseU64(std::string_view s, uint64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  out = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const uint64_t d = uint64_t(c - '0');
    if (out > (UINT64_MAX - d) / 10) return false;
    out = out * 10 + d;
  }
  return true;
}

std::vector<std::string> SortedKeys(const Engine& engine) {
  std::vector<std::string> names;
  for (const CollectionInfo& c : engine.ListCollections()) names.push_back(c.spec.name);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

std::span<const RespCommandSpec> RespCommandTable() { return kCommands; }

std::string UpperAscii(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return r;
}

const RespCommandSpec* FindRespCommand(std::string_view name) {
  if (name.size() > 16) return nullptr;
  const std::string upper = UpperAscii(name);
  for (const RespCommandSpec& c : kCommands) {
    if (c.name == upper) return &c;
  }
  return nullptr;
}

std::string WrongArityMessage(std::string_view name) {
  std::string lower(name.substr(0, 128));
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return fmt::format("ERR wrong number of arguments for '{}' command", lower);
}

std::string UnknownCommandMessage(std::span<const std::string> args) {
  // Redis: the name (128 bytes at most) and the first arguments, each quoted.
  std::string out = fmt::format("ERR unknown command '{}', with args beginning with: ",
                                std::string_view(args[0]).substr(0, 128));
  for (size_t i = 1; i < args.size() && out.size() < 256; ++i) {
    out += fmt::format("'{}' ", std::string_view(args[i]).substr(0, 128));
  }
  return out;
}

RespCommands::RespCommands(Engine& engine, const ServerConfig& config)
    : engine_(engine), config_(config) {}

void RespCommands::Execute(std::span<const std::string> args, int protocol, std::string& out) {
  const size_t mark = out.size();
  resp::RespWriter w(out, protocol);
  try {
    Dispatch(args, w);
  } catch (const std::exception& e) {
    out.resize(mark);
    w.Error(fmt::format("ERR internal error: {}", e.what()));
  }
}

void RespCommands::Dispatch(std::span<const std::string> args, resp::RespWriter& w) {
  const std::string name = UpperAscii(args[0]);
  if (name == "VSIM") return VSim(args, w);
  if (name == "VADD") return VAdd(args, w);
  if (name == "VREM") return VRem(args, w);
  if (name == "VCARD") return VCard(args, w);
  if (name == "VDIM") return VDim(args, w);
  if (name == "VEMB") return VEmb(args, w);
  if (name == "VGETATTR") return VGetAttr(args, w);
  if (name == "VSETATTR") return VSetAttr(args, w);
  if (name == "VISMEMBER") return VIsMember(args, w);
  if (name == "VINFO") return VInfo(args, w);
  if (name == "VRANDMEMBER") return VRandMember(args, w);
  if (name == "VLINKS") return VLinks(args, w);
  if (name == "INFO") return Info(args, w);
  if (name == "DEL") return Del(args, w);
  if (name == "EXISTS") return Exists(args, w);
  if (name == "TYPE") return Type(args, w);
  if (name == "SCAN") return Scan(args, w);
  if (name == "KEYS") return Keys(args, w);
  if (name == "DBSIZE") return DbSize(w);
  if (name == "FLUSHALL") return FlushAll(args, w);
  w.Error(UnknownCommandMessage(args));
}

void RespCommands::Info(std::span<const std::string> args, resp::RespWriter& w) {
  const std::string section = args.size() > 1 ? UpperAscii(args[1]) : "ALL";
  const auto want = [&](std::string_view s) {
    return section == "ALL" || section == "DEFAULT" || section == "EVERYTHING" || section == s;
  };
  std::string text;
  if (want("SERVER")) {
    text += fmt::format(
        "# Server\r\nredis_version:8.0.0\r\nstrata_version:{}\r\nredis_mode:standalone\r\n"
        "tcp_port:{}\r\n\r\n",
        STRATA_VERSION, config_.resp_port);
  }
  const std::vector<CollectionInfo> collections = engine_.ListCollections();
  if (want("STATS")) {
    const EngineCounters c = engine_.counters();
    text += fmt::format(
        "# Stats\r\nstrata_searches:{}\r\nstrata_upserts:{}\r\nstrata_deletes:{}\r\n"
        "strata_write_batches:{}\r\nstrata_vectors:{}\r\nstrata_memory_bytes:{}\r\n\r\n",
        c.searches, c.upserts, c.deletes, c.write_batches, c.vectors, c.memory_bytes);
  }
  if (want("KEYSPACE")) {
    text += "# Keyspace\r\n";
    if (!collections.empty()) {
      text += fmt::format("db0:keys={},expires=0,avg_ttl=0\r\n", collections.size());
    }
  }
  w.Verbatim(text);
}

void RespCommands::Del(std::span<const std::string> args, resp::RespWriter& w) {
  int64_t removed = 0;
  for (size_t i = 1; i < args.size(); ++i) {
    if (!IsCollectionKey(args[i])) continue;
    const Status s = engine_.DropCollection(args[i]);
    if (s.ok()) {
      ++removed;
    } else if (s.code() != StatusCode::kNotFound) {
      return w.Error(fmt::format("ERR DEL {}: {}", args[i], s.message()));
    }
  }
  w.Integer(removed);
}

void RespCommands::Exists(std::span<const std::string> args, resp::RespWriter& w) {
  int64_t n = 0;
  for (size_t i = 1; i < args.size(); ++i) {
    if (IsCollectionKey(args[i]) && engine_.DescribeCollection(args[i])) ++n;
  }
  w.Integer(n);
}

void RespCommands::Type(std::span<const std::string> args, resp::RespWriter& w) {
  const bool exists = IsCollectionKey(args[1]) && engine_.DescribeCollection(args[1]).has_value();
  w.SimpleString(exists ? "vectorset" : "none");
}

void RespCommands::Scan(std::span<const std::string> args, resp::RespWriter& w) {
  uint64_t cursor = 0;
  if (!ParseU64(args[1], cursor)) return w.Error("ERR invalid cursor");
  std::string pattern = "*";
  uint64_t count = 10;
  std::string type;
  for (size_t i = 2; i < args.size(); i += 2) {
    const std::string opt = UpperAscii(args[i]);
    if (i + 1 >= args.size()) return w.Error("ERR syntax error");
    if (opt == "MATCH") {
      pattern = args[i + 1];
    } else if (opt == "COUNT") {
      if (!ParseU64(args[i + 1], count) || count == 0) {
        return w.Error("ERR value is out of range, must be positive");
      }
    } else if (opt == "TYPE") {
      type = args[i + 1];
    } else {
      return w.Error("ERR syntax error");
    }
  }
  // The cursor is a position in the sorted list of collection names: a collection that
  // lives through the whole iteration is returned at least once (one created or dropped
  // meanwhile may shift the others by one), as Redis promises.
  const std::vector<std::string> names = SortedKeys(engine_);
  std::vector<std::string> page;
  uint64_t next = cursor;
  for (uint64_t seen = 0; next < names.size() && seen < count; ++next, ++seen) {
    if (!type.empty() && type != "vectorset") continue;
    if (GlobMatch(pattern, names[next])) page.push_back(names[next]);
  }
  if (next >= names.size()) next = 0;
  w.Array(2);
  w.Bulk(fmt::format("{}", next));
  w.Array(page.size());
  for (const auto& k : page) w.Bulk(k);
}

void RespCommands::Keys(std::span<const std::string> args, resp::RespWriter& w) {
  std::vector<std::string> match;
  for (const std::string& k : SortedKeys(engine_)) {
    if (GlobMatch(args[1], k)) match.push_back(k);
  }
  w.Array(match.size());
  for (const auto& k : match) w.Bulk(k);
}

void RespCommands::DbSize(resp::RespWriter& w) {
  w.Integer(int64_t(engine_.ListCollections().size()));
}

void RespCommands::FlushAll(std::span<const std::string> args, resp::RespWriter& w) {
  if (args.size() > 2 || (args.size() == 2 && UpperAscii(args[1]) != "SYNC" &&
                          UpperAscii(args[1]) != "ASYNC")) {
    return w.Error("ERR syntax error");
  }
  if (!config_.resp_allow_flushall) {
    return w.Error(
        "ERR FLUSHALL is disabled on this server: it drops every collection; set "
        "server.resp_allow_flushall = true to allow it");
  }
  for (const CollectionInfo& c : engine_.ListCollections()) {
    const Status s = engine_.DropCollection(c.spec.name);
    if (!s.ok() && s.code() != StatusCode::kNotFound) {
      return w.Error(fmt::format("ERR FLUSHALL: {}: {}", c.spec.name, s.message()));
    }
  }
  w.Ok();
}

}  // namespace strata::server
