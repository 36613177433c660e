#pragma once
// A small etcd v3 client of our own, over etcd's JSON gateway (grpc-gateway, HTTP/1.1 POST to
// /v3/...; etcd 3.4 serves /v3/ beside /v3beta/). Keys and values are bytes (std::string),
// base64 on the wire; 64-bit numbers travel as JSON strings and fields at their default value
// are left out of replies (proto3's JSON mapping), so a missing field reads as 0 / false.
//
//   STRATA_ASSIGN_OR_RETURN(auto etcd, EtcdClient::Create("http://127.0.0.1:2379"));
//   STRATA_ASSIGN_OR_RETURN(EtcdLease lease, etcd->LeaseGrant(5));
//   STRATA_RETURN_IF_ERROR(etcd->Put("/strata/nodes/n1", "127.0.0.1:7420", lease.id).status());
//   STRATA_ASSIGN_OR_RETURN(auto kv, etcd->Get("/strata/nodes/n1"));   // optional<EtcdKeyValue>
//   // compare-and-swap: create the key only if it does not exist
//   STRATA_ASSIGN_OR_RETURN(EtcdTxnResult r, etcd->Txn({.compare = {EtcdCompare::Absent("k")},
//                                                       .success = {EtcdOp::Put("k", "v")}}));
//
// Endpoints and failover: several client URLs (one etcd cluster). A call goes to the endpoint
// that last answered, and moves on to the next when an endpoint cannot be reached (connect
// refused or timed out), or answers "unavailable" (gRPC code 14: no raft leader, stopping).
// A call whose request was sent but whose reply did not come in time is retried on the next
// endpoint only when it is safe to repeat (range, lease keep-alive / time-to-live, leader);
// a put, delete, txn, grant, revoke or campaign fails instead, since etcd may have applied it.
//
// Errors (Status, the message naming the endpoint URL and path, e.g.
// "etcd http://127.0.0.1:2379/v3/kv/put: ..."):
//   IOError          no endpoint reachable / a timeout / a reply that is not etcd's JSON /
//                    etcd's codes 1, 4 and 14 (cancelled on etcd's side -- its gateway, stopping,
//                    says "the client connection is closing" --, deadline, unavailable: retry)
//   NotFound         etcd's code 5 (e.g. a lease that does not exist or has expired)
//   InvalidArgument  etcd's codes 3 and 9 (bad request, failed precondition), bad arguments here
//   others           as etcd's gRPC code maps (ResourceExhausted, OutOfRange, Unimplemented;
//                    anything else Internal). Cancelled only ever means the caller's own
//                    EtcdWatch::Cancel (or stop), which loops take as "stop".
//
// Thread-safe: every call may run from any thread, concurrently (each call has its own
// connection; the only shared state is the endpoint last answering, an atomic).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/etcd_http.h"
#include "core/status.h"

namespace strata::cluster {

struct EtcdOptions {
  // The longest one call may take against one endpoint: connect, request and reply.
  uint32_t timeout_ms = 3000;
};

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;  // 0 after a delete (in watch events)
  int64_t lease = 0;    // 0: none
};

struct EtcdRangeResult {
  std::vector<EtcdKeyValue> kvs;
  int64_t count = 0;     // keys in the range (kvs may hold fewer with a limit)
  bool more = false;     // a limit cut the reply short
  int64_t revision = 0;  // the store's revision when the range was read
};

// The end of the range holding every key that starts with `prefix` ("\0" for an empty
// prefix: every key), as etcd's range_end.
std::string PrefixRangeEnd(std::string_view prefix);

// One comparison of a transaction.
struct EtcdCompare {
  enum class Target { kVersion, kCreateRevision, kModRevision, kValue, kLease };
  enum class Op { kEqual, kNotEqual, kGreater, kLess };
  std::string key;
  Target target = Target::kVersion;
  Op op = Op::kEqual;
  int64_t number = 0;  // for kVersion, kCreateRevision, kModRevision, kLease
  std::string value;   // for kValue

  // version == 0: the key does not exist.
  static EtcdCompare Absent(std::string key);
  static EtcdCompare Exists(std::string key);  // version > 0
  static EtcdCompare ValueIs(std::string key, std::string value);
  static EtcdCompare ModRevisionIs(std::string key, int64_t revision);
  static EtcdCompare CreateRevisionIs(std::string key, int64_t revision);
};

// One operation of a transaction.
struct EtcdOp {
  enum class Kind { kPut, kRange, kDelete };
  Kind kind = Kind::kRange;
  std::string key;
  std::string range_end;  // empty: the one key
  std::string value;      // kPut
  int64_t lease = 0;      // kPut

  static EtcdOp Put(std::string key, std::string value, int64_t lease = 0);
  static EtcdOp Get(std::string key);
  static EtcdOp GetPrefix(std::string prefix);
  static EtcdOp Delete(std::string key);
  static EtcdOp DeletePrefix(std::string prefix);
};

struct EtcdTxn {
  std::vector<EtcdCompare> compare{};
  std::vector<EtcdOp> success{};
  std::vector<EtcdOp> failure{};
};

// What one operation of a transaction answered.
struct EtcdOpResult {
  EtcdOp::Kind kind = EtcdOp::Kind::kRange;
  std::vector<EtcdKeyValue> kvs;  // kRange
  int64_t deleted = 0;            // kDelete
};

struct EtcdTxnResult {
  bool succeeded = false;  // every comparison held: `success` ran (else `failure`)
  int64_t revision = 0;
  std::vector<EtcdOpResult> results;  // one per operation of the branch that ran
};

struct EtcdLease {
  int64_t id = 0;
  int64_t ttl_s = 0;
};

// A campaign's win: the key etcd's election API made for this candidate.
struct EtcdLeaderKey {
  std::string name;  // the election
  std::string key;   // name + "/" + the lease in hex
  int64_t rev = 0;   // the key's create revision (fencing: compare it in a txn)
  int64_t lease = 0;
};

class EtcdClient {
 public:
  // `endpoints`: comma-separated client URLs (ParseEtcdEndpoints). InvalidArgument for a bad
  // URL or a zero timeout. Does not contact etcd.
  static Result<std::unique_ptr<EtcdClient>> Create(std::string_view endpoints,
                                                    const EtcdOptions& options = {});
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  const std::vector<EtcdEndpoint>& endpoints() const { return endpoints_; }
  const EtcdOptions& options() const { return options_; }
  // The endpoint the next call tries first.
  const EtcdEndpoint& preferred() const { return endpoints_[preferred_.load()]; }

  // ---- KV ----
  // Returns the revision of the write. `lease` 0: the key has none.
  Result<int64_t> Put(std::string_view key, std::string_view value, int64_t lease = 0);
  Result<std::optional<EtcdKeyValue>> Get(std::string_view key);
  // Keys in [key, range_end), at most `limit` (0: all), in key order.
  Result<EtcdRangeResult> Range(std::string_view key, std::string_view range_end,
                                int64_t limit = 0);
  Result<EtcdRangeResult> GetPrefix(std::string_view prefix) {
    return Range(prefix, PrefixRangeEnd(prefix));
  }
  // Returns the number of keys deleted.
  Result<int64_t> Delete(std::string_view key);
  Result<int64_t> DeletePrefix(std::string_view prefix);
  Result<EtcdTxnResult> Txn(const EtcdTxn& txn);

  // ---- Leases ----
  Result<EtcdLease> LeaseGrant(int64_t ttl_s);
  // One keep-alive; returns the lease's TTL again (seconds). NotFound when the lease has
  // expired or was revoked.
  Result<int64_t> LeaseKeepAlive(int64_t lease);
  // NotFound when it does not exist (any more).
  Status LeaseRevoke(int64_t lease);
  // Seconds left; NotFound when expired or unknown.
  Result<int64_t> LeaseTimeToLive(int64_t lease);

  // ---- Election (etcd's v3election service) ----
  // Waits until this candidate (`value`, its key held by `lease`) leads election `name`, for at
  // most `timeout_ms` (0: the client's timeout); IOError on timeout (etcd withdraws the
  // candidate when the connection closes).
  Result<EtcdLeaderKey> Campaign(std::string_view name, int64_t lease, std::string_view value,
                                 uint32_t timeout_ms = 0);
  // The current leader's key and value; nullopt when there is none.
  Result<std::optional<EtcdKeyValue>> Leader(std::string_view name);
  Status Resign(const EtcdLeaderKey& leader);
  // Changes the leader's value (fails unless `leader` still leads).
  Status Proclaim(const EtcdLeaderKey& leader, std::string_view value);

  // ---- Low level ----
  // Whether a call may be sent again after its request went out (see the header comment).
  enum class Retry { kIfNotSent, kAlways };
  // POSTs `body` (JSON text) to `path` with failover; returns the reply's JSON text once it is
  // not an error (etcd's error replies become a Status). For EtcdWatch and tests.
  Result<std::string> Call(std::string_view path, const std::string& body, Retry retry,
                           uint32_t timeout_ms = 0);

 private:
  EtcdClient(std::vector<EtcdEndpoint> endpoints, const EtcdOptions& options)
      : endpoints_(std::move(endpoints)), options_(options) {}

  const std::vector<EtcdEndpoint> endpoints_;
  const EtcdOptions options_;
  std::atomic<size_t> preferred_{0};
};

// ---- Watches (etcd_watch.cc) ----

struct EtcdEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  EtcdKeyValue kv;  // a delete: the key and its mod_revision only
};

struct EtcdWatchBatch {
  int64_t revision = 0;  // the store's revision this batch brings the watcher up to
  std::vector<EtcdEvent> events;
};

// One watch stream (POST /v3/watch, a streamed reply): the events on a key or range from a
// revision on, in order. Its own connection, to the endpoint preferred when it was opened; a
// stream that breaks (etcd restarted or unreachable) is not resumed here -- Next fails, and
// the owner opens a new watch from its last revision + 1.
//
// Thread-compatible: one thread calls Next; Cancel may be called from any thread, at any time.
class EtcdWatch {
 public:
  // Starts watching [key, range_end) (range_end empty: the one key) from `start_revision`
  // (0: from now). Fails when no endpoint accepts the watch; OutOfRange when
  // `start_revision` has been compacted away (read the range again, then watch from there).
  static Result<std::unique_ptr<EtcdWatch>> Open(EtcdClient& client, std::string_view key,
                                                 std::string_view range_end,
                                                 int64_t start_revision = 0);
  ~EtcdWatch();
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

  // The next batch of events, waiting at most `wait_ms`; nullopt when none came in time.
  // IOError when the stream broke (the watch is done; open another), Cancelled after Cancel,
  // OutOfRange when etcd cancels the watch because its revision was compacted.
  Result<std::optional<EtcdWatchBatch>> Next(uint32_t wait_ms);
  // Ends the watch: a Next waiting now, or any later one, fails with Cancelled.
  void Cancel();

  // The revision the watch has delivered up to (its start - 1 before any batch).
  int64_t revision() const { return revision_; }
  const std::string& url() const;

  class Impl;

 private:
  explicit EtcdWatch(std::unique_ptr<Impl> impl, int64_t revision);
  std::unique_ptr<Impl> impl_;
  int64_t revision_ = 0;
};

}  // namespace strata::cluster
