#pragma once
// EXPLAIN: what one search did, per segment and per stage. The engine fills it in
// (Engine::Search with an Explain*); the protocol carries it to a client as its JSON
// form (ToJson / FromJson), so that the client returns the same struct.
//
// Value types; thread-compatible. The three functions below are defined in
// api/explain.cc (target strata_api) rather than inline: ToJson and FromJson use
// nlohmann::json, which would otherwise enter every file that includes engine/strata.h
// or client/client.h, and every installed consumer's include path.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace strata {

struct SegmentExplain {
  std::string segment{};       // "memory", "memory (sealing)" (frozen, being sealed) or "segment <id>"
  std::string kind{};          // "hnsw" or "spann"
  std::string strategy{};      // "index", "filtered index", "scan", "post-filter" or "skipped"
  std::string reason{};        // why the planner chose it
  uint64_t rows = 0;           // live rows in the segment
  uint64_t matching = 0;       // live rows matching the filter (rows without one)
  double estimated_selectivity = 1;  // from per-predicate counts, before evaluating the filter
  double actual_selectivity = 1;     // matching / rows
  uint32_t ef = 0;             // HNSW parameter used (0: not an HNSW search)
  uint32_t max_lists = 0;      // SPANN parameter used (0: not a SPANN search)
  double predicted_recall = 0; // from the calibration table (0: explicit parameters, or exact)
  uint64_t nodes_visited = 0;  // graph nodes expanded (HNSW) or heads searched (SPANN)
  uint64_t distances = 0;      // distance computations
  uint64_t lists_read = 0;     // SPANN posting lists read
  uint64_t bytes_read = 0;
  uint64_t results = 0;        // candidates this segment contributed before the merge
  double filter_ms = 0;        // evaluating the filter on the attribute index
  double search_ms = 0;
  friend bool operator==(const SegmentExplain&, const SegmentExplain&) = default;
};

// A cluster collection's EXPLAIN (docs/CLUSTER.md): one entry per shard, the replica that
// answered and that shard's own plan. Empty for a plain collection.
struct ShardExplain {
  uint32_t shard = 0;
  std::string node{};          // the node id of the replica that answered
  std::string address{};       // its advertised HOST:PORT
  uint64_t results = 0;        // hits the shard returned, before the merge
  double ms = 0;               // the wall time of the fan-out it answered in (routing node's clock)
  std::string plan{};          // the shard's own plan, Explain::ToJson (an object "plan" in JSON)
  friend bool operator==(const ShardExplain&, const ShardExplain&) = default;
};

struct Explain {
  uint32_t k = 0;
  double recall_target = 0;    // 0: explicit parameters
  std::string filter{};        // canonical form ("" when none)
  // Why the filter may match nothing although it parsed: an attribute that no
  // record of the collection has, or a comparison with a type the attribute never
  // holds (e.g. a string against an attribute that only ever held numbers).
  std::vector<std::string> warnings{};
  std::vector<SegmentExplain> segments{};
  // A cluster collection: per shard, where it ran and its plan (the segments are the shards');
  // merge_ms is then the merge of the shards' hits, total_ms the whole scatter.
  std::vector<ShardExplain> shards{};
  double parse_ms = 0;         // parsing the filter
  double merge_ms = 0;
  double total_ms = 0;
  friend bool operator==(const Explain&, const Explain&) = default;

  std::string ToString() const;  // a readable table
  // One JSON object, keys named as the fields above ("segments": an array of objects;
  // "shards", present only when there are some: an array of objects, each shard's plan an
  // object under "plan").
  std::string ToJson() const;
  // The inverse of ToJson. A key that is absent keeps its default (so that a newer peer
  // may add keys and an older one omit them); text that is not a JSON object, or a key
  // whose value has the wrong type, is InvalidArgument naming the key.
  static Result<Explain> FromJson(std::string_view json);
};

}  // namespace strata
