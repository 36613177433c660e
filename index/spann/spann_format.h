#pragma once
// On-disk layout of SPANN posting files (docs/formats/spann.md), shared by the
// build and open (spann_index.cc) and the search (spann_search.cc).

#include <cstddef>
#include <cstdint>

#include "storage/section_file.h"

namespace strata::index::spann_format {

inline constexpr char kMagic[] = "STRSPAN";
inline constexpr uint16_t kMajor = 1;
// Minor 1 added META.encoding (a field that was reserved and zero, so 1.0 files
// read as float32 lists). Minor 2 added codes (META.codes / full / rerank, the SQ8P
// and FULL sections, encoding 2), in what was reserved2: 1.0 and 1.1 files read as
// lists without codes. Minor 3 added META.exact_codes (what was reserved3): codes that are
// the vectors themselves (integer data), with neither a FULL section nor list vectors.
inline constexpr uint16_t kMinor = 3;
inline constexpr uint32_t kTagMeta = storage::SectionTag("META");
inline constexpr uint32_t kTagPost = storage::SectionTag("POST");
inline constexpr uint32_t kTagDir = storage::SectionTag("LDIR");
inline constexpr uint32_t kTagSq8 = storage::SectionTag("SQ8P");
inline constexpr uint32_t kTagFull = storage::SectionTag("FULL");
inline constexpr uint64_t kPage = 4096;
// FULL slots are multiples of the smallest O_DIRECT alignment, so that a rerank read of
// one vector costs one 512-byte block where the device allows it (BlockFile::alignment()).
inline constexpr uint64_t kSlotAlignment = 512;
inline constexpr char kHeadsFile[] = "heads.hnsw";
inline constexpr char kPostingsFile[] = "postings.spann";

inline constexpr uint32_t kEncodingF32 = 0, kEncodingF16 = 1, kEncodingNone = 2;

struct Meta {
  uint32_t dim;
  uint32_t metric;
  uint64_t num_vectors;
  uint64_t num_lists;
  uint64_t total_entries;
  uint32_t replicas;
  uint32_t encoding;  // list vectors: 0 float32, 1 IEEE half, 2 none (codes only, 1.2)
  double closure_epsilon;
  uint64_t cluster_size;
  uint8_t codes;       // 1.2: 0 none, 1 SQ8 (parameters in SQ8P)
  uint8_t full;        // 1.2: 1 = full vectors in the FULL section
  uint8_t list_align;  // 1.2: log2 of the lists' alignment, 9..12 (0 = 12, as before 1.2)
  uint8_t exact_codes;  // 1.3: 1 = every vector decodes from its code exactly (no FULL)
  uint32_t rerank;     // 1.2: default rerank depth (0 = automatic)
};
static_assert(sizeof(Meta) == 64);

// FULL: one slot per id: the float32 vector, the id, zeros, and the XXH3-64 of the slot's
// bytes before it in its last 8 bytes.
inline uint64_t FullSlotBytes(size_t dim) {
  return (dim * sizeof(float) + sizeof(uint32_t) + sizeof(uint64_t) + kSlotAlignment - 1) /
         kSlotAlignment * kSlotAlignment;
}

struct DirEntry {  // LDIR record; offsets relative to the POST section
  uint64_t offset;
  uint32_t bytes;
  uint32_t count;
  uint64_t checksum;
};
static_assert(sizeof(DirEntry) == 24);

inline uint64_t PadTo(uint64_t b, uint64_t a) { return (b + a - 1) / a * a; }

}  // namespace strata::index::spann_format
