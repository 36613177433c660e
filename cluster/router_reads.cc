// ClusterRouter's reads (router.h): gets by id and by key, list_keys, searches (scatter, merge,
// partial replies), explain, describe; and flush / compact. Writes, routing state and the
// connections are in router.cc.

#include <algorithm>
#include <chrono>
#include <functional>

#include "cluster/keys.h"
#include "cluster/node.h"
#include "cluster/router.h"
#include "cluster/router_detail.h"

namespace strata::cluster {

using namespace router_detail;

Status ClusterRouter::ReadShards(const Route& route, const std::string& collection,
                                 std::string_view what, const std::vector<uint32_t>& shards,
                                 const std::function<protocol::Request(uint32_t shard)>& make,
                                 const std::function<Result<bool>(uint32_t shard, protocol::Response& reply)>& take) {
  const auto candidates = ReadCandidates(route);
  for (uint32_t s : shards) {
    if (candidates[s].empty()) {
      return IOError("collection '{}' shard {} has no in-sync replica", collection, s);
    }
  }
  auto read = Scatter(route, collection, what, shards, make,
                      [&](uint32_t s, const std::string&, double, protocol::Response& reply) -> Result<bool> {
                        return take(s, reply);
                      },
                      view_->shard_timeout_ms(), /*allow_partial=*/false);
  return read ? Status::Ok() : read.error();
}

Result<std::vector<std::optional<Record>>> ClusterRouter::GetKeyed(const std::string& collection,
                                                                   std::span<const std::string> keys) {
  STRATA_ASSIGN_OR_RETURN(Route route, RouteOf(collection));
  const uint32_t shards = route.record.shards;
  std::vector<std::vector<size_t>> positions(shards);  // per shard, the positions of its keys
  for (size_t i = 0; i < keys.size(); ++i) {
    STRATA_RETURN_IF_ERROR(ValidateKey(keys[i]));
    positions[ShardOfKey(keys[i], shards)].push_back(i);
  }
  const std::vector<uint32_t> asked = ShardsWith(positions);
  std::vector<std::optional<Record>> out(keys.size());
  STRATA_RETURN_IF_ERROR(ReadShards(
      route, collection, "get", asked,
      [&](uint32_t s) {
        protocol::KeysRequest g;
        g.collection = LocalShardName(collection, s);
        for (size_t i : positions[s]) g.keys.push_back(keys[i]);
        return protocol::Request{protocol::Op::kGetKeyed, std::move(g)};
      },
      [&](uint32_t s, protocol::Response& response) {
        auto* reply = std::get_if<protocol::GetReply>(&response.body);
        if (reply == nullptr || reply->records.size() != positions[s].size()) return false;
        for (size_t j = 0; j < positions[s].size(); ++j) out[positions[s][j]] = std::move(reply->records[j]);
        return true;
      }));
  for (uint32_t s = 0; s < shards; ++s) {
    for (size_t i : positions[s]) {
      if (out[i]) STRATA_RETURN_IF_ERROR(ToClusterId(collection, s, out[i]->id));
    }
  }
  return out;
}

Result<KeyPage> ClusterRouter::ListKeys(const std::string& collection, uint64_t cursor, uint32_t count) {
  if (count == 0) return Error(InvalidArgument("list_keys: count must be at least 1"));
  STRATA_ASSIGN_OR_RETURN(Route route, RouteOf(collection));
  const uint32_t shards = route.record.shards;
  constexpr uint64_t kLocalMask = (uint64_t{1} << kClusterKeyedLocalBits) - 1;
  uint32_t shard = uint32_t(cursor >> kClusterKeyedLocalBits);
  uint64_t local = cursor & kLocalMask;
  if (shard >= shards) {
    return Error(InvalidArgument("list_keys: cursor {} names shard {} of collection '{}', which has {}", cursor,
                                 shard, collection, shards));
  }
  KeyPage page;
  while (page.keys.size() < count) {
    const uint32_t want = count - uint32_t(page.keys.size());
    KeyPage part;
    STRATA_RETURN_IF_ERROR(ReadShards(
        route, collection, "list_keys", {shard},
        [&](uint32_t s) {
          return protocol::Request{protocol::Op::kListKeys,
                                   protocol::ListKeysRequest{LocalShardName(collection, s), local, want}};
        },
        [&](uint32_t, protocol::Response& response) {
          auto* reply = std::get_if<protocol::ListKeysReply>(&response.body);
          if (reply == nullptr || reply->page.keys.size() > want || reply->page.ids.size() != reply->page.keys.size()) {
            return false;
          }
          part = std::move(reply->page);
          return true;
        }));
    for (size_t i = 0; i < part.keys.size(); ++i) {
      STRATA_RETURN_IF_ERROR(ToClusterId(collection, shard, part.ids[i]));
      page.keys.push_back(std::move(part.keys[i]));
      page.ids.push_back(part.ids[i]);
    }
    if (part.next_cursor != 0) {  // this shard has more
      if (part.keys.empty() && part.next_cursor == local) {
        return Error(Internal("list_keys: shard {} of collection '{}' returned no keys and the same cursor {}",
                              shard, collection, local));
      }
      if (part.next_cursor > kLocalMask) {
        return Error(OutOfRange("list_keys: shard {} of collection '{}' gave cursor {}, beyond {} bits", shard,
                                collection, part.next_cursor, kClusterKeyedLocalBits));
      }
      local = part.next_cursor;
      if (page.keys.size() < count) continue;
      page.next_cursor = uint64_t{shard} << kClusterKeyedLocalBits | local;
      return page;
    }
    if (++shard == shards) return page;  // every shard done: next_cursor 0
    local = 0;
  }
  page.next_cursor = uint64_t{shard} << kClusterKeyedLocalBits | local;
  return page;
}

Result<std::vector<std::vector<KeyedNeighbor>>> ClusterRouter::SearchKeyed(
    const std::string& collection, const float* queries, uint32_t dim, uint32_t count,
    const SearchOptions& options) {
  STRATA_ASSIGN_OR_RETURN(Route route, RouteOf(collection));
  STRATA_RETURN_IF_ERROR(CheckQueries(route.record, collection, dim, count));
  std::vector<std::vector<KeyedNeighbor>> merged(count);
  Status ids_ok;
  STRATA_RETURN_IF_ERROR(ReadShards(
      route, collection, "search", AllShards(route.record.shards),
      ShardSearches(collection, protocol::Op::kSearchKeyed, options, queries, dim, count),
      [&](uint32_t s, protocol::Response& response) {
        auto* reply = std::get_if<protocol::KeyedSearchReply>(&response.body);
        if (reply == nullptr || reply->results.size() != count) return false;
        for (uint32_t q = 0; q < count; ++q) {
          for (KeyedNeighbor& h : reply->results[q]) {
            if (Status st = ToClusterId(collection, s, h.id); !st.ok() && ids_ok.ok()) ids_ok = st;
            merged[q].push_back(std::move(h));
          }
        }
        return true;
      }));
  STRATA_RETURN_IF_ERROR(ids_ok);
  for (auto& hits : merged) {
    std::sort(hits.begin(), hits.end(), [](const KeyedNeighbor& a, const KeyedNeighbor& b) {
      return a.distance != b.distance ? a.distance < b.distance : a.id < b.id;
    });
    if (hits.size() > options.k) hits.resize(options.k);
  }
  return merged;
}

Status ClusterRouter::FlushOrCompact(const std::string& collection, bool compact) {
  STRATA_ASSIGN_OR_RETURN(Route route, RouteOf(collection));
  std::vector<std::pair<std::string, protocol::Request>> requests;
  for (const ShardPlacement& sp : route.placement.shards) {
    const std::string local = LocalShardName(collection, sp.shard);
    for (int catching = 0; catching < 2; ++catching) {
      for (const ReplicaRef& r : catching ? sp.catching_up : sp.in_sync) {
        if (compact) {
          requests.push_back({r.node, protocol::Request{protocol::Op::kCompact, protocol::CompactRequest{local}}});
        } else {
          requests.push_back({r.node, protocol::Request{protocol::Op::kFlush, protocol::FlushRequest{local}}});
        }
      }
    }
  }
  auto responses = FanOut(requests);
  for (size_t i = 0; i < responses.size(); ++i) {
    if (!responses[i]) {
      return IOError("{} of collection '{}': replica {} failed: {}", compact ? "compact" : "flush",
                     collection, requests[i].first, responses[i].error().ToString());
    }
  }
  return Status::Ok();
}

std::vector<std::vector<std::string>> ClusterRouter::ReadCandidates(const Route& route) const {
  std::vector<std::vector<std::string>> candidates(route.record.shards);
  std::lock_guard lock(view_->load_mu_);
  for (const ShardPlacement& sp : route.placement.shards) {
    auto& c = candidates[sp.shard];
    for (const std::string& n : sp.replicas) {
      if (std::any_of(sp.in_sync.begin(), sp.in_sync.end(),
                      [&](const ReplicaRef& r) { return r.node == n; })) {
        c.push_back(n);
      }
    }
    std::stable_sort(c.begin(), c.end(), [&](const std::string& a, const std::string& b) {
      auto load = [&](const std::string& n) {
        auto it = view_->in_flight_.find(n);
        return it == view_->in_flight_.end() ? 0u : it->second;
      };
      return load(a) < load(b);
    });
  }
  return candidates;
}

Result<std::vector<std::optional<Record>>> ClusterRouter::Get(const std::string& collection,
                                                              std::span<const VectorId> ids) {
  STRATA_ASSIGN_OR_RETURN(Route route, RouteOf(collection));
  const uint32_t shards = route.record.shards;
  std::vector<std::vector<size_t>> positions(shards);  // per shard, the positions of its ids
  std::vector<VectorId> local_ids(ids.begin(), ids.end());  // a keyed id as its shard's own
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!IsKeyedId(ids[i])) {
      positions[ShardOfId(ids[i], shards)].push_back(i);
      continue;
    }
    // A keyed id names its shard (ClusterKeyedId); one naming no shard is not there.
    auto [s, local] = SplitClusterKeyedId(ids[i]);
    local_ids[i] = local;
    if (s < shards) positions[s].push_back(i);
  }
  std::vector<std::optional<Record>> out(ids.size());
  const std::vector<uint32_t> asked = ShardsWith(positions);
  STRATA_RETURN_IF_ERROR(ReadShards(
      route, collection, "get", asked,
      [&](uint32_t s) {
        protocol::GetRequest g;
        g.collection = LocalShardName(collection, s);
        for (size_t i : positions[s]) g.ids.push_back(local_ids[i]);
        return protocol::Request{protocol::Op::kGet, std::move(g)};
      },
      [&](uint32_t s, protocol::Response& response) -> Result<bool> {
        auto* reply = std::get_if<protocol::GetReply>(&response.body);
        if (reply == nullptr || reply->records.size() != positions[s].size()) return false;
        for (size_t j = 0; j < positions[s].size(); ++j) {
          auto& record = out[positions[s][j]];
          record = std::move(reply->records[j]);
          if (record) STRATA_RETURN_IF_ERROR(ToClusterId(collection, s, record->id));
        }
        return true;
      }));
  return out;
}

std::string ClusterRouter::AddressOfNode(const std::string& node) const {
  auto nodes = view_->nodes_->view();
  auto it = nodes->kvs.find(ClusterKeys(view_->cluster()).node(node));
  if (it == nodes->kvs.end()) return {};
  auto record = NodeRecord::FromKeyValue(it->second);
  return record ? record->advertise : std::string();
}

Result<std::vector<protocol::MissingShard>> ClusterRouter::Scatter(
    const Route& route, const std::string& collection, std::string_view what,
    const std::vector<uint32_t>& shards, const std::function<protocol::Request(uint32_t shard)>& make,
    const TakeReply& take, uint32_t timeout_ms, bool allow_partial) {
  // Per shard, its in-sync replicas, the least loaded first (ReadCandidates): the first is
  // asked, the next ones when it fails or does not answer in time.
  const auto candidates = ReadCandidates(route);
  std::vector<protocol::MissingShard> missing;
  std::vector<std::string> failures(route.record.shards);
  std::vector<uint32_t> pending;
  auto give_up = [&](uint32_t s) -> Status {
    const std::string why = failures[s].empty() ? std::string("it has no in-sync replica") : failures[s];
    if (!allow_partial) {
      return IOError("collection '{}' shard {}: no in-sync replica answered the {}: {}",
                     collection, s, what, why);
    }
    missing.push_back({s, why});
    return Status::Ok();
  };
  for (uint32_t s : shards) {
    if (candidates[s].empty()) {
      STRATA_RETURN_IF_ERROR(give_up(s));
    } else {
      pending.push_back(s);
    }
  }
  for (size_t attempt = 0; !pending.empty(); ++attempt) {
    std::vector<std::pair<std::string, protocol::Request>> requests;
    std::vector<uint32_t> asked;
    for (uint32_t s : pending) {
      if (attempt >= candidates[s].size()) {
        STRATA_RETURN_IF_ERROR(give_up(s));
        continue;
      }
      requests.push_back({candidates[s][attempt], make(s)});
      asked.push_back(s);
    }
    Deadline deadline;
    if (timeout_ms != 0) deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    const auto round_start = std::chrono::steady_clock::now();
    auto responses = FanOut(requests, deadline);
    const double round_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - round_start).count();
    pending.clear();
    for (size_t i = 0; i < responses.size(); ++i) {
      const uint32_t s = asked[i];
      if (!responses[i] && responses[i].error().code() == StatusCode::kInvalidArgument) {
        // The request's own fault (a bad filter, say): every replica would say the same.
        return Error(responses[i].error().WithContext(fmt::format("collection '{}' shard {}", collection, s)));
      }
      bool taken = false;
      if (responses[i]) {
        STRATA_ASSIGN_OR_RETURN(taken, take(s, requests[i].first, round_ms, *responses[i]));
      }
      if (!taken) {
        failures[s] += fmt::format("{}{}: {}", failures[s].empty() ? "" : "; ", requests[i].first,
                                   responses[i] ? std::string("a reply of the wrong shape")
                                                : responses[i].error().ToString());
        pending.push_back(s);
      }
    }
  }
  if (!missing.empty() && missing.size() == shards.size()) {
    std::string why;
    for (const auto& m : missing) why += fmt::format("{}shard {}: {}", why.empty() ? "" : "; ", m.shard, m.reason);
    return Error(IOError("collection '{}': no shard answered the {}: {}", collection, what, why));
  }
  std::sort(missing.begin(), missing.end(),
            [](const auto& a, const auto& b) { return a.shard < b.shard; });
  return missing;
}

Result<ClusterRouter::Scattered> ClusterRouter::ScatterRead(
    const Route& route, const std::string& collection, std::string_view what,
    const std::function<protocol::Request(uint32_t shard)>& make,
    const std::function<bool(const protocol::Response&)>& fits, uint32_t timeout_ms,
    bool allow_partial) {
  const uint32_t shards = route.record.shards;
  Scattered out;
  out.responses.resize(shards);
  out.nodes.resize(shards);
  out.ms.resize(shards);
  STRATA_ASSIGN_OR_RETURN(
      out.missing,
      Scatter(route, collection, what, AllShards(route.record.shards), make,
              [&](uint32_t s, const std::string& node, double ms, protocol::Response& reply) -> Result<bool> {
                if (!fits(reply)) return false;
                out.responses[s] = std::move(reply);
                out.nodes[s] = node;
                out.ms[s] = ms;
                return true;
              },
              timeout_ms, allow_partial));
  return out;
}

namespace {

uint32_t TimeoutOf(const SearchOptions& options, const ClusterView& view) {
  return options.shard_timeout_ms != 0 ? options.shard_timeout_ms : view.shard_timeout_ms();
}

}  // namespace

Result<ClusterRouter::Scattered> ClusterRouter::ScatterSearch(
    const std::string& collection, protocol::Op op, const float* queries, uint32_t dim,
    uint32_t count, const SearchOptions& options,
    const std::function<bool(const protocol::Response&)>& fits, bool allow_partial) {
  STRATA_ASSIGN_OR_RETURN(Route route, RouteOf(collection));
  STRATA_RETURN_IF_ERROR(CheckQueries(route.record, collection, dim, count));
  return ScatterRead(route, collection, "search",
                     ShardSearches(collection, op, options, queries, dim, count), fits,
                     TimeoutOf(options, *view_), allow_partial);
}

Result<std::vector<std::vector<Neighbor>>> ClusterRouter::SearchBatch(
    const std::string& collection, const float* queries, uint32_t dim, uint32_t count,
    const SearchOptions& options) {
  STRATA_ASSIGN_OR_RETURN(
      Scattered got,
      ScatterSearch(
          collection, protocol::Op::kSearchBatch, queries, dim, count, options,
          [&](const protocol::Response& r) {
            const auto* reply = std::get_if<protocol::SearchReply>(&r.body);
            return reply != nullptr && reply->results.size() == count;
          },
          /*allow_partial=*/false));
  std::vector<std::vector<Neighbor>> merged(count);
  for (uint32_t s = 0; s < got.responses.size(); ++s) {
    const auto& reply = std::get<protocol::SearchReply>(got.responses[s]->body);
    for (uint32_t q = 0; q < count; ++q) {
      for (Neighbor n : reply.results[q]) {
        STRATA_RETURN_IF_ERROR(ToClusterId(collection, s, n.id));
        merged[q].push_back(n);
      }
    }
  }
  for (auto& hits : merged) {
    std::sort(hits.begin(), hits.end());
    if (hits.size() > options.k) hits.resize(options.k);
  }
  return merged;
}

Result<protocol::SearchWithReply> ClusterRouter::SearchWith(const std::string& collection,
                                                            const float* queries, uint32_t dim,
                                                            uint32_t count,
                                                            const SearchOptions& options) {
  STRATA_ASSIGN_OR_RETURN(
      Scattered got,
      ScatterSearch(
          collection, protocol::Op::kSearchWith, queries, dim, count, options,
          [&](const protocol::Response& r) {
            const auto* reply = std::get_if<protocol::SearchWithReply>(&r.body);
            return reply != nullptr && reply->results.size() == count &&
                   reply->with_attributes == options.with_attributes;
          },
          options.allow_partial));
  protocol::SearchWithReply out;
  out.with_attributes = options.with_attributes;
  out.results.resize(count);
  for (uint32_t s = 0; s < got.responses.size(); ++s) {
    auto& response = got.responses[s];
    if (!response) continue;  // missing (partial)
    auto& reply = std::get<protocol::SearchWithReply>(response->body);
    for (uint32_t q = 0; q < count; ++q) {
      for (KeyedNeighbor& n : reply.results[q]) {
        STRATA_RETURN_IF_ERROR(ToClusterId(collection, s, n.id));
        out.results[q].push_back(std::move(n));
      }
    }
    for (std::string& w : reply.warnings) {
      if (std::find(out.warnings.begin(), out.warnings.end(), w) == out.warnings.end()) {
        out.warnings.push_back(std::move(w));
      }
    }
  }
  for (auto& hits : out.results) {
    std::stable_sort(hits.begin(), hits.end(), [](const KeyedNeighbor& a, const KeyedNeighbor& b) {
      return a.distance < b.distance || (a.distance == b.distance && a.id < b.id);
    });
    if (hits.size() > options.k) hits.resize(options.k);
  }
  out.missing = std::move(got.missing);
  return out;
}

Result<std::pair<std::vector<Neighbor>, strata::Explain>> ClusterRouter::Explain(
    const std::string& collection, std::span<const float> query, const SearchOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  STRATA_ASSIGN_OR_RETURN(Route route, RouteOf(collection));
  if (query.size() != route.record.dim) {
    return Error(InvalidArgument("query has dim {}, collection '{}' has {}", query.size(),
                                 collection, route.record.dim));
  }
  SearchOptions explain_options = options;
  explain_options.with_attributes = false;
  STRATA_ASSIGN_OR_RETURN(
      Scattered got,
      ScatterRead(
          route, collection, "explain",
          ShardSearches(collection, protocol::Op::kExplain, explain_options, query.data(),
                        static_cast<uint32_t>(query.size()), 1),
          [&](const protocol::Response& r) {
            const auto* reply = std::get_if<protocol::SearchReply>(&r.body);
            return reply != nullptr && reply->results.size() == 1;
          },
          TimeoutOf(options, *view_), /*allow_partial=*/false));
  const auto merge_start = std::chrono::steady_clock::now();
  std::vector<Neighbor> hits;
  strata::Explain plan;
  for (uint32_t s = 0; s < got.responses.size(); ++s) {
    const auto& reply = std::get<protocol::SearchReply>(got.responses[s]->body);
    for (Neighbor n : reply.results[0]) {
      STRATA_RETURN_IF_ERROR(ToClusterId(collection, s, n.id));
      hits.push_back(n);
    }
    if (s == 0) {
      plan.k = reply.explain.k;
      plan.recall_target = reply.explain.recall_target;
      plan.filter = reply.explain.filter;
      plan.parse_ms = reply.explain.parse_ms;
    }
    for (const std::string& w : reply.explain.warnings) {
      if (std::find(plan.warnings.begin(), plan.warnings.end(), w) == plan.warnings.end()) {
        plan.warnings.push_back(w);
      }
    }
    ShardExplain sh;
    sh.shard = s;
    sh.node = got.nodes[s];
    sh.address = AddressOfNode(got.nodes[s]);
    sh.results = reply.results[0].size();
    sh.ms = got.ms[s];
    sh.plan = reply.explain.ToJson();
    plan.shards.push_back(std::move(sh));
  }
  std::sort(hits.begin(), hits.end());
  if (hits.size() > options.k) hits.resize(options.k);
  const auto done = std::chrono::steady_clock::now();
  plan.merge_ms = std::chrono::duration<double, std::milli>(done - merge_start).count();
  plan.total_ms = std::chrono::duration<double, std::milli>(done - started).count();
  return std::make_pair(std::move(hits), std::move(plan));
}

Result<std::vector<Neighbor>> ClusterRouter::Search(const std::string& collection,
                                                    std::span<const float> query,
                                                    const SearchOptions& options) {
  STRATA_ASSIGN_OR_RETURN(auto results,
                          SearchBatch(collection, query.data(), static_cast<uint32_t>(query.size()),
                                      1, options));
  return std::move(results.front());
}

Result<CollectionInfo> ClusterRouter::Describe(const std::string& collection) {
  STRATA_ASSIGN_OR_RETURN(Route route, RouteOf(collection));
  std::vector<std::pair<std::string, protocol::Request>> requests;
  for (const ShardPlacement& sp : route.placement.shards) {
    if (sp.in_sync.empty()) {
      return Error(IOError("collection '{}' shard {} has no in-sync replica", collection, sp.shard));
    }
    requests.push_back({sp.in_sync.front().node,
                        protocol::Request{protocol::Op::kDescribeCollection,
                                          protocol::DescribeCollectionRequest{
                                              LocalShardName(collection, sp.shard)}}});
  }
  auto responses = FanOut(requests);
  CollectionInfo info;
  info.spec = route.record.ShardSpec(0);  // every shard's spec but its name
  info.spec.name = collection;
  for (size_t i = 0; i < responses.size(); ++i) {
    const auto* reply =
        responses[i] ? std::get_if<protocol::DescribeCollectionReply>(&responses[i]->body) : nullptr;
    if (reply == nullptr) {
      return Error(IOError("collection '{}' shard {}: replica {} did not describe it: {}",
                           collection, i, requests[i].first,
                           responses[i] ? std::string("a reply of the wrong shape")
                                        : responses[i].error().ToString()));
    }
    info.num_vectors += reply->info.num_vectors;
    info.memory_bytes += reply->info.memory_bytes;
    info.sealed_segments += reply->info.sealed_segments;
    info.last_sequence = std::max(info.last_sequence, reply->info.last_sequence);
  }
  return info;
}

}  // namespace strata::cluster
