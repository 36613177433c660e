#pragma once
// Internal to protocol/: the payload codec of each message, its encoder next to its
// decoder, one file per message family. protocol.cc maps opcodes to these (the
// request and response switches), and adds the frame, the opcode check and the
// outer error context ("upsert: record 3: ...").
//
// Write* appends a message's payload (or only counts it: Writer(nullptr)); Read*
// decodes one from a Reader, naming the field at fault; neither checks the opcode.
// Messages with an empty payload (ping, list_collections and stats requests, the
// empty reply) have no codec here. Free functions; safe to call from any thread.

#include "protocol/protocol.h"
#include "protocol/wire.h"

namespace strata::protocol::wire {

// ---- session_messages.cc: hello, and the error reply ------------------------------
void WriteHello(Writer& w, const HelloRequest& m);
Result<HelloRequest> ReadHello(Reader& r, const DecodeLimits& limits);
void WriteHelloReply(Writer& w, const HelloReply& m);
Result<HelloReply> ReadHelloReply(Reader& r);
void WriteErrorReply(Writer& w, const ErrorReply& m);
Result<ErrorReply> ReadErrorReply(Reader& r);

// ---- collection_messages.cc: create, drop, list, describe --------------------------
void WriteCreateCollection(Writer& w, const CreateCollectionRequest& m);
Result<CreateCollectionRequest> ReadCreateCollection(Reader& r, const DecodeLimits& limits);
void WriteDropCollection(Writer& w, const DropCollectionRequest& m);
Result<DropCollectionRequest> ReadDropCollection(Reader& r, const DecodeLimits& limits);
void WriteListCollectionsReply(Writer& w, const ListCollectionsReply& m);
Result<ListCollectionsReply> ReadListCollectionsReply(Reader& r, const DecodeLimits& limits);
void WriteDescribeCollection(Writer& w, const DescribeCollectionRequest& m);
Result<DescribeCollectionRequest> ReadDescribeCollection(Reader& r, const DecodeLimits& limits);
void WriteDescribeCollectionReply(Writer& w, const DescribeCollectionReply& m);
Result<DescribeCollectionReply> ReadDescribeCollectionReply(Reader& r,
                                                            const DecodeLimits& limits);
// kCreateCollectionWith and kDescribeCollectionWith: the same, each spec followed by
// u32 fields (bit 0: u8 codes, u32 rerank).
void WriteCreateCollectionWith(Writer& w, const CreateCollectionRequest& m);
Result<CreateCollectionRequest> ReadCreateCollectionWith(Reader& r, const DecodeLimits& limits);
void WriteDescribeCollectionWithReply(Writer& w, const DescribeCollectionReply& m);
Result<DescribeCollectionReply> ReadDescribeCollectionWithReply(Reader& r,
                                                                const DecodeLimits& limits);
// kListCollectionsWith: list_collections' reply, each info followed by its spec's fields.
void WriteListCollectionsWithReply(Writer& w, const ListCollectionsReply& m);
Result<ListCollectionsReply> ReadListCollectionsWithReply(Reader& r, const DecodeLimits& limits);

// ---- record_messages.cc: upsert, delete, get --------------------------------------
// A record's attributes: u16 count, then each attribute (shared with key_messages.cc).
void WriteAttributes(Writer& w, const Attributes& attributes);
Result<Attributes> ReadAttributes(Reader& r, const DecodeLimits& limits);
// upsert (each record named by its u64 id) and, with `keyed`, upsert_keyed (by its key).
void WriteUpsert(Writer& w, const UpsertRequest& m, bool keyed = false);
Result<UpsertRequest> ReadUpsert(Reader& r, const DecodeLimits& limits, bool keyed = false);
// upsert_typed: u8 element, u8 flags (bit 0 keyed), then upsert's payload in that element.
void WriteUpsertTyped(Writer& w, const UpsertRequest& m);
Result<UpsertRequest> ReadUpsertTyped(Reader& r, const DecodeLimits& limits);
void WriteDelete(Writer& w, const DeleteRequest& m);
Result<DeleteRequest> ReadDelete(Reader& r, const DecodeLimits& limits);
void WriteWriteReply(Writer& w, const WriteReply& m);  // upsert and delete
Result<WriteReply> ReadWriteReply(Reader& r);
void WriteGet(Writer& w, const GetRequest& m);
Result<GetRequest> ReadGet(Reader& r, const DecodeLimits& limits);
void WriteGetReply(Writer& w, const GetReply& m);
Result<GetReply> ReadGetReply(Reader& r, const DecodeLimits& limits);

// ---- search_messages.cc: search, search_batch, explain ----------------------------
// `op` is one of the three: it sets how many queries a request may carry and whether a
// reply ends with the explain text.
// kSearchWith's request ends with u32 fields (options.with_attributes).
void WriteSearch(Writer& w, Op op, const SearchRequest& m);
Result<SearchRequest> ReadSearch(Reader& r, Op op, const DecodeLimits& limits);
// search_typed: u8 element, then search_with's request with queries in that element.
void WriteSearchTyped(Writer& w, const SearchRequest& m);
Result<SearchRequest> ReadSearchTyped(Reader& r, const DecodeLimits& limits);
void WriteSearchWithReply(Writer& w, const SearchWithReply& m);
Result<SearchWithReply> ReadSearchWithReply(Reader& r, const DecodeLimits& limits);
void WriteSearchReply(Writer& w, Op op, const SearchReply& m);
Result<SearchReply> ReadSearchReply(Reader& r, Op op, const DecodeLimits& limits);

// ---- key_messages.cc: records by string key (upsert_keyed, delete_keyed, get_keyed, the
// keyed search reply, list_keys) --------------------------------------------------------
void WriteKeys(Writer& w, const KeysRequest& m);  // delete_keyed and get_keyed
Result<KeysRequest> ReadKeys(Reader& r, const DecodeLimits& limits);
void WriteKeyedGetReply(Writer& w, const GetReply& m);
Result<GetReply> ReadKeyedGetReply(Reader& r, const DecodeLimits& limits);
void WriteKeyedSearchReply(Writer& w, const KeyedSearchReply& m);
Result<KeyedSearchReply> ReadKeyedSearchReply(Reader& r, const DecodeLimits& limits);
// upsert_keyed_ids: per record u64 id, string key, dim x f32, attributes; its reply the ids.
void WriteUpsertKeyedIds(Writer& w, const UpsertRequest& m);
Result<UpsertRequest> ReadUpsertKeyedIds(Reader& r, const DecodeLimits& limits);
void WriteIdsReply(Writer& w, const IdsReply& m);
Result<IdsReply> ReadIdsReply(Reader& r, const DecodeLimits& limits);
void WriteListKeys(Writer& w, const ListKeysRequest& m);
Result<ListKeysRequest> ReadListKeys(Reader& r, const DecodeLimits& limits);
void WriteListKeysReply(Writer& w, const ListKeysReply& m);
Result<ListKeysReply> ReadListKeysReply(Reader& r, const DecodeLimits& limits);

// ---- shard_messages.cc: a shard's files, between cluster nodes --------------------------
void WriteShardFiles(Writer& w, const ShardFilesRequest& m);  // all three requests
Result<ShardFilesRequest> ReadShardFiles(Reader& r, Op op, const DecodeLimits& limits);
void WriteShardFilesReply(Writer& w, const ShardFilesReply& m);
Result<ShardFilesReply> ReadShardFilesReply(Reader& r, const DecodeLimits& limits);
void WriteShardFileChunkReply(Writer& w, const ShardFileChunkReply& m);
Result<ShardFileChunkReply> ReadShardFileChunkReply(Reader& r, const DecodeLimits& limits);

// ---- admin_messages.cc: stats, flush, compact, snapshot ---------------------------
void WriteStatsReply(Writer& w, const StatsReply& m);
Result<StatsReply> ReadStatsReply(Reader& r);
void WriteFlush(Writer& w, const FlushRequest& m);
Result<FlushRequest> ReadFlush(Reader& r, const DecodeLimits& limits);
void WriteCompact(Writer& w, const CompactRequest& m);
Result<CompactRequest> ReadCompact(Reader& r, const DecodeLimits& limits);
void WriteSnapshot(Writer& w, const SnapshotRequest& m);
Result<SnapshotRequest> ReadSnapshot(Reader& r, const DecodeLimits& limits);
void WriteSnapshotReply(Writer& w, const SnapshotReply& m);
Result<SnapshotReply> ReadSnapshotReply(Reader& r);

}  // namespace strata::protocol::wire
