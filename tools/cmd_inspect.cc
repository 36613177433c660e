#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "index/hnsw/hnsw_index.h"
#include "index/spann/spann_index.h"
#include "storage/dataset_io.h"
#include "storage/section_file.h"
#include "tools/commands.h"

namespace strata::tools::cmd {

namespace {

using Json = nlohmann::ordered_json;

Json SectionsJson(const storage::SectionFile& sf) {
  Json a = Json::array();
  for (const auto& e : sf.entries()) {
    a.push_back({{"tag", storage::SectionTagName(e.tag)}, {"offset", e.offset}, {"bytes", e.size},
                 {"xxh3", fmt::format("{:016x}", e.checksum)}});
  }
  return a;
}

}  // namespace

int RunInspect(const std::string& path, bool json) {
  if (std::filesystem::is_directory(path)) {
    auto idx = index::SpannIndex::Open(path);
    if (!idx) return Fail(idx.error());
    auto sf = storage::SectionFile::Open(std::filesystem::path(path) / "postings.spann", "STRSPAN", 1,
                                         storage::SectionFileOptions{.verify_checksums = false});
    if (!sf) return Fail(sf.error());
    auto st = (*idx)->Stats();
    if (json) {
      fmt::print("{}\n", Json{{"path", path},
                              {"kind", "spann"},
                              {"version", fmt::format("{}.{}", sf->major(), sf->minor())},
                              {"postings_bytes", sf->file_size()},
                              {"sections", SectionsJson(*sf)},
                              {"dim", (*idx)->dim()},
                              {"metric", MetricName((*idx)->metric())},
                              {"vectors", st.num_vectors},
                              {"lists", st.num_lists},
                              {"heads", index::SpannHeadsName(st)},
                              {"posting_vectors", st.codes != index::CodesKind::kNone && !st.full_in_lists
                                                      ? "none"
                                                  : st.half_lists ? "float16"
                                                                  : "float32"},
                              {"codes", index::CodesKindName(st.codes)},
                              {"full_vectors", st.codes == index::CodesKind::kNone ? "lists"
                                               : st.exact_codes                   ? "codes (exact)"
                                               : st.full_in_lists                 ? "lists"
                                                                                  : "FULL section"},
                              {"full_section_bytes", st.full_section_bytes},
                              {"list_entry_bytes", st.list_entry_bytes},
                              {"rerank", st.rerank},
                              {"entries_per_vector", double(st.total_entries) / double(std::max<size_t>(1, st.num_vectors))},
                              {"list_entries", {{"min", st.list_min}, {"median", st.list_median},
                                                {"p99", st.list_p99}, {"max", st.list_max}}},
                              {"memory_bytes", st.memory_bytes},
                              {"disk_bytes", st.disk_bytes}}
                             .dump());
      return 0;
    }
    fmt::print("{}: SPANN index; postings.spann STRSPAN version {}.{}, {} bytes\n", path,
               sf->major(), sf->minor(), sf->file_size());
    for (const auto& e : sf->entries()) {
      fmt::print("  {:<6} {:>12} {:>14}  {:016x}\n", storage::SectionTagName(e.tag), e.offset,
                 e.size, e.checksum);
    }
    fmt::print("spann: dim {}, metric {}, {} vectors, {} lists ({} heads, {} posting vectors), "
               "{:.2f} entries per vector, list entries min/median/p99/max {}/{}/{}/{}\n",
               (*idx)->dim(), MetricName((*idx)->metric()), st.num_vectors, st.num_lists,
               index::SpannHeadsName(st),
               st.codes != index::CodesKind::kNone ? "no" : st.half_lists ? "float16" : "float32",
               double(st.total_entries) / double(std::max<size_t>(1, st.num_vectors)), st.list_min,
               st.list_median, st.list_p99, st.list_max);
    fmt::print("  in memory {:.1f} MiB ({:.1f}% of the raw vectors), on disk {:.1f} MiB; META, "
               "LDIR and the heads index verified (posting lists are verified on every read)\n",
               st.memory_bytes / 1048576.0,
               100.0 * double(st.memory_bytes) / double(std::max<size_t>(1, st.raw_vector_bytes)),
               st.disk_bytes / 1048576.0);
    if (st.codes != index::CodesKind::kNone) {
      fmt::print("  codes {} ({} bytes per list entry: id, decoded norm, code{}); rerank {} by "
                 "default; full vectors {}\n",
                 index::CodesKindName(st.codes), st.list_entry_bytes,
                 st.full_in_lists ? (st.half_lists ? ", float16 vector" : ", float32 vector") : "",
                 st.rerank ? std::to_string(st.rerank)
                           : std::string("1.5k"),
                 st.exact_codes ? std::string("none kept: the codes are the vectors (integer data, decoded "
                                              "exactly for the rerank)")
                 : st.full_in_lists
                     ? std::string("in the lists")
                     : fmt::format("in FULL ({:.1f} MiB, float32, one checksummed slot per id, read "
                                   "for reranks)",
                                   st.full_section_bytes / 1048576.0));
    }
    return 0;
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return Fail(NotFound("{}: cannot open", path));
  char magic[8] = {};
  size_t got = std::fread(magic, 1, 8, f);
  std::fclose(f);
  std::string m(magic, strnlen(magic, std::min<size_t>(got, 8)));
  if (m != "STRHNSW") {
    auto shape = storage::ProbeVectors(path);
    if (shape && json) {
      fmt::print("{}\n", Json{{"path", path}, {"kind", "dataset"}, {"rows", shape->rows}, {"dim", shape->dim},
                              {"format", storage::DatasetFormatName(shape->format)},
                              {"value_type", shape->value_type}}
                             .dump());
      return 0;
    }
    if (shape) {
      fmt::print("{}: data set file, {} rows x {} dim ({})\n", path, shape->rows, shape->dim,
                 storage::DatasetFormatName(shape->format));
      return 0;
    }
    return Fail(InvalidArgument("{}: not a Strata index (magic '{}') nor a readable data set: {}",
                                path, m, shape.error().message()));
  }
  auto sf = storage::SectionFile::Open(path, m, 1);
  if (!sf) return Fail(sf.error());
  index::HnswLoadOptions lo;
  lo.mmap = true;
  auto idx = index::HnswIndex::Load(path, lo);
  if (!idx) return Fail(idx.error());
  auto gs = (*idx)->GraphStats();
  const auto& o = (*idx)->options();
  if (json) {
    Json j = {{"path", path},
              {"kind", "hnsw"},
              {"version", fmt::format("{}.{}", sf->major(), sf->minor())},
              {"bytes", sf->file_size()},
              {"sections", SectionsJson(*sf)},
              {"dim", (*idx)->dim()},
              {"metric", MetricName((*idx)->metric())},
              {"M", o.M},
              {"ef_construction", o.ef_construction},
              {"keep_pruned", o.keep_pruned},
              {"codes", index::CodesKindName(o.codes)},
              {"exact_codes", gs.exact_codes},
              {"nodes", gs.num_nodes},
              {"live", gs.num_nodes - gs.num_deleted - gs.num_free},
              {"tombstones", gs.num_deleted},
              {"free_slots", gs.num_free},
              {"max_level", gs.max_level},
              {"mean_degree0", gs.mean_degree0},
              {"memory_bytes", gs.memory_bytes}};
    fmt::print("{}\n", j.dump());
    return 0;
  }
  fmt::print("{}: {} version {}.{}, {} bytes, checksums verified\n", path, m, sf->major(),
             sf->minor(), sf->file_size());
  fmt::print("  {:<6} {:>12} {:>14}  {}\n", "tag", "offset", "bytes", "xxh3");
  for (const auto& e : sf->entries()) {
    fmt::print("  {:<6} {:>12} {:>14}  {:016x}\n", storage::SectionTagName(e.tag), e.offset, e.size,
               e.checksum);
  }
  fmt::print("hnsw: dim {}, metric {}, M {}, ef_construction {}, keep_pruned {}\n", (*idx)->dim(),
             MetricName((*idx)->metric()), o.M, o.ef_construction, o.keep_pruned);
  if (o.codes != index::CodesKind::kNone) {
    fmt::print("  codes {} ({} bytes per node in the graph{}), rerank {} by default; {}\n",
               index::CodesKindName(o.codes), (*idx)->dim(),
               gs.exact_codes ? ", exact: integer data" : "",
               o.rerank ? fmt::format("{}", o.rerank) : std::string("2k"),
               gs.full_vector_bytes == 0 && gs.exact_codes
                   ? std::string("no full vectors kept: the codes are the vectors (reranks and Get decode them)")
                   : fmt::format("full vectors float32, {:.1f} MiB (section FULL{})",
                                 double(gs.full_vector_bytes) / (1 << 20),
                                 gs.exact_codes ? "; reranks decode the codes instead" : ""));
  }
  fmt::print("  nodes {} (live {}, tombstones {}, free slots {}), max level {}, mean layer-0 "
             "degree {:.2f}, memory when loaded {:.1f} MiB\n",
             gs.num_nodes, gs.num_nodes - gs.num_deleted - gs.num_free, gs.num_deleted,
             gs.num_free, gs.max_level, gs.mean_degree0, double(gs.memory_bytes) / (1 << 20));
  fmt::print("  structure validated (ids in range, no self links, entry point, levels)\n");
  return 0;
}

}  // namespace strata::tools::cmd
