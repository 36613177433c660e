#include "api/explain.h"

#include <limits>
#include <type_traits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace strata {

std::string Explain::ToString() const {
  std::string out = fmt::format("k={} recall_target={} filter={}\n", k,
                                recall_target > 0 ? fmt::format("{:.3f}", recall_target) : "explicit",
                                filter.empty() ? "(none)" : filter);
  out += fmt::format("{:<12} {:<6} {:<15} {:>9} {:>9} {:>8} {:>8} {:>6} {:>6} {:>7} {:>8} {:>9} {:>6} {:>10} "
                     "{:>8} {:>8}\n",
                     "segment", "kind", "strategy", "rows", "matching", "est_sel", "act_sel", "ef", "lists",
                     "pred_r", "visited", "distances", "read", "bytes", "filt_ms", "srch_ms");
  for (const auto& s : segments) {
    out += fmt::format("{:<12} {:<6} {:<15} {:>9} {:>9} {:>8.4f} {:>8.4f} {:>6} {:>6} {:>7.3f} {:>8} {:>9} {:>6} "
                       "{:>10} {:>8.3f} {:>8.3f}\n",
                       s.segment, s.kind, s.strategy, s.rows, s.matching, s.estimated_selectivity,
                       s.actual_selectivity, s.ef, s.max_lists, s.predicted_recall, s.nodes_visited, s.distances,
                       s.lists_read, s.bytes_read, s.filter_ms, s.search_ms);
    if (!s.reason.empty()) out += fmt::format("    why: {}\n", s.reason);
  }
  for (const std::string& w : warnings) out += fmt::format("warning: {}\n", w);
  out += fmt::format("parse {:.3f} ms, merge {:.3f} ms, total {:.3f} ms\n", parse_ms, merge_ms, total_ms);
  for (const ShardExplain& sh : shards) {
    out += fmt::format("shard {} on node {} ({}): {} results in {:.3f} ms\n", sh.shard, sh.node,
                       sh.address, sh.results, sh.ms);
    auto plan = FromJson(sh.plan);
    const std::string text = plan ? plan->ToString() : sh.plan + "\n";
    size_t from = 0;
    while (from < text.size()) {
      const size_t nl = text.find('\n', from);
      const size_t end = nl == std::string::npos ? text.size() : nl;
      out += "  " + text.substr(from, end - from) + "\n";
      from = end + 1;
    }
  }
  return out;
}

std::string Explain::ToJson() const {
  nlohmann::json j;
  j["k"] = k;
  j["recall_target"] = recall_target;
  j["filter"] = filter;
  j["warnings"] = warnings;
  j["parse_ms"] = parse_ms;
  j["merge_ms"] = merge_ms;
  j["total_ms"] = total_ms;
  j["segments"] = nlohmann::json::array();
  for (const auto& s : segments) {
    j["segments"].push_back({{"segment", s.segment},
                             {"kind", s.kind},
                             {"strategy", s.strategy},
                             {"reason", s.reason},
                             {"rows", s.rows},
                             {"matching", s.matching},
                             {"estimated_selectivity", s.estimated_selectivity},
                             {"actual_selectivity", s.actual_selectivity},
                             {"ef", s.ef},
                             {"max_lists", s.max_lists},
                             {"predicted_recall", s.predicted_recall},
                             {"nodes_visited", s.nodes_visited},
                             {"distances", s.distances},
                             {"lists_read", s.lists_read},
                             {"bytes_read", s.bytes_read},
                             {"results", s.results},
                             {"filter_ms", s.filter_ms},
                             {"search_ms", s.search_ms}});
  }
  if (!shards.empty()) {
    j["shards"] = nlohmann::json::array();
    for (const ShardExplain& sh : shards) {
      nlohmann::json plan = nlohmann::json::parse(sh.plan, nullptr, /*allow_exceptions=*/false);
      if (plan.is_discarded()) plan = sh.plan;  // not JSON: kept as text
      j["shards"].push_back({{"shard", sh.shard},
                             {"node", sh.node},
                             {"address", sh.address},
                             {"results", sh.results},
                             {"ms", sh.ms},
                             {"plan", std::move(plan)}});
    }
  }
  return j.dump(1);
}

namespace {

using Json = nlohmann::json;

// Reads `object[key]` into `out` when present; InvalidArgument when its type is wrong.
template <typename T>
Status Field(const Json& object, const char* key, std::string_view where, T& out) {
  const auto it = object.find(key);
  if (it == object.end()) return Status::Ok();
  const Json& v = *it;
  if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) return InvalidArgument("explain: {}{}: expected a string", where, key);
    out = v.get<std::string>();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) return InvalidArgument("explain: {}{}: expected a number", where, key);
    out = v.get<T>();
  } else {
    static_assert(std::is_unsigned_v<T>);
    if (!v.is_number_unsigned() || v.get<uint64_t>() > std::numeric_limits<T>::max()) {
      return InvalidArgument("explain: {}{}: expected an integer in [0, {}]", where, key,
                             std::numeric_limits<T>::max());
    }
    out = T(v.get<uint64_t>());
  }
  return Status::Ok();
}

Result<SegmentExplain> SegmentFromJson(const Json& j, size_t index) {
  const std::string where = fmt::format("segments[{}].", index);
  if (!j.is_object()) return Error(InvalidArgument("explain: segments[{}]: expected an object", index));
  SegmentExplain s;
  STRATA_RETURN_IF_ERROR(Field(j, "segment", where, s.segment));
  STRATA_RETURN_IF_ERROR(Field(j, "kind", where, s.kind));
  STRATA_RETURN_IF_ERROR(Field(j, "strategy", where, s.strategy));
  STRATA_RETURN_IF_ERROR(Field(j, "reason", where, s.reason));
  STRATA_RETURN_IF_ERROR(Field(j, "rows", where, s.rows));
  STRATA_RETURN_IF_ERROR(Field(j, "matching", where, s.matching));
  STRATA_RETURN_IF_ERROR(Field(j, "estimated_selectivity", where, s.estimated_selectivity));
  STRATA_RETURN_IF_ERROR(Field(j, "actual_selectivity", where, s.actual_selectivity));
  STRATA_RETURN_IF_ERROR(Field(j, "ef", where, s.ef));
  STRATA_RETURN_IF_ERROR(Field(j, "max_lists", where, s.max_lists));
  STRATA_RETURN_IF_ERROR(Field(j, "predicted_recall", where, s.predicted_recall));
  STRATA_RETURN_IF_ERROR(Field(j, "nodes_visited", where, s.nodes_visited));
  STRATA_RETURN_IF_ERROR(Field(j, "distances", where, s.distances));
  STRATA_RETURN_IF_ERROR(Field(j, "lists_read", where, s.lists_read));
  STRATA_RETURN_IF_ERROR(Field(j, "bytes_read", where, s.bytes_read));
  STRATA_RETURN_IF_ERROR(Field(j, "results", where, s.results));
  STRATA_RETURN_IF_ERROR(Field(j, "filter_ms", where, s.filter_ms));
  STRATA_RETURN_IF_ERROR(Field(j, "search_ms", where, s.search_ms));
  return s;
}

}  // namespace

Result<Explain> Explain::FromJson(std::string_view json) {
  const Json j = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Error(InvalidArgument("explain: not a JSON object"));
  }
  Explain e;
  STRATA_RETURN_IF_ERROR(Field(j, "k", "", e.k));
  STRATA_RETURN_IF_ERROR(Field(j, "recall_target", "", e.recall_target));
  STRATA_RETURN_IF_ERROR(Field(j, "filter", "", e.filter));
  STRATA_RETURN_IF_ERROR(Field(j, "parse_ms", "", e.parse_ms));
  STRATA_RETURN_IF_ERROR(Field(j, "merge_ms", "", e.merge_ms));
  STRATA_RETURN_IF_ERROR(Field(j, "total_ms", "", e.total_ms));
  if (const auto it = j.find("warnings"); it != j.end()) {
    if (!it->is_array()) return Error(InvalidArgument("explain: warnings: expected an array"));
    for (size_t i = 0; i < it->size(); ++i) {
      if (!(*it)[i].is_string()) return Error(InvalidArgument("explain: warnings[{}]: expected a string", i));
      e.warnings.push_back((*it)[i].get<std::string>());
    }
  }
  if (const auto it = j.find("segments"); it != j.end()) {
    if (!it->is_array()) return Error(InvalidArgument("explain: segments: expected an array"));
    e.segments.reserve(it->size());
    for (size_t i = 0; i < it->size(); ++i) {
      STRATA_ASSIGN_OR_RETURN(SegmentExplain s, SegmentFromJson((*it)[i], i));
      e.segments.push_back(std::move(s));
    }
  }
  if (const auto it = j.find("shards"); it != j.end()) {
    if (!it->is_array()) return Error(InvalidArgument("explain: shards: expected an array"));
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& o = (*it)[i];
      const std::string where = fmt::format("shards[{}].", i);
      if (!o.is_object()) return Error(InvalidArgument("explain: shards[{}]: expected an object", i));
      ShardExplain sh;
      STRATA_RETURN_IF_ERROR(Field(o, "shard", where, sh.shard));
      STRATA_RETURN_IF_ERROR(Field(o, "node", where, sh.node));
      STRATA_RETURN_IF_ERROR(Field(o, "address", where, sh.address));
      STRATA_RETURN_IF_ERROR(Field(o, "results", where, sh.results));
      STRATA_RETURN_IF_ERROR(Field(o, "ms", where, sh.ms));
      if (const auto plan = o.find("plan"); plan != o.end()) {
        if (plan->is_string()) {
          sh.plan = plan->get<std::string>();
        } else if (plan->is_object()) {
          sh.plan = plan->dump(1);
        } else {
          return Error(InvalidArgument("explain: {}plan: expected an object", where));
        }
      }
      e.shards.push_back(std::move(sh));
    }
  }
  return e;
}

}  // namespace strata
