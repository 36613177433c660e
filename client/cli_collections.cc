// strata-cli: ping, list, describe, create, drop, flush, compact and stats.

#include <algorithm>
#include <charconv>
#include <limits>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "client/cli.h"
#include "core/byte_size.h"
#include "core/timer.h"

namespace strata::cli {
namespace {

Json InfoJson(const CollectionInfo& info) {
  return {{"name", info.spec.name},
          {"id", info.id},
          {"dim", info.spec.dim},
          {"metric", MetricName(info.spec.metric)},
          {"hnsw_M", info.spec.hnsw_M},
          {"hnsw_ef_construction", info.spec.hnsw_ef_construction},
          {"seal_threshold", info.spec.seal_threshold},
          {"memory_budget_bytes", info.spec.memory_budget_bytes},
          {"codes", VectorCodesName(info.spec.codes)},
          {"rerank", info.spec.rerank},
          {"num_vectors", info.num_vectors},
          {"sealed_segments", info.sealed_segments},
          {"memory_bytes", info.memory_bytes},
          {"last_sequence", info.last_sequence}};
}

Json HistogramJson(const HistogramSnapshot& h) {
  return {{"upper_bounds_seconds", h.upper_bounds_seconds},
          {"counts", h.counts},
          {"count", h.count},
          {"sum_seconds", h.sum_seconds}};
}

}  // namespace

int CmdPing(const GlobalArgs& g, bool json) {
  Timer connect_timer;
  auto c = Open(g);
  if (!c) return Fail(c.error());
  const double connect_ms = connect_timer.Millis();
  Timer timer;
  if (Status s = (*c)->Ping(); !s.ok()) return Fail(s);
  const double rtt_ms = timer.Millis();
  const protocol::HelloReply& h = (*c)->server();
  if (json) {
    fmt::print("{}\n", Dump(Json{{"command", "ping"},
                                 {"peer", (*c)->peer()},
                                 {"server_version", h.server_version},
                                 {"protocol_version", h.protocol_version},
                                 {"round_trip_ms", rtt_ms},
                                 {"connect_ms", connect_ms},
                                 {"max_payload", h.max_payload},
                                 {"max_batch", h.max_batch},
                                 {"max_k", h.max_k},
                                 {"auth_required", h.auth_required}}));
    return 0;
  }
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
  fmt::print("{:<24} {:>6} {:<7} {:<5} {:>12} {:>9} {:>12}\n", "NAME", "DIM", "METRIC", "CODES",
             "VECTORS", "SEGMENTS", "MEMORY");
  for (const auto& info : *list) {
    fmt::print("{:<24} {:>6} {:<7} {:<5} {:>12} {:>9} {:>12}\n", info.spec.name, info.spec.dim,
               MetricName(info.spec.metric), VectorCodesName(info.spec.codes), info.num_vectors,
               info.sealed_segments, HumanBytes(info.memory_bytes));
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
             "seal threshold: {} vectors\nmemory budget: {}\ncodes: {}\nvectors: {}\n"
             "sealed segments: {}\nmemory: {}\nlast sequence: {}\n",
             s.name, info->id, s.dim, MetricName(s.metric), s.hnsw_M,
             s.hnsw_ef_construction, s.seal_threshold,
             s.memory_budget_bytes == 0 ? std::string("none (compaction builds HNSW)")
                                        : HumanBytes(s.memory_budget_bytes),
             s.codes == VectorCodes::kNone
                 ? std::string("none")
                 : fmt::format("{} (rerank {})", VectorCodesName(s.codes),
                               s.rerank == 0 ? std::string("2k HNSW, 1.5k SPANN") : std::to_string(s.rerank)),
             info->num_vectors, info->sealed_segments, HumanBytes(info->memory_bytes),
             info->last_sequence);
  return 0;
}

Result<CollectionSpec> SpecFromFlags(const CreateArgs& a) {
  CollectionSpec spec;
  spec.name = a.name;
  spec.dim = a.dim;
  auto metric = ParseMetric(a.metric);
  if (!metric) return Error(metric.error().WithContext("--metric"));
  spec.metric = *metric;
  spec.hnsw_M = a.m;
  spec.hnsw_ef_construction = a.ef_construction;
  spec.seal_threshold = a.seal_threshold;
  // The one budget syntax (core/byte_size.h); a share needs the data's size, which a new
  // collection does not have yet.
  auto budget = ParseMemoryBudget(a.memory_budget);
  if (budget && budget->is_share()) {
    return Error(InvalidArgument("--memory-budget '{}': a percentage needs the data's size, which a "
                                 "new collection does not have; give bytes (e.g. 512M, 2G)",
                                 a.memory_budget));
  }
  if (!budget) return Error(budget.error().WithContext("--memory-budget"));
  spec.memory_budget_bytes = budget->bytes;
  auto codes = ParseVectorCodes(a.codes);
  if (!codes) return Error(codes.error().WithContext("--codes"));
  spec.codes = *codes;
  spec.rerank = a.rerank;
  if (spec.codes == VectorCodes::kNone && spec.rerank != 0) {
    return Error(InvalidArgument("--rerank needs --codes (it is the depth of their rerank)"));
  }
  return spec;
}

void AddCreateFlags(CLI::App& cmd, CreateArgs& a) {
  cmd.add_option("name", a.name, "Collection name")->required();
  cmd.add_option("--dim", a.dim, "Vector dimension")->required();
  cmd.add_option("--metric", a.metric, "l2, ip or cosine")->capture_default_str();
  cmd.add_option("--M", a.m, "HNSW links per node")->capture_default_str();
  cmd.add_option("--ef-construction", a.ef_construction, "HNSW build candidate list")
      ->capture_default_str();
  cmd.add_option("--seal-threshold", a.seal_threshold,
                 "Vectors in the memory segment before it is sealed to disk")
      ->capture_default_str();
  cmd.add_option("--memory-budget", a.memory_budget,
                 "Compaction builds SPANN past this size (bytes: 1000000, 512M, 2G; 0: always HNSW)")
      ->capture_default_str();
  cmd.add_option("--codes", a.codes,
                 "Compressed codes of the sealed segments: none or sq8 (HNSW walks them, SPANN "
                 "lists hold them; both rerank with full vectors)")
      ->capture_default_str();
  cmd.add_option("--rerank", a.rerank,
                 "With --codes: candidates reranked with full vectors per search (0: 2k in HNSW segments, 1.5k in SPANN ones)")
      ->capture_default_str();
}

int CmdCreate(const GlobalArgs& g, const CreateArgs& a) {
  auto flags = SpecFromFlags(a);
  if (!flags) return Usage(flags.error());
  const CollectionSpec& spec = *flags;
  auto c = Open(g);
  if (!c) return Fail(c.error());
  if (Status s = (*c)->CreateCollection(spec); !s.ok()) return Fail(s);
  fmt::print("created {} (dim {}, {}{})\n", spec.name, spec.dim, MetricName(spec.metric),
             spec.codes == VectorCodes::kNone ? "" : fmt::format(", codes {}", VectorCodesName(spec.codes)));
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

int CmdSnapshot(const GlobalArgs& g, const std::string& name, const std::string& snapshot, bool json) {
  auto c = Open(g);
  if (!c) return Fail(c.error());
  auto r = (*c)->Snapshot(name, snapshot);
  if (!r) return Fail(r.error());
  if (json) {
    Json o = {{"collection", name},           {"path", r->path},
              {"sequence", r->sequence},      {"segments", r->segments},
              {"files_linked", r->files_linked}, {"files_copied", r->files_copied},
              {"bytes_copied", r->bytes_copied}};
    fmt::print("{}\n", Dump(o));
    return 0;
  }
  fmt::print("snapshot of {} at write batch {}: {}\n", name, r->sequence, r->path);
  fmt::print("  {} sealed segments; {} files hard-linked, {} copied ({})\n", r->segments, r->files_linked,
             r->files_copied, HumanBytes(r->bytes_copied));
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
  auto mean_ms = [](const HistogramSnapshot& h) {
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

}  // namespace strata::cli
