#include "cluster/model.h"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace strata::cluster {

using nlohmann::json;

Status ValidateCollectionName(std::string_view name) {
  if (name.empty() || name.size() > 56) {
    return InvalidArgument("cluster collection name '{}' must have 1 to 56 characters", name);
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) {
      return InvalidArgument("cluster collection name '{}' may only hold letters, digits, '_' and '-'",
                             name);
    }
  }
  // "__" separates a shard's engine collection from its number (LocalShardName).
  if (name.find("__") != std::string_view::npos) {
    return InvalidArgument("cluster collection name '{}' must not contain '__' (shard names use it)",
                           name);
  }
  return Status::Ok();
}

std::string LocalShardName(std::string_view collection, uint32_t shard) {
  return fmt::format("{}__s{}", collection, shard);
}

Status CollectionRecord::Validate() const {
  STRATA_RETURN_IF_ERROR(ValidateCollectionName(name));
  if (dim == 0 || dim > 65536) return InvalidArgument("collection '{}': dim {} not in 1..65536", name, dim);
  if (shards == 0 || shards > kMaxShards) {
    return InvalidArgument("collection '{}': shards {} not in 1..{}", name, shards, kMaxShards);
  }
  if (replicas == 0 || replicas > kMaxReplicas) {
    return InvalidArgument("collection '{}': replicas {} not in 1..{}", name, replicas, kMaxReplicas);
  }
  if (hnsw_M < 2 || hnsw_ef_construction == 0) {
    return InvalidArgument("collection '{}': hnsw_M must be >= 2 and ef_construction > 0", name);
  }
  if (seal_threshold == 0) return InvalidArgument("collection '{}': seal_threshold must be at least 1", name);
  if (codes != VectorCodes::kNone && codes != VectorCodes::kSq8) {
    return InvalidArgument("collection '{}': unknown codes value {}", name, int(codes));
  }
  if (codes == VectorCodes::kNone && rerank != 0) {
    return InvalidArgument("collection '{}': rerank {} needs codes (it is the depth of their rerank)",
                           name, rerank);
  }
  if (rerank > kMaxSearchEf) {
    return InvalidArgument("collection '{}': rerank {} must be at most {}", name, rerank, kMaxSearchEf);
  }
  return Status::Ok();
}

CollectionRecord CollectionRecord::FromSpec(const CollectionSpec& spec, uint32_t shards,
                                            uint32_t replicas) {
  CollectionRecord r;
  r.name = spec.name;
  r.dim = uint32_t(spec.dim);
  r.metric = spec.metric;
  r.shards = shards;
  r.replicas = replicas;
  r.hnsw_M = spec.hnsw_M;
  r.hnsw_ef_construction = spec.hnsw_ef_construction;
  r.seal_threshold = spec.seal_threshold;
  r.memory_budget_bytes = spec.memory_budget_bytes;
  r.codes = spec.codes;
  r.rerank = spec.rerank;
  return r;
}

CollectionSpec CollectionRecord::ShardSpec(uint32_t shard) const {
  CollectionSpec spec;
  spec.name = LocalShardName(name, shard);
  spec.dim = dim;
  spec.metric = metric;
  spec.hnsw_M = hnsw_M;
  spec.hnsw_ef_construction = hnsw_ef_construction;
  spec.seal_threshold = seal_threshold;
  spec.memory_budget_bytes = memory_budget_bytes;
  spec.codes = codes;
  spec.rerank = rerank;
  return spec;
}

namespace {

template <typename T, typename F>
Result<T> ParseWith(std::string_view text, std::string_view what, F&& f) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Error(Corruption("{} is not a JSON object: '{}'", what, text.substr(0, 120)));
  }
  try {
    return f(j);
  } catch (const std::exception& e) {
    return Error(Corruption("{} '{}': {}", what, text.substr(0, 120), e.what()));
  }
}

}  // namespace

std::string CollectionRecord::ToJson() const {
  return json{{"name", name},
              {"dim", dim},
              {"metric", std::string(MetricName(metric))},
              {"shards", shards},
              {"replicas", replicas},
              {"hnsw_M", hnsw_M},
              {"hnsw_ef_construction", hnsw_ef_construction},
              {"seal_threshold", seal_threshold},
              {"memory_budget_bytes", memory_budget_bytes},
              {"codes", std::string(VectorCodesName(codes))},
              {"rerank", rerank},
              {"created_unix_ms", created_unix_ms}}
      .dump();
}

Result<CollectionRecord> CollectionRecord::FromJson(std::string_view text) {
  return ParseWith<CollectionRecord>(text, "collection record", [](const json& j) -> Result<CollectionRecord> {
    CollectionRecord r;
    r.name = j.at("name").get<std::string>();
    r.dim = j.at("dim").get<uint32_t>();
    auto metric = ParseMetric(j.at("metric").get<std::string>());
    if (!metric) return Error(metric.error());
    r.metric = *metric;
    r.shards = j.at("shards").get<uint32_t>();
    r.replicas = j.at("replicas").get<uint32_t>();
    r.hnsw_M = j.value("hnsw_M", 16u);
    r.hnsw_ef_construction = j.value("hnsw_ef_construction", 200u);
    r.seal_threshold = j.value("seal_threshold", uint64_t{100000});
    r.memory_budget_bytes = j.value("memory_budget_bytes", uint64_t{0});
    auto codes = ParseVectorCodes(j.value("codes", std::string("none")));
    if (!codes) return Error(codes.error());
    r.codes = *codes;
    r.rerank = j.value("rerank", 0u);
    r.created_unix_ms = j.value("created_unix_ms", int64_t{0});
    STRATA_RETURN_IF_ERROR(r.Validate());
    return r;
  });
}

std::string Placement::ToJson() const {
  json shards_json = json::array();
  for (const ShardPlacement& s : shards) {
    json in_sync = json::array();
    for (const ReplicaRef& r : s.in_sync) in_sync.push_back({{"node", r.node}, {"incarnation", r.incarnation}});
    json shard{{"shard", s.shard}, {"replicas", s.replicas}, {"in_sync", in_sync}};
    // Left out when empty / 0, as placements written before catch-up read them.
    if (!s.catching_up.empty()) {
      json catching = json::array();
      for (const ReplicaRef& r : s.catching_up) {
        catching.push_back({{"node", r.node}, {"incarnation", r.incarnation}, {"since", r.since}});
      }
      shard["catching_up"] = catching;
    }
    if (s.write_epoch != 0) shard["write_epoch"] = s.write_epoch;
    shards_json.push_back(shard);
  }
  return json{{"collection", collection}, {"epoch", epoch}, {"shards", shards_json}}.dump();
}

Result<Placement> Placement::FromJson(std::string_view text) {
  return ParseWith<Placement>(text, "placement", [](const json& j) -> Result<Placement> {
    Placement p;
    p.collection = j.at("collection").get<std::string>();
    p.epoch = j.at("epoch").get<uint64_t>();
    for (const json& s : j.at("shards")) {
      ShardPlacement sp;
      sp.shard = s.at("shard").get<uint32_t>();
      sp.replicas = s.at("replicas").get<std::vector<std::string>>();
      for (const json& r : s.at("in_sync")) {
        sp.in_sync.push_back({r.at("node").get<std::string>(), r.at("incarnation").get<uint64_t>()});
      }
      if (s.contains("catching_up")) {
        for (const json& r : s.at("catching_up")) {
          sp.catching_up.push_back({r.at("node").get<std::string>(),
                                    r.at("incarnation").get<uint64_t>(),
                                    r.at("since").get<uint64_t>()});
        }
      }
      sp.write_epoch = s.value("write_epoch", uint64_t{0});
      if (sp.shard != p.shards.size()) {
        return Error(Corruption("placement of '{}': shard {} listed at position {}", p.collection,
                                sp.shard, p.shards.size()));
      }
      p.shards.push_back(std::move(sp));
    }
    return p;
  });
}

std::string ReplicaReport::ToJson() const {
  return json{{"node", node},
              {"incarnation", incarnation},
              {"state", state},
              {"num_vectors", num_vectors},
              {"last_sequence", last_sequence},
              {"caught_up_epoch", caught_up_epoch}}
      .dump();
}

Result<ReplicaReport> ReplicaReport::FromJson(std::string_view text) {
  return ParseWith<ReplicaReport>(text, "replica report", [](const json& j) -> Result<ReplicaReport> {
    ReplicaReport r;
    r.node = j.at("node").get<std::string>();
    r.incarnation = j.at("incarnation").get<uint64_t>();
    r.state = j.at("state").get<std::string>();
    r.num_vectors = j.value("num_vectors", uint64_t{0});
    r.last_sequence = j.value("last_sequence", uint64_t{0});
    r.caught_up_epoch = j.value("caught_up_epoch", uint64_t{0});
    return r;
  });
}

Result<Placement> PlaceCollection(const CollectionRecord& collection, const LiveNodes& live,
                                  std::map<std::string, uint32_t> load, uint64_t first_epoch) {
  STRATA_RETURN_IF_ERROR(collection.Validate());
  if (live.size() < collection.replicas) {
    return Error(ResourceExhausted("collection '{}' needs {} replicas per shard; {} nodes are live",
                                   collection.name, collection.replicas, live.size()));
  }
  std::vector<std::string> ids;
  for (const auto& [id, incarnation] : live) ids.push_back(id);
  Placement p;
  p.collection = collection.name;
  p.epoch = std::max<uint64_t>(first_epoch, 1);
  // Searches go to one replica per shard, the first preferred: spread the first replicas too.
  std::map<std::string, uint32_t> firsts;
  for (uint32_t s = 0; s < collection.shards; ++s) {
    const size_t n = ids.size();
    auto rotated = [&](size_t i) { return (i + n - s % n) % n; };
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    ShardPlacement sp;
    sp.shard = s;
    sp.write_epoch = p.epoch;
    for (uint32_t r = 0; r < collection.replicas; ++r) {
      // Among the nodes not chosen yet: the fewest first replicas (for r = 0), then the least
      // loaded; among equals, the order rotates with the shard.
      auto best = std::min_element(order.begin(), order.end(), [&](size_t a, size_t b) {
        if (r == 0 && firsts[ids[a]] != firsts[ids[b]]) return firsts[ids[a]] < firsts[ids[b]];
        const uint32_t la = load[ids[a]], lb = load[ids[b]];
        if (la != lb) return la < lb;
        return rotated(a) < rotated(b);
      });
      const std::string& id = ids[*best];
      order.erase(best);
      if (r == 0) ++firsts[id];
      sp.replicas.push_back(id);
      sp.in_sync.push_back({id, live.at(id)});
      ++load[id];
    }
    p.shards.push_back(std::move(sp));
  }
  return p;
}

bool UpdateInSync(Placement& placement, const LiveNodes& live, uint64_t epoch) {
  bool changed = false;
  for (ShardPlacement& s : placement.shards) {
    std::vector<ReplicaRef> kept;
    for (const ReplicaRef& r : s.in_sync) {
      auto it = live.find(r.node);
      if (it == live.end()) continue;
      kept.push_back({r.node, it->second});
    }
    if (kept.empty()) continue;  // every in-sync replica is gone: the set stays as it is
    if (kept != s.in_sync) {
      if (kept.front() != s.in_sync.front()) s.write_epoch = epoch;  // another primary
      s.in_sync = std::move(kept);
      changed = true;
    }
  }
  return changed;
}

}  // namespace strata::cluster

namespace strata::cluster {

bool UpdateCatchUp(Placement& placement, const LiveNodes& live, const ShardReports& reports,
                   uint64_t epoch) {
  bool changed = false;
  for (size_t i = 0; i < placement.shards.size(); ++i) {
    ShardPlacement& s = placement.shards[i];
    std::vector<ReplicaRef> still;
    for (const ReplicaRef& r : s.catching_up) {
      auto it = live.find(r.node);
      if (it == live.end() || it->second != r.incarnation) {
        changed = true;  // gone, or another incarnation: it starts over
        continue;
      }
      const ReplicaReport* report = nullptr;
      if (i < reports.size()) {
        auto rep = reports[i].find(r.node);
        if (rep != reports[i].end()) report = &rep->second;
      }
      if (report != nullptr && report->incarnation == r.incarnation && report->caught_up_epoch != 0 &&
          report->caught_up_epoch >= r.since) {
        s.in_sync.push_back({r.node, r.incarnation});
        changed = true;
        continue;
      }
      still.push_back(r);
    }
    s.catching_up = std::move(still);
    for (const std::string& n : s.replicas) {
      auto it = live.find(n);
      if (it == live.end()) continue;
      auto listed = [&](const std::vector<ReplicaRef>& v) {
        return std::any_of(v.begin(), v.end(), [&](const ReplicaRef& r) { return r.node == n; });
      };
      if (listed(s.in_sync) || listed(s.catching_up)) continue;
      s.catching_up.push_back({n, it->second, epoch});
      s.write_epoch = epoch;
      changed = true;
    }
  }
  return changed;
}

std::vector<uint32_t> ShortShards(const Placement& placement, uint32_t replicas,
                                  const LiveNodes& live) {
  std::vector<uint32_t> shorts;
  for (const ShardPlacement& s : placement.shards) {
    const size_t alive = size_t(std::count_if(s.replicas.begin(), s.replicas.end(),
                                              [&](const std::string& n) { return live.contains(n); }));
    if (alive < replicas) shorts.push_back(s.shard);
  }
  return shorts;
}

std::vector<Replacement> Rereplicate(Placement& placement, uint32_t replicas,
                                     const LiveNodes& live, std::map<std::string, uint32_t>& load,
                                     const std::function<bool(uint32_t shard)>& due) {
  std::vector<Replacement> done;
  for (uint32_t shard : ShortShards(placement, replicas, live)) {
    if (!due(shard)) continue;
    auto found = std::find_if(placement.shards.begin(), placement.shards.end(),
                              [&](const ShardPlacement& s) { return s.shard == shard; });
    if (found == placement.shards.end()) continue;
    ShardPlacement& s = *found;
    auto listed = [](const std::vector<ReplicaRef>& v, const std::string& n) {
      return std::any_of(v.begin(), v.end(), [&](const ReplicaRef& r) { return r.node == n; });
    };
    // The new replica copies the shard from a registered in-sync one: none, no re-replication
    // (the shard waits for one of its in-sync replicas to return).
    if (!std::any_of(s.in_sync.begin(), s.in_sync.end(),
                     [&](const ReplicaRef& r) { return live.contains(r.node); })) {
      continue;
    }
    // The dead replica it replaces: not registered, in neither set (UpdateInSync and
    // UpdateCatchUp took it out; a last in-sync replica is never replaced).
    auto dead = std::find_if(s.replicas.begin(), s.replicas.end(), [&](const std::string& n) {
      return !live.contains(n) && !listed(s.in_sync, n) && !listed(s.catching_up, n);
    });
    if (dead == s.replicas.end() && s.replicas.size() >= replicas) continue;
    const std::string* best = nullptr;
    for (const auto& [id, incarnation] : live) {
      if (std::find(s.replicas.begin(), s.replicas.end(), id) != s.replicas.end()) continue;
      if (listed(s.in_sync, id) || listed(s.catching_up, id)) continue;
      const uint32_t l = load.contains(id) ? load.at(id) : 0;
      if (best == nullptr || l < (load.contains(*best) ? load.at(*best) : 0)) best = &id;
      // `live` is ordered by id: among equal loads the first (smallest id) stays.
    }
    if (best == nullptr) continue;  // every registered node holds the shard already
    Replacement r{.shard = shard, .removed = {}, .added = *best};
    if (dead != s.replicas.end()) {
      r.removed = *dead;
      if (auto l = load.find(*dead); l != load.end() && l->second > 0) --l->second;
      s.replicas.erase(dead);
    }
    s.replicas.push_back(*best);
    ++load[*best];
    done.push_back(std::move(r));
  }
  return done;
}

std::string ShardAddress::ToString() const {
  return fmt::format("{}@{}{}", local, epoch, catching_up ? "+" : primary ? "!" : "");
}

ShardAddress MakePrimaryAddress(std::string_view collection, uint32_t shard, uint64_t epoch) {
  ShardAddress a = MakeShardAddress(collection, shard, epoch);
  a.primary = true;
  return a;
}

ShardAddress MakeShardAddress(std::string_view collection, uint32_t shard, uint64_t epoch,
                              bool catching_up) {
  return {LocalShardName(collection, shard), std::string(collection), shard, epoch, catching_up};
}

std::optional<Result<ShardAddress>> ParseShardAddress(std::string_view name) {
  const size_t at = name.rfind('@');
  if (at == std::string_view::npos) return std::nullopt;
  auto bad = [&] {
    return Error(InvalidArgument("'{}' is not a shard address (<collection>__s<shard>@<epoch>[+|!])",
                                 name.substr(0, 120)));
  };
  ShardAddress a;
  a.local = std::string(name.substr(0, at));
  std::string_view tail = name.substr(at + 1);
  if (!tail.empty() && tail.back() == '+') {
    a.catching_up = true;
    tail.remove_suffix(1);
  } else if (!tail.empty() && tail.back() == '!') {
    a.primary = true;
    tail.remove_suffix(1);
  }
  if (tail.empty() || tail.size() > 19) return bad();
  for (char c : tail) {
    if (c < '0' || c > '9') return bad();
    a.epoch = a.epoch * 10 + uint64_t(c - '0');
  }
  const size_t sep = a.local.rfind("__s");
  if (sep == std::string::npos || sep == 0 || sep + 3 >= a.local.size() ||
      a.local.size() - sep - 3 > 4) {
    return bad();
  }
  a.collection = a.local.substr(0, sep);
  for (size_t i = sep + 3; i < a.local.size(); ++i) {
    const char c = a.local[i];
    if (c < '0' || c > '9') return bad();
    a.shard = a.shard * 10 + uint32_t(c - '0');
  }
  if (!ValidateCollectionName(a.collection).ok() || a.shard >= kMaxShards ||
      a.local != LocalShardName(a.collection, a.shard)) {
    return bad();
  }
  return a;
}

}  // namespace strata::cluster
