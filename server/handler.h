#pragma once
// One decoded request against the engine: the server's own checks first (limits,
// finite vectors, dimensions, k), then the engine call, then the reply. No
// sockets here: server.cc runs Execute on a worker thread and writes what it returns.
//
// What the server checks before the engine, and answers with:
//   records / ids / queries over max_batch, k over max_k,
//   a reply that could not fit in max_frame_bytes (an
//   upper bound: k results per query, every id found)       kTooLarge
//   k = 0, a NaN or infinite component (naming the record
//   or query and the component)                             kInvalidArgument
//   an unknown collection                                   kNotFound
// Everything else is the engine's error, mapped by ErrorCodeFromStatus; that
// includes a dimension that is not the collection's (InvalidArgument naming both).

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "engine/strata.h"
#include "protocol/protocol.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/request_hook.h"

namespace strata::server {

// Thread-safe: Execute may run on any number of threads at once. `engine` and
// `metrics` are borrowed and must outlive the handler.
class RequestHandler {
 public:
  RequestHandler(Engine& engine, const ServerConfig& config, const ServerMetrics& metrics);

  // Any request except hello (the connection answers that itself, see Hello).
  // Never throws: an exception from below becomes a kInternal error reply.
  protocol::Response Execute(const protocol::Request& request);

  // The reply to a successful hello: version and limits.
  protocol::HelloReply Hello() const;

  // A hook that Execute asks first (request_hook.h); nullptr: none. Any thread, any time.
  void SetHook(std::shared_ptr<RequestHook> hook) {
    std::lock_guard<std::mutex> g(hook_mu_);
    has_hook_.store(hook != nullptr, std::memory_order_release);
    hook_ = std::move(hook);
  }
  // Execute, unless a hook is set that does not leave the request's collection to the engine
  // (RequestHook::PlaceOf is not kEngine: nullopt then: the caller runs Execute elsewhere). For the
  // I/O threads' small reads (inline_reads): a hook -- a cluster node's router -- may wait on
  // other nodes. Any thread.
  std::optional<protocol::Response> ExecuteUnlessHooked(const protocol::Request& request);
  // Whether searches of `collection` may read from disk (it has a memory budget, so SPANN
  // segments). One not seen yet is looked up in the engine's catalog (in memory, no disk;
  // true if the engine does not hold it). Any thread.
  bool MayReadFromDisk(const std::string& collection);
  bool HasHook() const { return has_hook_.load(std::memory_order_acquire); }
  // Where the hook answers a request naming `collection` (RequestHook::PlaceOf); kEngine
  // without a hook. Any thread.
  RequestHook::Place PlaceOf(const std::string& collection) const {
    if (!has_hook_.load(std::memory_order_acquire)) return RequestHook::Place::kEngine;
    const std::shared_ptr<RequestHook> hook = Hook();
    return hook ? hook->PlaceOf(collection) : RequestHook::Place::kEngine;
  }
  // The hook's metrics text (RequestHook::MetricsText); empty without a hook.
  std::string HookMetrics() const {
    const std::shared_ptr<RequestHook> hook = Hook();
    return hook ? hook->MetricsText() : std::string();
  }

  // An upper bound of the payload of the reply Execute will give `request`, cheap enough
  // for an I/O thread (no engine call), so that the server can budget reply memory before
  // the request runs: k results for every query; every id found, at the collection's
  // dimension once the handler has seen the collection (else at the decoder's largest);
  // a fixed allowance for the rest (explain's JSON, list_collections, error messages).
  // Never above max_frame_bytes: a reply that could not fit in a frame is refused with a
  // short error instead. Attributes of a get and explain's JSON may exceed their allowance;
  // the server counts the encoded reply once it is made.
  uint64_t ReplyBound(const protocol::Request& request);
  // The reply allowance of a write: an acknowledgement or an error naming a field or two.
  static constexpr uint64_t kWriteReplyBound = 4 * 1024;
  // What a write (upsert, delete, by id or key) will hold besides its payload, known before it
  // is decoded: from its frame, the payload's head read with protocol::PeekUpsertHead and
  // `limits` (the server's decoding limits). A head that does not decode costs nothing more
  // than kWriteReplyBound: the decoder then refuses the write with a short error. Any thread.
  struct WriteCost {
    // ReplyBound of the write: kWriteReplyBound, and for upsert_keyed_ids every record's id
    // too (8 bytes each); never above max_frame_bytes.
    uint64_t reply = 0;
    // upsert_typed of float16, int8 or uint8 rows: the rows widened to float32 in the write
    // batch (WidenedRowBytes each), held with the payload until the write has run.
    uint64_t widened = 0;
  };
  WriteCost CostOfWrite(const protocol::FrameHeader& header, std::span<const uint8_t> payload,
                        const protocol::DecodeLimits& limits) const;
  // What one row of `dim` takes in the write batch once widened: dim x 4 bytes and its
  // batch entry (engine::WriteOp).
  static uint64_t WidenedRowBytes(uint32_t dim);
  // search_typed of float16, int8 or uint8 queries: the queries widened to float32 (count x
  // dim x 4 bytes) that the search holds besides its request; 0 for any other request.
  static uint64_t WidenedQueryBytes(const protocol::Request& request);

 private:
  using Outcome = std::expected<protocol::ResponseBody, protocol::ErrorReply>;

  Outcome Dispatch(const protocol::Request& request);
  Outcome Search(protocol::Op op, const protocol::SearchRequest& m);
  // kUpsert by id, kUpsertKeyed by key.
  Outcome Upsert(const protocol::UpsertRequest& m, bool by_key = false);
  // kUpsertKeyedIds: by key, each with the id it must have (kInvalidVectorId: found or
  // assigned); the reply lists every record's id.
  Outcome UpsertKeyedIds(const protocol::UpsertRequest& m);
  // kUpsertTyped: narrow rows widened one at a time into the write batch.
  Outcome UpsertTyped(const protocol::UpsertRequest& m);
  // kSearchTyped: the queries widened, then searched as kSearchWith.
  Outcome SearchTyped(const protocol::SearchRequest& m);
  Outcome Delete(const protocol::DeleteRequest& m);
  Outcome Get(const protocol::GetRequest& m);
  // Records by string key (upsert_keyed goes through Upsert).
  Outcome DeleteKeys(const protocol::KeysRequest& m);
  Outcome GetKeys(const protocol::KeysRequest& m);
  Outcome ListKeys(const protocol::ListKeysRequest& m);
  // Engine::Snapshot into config_.snapshot_dir / m.name; Unimplemented without a
  // snapshot_dir, InvalidArgument for a name that is not one plain path component.
  Outcome Snapshot(const protocol::SnapshotRequest& m);

  // The collection's dimension, from a cache filled by DescribeCollection (which
  // is not cheap: it takes the collection's lock and walks its graph) the first
  // time a collection is used. The cache may be stale (a collection dropped and created again
  // elsewhere), so it only sizes reply checks and tells a missing collection: a
  // dimension mismatch is left to the engine, which knows the current dimension.
  Result<size_t> CollectionDim(const std::string& name);
  void ForgetCollection(const std::string& name);
  // The cached dimension, if any (never calls the engine).
  std::optional<size_t> CachedDim(const std::string& name);
  // NotFound for a collection that does not exist (as far as the cache knows), or OK.
  Status CheckCollection(const std::string& collection);

  Engine& engine_;
  const ServerConfig config_;
  const ServerMetrics& metrics_;
  // The hook, under a mutex rather than in a std::atomic<std::shared_ptr>: libstdc++ 12's
  // atomic shared_ptr releases its internal lock relaxed after a load, which ThreadSanitizer
  // (rightly, by the memory model) reports as a race with a later store.
  std::shared_ptr<RequestHook> Hook() const {
    std::lock_guard<std::mutex> g(hook_mu_);
    return hook_;
  }
  mutable std::mutex hook_mu_;
  std::shared_ptr<RequestHook> hook_;  // guarded by hook_mu_
  std::atomic<bool> has_hook_{false};  // hook_ != nullptr, for the inline-read path
  std::mutex dims_mu_;
  std::unordered_map<std::string, size_t> dims_;  // guarded by dims_mu_
  // Collections of dims_ with a memory budget (MayReadFromDisk); guarded by dims_mu_.
  std::unordered_set<std::string> disk_;
};

}  // namespace strata::server
