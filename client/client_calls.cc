// The typed calls of Client (one request, its reply checked for shape) and the
// pipelined search. The connection they run
// over -- framing, request ids, timeouts, the broken state -- is in client.cc.

#include <algorithm>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/core.h>

#include "client/client.h"
#include "client/client_internal.h"

namespace strata::client {
namespace {

using detail::Body;
using detail::ErrorStatus;
using protocol::Op;
using protocol::Request;
using protocol::Response;

Request SearchRequestFor(Op op, const std::string& collection, const float* queries, uint32_t dim,
                         uint32_t count, const SearchOptions& options) {
  protocol::SearchRequest search;
  search.collection = collection;
  search.options = options;
  search.dim = dim;
  search.count = count;
  search.queries.assign(queries, queries + size_t(dim) * count);
  return Request{.op = op, .body = std::move(search)};
}

}  // namespace

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

Status Client::Ping() {
  STRATA_ASSIGN_OR_RETURN(Response r, Call(Request{.op = Op::kPing, .body = protocol::PingRequest{}}));
  return internal::ToStatus(Body<protocol::EmptyReply>(std::move(r), Op::kPing));
}

namespace {
// An error reply to an opcode the server does not know (it predates the opcode).
bool IsUnknownOp(const Status& s) {
  return s.code() == StatusCode::kUnimplemented && s.message().find("UnknownOp") != std::string::npos;
}
}  // namespace

Status Client::CreateCollection(const CollectionSpec& spec) {
  // A spec that version 1's create_collection carries goes as before, so that servers
  // predating create_collection_with (23) still take it.
  const bool with = spec.codes != VectorCodes::kNone || spec.rerank != 0;
  const Op op = with ? Op::kCreateCollectionWith : Op::kCreateCollection;
  auto r = Call(Request{.op = op, .body = protocol::CreateCollectionRequest{spec}}, options_.admin_timeout_ms);
  if (!r && with && is_open() && IsUnknownOp(r.error())) {
    return Unimplemented(
        "create_collection: the server ({}) predates create_collection_with (opcode 23), which "
        "carries the collection's codes; upgrade it, or create the collection without codes",
        server_.server_version);
  }
  if (!r) return r.error();
  return internal::ToStatus(Body<protocol::EmptyReply>(std::move(*r), op));
}

Status Client::DropCollection(const std::string& name) {
  STRATA_ASSIGN_OR_RETURN(Response r, Call(Request{.op = Op::kDropCollection,
                                                   .body = protocol::DropCollectionRequest{name}},
                                           options_.admin_timeout_ms));
  return internal::ToStatus(Body<protocol::EmptyReply>(std::move(r), Op::kDropCollection));
}

Result<std::vector<CollectionInfo>> Client::ListCollections() {
  // list_collections_with (26) carries each collection's whole spec (codes, rerank); a server
  // that predates it answers list_collections (5), whose collections have no codes.
  Op op = Op::kListCollectionsWith;
  auto r = Call(Request{.op = op, .body = protocol::ListCollectionsRequest{}});
  if (!r && is_open() && IsUnknownOp(r.error())) {
    op = Op::kListCollections;
    r = Call(Request{.op = op, .body = protocol::ListCollectionsRequest{}});
  }
  if (!r) return Error(r.error());
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::ListCollectionsReply>(std::move(*r), op));
  return std::move(reply.collections);
}

Result<CollectionInfo> Client::DescribeCollection(const std::string& name) {
  // describe_collection_with (24) carries the whole spec; a server that predates it
  // answers describe_collection (6), whose collections have no codes.
  Op op = Op::kDescribeCollectionWith;
  auto r = Call(Request{.op = op, .body = protocol::DescribeCollectionRequest{name}});
  if (!r && is_open() && IsUnknownOp(r.error())) {
    op = Op::kDescribeCollection;
    r = Call(Request{.op = op, .body = protocol::DescribeCollectionRequest{name}});
  }
  if (!r) return Error(r.error());
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::DescribeCollectionReply>(std::move(*r), op));
  return std::move(reply.info);
}

Result<uint64_t> Client::Upsert(const std::string& collection, uint32_t dim,
                                std::span<const Record> records) {
  if (fd_ < 0) return Error(ClosedError());
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i].vector.size() != dim) {
      return Error(InvalidArgument("upsert: record {} (id {}) has {} components, expected dim {}",
                                   i, records[i].id, records[i].vector.size(), dim));
    }
  }
  protocol::UpsertRequest upsert;
  upsert.collection = collection;
  upsert.dim = dim;
  upsert.records.assign(records.begin(), records.end());
  STRATA_ASSIGN_OR_RETURN(Response r, Call(Request{.op = Op::kUpsert, .body = std::move(upsert)}));
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::WriteReply>(std::move(r), Op::kUpsert));
  return reply.applied;
}

namespace {
// A typed call answered UnknownOp by a server that predates it.
bool PredatesOp(const Status& s) {
  return s.code() == StatusCode::kUnimplemented && s.message().find("UnknownOp") != std::string::npos;
}
}  // namespace

Result<uint64_t> Client::UpsertTyped(const std::string& collection, uint32_t dim, ElementType element,
                                     std::span<const uint8_t> rows, std::span<const Record> records, bool keyed) {
  if (fd_ < 0) return Error(ClosedError());
  if (element == ElementType::kFloat32 || static_cast<uint8_t>(element) > kLastElementType) {
    return Error(InvalidArgument("upsert_typed: element type {} (send float16, int8 or uint8; float32 through upsert)",
                                 ElementTypeName(element)));
  }
  const uint64_t need = uint64_t{records.size()} * dim * ElementSize(element);
  if (rows.size() != need) {
    return Error(InvalidArgument("upsert_typed: {} bytes of {} values for {} records of dim {} (needs {})",
                                 rows.size(), ElementTypeName(element), records.size(), dim, need));
  }
  protocol::UpsertRequest upsert;
  upsert.collection = collection;
  upsert.dim = dim;
  upsert.element = element;
  upsert.keyed = keyed;
  upsert.records.reserve(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    if (!records[i].vector.empty()) {
      return Error(InvalidArgument("upsert_typed: record {} carries float32 components; its vector is in `rows`", i));
    }
    if (keyed) {
      if (Status s = ValidateKey(records[i].key); !s.ok()) {
        return Error(s.WithContext(fmt::format("upsert_typed: record {}", i)));
      }
    }
    upsert.records.push_back(Record{.id = records[i].id, .vector = {}, .attributes = records[i].attributes,
                                    .key = records[i].key});
  }
  upsert.elements.assign(rows.begin(), rows.end());
  auto r = Call(Request{.op = Op::kUpsertTyped, .body = std::move(upsert)});
  if (!r && is_open() && PredatesOp(r.error())) {
    return Error(Unimplemented("upsert_typed: the server ({}) predates upsert_typed (opcode 29); send float32 "
                               "vectors through upsert instead",
                               server_.server_version));
  }
  if (!r) return Error(r.error());
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::WriteReply>(std::move(*r), Op::kUpsertTyped));
  return reply.applied;
}

Result<protocol::SearchWithReply> Client::SearchTyped(const std::string& collection, ElementType element,
                                                      std::span<const uint8_t> queries, uint32_t dim,
                                                      uint32_t count, const SearchOptions& options) {
  if (fd_ < 0) return Error(ClosedError());
  if (element == ElementType::kFloat32 || static_cast<uint8_t>(element) > kLastElementType) {
    return Error(InvalidArgument("search_typed: element type {} (send float16, int8 or uint8; float32 through "
                                 "search_with)",
                                 ElementTypeName(element)));
  }
  if (count == 0) return protocol::SearchWithReply{options.with_attributes, {}, {}, {}};
  if (dim == 0) return Error(InvalidArgument("search_typed: dim must be > 0"));
  const uint64_t need = uint64_t{count} * dim * ElementSize(element);
  if (queries.size() != need) {
    return Error(InvalidArgument("search_typed: {} bytes of {} values for {} queries of dim {} (needs {})",
                                 queries.size(), ElementTypeName(element), count, dim, need));
  }
  protocol::SearchRequest search{.collection = collection, .options = options, .dim = dim, .count = count};
  search.element = element;
  search.elements.assign(queries.begin(), queries.end());
  auto r = Call(Request{.op = Op::kSearchTyped, .body = std::move(search)});
  if (!r && is_open() && PredatesOp(r.error())) {
    return Error(Unimplemented("search_typed: the server ({}) predates search_typed (opcode 30); send float32 "
                               "queries instead",
                               server_.server_version));
  }
  if (!r) return Error(r.error());
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::SearchWithReply>(std::move(*r), Op::kSearchTyped));
  if (reply.results.size() != count) {
    return Error(Internal("search_typed: the server answered {} result lists for {} queries", reply.results.size(),
                          count));
  }
  return reply;
}

Result<uint64_t> Client::Delete(const std::string& collection, std::span<const VectorId> ids) {
  protocol::DeleteRequest del;
  del.collection = collection;
  del.ids.assign(ids.begin(), ids.end());
  STRATA_ASSIGN_OR_RETURN(Response r, Call(Request{.op = Op::kDelete, .body = std::move(del)}));
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::WriteReply>(std::move(r), Op::kDelete));
  return reply.applied;
}

Result<std::vector<std::optional<Record>>> Client::Get(const std::string& collection,
                                                                 std::span<const VectorId> ids) {
  protocol::GetRequest get;
  get.collection = collection;
  get.ids.assign(ids.begin(), ids.end());
  STRATA_ASSIGN_OR_RETURN(Response r, Call(Request{.op = Op::kGet, .body = std::move(get)}));
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::GetReply>(std::move(r), Op::kGet));
  if (reply.records.size() != ids.size()) {
    return Error(Internal("get: the server answered {} records for {} ids", reply.records.size(),
                          ids.size()));
  }
  return std::move(reply.records);
}

Result<uint64_t> Client::UpsertKeyed(const std::string& collection, uint32_t dim,
                                     std::span<const Record> records) {
  if (fd_ < 0) return Error(ClosedError());
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i].vector.size() != dim) {
      return Error(InvalidArgument("upsert_keyed: record {} (key '{}') has {} components, expected dim {}", i,
                                   KeyForMessage(records[i].key), records[i].vector.size(), dim));
    }
    if (Status s = ValidateKey(records[i].key); !s.ok()) {
      return Error(s.WithContext(fmt::format("upsert_keyed: record {}", i)));
    }
  }
  protocol::UpsertRequest upsert;
  upsert.collection = collection;
  upsert.dim = dim;
  upsert.records.assign(records.begin(), records.end());
  STRATA_ASSIGN_OR_RETURN(Response r, Call(Request{.op = Op::kUpsertKeyed, .body = std::move(upsert)}));
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::WriteReply>(std::move(r), Op::kUpsertKeyed));
  return reply.applied;
}

Result<uint64_t> Client::DeleteKeyed(const std::string& collection, std::span<const std::string> keys) {
  protocol::KeysRequest del{collection, {keys.begin(), keys.end()}};
  STRATA_ASSIGN_OR_RETURN(Response r, Call(Request{.op = Op::kDeleteKeyed, .body = std::move(del)}));
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::WriteReply>(std::move(r), Op::kDeleteKeyed));
  return reply.applied;
}

Result<std::vector<std::optional<Record>>> Client::GetKeyed(const std::string& collection,
                                                            std::span<const std::string> keys) {
  protocol::KeysRequest get{collection, {keys.begin(), keys.end()}};
  STRATA_ASSIGN_OR_RETURN(Response r, Call(Request{.op = Op::kGetKeyed, .body = std::move(get)}));
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::GetReply>(std::move(r), Op::kGetKeyed));
  if (reply.records.size() != keys.size()) {
    return Error(Internal("get_keyed: the server answered {} records for {} keys", reply.records.size(),
                          keys.size()));
  }
  return std::move(reply.records);
}

Result<std::vector<std::vector<KeyedNeighbor>>> Client::SearchKeyed(const std::string& collection,
                                                                    const float* queries, uint32_t dim,
                                                                    uint32_t count, const SearchOptions& options) {
  if (fd_ < 0) return Error(ClosedError());
  if (count == 0) return std::vector<std::vector<KeyedNeighbor>>();
  if (dim == 0) return Error(InvalidArgument("search_keyed: dim must be > 0"));
  STRATA_ASSIGN_OR_RETURN(Response r,
                          Call(SearchRequestFor(Op::kSearchKeyed, collection, queries, dim, count, options)));
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::KeyedSearchReply>(std::move(r), Op::kSearchKeyed));
  if (reply.results.size() != count) {
    return Error(Internal("search_keyed: the server answered {} result lists for {} queries",
                          reply.results.size(), count));
  }
  return std::move(reply.results);
}

Result<protocol::SearchWithReply> Client::SearchWith(const std::string& collection, const float* queries,
                                                     uint32_t dim, uint32_t count, const SearchOptions& options) {
  if (fd_ < 0) return Error(ClosedError());
  if (count == 0) return protocol::SearchWithReply{options.with_attributes, {}, {}, {}};
  if (dim == 0) return Error(InvalidArgument("search_with: dim must be > 0"));
  auto r = Call(SearchRequestFor(Op::kSearchWith, collection, queries, dim, count, options));
  if (!r && r.error().code() == StatusCode::kUnimplemented && is_open() &&
      r.error().message().find("UnknownOp") != std::string::npos) {
    return Error(Unimplemented(
        "search_with: the server ({}) predates search_with (opcode 22), which returns attributes with "
        "the hits and the filter's warnings; upgrade it, or search without them",
        server_.server_version));
  }
  if (!r) return Error(r.error());
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::SearchWithReply>(std::move(*r), Op::kSearchWith));
  if (reply.results.size() != count) {
    return Error(Internal("search_with: the server answered {} result lists for {} queries",
                          reply.results.size(), count));
  }
  if (reply.with_attributes != options.with_attributes) {
    return Error(Internal("search_with: the server's hits {} attributes, {} were asked for",
                          reply.with_attributes ? "carry" : "lack", options.with_attributes ? "they" : "none"));
  }
  return reply;
}

Result<KeyPage> Client::ListKeys(const std::string& collection, uint64_t cursor, uint32_t count) {
  protocol::ListKeysRequest list{collection, cursor, count};
  STRATA_ASSIGN_OR_RETURN(Response r, Call(Request{.op = Op::kListKeys, .body = std::move(list)}));
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::ListKeysReply>(std::move(r), Op::kListKeys));
  return std::move(reply.page);
}

Result<std::vector<Neighbor>> Client::Search(const std::string& collection,
                                             std::span<const float> query,
                                             const SearchOptions& options) {
  if (query.empty()) return Error(InvalidArgument("search: the query vector is empty"));
  STRATA_ASSIGN_OR_RETURN(auto results, SearchBatch(collection, query.data(),
                                                    uint32_t(query.size()), 1, options));
  return std::move(results[0]);
}

Result<std::vector<std::vector<Neighbor>>> Client::SearchBatch(
    const std::string& collection, const float* queries, uint32_t dim, uint32_t count,
    const SearchOptions& options) {
  if (fd_ < 0) return Error(ClosedError());
  if (count == 0) return std::vector<std::vector<Neighbor>>();
  if (dim == 0) return Error(InvalidArgument("search: dim must be > 0"));
  const Op op = count == 1 ? Op::kSearch : Op::kSearchBatch;
  STRATA_ASSIGN_OR_RETURN(Response r,
                          Call(SearchRequestFor(op, collection, queries, dim, count, options)));
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::SearchReply>(std::move(r), op));
  if (reply.results.size() != count) {
    return Error(Internal("{}: the server answered {} result lists for {} queries",
                          protocol::OpName(op), reply.results.size(), count));
  }
  return std::move(reply.results);
}

Result<std::pair<std::vector<Neighbor>, strata::Explain>> Client::Explain(
    const std::string& collection, std::span<const float> query,
    const SearchOptions& options) {
  if (fd_ < 0) return Error(ClosedError());
  if (query.empty()) return Error(InvalidArgument("explain: the query vector is empty"));
  STRATA_ASSIGN_OR_RETURN(Response r, Call(SearchRequestFor(Op::kExplain, collection, query.data(),
                                                            uint32_t(query.size()), 1, options)));
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::SearchReply>(std::move(r), Op::kExplain));
  if (reply.results.size() != 1) {
    return Error(Internal("explain: the server answered {} result lists for 1 query",
                          reply.results.size()));
  }
  return std::make_pair(std::move(reply.results[0]), std::move(reply.explain));
}

Result<protocol::StatsReply> Client::Stats() {
  STRATA_ASSIGN_OR_RETURN(Response r,
                          Call(Request{.op = Op::kStats, .body = protocol::StatsRequest{}}));
  return Body<protocol::StatsReply>(std::move(r), Op::kStats);
}

Status Client::Flush(const std::string& collection) {
  STRATA_ASSIGN_OR_RETURN(Response r, Call(Request{.op = Op::kFlush,
                                                   .body = protocol::FlushRequest{collection}},
                                           options_.admin_timeout_ms));
  return internal::ToStatus(Body<protocol::EmptyReply>(std::move(r), Op::kFlush));
}

Status Client::Compact(const std::string& collection) {
  STRATA_ASSIGN_OR_RETURN(Response r, Call(Request{.op = Op::kCompact,
                                                   .body = protocol::CompactRequest{collection}},
                                           options_.admin_timeout_ms));
  return internal::ToStatus(Body<protocol::EmptyReply>(std::move(r), Op::kCompact));
}

Result<protocol::SnapshotReply> Client::Snapshot(const std::string& collection, const std::string& name) {
  STRATA_ASSIGN_OR_RETURN(Response r, Call(Request{.op = Op::kSnapshot,
                                                   .body = protocol::SnapshotRequest{collection, name}},
                                           options_.admin_timeout_ms));
  return Body<protocol::SnapshotReply>(std::move(r), Op::kSnapshot);
}

Result<protocol::ShardFilesReply> Client::ShardFiles(const std::string& shard_address) {
  STRATA_ASSIGN_OR_RETURN(Response r, Call(Request{.op = Op::kShardFiles,
                                                   .body = protocol::ShardFilesRequest{.collection = shard_address}},
                                           options_.admin_timeout_ms));
  return Body<protocol::ShardFilesReply>(std::move(r), Op::kShardFiles);
}

Result<std::string> Client::ShardFileRead(const std::string& shard_address, const std::string& token,
                                          const std::string& path, uint64_t offset, uint32_t length) {
  protocol::ShardFilesRequest m{.collection = shard_address, .token = token, .path = path,
                                .offset = offset, .length = length};
  STRATA_ASSIGN_OR_RETURN(Response r, Call(Request{.op = Op::kShardFileRead, .body = std::move(m)}));
  STRATA_ASSIGN_OR_RETURN(auto reply, Body<protocol::ShardFileChunkReply>(std::move(r), Op::kShardFileRead));
  return std::move(reply.data);
}

Status Client::ShardFilesDone(const std::string& shard_address, const std::string& token) {
  STRATA_ASSIGN_OR_RETURN(Response r, Call(Request{.op = Op::kShardFilesDone,
                                                   .body = protocol::ShardFilesRequest{.collection = shard_address,
                                                                                       .token = token}}));
  return internal::ToStatus(Body<protocol::EmptyReply>(std::move(r), Op::kShardFilesDone));
}

Result<std::vector<std::vector<Neighbor>>> Client::SearchPipelined(
    const std::string& collection, const float* queries, uint32_t dim, uint32_t count,
    const SearchOptions& options, uint32_t window) {
  if (fd_ < 0) return Error(ClosedError());
  if (window == 0) return Error(InvalidArgument("search: the pipeline window must be >= 1"));
  if (count == 0) return std::vector<std::vector<Neighbor>>();
  if (dim == 0) return Error(InvalidArgument("search: dim must be > 0"));

  std::vector<std::vector<Neighbor>> results(count);
  // One request object, its query overwritten for each send (the encoder copies it out).
  Request request = SearchRequestFor(Op::kSearch, collection, queries, dim, 1, options);
  std::vector<float>& query = std::get<protocol::SearchRequest>(request.body).queries;
  std::unordered_map<uint64_t, uint32_t> pending;  // request id -> query index
  Status first_error;
  uint32_t next = 0;
  for (;;) {
    while (first_error.ok() && next < count && pending.size() < window) {
      std::copy_n(queries + size_t(next) * dim, dim, query.begin());
      auto id = SendRequest(request, false);
      if (!id) {
        if (fd_ < 0) return Error(id.error());
        first_error = id.error();  // refused before sending: drain, the connection is fine
        break;
      }
      pending.emplace(*id, next++);
    }
    if (pending.empty()) break;
    STRATA_ASSIGN_OR_RETURN(std::optional<Received> received, ReadResponse(std::nullopt));
    auto it = pending.find(received->id);
    if (it == pending.end()) {
      STRATA_CHECK(received->user);
      Stash(received->id, std::move(received->response));
      continue;
    }
    const uint32_t index = it->second;
    pending.erase(it);
    if (!first_error.ok()) continue;  // draining after an error
    Response& response = received->response;
    if (response.op == Op::kError) {
      first_error = ErrorStatus(response).WithContext(fmt::format("query {}", index));
      continue;
    }
    auto* reply = std::get_if<protocol::SearchReply>(&response.body);
    if (reply == nullptr || reply->results.size() != 1) {
      first_error = Internal("query {}: the server answered {} result lists for 1 query", index,
                             reply == nullptr ? 0 : reply->results.size());
      continue;
    }
    results[index] = std::move(reply->results[0]);
  }
  if (!first_error.ok()) return Error(first_error);
  return results;
}

}  // namespace strata::client
