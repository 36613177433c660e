// The vector-set writes and searches: VADD (one command or a batch of them), VSIM, VREM,
// VSETATTR. The reads of one element or one set are in resp_vset_read.cc. docs/RESP.md
// has every reply and the mapping to the engine.

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <unordered_map>

#include "server/resp_commands.h"
#include "server/resp_filter.h"
#include "server/resp_keys.h"
#include "server/resp_vset_util.h"

namespace strata::server {

namespace resp = protocol::resp;

namespace {

// Redis's defaults and ranges (vset.c, hnsw.h).
constexpr int64_t kDefaultCount = 10;
constexpr int64_t kMinM = 4;
constexpr int64_t kMaxM = 4096;

// One VADD, parsed.
struct VaddArgs {
  std::vector<float> vector;
  std::string element;
  std::optional<std::string> setattr;
  std::optional<uint32_t> m;
  std::optional<uint32_t> ef;
  std::optional<Metric> metric;
};

// The error reply text (no leading '-') or the parsed command.
std::expected<VaddArgs, std::string> ParseVadd(std::span<const std::string> args) {
  VaddArgs out;
  size_t i = 2;
  if (UpperAscii(args[i]) == "REDUCE") {
    return std::unexpected(
        "ERR REDUCE is not supported by Strata: vectors are stored at their full dimension "
        "(reduce them before VADD)");
  }
  auto vec = ParseVectorArgs(args, i);
  if (!vec) return std::unexpected(vec.error());
  out.vector = std::move(vec->values);
  i += vec->consumed;
  if (i >= args.size()) return std::unexpected(WrongArityMessage(args[0]));
  out.element = args[i++];
  for (; i < args.size(); ++i) {
    const std::string opt = UpperAscii(args[i]);
    const bool has_value = i + 1 < args.size();
    if (opt == "CAS" || opt == "NOQUANT" || opt == "Q8") {
      // CAS: every VADD already runs off the I/O thread. NOQUANT / Q8: Strata stores f32.
    } else if (opt == "BIN") {
      return std::unexpected(
          "ERR BIN quantization is not supported by Strata: vectors are stored as f32 (use "
          "NOQUANT or Q8, or leave it out)");
    } else if (opt == "EF" && has_value) {
      int64_t ef = 0;
      if (!ParseInt(args[++i], ef) || ef <= 0 || ef > 1000000) return std::unexpected("ERR invalid EF");
      out.ef = uint32_t(ef);
    } else if (opt == "M" && has_value) {
      int64_t m = 0;
      if (!ParseInt(args[++i], m) || m < kMinM || m > kMaxM) return std::unexpected("ERR invalid M");
      out.m = uint32_t(m);
    } else if (opt == "SETATTR" && has_value) {
      out.setattr = args[++i];
    } else if (opt == "METRIC" && has_value) {
      auto metric = ParseMetric(args[++i]);
      if (!metric) {
        return std::unexpected(fmt::format("ERR invalid METRIC '{}' (expected cosine, l2 or ip)",
                                           args[i]));
      }
      out.metric = *metric;
    } else {
      return std::unexpected("ERR invalid option after element");
    }
  }
  if (!ValidateKey(out.element).ok()) {
    return std::unexpected(fmt::format("ERR invalid element: {}", ValidateKey(out.element).message()));
  }
  for (size_t d = 0; d < out.vector.size(); ++d) {
    if (!std::isfinite(out.vector[d])) {
      return std::unexpected(fmt::format(
          "ERR invalid vector specification: component {} is not a finite number", d));
    }
  }
  return out;
}

std::string ErrorText(std::string_view message) {
  std::string out;
  resp::RespWriter(out).Error(message);
  return out;
}

}  // namespace

std::string_view RespCommands::BatchableVaddKey(std::span<const std::string> args) {
  if (args.size() < 5 || args[0].size() != 4 || UpperAscii(args[0]) != "VADD") return {};
  return args[1];
}

void RespCommands::VAdd(std::span<const std::string> args, resp::RespWriter& w) {
  std::vector<std::string> replies;
  const std::vector<std::vector<std::string>> one = {{args.begin(), args.end()}};
  ExecuteVaddBatch(one, w.protocol(), replies);
  w.Raw(replies[0]);
}

void RespCommands::ExecuteVaddBatch(std::span<const std::vector<std::string>> commands,
                                    int protocol, std::vector<std::string>& replies) {
  replies.assign(commands.size(), {});
  const std::string& key = commands[0][1];
  if (!IsCollectionKey(key)) {
    for (auto& r : replies) r = ErrorText(InvalidKeyMessage(key));
    return;
  }
  std::vector<std::optional<VaddArgs>> parsed(commands.size());
  const VaddArgs* first = nullptr;
  for (size_t c = 0; c < commands.size(); ++c) {
    auto p = ParseVadd(commands[c]);
    if (!p) {
      replies[c] = ErrorText(p.error());
      continue;
    }
    parsed[c] = std::move(*p);
    if (first == nullptr) first = &*parsed[c];
  }
  if (first == nullptr) return;

  // The set: created by the first VADD with its dimension (Redis), cosine unless METRIC says.
  auto info = engine_.DescribeCollection(key);
  if (!info && info.error().code() == StatusCode::kNotFound) {
    CollectionSpec spec;
    spec.name = key;
    spec.dim = first->vector.size();
    spec.metric = first->metric.value_or(Metric::kCosine);
    if (first->m) spec.hnsw_M = *first->m;
    if (first->ef) spec.hnsw_ef_construction = *first->ef;
    const Status s = engine_.CreateCollection(spec);
    if (!s.ok() && s.code() != StatusCode::kAlreadyExists) {
      for (size_t c = 0; c < commands.size(); ++c) {
        if (parsed[c]) replies[c] = ErrorText("ERR " + s.message());
      }
      return;
    }
    info = engine_.DescribeCollection(key);
  }
  if (!info) {
    for (size_t c = 0; c < commands.size(); ++c) {
      if (parsed[c]) replies[c] = ErrorText("ERR " + info.error().message());
    }
    return;
  }
  const CollectionSpec& spec = info->spec;

  // Each element: added (1) or updated (0); without SETATTR an update keeps the attributes.
  WriteBatch batch;
  std::vector<size_t> in_batch;
  std::unordered_map<std::string, const Attributes*> written;  // by this batch, for repeats
  std::vector<Attributes> attrs(commands.size());
  std::vector<bool> added(commands.size());
  for (size_t c = 0; c < commands.size(); ++c) {
    if (!parsed[c]) continue;
    VaddArgs& a = *parsed[c];
    if (a.vector.size() != spec.dim) {
      replies[c] = ErrorText(fmt::format("ERR Vector dimension mismatch - got {} but set has {}",
                                         a.vector.size(), spec.dim));
      continue;
    }
    if (a.m && *a.m != spec.hnsw_M) {
      replies[c] = ErrorText("ERR asked M value mismatch with existing vector set");
      continue;
    }
    if (a.metric && *a.metric != spec.metric) {
      replies[c] = ErrorText(fmt::format("ERR asked METRIC {} mismatch with existing vector set "
                                         "({})",
                                         MetricName(*a.metric), MetricName(spec.metric)));
      continue;
    }
    if (a.setattr) {
      auto from_json = AttributesFromJson(*a.setattr);
      if (!from_json) {
        replies[c] = ErrorText("ERR SETATTR: " + from_json.error().message());
        continue;
      }
      attrs[c] = std::move(*from_json);
    }
    auto earlier = written.find(a.element);
    if (earlier != written.end()) {
      added[c] = false;
      if (!a.setattr) attrs[c] = *earlier->second;
    } else {
      auto existing = engine_.FindKey(key, a.element);
      added[c] = !existing.has_value();
      if (existing && !a.setattr) {
        auto record = engine_.Get(key, *existing);
        if (record) attrs[c] = std::move(record->attributes);
      }
    }
    batch.UpsertByKey(a.element, a.vector, attrs[c]);
    written[a.element] = &attrs[c];
    in_batch.push_back(c);
  }
  if (batch.empty()) return;
  const Status s = engine_.Write(key, batch);
  for (size_t c : in_batch) {
    if (!s.ok()) {
      replies[c] = ErrorText("ERR " + s.message());
    } else {
      resp::RespWriter(replies[c], protocol).Bool(added[c]);
    }
  }
}

void RespCommands::VSim(std::span<const std::string> args, resp::RespWriter& w) {
  const std::string& key = args[1];
  const auto info = IsCollectionKey(key) ? engine_.DescribeCollection(key)
                                         : Result<CollectionInfo>(Error(NotFound("no such key")));
  if (!info) {
    if (info.error().code() == StatusCode::kNotFound) return w.Array(0);
    return w.Error("ERR " + info.error().message());
  }
  const size_t dim = info->spec.dim;
  std::vector<float> query;
  size_t i = 2;
  if (UpperAscii(args[2]) == "ELE") {
    auto record = engine_.GetByKey(key, args[3]);
    if (!record) {
      if (record.error().code() == StatusCode::kNotFound) {
        return w.Error("ERR element not found in set");
      }
      return w.Error("ERR " + record.error().message());
    }
    query = std::move(record->vector);
    i += 2;
  } else {
    auto vec = ParseVectorArgs(args, 2);
    if (!vec) return w.Error(vec.error());
    query = std::move(vec->values);
    i += vec->consumed;
    for (size_t d = 0; d < query.size(); ++d) {
      if (!std::isfinite(query[d])) {
        return w.Error(fmt::format(
            "ERR invalid vector specification: component {} is not a finite number", d));
      }
    }
  }
  if (query.size() != dim) {
    return w.Error(fmt::format("ERR Vector dimension mismatch - got {} but set has {}",
                               query.size(), dim));
  }
  bool with_scores = false, with_attribs = false, truth = false;
  int64_t count = kDefaultCount, ef = 0, filter_ef = 0;
  double epsilon = 2.0;
  std::optional<TranslatedFilter> filter;
  for (; i < args.size(); ++i) {
    const std::string opt = UpperAscii(args[i]);
    const bool has_value = i + 1 < args.size();
    if (opt == "WITHSCORES") {
      with_scores = true;
    } else if (opt == "WITHATTRIBS") {
      with_attribs = true;
    } else if (opt == "TRUTH") {
      truth = true;
    } else if (opt == "NOTHREAD") {
      // Every search runs on the worker pool; nothing to change.
    } else if (opt == "COUNT" && has_value) {
      if (!ParseInt(args[++i], count) || count <= 0) return w.Error("ERR invalid COUNT");
      if (count > int64_t(config_.max_k)) {
        return w.Error(fmt::format("ERR invalid COUNT: at most {} (server.max_k)", config_.max_k));
      }
    } else if (opt == "EPSILON" && has_value) {
      if (!ParseDouble(args[++i], epsilon) || !(epsilon > 0)) return w.Error("ERR invalid EPSILON");
    } else if (opt == "EF" && has_value) {
      if (!ParseInt(args[++i], ef) || ef <= 0 || ef > 1000000) return w.Error("ERR invalid EF");
    } else if (opt == "FILTER-EF" && has_value) {
      if (!ParseInt(args[++i], filter_ef) || filter_ef <= 0) return w.Error("ERR invalid FILTER-EF");
    } else if (opt == "FILTER" && has_value) {
      auto t = TranslateRedisFilter(args[++i]);
      if (!t) return w.Error("ERR " + t.error().message());
      filter = std::move(*t);
    } else {
      return w.Error("ERR syntax error in VSIM command");
    }
  }
  if (filter && filter->kind == TranslatedFilter::Kind::kNone) return w.Array(0);
  SearchOptions options;
  options.k = uint32_t(count);
  // EF: Redis's search-time candidate list, raised to COUNT as Redis does; without it the
  // planner picks the effort from the default recall target (docs/PLANNER.md). FILTER-EF
  // is accepted and not used: the planner chooses how a filter is run (index, scan or
  // post-filter) from its selectivity, and returns COUNT matches whenever that many exist.
  if (ef > 0) options.ef = uint32_t(std::min<int64_t>(std::max(ef, count), kMaxSearchEf));
  if (truth) options.strategy = SearchStrategy::kScan;
  if (filter && filter->kind == TranslatedFilter::Kind::kFilter) options.filter = filter->text;
  auto hits = engine_.SearchWithKeys(key, query, options);
  if (!hits) {
    if (hits.error().code() == StatusCode::kNotFound) return w.Array(0);
    return w.Error("ERR " + hits.error().message());
  }
  // EPSILON: only elements whose similarity is at least 1 - EPSILON (Redis: distance / 2).
  std::vector<std::pair<const KeyedNeighbor*, double>> kept;
  for (const KeyedNeighbor& h : *hits) {
    const double score = ScoreOf(info->spec.metric, h.distance);
    if (1.0 - score > epsilon) break;
    kept.emplace_back(&h, score);
  }
  const bool map = w.resp3() && (with_scores || with_attribs);
  if (map) {
    w.Map(kept.size());
  } else {
    w.Array(kept.size() * (1 + size_t(with_scores) + size_t(with_attribs)));
  }
  for (const auto& [h, score] : kept) {
    w.Bulk(ElementName(*h));
    if (map && with_scores && with_attribs) w.Array(2);
    if (with_scores) w.Double(score);
    if (with_attribs) {
      auto record = engine_.Get(key, h->id);
      const std::string* json = record ? JsonOf(record->attributes) : nullptr;
      if (json != nullptr) {
        w.Bulk(*json);
      } else {
        w.Null();
      }
    }
  }
}

void RespCommands::VRem(std::span<const std::string> args, resp::RespWriter& w) {
  if (!IsCollectionKey(args[1]) || !engine_.FindKey(args[1], args[2])) return w.Bool(false);
  const Status s = engine_.DeleteByKey(args[1], args[2]);
  if (!s.ok()) return w.Error("ERR " + s.message());
  w.Bool(true);
}

void RespCommands::VSetAttr(std::span<const std::string> args, resp::RespWriter& w) {
  if (!IsCollectionKey(args[1])) return w.Bool(false);
  auto record = engine_.GetByKey(args[1], args[2]);
  if (!record) {
    if (record.error().code() == StatusCode::kNotFound) return w.Bool(false);
    return w.Error("ERR " + record.error().message());
  }
  auto attrs = AttributesFromJson(args[3]);
  if (!attrs) return w.Error("ERR VSETATTR: " + attrs.error().message());
  // The element is written again with its vector and the new attributes (one log record).
  WriteBatch batch;
  batch.UpsertByKey(args[2], record->vector, std::move(*attrs));
  const Status s = engine_.Write(args[1], batch);
  if (!s.ok()) return w.Error("ERR " + s.message());
  w.Bool(true);
}

}  // namespace strata::server
