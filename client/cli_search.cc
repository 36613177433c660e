// strata-cli: search -- one vector (optionally with its plan), or a query file run
// through the connection and measured (QPS, latency percentiles, recall@k).

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fmt/core.h>

#include "client/cli.h"
#include "core/timer.h"

namespace strata::cli {
namespace {

Json NeighborsJson(const std::vector<Neighbor>& list) {
  Json a = Json::array();
  for (const Neighbor& n : list) a.push_back({{"id", n.id}, {"distance", n.distance}});
  return a;
}

// Keys (records written by key) appear as "key"; records written by id have none. With
// `attributes`, every hit has "attributes" (an object, empty when it has none).
Json NeighborsJson(const std::vector<KeyedNeighbor>& list, bool attributes) {
  Json a = Json::array();
  for (const KeyedNeighbor& n : list) {
    Json o = {{"id", n.id}, {"distance", n.distance}};
    if (!n.key.empty()) o["key"] = n.key;
    if (attributes) o["attributes"] = AttributesJson(n.attributes);
    a.push_back(std::move(o));
  }
  return a;
}

// One search through search_with: hits with keys (and attributes on request) and the filter's
// warnings. A server that predates search_with: search_keyed, without warnings (unless the
// attributes were asked for, which it cannot give).
Result<protocol::SearchWithReply> SearchOne(Client& client, const std::string& name,
                                            const std::vector<float>& query, const SearchOptions& options) {
  auto r = client.SearchWith(name, query.data(), uint32_t(query.size()), 1, options);
  if (r || r.error().code() != StatusCode::kUnimplemented || options.with_attributes || !client.is_open()) {
    return r;
  }
  SearchOptions keyed_options = options;  // search_keyed carries neither (no cluster either)
  keyed_options.allow_partial = false;
  keyed_options.shard_timeout_ms = 0;
  auto keyed = client.SearchKeyed(name, query.data(), uint32_t(query.size()), 1, keyed_options);
  if (!keyed) return Error(keyed.error());
  return protocol::SearchWithReply{false, std::move(*keyed), {}, {}};
}

int CmdSearchOne(Client& client, const SearchCmdArgs& a, const std::vector<float>& query,
                 SearchOptions options) {
  options.with_attributes = a.with_attributes;
  options.allow_partial = a.allow_partial;
  options.shard_timeout_ms = a.shard_timeout_ms;
  std::vector<KeyedNeighbor> hits;
  std::vector<std::string> warnings;
  std::vector<protocol::MissingShard> missing;
  std::string explain;
  strata::Explain explained;
  Timer timer;
  if (a.explain) {
    SearchOptions plain = options;
    plain.with_attributes = false;
    plain.allow_partial = false;  // explain carries neither (search_with only)
    plain.shard_timeout_ms = 0;
    auto r = client.Explain(a.name, query, plain);
    if (!r) return Fail(r.error());
    for (const Neighbor& n : r->first) hits.push_back({n.id, n.distance, {}, {}});
    explain = r->second.ToJson();
    warnings = r->second.warnings;
    explained = std::move(r->second);
  }
  if (!a.explain || a.with_attributes || a.allow_partial || a.shard_timeout_ms != 0) {
    auto r = SearchOne(client, a.name, query, options);
    if (!r) return Fail(r.error());
    hits = std::move(r->results[0]);
    warnings = std::move(r->warnings);
    missing = std::move(r->missing);
  }
  const double ms = timer.Millis();
  PrintWarnings(warnings);
  for (const auto& m : missing) {
    fmt::print(stderr, "partial: shard {} missing: {}\n", m.shard, m.reason);
  }
  Json plan;
  if (a.explain) {
    plan = Json::parse(explain, nullptr, /*allow_exceptions=*/false);
    if (plan.is_discarded()) plan = explain;  // not JSON: pass the text through
  }
  if (a.json) {
    Json o = {{"command", "search"}, {"collection", a.name}, {"k", options.k},
              {"latency_ms", ms}, {"results", Json::array({NeighborsJson(hits, a.with_attributes)})},
              {"warnings", warnings}};
    if (a.explain) o["explain"] = plan;
    if (a.allow_partial) {
      Json m = Json::array();
      for (const auto& s : missing) m.push_back({{"shard", s.shard}, {"reason", s.reason}});
      o["partial"] = !missing.empty();
      o["missing_shards"] = std::move(m);
    }
    fmt::print("{}\n", Dump(o));
    return 0;
  }
  // One line per hit: id, distance, the key (records written by key), the attributes as a
  // JSON object (--with-attributes), tab-separated.
  for (const KeyedNeighbor& n : hits) {
    std::string line = fmt::format("{}\t{}", n.id, n.distance);
    if (!n.key.empty()) line += "\t" + KeyText(n.key);
    if (a.with_attributes) line += "\t" + Dump(AttributesJson(n.attributes));
    fmt::print("{}\n", line);
  }
  if (hits.empty()) fmt::print("no results\n");
  if (a.explain) {
    // A cluster collection: where each shard ran, then the whole plan (each shard's inside).
    for (const ShardExplain& sh : explained.shards) {
      fmt::print("shard {} on node {} ({}): {} results in {:.3f} ms\n", sh.shard, sh.node,
                 sh.address, sh.results, sh.ms);
    }
    fmt::print("{}\n", plan.is_string() ? plan.get<std::string>() : Dump(plan, 2));
  }
  fmt::print(stderr, "{} results in {:.3f} ms\n", hits.size(), ms);
  return 0;
}

}  // namespace

int CmdSearch(const GlobalArgs& g, const SearchCmdArgs& a) {
  if (a.vector.empty() == a.queries.empty()) {
    return Usage(InvalidArgument("give exactly one of --vector or --queries"));
  }
  if (!a.vector.empty() && !a.gt.empty()) return Usage(InvalidArgument("--gt needs --queries"));
  if (!a.queries.empty() && a.explain && a.limit != 1) {
    return Usage(InvalidArgument("--explain takes one query: use --vector, or --queries with --max-queries 1"));
  }
  if (!a.queries.empty() && (a.allow_partial || a.shard_timeout_ms != 0) && a.limit != 1) {
    return Usage(InvalidArgument(
        "--allow-partial and --shard-timeout-ms apply to one search: use --vector, or --queries "
        "with --max-queries 1"));
  }
  if (!a.queries.empty() && a.with_attributes && a.limit != 1) {
    return Usage(InvalidArgument(
        "--with-attributes shows one search's hits: use --vector, or --queries with --max-queries 1"));
  }
  if (a.pipeline == 0) return Usage(InvalidArgument("--pipeline must be >= 1"));
  auto options = ToSearchOptions(a.search);
  if (!options) return Usage(options.error());
  if (!a.vector.empty()) {
    auto query = ParseVector(a.vector);
    if (!query) return Usage(query.error());
    auto c = Open(g);
    if (!c) return Fail(c.error());
    return CmdSearchOne(**c, a, *query, *options);
  }

  auto data = ReadQueryData(a.queries, a.limit, a.gt);
  if (!data) return Fail(data.error());
  auto c = Open(g);
  if (!c) return Fail(c.error());
  const VectorSet& q = data->queries;
  if (a.explain || a.with_attributes || a.allow_partial || a.shard_timeout_ms != 0) {  // --max-queries 1: the file's first query, its plan or attributes
    if (q.size() == 0) return Fail(InvalidArgument("{} holds no queries", a.queries));
    return CmdSearchOne(**c, a, std::vector<float>(q.row(0), q.row(0) + q.dim()), *options);
  }
  // A filter's warnings (attributes no record has, ...) come with a search_with reply: one for
  // the first query, before the measured run.
  std::vector<std::string> warnings;
  if (!options->filter.empty() && q.size() > 0) {
    auto first = SearchOne(**c, a.name, std::vector<float>(q.row(0), q.row(0) + q.dim()), *options);
    if (!first) return Fail(first.error());
    warnings = std::move(first->warnings);
    PrintWarnings(warnings);
  }
  // A query file of float16, int8 or uint8 values goes as it is (search_typed), one query a
  // request; pipelined runs (--pipeline over 1) and --send-float32 send float32 queries.
  // `sent_as`: the file's element type while its queries go as they are, else float32. (A
  // plain value, not the optional NarrowElementType returns: GCC 12 took the optional's read
  // in the summary line below for maybe uninitialized.)
  ElementType sent_as = ElementType::kFloat32;
  if (!a.send_float32 && a.pipeline == 1) {
    auto shape = storage::ProbeVectors(a.queries);
    if (!shape) return Fail(shape.error());
    sent_as = storage::NarrowElementType(*shape).value_or(ElementType::kFloat32);
  }
  Result<client::QueryRun> run = client::QueryRun{};
  if (sent_as != ElementType::kFloat32) {
    storage::ReadOptions opt;
    opt.max_rows = q.size();
    auto raw = storage::ReadRawRows(a.queries, opt);
    if (!raw) return Fail(raw.error());
    const size_t row_bytes = raw->dim * ElementSize(sent_as);
    Timer all;
    for (size_t i = 0; i < raw->rows; ++i) {
      Timer one;
      auto r = (*c)->SearchTyped(a.name, sent_as, std::span<const uint8_t>(raw->row(i), row_bytes),
                                 uint32_t(raw->dim), 1, *options);
      if (!r && i == 0 && r.error().code() == StatusCode::kUnimplemented && (*c)->is_open()) {
        // A server before opcode 30, or a cluster node that does not route search_typed.
        fmt::print(stderr, "strata-cli: {}; sending float32 queries instead\n", r.error().message());
        sent_as = ElementType::kFloat32;
        break;
      }
      if (!r) return Fail(r.error().WithContext(fmt::format("query {}", i)));
      run->latency_ms.push_back(one.Seconds() * 1e3);
      std::vector<Neighbor>& hits = run->results.emplace_back();
      for (const KeyedNeighbor& n : r->results[0]) hits.push_back({n.id, n.distance});
    }
    run->elapsed_s = all.Seconds();
  }
  if (sent_as == ElementType::kFloat32) {
    run = client::RunQueries(**c, a.name, q.data(), uint32_t(q.dim()), uint32_t(q.size()), *options, a.pipeline);
  }
  if (!run) return Fail(run.error());
  std::optional<double> recall;
  if (data->truth) {
    double sum = 0;
    for (size_t i = 0; i < q.size(); ++i) {
      sum += client::RecallAtK(*data->truth, i, run->results[i], options->k, a.id_offset);
    }
    recall = sum / double(q.size());
  }
  std::vector<double> latencies = run->latency_ms;
  const client::LatencySummary lat = client::SummarizeLatencies(latencies);
  const double qps = run->elapsed_s > 0 ? double(q.size()) / run->elapsed_s : 0;
  if (a.json) {
    Json o = {{"command", "search"}, {"collection", a.name}, {"queries", q.size()},
              {"k", options->k},     {"pipeline", a.pipeline}, {"elapsed_s", run->elapsed_s},
              {"qps", qps},          {"latency_ms", LatencyJson(lat)}};
    o["recall"] = recall ? Json(*recall) : Json(nullptr);
    o["warnings"] = warnings;
    if (a.results) {
      Json all = Json::array();
      for (const auto& r : run->results) all.push_back(NeighborsJson(r));
      o["results"] = std::move(all);
    }
    fmt::print("{}\n", Dump(o));
    return 0;
  }
  if (a.results) {
    for (size_t i = 0; i < run->results.size(); ++i) {
      std::string line;
      for (const Neighbor& n : run->results[i]) line += fmt::format(" {}:{}", n.id, n.distance);
      fmt::print("{}:{}\n", i, line);
    }
  }
  fmt::print("queries: {} (k={}, pipeline {}{}) in {:.3f} s: {:.1f} QPS\n", q.size(), options->k, a.pipeline,
             sent_as != ElementType::kFloat32 ? fmt::format(", sent as {}", ElementTypeName(sent_as)) : std::string(),
             run->elapsed_s, qps);
  fmt::print("latency ms: p50 {:.3f}  p90 {:.3f}  p99 {:.3f}  max {:.3f}  mean {:.3f}\n",
             lat.p50_ms, lat.p90_ms, lat.p99_ms, lat.max_ms, lat.mean_ms);
  if (recall) fmt::print("recall@{}: {:.4f}\n", std::min<size_t>(options->k, data->truth->k), *recall);
  return 0;
}

}  // namespace strata::cli
