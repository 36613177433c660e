#pragma once
// Strata's C++ client: one TCP connection to a Strata server, speaking the wire
// protocol of protocol/protocol.h (docs/PROTOCOL.md).
//
//   STRATA_ASSIGN_OR_RETURN(auto client, client::Client::Connect("127.0.0.1", 7420));
//   STRATA_RETURN_IF_ERROR(client->CreateCollection({.name = "docs", .dim = 3}));
//   std::vector<Record> records = {{.id = 1, .vector = {0.1f, 0.2f, 0.3f}}};
//   STRATA_ASSIGN_OR_RETURN(uint64_t applied, client->Upsert("docs", 3, records));
//   STRATA_ASSIGN_OR_RETURN(auto hits, client->Search("docs", query, {.k = 10}));
//
// Errors:
//   - An error frame from the server becomes the Status of protocol::StatusFromError (its
//     message carries the server's text). The connection stays usable.
//   - A request the client can refuse before sending (a frame over the server's limit, an
//     upsert record whose vector is not `dim` long, an empty query, a request body that is not
//     its opcode's) fails with InvalidArgument and nothing is sent. The connection stays usable.
//   - A broken connection -- end of stream, reset, an I/O timeout, a frame that cannot be
//     decoded, a reply that does not belong to any request -- fails the call with IOError, and
//     the Client is closed for good: every later call fails at once with IOError
//     "connection to HOST:PORT is closed: <first failure>". Connect again to recover.
//
// The types it takes and returns -- CollectionSpec, CollectionInfo, SearchOptions, Record,
// Attributes, Neighbor, Explain -- are the engine's own (api/, shared with engine/strata.h),
// so code moves between the embedded engine and a server without converting.
// SearchOptions::prepared_filter is the embedded engine's: a call that sets it fails with
// InvalidArgument (send `filter` text). Metric and strategy names: ParseMetric /
// MetricName (core/metric.h), ParseSearchStrategy / SearchStrategyName (api/types.h).
//
// The client links strata_protocol, strata_api and strata_core only (never the engine or
// the server).

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "api/explain.h"
#include "api/types.h"
#include "core/status.h"
#include "core/types.h"
#include "protocol/protocol.h"

namespace strata::client {

struct ClientOptions {
  std::string token{};                   // sent in the hello; empty unless the server needs one
  std::string client_name = "strata-client";
  uint32_t connect_timeout_ms = 5000;    // per address tried; 0: no limit
  // Longest wait for the socket to make progress (a byte to arrive, room to send) while a
  // call is in progress; past it the connection is closed. 0: no limit.
  uint32_t io_timeout_ms = 60000;
  // The same for CreateCollection, DropCollection, Flush, Compact and Snapshot, which the server may
  // work on for minutes (building, writing or merging segments) before it answers; with the
  // I/O timeout the connection would be closed under a call the server is still doing.
  // 0 (the default): no limit.
  uint32_t admin_timeout_ms = 0;
};

// One connection.
//
// Thread-compatible, not thread-safe: one Client per thread (the load mode of strata-cli opens
// one per connection). Calls on one Client must not overlap.
//
// Every request carries a request id chosen here (1, 2, 3, ...); a response is matched to its
// request by id, so the server may answer pipelined requests in any order.
class Client {
 public:
  // Resolves `host` (name or address, IPv4 or IPv6), connects with a timeout, sets
  // TCP_NODELAY and sends the hello. Fails with IOError when no address accepts the
  // connection, and with the server's error (e.g. unauthenticated) when it refuses the hello.
  static Result<std::unique_ptr<Client>> Connect(const std::string& host, uint16_t port,
                                                 const ClientOptions& options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // What the server reported in its hello reply: version and limits.
  const protocol::HelloReply& server() const { return server_; }
  // False once the connection has broken (see the header comment).
  bool is_open() const { return fd_ >= 0; }
  // "HOST:PORT", as given to Connect.
  const std::string& peer() const { return peer_; }

  Status Ping();
  // CreateCollection, DropCollection, Flush and Compact wait under admin_timeout_ms (no limit
  // by default), not io_timeout_ms.
  Status CreateCollection(const CollectionSpec& spec);
  Status DropCollection(const std::string& name);
  Result<std::vector<CollectionInfo>> ListCollections();
  Result<CollectionInfo> DescribeCollection(const std::string& name);

  // Applied atomically as one write batch; returns the operations applied. Every record's
  // vector must have `dim` components.
  Result<uint64_t> Upsert(const std::string& collection, uint32_t dim,
                          std::span<const Record> records);
  // Returns the number of ids in the request (the server's `applied`), whether or not each
  // id existed: deleting a missing id is not an error.
  Result<uint64_t> Delete(const std::string& collection, std::span<const VectorId> ids);
  // One entry per requested id, in order; nullopt for an id that is not there.
  Result<std::vector<std::optional<Record>>> Get(const std::string& collection,
                                                           std::span<const VectorId> ids);

  Result<std::vector<Neighbor>> Search(const std::string& collection,
                                       std::span<const float> query,
                                       const SearchOptions& options);
  // `count` queries, row-major `count * dim` floats, in one request and one response.
  Result<std::vector<std::vector<Neighbor>>> SearchBatch(const std::string& collection,
                                                         const float* queries, uint32_t dim,
                                                         uint32_t count,
                                                         const SearchOptions& options);
  // The results and the server's EXPLAIN of the plan (the engine's strata::Explain;
  // ToString / ToJson give its text forms).
  Result<std::pair<std::vector<Neighbor>, strata::Explain>> Explain(
      const std::string& collection, std::span<const float> query,
      const SearchOptions& options);

  // ---- Records by string key (api/types.h has the rule) ----
  // Upserts each record by its Record::key (ids are ignored: the server keeps the id of a
  // live record with the key, or assigns a fresh one); one atomic batch. Returns the
  // records written.
  Result<uint64_t> UpsertKeyed(const std::string& collection, uint32_t dim,
                               std::span<const Record> records);
  // Deletes the live records with these keys (a missing key is not an error); returns the
  // number of keys in the request.
  Result<uint64_t> DeleteKeyed(const std::string& collection, std::span<const std::string> keys);
  // One entry per requested key, in order (Record::key set); nullopt for a key not there.
  Result<std::vector<std::optional<Record>>> GetKeyed(const std::string& collection,
                                                      std::span<const std::string> keys);
  // `count` (>= 1) queries, row-major; every hit with its key (empty: written by id).
  Result<std::vector<std::vector<KeyedNeighbor>>> SearchKeyed(const std::string& collection,
                                                              const float* queries, uint32_t dim,
                                                              uint32_t count,
                                                              const SearchOptions& options);
  // search_with (docs/PROTOCOL.md): `count` (>= 1) queries, row-major, in one request; every
  // hit with its key (empty: written by id) and, with options.with_attributes, its attributes
  // (no get per hit); and the server's warnings about the filter -- attributes no record has,
  // comparisons with a type an attribute never holds (Engine::FilterWarnings) -- which say why
  // a filter may match nothing. A server that predates search_with: Unimplemented, saying so.
  Result<protocol::SearchWithReply> SearchWith(const std::string& collection, const float* queries,
                                               uint32_t dim, uint32_t count, const SearchOptions& options);
  // ---- Vectors as float16, int8 or uint8 (core/element.h), sent as they are ----
  // upsert_typed (docs/PROTOCOL.md): `rows` holds records.size() x dim values of `element`,
  // row-major, little-endian (2 or 1 bytes each instead of float32's 4); the records' own
  // vectors must be empty (float32 goes through Upsert). By id, or with `keyed` by each
  // Record::key. The server widens each row to float32 as it adds it to the write batch (its log
  // keeps the row in its own type).
  // A server that predates it: Unimplemented, saying so.
  Result<uint64_t> UpsertTyped(const std::string& collection, uint32_t dim, ElementType element,
                               std::span<const uint8_t> rows, std::span<const Record> records,
                               bool keyed = false);
  // search_typed: SearchWith with `count` x dim query values of `element` in `queries`.
  Result<protocol::SearchWithReply> SearchTyped(const std::string& collection, ElementType element,
                                                std::span<const uint8_t> queries, uint32_t dim, uint32_t count,
                                                const SearchOptions& options);
  // A page of keys in id order from `cursor` (0: the start); the page's next_cursor
  // continues, 0 when done (Engine::ListKeys).
  Result<KeyPage> ListKeys(const std::string& collection, uint64_t cursor, uint32_t count);

  Result<protocol::StatsReply> Stats();
  Status Flush(const std::string& collection);
  Status Compact(const std::string& collection);
  // A consistent copy of the collection, taken while writes go on (Engine::Snapshot), written
  // by the server as the new folder `name` of its snapshot_dir; the reply says the path (on
  // the server's host) and the last write batch it holds. `name` is one folder name of
  // [A-Za-z0-9._-] (not . or ..). The server refuses without a snapshot_dir (Unimplemented,
  // saying how to enable it), a bad name (InvalidArgument), and a name that exists
  // (AlreadyExists: nothing is overwritten).
  Result<protocol::SnapshotReply> Snapshot(const std::string& collection, const std::string& name);
  // Between cluster nodes (docs/CLUSTER.md, "Catch-up"): a consistent copy of the shard that
  // `shard_address` names, taken on that node now, its files listed; then a piece of one
  // (at most protocol::kMaxShardFileChunk bytes from `offset`; fewer only at its end); then
  // the copy let go (its files removed there). Under admin_timeout_ms (ShardFiles) and the
  // request timeout (the other two).
  Result<protocol::ShardFilesReply> ShardFiles(const std::string& shard_address);
  Result<std::string> ShardFileRead(const std::string& shard_address, const std::string& token,
                                    const std::string& path, uint64_t offset, uint32_t length);
  Status ShardFilesDone(const std::string& shard_address, const std::string& token);

  // One kSearch frame per query with up to `window` (>= 1) in flight, matched by request id.
  // Results come back in query order. The first error (an error frame, or a reply with the
  // wrong shape) fails the call, after the requests already in flight have been drained, so
  // the connection stays usable; a broken connection fails it at once.
  Result<std::vector<std::vector<Neighbor>>> SearchPipelined(
      const std::string& collection, const float* queries, uint32_t dim, uint32_t count,
      const SearchOptions& options, uint32_t window = 32);

  // Low level, for load generators: Send writes one request without waiting and returns its
  // request id; Receive returns the next response to a request sent with Send (in the order
  // the server answers), with error frames as Response{Op::kError, ErrorReply}. Receive with
  // nothing outstanding fails with InvalidArgument (it would wait forever).
  Result<uint64_t> Send(const protocol::Request& request);
  Result<std::pair<uint64_t, protocol::Response>> Receive();
  // Like Receive, but waits at most `wait` for a whole response; nullopt when none arrived in
  // time (bytes of a partly received frame are kept for the next call). The connection's I/O
  // timeout does not apply. For open-loop load generation, hence the microsecond resolution.
  Result<std::optional<std::pair<uint64_t, protocol::Response>>> Poll(
      std::chrono::microseconds wait);
  // Requests sent with Send whose responses have not been returned by Receive or Poll yet.
  size_t outstanding() const { return user_outstanding_ + stashed_.size(); }

 private:
  struct InFlight {
    protocol::Op op;
    bool user;  // sent by Send (answered through Receive / Poll)
  };

  Client(int fd, std::string peer, const ClientOptions& options);

  // Encodes and writes one request frame and records it as in flight.
  Result<uint64_t> SendRequest(const protocol::Request& request, bool user);
  struct Received {
    uint64_t id = 0;
    bool user = false;
    protocol::Response response;
  };
  // Reads one whole response frame and checks that it answers a request in flight, with the
  // request's opcode or an error. Without a deadline the I/O timeout applies and running out
  // of it closes the connection; with one, nullopt is returned once it has passed.
  Result<std::optional<Received>> ReadResponse(
      std::optional<std::chrono::steady_clock::time_point> deadline);
  // Reads responses until the one to `id` arrives, stashing responses to Send requests.
  Result<protocol::Response> AwaitResponse(uint64_t id);
  // Sends one request and waits for its response. Error frames become a Status. The second
  // form waits under `io_timeout_ms` (0: no limit) instead of options_.io_timeout_ms.
  Result<protocol::Response> Call(const protocol::Request& request);
  Result<protocol::Response> Call(const protocol::Request& request, uint32_t io_timeout_ms);
  // Keeps a response to a Send request for Receive / Poll.
  void Stash(uint64_t id, protocol::Response response);

  // Closes the socket and remembers why; returns the error for the caller to return.
  Status Break(Status why);
  Status ClosedError() const;
  Status WriteAll(std::span<const uint8_t> bytes);
  // Waits for `events` on the socket until `deadline` (nullopt: forever); the events that
  // occurred, 0 on timeout.
  Result<short> WaitFor(short events, std::optional<std::chrono::steady_clock::time_point> deadline);
  // Appends whatever bytes are readable now to the receive buffer (without waiting).
  Status ReadAvailable();
  // The deadline of one wait for progress under the I/O timeout (nullopt: no limit).
  std::optional<std::chrono::steady_clock::time_point> IoDeadline() const;
  // The last error frame among the whole frames received but not consumed yet, as text, or ""
  // when there is none: a server that closes a connection says why in an error frame first.
  std::string BufferedServerError() const;

  int fd_ = -1;
  std::string peer_;
  ClientOptions options_;
  uint32_t io_timeout_ms_;  // the I/O timeout of the call in progress
  protocol::HelloReply server_;
  Status broken_;
  uint64_t next_request_id_ = 1;
  std::vector<uint8_t> send_buffer_;
  // Received bytes not yet consumed: [recv_begin_, recv_end_) of recv_buffer_.
  std::vector<uint8_t> recv_buffer_;
  size_t recv_begin_ = 0;
  size_t recv_end_ = 0;
  std::unordered_map<uint64_t, InFlight> in_flight_;
  size_t user_outstanding_ = 0;  // in_flight_ entries with user == true
  // Responses to Send requests that arrived while another call waited for its own, oldest first.
  std::deque<std::pair<uint64_t, protocol::Response>> stashed_;
};

}  // namespace strata::client
