// Messages between cluster nodes for a replica's catch-up from a peer's files (docs/CLUSTER.md,
// "Catch-up"): shard_files, shard_file_read and shard_files_done share one request; the first
// answers with the copy's file list, the second with a piece of a file.

#include <string>
#include <utility>

#include "protocol/messages.h"

namespace strata::protocol::wire {

void WriteShardFiles(Writer& w, const ShardFilesRequest& m) {
  w.String(m.collection);
  w.String(m.token);
  w.String(m.path);
  w.U64(m.offset);
  w.U32(m.length);
}

Result<ShardFilesRequest> ReadShardFiles(Reader& r, Op op, const DecodeLimits& limits) {
  ShardFilesRequest m;
  STRATA_ASSIGN_OR_RETURN(m.collection, r.String("collection", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.token, r.String("token", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.path, r.String("path", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.offset, r.U64("offset"));
  STRATA_ASSIGN_OR_RETURN(m.length, r.U32("length"));
  if (op == Op::kShardFileRead && m.length > kMaxShardFileChunk) {
    return Error(OverLimit("length", "", m.length, kMaxShardFileChunk, "kMaxShardFileChunk"));
  }
  if (op == Op::kShardFileRead && m.length == 0) {
    return Error(InvalidArgument("length: 0 (shard_file_read reads 1..{} bytes)", kMaxShardFileChunk));
  }
  return m;
}

void WriteShardFilesReply(Writer& w, const ShardFilesReply& m) {
  w.String(m.token);
  w.U64(m.sequence);
  w.Count(m.files.size());
  for (const ShardFile& f : m.files) {
    w.String(f.path);
    w.U64(f.size);
    w.U64(f.xxh64);
  }
}

Result<ShardFilesReply> ReadShardFilesReply(Reader& r, const DecodeLimits& limits) {
  ShardFilesReply m;
  STRATA_ASSIGN_OR_RETURN(m.token, r.String("token", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.sequence, r.U64("sequence"));
  // Each file takes at least a length word and two u64.
  STRATA_ASSIGN_OR_RETURN(uint32_t n, r.Count("files", limits.max_batch, "max_batch", 20));
  m.files.resize(n);
  for (ShardFile& f : m.files) {
    STRATA_ASSIGN_OR_RETURN(f.path, r.String("path", limits.max_string));
    STRATA_ASSIGN_OR_RETURN(f.size, r.U64("size"));
    STRATA_ASSIGN_OR_RETURN(f.xxh64, r.U64("xxh64"));
  }
  return m;
}

void WriteShardFileChunkReply(Writer& w, const ShardFileChunkReply& m) { w.String(m.data); }

Result<ShardFileChunkReply> ReadShardFileChunkReply(Reader& r, const DecodeLimits& limits) {
  ShardFileChunkReply m;
  STRATA_ASSIGN_OR_RETURN(m.data, r.String("data", std::max(limits.max_string, kMaxShardFileChunk)));
  return m;
}

}  // namespace strata::protocol::wire
