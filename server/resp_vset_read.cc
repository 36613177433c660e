// The vector-set reads of one set or one element: VCARD, VDIM, VEMB, VGETATTR, VISMEMBER,
// VINFO, VRANDMEMBER, VLINKS. docs/RESP.md has every reply and the mapping to the engine.

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>

#include "server/resp_commands.h"
#include "server/resp_keys.h"
#include "server/resp_vset_util.h"

namespace strata::server {

namespace resp = protocol::resp;

namespace {

// The set's description, or nullopt when the key is not a set (invalid name, or absent).
std::optional<CollectionInfo> Describe(const Engine& engine, const std::string& key) {
  if (!IsCollectionKey(key)) return std::nullopt;
  auto info = engine.DescribeCollection(key);
  if (!info) return std::nullopt;
  return std::move(*info);
}

// The most keys one RandomKeys call returns.
constexpr int64_t kMaxRandomKeys = 100000;

}  // namespace

void RespCommands::VCard(std::span<const std::string> args, resp::RespWriter& w) {
  const auto info = Describe(engine_, args[1]);
  w.Integer(info ? int64_t(info->num_vectors) : 0);
}

void RespCommands::VDim(std::span<const std::string> args, resp::RespWriter& w) {
  const auto info = Describe(engine_, args[1]);
  if (!info) return w.Error("ERR key does not exist");
  w.Integer(int64_t(info->spec.dim));
}

void RespCommands::VEmb(std::span<const std::string> args, resp::RespWriter& w) {
  bool raw = false;
  for (size_t i = 3; i < args.size(); ++i) {
    if (UpperAscii(args[i]) != "RAW") return w.Error("ERR invalid option");
    raw = true;
  }
  if (!IsCollectionKey(args[1])) return w.Null();
  auto record = engine_.GetByKey(args[1], args[2]);
  if (!record) {
    if (record.error().code() == StatusCode::kNotFound) return w.Null();
    return w.Error("ERR " + record.error().message());
  }
  const std::vector<float>& v = record->vector;
  if (raw) {
    // Strata keeps the vector as written, in f32: the blob is that vector, and the norm is
    // its L2 norm (Redis: the norm before normalization).
    double norm = 0;
    for (float x : v) norm += double(x) * double(x);
    w.Array(3);
    w.SimpleString("f32");
    w.Bulk(std::string_view(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)));
    w.Double(std::sqrt(norm));
    return;
  }
  w.Array(v.size());
  for (float x : v) w.Double(x);
}

void RespCommands::VGetAttr(std::span<const std::string> args, resp::RespWriter& w) {
  if (!IsCollectionKey(args[1])) return w.Null();
  auto record = engine_.GetByKey(args[1], args[2]);
  if (!record) {
    if (record.error().code() == StatusCode::kNotFound) return w.Null();
    return w.Error("ERR " + record.error().message());
  }
  const std::string* json = JsonOf(record->attributes);
  if (json == nullptr) return w.Null();
  w.Bulk(*json);
}

void RespCommands::VIsMember(std::span<const std::string> args, resp::RespWriter& w) {
  w.Bool(IsCollectionKey(args[1]) && engine_.FindKey(args[1], args[2]).has_value());
}

void RespCommands::VInfo(std::span<const std::string> args, resp::RespWriter& w) {
  const auto info = Describe(engine_, args[1]);
  if (!info) return w.NullArray();
  // Redis's fields that Strata has, then Strata's own (docs/RESP.md).
  w.Map(10);
  w.SimpleString("quant-type");
  w.SimpleString("f32");
  w.SimpleString("hnsw-m");
  w.Integer(info->spec.hnsw_M);
  w.SimpleString("vector-dim");
  w.Integer(int64_t(info->spec.dim));
  w.SimpleString("projection-input-dim");
  w.Integer(0);
  w.SimpleString("size");
  w.Integer(int64_t(info->num_vectors));
  w.SimpleString("vset-uid");
  w.Integer(int64_t(info->id));
  w.SimpleString("metric");
  w.SimpleString(MetricName(info->spec.metric));
  w.SimpleString("hnsw-ef-construction");
  w.Integer(info->spec.hnsw_ef_construction);
  w.SimpleString("sealed-segments");
  w.Integer(int64_t(info->sealed_segments));
  w.SimpleString("memory-bytes");
  w.Integer(int64_t(info->memory_bytes));
}

void RespCommands::VRandMember(std::span<const std::string> args, resp::RespWriter& w) {
  if (args.size() > 3) return w.Error(WrongArityMessage(args[0]));
  int64_t count = 1;
  const bool with_count = args.size() == 3;
  if (with_count && !ParseInt(args[2], count)) {
    return w.Error("ERR value is not an integer or out of range");
  }
  const auto info = Describe(engine_, args[1]);
  if (!info || info->num_vectors == 0 || count == 0) {
    if (with_count) return w.Array(0);
    return w.Null();
  }
  std::random_device device;
  const uint64_t seed = (uint64_t(device()) << 32) ^ device();
  const int64_t want = std::min<int64_t>(count < 0 ? -count : count, kMaxRandomKeys);
  auto keys = engine_.RandomKeys(args[1], size_t(want), seed);
  if (!keys) return w.Error("ERR " + keys.error().message());
  if (!with_count) {
    if (keys->empty()) return w.Null();
    return w.Bulk(keys->front());
  }
  if (count > 0 || keys->empty()) {
    w.Array(keys->size());
    for (const auto& k : *keys) w.Bulk(k);
    return;
  }
  // A negative count: that many picks, repeats allowed (drawn from the distinct sample,
  // which is the whole set when it is no larger than the count).
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, keys->size() - 1);
  w.Array(size_t(want));
  for (int64_t i = 0; i < want; ++i) w.Bulk((*keys)[pick(rng)]);
}

void RespCommands::VLinks(std::span<const std::string> args, resp::RespWriter& w) {
  if (args.size() > 4) return w.Error(WrongArityMessage(args[0]));
  const bool with_scores = args.size() == 4;
  if (with_scores && UpperAscii(args[3]) != "WITHSCORES") return w.Error(WrongArityMessage(args[0]));
  const auto info = Describe(engine_, args[1]);
  if (!info) return w.Null();
  auto record = engine_.GetByKey(args[1], args[2]);
  if (!record) {
    if (record.error().code() == StatusCode::kNotFound) return w.Null();
    return w.Error("ERR " + record.error().message());
  }
  // The engine does not expose its graphs' links (a set may span several segments, each
  // with its own graph, or a SPANN index with none). What VLINKS returns instead is one
  // level: the element's 2*M nearest neighbours in the set, found exactly -- the
  // candidates HNSW draws an element's level-0 links from (docs/RESP.md).
  SearchOptions options;
  options.k = std::min<uint32_t>(2 * info->spec.hnsw_M + 1, config_.max_k);
  options.strategy = SearchStrategy::kScan;
  auto hits = engine_.SearchWithKeys(args[1], record->vector, options);
  if (!hits) return w.Error("ERR " + hits.error().message());
  std::vector<const KeyedNeighbor*> links;
  for (const KeyedNeighbor& h : *hits) {
    if (h.id != record->id && links.size() < 2 * size_t(info->spec.hnsw_M)) links.push_back(&h);
  }
  w.Array(1);
  if (with_scores) {
    w.Map(links.size());
  } else {
    w.Array(links.size());
  }
  for (const KeyedNeighbor* h : links) {
    w.Bulk(ElementName(*h));
    if (with_scores) w.Double(ScoreOf(info->spec.metric, h->distance));
  }
}

}  // namespace strata::server
