// Collection messages: create (a spec), drop and describe (a name), list and describe
// replies (collection infos); with the spec and info codecs they share.

#include <limits>
#include <string>
#include <utility>

#include "protocol/messages.h"

namespace strata::protocol::wire {

namespace {

// Smallest encoded sizes (see kMinStringBytes).
constexpr uint64_t kMinSpecBytes = kMinStringBytes + 4 + 1 + 4 + 4 + 8 + 8;
constexpr uint64_t kMinInfoBytes = kMinSpecBytes + 5 * 8;

void WriteSpec(Writer& w, const CollectionSpec& s) {
  STRATA_CHECK(s.dim <= std::numeric_limits<uint32_t>::max());
  w.String(s.name);
  w.U32(uint32_t(s.dim));
  w.U8(static_cast<uint8_t>(s.metric));
  w.U32(s.hnsw_M);
  w.U32(s.hnsw_ef_construction);
  w.U64(s.seal_threshold);
  w.U64(s.memory_budget_bytes);
}

Result<CollectionSpec> ReadSpec(Reader& r, const DecodeLimits& limits) {
  CollectionSpec s;
  STRATA_ASSIGN_OR_RETURN(s.name, r.String("name", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(uint32_t dim, r.U32("dim"));
  s.dim = dim;
  if (dim > limits.max_dim) return Error(OverLimit("dim", "", dim, limits.max_dim, "max_dim"));
  STRATA_ASSIGN_OR_RETURN(uint8_t metric, r.U8("metric"));
  if (metric > static_cast<uint8_t>(Metric::kCosine)) {
    return Error(InvalidArgument("metric: unknown value {} (0 l2, 1 ip, 2 cosine)", metric));
  }
  s.metric = static_cast<Metric>(metric);
  STRATA_ASSIGN_OR_RETURN(s.hnsw_M, r.U32("hnsw_M"));
  STRATA_ASSIGN_OR_RETURN(s.hnsw_ef_construction, r.U32("hnsw_ef_construction"));
  STRATA_ASSIGN_OR_RETURN(s.seal_threshold, r.U64("seal_threshold"));
  STRATA_ASSIGN_OR_RETURN(s.memory_budget_bytes, r.U64("memory_budget_bytes"));
  return s;
}

// The spec's parts after version 1's layout (kCreateCollectionWith,
// kDescribeCollectionWith): u32 fields, then each part whose bit is set.
constexpr uint32_t kSpecFieldCodes = 1u << 0;  // u8 codes, u32 rerank
constexpr uint32_t kKnownSpecFields = kSpecFieldCodes;

void WriteSpecFields(Writer& w, const CollectionSpec& s) {
  w.U32(kSpecFieldCodes);
  w.U8(static_cast<uint8_t>(s.codes));
  w.U32(s.rerank);
}

Status ReadSpecFields(Reader& r, CollectionSpec& s) {
  STRATA_ASSIGN_OR_RETURN(uint32_t fields, r.U32("fields"));
  if (fields & ~kKnownSpecFields) {
    return InvalidArgument("fields: unknown bits 0x{:x} (bit 0: codes)", fields & ~kKnownSpecFields);
  }
  if (fields & kSpecFieldCodes) {
    STRATA_ASSIGN_OR_RETURN(uint8_t codes, r.U8("codes"));
    if (codes > static_cast<uint8_t>(VectorCodes::kSq8)) {
      return InvalidArgument("codes: unknown value {} (0 none, 1 sq8)", codes);
    }
    s.codes = static_cast<VectorCodes>(codes);
    STRATA_ASSIGN_OR_RETURN(s.rerank, r.U32("rerank"));
  }
  return Status::Ok();
}

void WriteInfo(Writer& w, const CollectionInfo& info) {
  WriteSpec(w, info.spec);
  w.U64(info.id);
  w.U64(info.num_vectors);
  w.U64(info.last_sequence);
  w.U64(info.memory_bytes);
  w.U64(info.sealed_segments);
}

Result<CollectionInfo> ReadInfo(Reader& r, const DecodeLimits& limits) {
  CollectionInfo info;
  STRATA_ASSIGN_OR_RETURN(info.spec, ReadSpec(r, limits));
  STRATA_ASSIGN_OR_RETURN(info.id, r.U64("id"));
  STRATA_ASSIGN_OR_RETURN(info.num_vectors, r.U64("num_vectors"));
  STRATA_ASSIGN_OR_RETURN(info.last_sequence, r.U64("last_sequence"));
  STRATA_ASSIGN_OR_RETURN(info.memory_bytes, r.U64("memory_bytes"));
  STRATA_ASSIGN_OR_RETURN(info.sealed_segments, r.U64("sealed_segments"));
  return info;
}

}  // namespace

void WriteCreateCollection(Writer& w, const CreateCollectionRequest& m) { WriteSpec(w, m.spec); }

Result<CreateCollectionRequest> ReadCreateCollection(Reader& r, const DecodeLimits& limits) {
  STRATA_ASSIGN_OR_RETURN(CollectionSpec spec, ReadSpec(r, limits));
  return CreateCollectionRequest{std::move(spec)};
}

void WriteDropCollection(Writer& w, const DropCollectionRequest& m) { w.String(m.name); }

Result<DropCollectionRequest> ReadDropCollection(Reader& r, const DecodeLimits& limits) {
  STRATA_ASSIGN_OR_RETURN(std::string name, r.String("name", limits.max_string));
  return DropCollectionRequest{std::move(name)};
}

namespace {

// list_collections (`with_fields` false) and list_collections_with (each info followed by
// its spec's fields).
void WriteInfos(Writer& w, const ListCollectionsReply& m, bool with_fields) {
  w.Count(m.collections.size());
  for (const CollectionInfo& info : m.collections) {
    WriteInfo(w, info);
    if (with_fields) WriteSpecFields(w, info.spec);
  }
}

Result<ListCollectionsReply> ReadInfos(Reader& r, const DecodeLimits& limits, bool with_fields) {
  ListCollectionsReply m;
  // Bounded by the payload only (a server lists every collection it has).
  const uint64_t min_info = kMinInfoBytes + (with_fields ? 4 : 0);
  STRATA_ASSIGN_OR_RETURN(uint32_t n, r.Count("count", std::numeric_limits<uint32_t>::max(), "", min_info));
  m.collections.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    auto info = ReadInfo(r, limits);
    if (!info) return Error(info.error().WithContext(fmt::format("collection {}", i)));
    if (with_fields) {
      if (Status s = ReadSpecFields(r, info->spec); !s.ok()) {
        return Error(s.WithContext(fmt::format("collection {}", i)));
      }
    }
    m.collections.push_back(std::move(*info));
  }
  return m;
}

}  // namespace

void WriteListCollectionsReply(Writer& w, const ListCollectionsReply& m) { WriteInfos(w, m, false); }

Result<ListCollectionsReply> ReadListCollectionsReply(Reader& r, const DecodeLimits& limits) {
  return ReadInfos(r, limits, false);
}

void WriteListCollectionsWithReply(Writer& w, const ListCollectionsReply& m) { WriteInfos(w, m, true); }

Result<ListCollectionsReply> ReadListCollectionsWithReply(Reader& r, const DecodeLimits& limits) {
  return ReadInfos(r, limits, true);
}

void WriteDescribeCollection(Writer& w, const DescribeCollectionRequest& m) { w.String(m.name); }

Result<DescribeCollectionRequest> ReadDescribeCollection(Reader& r, const DecodeLimits& limits) {
  STRATA_ASSIGN_OR_RETURN(std::string name, r.String("name", limits.max_string));
  return DescribeCollectionRequest{std::move(name)};
}

void WriteDescribeCollectionReply(Writer& w, const DescribeCollectionReply& m) {
  WriteInfo(w, m.info);
}

Result<DescribeCollectionReply> ReadDescribeCollectionReply(Reader& r,
                                                            const DecodeLimits& limits) {
  STRATA_ASSIGN_OR_RETURN(CollectionInfo info, ReadInfo(r, limits));
  return DescribeCollectionReply{std::move(info)};
}

void WriteCreateCollectionWith(Writer& w, const CreateCollectionRequest& m) {
  WriteSpec(w, m.spec);
  WriteSpecFields(w, m.spec);
}

Result<CreateCollectionRequest> ReadCreateCollectionWith(Reader& r, const DecodeLimits& limits) {
  STRATA_ASSIGN_OR_RETURN(CollectionSpec spec, ReadSpec(r, limits));
  STRATA_RETURN_IF_ERROR(ReadSpecFields(r, spec));
  return CreateCollectionRequest{std::move(spec)};
}

void WriteDescribeCollectionWithReply(Writer& w, const DescribeCollectionReply& m) {
  WriteInfo(w, m.info);
  WriteSpecFields(w, m.info.spec);
}

Result<DescribeCollectionReply> ReadDescribeCollectionWithReply(Reader& r,
                                                                const DecodeLimits& limits) {
  STRATA_ASSIGN_OR_RETURN(CollectionInfo info, ReadInfo(r, limits));
  STRATA_RETURN_IF_ERROR(ReadSpecFields(r, info.spec));
  return DescribeCollectionReply{std::move(info)};
}

}  // namespace strata::protocol::wire
