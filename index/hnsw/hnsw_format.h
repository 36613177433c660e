#pragma once
// On-disk constants of HNSW index files (docs/formats/hnsw.md), shared by the
// index and by tests that craft damaged files.

#include <cstdint>

#include "storage/section_file.h"

namespace strata::index::hnsw_format {

inline constexpr char kMagic[] = "STRHNSW";
inline constexpr uint16_t kMajor = 1;
// Minor 1 added META.encoding (the high half of what was a 32-bit keep_pruned,
// so 1.0 files read as float32).
// Minor 2 added codes: META.encoding's high byte is the CodesKind (so a 1.1 reader
// refuses such a file as an unknown encoding), and sections CODE and FULL.
// Minor 3: CodesMeta::flags kFullOmitted, a file with exact codes and no FULL section (a
// 1.2 reader refuses it, naming the unknown flag).
inline constexpr uint16_t kMinor = 3;
inline constexpr uint32_t kTagMeta = storage::SectionTag("META");
inline constexpr uint32_t kTagNode = storage::SectionTag("NODE");
inline constexpr uint32_t kTagUpper = storage::SectionTag("UPPR");
inline constexpr uint32_t kTagFree = storage::SectionTag("FREE");
inline constexpr uint32_t kTagCodes = storage::SectionTag("CODE");
inline constexpr uint32_t kTagFull = storage::SectionTag("FULL");

// Header word of a node block: bits 0-15 layer-0 link count, 16-20 level,
// bit 30 free slot, bit 31 tombstone.
inline constexpr uint32_t kCountMask = 0xFFFF;
inline constexpr uint32_t kLevelShift = 16;
inline constexpr uint32_t kLevelMask = 0x1F;
inline constexpr uint32_t kFreeBit = 1u << 30;
inline constexpr uint32_t kDeletedBit = 1u << 31;

// The META section, 64 bytes, little-endian.
struct Meta {
  uint32_t dim;
  uint32_t metric;
  uint32_t M;
  uint32_t ef_construction;
  uint16_t keep_pruned;
  uint16_t encoding;  // low byte VectorEncoding (0 float32, 1 float16); high byte CodesKind
  uint32_t num_nodes;
  uint32_t entry_node;
  uint32_t entry_level;
  uint64_t block_bytes;
  uint64_t seed;
  double consolidate_fraction;
  uint64_t num_deleted;
};
static_assert(sizeof(Meta) == 64);

// The CODE section (with codes): this header, then dim float offsets and dim
// float scales of the SQ8 encoder. FULL then holds num_nodes x dim float32, unless
// flags has kFullOmitted: the codes are the vectors and the file holds no FULL.
struct CodesMeta {
  uint32_t kind;    // CodesKind
  uint32_t dim;
  uint32_t rerank;  // HnswOptions::rerank
  // Bit 0: every node's code decodes to exactly its vector (integer data), so reranks decode
  // codes instead of reading FULL. Zero in files written before the flag (read as "not
  // exact"); readers that predate it ignore it.
  uint32_t flags;
};
static_assert(sizeof(CodesMeta) == 16);
inline constexpr uint32_t kCodesExact = 1;
// Bit 1 (minor 3, only with kCodesExact): no FULL section; a node's vector is its decoded code.
inline constexpr uint32_t kFullOmitted = 2;

}  // namespace strata::index::hnsw_format
