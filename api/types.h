#pragma once
// The vocabulary an application speaks to Strata, embedded or over the network: a
// collection's spec and its description, search options, a record. The engine
// (engine/strata.h) and the client (client/client.h) take and return these very types;
// the protocol (protocol/protocol.h) encodes them. Header-only over core/ (Metric,
// VectorId, Neighbor, Status), so that including it never pulls in the engine.
// Explain, the plan of one search, is in api/explain.h.
//
// Value types; thread-compatible.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "api/attributes.h"
#include "core/metric.h"
#include "core/status.h"
#include "core/types.h"

namespace strata {

// Compressed codes a collection's sealed segments are built with (the values are the
// wire's codes byte; index/codes: CodesKind). kSq8: one byte per dimension; HNSW
// segments walk the graph on the codes and SPANN posting lists hold codes, both
// reranking their best candidates with the full float32 vectors.
enum class VectorCodes : uint8_t { kNone = 0, kSq8 = 1 };

// "none", "sq8"; "unknown" for a value outside the enum.
inline std::string_view VectorCodesName(VectorCodes codes) {
  switch (codes) {
    case VectorCodes::kNone: return "none";
    case VectorCodes::kSq8: return "sq8";
  }
  return "unknown";
}

inline Result<VectorCodes> ParseVectorCodes(std::string_view name) {
  if (name == "none") return VectorCodes::kNone;
  if (name == "sq8") return VectorCodes::kSq8;
  return Error(InvalidArgument("unknown codes '{}' (expected none or sq8)", name));
}

struct CollectionSpec {
  std::string name{};  // 1..64 characters of [A-Za-z0-9_-]
  size_t dim = 0;    // 1..65536 (the wire carries it as u32)
  Metric metric = Metric::kL2;
  uint32_t hnsw_M = 16;
  uint32_t hnsw_ef_construction = 200;
  // The in-memory segment that takes writes is sealed to disk (and the log cut)
  // once it holds this many vectors.
  size_t seal_threshold = 100000;
  // Compaction builds a SPANN segment instead of an HNSW one when the merged
  // vectors take more than this many bytes (0: always HNSW). Not for inner product.
  // Such a segment keeps 20% of its vectors' bytes in memory, 10% with codes
  // (index::SpannDefaultBudgetFraction).
  uint64_t memory_budget_bytes = 0;
  // Codes of the sealed segments (seals, compaction, bulk load); the in-memory
  // segment that takes writes keeps float32 vectors.
  VectorCodes codes = VectorCodes::kNone;
  // With codes: candidates reranked with full vectors per search (at least k);
  // 0: the index's default (2k in HNSW segments, 1.5k in SPANN segments, whose rerank reads
  // each candidate from disk; docs/BENCHMARKS.md, sections 10 and 12).
  uint32_t rerank = 0;
  friend bool operator==(const CollectionSpec&, const CollectionSpec&) = default;
};

struct CollectionInfo {
  CollectionSpec spec;
  uint64_t id = 0;             // unique for the life of the data directory
  size_t num_vectors = 0;      // live vectors
  uint64_t last_sequence = 0;  // log sequence of the last applied batch (0: none)
  size_t memory_bytes = 0;
  size_t sealed_segments = 0;
  friend bool operator==(const CollectionInfo&, const CollectionInfo&) = default;
};

// Largest accepted search parameters (larger requests are refused, not truncated).
inline constexpr uint32_t kMaxSearchK = 10000;
inline constexpr uint32_t kMaxSearchEf = 100000;
inline constexpr uint32_t kMaxSearchLists = 100000;

// How a segment is searched. The planner chooses per query and segment (kAuto);
// the others force one path, for comparison and for users who know better.
// The values are the wire's strategy byte.
enum class SearchStrategy : uint8_t {
  kAuto = 0,        // the planner's choice (docs/PLANNER.md)
  kIndex = 1,       // the segment's index: HNSW traversal (a filter restricts what is returned,
                    // every node still routes) or SPANN (a filter restricts the posting entries
                    // scored)
  kScan = 2,        // exact: every matching live row is scored (every live row without a filter)
  kPostFilter = 3,  // the index searched without the filter for more results, non-matching ones
                    // dropped
};

// "auto", "index", "scan", "post-filter"; "unknown" for a value outside the enum.
inline std::string_view SearchStrategyName(SearchStrategy strategy) {
  switch (strategy) {
    case SearchStrategy::kAuto: return "auto";
    case SearchStrategy::kIndex: return "index";
    case SearchStrategy::kScan: return "scan";
    case SearchStrategy::kPostFilter: return "post-filter";
  }
  return "unknown";
}

// The names above, also "postfilter" and "post_filter".
inline Result<SearchStrategy> ParseSearchStrategy(std::string_view name) {
  if (name == "auto") return SearchStrategy::kAuto;
  if (name == "index") return SearchStrategy::kIndex;
  if (name == "scan") return SearchStrategy::kScan;
  if (name == "post-filter" || name == "postfilter" || name == "post_filter") {
    return SearchStrategy::kPostFilter;
  }
  return Error(InvalidArgument(
      "unknown strategy '{}' (expected auto, index, scan or post-filter)", name));
}

// The recall target used when a search names neither a target nor explicit parameters.
inline constexpr double kDefaultRecallTarget = 0.95;

// A filter expression parsed and checked once by the embedded engine
// (Engine::PrepareFilter, engine/strata.h, which defines the class). Only the engine
// can make or read one; here it is declared so that SearchOptions can point at one.
class PreparedFilter;

struct SearchOptions {
  uint32_t k = 10;
  // Recall@k wanted, in (0, 1]; mapped per segment to ef / max_lists through the
  // calibration table measured when the segment was written. 0: kDefaultRecallTarget,
  // unless ef / max_lists are given.
  double recall = 0;
  uint32_t ef = 0;          // HNSW segments: explicit candidate list (raised to k); 0: from recall
  uint32_t max_lists = 0;   // SPANN segments: explicit most posting lists read; 0: from recall
  // Filter expression over attributes, e.g. `lang == "en" AND year >= 2020` (docs/PLANNER.md);
  // empty: none.
  std::string filter{};
  SearchStrategy strategy = SearchStrategy::kAuto;
  // Embedded engine only. Instead of `filter`: one prepared by Engine::PrepareFilter (not
  // owned; it must outlive the call). Giving both is InvalidArgument. A prepared filter lives
  // in the engine's memory and does not cross the wire: the protocol refuses a request that
  // sets it (protocol::ValidateForEncoding), so a client sends `filter` text instead.
  const PreparedFilter* prepared_filter = nullptr;
  // Return each hit's attributes with it (as Qdrant's with_payload): SearchWithKeys and
  // SearchBatchWithKeys fill KeyedNeighbor::attributes from the same snapshot once the top-k
  // is chosen, and over the wire the search_with request carries it (docs/PROTOCOL.md), so a
  // client needs no get per hit. Engine::Search's Neighbors have no room for them.
  bool with_attributes = false;
  // Cluster collections (docs/CLUSTER.md), over the wire in search_with only; the engine
  // ignores both. allow_partial: a shard that does not answer in time leaves the reply
  // partial (SearchWithReply::missing names it) instead of failing it. shard_timeout_ms: how
  // long the routing node waits for each shard replica; 0: the server's default.
  bool allow_partial = false;
  uint32_t shard_timeout_ms = 0;
  friend bool operator==(const SearchOptions&, const SearchOptions&) = default;
};

// ---- String keys ----
//
// Every record has a u64 id. A record may instead be written by a string key: a
// key is 1..kMaxKeyBytes bytes, any bytes (binary-safe, as Redis elements are;
// NUL included), compared byte for byte. Writing by key replaces the live record
// with that key (it keeps its id) or, when there is none, creates one with a fresh
// id that the engine assigns from the keyed range [kKeyedIdBase, kInvalidVectorId):
// increasing, never reused in the collection's lifetime, even after a delete.
// Upserts by id refuse ids in that range, so a record written by id never has a
// key and a keyed record is only ever replaced through its key; deleting or
// getting a keyed record by its id works as for any id. Keyed and id-only records
// coexist in one collection and are searched together.
inline constexpr size_t kMaxKeyBytes = 1024;
inline constexpr VectorId kKeyedIdBase = VectorId{1} << 63;

// Whether `id` is in the range the engine assigns to keyed records.
inline constexpr bool IsKeyedId(VectorId id) { return id >= kKeyedIdBase && id != kInvalidVectorId; }

// OK for a valid key; InvalidArgument saying what is wrong otherwise.
inline Status ValidateKey(std::string_view key) {
  if (key.empty()) return InvalidArgument("key is empty; a key has 1..{} bytes", kMaxKeyBytes);
  if (key.size() > kMaxKeyBytes) {
    return InvalidArgument("key has {} bytes; a key has at most {}", key.size(), kMaxKeyBytes);
  }
  return Status::Ok();
}

// A key as error messages and logs show it: printable ASCII as is, other bytes as \xNN,
// at most 64 bytes of it (then "...").
inline std::string KeyForMessage(std::string_view key) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < key.size() && i < 64; ++i) {
    const auto c = static_cast<unsigned char>(key[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(char(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  if (key.size() > 64) out += "...";
  return out;
}

struct Record {
  VectorId id = 0;
  std::vector<float> vector{};  // as written
  Attributes attributes{};
  std::string key{};            // empty: written by id
  friend bool operator==(const Record&, const Record&) = default;
};

// One search result with its record's key (empty for a record written by id) and, when
// SearchOptions::with_attributes asked for them, its attributes. Search loops carry lean
// Neighbors; keys and attributes are looked up once the top-k is chosen.
struct KeyedNeighbor {
  VectorId id = kInvalidVectorId;
  float distance = 0.0f;
  std::string key{};
  Attributes attributes{};
  friend bool operator==(const KeyedNeighbor&, const KeyedNeighbor&) = default;
};

// One page of a key listing (Engine::ListKeys): keys of live keyed records in the
// order of their ids, and the cursor that continues after them (0: the listing is
// complete).
struct KeyPage {
  std::vector<std::string> keys{};
  std::vector<VectorId> ids{};  // the records' ids, parallel to keys
  uint64_t next_cursor = 0;
  friend bool operator==(const KeyPage&, const KeyPage&) = default;
};

}  // namespace strata
