#pragma once
// SpannIndex: the memory-disk inverted index of Chen et al., "SPANN: Highly-
// efficient Billion-scale Approximate Nearest Neighbor Search" (NeurIPS 2021).
//
// Build. Balanced hierarchical clustering cuts the base into many small
// clusters; the member nearest each centroid is its head (head_vectors), kept in
// memory and indexed by Strata's own HNSW. Every vector is written to the posting
// list of its nearest head and, near a boundary, replicated into further lists
// (`replicas` in all) whose head is within (1 + closure_epsilon) x the nearest
// head's distance,
// skipping a head when an already chosen head is closer to it than the vector
// is (the paper's RNG rule, section 3.2). Posting lists live on disk, each on a
// 4 KiB boundary with its own checksum (docs/formats/spann.md).
//
// Search. The nearest heads come from the HNSW; query-aware pruning keeps only
// lists whose head is within (1 + prune_epsilon) x the nearest head's distance,
// at most `max_lists`. All reads are submitted at once (io_uring with O_DIRECT
// where available, pread otherwise); each list is checksummed and scored as its
// read completes; replicas are dropped by id; the best k are kept.
//
// Codes (issue 18; SpannBuildOptions::codes = kSq8). Each list entry then carries
// an SQ8 code (index/codes/sq8.h: one byte per dimension) and its decoded squared
// norm, and a search scores the entries on the codes, keeps the best `rerank`
// distinct candidates, and re-scores those with full vectors, which come either
// from the FULL section of the posting file (one small O_DIRECT read per
// candidate, all submitted at once after the lists: SpannRerankFrom::kFile, the
// default) or from the list itself, stored beside the codes (kList: more bytes
// per list, no second round of reads). Returned distances are then exact (kFile:
// float32) or carry half precision's rounding (kList with half_lists).
// Exact codes: where the codes reproduce every vector (integer data spanning at most 255
// per dimension, such as uint8 pixels under L2: Sq8Encoder::exact), the build keeps no
// other copy -- no FULL section, no list vectors, whatever rerank_from says -- and the
// rerank decodes the candidates' codes from the lists already read: no second round of
// reads, and distances exact to float rounding (SpannStats::exact_codes).
//
// Metrics: l2 and cosine (vectors normalized; distances are then squared L2 on
// the unit sphere, a monotone function of cosine). Inner product is refused:
// the pruning rule compares distance ratios, which needs distances >= 0.
//
// Thread safety: immutable after Build/Open; Search may run from any number of
// threads at once, each with its own SpannContext.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "core/metric.h"
#include "core/status.h"
#include "core/types.h"
#include "core/vector_set.h"
#include "index/codes/sq8.h"
#include "index/hnsw/hnsw_index.h"
#include "index/index.h"
#include "storage/block_io.h"

namespace strata::index {

// Where a codes index takes the full vectors its reranks need.
enum class SpannRerankFrom : uint8_t {
  kFile = 0,  // the FULL section: float32, one read per reranked candidate
  kList = 1,  // beside the codes in every list entry (half precision per half_lists)
};
std::string_view SpannRerankFromName(SpannRerankFrom from);  // "file", "list"
Result<SpannRerankFrom> ParseSpannRerankFrom(std::string_view name);

struct SpannBuildOptions {
  Metric metric = Metric::kL2;
  // Heads: when cluster_size is 0 (the default), as many as fit the memory budget:
  // the in-memory part (heads' HNSW, id array, list directory) takes at most about
  // memory_budget_fraction of the raw vector bytes. A nonzero cluster_size sets the
  // largest cluster before replication instead (heads = about n / (0.8 x it)).
  size_t cluster_size = 0;
  double memory_budget_fraction = 0.2;
  uint32_t replicas = 8;                 // most lists one vector joins, the nearest included
  double closure_epsilon = 10.0;         // join a list when its head is within (1+eps) x nearest
  // RNG rule: skip a candidate head c when an already chosen head h has
  // rng_factor * d(h, c) < d(x, c). 1 is the paper's rule; 0 turns it off.
  double rng_factor = 1.0;
  // Heads are the cluster members nearest to each centroid (the paper's choice)
  // rather than the centroids themselves.
  bool head_vectors = true;
  size_t max_list_entries = 0;           // cap per list after replication (0 = 16 x cluster size)
  // Head vectors in the heads' HNSW as IEEE half precision (half the memory, so
  // about twice the heads fit a budget); used only when every head component
  // lies within +-65504, float32 otherwise.
  bool half_heads = true;
  // The heads' HNSW walks SQ8 codes of the heads (one byte per dimension instead of
  // half's two) and a search takes the codes' distances without a rerank, so about
  // 1.5x the heads fit a budget (GloVe-100); the heads' float32 vectors stay in their
  // file, mapped and never touched by a search. Overrides half_heads.
  bool head_codes = false;
  // Posting-list vectors as IEEE half precision: half the disk and half the bytes
  // read per query. Scores (and returned distances) then carry half's rounding,
  // about 1e-3 relative; false keeps float32 and exact distances. Falls back to
  // float32 when a component lies beyond +-65504.
  bool half_lists = true;
  // Compressed codes in the posting lists (see the class comment); kNone keeps
  // the lists as full vectors (float16 or float32 per half_lists).
  CodesKind codes = CodesKind::kNone;
  SpannRerankFrom rerank_from = SpannRerankFrom::kFile;
  // With codes: candidates reranked when a search does not say (SpannSearchParams::
  // rerank); 0 = automatic (SpannDefaultRerank(k): 1.5k).
  uint32_t rerank = 0;
  // Where each posting list starts: a multiple of this many bytes (512..4096, a power of
  // two; 0 = 4096 without codes, 512 with codes). A device whose O_DIRECT alignment is
  // coarser than this reads the aligned blocks around a list (some of its neighbours' bytes).
  size_t list_alignment = 0;
  uint32_t head_M = 16;                  // HNSW over the heads
  uint32_t head_ef_construction = 200;
  uint32_t assign_ef = 64;               // HNSW ef when finding a vector's candidate heads
  uint64_t seed = 1;
  int num_threads = 0;
  bool progress = false;
  Status Validate() const;
};

struct SpannSearchParams {
  uint32_t k = 10;
  uint32_t max_lists = 64;      // most posting lists read per query
  // Read a list when its head is within (1+eps) x the nearest head's (squared)
  // distance. 0.6 gave the best recall per byte read on GloVe-100 (0.90 at about 85 lists with
  // the default budget; prune 0.4 and 1.0 were worse, docs/BENCHMARKS.md).
  double prune_epsilon = 0.6;
  uint32_t head_ef = 0;         // HNSW ef over the heads (0 = 2 x max_lists)
  // With codes: distinct candidates re-scored with full vectors (at least k);
  // 0 = the index's default (SpannBuildOptions::rerank).
  uint32_t rerank = 0;
  // Lists that lie close together in the file are read as one request: the lists of one
  // query are sorted by offset and a list starts a new read only when more than
  // `merge_gap` bytes (after alignment) separate it from the previous one, or the read
  // would pass kSpannMaxMergedRead. Siblings of the balanced clustering are stored side by
  // side, so a query's nearest heads often are; a device answers a few larger reads sooner
  // than many small ones. The gap's bytes are read (and counted in bytes_read) and
  // skipped. merge_reads = false: one read per list. 4 KiB measured best on GloVe-100 (all
  // 10,000 queries, O_DIRECT): 9-18% less time per query than a read per list from 96 lists
  // up, for 2-6% more bytes (docs/BENCHMARKS.md section 12, "Neighbouring lists in one read").
  bool merge_reads = true;
  uint32_t merge_gap = 4096;
  // Optional: only entries whose id the filter contains are scored and returned
  // (the lists read are the same). Not owned.
  const IdFilter* filter = nullptr;
};

// The largest read that SpannSearchParams::merge_reads makes of several lists.
inline constexpr uint32_t kSpannMaxMergedRead = 128 * 1024;

struct SpannOpenOptions {
  storage::IoBackend backend = storage::IoBackend::kAuto;
  bool direct = true;  // O_DIRECT posting reads (falls back to buffered where refused)
  // Reads aligned to at least this (BlockFile::Options::min_alignment); for tests.
  size_t min_read_alignment = 0;
};

// What one search cost.
struct SpannQueryStats {
  uint32_t lists_read = 0;
  uint32_t list_reads = 0;       // read requests for those lists (fewer when merged)
  uint64_t bytes_read = 0;       // posting lists and rerank reads together
  uint64_t entries_scored = 0;
  uint64_t io_wait_ns = 0;       // both rounds of reads
  uint32_t reranked = 0;         // with codes: candidates re-scored with full vectors
  uint64_t rerank_bytes_read = 0;  // of bytes_read: the FULL section reads (kFile)
};

// Per-thread scratch: I/O queue, aligned read buffers, dedup marks.
class SpannContext {
 public:
  SpannContext() = default;
  SearchContext head_ctx;
  std::unique_ptr<storage::IoQueue> io;
  storage::AlignedBuffer buffer;
  VisitedSet seen;
  std::vector<float> scores;
  std::vector<float> query;
  std::vector<storage::ReadRequest> requests;
  std::vector<uint64_t> list_at;  // where each list starts in `buffer`
  std::vector<uint32_t> order;    // the query's lists by file offset
  std::vector<uint32_t> read_end; // read r holds order[read_end[r-1] .. read_end[r])
  // Codes: the prepared query, candidates and the rerank reads' buffer.
  Sq8Query sq8_query;
  std::vector<uint64_t> candidates;
  std::vector<float> decoded;  // exact codes: a candidate's vector
  storage::AlignedBuffer rerank_buffer;
  std::vector<storage::ReadRequest> rerank_requests;
};

struct SpannStats;
// How the heads' HNSW holds the heads: "sq8" (codes), "float16" or "float32".
std::string_view SpannHeadsName(const SpannStats& s);

struct SpannStats {
  size_t num_vectors = 0;
  size_t num_lists = 0;
  size_t total_entries = 0;      // with replicas
  size_t memory_bytes = 0;       // resident in-memory part: heads HNSW + list directory
  size_t disk_bytes = 0;         // posting file
  size_t raw_vector_bytes = 0;   // n x dim x 4, for the memory ratio
  bool half_heads = false;       // head vectors held as IEEE half precision
  bool head_codes = false;       // the heads' HNSW walks SQ8 codes (no rerank)
  bool half_lists = false;       // posting vectors stored as IEEE half precision
  CodesKind codes = CodesKind::kNone;  // codes in the posting lists
  bool full_in_lists = false;    // codes: the lists also hold the vectors (rerank from the list)
  size_t full_section_bytes = 0; // codes: the FULL section (rerank from the file)
  bool exact_codes = false;      // codes: the codes are the vectors (integer data): no FULL, rerank decodes
  uint32_t rerank = 0;           // codes: default rerank depth (0 = automatic)
  size_t list_entry_bytes = 0;   // bytes per list entry (id, codes, norm, vectors)
  size_t list_alignment = 4096;  // lists start on multiples of this
  // List length distribution (entries).
  size_t list_min = 0, list_median = 0, list_p99 = 0, list_max = 0;
};

class SpannIndex {
 public:
  // Builds from `base` (ids 0..n-1) and writes the index directory at `path`
  // atomically (a temporary directory renamed into place; `path` must not exist).
  // Takes the vectors by value so that cosine normalization happens in place:
  // the build never holds a second copy of the raw vectors.
  // `labels`: the id each row is stored under (empty: its row number, 0..n-1); the
  // index then answers with ids below max(labels) + 1 (its num_vectors), not every
  // one of which need be present (the engine keeps a few rows out of the index to
  // calibrate it with truly held-out queries).
  static Status Build(VectorSet base, const std::filesystem::path& path,
                      const SpannBuildOptions& options, std::span<const uint32_t> labels = {});
  static Result<std::unique_ptr<SpannIndex>> Open(const std::filesystem::path& path,
                                                  const SpannOpenOptions& options = {});

  Result<std::vector<Neighbor>> Search(VectorView query, const SpannSearchParams& params,
                                       SpannContext& ctx, SpannQueryStats* stats = nullptr) const;

  SpannStats Stats() const;
  size_t dim() const { return dim_; }
  Metric metric() const { return metric_; }
  CodesKind codes() const { return codes_; }  // codes in the posting lists (cheap; Stats() is not)
  storage::IoBackend backend() const { return backend_; }
  bool direct_io() const;

  ~SpannIndex();

 private:
  SpannIndex() = default;
  struct ListEntry {
    uint64_t offset;    // within the posting file
    uint32_t bytes;     // padded to the list alignment (4 KiB by default)
    uint32_t count;     // entries
    uint64_t checksum;  // XXH3-64 of the list's bytes
  };
  size_t dim_ = 0;
  Metric metric_ = Metric::kL2;
  size_t num_vectors_ = 0;
  std::unique_ptr<HnswIndex> heads_;
  std::vector<ListEntry> lists_;
  std::shared_ptr<storage::BlockFile> file_;
  storage::IoBackend backend_ = storage::IoBackend::kPread;
  storage::IoBackend requested_backend_ = storage::IoBackend::kAuto;
  std::filesystem::path path_;
  size_t disk_bytes_ = 0;
  bool half_lists_ = false;
  bool list_vectors_ = true;  // the lists hold vectors (always without codes)
  bool exact_codes_ = false;  // codes that decode to the vectors exactly (neither FULL nor list vectors)
  CodesKind codes_ = CodesKind::kNone;
  Sq8Encoder sq8_;
  uint32_t rerank_ = 0;
  uint64_t full_offset_ = 0;  // codes with the FULL section: its file offset, else 0
  uint64_t full_bytes_ = 0;
  uint32_t full_slot_ = 0;    // bytes per vector slot in FULL
  uint32_t list_align_ = 4096;
};

// The rerank depth a codes index uses when neither the search nor the index says: 1.5k,
// rounded up. Each candidate is a read of its FULL slot, a fifth of a query's reads at recall
// 0.90; on all 10,000 GloVe-100 queries 1.5k, 2k and 3k gave the same recall at 62, 160 and 300
// lists, and 1.2k lost 0.0006 (docs/BENCHMARKS.md section 12, "Fewer rerank reads").
inline constexpr uint32_t SpannDefaultRerank(uint32_t k) { return k + (k + 1) / 2; }

// The in-memory share of the raw vectors a SPANN build is given when its caller has no budget of
// its own (`strata build` / `bench` without --memory-budget, the engine's SPANN segments): 10%
// with codes, whose lists are half the bytes, so fewer and larger lists reach a recall with fewer
// reads (GloVe-100: 0.95 in 2.5 ms at 10% against 2.85 ms at 20%); 20% without
// (docs/BENCHMARKS.md, section 12).
inline double SpannDefaultBudgetFraction(CodesKind codes) { return codes == CodesKind::kNone ? 0.2 : 0.1; }

}  // namespace strata::index
