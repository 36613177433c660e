#include "cluster/etcd_client.h"

#include <charconv>

#include <nlohmann/json.hpp>

#include "cluster/base64.h"
#include "cluster/etcd_json.h"

namespace strata::cluster {

using nlohmann::json;

namespace internal {

Result<int64_t> JsonInt(const json& object, std::string_view field) {
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) return int64_t{0};
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && end == s.data() + s.size()) return v;
  }
  return Error(InvalidArgument("field '{}' is not an integer: {}", field, it->dump()));
}

Result<std::string> JsonBytes(const json& object, std::string_view field) {
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) return std::string();
  if (!it->is_string()) {
    return Error(InvalidArgument("field '{}' is not a base64 string: {}", field, it->dump()));
  }
  auto decoded = Base64Decode(it->get_ref<const std::string&>());
  if (!decoded) return Error(decoded.error().WithContext(fmt::format("field '{}'", field)));
  return decoded;
}

Result<EtcdKeyValue> ParseKeyValue(const json& kv) {
  if (!kv.is_object()) return Error(InvalidArgument("a key-value is not an object: {}", kv.dump()));
  EtcdKeyValue out;
  STRATA_ASSIGN_OR_RETURN(out.key, JsonBytes(kv, "key"));
  STRATA_ASSIGN_OR_RETURN(out.value, JsonBytes(kv, "value"));
  STRATA_ASSIGN_OR_RETURN(out.create_revision, JsonInt(kv, "create_revision"));
  STRATA_ASSIGN_OR_RETURN(out.mod_revision, JsonInt(kv, "mod_revision"));
  STRATA_ASSIGN_OR_RETURN(out.version, JsonInt(kv, "version"));
  STRATA_ASSIGN_OR_RETURN(out.lease, JsonInt(kv, "lease"));
  return out;
}

int EtcdErrorCode(const json& reply) {
  if (!reply.is_object() || !reply.contains("error")) return 0;
  // A streamed call's error: {"error": {"grpc_code": N, "http_code": H, "message": "..."}}.
  if (const json& e = reply["error"]; e.is_object()) {
    auto it = e.find("grpc_code");
    return it != e.end() && it->is_number_integer() ? it->get<int>() : 2;
  }
  auto it = reply.find("code");
  if (it == reply.end() || !it->is_number_integer()) return 2;  // gRPC Unknown
  return it->get<int>();
}

Status EtcdErrorStatus(const json& reply, std::string_view where) {
  if (!reply.is_object() || !reply.contains("error")) return Status::Ok();
  const int code = EtcdErrorCode(reply);
  const json& e = reply["error"];
  std::string message = e.is_string()                                ? e.get<std::string>()
                        : e.is_object() && e.contains("message") && e["message"].is_string()
                            ? e["message"].get<std::string>()
                            : e.dump();
  message = fmt::format("etcd {}: {} (gRPC code {})", where, message, code);
  // gRPC status codes (google.golang.org/grpc/codes).
  switch (code) {
    // Code 1 from etcd is its side giving up on the call (its gateway stopping: "the client
    // connection is closing"), a failure to retry like 14; Cancelled stays the caller's own.
    case 1:
    case 4:
    case 14: return Status(StatusCode::kIOError, std::move(message));
    case 3:
    case 9: return Status(StatusCode::kInvalidArgument, std::move(message));
    case 5: return Status(StatusCode::kNotFound, std::move(message));
    case 6: return Status(StatusCode::kAlreadyExists, std::move(message));
    case 8: return Status(StatusCode::kResourceExhausted, std::move(message));
    case 11: return Status(StatusCode::kOutOfRange, std::move(message));
    case 12: return Status(StatusCode::kUnimplemented, std::move(message));
    default: return Status(StatusCode::kInternal, std::move(message));
  }
}

}  // namespace internal

using internal::JsonBytes;
using internal::JsonInt;
using internal::ParseKeyValue;

std::string PrefixRangeEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<uint8_t>(end.back()) < 0xFF) {
      end.back() = static_cast<char>(static_cast<uint8_t>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

// ---- Compare / Op factories ----

namespace {
EtcdCompare MakeCompare(std::string key, EtcdCompare::Target target, EtcdCompare::Op op,
                        int64_t number) {
  EtcdCompare c;
  c.key = std::move(key);
  c.target = target;
  c.op = op;
  c.number = number;
  return c;
}
EtcdOp MakeOp(EtcdOp::Kind kind, std::string key, std::string range_end) {
  EtcdOp op;
  op.kind = kind;
  op.key = std::move(key);
  op.range_end = std::move(range_end);
  return op;
}
}  // namespace

EtcdCompare EtcdCompare::Absent(std::string key) {
  return MakeCompare(std::move(key), Target::kVersion, Op::kEqual, 0);
}
EtcdCompare EtcdCompare::Exists(std::string key) {
  return MakeCompare(std::move(key), Target::kVersion, Op::kGreater, 0);
}
EtcdCompare EtcdCompare::ValueIs(std::string key, std::string value) {
  EtcdCompare c = MakeCompare(std::move(key), Target::kValue, Op::kEqual, 0);
  c.value = std::move(value);
  return c;
}
EtcdCompare EtcdCompare::ModRevisionIs(std::string key, int64_t revision) {
  return MakeCompare(std::move(key), Target::kModRevision, Op::kEqual, revision);
}
EtcdCompare EtcdCompare::CreateRevisionIs(std::string key, int64_t revision) {
  return MakeCompare(std::move(key), Target::kCreateRevision, Op::kEqual, revision);
}

EtcdOp EtcdOp::Put(std::string key, std::string value, int64_t lease) {
  EtcdOp op = MakeOp(Kind::kPut, std::move(key), {});
  op.value = std::move(value);
  op.lease = lease;
  return op;
}
EtcdOp EtcdOp::Get(std::string key) { return MakeOp(Kind::kRange, std::move(key), {}); }
EtcdOp EtcdOp::GetPrefix(std::string prefix) {
  std::string end = PrefixRangeEnd(prefix);
  return MakeOp(Kind::kRange, std::move(prefix), std::move(end));
}
EtcdOp EtcdOp::Delete(std::string key) { return MakeOp(Kind::kDelete, std::move(key), {}); }
EtcdOp EtcdOp::DeletePrefix(std::string prefix) {
  std::string end = PrefixRangeEnd(prefix);
  return MakeOp(Kind::kDelete, std::move(prefix), std::move(end));
}

// ---- The client ----

Result<std::unique_ptr<EtcdClient>> EtcdClient::Create(std::string_view endpoints,
                                                       const EtcdOptions& options) {
  if (options.timeout_ms == 0) return Error(InvalidArgument("etcd client: timeout_ms must be > 0"));
  STRATA_ASSIGN_OR_RETURN(auto parsed, ParseEtcdEndpoints(endpoints));
  return std::unique_ptr<EtcdClient>(new EtcdClient(std::move(parsed), options));
}

Result<std::string> EtcdClient::Call(std::string_view path, const std::string& body, Retry retry,
                                     uint32_t timeout_ms) {
  const auto timeout = std::chrono::milliseconds(timeout_ms ? timeout_ms : options_.timeout_ms);
  const size_t first = preferred_.load();
  std::string failures;
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    const size_t index = (first + i) % endpoints_.size();
    const EtcdEndpoint& ep = endpoints_[index];
    auto reply = HttpPost(ep, path, body, timeout);
    if (!reply) {
      if (reply.error().failure == HttpFailure::kSent && retry == Retry::kIfNotSent) {
        return Error(Status(reply.error().status.code(),
                            reply.error().status.message() +
                                " (the request was sent: it may have been applied)"));
      }
      failures += (failures.empty() ? "" : "; ") + reply.error().status.message();
      continue;
    }
    const std::string where = ep.url + std::string(path);
    json parsed = json::parse(reply->body, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded() || !parsed.is_object()) {
      // Not the gateway's JSON: not an etcd client URL (or a path this etcd does not serve).
      const std::string head = reply->body.substr(0, 120);
      return Error(IOError("etcd {}: HTTP {} with a body that is not etcd's JSON: '{}'", where,
                           reply->status, head));
    }
    if (internal::EtcdErrorCode(parsed) == 14) {  // Unavailable: try another member
      failures += (failures.empty() ? "" : "; ") +
                  internal::EtcdErrorStatus(parsed, where).message();
      continue;
    }
    preferred_.store(index);
    STRATA_RETURN_IF_ERROR(internal::EtcdErrorStatus(parsed, where));
    return std::move(reply->body);
  }
  return Error(IOError("etcd: no endpoint answered {} ({} tried): {}", path, endpoints_.size(),
                       failures));
}

namespace {

// Calls `path` and parses the reply (already checked to be a JSON object).
Result<json> CallJson(EtcdClient& client, std::string_view path, const json& body,
                      EtcdClient::Retry retry, uint32_t timeout_ms = 0) {
  STRATA_ASSIGN_OR_RETURN(std::string text, client.Call(path, body.dump(), retry, timeout_ms));
  return json::parse(text);
}

// Wraps a parse error with the call it came from.
template <typename T>
Result<T> Context(Result<T> r, std::string_view path) {
  if (r) return r;
  return Error(Status(StatusCode::kIOError,
                      fmt::format("etcd {}: unexpected reply: {}", path, r.error().message())));
}

Result<EtcdRangeResult> ParseRange(const json& reply) {
  EtcdRangeResult out;
  if (auto it = reply.find("kvs"); it != reply.end() && it->is_array()) {
    for (const json& kv : *it) {
      STRATA_ASSIGN_OR_RETURN(EtcdKeyValue parsed, ParseKeyValue(kv));
      out.kvs.push_back(std::move(parsed));
    }
  }
  STRATA_ASSIGN_OR_RETURN(out.count, JsonInt(reply, "count"));
  out.more = reply.value("more", false);
  if (auto it = reply.find("header"); it != reply.end()) {
    STRATA_ASSIGN_OR_RETURN(out.revision, JsonInt(*it, "revision"));
  }
  return out;
}

Result<int64_t> HeaderRevision(const json& reply) {
  auto it = reply.find("header");
  if (it == reply.end()) return int64_t{0};
  return JsonInt(*it, "revision");
}

json OpJson(const EtcdOp& op) {
  json body = {{"key", Base64Encode(op.key)}};
  if (!op.range_end.empty()) body["range_end"] = Base64Encode(op.range_end);
  switch (op.kind) {
    case EtcdOp::Kind::kPut:
      body["value"] = Base64Encode(op.value);
      if (op.lease != 0) body["lease"] = std::to_string(op.lease);
      return {{"requestPut", body}};
    case EtcdOp::Kind::kRange: return {{"requestRange", body}};
    case EtcdOp::Kind::kDelete: return {{"requestDeleteRange", body}};
  }
  return {};
}

json CompareJson(const EtcdCompare& c) {
  static constexpr const char* kTargets[] = {"VERSION", "CREATE", "MOD", "VALUE", "LEASE"};
  static constexpr const char* kOps[] = {"EQUAL", "NOT_EQUAL", "GREATER", "LESS"};
  json body = {{"key", Base64Encode(c.key)},
               {"target", kTargets[static_cast<int>(c.target)]},
               {"result", kOps[static_cast<int>(c.op)]}};
  switch (c.target) {
    case EtcdCompare::Target::kVersion: body["version"] = std::to_string(c.number); break;
    case EtcdCompare::Target::kCreateRevision:
      body["create_revision"] = std::to_string(c.number);
      break;
    case EtcdCompare::Target::kModRevision: body["mod_revision"] = std::to_string(c.number); break;
    case EtcdCompare::Target::kValue: body["value"] = Base64Encode(c.value); break;
    case EtcdCompare::Target::kLease: body["lease"] = std::to_string(c.number); break;
  }
  return body;
}

}  // namespace

Result<int64_t> EtcdClient::Put(std::string_view key, std::string_view value, int64_t lease) {
  json body = {{"key", Base64Encode(key)}, {"value", Base64Encode(value)}};
  if (lease != 0) body["lease"] = std::to_string(lease);
  STRATA_ASSIGN_OR_RETURN(json reply, CallJson(*this, "/v3/kv/put", body, Retry::kIfNotSent));
  return Context(HeaderRevision(reply), "/v3/kv/put");
}

Result<EtcdRangeResult> EtcdClient::Range(std::string_view key, std::string_view range_end,
                                          int64_t limit) {
  json body = {{"key", Base64Encode(key)}};
  if (!range_end.empty()) body["range_end"] = Base64Encode(range_end);
  if (limit > 0) body["limit"] = std::to_string(limit);
  STRATA_ASSIGN_OR_RETURN(json reply, CallJson(*this, "/v3/kv/range", body, Retry::kAlways));
  return Context(ParseRange(reply), "/v3/kv/range");
}

Result<std::optional<EtcdKeyValue>> EtcdClient::Get(std::string_view key) {
  STRATA_ASSIGN_OR_RETURN(EtcdRangeResult r, Range(key, {}));
  if (r.kvs.empty()) return std::optional<EtcdKeyValue>();
  return std::optional<EtcdKeyValue>(std::move(r.kvs.front()));
}

namespace {
Result<int64_t> DeleteRange(EtcdClient& client, std::string_view key, std::string_view range_end) {
  json body = {{"key", Base64Encode(key)}};
  if (!range_end.empty()) body["range_end"] = Base64Encode(range_end);
  STRATA_ASSIGN_OR_RETURN(json reply, CallJson(client, "/v3/kv/deleterange", body,
                                               EtcdClient::Retry::kIfNotSent));
  return Context(JsonInt(reply, "deleted"), "/v3/kv/deleterange");
}
}  // namespace

Result<int64_t> EtcdClient::Delete(std::string_view key) { return DeleteRange(*this, key, {}); }
Result<int64_t> EtcdClient::DeletePrefix(std::string_view prefix) {
  return DeleteRange(*this, prefix, PrefixRangeEnd(prefix));
}

Result<EtcdTxnResult> EtcdClient::Txn(const EtcdTxn& txn) {
  json body = json::object();
  body["compare"] = json::array();
  for (const EtcdCompare& c : txn.compare) body["compare"].push_back(CompareJson(c));
  body["success"] = json::array();
  for (const EtcdOp& op : txn.success) body["success"].push_back(OpJson(op));
  body["failure"] = json::array();
  for (const EtcdOp& op : txn.failure) body["failure"].push_back(OpJson(op));
  STRATA_ASSIGN_OR_RETURN(json reply, CallJson(*this, "/v3/kv/txn", body, Retry::kIfNotSent));
  auto parse = [&]() -> Result<EtcdTxnResult> {
    EtcdTxnResult out;
    out.succeeded = reply.value("succeeded", false);
    STRATA_ASSIGN_OR_RETURN(out.revision, HeaderRevision(reply));
    const std::vector<EtcdOp>& ran = out.succeeded ? txn.success : txn.failure;
    const json empty = json::array();
    const json& responses = reply.contains("responses") ? reply["responses"] : empty;
    if (!responses.is_array() || responses.size() != ran.size()) {
      return Error(InvalidArgument("{} responses for {} operations", responses.size(), ran.size()));
    }
    for (size_t i = 0; i < ran.size(); ++i) {
      EtcdOpResult r;
      r.kind = ran[i].kind;
      const json& one = responses[i];
      if (r.kind == EtcdOp::Kind::kRange) {
        const json inner = one.value("response_range", json::object());
        STRATA_ASSIGN_OR_RETURN(EtcdRangeResult range, ParseRange(inner));
        r.kvs = std::move(range.kvs);
      } else if (r.kind == EtcdOp::Kind::kDelete) {
        const json inner = one.value("response_delete_range", json::object());
        STRATA_ASSIGN_OR_RETURN(r.deleted, JsonInt(inner, "deleted"));
      }
      out.results.push_back(std::move(r));
    }
    return out;
  };
  return Context(parse(), "/v3/kv/txn");
}

Result<EtcdLease> EtcdClient::LeaseGrant(int64_t ttl_s) {
  if (ttl_s <= 0) return Error(InvalidArgument("etcd lease: TTL {} s must be > 0", ttl_s));
  STRATA_ASSIGN_OR_RETURN(json reply, CallJson(*this, "/v3/lease/grant",
                                               json{{"TTL", std::to_string(ttl_s)}},
                                               Retry::kIfNotSent));
  auto parse = [&]() -> Result<EtcdLease> {
    EtcdLease lease;
    STRATA_ASSIGN_OR_RETURN(lease.id, JsonInt(reply, "ID"));
    STRATA_ASSIGN_OR_RETURN(lease.ttl_s, JsonInt(reply, "TTL"));
    if (lease.id == 0) return Error(InvalidArgument("no lease ID in {}", reply.dump()));
    return lease;
  };
  return Context(parse(), "/v3/lease/grant");
}

Result<int64_t> EtcdClient::LeaseKeepAlive(int64_t lease) {
  // A streamed call on the gateway: one request message in, one {"result": ...} out, after
  // which the request body's end closes the stream.
  STRATA_ASSIGN_OR_RETURN(json reply, CallJson(*this, "/v3/lease/keepalive",
                                               json{{"ID", std::to_string(lease)}},
                                               Retry::kAlways));
  const json result = reply.value("result", json::object());
  STRATA_ASSIGN_OR_RETURN(int64_t ttl, Context(JsonInt(result, "TTL"), "/v3/lease/keepalive"));
  // A lease that has expired or was revoked answers with TTL 0 (left out).
  if (ttl <= 0) {
    return Error(NotFound("etcd {}/v3/lease/keepalive: lease {:x} has expired or was revoked",
                          preferred().url, lease));
  }
  return ttl;
}

Status EtcdClient::LeaseRevoke(int64_t lease) {
  return strata::internal::ToStatus(CallJson(*this, "/v3/lease/revoke", json{{"ID", std::to_string(lease)}},
                  Retry::kIfNotSent)
      );
}

Result<int64_t> EtcdClient::LeaseTimeToLive(int64_t lease) {
  STRATA_ASSIGN_OR_RETURN(json reply, CallJson(*this, "/v3/lease/timetolive",
                                               json{{"ID", std::to_string(lease)}},
                                               Retry::kAlways));
  STRATA_ASSIGN_OR_RETURN(int64_t ttl, Context(JsonInt(reply, "TTL"), "/v3/lease/timetolive"));
  if (ttl < 0) {
    return Error(NotFound("etcd {}/v3/lease/timetolive: lease {:x} has expired or was revoked",
                          preferred().url, lease));
  }
  return ttl;
}

Result<EtcdLeaderKey> EtcdClient::Campaign(std::string_view name, int64_t lease,
                                           std::string_view value, uint32_t timeout_ms) {
  json body = {{"name", Base64Encode(name)},
               {"lease", std::to_string(lease)},
               {"value", Base64Encode(value)}};
  STRATA_ASSIGN_OR_RETURN(json reply, CallJson(*this, "/v3/election/campaign", body,
                                               Retry::kIfNotSent, timeout_ms));
  auto parse = [&]() -> Result<EtcdLeaderKey> {
    const json leader = reply.value("leader", json::object());
    EtcdLeaderKey out;
    STRATA_ASSIGN_OR_RETURN(out.name, JsonBytes(leader, "name"));
    STRATA_ASSIGN_OR_RETURN(out.key, JsonBytes(leader, "key"));
    STRATA_ASSIGN_OR_RETURN(out.rev, JsonInt(leader, "rev"));
    STRATA_ASSIGN_OR_RETURN(out.lease, JsonInt(leader, "lease"));
    if (out.key.empty()) return Error(InvalidArgument("no leader key in {}", reply.dump()));
    return out;
  };
  return Context(parse(), "/v3/election/campaign");
}

Result<std::optional<EtcdKeyValue>> EtcdClient::Leader(std::string_view name) {
  auto reply = CallJson(*this, "/v3/election/leader", json{{"name", Base64Encode(name)}},
                        Retry::kAlways);
  if (!reply) {
    // "election: no leader" comes back as gRPC Unknown (code 2), which maps to Internal.
    if (reply.error().message().find("election: no leader") != std::string::npos) {
      return std::optional<EtcdKeyValue>();
    }
    return Error(reply.error());
  }
  STRATA_ASSIGN_OR_RETURN(EtcdKeyValue kv,
                          Context(ParseKeyValue(reply->value("kv", json::object())),
                                  "/v3/election/leader"));
  return std::optional<EtcdKeyValue>(std::move(kv));
}

namespace {
json LeaderJson(const EtcdLeaderKey& leader) {
  return {{"name", Base64Encode(leader.name)},
          {"key", Base64Encode(leader.key)},
          {"rev", std::to_string(leader.rev)},
          {"lease", std::to_string(leader.lease)}};
}
}  // namespace

Status EtcdClient::Resign(const EtcdLeaderKey& leader) {
  return strata::internal::ToStatus(CallJson(*this, "/v3/election/resign", json{{"leader", LeaderJson(leader)}},
                  Retry::kIfNotSent)
      );
}

Status EtcdClient::Proclaim(const EtcdLeaderKey& leader, std::string_view value) {
  return strata::internal::ToStatus(CallJson(*this, "/v3/election/proclaim",
                  json{{"leader", LeaderJson(leader)}, {"value", Base64Encode(value)}},
                  Retry::kIfNotSent)
      );
}

}  // namespace strata::cluster
