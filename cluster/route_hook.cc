#include "cluster/route_hook.h"

#include <type_traits>

#include "engine/strata.h"

namespace strata::cluster {

using protocol::Op;

namespace {

protocol::Response ErrorResponse(const Status& s) {
  return {Op::kError, protocol::ErrorReply{protocol::ErrorCodeFromStatus(s.code()), s.message()}};
}

// The refusal of a write routed while this node's lease may have lapsed.
protocol::Response LeaseLapsed(const std::string& node_id) {
  return ErrorResponse(IOError(
      "node {}: its cluster lease may have lapsed; it routes no write until it has "
      "registered again (retry, or use another node)",
      node_id));
}

// The refusal of a search whose queries are not `count` (at least one) x `dim` floats;
// nullopt when they are.
std::optional<protocol::Response> BadQueries(const protocol::Request& request) {
  const auto& m = std::get<protocol::SearchRequest>(request.body);
  if (m.count != 0 && m.queries.size() == size_t(m.count) * m.dim) return std::nullopt;
  return ErrorResponse(InvalidArgument("{}: {} query floats for {} queries of dimension {}",
                                       protocol::OpName(request.op), m.queries.size(), m.count, m.dim));
}

// The records of engine collection `collection` that `names` (ids or keys) name, each read by
// `get`: nullopt for one that is not there; the collection's own error when it is not there.
template <typename Names, typename Get>
Result<protocol::GetReply> GetEach(Engine& engine, const std::string& collection, const Names& names,
                                   Get get) {
  protocol::GetReply reply;
  if (auto exists = engine.DescribeCollection(collection); !exists) return Error(exists.error());
  for (const auto& name : names) {
    auto r = get(name);
    if (r) {
      reply.records.push_back(std::move(*r));
    } else if (r.error().code() == StatusCode::kNotFound) {
      reply.records.push_back(std::nullopt);
    } else {
      return Error(r.error());
    }
  }
  return reply;
}

}  // namespace

ClusterRequestHook::ClusterRequestHook(std::shared_ptr<ClusterView> view, const ClusterNode& node,
                                       Engine& engine, ShardGate& gate, ShardCopies& copies)
    : view_(std::move(view)), node_(node), engine_(engine), gate_(gate), copies_(copies) {}

Result<protocol::Response> ClusterRequestHook::RunShard(const ShardAddress& address,
                                                        const protocol::Request& request) {
  if (address.primary) {
    // A write for this node to order and pass on as the shard's primary (router.h, Replicate).
    if (!node_.LeaseHeld()) {
      return Error(Cancelled("node {} orders no write for {} while its cluster lease may have lapsed "
                             "(not until it has registered again): not acknowledged, retry (the leader "
                             "gives the shard another primary once the lease has lapsed)",
                             node_.options().node_id, address.local));
    }
    auto router = Acquire();
    auto r = router->Replicate(address, request, gate_.OrderOf(address.local),
                               [this] { return node_.LeaseHeld(); });
    Release(std::move(router));
    return r;
  }
  switch (request.op) {
    case Op::kUpsert: {
      const auto& m = std::get<protocol::UpsertRequest>(request.body);
      engine::WriteBatch batch;
      std::vector<VectorId> ids;
      for (const Record& r : m.records) {
        batch.Upsert(r.id, r.vector, r.attributes);
        ids.push_back(r.id);
      }
      STRATA_RETURN_IF_ERROR(
          gate_.Write(address, view_->WriteEpochOf(address.collection, address.shard), ids, {}, batch));
      return protocol::Response{Op::kUpsert, protocol::WriteReply{m.records.size()}};
    }
    case Op::kUpsertKeyedIds: {
      // From a router: at the shard's primary without ids (it finds or assigns them), at the
      // other replicas with the primary's.
      const auto& m = std::get<protocol::UpsertRequest>(request.body);
      engine::WriteBatch batch;
      std::vector<VectorId> ids;
      std::vector<std::string> keys;
      for (const Record& r : m.records) {
        batch.UpsertByKeyWithId(r.key, r.id, r.vector, r.attributes);
        if (r.id != kInvalidVectorId) ids.push_back(r.id);
        keys.push_back(r.key);
      }
      protocol::IdsReply reply;
      STRATA_RETURN_IF_ERROR(gate_.Write(address, view_->WriteEpochOf(address.collection, address.shard), ids,
                                         keys, batch, &reply.ids));
      return protocol::Response{Op::kUpsertKeyedIds, std::move(reply)};
    }
    case Op::kDeleteKeyed: {
      const auto& m = std::get<protocol::KeysRequest>(request.body);
      engine::WriteBatch batch;
      for (const std::string& key : m.keys) batch.DeleteByKey(key);
      STRATA_RETURN_IF_ERROR(
          gate_.Write(address, view_->WriteEpochOf(address.collection, address.shard), {}, m.keys, batch));
      return protocol::Response{Op::kDeleteKeyed, protocol::WriteReply{m.keys.size()}};
    }
    case Op::kDelete: {
      const auto& m = std::get<protocol::DeleteRequest>(request.body);
      engine::WriteBatch batch;
      for (VectorId id : m.ids) batch.Delete(id);
      STRATA_RETURN_IF_ERROR(
          gate_.Write(address, view_->WriteEpochOf(address.collection, address.shard), m.ids, {}, batch));
      return protocol::Response{Op::kDelete, protocol::WriteReply{m.ids.size()}};
    }
    case Op::kListKeys: {
      const auto& m = std::get<protocol::ListKeysRequest>(request.body);
      gate_.Fence(address.local, address.epoch);
      STRATA_ASSIGN_OR_RETURN(KeyPage page, engine_.ListIds(address.local, m.cursor, m.count));
      return protocol::Response{Op::kListKeys, protocol::ListKeysReply{std::move(page)}};
    }
    case Op::kGet: {
      const auto& m = std::get<protocol::GetRequest>(request.body);
      STRATA_ASSIGN_OR_RETURN(
          protocol::GetReply reply,
          GetEach(engine_, address.local, m.ids, [&](VectorId id) { return engine_.Get(address.local, id); }));
      return protocol::Response{Op::kGet, std::move(reply)};
    }
    case Op::kGetKeyed: {
      const auto& m = std::get<protocol::KeysRequest>(request.body);
      STRATA_ASSIGN_OR_RETURN(protocol::GetReply reply,
                              GetEach(engine_, address.local, m.keys, [&](const std::string& key) {
                                return engine_.GetByKey(address.local, key);
                              }));
      return protocol::Response{Op::kGetKeyed, std::move(reply)};
    }
    case Op::kShardFiles: {
      STRATA_ASSIGN_OR_RETURN(protocol::ShardFilesReply reply, copies_.Take(address));
      return protocol::Response{Op::kShardFiles, std::move(reply)};
    }
    case Op::kShardFileRead: {
      const auto& m = std::get<protocol::ShardFilesRequest>(request.body);
      STRATA_ASSIGN_OR_RETURN(std::string data, copies_.Read(address, m.token, m.path, m.offset, m.length));
      return protocol::Response{Op::kShardFileRead, protocol::ShardFileChunkReply{std::move(data)}};
    }
    case Op::kShardFilesDone: {
      const auto& m = std::get<protocol::ShardFilesRequest>(request.body);
      STRATA_RETURN_IF_ERROR(copies_.Done(address, m.token));
      return protocol::Response{Op::kShardFilesDone, protocol::EmptyReply{}};
    }
    default:
      return Error(InvalidArgument("{} is not a request between nodes for shard address '{}'",
                                   protocol::OpName(request.op), address.ToString()));
  }
}

std::unique_ptr<ClusterRouter> ClusterRequestHook::Acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto r = std::move(idle_.back());
      idle_.pop_back();
      return r;
    }
  }
  return ClusterRouter::Over(view_, {}, node_.options().node_id,
                             [this](const protocol::Request& r) { return RunLocal(r); });
}

void ClusterRequestHook::Release(std::unique_ptr<ClusterRouter> router) {
  std::lock_guard lock(mu_);
  idle_.push_back(std::move(router));
}

Result<protocol::Response> ClusterRequestHook::RunLocal(const protocol::Request& request) {
  if (const std::string* name = protocol::RequestCollection(request)) {
    if (auto address = ParseShardAddress(*name)) {
      if (!address->has_value()) return Error(address->error());
      return RunShard(**address, request);
    }
  }
  if (const auto* m = std::get_if<protocol::UpsertRequest>(&request.body);
      m != nullptr && request.op == Op::kUpsert) {
    engine::WriteBatch batch;
    for (const Record& r : m->records) batch.Upsert(r.id, r.vector, r.attributes);
    STRATA_RETURN_IF_ERROR(engine_.Write(m->collection, batch));
    return protocol::Response{Op::kUpsert, protocol::WriteReply{m->records.size()}};
  }
  if (const auto* m = std::get_if<protocol::SearchRequest>(&request.body);
      m != nullptr && request.op == Op::kSearchBatch) {
    STRATA_ASSIGN_OR_RETURN(auto results,
                            engine_.SearchBatch(m->collection, std::span<const float>(m->queries),
                                                m->dim, m->options, 1));
    protocol::SearchReply reply;
    reply.results = std::move(results);
    return protocol::Response{Op::kSearchBatch, std::move(reply)};
  }
  if (const auto* m = std::get_if<protocol::SearchRequest>(&request.body);
      m != nullptr && request.op == Op::kExplain) {
    strata::Explain explain;
    STRATA_ASSIGN_OR_RETURN(auto hits, engine_.Search(m->collection, std::span<const float>(m->queries),
                                                      m->options, &explain));
    protocol::SearchReply reply;
    reply.results.push_back(std::move(hits));
    reply.explain = std::move(explain);
    return protocol::Response{Op::kExplain, std::move(reply)};
  }
  if (const auto* m = std::get_if<protocol::SearchRequest>(&request.body);
      m != nullptr && request.op == Op::kSearchWith) {
    protocol::SearchWithReply reply;
    reply.with_attributes = m->options.with_attributes;
    STRATA_ASSIGN_OR_RETURN(reply.results,
                            engine_.SearchBatchWithKeys(m->collection, std::span<const float>(m->queries),
                                                        m->dim, m->options, 1));
    if (!m->options.filter.empty()) {
      STRATA_ASSIGN_OR_RETURN(reply.warnings, engine_.FilterWarnings(m->collection, m->options.filter));
    }
    return protocol::Response{Op::kSearchWith, std::move(reply)};
  }
  if (const auto* m = std::get_if<protocol::DescribeCollectionRequest>(&request.body)) {
    STRATA_ASSIGN_OR_RETURN(CollectionInfo info, engine_.DescribeCollection(m->name));
    // The op asked for (the router sends kDescribeCollection; either shape decodes the reply).
    return protocol::Response{request.op, protocol::DescribeCollectionReply{info}};
  }
  if (const auto* m = std::get_if<protocol::GetRequest>(&request.body); m != nullptr && request.op == Op::kGet) {
    STRATA_ASSIGN_OR_RETURN(
        protocol::GetReply reply,
        GetEach(engine_, m->collection, m->ids, [&](VectorId id) { return engine_.Get(m->collection, id); }));
    return protocol::Response{Op::kGet, std::move(reply)};
  }
  if (const auto* m = std::get_if<protocol::KeysRequest>(&request.body); m != nullptr && request.op == Op::kGetKeyed) {
    STRATA_ASSIGN_OR_RETURN(protocol::GetReply reply,
                            GetEach(engine_, m->collection, m->keys,
                                    [&](const std::string& key) { return engine_.GetByKey(m->collection, key); }));
    return protocol::Response{Op::kGetKeyed, std::move(reply)};
  }
  if (const auto* m = std::get_if<protocol::SearchRequest>(&request.body);
      m != nullptr && request.op == Op::kSearchKeyed) {
    STRATA_ASSIGN_OR_RETURN(auto results,
                            engine_.SearchBatchWithKeys(m->collection, std::span<const float>(m->queries),
                                                        m->dim, m->options, 1));
    return protocol::Response{Op::kSearchKeyed, protocol::KeyedSearchReply{std::move(results)}};
  }
  if (const auto* m = std::get_if<protocol::ListKeysRequest>(&request.body)) {
    STRATA_ASSIGN_OR_RETURN(KeyPage page, engine_.ListKeys(m->collection, m->cursor, m->count));
    return protocol::Response{Op::kListKeys, protocol::ListKeysReply{std::move(page)}};
  }
  if (const auto* m = std::get_if<protocol::FlushRequest>(&request.body)) {
    STRATA_RETURN_IF_ERROR(engine_.Flush(m->collection));
    return protocol::Response{Op::kFlush, protocol::EmptyReply{}};
  }
  if (const auto* m = std::get_if<protocol::CompactRequest>(&request.body)) {
    STRATA_RETURN_IF_ERROR(engine_.Compact(m->collection));
    return protocol::Response{Op::kCompact, protocol::EmptyReply{}};
  }
  return Error(Internal("cluster: no local execution for {}", protocol::OpName(request.op)));
}

template <typename Call, typename Reply>
protocol::Response ClusterRequestHook::Routed(Call call, Reply reply) {
  auto router = Acquire();
  auto r = call(*router);
  Release(std::move(router));
  if constexpr (std::is_same_v<decltype(r), Status>) {
    if (!r.ok()) return ErrorResponse(r);
    return reply();
  } else {
    if (!r) return ErrorResponse(r.error());
    return reply(std::move(*r));
  }
}

template <typename Call>
protocol::Response ClusterRequestHook::RoutedWrite(Op op, Call call) {
  return Routed(call, [op](uint64_t n) { return protocol::Response{op, protocol::WriteReply{n}}; });
}

template <typename Call>
protocol::Response ClusterRequestHook::RoutedGet(Op op, Call call) {
  return Routed(call, [op](std::vector<std::optional<Record>> records) {
    return protocol::Response{op, protocol::GetReply{std::move(records)}};
  });
}

server::RequestHook::Place ClusterRequestHook::PlaceOf(const std::string& collection) const {
  if (auto address = ParseShardAddress(collection)) {
    return address->has_value() && (*address)->primary ? Place::kOrdered : Place::kHere;
  }
  return view_->HasCollection(collection) ? Place::kRouted : Place::kEngine;
}

std::optional<protocol::Response> ClusterRequestHook::Handle(const protocol::Request& request) {
  const std::string* collection = protocol::RequestCollection(request);
  if (collection == nullptr) return std::nullopt;
  if (auto address = ParseShardAddress(*collection)) {
    auto r = address->has_value() ? RunShard(**address, request) : Error(address->error());
    if (!r) return ErrorResponse(r.error());
    return std::move(*r);
  }
  if (std::holds_alternative<protocol::ShardFilesRequest>(request.body)) {
    return ErrorResponse(InvalidArgument("{} names a shard address (NAME__sK@EPOCH), not '{}'",
                                         protocol::OpName(request.op), *collection));
  }
  if (!view_->HasCollection(*collection)) return std::nullopt;
  const std::string& name = *collection;
  switch (request.op) {
    case Op::kUpsert: {
      if (!node_.LeaseHeld()) return LeaseLapsed(node_.options().node_id);
      const auto& m = std::get<protocol::UpsertRequest>(request.body);
      return RoutedWrite(request.op, [&](ClusterRouter& r) { return r.Upsert(name, m.records); });
    }
    case Op::kSearch:
    case Op::kSearchBatch: {
      if (auto refused = BadQueries(request)) return refused;
      const auto& m = std::get<protocol::SearchRequest>(request.body);
      return Routed(
          [&](ClusterRouter& r) { return r.SearchBatch(name, m.queries.data(), m.dim, m.count, m.options); },
          [&](std::vector<std::vector<Neighbor>> results) {
            protocol::SearchReply reply;
            reply.results = std::move(results);
            return protocol::Response{request.op, std::move(reply)};
          });
    }
    case Op::kSearchWith: {
      if (auto refused = BadQueries(request)) return refused;
      const auto& m = std::get<protocol::SearchRequest>(request.body);
      return Routed(
          [&](ClusterRouter& r) { return r.SearchWith(name, m.queries.data(), m.dim, m.count, m.options); },
          [](protocol::SearchWithReply reply) { return protocol::Response{Op::kSearchWith, std::move(reply)}; });
    }
    case Op::kExplain: {
      const auto& m = std::get<protocol::SearchRequest>(request.body);
      if (m.count != 1 || m.queries.size() != m.dim) {
        return ErrorResponse(InvalidArgument("explain: {} query floats for {} queries of dimension {}",
                                             m.queries.size(), m.count, m.dim));
      }
      return Routed([&](ClusterRouter& r) { return r.Explain(name, m.queries, m.options); },
                    [](std::pair<std::vector<Neighbor>, strata::Explain> explained) {
                      protocol::SearchReply reply;
                      reply.results.push_back(std::move(explained.first));
                      reply.explain = std::move(explained.second);
                      return protocol::Response{Op::kExplain, std::move(reply)};
                    });
    }
    case Op::kDescribeCollection:
    case Op::kDescribeCollectionWith:
      return Routed([&](ClusterRouter& r) { return r.Describe(name); },
                    [&](const CollectionInfo& info) {
                      return protocol::Response{request.op, protocol::DescribeCollectionReply{info}};
                    });
    case Op::kDelete:
      if (!node_.LeaseHeld()) return LeaseLapsed(node_.options().node_id);
      return RoutedWrite(request.op, [&](ClusterRouter& r) {
        return r.Delete(name, std::get<protocol::DeleteRequest>(request.body).ids);
      });
    case Op::kDeleteKeyed:
      if (!node_.LeaseHeld()) return LeaseLapsed(node_.options().node_id);
      return RoutedWrite(request.op, [&](ClusterRouter& r) {
        return r.DeleteKeyed(name, std::get<protocol::KeysRequest>(request.body).keys);
      });
    case Op::kUpsertKeyed:
      if (!node_.LeaseHeld()) return LeaseLapsed(node_.options().node_id);
      return RoutedWrite(request.op, [&](ClusterRouter& r) -> Result<uint64_t> {
        STRATA_ASSIGN_OR_RETURN(auto ids, r.UpsertKeyed(name, std::get<protocol::UpsertRequest>(request.body).records));
        return ids.size();
      });
    case Op::kGet:
      return RoutedGet(request.op, [&](ClusterRouter& r) {
        return r.Get(name, std::get<protocol::GetRequest>(request.body).ids);
      });
    case Op::kGetKeyed:
      return RoutedGet(request.op, [&](ClusterRouter& r) {
        return r.GetKeyed(name, std::get<protocol::KeysRequest>(request.body).keys);
      });
    case Op::kSearchKeyed: {
      if (auto refused = BadQueries(request)) return refused;
      const auto& m = std::get<protocol::SearchRequest>(request.body);
      return Routed(
          [&](ClusterRouter& r) { return r.SearchKeyed(name, m.queries.data(), m.dim, m.count, m.options); },
          [](std::vector<std::vector<KeyedNeighbor>> results) {
            return protocol::Response{Op::kSearchKeyed, protocol::KeyedSearchReply{std::move(results)}};
          });
    }
    case Op::kListKeys: {
      const auto& m = std::get<protocol::ListKeysRequest>(request.body);
      return Routed([&](ClusterRouter& r) { return r.ListKeys(name, m.cursor, m.count); },
                    [](KeyPage page) { return protocol::Response{Op::kListKeys, protocol::ListKeysReply{std::move(page)}}; });
    }
    case Op::kUpsertTyped: {
      // Widened here, on the node that routes: the shards take float32 records, as from upsert.
      if (!node_.LeaseHeld()) return LeaseLapsed(node_.options().node_id);
      const auto& m = std::get<protocol::UpsertRequest>(request.body);
      auto records = protocol::WidenedRecords(m);
      if (!records) return ErrorResponse(records.error());
      if (!m.keyed) return RoutedWrite(request.op, [&](ClusterRouter& r) { return r.Upsert(name, *records); });
      return RoutedWrite(request.op, [&](ClusterRouter& r) -> Result<uint64_t> {
        STRATA_ASSIGN_OR_RETURN(auto ids, r.UpsertKeyed(name, *records));
        return ids.size();
      });
    }
    case Op::kSearchTyped: {
      const auto& m = std::get<protocol::SearchRequest>(request.body);
      auto queries = protocol::WidenedQueries(m);
      if (!queries) return ErrorResponse(queries.error());
      if (m.count == 0 || queries->size() != size_t(m.count) * m.dim) {
        return ErrorResponse(InvalidArgument("search_typed: {} query values for {} queries of dimension {}",
                                             queries->size(), m.count, m.dim));
      }
      return Routed(
          [&](ClusterRouter& r) { return r.SearchWith(name, queries->data(), m.dim, m.count, m.options); },
          [](protocol::SearchWithReply reply) { return protocol::Response{Op::kSearchTyped, std::move(reply)}; });
    }
    case Op::kFlush:
    case Op::kCompact:
      return Routed([&](ClusterRouter& r) { return r.FlushOrCompact(name, request.op == Op::kCompact); },
                    [&] { return protocol::Response{request.op, protocol::EmptyReply{}}; });
    case Op::kDropCollection:
      return Routed([&](ClusterRouter& r) { return r.Drop(name); },
                    [] { return protocol::Response{Op::kDropCollection, protocol::EmptyReply{}}; });
    default:
      return ErrorResponse(Unimplemented(
          "{} on cluster collection '{}' is not routed yet (routed: upsert, upsert_typed, delete and "
          "get by id or by key, list_keys, search, search batch, search keyed, search_with, "
          "search_typed, explain, describe, flush, compact, drop; "
          "docs/CLUSTER.md)",
          protocol::OpName(request.op), name));
  }
}

}  // namespace strata::cluster
