// strata-cli: the remote command line of a Strata server (the `strata` command works on local
// files; this one talks to `strata serve` over the wire protocol).
//
//   strata-cli [--host H] [--port P] [--token T]  ping | list | describe | create | drop |
//              upsert | delete | get | search | stats | flush | compact | load
//
// `search --queries` and `load` measure (QPS, latency percentiles, recall@k against --gt);
// with --json they print one JSON object on stdout for scripts. Every subcommand reports an
// error as one line on stderr and exits non-zero.

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "client/client.h"
#include "client/measure.h"
#include "core/progress.h"
#include "core/timer.h"
#include "storage/dataset_io.h"

namespace {

using namespace strata;
using client::Client;
using Json = nlohmann::ordered_json;

// JSON text; invalid UTF-8 from the server (names, attribute strings) is replaced, not thrown.
std::string Dump(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

int Fail(const Status& s) {
  std::string line = s.ToString();
  std::replace(line.begin(), line.end(), '\n', ' ');
  fmt::print(stderr, "strata-cli: error: {}\n", line);
  return 1;
}

struct GlobalArgs {
  std::string host = "127.0.0.1";
  uint16_t port = 7420;
  std::string token;
  uint32_t connect_timeout_ms = 5000;
  uint32_t timeout_ms = 60000;
};

client::ClientOptions Options(const GlobalArgs& g) {
  client::ClientOptions o;
  o.token = g.token;
  o.client_name = "strata-cli";
  o.connect_timeout_ms = g.connect_timeout_ms;
  o.io_timeout_ms = g.timeout_ms;
  return o;
}

Result<std::unique_ptr<Client>> Open(const GlobalArgs& g) {
  auto client = Client::Connect(g.host, g.port, Options(g));
  if (!client && g.token.empty() &&
      client.error().message().find("token required") != std::string::npos) {
    // The server told a missing token from a wrong one: say where a token comes from.
    return Error(Status(client.error().code(),
                        client.error().message() + " (give it with --token or STRATA_TOKEN)"));
  }
  return client;
}

// "512", "64K", "512M", "2G" (powers of 1024).
Result<uint64_t> ParseBytes(const std::string& text) {
  uint64_t value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || p == begin) {
    return Error(InvalidArgument("'{}' is not a byte size (e.g. 1048576, 512M, 2G)", text));
  }
  std::string suffix(p, end);
  std::transform(suffix.begin(), suffix.end(), suffix.begin(), ::toupper);
  int shift = 0;
  if (suffix.empty() || suffix == "B") {
    shift = 0;
  } else if (suffix == "K" || suffix == "KB" || suffix == "KIB") {
    shift = 10;
  } else if (suffix == "M" || suffix == "MB" || suffix == "MIB") {
    shift = 20;
  } else if (suffix == "G" || suffix == "GB" || suffix == "GIB") {
    shift = 30;
  } else if (suffix == "T" || suffix == "TB" || suffix == "TIB") {
    shift = 40;
  } else {
    return Error(InvalidArgument("'{}': unknown size suffix '{}' (K, M, G or T)", text, suffix));
  }
  if (shift > 0 && value > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return Error(InvalidArgument("'{}' is too large", text));
  }
  return value << shift;
}

// "1,2,3" or "1 2 3" (commas and/or spaces).
Result<std::vector<float>> ParseVector(const std::string& text) {
  std::vector<float> v;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ',' || text[i] == ' ' || text[i] == '\t')) ++i;
    if (i >= text.size()) break;
    size_t j = i;
    while (j < text.size() && text[j] != ',' && text[j] != ' ' && text[j] != '\t') ++j;
    const std::string token = text.substr(i, j - i);
    float x = 0;
    // from_chars does not take a leading '+'.
    const char* b = token.data() + (token[0] == '+' ? 1 : 0);
    auto [p, ec] = std::from_chars(b, token.data() + token.size(), x);
    if (ec != std::errc() || p != token.data() + token.size()) {
      return Error(InvalidArgument("--vector: '{}' (component {}) is not a number", token,
                                   v.size()));
    }
    if (!std::isfinite(x)) {
      return Error(InvalidArgument("--vector: component {} is not finite", v.size()));
    }
    v.push_back(x);
    i = j;
  }
  if (v.empty()) return Error(InvalidArgument("--vector is empty"));
  return v;
}

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, units[u]);
}

// ---------------------------------------------------------------------------
// JSON and text renderings of wire values.
// ---------------------------------------------------------------------------

Json NeighborsJson(const std::vector<Neighbor>& list) {
  Json a = Json::array();
  for (const Neighbor& n : list) a.push_back({{"id", n.id}, {"distance", n.distance}});
  return a;
}

Json AttributesJson(const protocol::Attributes& attributes) {
  Json o = Json::object();
  for (const protocol::Attribute& a : attributes) {
    std::visit([&](const auto& v) { o[a.name] = v; }, a.value);
  }
  return o;
}

std::string AttributesText(const protocol::Attributes& attributes) {
  std::string out;
  for (const protocol::Attribute& a : attributes) {
    if (!out.empty()) out += ", ";
    out += a.name + "=";
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string>) {
            out += Dump(Json(v));
          } else if constexpr (std::is_same_v<T, protocol::TagList>) {
            out += Dump(Json(v));
          } else {
            out += fmt::format("{}", v);
          }
        },
        a.value);
  }
  return out;
}

Json InfoJson(const protocol::CollectionInfo& info) {
  return {{"name", info.spec.name},
          {"id", info.id},
          {"dim", info.spec.dim},
          {"metric", client::WireMetricName(info.spec.metric)},
          {"hnsw_M", info.spec.hnsw_M},
          {"hnsw_ef_construction", info.spec.hnsw_ef_construction},
          {"seal_threshold", info.spec.seal_threshold},
          {"memory_budget_bytes", info.spec.memory_budget_bytes},
          {"num_vectors", info.num_vectors},
          {"sealed_segments", info.sealed_segments},
          {"memory_bytes", info.memory_bytes},
          {"last_sequence", info.last_sequence}};
}

Json HistogramJson(const protocol::HistogramWire& h) {
  return {{"upper_bounds_seconds", h.upper_bounds_seconds},
          {"counts", h.counts},
          {"count", h.count},
          {"sum_seconds", h.sum_seconds}};
}

Json LatencyJson(const client::LatencySummary& l) {
  return {{"count", l.count}, {"mean", l.mean_ms}, {"p50", l.p50_ms},  {"p90", l.p90_ms},
          {"p99", l.p99_ms},  {"p999", l.p999_ms}, {"max", l.max_ms}};
}

// ---------------------------------------------------------------------------
// Search options shared by `search` and `load`.
// ---------------------------------------------------------------------------

struct SearchArgs {
  uint32_t k = 10;
  double recall = 0;
  uint32_t ef = 0;
  uint32_t max_lists = 0;
  std::string filter;
  std::string strategy = "auto";
};

void AddSearchArgs(CLI::App* cmd, SearchArgs& a) {
  cmd->add_option("-k,--k", a.k, "Neighbours per query")->capture_default_str();
  cmd->add_option("--recall", a.recall, "Recall target in (0, 1]; 0: the server's default");
  cmd->add_option("--ef", a.ef, "HNSW candidate list (0: from the recall target)");
  cmd->add_option("--max-lists", a.max_lists, "SPANN posting lists read (0: from the recall target)");
  cmd->add_option("--filter", a.filter, "Filter expression, e.g. 'lang == \"en\" AND year >= 2020'");
  cmd->add_option("--strategy", a.strategy, "auto, index, scan or post-filter")->capture_default_str();
}

Result<protocol::SearchOptions> ToSearchOptions(const SearchArgs& a) {
  if (a.k == 0) return Error(InvalidArgument("--k must be >= 1"));
  if (!(a.recall >= 0 && a.recall <= 1)) {
    return Error(InvalidArgument("--recall {} is outside [0, 1]", a.recall));
  }
  protocol::SearchOptions o;
  o.k = a.k;
  o.recall = a.recall;
  o.ef = a.ef;
  o.max_lists = a.max_lists;
  o.filter = a.filter;
  STRATA_ASSIGN_OR_RETURN(o.strategy, client::ParseWireStrategy(a.strategy));
  return o;
}

// Reads queries (at most `limit` rows; 0: all) and, when `gt_path` is set, ground truth that
// covers them.
struct QueryData {
  VectorSet queries;
  std::optional<storage::GroundTruth> truth;
};

Result<QueryData> ReadQueryData(const std::string& path, size_t limit, const std::string& gt_path) {
  QueryData d;
  storage::ReadOptions opt;
  if (limit > 0) opt.max_rows = limit;
  STRATA_ASSIGN_OR_RETURN(d.queries, storage::ReadVectors(path, opt));
  if (d.queries.empty()) return Error(InvalidArgument("{}: no queries", path));
  if (d.queries.size() > std::numeric_limits<uint32_t>::max()) {
    return Error(InvalidArgument("{}: more than 2^32-1 queries; use --limit", path));
  }
  if (!gt_path.empty()) {
    STRATA_ASSIGN_OR_RETURN(storage::GroundTruth gt, storage::ReadGroundTruth(gt_path));
    if (gt.num_queries < d.queries.size()) {
      return Error(InvalidArgument("{} has {} rows for {} queries", gt_path, gt.num_queries,
                                   d.queries.size()));
    }
    d.truth = std::move(gt);
  }
  return d;
}

// ---------------------------------------------------------------------------
// Subcommands.
// ---------------------------------------------------------------------------

int CmdPing(const GlobalArgs& g) {
  Timer connect_timer;
  auto c = Open(g);
  if (!c) return Fail(c.error());
  const double connect_ms = connect_timer.Millis();
  Timer timer;
  if (Status s = (*c)->Ping(); !s.ok()) return Fail(s);
  const double rtt_ms = timer.Millis();
  const protocol::HelloReply& h = (*c)->server();
  fmt::print("pong from {}: server {}, protocol {}, round trip {:.3f} ms (connect + hello {:.3f} "
             "ms)\nlimits: frame {}, batch {}, k {}, auth {}\n",
             (*c)->peer(), h.server_version, h.protocol_version, rtt_ms, connect_ms,
             HumanBytes(h.max_payload), h.max_batch, h.max_k,
             h.auth_required ? "required" : "off");
  return 0;
}

int CmdList(const GlobalArgs& g, bool json) {
  auto c = Open(g);
  if (!c) return Fail(c.error());
  auto list = (*c)->ListCollections();
  if (!list) return Fail(list.error());
  if (json) {
    Json a = Json::array();
    for (const auto& info : *list) a.push_back(InfoJson(info));
    fmt::print("{}\n", Dump(a));
    return 0;
  }
  if (list->empty()) {
    fmt::print("no collections\n");
    return 0;
  }
  fmt::print("{:<24} {:>6} {:<7} {:>12} {:>9} {:>12}\n", "NAME", "DIM", "METRIC", "VECTORS",
             "SEGMENTS", "MEMORY");
  for (const auto& info : *list) {
    fmt::print("{:<24} {:>6} {:<7} {:>12} {:>9} {:>12}\n", info.spec.name, info.spec.dim,
               client::WireMetricName(info.spec.metric), info.num_vectors, info.sealed_segments,
               HumanBytes(info.memory_bytes));
  }
  return 0;
}

int CmdDescribe(const GlobalArgs& g, const std::string& name, bool json) {
  auto c = Open(g);
  if (!c) return Fail(c.error());
  auto info = (*c)->DescribeCollection(name);
  if (!info) return Fail(info.error());
  if (json) {
    fmt::print("{}\n", Dump(InfoJson(*info)));
    return 0;
  }
  const auto& s = info->spec;
  fmt::print("name: {}\nid: {}\ndim: {}\nmetric: {}\nhnsw M: {}\nhnsw ef_construction: {}\n"
             "seal threshold: {} vectors\nmemory budget: {}\nvectors: {}\nsealed segments: {}\n"
             "memory: {}\nlast sequence: {}\n",
             s.name, info->id, s.dim, client::WireMetricName(s.metric), s.hnsw_M,
             s.hnsw_ef_construction, s.seal_threshold,
             s.memory_budget_bytes == 0 ? std::string("none (compaction builds HNSW)")
                                        : HumanBytes(s.memory_budget_bytes),
             info->num_vectors, info->sealed_segments, HumanBytes(info->memory_bytes),
             info->last_sequence);
  return 0;
}

struct CreateArgs {
  std::string name;
  uint32_t dim = 0;
  std::string metric = "l2";
  uint32_t m = 16;
  uint32_t ef_construction = 200;
  uint64_t seal_threshold = 100000;
  std::string memory_budget = "0";
};

int CmdCreate(const GlobalArgs& g, const CreateArgs& a) {
  protocol::CollectionSpec spec;
  spec.name = a.name;
  spec.dim = a.dim;
  auto metric = client::ParseWireMetric(a.metric);
  if (!metric) return Fail(metric.error());
  spec.metric = *metric;
  spec.hnsw_M = a.m;
  spec.hnsw_ef_construction = a.ef_construction;
  spec.seal_threshold = a.seal_threshold;
  auto budget = ParseBytes(a.memory_budget);
  if (!budget) return Fail(budget.error().WithContext("--memory-budget"));
  spec.memory_budget_bytes = *budget;
  auto c = Open(g);
  if (!c) return Fail(c.error());
  if (Status s = (*c)->CreateCollection(spec); !s.ok()) return Fail(s);
  fmt::print("created {} (dim {}, {})\n", spec.name, spec.dim, client::WireMetricName(spec.metric));
  return 0;
}

// drop, flush, compact: one name, one call, one line.
int CmdSimple(const GlobalArgs& g, const std::string& verb, const std::string& name) {
  auto c = Open(g);
  if (!c) return Fail(c.error());
  Status s;
  if (verb == "drop") s = (*c)->DropCollection(name);
  if (verb == "flush") s = (*c)->Flush(name);
  if (verb == "compact") s = (*c)->Compact(name);
  if (!s.ok()) return Fail(s);
  const char* done = verb == "drop" ? "dropped" : verb == "flush" ? "flushed" : "compacted";
  fmt::print("{} {}\n", done, name);
  return 0;
}

struct UpsertArgs {
  std::string name;
  std::string vectors;
  uint64_t id_offset = 0;
  uint32_t batch = 1000;
  size_t limit = 0;
};

int CmdUpsert(const GlobalArgs& g, const UpsertArgs& a) {
  auto shape = storage::ProbeVectors(a.vectors);
  if (!shape) return Fail(shape.error());
  size_t rows = shape->rows;
  if (a.limit > 0) rows = std::min(rows, a.limit);
  if (a.batch == 0) return Fail(InvalidArgument("--batch must be >= 1"));
  if (rows > 0 && a.id_offset > std::numeric_limits<uint64_t>::max() - (rows - 1)) {
    return Fail(InvalidArgument("--id-offset {} + {} rows overflows a 64-bit id", a.id_offset, rows));
  }
  auto c = Open(g);
  if (!c) return Fail(c.error());
  Client& client = **c;
  auto info = client.DescribeCollection(a.name);
  if (!info) return Fail(info.error());
  if (info->spec.dim != shape->dim) {
    return Fail(InvalidArgument("{} has dimension {}, collection {} has {}", a.vectors, shape->dim,
                                a.name, info->spec.dim));
  }
  const uint32_t dim = uint32_t(shape->dim);
  // Requests must fit the server's limits: records per request, and the frame size
  // (per record: u64 id, dim floats, u16 attribute count; plus the name and two counts).
  size_t batch = a.batch;
  if (client.server().max_batch > 0) batch = std::min<size_t>(batch, client.server().max_batch);
  if (client.server().max_payload > 0) {
    const size_t per_record = 8 + size_t(dim) * 4 + 2;
    const size_t overhead = 4 + a.name.size() + 8;
    const size_t fits = client.server().max_payload > overhead
                            ? (client.server().max_payload - overhead) / per_record
                            : 0;
    if (fits == 0) {
      return Fail(InvalidArgument("one vector of dim {} does not fit the server's frame limit "
                                  "of {} bytes", dim, client.server().max_payload));
    }
    batch = std::min(batch, fits);
  }
  // Read the file in chunks of whole batches (bounded memory for large files).
  const size_t chunk = batch * std::max<size_t>(1, 65536 / batch);
  Progress progress("upsert", rows);
  Timer timer;
  std::vector<protocol::Record> records;
  uint64_t applied = 0;
  for (size_t first = 0; first < rows; first += chunk) {
    storage::ReadOptions opt;
    opt.first_row = first;
    opt.max_rows = std::min(chunk, rows - first);
    auto part = storage::ReadVectors(a.vectors, opt);
    if (!part) return Fail(part.error());
    for (size_t b = 0; b < part->size(); b += batch) {
      const size_t n = std::min(batch, part->size() - b);
      records.resize(n);
      for (size_t i = 0; i < n; ++i) {
        records[i].id = a.id_offset + first + b + i;
        records[i].vector.assign(part->row(b + i), part->row(b + i) + dim);
        records[i].attributes.clear();
      }
      auto done = client.Upsert(a.name, dim, records);
      if (!done) {
        return Fail(done.error().WithContext(
            fmt::format("rows {}..{} of {}", first + b, first + b + n - 1, a.vectors)));
      }
      applied += *done;
      progress.Add(n);
    }
  }
  progress.Finish();
  const double s = timer.Seconds();
  fmt::print("upserted {} vectors into {} in {:.2f} s ({:.0f} vectors/s, batches of {})\n",
             applied, a.name, s, s > 0 ? double(applied) / s : 0.0, batch);
  return 0;
}

int CmdDelete(const GlobalArgs& g, const std::string& name, const std::vector<uint64_t>& ids) {
  auto c = Open(g);
  if (!c) return Fail(c.error());
  auto applied = (*c)->Delete(name, ids);
  if (!applied) return Fail(applied.error());
  // `applied` counts every id sent, whether or not it existed: say so rather than suggest
  // that some ids were skipped.
  fmt::print("delete of {} ids applied to {} (ids that did not exist count too)\n", *applied,
             name);
  return 0;
}

int CmdGet(const GlobalArgs& g, const std::string& name, const std::vector<uint64_t>& ids,
           bool json) {
  auto c = Open(g);
  if (!c) return Fail(c.error());
  auto records = (*c)->Get(name, ids);
  if (!records) return Fail(records.error());
  if (json) {
    Json a = Json::array();
    for (size_t i = 0; i < ids.size(); ++i) {
      const auto& r = (*records)[i];
      if (!r) {
        a.push_back({{"id", ids[i]}, {"found", false}});
      } else {
        a.push_back({{"id", r->id}, {"found", true}, {"vector", r->vector},
                     {"attributes", AttributesJson(r->attributes)}});
      }
    }
    fmt::print("{}\n", Dump(a));
    return 0;
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto& r = (*records)[i];
    if (!r) {
      fmt::print("{}: not found\n", ids[i]);
      continue;
    }
    std::string v;
    for (size_t j = 0; j < r->vector.size(); ++j) v += fmt::format("{}{}", j ? "," : "", r->vector[j]);
    fmt::print("{}: [{}]", r->id, v);
    if (!r->attributes.empty()) fmt::print(" {{{}}}", AttributesText(r->attributes));
    fmt::print("\n");
  }
  return 0;
}

int CmdStats(const GlobalArgs& g, bool json) {
  auto c = Open(g);
  if (!c) return Fail(c.error());
  auto st = (*c)->Stats();
  if (!st) return Fail(st.error());
  const auto& s = *st;
  if (json) {
    Json o = {{"write_batches", s.write_batches}, {"upserts", s.upserts},
              {"deletes", s.deletes},             {"searches", s.searches},
              {"gets", s.gets},                   {"wal_bytes", s.wal_bytes},
              {"wal_fsyncs", s.wal_fsyncs},       {"vectors", s.vectors},
              {"memory_bytes", s.memory_bytes},   {"disk_reads", s.disk_reads},
              {"disk_read_bytes", s.disk_read_bytes},
              {"search_latency", HistogramJson(s.search_latency)},
              {"write_latency", HistogramJson(s.write_latency)},
              {"connections", s.connections},     {"requests", s.requests},
              {"errors", s.errors},               {"busy_rejections", s.busy_rejections}};
    fmt::print("{}\n", Dump(o));
    return 0;
  }
  auto mean_ms = [](const protocol::HistogramWire& h) {
    return h.count == 0 ? 0.0 : h.sum_seconds / double(h.count) * 1e3;
  };
  fmt::print("vectors: {}\nmemory: {}\nsearches: {} (mean {:.3f} ms)\ngets: {}\n"
             "write batches: {} (mean {:.3f} ms): {} upserts, {} deletes\n"
             "wal: {} written, {} fsyncs\ndisk reads: {} ({})\n"
             "server: {} connections open, {} requests answered, {} errors, {} busy rejections\n",
             s.vectors, HumanBytes(s.memory_bytes), s.searches, mean_ms(s.search_latency), s.gets,
             s.write_batches, mean_ms(s.write_latency), s.upserts, s.deletes,
             HumanBytes(s.wal_bytes), s.wal_fsyncs, s.disk_reads, HumanBytes(s.disk_read_bytes),
             s.connections, s.requests, s.errors, s.busy_rejections);
  return 0;
}

struct SearchCmdArgs {
  std::string name;
  std::string vector;
  std::string queries;
  size_t limit = 0;
  SearchArgs search;
  bool explain = false;
  std::string gt;
  uint64_t id_offset = 0;
  uint32_t pipeline = 1;
  bool results = false;
  bool json = false;
};

int CmdSearchOne(Client& client, const SearchCmdArgs& a, const std::vector<float>& query,
                 const protocol::SearchOptions& options) {
  std::vector<Neighbor> hits;
  std::string explain;
  Timer timer;
  if (a.explain) {
    auto r = client.Explain(a.name, query, options);
    if (!r) return Fail(r.error());
    hits = std::move(r->first);
    explain = std::move(r->second);
  } else {
    auto r = client.Search(a.name, query, options);
    if (!r) return Fail(r.error());
    hits = std::move(*r);
  }
  const double ms = timer.Millis();
  Json plan;
  if (a.explain) {
    plan = Json::parse(explain, nullptr, /*allow_exceptions=*/false);
    if (plan.is_discarded()) plan = explain;  // not JSON: pass the text through
  }
  if (a.json) {
    Json o = {{"command", "search"}, {"collection", a.name}, {"k", options.k},
              {"latency_ms", ms}, {"results", Json::array({NeighborsJson(hits)})}};
    if (a.explain) o["explain"] = plan;
    fmt::print("{}\n", Dump(o));
    return 0;
  }
  for (const Neighbor& n : hits) fmt::print("{}\t{}\n", n.id, n.distance);
  if (hits.empty()) fmt::print("no results\n");
  if (a.explain) fmt::print("{}\n", plan.is_string() ? plan.get<std::string>() : Dump(plan, 2));
  fmt::print(stderr, "{} results in {:.3f} ms\n", hits.size(), ms);
  return 0;
}

int CmdSearch(const GlobalArgs& g, const SearchCmdArgs& a) {
  if (a.vector.empty() == a.queries.empty()) {
    return Fail(InvalidArgument("give exactly one of --vector or --queries"));
  }
  if (!a.vector.empty() && !a.gt.empty()) return Fail(InvalidArgument("--gt needs --queries"));
  if (!a.queries.empty() && a.explain && a.limit != 1) {
    return Fail(InvalidArgument("--explain takes one query: use --vector, or --queries with --limit 1"));
  }
  if (a.pipeline == 0) return Fail(InvalidArgument("--pipeline must be >= 1"));
  auto options = ToSearchOptions(a.search);
  if (!options) return Fail(options.error());
  if (!a.vector.empty()) {
    auto query = ParseVector(a.vector);
    if (!query) return Fail(query.error());
    auto c = Open(g);
    if (!c) return Fail(c.error());
    return CmdSearchOne(**c, a, *query, *options);
  }

  auto data = ReadQueryData(a.queries, a.limit, a.gt);
  if (!data) return Fail(data.error());
  auto c = Open(g);
  if (!c) return Fail(c.error());
  const VectorSet& q = data->queries;
  if (a.explain) {  // --limit 1: the file's first query, with its plan
    if (q.size() == 0) return Fail(InvalidArgument("{} holds no queries", a.queries));
    return CmdSearchOne(**c, a, std::vector<float>(q.row(0), q.row(0) + q.dim()), *options);
  }
  auto run = client::RunQueries(**c, a.name, q.data(), uint32_t(q.dim()), uint32_t(q.size()),
                                *options, a.pipeline);
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
  fmt::print("queries: {} (k={}, pipeline {}) in {:.3f} s: {:.1f} QPS\n", q.size(), options->k,
             a.pipeline, run->elapsed_s, qps);
  fmt::print("latency ms: p50 {:.3f}  p90 {:.3f}  p99 {:.3f}  max {:.3f}  mean {:.3f}\n",
             lat.p50_ms, lat.p90_ms, lat.p99_ms, lat.max_ms, lat.mean_ms);
  if (recall) fmt::print("recall@{}: {:.4f}\n", std::min<size_t>(options->k, data->truth->k), *recall);
  return 0;
}

struct LoadCmdArgs {
  std::string name;
  std::string queries;
  size_t limit = 0;
  SearchArgs search;
  uint32_t connections = 4;
  double duration_s = 10;
  uint32_t pipeline = 1;
  double rate = 0;
  std::string gt;
  uint64_t id_offset = 0;
  bool json = false;
};

int CmdLoad(const GlobalArgs& g, const LoadCmdArgs& a) {
  auto options = ToSearchOptions(a.search);
  if (!options) return Fail(options.error());
  auto data = ReadQueryData(a.queries, a.limit, a.gt);
  if (!data) return Fail(data.error());
  client::LoadConfig config;
  config.host = g.host;
  config.port = g.port;
  config.client_options = Options(g);
  config.collection = a.name;
  config.queries = data->queries.data();
  config.dim = uint32_t(data->queries.dim());
  config.num_queries = uint32_t(data->queries.size());
  config.search = *options;
  config.connections = a.connections;
  config.duration_s = a.duration_s;
  config.pipeline = a.pipeline;
  config.rate = a.rate;
  config.truth = data->truth ? &*data->truth : nullptr;
  config.id_offset = a.id_offset;
  if (!a.json) {
    fmt::print(stderr, "load: {} connections, pipeline {}, {}, {:.1f} s, {} queries\n",
               a.connections, a.pipeline,
               a.rate > 0 ? fmt::format("open loop at {:.1f} QPS", a.rate) : "closed loop",
               a.duration_s, config.num_queries);
  }
  auto report = client::RunLoad(config);
  if (!report) return Fail(report.error());
  const client::LoadReport& r = *report;
  uint64_t errors = 0;
  for (const auto& [code, n] : r.errors) errors += n;
  if (a.json) {
    Json errs = Json::object();
    for (const auto& [code, n] : r.errors) errs[code] = n;
    Json o = {{"command", "load"},        {"collection", a.name},
              {"connections", a.connections}, {"pipeline", a.pipeline},
              {"rate", a.rate},           {"duration_s", a.duration_s},
              {"elapsed_s", r.elapsed_s}, {"k", options->k},
              {"sent", r.sent},           {"ok", r.ok},
              {"errors", errs},           {"unsent", r.unsent},
              {"qps", r.qps},             {"latency_ms", LatencyJson(r.latency)}};
    o["recall"] = r.recall ? Json(*r.recall) : Json(nullptr);
    o["connection_errors"] = r.connection_errors;
    fmt::print("{}\n", Dump(o));
  } else {
    fmt::print("requests: {} sent, {} ok, {} errors", r.sent, r.ok, errors);
    if (errors > 0) {
      std::string by_code;
      for (const auto& [code, n] : r.errors) by_code += fmt::format("{}{}: {}", by_code.empty() ? "" : ", ", code, n);
      fmt::print(" ({})", by_code);
    }
    fmt::print("\n");
    if (r.unsent > 0) {
      fmt::print("unsent: {} requests came due while every connection's window was full\n",
                 r.unsent);
    }
    fmt::print("throughput: {:.1f} QPS over {:.2f} s\n", r.qps, r.elapsed_s);
    fmt::print("latency ms{}: p50 {:.3f}  p90 {:.3f}  p99 {:.3f}  p99.9 {:.3f}  max {:.3f}  "
               "mean {:.3f}\n",
               a.rate > 0 ? " (from the scheduled send time)" : "", r.latency.p50_ms,
               r.latency.p90_ms, r.latency.p99_ms, r.latency.p999_ms, r.latency.max_ms,
               r.latency.mean_ms);
    if (r.recall) {
      fmt::print("recall@{}: {:.4f}\n", std::min<size_t>(options->k, data->truth->k), *r.recall);
    }
  }
  for (const std::string& e : r.connection_errors) fmt::print(stderr, "strata-cli: warning: {}\n", e);
  if (r.ok == 0) {
    return Fail(IOError("no request succeeded ({} sent, {} errors)", r.sent, errors));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"strata-cli: the remote command line of a Strata server"};
  app.set_version_flag("--version", std::string("strata-cli ") + STRATA_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global flags are accepted after the subcommand too
  GlobalArgs g;
  app.add_option("--host", g.host, "Server address or name")->capture_default_str();
  app.add_option("--port", g.port, "Server port")->capture_default_str();
  app.add_option("--token", g.token, "Shared secret, when the server requires one")
      ->envname("STRATA_TOKEN");
  app.add_option("--connect-timeout-ms", g.connect_timeout_ms, "Connect timeout")
      ->capture_default_str();
  app.add_option("--timeout-ms", g.timeout_ms,
                 "Longest wait for the server during a request (create, drop, flush and "
                 "compact wait as long as the server works)")
      ->capture_default_str();

  int rc = 0;
  auto* ping = app.add_subcommand("ping", "Check that the server answers; show its limits");
  ping->callback([&] { rc = CmdPing(g); });

  bool list_json = false;
  auto* list = app.add_subcommand("list", "List the collections");
  list->add_flag("--json", list_json, "Print JSON");
  list->callback([&] { rc = CmdList(g, list_json); });

  std::string describe_name;
  bool describe_json = false;
  auto* describe = app.add_subcommand("describe", "Describe one collection");
  describe->add_option("name", describe_name, "Collection")->required();
  describe->add_flag("--json", describe_json, "Print JSON");
  describe->callback([&] { rc = CmdDescribe(g, describe_name, describe_json); });

  CreateArgs create_args;
  auto* create = app.add_subcommand("create", "Create a collection");
  create->add_option("name", create_args.name, "Collection name")->required();
  create->add_option("--dim", create_args.dim, "Vector dimension")->required();
  create->add_option("--metric", create_args.metric, "l2, ip or cosine")->capture_default_str();
  create->add_option("--M", create_args.m, "HNSW links per node")->capture_default_str();
  create->add_option("--ef-construction", create_args.ef_construction, "HNSW build candidate list")
      ->capture_default_str();
  create->add_option("--seal-threshold", create_args.seal_threshold,
                     "Vectors in the memory segment before it is sealed to disk")
      ->capture_default_str();
  create->add_option("--memory-budget", create_args.memory_budget,
                     "Compaction builds SPANN past this size (bytes, or 512M, 2G; 0: always HNSW)")
      ->capture_default_str();
  create->callback([&] { rc = CmdCreate(g, create_args); });

  std::string simple_name;
  for (const char* verb : {"drop", "flush", "compact"}) {
    const std::string v = verb;
    const char* help = v == "drop"    ? "Drop a collection and its files"
                       : v == "flush" ? "Seal a collection's memory segment to disk"
                                      : "Merge a collection's segments, dropping deleted vectors";
    auto* cmd = app.add_subcommand(v, help);
    cmd->add_option("name", simple_name, "Collection")->required();
    cmd->callback([&, v] { rc = CmdSimple(g, v, simple_name); });
  }

  UpsertArgs upsert_args;
  auto* upsert = app.add_subcommand("upsert", "Upsert vectors from a file (ids = row + offset)");
  upsert->add_option("name", upsert_args.name, "Collection")->required();
  upsert->add_option("--vectors", upsert_args.vectors, "fvecs, bvecs, fbin, u8bin or npy file")
      ->required();
  upsert->add_option("--id-offset", upsert_args.id_offset, "Added to the row number to make the id")
      ->capture_default_str();
  upsert->add_option("--batch", upsert_args.batch, "Vectors per request")->capture_default_str();
  upsert->add_option("--limit", upsert_args.limit, "Upsert only the first N rows (0: all)");
  upsert->callback([&] { rc = CmdUpsert(g, upsert_args); });

  std::string ids_name;
  std::vector<uint64_t> ids;
  bool get_json = false;
  auto* del = app.add_subcommand("delete", "Delete vectors by id");
  del->add_option("name", ids_name, "Collection")->required();
  del->add_option("ids", ids, "Ids")->required();
  del->callback([&] { rc = CmdDelete(g, ids_name, ids); });
  auto* get = app.add_subcommand("get", "Fetch vectors and attributes by id");
  get->add_option("name", ids_name, "Collection")->required();
  get->add_option("ids", ids, "Ids")->required();
  get->add_flag("--json", get_json, "Print JSON");
  get->callback([&] { rc = CmdGet(g, ids_name, ids, get_json); });

  SearchCmdArgs search_args;
  auto* search = app.add_subcommand("search", "Search one vector, or a query file (measured)");
  search->add_option("name", search_args.name, "Collection")->required();
  search->add_option("--vector", search_args.vector, "One query: 0.1,-0.2,... (commas or spaces)");
  search->add_option("--queries", search_args.queries, "Query file (fvecs, bvecs, fbin, u8bin, npy)");
  search->add_option("--limit", search_args.limit, "Use only the first N queries (0: all)");
  AddSearchArgs(search, search_args.search);
  search->add_flag("--explain", search_args.explain, "Also print the plan (one --vector, or --queries with --limit 1)");
  search->add_option("--gt", search_args.gt, "Ground truth (ivecs, ibin, npy): report recall@k");
  search->add_option("--id-offset", search_args.id_offset,
                     "Subtracted from result ids before comparing with --gt rows");
  search->add_option("--pipeline", search_args.pipeline, "Queries in flight at once")
      ->capture_default_str();
  search->add_flag("--results", search_args.results, "With --queries: print every query's results");
  search->add_flag("--json", search_args.json, "Print one JSON object");
  search->callback([&] { rc = CmdSearch(g, search_args); });

  bool stats_json = false;
  auto* stats = app.add_subcommand("stats", "Server and engine counters");
  stats->add_flag("--json", stats_json, "Print JSON");
  stats->callback([&] { rc = CmdStats(g, stats_json); });

  LoadCmdArgs load_args;
  auto* load = app.add_subcommand("load", "Generate search load; report QPS, latency, errors");
  load->add_option("name", load_args.name, "Collection")->required();
  load->add_option("--queries", load_args.queries, "Query file, used round robin")->required();
  load->add_option("--limit", load_args.limit, "Use only the first N queries (0: all)");
  load->add_option("--connections", load_args.connections, "Connections, one thread each")
      ->capture_default_str();
  load->add_option("--duration", load_args.duration_s, "Seconds")->capture_default_str();
  load->add_option("--pipeline", load_args.pipeline, "Requests in flight per connection")
      ->capture_default_str();
  load->add_option("--rate", load_args.rate,
                   "Total target QPS, open loop (latency from the scheduled time); 0: as fast as "
                   "possible")
      ->capture_default_str();
  AddSearchArgs(load, load_args.search);
  load->add_option("--gt", load_args.gt, "Ground truth: report recall@k");
  load->add_option("--id-offset", load_args.id_offset,
                   "Subtracted from result ids before comparing with --gt rows");
  load->add_flag("--json", load_args.json, "Print one JSON object");
  load->callback([&] { rc = CmdLoad(g, load_args); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    if (app.get_subcommands().empty()) {
      // CLI11 says only "a subcommand is required"; name the word it did not know.
      for (int i = 1; i < argc; ++i) {
        const std::string word = argv[i];
        if (word.empty() || word[0] == '-') {
          const bool takes_value = word.find('=') == std::string::npos &&
                                   (word == "--host" || word == "--port" || word == "--token" ||
                                    word == "--connect-timeout-ms" || word == "--timeout-ms");
          if (takes_value) ++i;
          continue;
        }
        what = fmt::format("unknown subcommand '{}'", word);
        break;
      }
    }
    std::replace(what.begin(), what.end(), '\n', ' ');
    fmt::print(stderr, "strata-cli: error: {} (see --help)\n", what);
    return 2;
  } catch (const std::exception& e) {
    // Nothing below is expected to throw (the client returns Status); this keeps an
    // allocation failure or a library surprise to the promised one line.
    return Fail(Internal("{}", e.what()));
  }
  return rc;
}
