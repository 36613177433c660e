// SPANN side by side with FAISS IndexIVFFlat whose inverted lists live on disk
// (faiss::OnDiskInvertedLists, Debian libfaiss-dev), same base, queries and ground truth,
// one query at a time on one thread, warm and cold.
//
//   spann_vs_faiss --base B --queries Q --gt GT --metric cosine|l2 --workdir DIR [--k 10]
//                  [--threads 2] [--cluster-size 16] [--max-lists 8,16,32,64,128,256]
//                  [--nprobe 1,2,4,8,16,32,64] [--max-queries 1000] [--reps 3]
//
// Strata: SPANN is built into DIR/spann (kept; reused when it exists) and opened twice:
// direct=true (cold: O_DIRECT, every posting read goes to the device) and direct=false
// (warm: buffered reads, after one untimed pass so the page cache holds what is read).
//
// FAISS: nlist is chosen so that the centroids (nlist x dim x 4 bytes) take as much memory as
// SPANN's in-memory part (heads HNSW + list directory, Stats().memory_bytes). IndexIVFFlat
// (IndexFlatL2 quantizer; cosine: normalized base and queries with inner product) is trained on
// a sample, filled in memory, and its lists are then copied compactly into an
// OnDiskInvertedLists file DIR/faiss_ivf<nlist>.ilists (merge_from), which FAISS reads through
// an mmap. The trained index is kept as DIR/faiss_ivf<nlist>.index and reused.
// Warm: one untimed pass, then the timed passes. Cold: FAISS has no O_DIRECT path, and
// /proc/sys/vm/drop_caches is not writable here, so its list pages are evicted by hand:
// madvise(MADV_DONTNEED) on FAISS's mapping (mapped pages cannot be evicted) followed by
// posix_fadvise(POSIX_FADV_DONTNEED) on the list file, untimed, before every query
// (--faiss-cold-drop query, the default) or only before every timed pass (pass).
// So FAISS's "cold" is a dropped page cache (kernel readahead still applies to its faults)
// while Strata's is O_DIRECT. OnDiskInvertedLists starts up to prefetch_nthread (default 32)
// threads per search that touch the probed lists ahead of the scan (parallel page faults, FAISS's
// answer to a deep I/O queue); --faiss-prefetch-threads 0 turns that off, which helps when warm.
//
// Codes rows (issue 18): --spann-variants default,sq8,sq8-list adds SPANN indexes whose lists
// hold SQ8 codes, reranking from the FULL section (DIR/spann-sq8) or from full vectors kept in
// the lists (DIR/spann-sq8-list), as series "strata-sq8" and "strata-sq8-list" beside "strata"
// (the default index, unchanged); --rerank sets their rerank depth (0 = the index's default).
// --skip-faiss leaves FAISS out (no training), --modes cold keeps only the O_DIRECT series.
//
// Per sweep point: tie-aware recall@k (RecallEvaluator), mean and p99 latency per query,
// QPS = 1 / mean latency; for SPANN also lists and KiB read per query. Each figure is the
// median over --reps timed passes. Both run in this one process, alternating per repetition.

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/invlists/OnDiskInvertedLists.h>
#include <fcntl.h>
#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "core/stats.h"
#include "core/timer.h"
#include "index/spann/spann_index.h"
#include "storage/dataset_io.h"
#include "tools/eval.h"

using namespace strata;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Config {
  std::string base_path, query_path, gt_path, metric_name = "cosine", workdir;
  size_t k = 10;
  int threads = 2;
  size_t cluster_size = 0;      // 0: heads from the memory budget (SPANN's default)
  double memory_budget = 0.2;
  std::vector<uint32_t> max_lists = {16, 32, 48, 64, 80, 96, 128, 192};
  std::vector<uint32_t> nprobes = {1, 2, 4, 8, 16, 32, 64};
  size_t max_queries = 1000;
  int reps = 3;
  int train_iters = 10;
  size_t train_cap = 200000;
  std::string faiss_cold_drop = "query";
  int faiss_prefetch_threads = -1;  // -1: FAISS's own default
  std::vector<std::string> variants = {"default"};
  uint32_t rerank = 0;
  std::vector<uint32_t> head_ef;  // SPANN: HNSW ef over the heads, one value or one per variant (0: 2 x max_lists)
  std::vector<double> prune_epsilon = {0.6};  // one for all variants, or one per variant
  std::vector<int64_t> merge_gap;  // one for all, or one per variant; -1: a read per list; empty: default
  bool skip_faiss = false;
  std::vector<std::string> modes = {"warm", "cold"};
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Die(const Status& s) {
  fmt::print(stderr, "spann_vs_faiss: {}\n", s.ToString());
  return 1;
}
int Die(const std::string& s) {
  fmt::print(stderr, "spann_vs_faiss: {}\n", s);
  return 1;
}

double NowMs() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One timed pass over the queries at one sweep point.
struct Pass {
  double recall = 0, mean_ms = 0, p99_ms = 0, lists = 0, kib = 0, reads = 0;
};

// A sweep point: its parameter and the passes measured there.
struct Point {
  uint32_t param = 0;
  std::vector<Pass> passes;
  Pass Med() const {
    Pass m;
    std::vector<double> r, mean, p99, l, kb, rd;
    for (const auto& p : passes) {
      r.push_back(p.recall);
      mean.push_back(p.mean_ms);
      p99.push_back(p.p99_ms);
      l.push_back(p.lists);
      kb.push_back(p.kib);
      rd.push_back(p.reads);
    }
    m.recall = Median(r);
    m.mean_ms = Median(mean);
    m.p99_ms = Median(p99);
    m.lists = Median(l);
    m.kib = Median(kb);
    m.reads = Median(rd);
    return m;
  }
};

struct Series {
  std::string system, mode;  // "strata"/"strata-sq8"/.../"faiss", "warm"/"cold"
  std::string param_name;
  std::vector<Point> points;
};

// FAISS's list file, for evicting its pages.
struct FaissFile {
  const faiss::OnDiskInvertedLists* od = nullptr;
  int fd = -1;
  // Unmaps FAISS's pages of the list file and drops them from the page cache.
  void Drop() const {
    if (od && od->ptr && od->totsize) {
      madvise(od->ptr, od->totsize, MADV_DONTNEED);
    }
    if (fd >= 0) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  }
  // Fraction of the mapping's pages resident in the page cache.
  double Resident() const {
    if (!od || !od->ptr || !od->totsize) return 0;
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    const size_t pages = (od->totsize + page - 1) / page;
    std::vector<unsigned char> vec(pages);
    if (mincore(od->ptr, od->totsize, vec.data()) != 0) return -1;
    size_t in = 0;
    for (unsigned char c : vec) in += c & 1;
    return double(in) / double(pages);
  }
};

std::vector<uint32_t> ParseList(const std::string& s, const char* what, bool* ok) {
  std::vector<uint32_t> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) {
      try {
        size_t pos = 0;
        long v = std::stol(s.substr(start, end - start), &pos);
        if (pos != end - start || v <= 0) throw std::invalid_argument(s);
        out.push_back(uint32_t(v));
      } catch (const std::exception&) {
        fmt::print(stderr, "spann_vs_faiss: bad {} value in '{}'\n", what, s);
        *ok = false;
      }
    }
    start = end + 1;
  }
  if (out.empty()) *ok = false;
  return out;
}

// Mean latency at `target` recall along a sweep (in sweep order): log-latency linear in recall
// between the last point below and the first at or above. `at_first`: the first point already
// reaches it (the latency is then an upper bound).
std::optional<double> LatencyAtRecall(const Series& s, double target, bool* at_first,
                                      double* kib = nullptr) {
  *at_first = false;
  for (size_t j = 0; j < s.points.size(); ++j) {
    const Pass pj = s.points[j].Med();
    if (pj.recall < target) continue;
    if (j == 0) {
      *at_first = true;
      if (kib) *kib = pj.kib;
      return pj.mean_ms;
    }
    const Pass pi = s.points[j - 1].Med();
    const double f = pj.recall > pi.recall ? (target - pi.recall) / (pj.recall - pi.recall) : 1.0;
    if (kib) *kib = pi.kib + f * (pj.kib - pi.kib);
    return std::exp(std::log(pi.mean_ms) + f * (std::log(pj.mean_ms) - std::log(pi.mean_ms)));
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  std::string ml_list = "8,16,32,64,128,256", np_list = "1,2,4,8,16,32,64";
  CLI::App app{"SPANN vs FAISS IndexIVFFlat with on-disk inverted lists"};
  app.add_option("--base", c.base_path, "base vectors (.fbin/.u8bin/.fvecs/...)")->required();
  app.add_option("--queries", c.query_path, "query vectors")->required();
  app.add_option("--gt", c.gt_path, "ground truth (.ibin/.ivecs/.npy)")->required();
  app.add_option("--metric", c.metric_name, "cosine or l2")
      ->check(CLI::IsMember({"cosine", "l2"}));
  app.add_option("--workdir", c.workdir, "directory for the SPANN index and FAISS's list file "
                                         "(a real disk, not tmpfs)")
      ->required();
  app.add_option("--k", c.k, "recall@k")->check(CLI::PositiveNumber);
  app.add_option("--threads", c.threads, "build threads (search is single-threaded)")
      ->check(CLI::PositiveNumber);
  app.add_option("--cluster-size", c.cluster_size,
                 "SPANN largest cluster (0 = as many heads as --memory-budget allows)");
  app.add_option("--memory-budget", c.memory_budget,
                 "SPANN in-memory part as a share of the raw vectors");
  app.add_option("--max-lists", ml_list, "SPANN max_lists sweep");
  app.add_option("--nprobe", np_list, "FAISS nprobe sweep");
  app.add_option("--max-queries", c.max_queries, "use the first N queries (0 = all)");
  app.add_option("--reps", c.reps, "timed passes per point (median)")->check(CLI::PositiveNumber);
  app.add_option("--train-iters", c.train_iters, "FAISS k-means iterations")
      ->check(CLI::PositiveNumber);
  app.add_option("--train-cap", c.train_cap, "most FAISS training points")
      ->check(CLI::PositiveNumber);
  app.add_option("--faiss-cold-drop", c.faiss_cold_drop,
                 "evict FAISS's list pages before every query or every timed pass")
      ->check(CLI::IsMember({"query", "pass"}));
  app.add_option("--spann-variants", c.variants,
                 "SPANN indexes to measure: default (DIR/spann), sq8 (codes, reranks from the FULL "
                 "section: DIR/spann-sq8), sq8-list (codes, full vectors in the lists)")
      ->delimiter(',')
      ->check(CLI::IsMember({"default", "sq8", "sq8-list"}));
  app.add_option("--rerank", c.rerank, "SPANN with codes: rerank depth (0 = the index's default)");
  app.add_option("--prune-epsilon", c.prune_epsilon,
                 "SPANN query-aware pruning: one value for every variant, or one per variant in "
                 "--spann-variants order")
      ->delimiter(',');
  app.add_option("--head-ef", c.head_ef,
                 "SPANN: HNSW ef over the heads (0: twice max_lists); one value for every variant, "
                 "or one per variant")
      ->delimiter(',');
  app.add_option("--merge-gap", c.merge_gap,
                 "SPANN: lists at most this many bytes apart share a read (-1: one read per list); "
                 "one value for every variant, or one per variant. A variant may be named twice "
                 "with different gaps (its series is then named after the gap)")
      ->delimiter(',');
  app.add_flag("--skip-faiss", c.skip_faiss, "leave FAISS out (no training, no FAISS rows)");
  app.add_option("--modes", c.modes, "warm (buffered), cold (O_DIRECT), or both")
      ->delimiter(',')
      ->check(CLI::IsMember({"warm", "cold"}));
  app.add_option("--faiss-prefetch-threads", c.faiss_prefetch_threads,
                 "OnDiskInvertedLists::prefetch_nthread: threads FAISS starts per query to touch "
                 "the probed lists ahead of the scan (-1 = FAISS's default, 0 = none)");
  CLI11_PARSE(app, argc, argv);
  bool ok = true;
  c.max_lists = ParseList(ml_list, "--max-lists", &ok);
  c.nprobes = ParseList(np_list, "--nprobe", &ok);
  if (!ok) return 2;

  auto metric = ParseMetric(c.metric_name);
  if (!metric) return Die(metric.error());
  auto base_r = storage::ReadVectors(c.base_path);
  if (!base_r) return Die(base_r.error());
  auto queries_r = storage::ReadVectors(c.query_path);
  if (!queries_r) return Die(queries_r.error());
  auto gt_r = storage::ReadGroundTruth(c.gt_path);
  if (!gt_r) return Die(gt_r.error());
  VectorSet base = std::move(*base_r), queries = std::move(*queries_r);
  storage::GroundTruth gt = std::move(*gt_r);
  if (base.dim() != queries.dim()) return Die("base and query dimensions differ");
  const size_t n = base.size(), dim = base.dim();
  const size_t nq = c.max_queries ? std::min(c.max_queries, queries.size()) : queries.size();
  auto ev = tools::RecallEvaluator::Create(base, queries, gt, *metric, c.k);
  if (!ev) return Die(ev.error());
  const tools::RecallEvaluator& eval = *ev;
  const size_t k = c.k;

  std::error_code ec;
  fs::create_directories(c.workdir, ec);
  if (ec) return Die(fmt::format("cannot create {}: {}", c.workdir, ec.message()));

  // ---- Strata SPANN: one index per variant ----
  struct Variant {
    std::string name, system;  // "sq8", "strata-sq8"
    std::unique_ptr<index::SpannIndex> cold, warm;
    double build_s = -1;
    double prune_epsilon = 0.6;
    bool merge_reads = index::SpannSearchParams{}.merge_reads;
    uint32_t merge_gap = index::SpannSearchParams{}.merge_gap;
    uint32_t head_ef = 0;
  };
  if (!c.head_ef.empty() && c.head_ef.size() != 1 && c.head_ef.size() != c.variants.size()) {
    return Die("--head-ef: give one value, or one per --spann-variants entry");
  }
  if (!c.merge_gap.empty() && c.merge_gap.size() != 1 && c.merge_gap.size() != c.variants.size()) {
    return Die("--merge-gap: give one value, or one per --spann-variants entry");
  }
  if (c.prune_epsilon.size() != 1 && c.prune_epsilon.size() != c.variants.size()) {
    return Die("--prune-epsilon: give one value, or one per --spann-variants entry");
  }
  std::vector<Variant> variants;
  for (const std::string& v : c.variants) {
    Variant var;
    var.name = v;
    var.system = v == "default" ? "strata" : "strata-" + v;
    var.prune_epsilon = c.prune_epsilon[c.prune_epsilon.size() == 1 ? 0 : variants.size()];
    if (!c.head_ef.empty()) {
      var.head_ef = c.head_ef[c.head_ef.size() == 1 ? 0 : variants.size()];
      if (c.head_ef.size() > 1) var.system += fmt::format("-hef{}", var.head_ef);
    }
    if (!c.merge_gap.empty()) {
      const int64_t g = c.merge_gap[c.merge_gap.size() == 1 ? 0 : variants.size()];
      if (g < -1 || g > int64_t(index::kSpannMaxMergedRead)) {
        return Die(fmt::format("--merge-gap: {} is outside -1..{}", g, index::kSpannMaxMergedRead));
      }
      var.merge_reads = g >= 0;
      var.merge_gap = g >= 0 ? uint32_t(g) : 0;
      if (c.merge_gap.size() > 1) var.system += g < 0 ? "-nomerge" : fmt::format("-merge{}", g);
    }
    const fs::path dir = fs::path(c.workdir) / (v == "default" ? "spann" : "spann-" + v);
    if (!fs::exists(dir)) {
      auto copy = base.Clone();
      if (!copy) return Die(copy.error());
      index::SpannBuildOptions bo;
      bo.metric = *metric;
      bo.cluster_size = c.cluster_size;
      bo.memory_budget_fraction = c.memory_budget;
      bo.num_threads = c.threads;
      bo.progress = true;
      if (v != "default") {
        bo.codes = index::CodesKind::kSq8;
        bo.rerank_from = v == "sq8-list" ? index::SpannRerankFrom::kList : index::SpannRerankFrom::kFile;
      }
      Timer t;
      if (Status s = index::SpannIndex::Build(std::move(*copy), dir, bo); !s.ok()) return Die(s);
      var.build_s = t.Seconds();
    } else {
      fmt::print(stderr, "reusing {} (its build options are whatever it was built with)\n",
                 dir.string());
    }
    index::SpannOpenOptions cold_opt, warm_opt;
    cold_opt.direct = true;
    warm_opt.direct = false;
    auto cold_r = index::SpannIndex::Open(dir, cold_opt);
    if (!cold_r) return Die(cold_r.error());
    auto warm_r = index::SpannIndex::Open(dir, warm_opt);
    if (!warm_r) return Die(warm_r.error());
    var.cold = std::move(*cold_r);
    var.warm = std::move(*warm_r);
    variants.push_back(std::move(var));
  }
  const index::SpannStats sst = variants.front().cold->Stats();

  // ---- FAISS IVFFlat, lists on disk ----
  VectorSet fbase, fq;
  const VectorSet* pbase = &base;
  const VectorSet* pq = &queries;
  if (*metric == Metric::kCosine) {
    auto b = base.Clone();
    if (!b) return Die(b.error());
    auto q = queries.Clone();
    if (!q) return Die(q.error());
    fbase = std::move(*b);
    fq = std::move(*q);
    fbase.NormalizeRows();
    fq.NormalizeRows();
    pbase = &fbase;
    pq = &fq;
  }
  const faiss::MetricType fmetric =
      *metric == Metric::kL2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT;
  const size_t nlist = std::max<size_t>(1, std::min(n, sst.memory_bytes / (dim * sizeof(float))));
  const size_t faiss_centroid_bytes = nlist * dim * sizeof(float);
  const fs::path faiss_index_path =
      fs::absolute(fs::path(c.workdir) / fmt::format("faiss_ivf{}.index", nlist));
  const fs::path faiss_lists_path =
      fs::absolute(fs::path(c.workdir) / fmt::format("faiss_ivf{}.ilists", nlist));
  std::unique_ptr<faiss::IndexIVFFlat> ivf;
  double faiss_train_s = -1, faiss_add_s = -1;
  size_t train_n = 0;
  if (c.skip_faiss) {
    // no FAISS rows
  } else if (fs::exists(faiss_index_path) && fs::exists(faiss_lists_path)) {
    fmt::print(stderr, "reusing {}\n", faiss_index_path.string());
    faiss::Index* raw = faiss::read_index(faiss_index_path.c_str(), faiss::IO_FLAG_READ_ONLY);
    ivf.reset(dynamic_cast<faiss::IndexIVFFlat*>(raw));
    if (!ivf) return Die("saved FAISS index is not an IndexIVFFlat");
  } else {
    omp_set_num_threads(c.threads);
    auto* quantizer = fmetric == faiss::METRIC_L2
                          ? static_cast<faiss::IndexFlat*>(new faiss::IndexFlatL2(dim))
                          : static_cast<faiss::IndexFlat*>(new faiss::IndexFlatIP(dim));
    ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer, dim, nlist, fmetric);
    ivf->own_fields = true;
    ivf->cp.niter = c.train_iters;
    ivf->cp.max_points_per_centroid = 1 << 30;  // we sample ourselves
    train_n = std::min(n, std::min(c.train_cap, std::max(50 * nlist, nlist)));
    std::vector<float> sample(train_n * dim);
    {
      std::vector<size_t> perm(n);
      for (size_t i = 0; i < n; ++i) perm[i] = i;
      std::mt19937_64 rng(1234);
      std::shuffle(perm.begin(), perm.end(), rng);
      for (size_t i = 0; i < train_n; ++i)
        std::copy_n(pbase->row(perm[i]), dim, sample.data() + i * dim);
    }
    fmt::print(stderr, "faiss: training nlist={} on {} points, {} iterations, {} threads...\n",
               nlist, train_n, c.train_iters, c.threads);
    Timer t;
    ivf->train(faiss::Index::idx_t(train_n), sample.data());
    faiss_train_s = t.Seconds();
    fmt::print(stderr, "faiss: trained in {:.1f} s; adding {} vectors...\n", faiss_train_s, n);
    t.Reset();
    ivf->add(faiss::Index::idx_t(n), pbase->data());
    // Move the lists to disk, compactly.
    fs::remove(faiss_lists_path, ec);
    auto* od = new faiss::OnDiskInvertedLists(nlist, ivf->code_size, faiss_lists_path.c_str());
    const faiss::InvertedLists* ils[1] = {ivf->invlists};
    od->merge_from(ils, 1, false);
    ivf->replace_invlists(od, true);
    msync(od->ptr, od->totsize, MS_SYNC);
    faiss_add_s = t.Seconds();
    fmt::print(stderr, "faiss: added and moved to {} in {:.1f} s\n", faiss_lists_path.string(),
               faiss_add_s);
    faiss::write_index(ivf.get(), faiss_index_path.c_str());
    // Reopen read-only, the way it would be served.
    faiss::Index* raw = faiss::read_index(faiss_index_path.c_str(), faiss::IO_FLAG_READ_ONLY);
    ivf.reset(dynamic_cast<faiss::IndexIVFFlat*>(raw));
    if (!ivf) return Die("saved FAISS index is not an IndexIVFFlat");
  }
  faiss::OnDiskInvertedLists* od = nullptr;
  FaissFile ff;
  if (ivf) {
    od = dynamic_cast<faiss::OnDiskInvertedLists*>(ivf->invlists);
    if (!od) return Die("FAISS lists are not on disk");
    if (c.faiss_prefetch_threads >= 0) od->prefetch_nthread = c.faiss_prefetch_threads;
    ff.od = od;
    ff.fd = ::open(od->filename.c_str(), O_RDONLY);
    if (ff.fd < 0) return Die("cannot open " + od->filename);
    fdatasync(ff.fd);
  }
  omp_set_num_threads(1);

  fmt::print("spann_vs_faiss: base {} ({} x {}), {} queries (of {}), {}, recall@{}, 1 search "
             "thread, one query at a time, {} rep(s) per point (medians)\n",
             c.base_path, n, dim, nq, queries.size(), MetricName(*metric), k, c.reps);
  for (const Variant& var : variants) {
    const index::SpannStats st = var.cold->Stats();
    fmt::print("{} (DIR/{}): {} lists (entries min/median/p99/max {}/{}/{}/{}), {:.2f} entries per "
               "vector, {} bytes per list entry ({}), in memory {:.2f} MiB = {:.1f}% of the raw "
               "vectors, disk {:.1f} MiB, io {}; cold = {} , warm = {}{}\n",
               var.system, var.name == "default" ? "spann" : "spann-" + var.name, st.num_lists,
               st.list_min, st.list_median, st.list_p99, st.list_max,
               double(st.total_entries) / double(std::max<size_t>(1, st.num_vectors)),
               st.list_entry_bytes,
               st.codes == index::CodesKind::kNone
                   ? (st.half_lists ? "float16 vectors" : "float32 vectors")
                   : st.full_in_lists ? "sq8 codes + vectors, reranks from the list"
                                      : "sq8 codes, reranks read the FULL section",
               st.memory_bytes / 1048576.0,
               100.0 * double(st.memory_bytes) / double(std::max<size_t>(1, st.raw_vector_bytes)),
               st.disk_bytes / 1048576.0, storage::IoBackendName(var.cold->backend()),
               var.cold->direct_io() ? "O_DIRECT" : "BUFFERED (O_DIRECT refused!)",
               var.warm->direct_io() ? "O_DIRECT?" : "buffered",
               var.build_s >= 0 ? fmt::format(", built in {:.1f} s", var.build_s) : "");
  }
  for (const Variant& var : variants) {
    fmt::print("{} search: prune_epsilon {}, {}{}\n", var.system, var.prune_epsilon,
               var.merge_reads ? fmt::format("lists within {} bytes share a read", var.merge_gap)
                               : std::string("one read per list"),
               var.name == "default" ? std::string()
                                     : fmt::format(", rerank {} (0 = the index's default)", c.rerank));
  }
  if (ivf) {
  fmt::print("faiss IndexIVFFlat: nlist {}, {} quantizer, lists in {} ({:.1f} MiB, mmap, "
             "{} prefetch threads per query){}\n", nlist,
             fmetric == faiss::METRIC_L2 ? "IndexFlatL2" : "IndexFlatIP (normalized data)",
             od->filename, od->totsize / 1048576.0, od->prefetch_nthread,
             faiss_train_s >= 0 ? fmt::format(", trained on {} points ({} k-means iterations) in "
                                              "{:.1f} s, added in {:.1f} s",
                                              train_n, c.train_iters, faiss_train_s, faiss_add_s)
                                : std::string(", reused"));
  }
  fmt::print("memory: strata spann in-memory part {:.2f} MiB, faiss centroids {:.2f} MiB, raw "
             "vectors {:.2f} MiB\n",
             sst.memory_bytes / 1048576.0, faiss_centroid_bytes / 1048576.0,
             double(n * dim * sizeof(float)) / 1048576.0);
  fmt::print("cold: strata reads posting lists with O_DIRECT (every read goes to the device); "
             "FAISS has no such path, so its \"cold\" is madvise(MADV_DONTNEED) + "
             "posix_fadvise(POSIX_FADV_DONTNEED) of its mmapped list file before every {} "
             "(untimed; kernel readahead still applies to its page faults)\n",
             c.faiss_cold_drop);
  std::fflush(stdout);

  // ---- search passes ----
  std::vector<Neighbor> results(nq * k);
  index::SpannContext sctx;
  std::vector<float> fdist(k);
  std::vector<faiss::Index::idx_t> fids(k);
  std::vector<double> lat(nq);

  auto strata_pass = [&](const index::SpannIndex& idx, uint32_t max_lists, double prune_epsilon,
                         bool merge_reads, uint32_t merge_gap, uint32_t head_ef) -> Result<Pass> {
    index::SpannSearchParams sp;
    sp.k = uint32_t(k);
    sp.max_lists = max_lists;
    sp.prune_epsilon = prune_epsilon;
    sp.rerank = c.rerank;
    sp.merge_reads = merge_reads;
    sp.merge_gap = merge_gap;
    sp.head_ef = head_ef;
    uint64_t lists = 0, bytes = 0, reads = 0;
    for (size_t q = 0; q < nq; ++q) {
      index::SpannQueryStats qs;
      const double t0 = NowMs();
      auto r = idx.Search(queries[q], sp, sctx, &qs);
      lat[q] = NowMs() - t0;
      if (!r) return Error(r.error());
      const size_t m = std::min(k, r->size());
      std::copy_n(r->begin(), m, results.begin() + q * k);
      std::fill(results.begin() + q * k + m, results.begin() + (q + 1) * k, Neighbor{});
      lists += qs.lists_read;
      bytes += qs.bytes_read;
      reads += qs.list_reads;
    }
    Pass p;
    p.recall = eval.Recall(results, k, nq);
    double sum = 0;
    for (double l : lat) sum += l;
    p.mean_ms = sum / double(nq);
    p.p99_ms = Percentile<double>(lat, 0.99);
    p.lists = double(lists) / double(nq);
    p.kib = double(bytes) / 1024.0 / double(nq);
    p.reads = double(reads) / double(nq);
    return p;
  };
  auto faiss_pass = [&](uint32_t nprobe, bool cold) -> Pass {
    ivf->nprobe = nprobe;
    const bool ip = fmetric == faiss::METRIC_INNER_PRODUCT;
    if (cold) ff.Drop();
    for (size_t q = 0; q < nq; ++q) {
      if (cold && c.faiss_cold_drop == "query") ff.Drop();
      const double t0 = NowMs();
      ivf->search(1, pq->row(q), faiss::Index::idx_t(k), fdist.data(), fids.data());
      lat[q] = NowMs() - t0;
      for (size_t i = 0; i < k; ++i) {
        results[q * k + i] = fids[i] < 0 ? Neighbor{}
                                         : Neighbor{VectorId(fids[i]), ip ? -fdist[i] : fdist[i]};
      }
    }
    Pass p;
    p.recall = eval.Recall(results, k, nq);
    double sum = 0;
    for (double l : lat) sum += l;
    p.mean_ms = sum / double(nq);
    p.p99_ms = Percentile<double>(lat, 0.99);
    return p;
  };

  std::vector<Series> series;
  for (const char* mode : {"warm", "cold"}) {
    if (std::find(c.modes.begin(), c.modes.end(), mode) == c.modes.end()) continue;
    for (const Variant& var : variants) series.push_back({var.system, mode, "max_lists", {}});
    if (ivf) series.push_back({"faiss", mode, "nprobe", {}});
  }
  const auto is_strata = [](const Series& s) { return s.system.rfind("strata", 0) == 0; };
  const auto variant_of = [&](const Series& s) -> const Variant& {
    for (const Variant& v : variants) {
      if (v.system == s.system) return v;
    }
    return variants.front();
  };
  for (auto& s : series) {
    for (uint32_t v : is_strata(s) ? c.max_lists : c.nprobes) s.points.push_back({v, {}});
  }

  // Warm-up: one untimed pass at the largest point of each (buffered SPANN; FAISS).
  {
    Timer t;
    for (const Variant& var : variants) {
      auto r = strata_pass(*var.warm, *std::max_element(c.max_lists.begin(), c.max_lists.end()),
                           var.prune_epsilon, var.merge_reads, var.merge_gap,
                           var.head_ef);
      if (!r) return Die(r.error());
    }
    if (ivf) faiss_pass(*std::max_element(c.nprobes.begin(), c.nprobes.end()), false);
    fmt::print(stderr, "warm-up passes done in {:.1f} s (faiss list file {:.0f}% resident)\n",
               t.Seconds(), 100.0 * ff.Resident());
  }
  for (int rep = 0; rep < c.reps; ++rep) {
    for (auto& s : series) {
      if (s.mode == "cold" && s.system == "faiss") {
        ff.Drop();
        fmt::print(stderr, "  faiss list file after drop: {:.2f}% resident\n",
                   100.0 * ff.Resident());
      }
      for (auto& pt : s.points) {
        Pass p;
        if (is_strata(s)) {
          const Variant& var = variant_of(s);
          auto r = strata_pass(s.mode == "warm" ? *var.warm : *var.cold, pt.param,
                               var.prune_epsilon, var.merge_reads, var.merge_gap,
                           var.head_ef);
          if (!r) return Die(r.error());
          p = *r;
        } else {
          p = faiss_pass(pt.param, s.mode == "cold");
        }
        pt.passes.push_back(p);
        fmt::print(stderr, "[rep {}] {} {} {}={}: recall {:.4f}, mean {:.3f} ms, p99 {:.3f} ms\n",
                   rep + 1, s.system, s.mode, s.param_name, pt.param, p.recall, p.mean_ms,
                   p.p99_ms);
      }
    }
  }

  // ---- table ----
  fmt::print("\n{:<15} {:<5} {:<10} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9}\n", "system", "mode",
             "param", "value", fmt::format("recall@{}", k), "mean_ms", "p99_ms", "QPS", "lists/q",
             "reads/q", "KiB/q");
  for (const auto& s : series) {
    for (const auto& pt : s.points) {
      const Pass m = pt.Med();
      fmt::print("{:<15} {:<5} {:<10} {:>6} {:>9.4f} {:>9.3f} {:>9.3f} {:>9.0f} {:>8} {:>8} {:>9}\n",
                 s.system, s.mode, s.param_name, pt.param, m.recall, m.mean_ms, m.p99_ms,
                 1000.0 / m.mean_ms, is_strata(s) ? fmt::format("{:.1f}", m.lists) : "-",
                 is_strata(s) ? fmt::format("{:.1f}", m.reads) : "-",
                 is_strata(s) ? fmt::format("{:.1f}", m.kib) : "-");
    }
  }

  // ---- JSON lines ----
  const json common = {{"base", c.base_path},
                       {"metric", std::string(MetricName(*metric))},
                       {"n", n},
                       {"dim", dim},
                       {"nq", nq},
                       {"k", k},
                       {"reps", c.reps},
                       {"spann_memory_bytes", sst.memory_bytes},
                       {"faiss_nlist", ivf ? nlist : 0},
                       {"faiss_centroid_bytes", ivf ? faiss_centroid_bytes : 0},
                       {"raw_vector_bytes", n * dim * sizeof(float)},
                       {"faiss_cold_drop", c.faiss_cold_drop},
                       {"faiss_prefetch_threads", od ? od->prefetch_nthread : 0},
                       {"rerank", c.rerank}};
  fmt::print("\n");
  for (const auto& s : series) {
    for (const auto& pt : s.points) {
      const Pass m = pt.Med();
      json line = common;
      line["system"] = s.system;
      line["mode"] = s.mode;
      line[s.param_name] = pt.param;
      line["recall"] = m.recall;
      line["mean_ms"] = m.mean_ms;
      line["p99_ms"] = m.p99_ms;
      line["qps"] = 1000.0 / m.mean_ms;
      if (is_strata(s)) {
        line["spann_memory_bytes"] = variant_of(s).cold->Stats().memory_bytes;
        line["prune_epsilon"] = variant_of(s).prune_epsilon;
        line["lists_per_query"] = m.lists;
        line["kib_read_per_query"] = m.kib;
        line["list_reads_per_query"] = m.reads;
      }
      fmt::print("JSON {}\n", line.dump());
    }
  }

  // ---- summary ----
  fmt::print("\nmean latency at target recall@{} (log-latency interpolated along each sweep; "
             "* = first point already above the target, an upper bound); ratios against FAISS "
             "when it ran, else against the default SPANN index (\"strata\")\n",
             k);
  fmt::print("{:>6} {:>5} {:<15} {:>12} {:>12} {:>8} {:>14}\n", "target", "mode", "system",
             "mean_ms", "ref_ms", "ratio", "KiB/q");
  auto fmt_ms = [](std::optional<double> v, bool star) {
    return v ? fmt::format("{:.3f}{}", *v, star ? "*" : "") : std::string("not reached");
  };
  for (double target : {0.85, 0.90, 0.95, 0.97}) {
    for (const char* mode : {"warm", "cold"}) {
      const Series* ref = nullptr;
      for (const auto& s : series) {
        if (s.mode == mode && s.system == (ivf ? "faiss" : "strata")) ref = &s;
      }
      bool r_first = false;
      std::optional<double> lr;
      if (ref) lr = LatencyAtRecall(*ref, target, &r_first);
      for (const auto& s : series) {
        if (s.mode != mode || !is_strata(s) || (!ivf && &s == ref && variants.size() > 1)) continue;
        bool s_first = false;
        double kib = 0;
        auto ls = LatencyAtRecall(s, target, &s_first, &kib);
        const std::string ratio = ls && lr ? fmt::format("{:.3f}", *ls / *lr) : "n/a";
        fmt::print("{:>6.2f} {:>5} {:<15} {:>12} {:>12} {:>8} {:>14}\n", target, mode, s.system,
                   fmt_ms(ls, s_first), ref ? fmt_ms(lr, r_first) : "-", ratio,
                   ls ? fmt::format("{:.1f}", kib) : "-");
        json line = {{"summary", true}, {"target_recall", target}, {"mode", mode},
                     {"system", s.system}};
        if (ls) line["strata_mean_ms"] = *ls, line["strata_kib_per_query"] = kib;
        if (lr) line[ivf ? "faiss_mean_ms" : "reference_mean_ms"] = *lr;
        if (ls && lr) line[ivf ? "strata_over_faiss_latency" : "over_reference_latency"] = *ls / *lr;
        fmt::print("JSON {}\n", line.dump());
      }
    }
  }
  if (ff.fd >= 0) ::close(ff.fd);
  return 0;
}
