#include "server/handler.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <filesystem>
#include <string>
#include <type_traits>
#include <variant>

#include "server/convert.h"

#ifndef STRATA_VERSION
#define STRATA_VERSION "unknown"
#endif

namespace strata::server {

using protocol::ErrorCode;
using protocol::ErrorReply;
using protocol::Op;

namespace {

std::unexpected<ErrorReply> Fail(const Status& s) { return std::unexpected(ToErrorReply(s)); }

template <typename... Args>
std::unexpected<ErrorReply> Fail(ErrorCode code, fmt::format_string<Args...> format,
                                 Args&&... args) {
  return std::unexpected(ErrorReply{code, fmt::format(format, std::forward<Args>(args)...)});
}

// "query 2: component 5 is nan" for the first non-finite component, or OK.
Status CheckFinite(const float* v, size_t dim, std::string_view what) {
  for (size_t i = 0; i < dim; ++i) {
    if (!std::isfinite(v[i])) {
      return InvalidArgument("{}: component {} is {} (vector components must be finite)", what, i,
                             std::isnan(v[i]) ? "NaN" : (v[i] > 0 ? "+inf" : "-inf"));
    }
  }
  return Status::Ok();
}

// Encoded sizes used to refuse, before doing the work, a request whose reply could
// not fit in one frame (protocol.h). Search: u32 query count, then per query u32 n
// and n x (u64 id, f32 distance). Get: u32 count, then per id u8 found and, when
// found, u64 id, u32 dim, dim x f32 and the attributes (u16 count, ...).
constexpr uint64_t kNeighborBytes = 12;
constexpr uint64_t kFoundRecordBytes = 8 + 4 + 2;  // id, dim, attribute count

uint64_t SearchReplyBytes(uint64_t queries, uint64_t k) {
  return 4 + queries * (4 + k * kNeighborBytes);
}
// Attributes not counted.
uint64_t GetReplyBytes(uint64_t ids, uint64_t dim) {
  return 4 + ids * (1 + kFoundRecordBytes + dim * sizeof(float));
}

// ReplyBound's allowances for what it cannot size without the engine: an error frame's
// message (they name a field or two), the stats reply (a few hundred bytes), explain's JSON
// and list_collections (a few hundred bytes per segment or collection). The encoded reply
// replaces the bound once it is made, so these need only be typical, not maximal.
constexpr uint64_t kSmallReplyBytes = RequestHandler::kWriteReplyBound;
constexpr uint64_t kListReplyBytes = 64 * 1024;
// upsert_keyed_ids: u32 count and every record's u64 id, or an error.
uint64_t IdsReplyBytes(uint64_t records) { return kSmallReplyBytes + 4 + 8 * records; }
constexpr uint64_t kExplainJsonBytes = 64 * 1024;
constexpr uint64_t kTypicalKeyBytes = 64;  // list_keys: keys are sized when the reply is made

// Encoded size of a record's attributes (u16 count; per attribute the name, a type
// byte and the value).
uint64_t AttributeWireBytes(const engine::Attributes& attributes) {
  uint64_t n = 2;
  for (const engine::Attribute& a : attributes) {
    n += 4 + a.name.size() + 1;
    std::visit(
        [&n](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string>) {
            n += 4 + v.size();
          } else if constexpr (std::is_same_v<T, engine::TagList>) {
            n += 4;
            for (const std::string& tag : v) n += 4 + tag.size();
          } else {
            n += 8;
          }
        },
        a.value);
  }
  return n;
}

// A snapshot's name: one path component, so that the snapshot lands inside snapshot_dir
// and nowhere else -- no '/', no "." or "..", nothing a shell or another tool would read
// differently (spaces, control bytes).
// Linux file systems allow 255 bytes (NAME_MAX), and the engine builds the snapshot in a
// folder named ".NAME.partial-XXXXXX" beside it first: 200 leaves room for that.
constexpr size_t kMaxSnapshotNameBytes = 200;

Status CheckSnapshotName(std::string_view name) {
  if (name.empty()) return InvalidArgument("snapshot: the name is empty");
  if (name.size() > kMaxSnapshotNameBytes) {
    return InvalidArgument("snapshot: the name is {} bytes, at most {}", name.size(),
                           kMaxSnapshotNameBytes);
  }
  if (name == "." || name == "..") {
    return InvalidArgument("snapshot: the name '{}' is not allowed (one folder name, not . or ..)",
                           name);
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const unsigned char ch = static_cast<unsigned char>(name[i]);
    const bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
    if (!ok) {
      return InvalidArgument(
          "snapshot: the name has {} at byte {}; a name is one folder name of letters, digits, "
          "'.', '_' and '-' (not . or ..)",
          ch >= 0x21 && ch < 0x7f ? fmt::format("'{}'", char(ch)) : fmt::format("byte 0x{:02x}", ch),
          i);
    }
  }
  return Status::Ok();
}

}  // namespace

RequestHandler::RequestHandler(Engine& engine, const ServerConfig& config,
                               const ServerMetrics& metrics)
    : engine_(engine), config_(config), metrics_(metrics) {}

protocol::HelloReply RequestHandler::Hello() const {
  protocol::HelloReply r;
  r.protocol_version = protocol::kProtocolVersion;
  r.server_version = fmt::format("strata {}", STRATA_VERSION);
  r.max_payload = config_.max_frame_bytes;
  r.max_batch = config_.max_batch;
  r.max_k = config_.max_k;
  r.auth_required = !config_.token.empty();
  return r;
}

std::optional<protocol::Response> RequestHandler::ExecuteUnlessHooked(const protocol::Request& request) {
  if (has_hook_.load(std::memory_order_acquire)) {
    // Only what the hook leaves to the engine (a cluster node: a shard replica's search from
    // another node's router), never a request it may route and wait on other nodes for.
    const std::shared_ptr<RequestHook> hook = Hook();
    const std::string* collection = protocol::RequestCollection(request);
    if (hook && (collection == nullptr || hook->PlaceOf(*collection) != RequestHook::Place::kEngine)) {
      return std::nullopt;
    }
  }
  Outcome out;
  try {
    out = Dispatch(request);
  } catch (const std::exception& e) {
    out = Fail(ErrorCode::kInternal, "{}: {}", protocol::OpName(request.op), e.what());
  } catch (...) {
    out = Fail(ErrorCode::kInternal, "{}: unexpected failure", protocol::OpName(request.op));
  }
  if (!out) return protocol::Response{Op::kError, std::move(out.error())};
  return protocol::Response{request.op, std::move(*out)};
}

bool RequestHandler::MayReadFromDisk(const std::string& collection) {
  auto cached = [&]() -> std::optional<bool> {
    std::lock_guard<std::mutex> l(dims_mu_);
    if (!dims_.count(collection)) return std::nullopt;
    return disk_.count(collection) != 0;
  };
  if (const std::optional<bool> known = cached()) return *known;
  // A name a request hook routes elsewhere (a cluster collection on its entry node) is not
  // looked up: the workers run its requests anyway, and the engine does not hold it.
  if (HasHook() && PlaceOf(collection) != RequestHook::Place::kEngine) return true;
  // Not seen yet (the first search after a collection's writes, say): CollectionDim asks the
  // engine's catalog (in memory, no disk) and fills the cache, so that the first search runs
  // inline like the next ones instead of meeting a worker's cold start. A collection the
  // engine does not hold goes to the workers, which answer the error.
  if (!CollectionDim(collection).has_value()) return true;
  return cached().value_or(true);
}

protocol::Response RequestHandler::Execute(const protocol::Request& request) {
  Outcome out;
  try {
    if (const std::shared_ptr<RequestHook> hook = Hook()) {
      if (std::optional<protocol::Response> r = hook->Handle(request)) return std::move(*r);
    }
    out = Dispatch(request);
  } catch (const std::exception& e) {
    out = Fail(ErrorCode::kInternal, "{}: {}", protocol::OpName(request.op), e.what());
  } catch (...) {
    out = Fail(ErrorCode::kInternal, "{}: unexpected failure", protocol::OpName(request.op));
  }
  if (!out) return {Op::kError, std::move(out.error())};
  return {request.op, std::move(*out)};
}

Result<size_t> RequestHandler::CollectionDim(const std::string& name) {
  {
    std::lock_guard<std::mutex> l(dims_mu_);
    if (auto it = dims_.find(name); it != dims_.end()) return it->second;
  }
  auto info = engine_.DescribeCollection(name);
  std::lock_guard<std::mutex> l(dims_mu_);
  if (!info) {
    dims_.erase(name);
    disk_.erase(name);
    return Error(info.error());
  }
  dims_[name] = info->spec.dim;
  if (info->spec.memory_budget_bytes > 0) {
    disk_.insert(name);
  } else {
    disk_.erase(name);
  }
  return info->spec.dim;
}

std::optional<size_t> RequestHandler::CachedDim(const std::string& name) {
  std::lock_guard<std::mutex> l(dims_mu_);
  if (auto it = dims_.find(name); it != dims_.end()) return it->second;
  return std::nullopt;
}

uint64_t RequestHandler::ReplyBound(const protocol::Request& request) {
  const uint64_t frame = config_.max_frame_bytes;
  // A bound over the frame limit is answered with a short TooLarge error (Search, Get).
  auto fit = [frame](uint64_t bound) { return bound > frame ? kSmallReplyBytes : bound; };
  switch (request.op) {
    case Op::kSearch:
    case Op::kSearchBatch: {
      const auto& m = std::get<protocol::SearchRequest>(request.body);
      return fit(SearchReplyBytes(m.count, m.options.k));
    }
    case Op::kExplain: {
      const auto& m = std::get<protocol::SearchRequest>(request.body);
      const uint64_t bound = SearchReplyBytes(m.count, m.options.k);
      return bound > frame ? kSmallReplyBytes : std::min(frame, bound + kExplainJsonBytes);
    }
    case Op::kGet: {
      const auto& m = std::get<protocol::GetRequest>(request.body);
      if (auto dim = CachedDim(m.collection)) return fit(GetReplyBytes(m.ids.size(), *dim));
      // Not seen yet: the largest dimension a collection can have, but never past a frame.
      return std::min(frame, GetReplyBytes(m.ids.size(), protocol::DecodeLimits{}.max_dim));
    }
    case Op::kSearchKeyed: {
      // Hits with keys: a key's length (its bytes are counted once the reply is made).
      const auto& m = std::get<protocol::SearchRequest>(request.body);
      return fit(SearchReplyBytes(m.count, m.options.k) + uint64_t{m.count} * m.options.k * 4);
    }
    case Op::kSearchWith:
    case Op::kSearchTyped: {
      // Hits with keys and (on request) attributes, sized once the reply is made; the bound
      // counts a key's length, an attribute count and the warnings.
      const auto& m = std::get<protocol::SearchRequest>(request.body);
      const uint64_t per_hit = 4 + (m.options.with_attributes ? 2 : 0);
      return fit(SearchReplyBytes(m.count, m.options.k) + uint64_t{m.count} * m.options.k * per_hit +
                 kSmallReplyBytes);
    }
    case Op::kGetKeyed: {
      const auto& m = std::get<protocol::KeysRequest>(request.body);
      uint64_t keys = 0;
      for (const std::string& k : m.keys) keys += 4 + k.size();
      const uint64_t dim = CachedDim(m.collection).value_or(protocol::DecodeLimits{}.max_dim);
      return std::min(frame, GetReplyBytes(m.keys.size(), dim) + keys);
    }
    case Op::kListKeys: {
      const auto& m = std::get<protocol::ListKeysRequest>(request.body);
      return std::min(frame, 12 + uint64_t{m.count} * (12 + kTypicalKeyBytes));
    }
    case Op::kUpsertKeyedIds: {
      const auto& m = std::get<protocol::UpsertRequest>(request.body);
      return std::min(frame, IdsReplyBytes(m.records.size()));
    }
    case Op::kListCollections:
    case Op::kListCollectionsWith:
      return std::min(frame, kListReplyBytes);
    default:
      return kSmallReplyBytes;
  }
}

RequestHandler::WriteCost RequestHandler::CostOfWrite(const protocol::FrameHeader& header,
                                                      std::span<const uint8_t> payload,
                                                      const protocol::DecodeLimits& limits) const {
  WriteCost cost{.reply = kWriteReplyBound, .widened = 0};
  const Op op = static_cast<Op>(header.opcode);
  if (op != Op::kUpsertKeyedIds && op != Op::kUpsertTyped) return cost;
  auto head = protocol::PeekUpsertHead(header, payload, limits);
  if (!head) return cost;
  if (op == Op::kUpsertKeyedIds) {
    cost.reply = std::min<uint64_t>(config_.max_frame_bytes, IdsReplyBytes(head->count));
  }
  if (op == Op::kUpsertTyped && head->element != ElementType::kFloat32) {
    cost.widened = uint64_t{head->count} * WidenedRowBytes(head->dim);
  }
  return cost;
}

uint64_t RequestHandler::WidenedRowBytes(uint32_t dim) {
  return uint64_t{dim} * sizeof(float) + sizeof(engine::WriteOp);
}

uint64_t RequestHandler::WidenedQueryBytes(const protocol::Request& request) {
  if (request.op != Op::kSearchTyped) return 0;
  const auto* m = std::get_if<protocol::SearchRequest>(&request.body);
  if (m == nullptr || m->element == ElementType::kFloat32) return 0;
  return uint64_t{m->count} * m->dim * sizeof(float);
}

void RequestHandler::ForgetCollection(const std::string& name) {
  std::lock_guard<std::mutex> l(dims_mu_);
  dims_.erase(name);
  disk_.erase(name);
}

Status RequestHandler::CheckCollection(const std::string& collection) {
  auto dim = CollectionDim(collection);
  return dim ? Status::Ok() : dim.error();
}

RequestHandler::Outcome RequestHandler::Dispatch(const protocol::Request& request) {
  const protocol::RequestBody& b = request.body;
  switch (request.op) {
    case Op::kPing:
      return protocol::EmptyReply{};
    case Op::kCreateCollection:
    case Op::kCreateCollectionWith: {
      const auto& m = std::get<protocol::CreateCollectionRequest>(b);
      ForgetCollection(m.spec.name);
      if (Status s = engine_.CreateCollection(m.spec); !s.ok()) return Fail(s);
      return protocol::EmptyReply{};
    }
    case Op::kDropCollection: {
      const auto& m = std::get<protocol::DropCollectionRequest>(b);
      ForgetCollection(m.name);
      Status s = engine_.DropCollection(m.name);
      ForgetCollection(m.name);
      if (!s.ok()) return Fail(s);
      return protocol::EmptyReply{};
    }
    case Op::kListCollections:
    case Op::kListCollectionsWith: {
      return protocol::ListCollectionsReply{engine_.ListCollections()};
    }
    case Op::kDescribeCollection:
    case Op::kDescribeCollectionWith: {
      const auto& m = std::get<protocol::DescribeCollectionRequest>(b);
      auto info = engine_.DescribeCollection(m.name);
      if (!info) return Fail(info.error());
      return protocol::DescribeCollectionReply{std::move(*info)};
    }
    case Op::kUpsert:
      return Upsert(std::get<protocol::UpsertRequest>(b));
    case Op::kDelete:
      return Delete(std::get<protocol::DeleteRequest>(b));
    case Op::kGet:
      return Get(std::get<protocol::GetRequest>(b));
    case Op::kSearch:
    case Op::kSearchBatch:
    case Op::kExplain:
      return Search(request.op, std::get<protocol::SearchRequest>(b));
    case Op::kStats:
      return ToStatsReply(engine_.counters(), metrics_.Snapshot());
    case Op::kFlush: {
      if (Status s = engine_.Flush(std::get<protocol::FlushRequest>(b).collection); !s.ok())
        return Fail(s);
      return protocol::EmptyReply{};
    }
    case Op::kCompact: {
      if (Status s = engine_.Compact(std::get<protocol::CompactRequest>(b).collection); !s.ok()) {
        return Fail(s);
      }
      return protocol::EmptyReply{};
    }
    case Op::kUpsertKeyed:
      return Upsert(std::get<protocol::UpsertRequest>(b), /*by_key=*/true);
    case Op::kUpsertKeyedIds:
      return UpsertKeyedIds(std::get<protocol::UpsertRequest>(b));
    case Op::kDeleteKeyed:
      return DeleteKeys(std::get<protocol::KeysRequest>(b));
    case Op::kGetKeyed:
      return GetKeys(std::get<protocol::KeysRequest>(b));
    case Op::kSearchKeyed:
    case Op::kSearchWith:
      return Search(request.op, std::get<protocol::SearchRequest>(b));
    case Op::kListKeys:
      return ListKeys(std::get<protocol::ListKeysRequest>(b));
    case Op::kSnapshot:
      return Snapshot(std::get<protocol::SnapshotRequest>(b));
    case Op::kUpsertTyped:
      return UpsertTyped(std::get<protocol::UpsertRequest>(b));
    case Op::kSearchTyped:
      return SearchTyped(std::get<protocol::SearchRequest>(b));
    case Op::kHello:
      return Hello();
    case Op::kShardFiles:
    case Op::kShardFileRead:
    case Op::kShardFilesDone:
      return Fail(Unimplemented("{}: a request between cluster nodes, for a shard address; this server "
                                "is not a cluster node (strata-server --cluster-etcd)",
                                protocol::OpName(request.op)));
    case Op::kError:
      break;
  }
  return Fail(ErrorCode::kUnknownOp, "opcode {} is not a request",
              static_cast<uint16_t>(request.op));
}

RequestHandler::Outcome RequestHandler::Snapshot(const protocol::SnapshotRequest& m) {
  if (config_.snapshot_dir.empty()) {
    return Fail(Unimplemented(
        "snapshot: this server takes no snapshots; start it with --snapshot-dir DIR (or set "
        "snapshot_dir in the [server] table of its configuration) to allow them, each one a new "
        "folder of DIR"));
  }
  if (Status s = CheckSnapshotName(m.name); !s.ok()) return Fail(s);
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dir = fs::absolute(config_.snapshot_dir, ec).lexically_normal();
  if (ec || !fs::is_directory(dir, ec)) {
    return Fail(IOError("snapshot: the server's snapshot_dir {} is not a directory{}", dir.string(),
                        ec ? fmt::format(" ({})", ec.message()) : std::string()));
  }
  const fs::path dest = dir / m.name;
  // The engine refuses a destination that exists (AlreadyExists: nothing is overwritten)
  // and builds the copy in a folder of its own beside it, renamed into place when whole.
  auto report = engine_.Snapshot(m.collection, dest);
  if (!report) return Fail(report.error());
  return protocol::SnapshotReply{dest.string(),          report->sequence,     report->segments,
                                 report->files_linked,   report->files_copied, report->bytes_copied};
}

RequestHandler::Outcome RequestHandler::Search(Op op, const protocol::SearchRequest& m) {
  const std::string_view name = protocol::OpName(op);
  if (m.count > config_.max_batch) {
    return Fail(ErrorCode::kTooLarge, "{}: {} queries, over the server's limit of {} (max_batch)",
                name, m.count, config_.max_batch);
  }
  if (m.count == 0 || m.queries.size() != uint64_t{m.count} * m.dim) {
    return Fail(InvalidArgument("{}: {} query floats for {} queries of dimension {}", name,
                                m.queries.size(), m.count, m.dim));
  }
  if (m.options.k == 0) return Fail(InvalidArgument("{}: k must be at least 1", name));
  if (m.options.k > config_.max_k) {
    return Fail(ErrorCode::kTooLarge, "{}: k {} is over the server's limit of {} (max_k)", name,
                m.options.k, config_.max_k);
  }
  // An upper bound (k results for every query; explain's JSON comes on top), used
  // only to refuse a request that could not be answered in one frame before searching.
  const uint64_t reply_bytes = SearchReplyBytes(m.count, m.options.k);
  if (reply_bytes > config_.max_frame_bytes) {
    return Fail(
        ErrorCode::kTooLarge,
        "{}: the reply to {} queries with k {} could take up to {} bytes, over the server's "
        "frame limit of {} (max_frame_bytes); send fewer queries per request or lower k",
        name, m.count, m.options.k, reply_bytes, config_.max_frame_bytes);
  }
  // The dimension itself is the engine's to check (its error names both dimensions).
  if (Status s = CheckCollection(m.collection); !s.ok()) return Fail(s);
  for (uint32_t q = 0; q < m.count; ++q) {
    Status s = CheckFinite(
        m.queries.data() + size_t(q) * m.dim, m.dim,
        m.count == 1 ? fmt::format("{}: query", name) : fmt::format("{}: query {}", name, q));
    if (!s.ok()) return Fail(s);
  }
  const SearchOptions& options = m.options;
  const std::span<const float> first(m.queries.data(), m.dim);
  protocol::SearchReply reply;
  if (op == Op::kSearch) {
    auto r = engine_.Search(m.collection, first, options);
    if (!r) return Fail(r.error());
    reply.results.push_back(std::move(*r));
  } else if (op == Op::kExplain) {
    Explain explain;
    auto r = engine_.Search(m.collection, first, options, &explain);
    if (!r) return Fail(r.error());
    reply.results.push_back(std::move(*r));
    reply.explain = std::move(explain);
  } else if (op == Op::kSearchKeyed || op == Op::kSearchWith) {
    auto r = engine_.SearchBatchWithKeys(m.collection, std::span<const float>(m.queries), m.dim, options, 1);
    if (!r) return Fail(r.error());
    // search_with: why the filter may match nothing (attributes no record has, types an
    // attribute never holds), the same words as EXPLAIN's warnings.
    std::vector<std::string> warnings;
    if (op == Op::kSearchWith && !options.filter.empty()) {
      auto w = engine_.FilterWarnings(m.collection, options.filter);
      if (!w) return Fail(w.error());
      warnings = std::move(*w);
    }
    // The keys', attributes' and warnings' bytes were not in the bound checked above.
    uint64_t bytes = reply_bytes + (op == Op::kSearchWith ? 8 : 0);
    for (const auto& list : *r) {
      for (const KeyedNeighbor& n : list) {
        bytes += 4 + n.key.size();
        if (options.with_attributes) bytes += AttributeWireBytes(n.attributes);
      }
    }
    for (const std::string& w : warnings) bytes += 4 + w.size();
    if (bytes > config_.max_frame_bytes) {
      return Fail(ErrorCode::kTooLarge,
                  "{}: the reply takes {} bytes with its keys and attributes, over the server's frame limit of {} "
                  "(max_frame_bytes); send fewer queries per request or lower k",
                  name, bytes, config_.max_frame_bytes);
    }
    if (op == Op::kSearchWith) {
      return protocol::SearchWithReply{options.with_attributes, std::move(*r), std::move(warnings), {}};
    }
    return protocol::KeyedSearchReply{std::move(*r)};
  } else {
    // The decoded queries as they are (no copy). One thread: the batch already runs on a
    // worker, and the pool is the server's concurrency.
    auto r = engine_.SearchBatch(m.collection, std::span<const float>(m.queries), m.dim, options, 1);
    if (!r) return Fail(r.error());
    reply.results = std::move(*r);
  }
  return reply;
}

RequestHandler::Outcome RequestHandler::SearchTyped(const protocol::SearchRequest& m) {
  if (m.element == ElementType::kFloat32) return Search(Op::kSearchWith, m);
  if (m.count > config_.max_batch) {
    return Fail(ErrorCode::kTooLarge, "search_typed: {} queries, over the server's limit of {} (max_batch)",
                m.count, config_.max_batch);
  }
  // Queries are few and a search needs floats: widened here, as a whole.
  auto queries = protocol::WidenedQueries(m);
  if (!queries) return Fail(queries.error());
  protocol::SearchRequest widened{.collection = m.collection, .options = m.options, .dim = m.dim, .count = m.count};
  widened.queries = std::move(*queries);
  return Search(Op::kSearchWith, widened);
}

RequestHandler::Outcome RequestHandler::UpsertTyped(const protocol::UpsertRequest& m) {
  if (m.element == ElementType::kFloat32) return Upsert(m, m.keyed);
  const std::string_view op = "upsert_typed";
  if (m.records.size() > config_.max_batch) {
    return Fail(ErrorCode::kTooLarge, "{}: {} records, over the server's limit of {} (max_batch)", op,
                m.records.size(), config_.max_batch);
  }
  if (Status s = protocol::CheckTypedRows(m); !s.ok()) return Fail(s);
  const uint64_t row_bytes = uint64_t{m.dim} * ElementSize(m.element);
  // Each row is widened straight from the decoded payload into its operation: the batch is
  // never held as a second float32 copy (the request's values take 1 or 2 bytes each).
  engine::WriteBatch batch;
  for (size_t i = 0; i < m.records.size(); ++i) {
    const Record& r = m.records[i];
    const uint8_t* row = m.elements.data() + i * row_bytes;
    if (m.keyed) {
      batch.UpsertRowByKey(r.key, m.element, row, m.dim, r.attributes);
    } else {
      batch.UpsertRow(r.id, m.element, row, m.dim, r.attributes);
    }
    if (m.element == ElementType::kFloat16) {  // a half may be infinite or NaN
      const std::vector<float>& v = batch.ops().back().vector;
      const std::string which =
          m.keyed ? fmt::format("key '{}'", KeyForMessage(r.key)) : fmt::format("id {}", r.id);
      Status s = CheckFinite(v.data(), v.size(), fmt::format("{}: record {} ({})", op, i, which));
      if (!s.ok()) return Fail(s);
    }
  }
  if (Status s = engine_.Write(m.collection, batch); !s.ok()) return Fail(s.WithContext(op));
  return protocol::WriteReply{m.records.size()};
}

RequestHandler::Outcome RequestHandler::Upsert(const protocol::UpsertRequest& m, bool by_key) {
  const std::string_view op = by_key ? "upsert_keyed" : "upsert";
  if (m.records.size() > config_.max_batch) {
    return Fail(ErrorCode::kTooLarge,
                "{}: {} records, over the server's limit of {} (max_batch)", op, m.records.size(),
                config_.max_batch);
  }
  engine::WriteBatch batch;
  for (size_t i = 0; i < m.records.size(); ++i) {
    const Record& r = m.records[i];
    const std::string which =
        by_key ? fmt::format("key '{}'", KeyForMessage(r.key)) : fmt::format("id {}", r.id);
    if (r.vector.size() != m.dim) {
      return Fail(InvalidArgument("{}: record {} ({}): {} components, dim is {}", op, i, which,
                                  r.vector.size(), m.dim));
    }
    Status s = CheckFinite(r.vector.data(), r.vector.size(),
                           fmt::format("{}: record {} ({})", op, i, which));
    if (!s.ok()) return Fail(s);
    if (by_key) {
      batch.UpsertByKey(r.key, r.vector, r.attributes);
    } else {
      batch.Upsert(r.id, r.vector, r.attributes);
    }
  }
  if (Status s = engine_.Write(m.collection, batch); !s.ok()) return Fail(s.WithContext(op));
  return protocol::WriteReply{m.records.size()};
}

RequestHandler::Outcome RequestHandler::UpsertKeyedIds(const protocol::UpsertRequest& m) {
  constexpr std::string_view op = "upsert_keyed_ids";
  if (m.records.size() > config_.max_batch) {
    return Fail(ErrorCode::kTooLarge, "{}: {} records, over the server's limit of {} (max_batch)", op,
                m.records.size(), config_.max_batch);
  }
  engine::WriteBatch batch;
  for (size_t i = 0; i < m.records.size(); ++i) {
    const Record& r = m.records[i];
    if (r.vector.size() != m.dim) {
      return Fail(InvalidArgument("{}: record {} (key '{}'): {} components, dim is {}", op, i,
                                  KeyForMessage(r.key), r.vector.size(), m.dim));
    }
    Status s = CheckFinite(r.vector.data(), r.vector.size(),
                           fmt::format("{}: record {} (key '{}')", op, i, KeyForMessage(r.key)));
    if (!s.ok()) return Fail(s);
    batch.UpsertByKeyWithId(r.key, r.id, r.vector, r.attributes);
  }
  std::vector<VectorId> ids;
  if (Status s = engine_.Write(m.collection, batch, &ids); !s.ok()) return Fail(s.WithContext(op));
  return protocol::IdsReply{std::move(ids)};
}

RequestHandler::Outcome RequestHandler::DeleteKeys(const protocol::KeysRequest& m) {
  if (m.keys.size() > config_.max_batch) {
    return Fail(ErrorCode::kTooLarge,
                "delete_keyed: {} keys, over the server's limit of {} (max_batch)", m.keys.size(),
                config_.max_batch);
  }
  engine::WriteBatch batch;
  for (const std::string& k : m.keys) batch.DeleteByKey(k);
  if (Status s = engine_.Write(m.collection, batch); !s.ok()) {
    return Fail(s.WithContext("delete_keyed"));
  }
  return protocol::WriteReply{m.keys.size()};
}

RequestHandler::Outcome RequestHandler::GetKeys(const protocol::KeysRequest& m) {
  if (m.keys.size() > config_.max_batch) {
    return Fail(ErrorCode::kTooLarge, "get_keyed: {} keys, over the server's limit of {} (max_batch)",
                m.keys.size(), config_.max_batch);
  }
  auto dim = CollectionDim(m.collection);
  if (!dim) return Fail(dim.error().WithContext("get_keyed"));
  protocol::GetReply reply;
  reply.records.reserve(m.keys.size());
  uint64_t bytes = 4 + m.keys.size();  // count, and a found byte per key
  for (const std::string& key : m.keys) {
    auto r = engine_.GetByKey(m.collection, key);
    if (r) {
      bytes += kFoundRecordBytes + 4 + r->key.size() + r->vector.size() * sizeof(float) +
               AttributeWireBytes(r->attributes);
      if (bytes > config_.max_frame_bytes) {
        return Fail(ErrorCode::kTooLarge,
                    "get_keyed: the reply to {} keys takes more than the server's frame limit of {} "
                    "bytes (max_frame_bytes); ask for fewer keys",
                    m.keys.size(), config_.max_frame_bytes);
      }
      reply.records.push_back(std::move(*r));
    } else if (r.error().code() == StatusCode::kNotFound) {
      reply.records.push_back(std::nullopt);
    } else {
      return Fail(r.error().WithContext("get_keyed"));
    }
  }
  return reply;
}

RequestHandler::Outcome RequestHandler::ListKeys(const protocol::ListKeysRequest& m) {
  if (m.count > config_.max_batch) {
    return Fail(ErrorCode::kTooLarge, "list_keys: count {} is over the server's limit of {} (max_batch)",
                m.count, config_.max_batch);
  }
  auto page = engine_.ListKeys(m.collection, m.cursor, m.count);
  if (!page) return Fail(page.error().WithContext("list_keys"));
  uint64_t bytes = 12;
  for (const std::string& k : page->keys) bytes += 12 + k.size();
  if (bytes > config_.max_frame_bytes) {
    return Fail(ErrorCode::kTooLarge,
                "list_keys: the page takes {} bytes, over the server's frame limit of {} "
                "(max_frame_bytes); ask for fewer keys",
                bytes, config_.max_frame_bytes);
  }
  return protocol::ListKeysReply{std::move(*page)};
}

RequestHandler::Outcome RequestHandler::Delete(const protocol::DeleteRequest& m) {
  if (m.ids.size() > config_.max_batch) {
    return Fail(ErrorCode::kTooLarge, "delete: {} ids, over the server's limit of {} (max_batch)",
                m.ids.size(), config_.max_batch);
  }
  engine::WriteBatch batch;
  for (VectorId id : m.ids) batch.Delete(id);
  if (Status s = engine_.Write(m.collection, batch); !s.ok()) return Fail(s.WithContext("delete"));
  return protocol::WriteReply{m.ids.size()};
}

RequestHandler::Outcome RequestHandler::Get(const protocol::GetRequest& m) {
  if (m.ids.size() > config_.max_batch) {
    return Fail(ErrorCode::kTooLarge, "get: {} ids, over the server's limit of {} (max_batch)",
                m.ids.size(), config_.max_batch);
  }
  // Also tells a missing collection (NotFound for the request) from a missing id (not found).
  auto dim = CollectionDim(m.collection);
  if (!dim) return Fail(dim.error().WithContext("get"));
  // The reply's size if every id is found (attributes come on top): a request for more
  // ids than that lets fit in one frame is refused before reading any record, even if
  // some ids would turn out to be missing.
  const uint64_t reply_bytes = GetReplyBytes(m.ids.size(), *dim);
  if (reply_bytes > config_.max_frame_bytes) {
    return Fail(ErrorCode::kTooLarge,
                "get: the reply to {} ids of dimension {} could take {} bytes if every id is "
                "found (attributes not counted), over the server's frame limit of {} "
                "(max_frame_bytes); ask for fewer ids",
                m.ids.size(), *dim, reply_bytes, config_.max_frame_bytes);
  }
  protocol::GetReply reply;
  reply.records.reserve(m.ids.size());
  uint64_t bytes = 4 + m.ids.size();  // count, and a found byte per id
  for (VectorId id : m.ids) {
    auto r = engine_.Get(m.collection, id);
    if (r) {
      // Attributes can be large: stop as soon as the reply could not be sent.
      bytes += 8 + 4 + r->vector.size() * sizeof(float) + AttributeWireBytes(r->attributes);
      if (bytes > config_.max_frame_bytes) {
        return Fail(ErrorCode::kTooLarge,
                    "get: the reply to {} ids takes more than the server's frame limit of {} bytes "
                    "(max_frame_bytes); ask for fewer ids",
                    m.ids.size(), config_.max_frame_bytes);
      }
      reply.records.push_back(std::move(*r));
    } else if (r.error().code() == StatusCode::kNotFound) {
      reply.records.push_back(std::nullopt);
    } else {
      return Fail(r.error().WithContext(fmt::format("get: id {}", id)));
    }
  }
  return reply;
}

}  // namespace strata::server
