// HNSW side by side: Strata's HnswIndex against hnswlib (HierarchicalNSW,
// Debian libhnswlib-dev, compiled here with -march=native) and FAISS
// (IndexHNSWFlat, Debian libfaiss-dev) on the same base, queries and ground
// truth, with the same M and ef_construction, sweeping ef.
//
//   hnsw_peers --base B --queries Q --gt GT --metric cosine|l2 [--k 10] [--M 16]
//              [--ef-construction 200] [--threads 2] [--ef 10,16,...,512]
//              [--libs strata,strata-sq8,strata-sq8-mmap,hnswlib,faiss] [--json FILE] [--reps 3]
//              [--rerank N] [--save-dir DIR]
//
// strata-sq8 is Strata's HNSW with SQ8 codes (HnswOptions::codes) and the full
// vectors in memory; strata-sq8-mmap builds the same, saves it under --save-dir,
// and reloads it with the codes and graph in memory and the full vectors mapped
// from the file (HnswLoadOptions::map_full_vectors), so its index RSS is what a
// server holding such a file pays. At the end each child also reports its RSS
// above the pre-build level split into anonymous and file-backed pages
// (/proc/self/status RssAnon / RssFile): the mapped full vectors that reranks
// touched are file-backed, clean, and reclaimable by the kernel. strata-sq8-pread
// reloads with HnswLoadOptions::read_full_vectors: reranks pread the full vectors,
// which then never count in the process's RSS; all of one query's reads go to the
// kernel as one batch (io_uring), or one pread each for strata-sq8-pread-sync.
// strata-sq8-refined reloads with HnswLoadOptions::refined_codes: a 4-bit
// refinement of every code in memory, and reranks on those refined codes, so no
// search here (none is filtered) touches a full vector.
//
// Data are loaded once in the parent; each library then runs in its own forked
// child (build on --threads threads, then single-threaded one-query-at-a-time
// search passes on the parent's command, interleaved across libraries so that
// the machine's drift affects all alike), so each one's memory is its own: peak_rss_mb is the child's ru_maxrss
// (which includes the inherited data pages it touches) and index_rss_mb is the
// resident-set growth across the build (RSS after build minus RSS before).
// Recall@k is computed for all three by the same tie-aware RecallEvaluator.
//
// Cosine: hnswlib and FAISS get row-normalized base and queries with inner
// product; Strata gets the raw vectors with Metric::kCosine (it normalizes).

#include <faiss/IndexHNSW.h>
#include <hnswlib/hnswlib.h>
#include <malloc.h>
#include <omp.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "core/timer.h"
#include "index/hnsw/hnsw_index.h"
#include "storage/dataset_io.h"
#include "tools/eval.h"

using namespace strata;
using json = nlohmann::json;

namespace {

struct Config {
  std::string base_path, query_path, gt_path, metric_name = "cosine", json_path;
  size_t k = 10;
  size_t M = 16;
  size_t ef_construction = 200;
  int threads = 2;
  int reps = 3;
  std::vector<size_t> efs = {10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512};
  std::vector<std::string> libs = {"strata", "hnswlib", "faiss"};
  uint32_t rerank = 0;  // strata-sq8*: rerank depth (0: the index's default)
  std::string save_dir = "/tmp";
};

// Data shared (copy-on-write) by every child.
struct Data {
  Metric metric = Metric::kL2;
  VectorSet base, queries;            // raw
  VectorSet nbase, nqueries;          // normalized copies (cosine only)
  const VectorSet* peer_base = nullptr;     // what hnswlib/FAISS index
  const VectorSet* peer_queries = nullptr;  // what hnswlib/FAISS search with
  storage::GroundTruth gt;
  std::optional<tools::RecallEvaluator> eval;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double RssMb() {
  long pages_total = 0, pages_resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2) pages_resident = 0;
    std::fclose(f);
  }
  return double(pages_resident) * double(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

// RssAnon or RssFile of /proc/self/status, in MB.
double StatusMb(const char* key) {
  double kb = 0;
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    const size_t n = std::strlen(key);
    while (std::fgets(line, sizeof line, f)) {
      if (std::strncmp(line, key, n) == 0 && line[n] == ':') {
        kb = std::atof(line + n + 1);
        break;
      }
    }
    std::fclose(f);
  }
  return kb / 1024.0;
}

double PeakRssMb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // kilobytes on Linux
}

// One library's adapter: Build() then Search() one query at a time, results
// written as k Neighbors (padded with invalid ids).
class Runner {
 public:
  virtual ~Runner() = default;
  virtual Status Build(const Data& d, const Config& c) = 0;
  virtual void SetEf(size_t ef) = 0;
  virtual Status Search(const Data& d, size_t q, size_t k, Neighbor* out) = 0;
  virtual std::string Info() const { return {}; }
};

class StrataRunner final : public Runner {
 public:
  // codes: traverse on SQ8 codes; map_full: then save, reload with the full vectors mapped.
  // read_full: reload with the full vectors read (pread) for reranks instead of mapped.
  // read_io: how those reads are issued (HnswLoadOptions::full_vector_io).
  // refined: reload with HnswLoadOptions::refined_codes (reranks on 12-bit codes in memory).
  StrataRunner(index::CodesKind codes, bool map_full, bool read_full = false,
               storage::IoBackend read_io = storage::IoBackend::kAuto, bool refined = false)
      : codes_(codes), map_full_(map_full || read_full || refined), read_full_(read_full),
        refined_(refined), read_io_(read_io) {}
  Status Build(const Data& d, const Config& c) override {
    index::HnswOptions opt;
    opt.M = uint32_t(c.M);
    opt.ef_construction = uint32_t(c.ef_construction);
    opt.codes = codes_;
    auto idx = index::HnswIndex::Create(d.base.dim(), d.metric, opt);
    if (!idx) return idx.error();
    index_ = std::move(*idx);
    index::HnswBuildOptions bopt;
    bopt.num_threads = c.threads;
    bopt.progress = false;
    rerank_ = rerank_override_ ? rerank_override_ : c.rerank;
    if (Status s = index_->AddBatch(d.base, {}, bopt); !s.ok()) return s;
    if (!map_full_) return Status::Ok();
    const std::string path = fmt::format("{}/hnsw_peers_{}.hnsw", c.save_dir, getpid());
    if (Status s = index_->Save(path); !s.ok()) return s;
    index_.reset();
    // Hand the freed build's heap back to the system, so the RSS measured after the
    // load is what a fresh process loading the file would hold.
    malloc_trim(0);
    index::HnswLoadOptions lo;
    lo.map_full_vectors = !read_full_;
    lo.read_full_vectors = read_full_;
    lo.full_vector_io = read_io_;
    lo.refined_codes = refined_;
    auto loaded = index::HnswIndex::Load(path, lo);
    std::remove(path.c_str());  // the mapping keeps the file's pages
    if (!loaded) return loaded.error();
    index_ = std::move(*loaded);
    return Status::Ok();
  }
  void SetEf(size_t ef) override { ef_ = uint32_t(ef); }
  // A rerank depth for this library alone (the "@N" suffix of its --libs name).
  void SetRerank(uint32_t rerank) { rerank_override_ = rerank; }
  Status Search(const Data& d, size_t q, size_t k, Neighbor* out) override {
    index::SearchParams p;
    p.k = uint32_t(k);
    p.ef = ef_;
    p.rerank = rerank_;
    auto res = index_->Search(d.queries[q], p, ctx_);
    if (!res) return res.error();
    const size_t n = std::min(k, res->size());
    std::copy_n(res->begin(), n, out);
    std::fill(out + n, out + k, Neighbor{});
    return Status::Ok();
  }
  std::string Info() const override {
    auto s = index_->GraphStats();
    std::string info = fmt::format("self-reported memory {:.1f} MB", double(s.memory_bytes) / (1 << 20));
    if (s.refined_code_bytes) info += fmt::format(" (refined codes {:.1f} MB, counted)", double(s.refined_code_bytes) / (1 << 20));
    if (s.full_vector_bytes) {
      info += fmt::format(" (full vectors {:.1f} MB, {})", double(s.full_vector_bytes) / (1 << 20),
                          s.full_vectors_mapped ? "mapped, not counted" : "in memory, counted");
    }
    return info;
  }

 private:
  index::CodesKind codes_;
  bool map_full_;
  bool read_full_;
  bool refined_;
  storage::IoBackend read_io_;
  std::unique_ptr<index::HnswIndex> index_;
  index::SearchContext ctx_;
  uint32_t ef_ = 64;
  uint32_t rerank_ = 0;
  uint32_t rerank_override_ = 0;
};

class HnswlibRunner final : public Runner {
 public:
  Status Build(const Data& d, const Config& c) override {
    const size_t dim = d.peer_base->dim(), n = d.peer_base->size();
    if (d.metric == Metric::kL2) space_ = std::make_unique<hnswlib::L2Space>(dim);
    else space_ = std::make_unique<hnswlib::InnerProductSpace>(dim);
    index_ = std::make_unique<hnswlib::HierarchicalNSW<float>>(space_.get(), n, c.M,
                                                                c.ef_construction);
    if (n == 0) return Status::Ok();
    // First point alone (it becomes the entry point), then the rest in parallel.
    index_->addPoint(d.peer_base->row(0), 0);
    std::atomic<size_t> next{1};
    std::vector<std::thread> workers;
    for (int t = 0; t < std::max(1, c.threads); ++t) {
      workers.emplace_back([&] {
        for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
          index_->addPoint(d.peer_base->row(i), hnswlib::labeltype(i));
        }
      });
    }
    for (auto& w : workers) w.join();
    return Status::Ok();
  }
  void SetEf(size_t ef) override { index_->setEf(ef); }
  Status Search(const Data& d, size_t q, size_t k, Neighbor* out) override {
    auto heap = index_->searchKnn(d.peer_queries->row(q), k);  // max-heap: farthest on top
    size_t n = std::min(heap.size(), k);
    while (heap.size() > n) heap.pop();
    std::fill(out + n, out + k, Neighbor{});
    for (size_t i = n; i-- > 0;) {
      out[i] = Neighbor{VectorId(heap.top().second), heap.top().first};
      heap.pop();
    }
    return Status::Ok();
  }

 private:
  std::unique_ptr<hnswlib::SpaceInterface<float>> space_;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> index_;
};

class FaissRunner final : public Runner {
 public:
  Status Build(const Data& d, const Config& c) override {
    const size_t dim = d.peer_base->dim();
    index_ = std::make_unique<faiss::IndexHNSWFlat>(
        int(dim), int(c.M),
        d.metric == Metric::kL2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT);
    index_->hnsw.efConstruction = int(c.ef_construction);
    omp_set_num_threads(std::max(1, c.threads));
    index_->add(faiss::Index::idx_t(d.peer_base->size()), d.peer_base->data());
    omp_set_num_threads(1);
    return Status::Ok();
  }
  void SetEf(size_t ef) override { index_->hnsw.efSearch = int(ef); }
  Status Search(const Data& d, size_t q, size_t k, Neighbor* out) override {
    dist_.resize(k);
    ids_.resize(k);
    index_->search(1, d.peer_queries->row(q), faiss::Index::idx_t(k), dist_.data(), ids_.data());
    const bool ip = index_->metric_type == faiss::METRIC_INNER_PRODUCT;
    for (size_t i = 0; i < k; ++i) {
      out[i] = ids_[i] < 0 ? Neighbor{}
                           : Neighbor{VectorId(ids_[i]), ip ? -dist_[i] : dist_[i]};
    }
    return Status::Ok();
  }

 private:
  std::unique_ptr<faiss::IndexHNSWFlat> index_;
  std::vector<float> dist_;
  std::vector<faiss::Index::idx_t> ids_;
};

std::unique_ptr<Runner> MakeRunner(const std::string& lib);

// "strata-sq8-pread@15": a strata-sq8* library with its own rerank depth, so that two
// depths run interleaved in one pass (the suffix needs a positive number).
std::unique_ptr<Runner> MakeRunnerWithRerank(const std::string& name) {
  const size_t at = name.find('@');
  if (at == std::string::npos) return MakeRunner(name);
  const std::string base = name.substr(0, at), depth = name.substr(at + 1);
  if (base.rfind("strata-sq8", 0) != 0 || depth.empty() || depth.size() > 6 ||
      depth.find_first_not_of("0123456789") != std::string::npos || std::stoul(depth) == 0) {
    return nullptr;
  }
  auto runner = MakeRunner(base);
  if (runner) static_cast<StrataRunner*>(runner.get())->SetRerank(uint32_t(std::stoul(depth)));
  return runner;
}

std::unique_ptr<Runner> MakeRunner(const std::string& lib) {
  if (lib == "strata") return std::make_unique<StrataRunner>(index::CodesKind::kNone, false);
  if (lib == "strata-sq8") return std::make_unique<StrataRunner>(index::CodesKind::kSq8, false);
  if (lib == "strata-sq8-mmap") return std::make_unique<StrataRunner>(index::CodesKind::kSq8, true);
  if (lib == "strata-sq8-pread") {
    return std::make_unique<StrataRunner>(index::CodesKind::kSq8, false, true);
  }
  if (lib == "strata-sq8-pread-sync") {  // one pread per reranked vector (before io_uring batches)
    return std::make_unique<StrataRunner>(index::CodesKind::kSq8, false, true,
                                          storage::IoBackend::kPread);
  }
  if (lib == "strata-sq8-refined") {
    return std::make_unique<StrataRunner>(index::CodesKind::kSq8, false, false,
                                          storage::IoBackend::kAuto, true);
  }
  if (lib == "hnswlib") return std::make_unique<HnswlibRunner>();
  if (lib == "faiss") return std::make_unique<FaissRunner>();
  return nullptr;
}

// One library living in its own forked child process. The child builds once
// (so its build time and peak RSS are its own), then answers commands from the
// parent over a pipe, one JSON line per command:
//   "search <ef>"  one timed pass over all queries -> {"qps", "recall"}
//   "quit"         -> {"peak_rss_mb"} and exit
// The parent alternates the libraries for every (ef, repetition), so slow drifts
// of this shared machine hit all of them alike; idle children sleep in read().
class Child {
 public:
  Child(std::string lib) : lib_(std::move(lib)) {}
  ~Child() {
    if (to_) std::fclose(to_);
    if (from_) std::fclose(from_);
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
  }
  const std::string& lib() const { return lib_; }

  // Forks and waits for the build report.
  json Start(const Data& d, const Config& c) {
    int down[2], up[2];
    if (pipe(down) != 0 || pipe(up) != 0) return Err(std::string("pipe: ") + strerror(errno));
    std::fflush(stdout);
    std::fflush(stderr);
    pid_ = fork();
    if (pid_ < 0) return Err(std::string("fork: ") + strerror(errno));
    if (pid_ == 0) {
      close(down[1]);
      close(up[0]);
      Serve(d, c, fdopen(down[0], "r"), fdopen(up[1], "w"));
      _exit(0);  // no destructors, no flushing of the parent's inherited buffers
    }
    close(down[0]);
    close(up[1]);
    to_ = fdopen(down[1], "w");
    from_ = fdopen(up[0], "r");
    return Read();
  }
  json Send(const std::string& command) {
    if (!to_) return Err("child not running");
    std::fprintf(to_, "%s\n", command.c_str());
    std::fflush(to_);
    return Read();
  }

 private:
  json Err(const std::string& why) { return {{"lib", lib_}, {"error", why}}; }
  json Read() {
    char* line = nullptr;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, from_);
    std::string text = n > 0 ? std::string(line, size_t(n)) : std::string();
    std::free(line);
    if (n <= 0) {
      int wstatus = 0;
      waitpid(pid_, &wstatus, 0);
      pid_ = -1;
      std::fclose(to_);
      to_ = nullptr;
      return Err(WIFSIGNALED(wstatus) ? fmt::format("child killed by signal {}", WTERMSIG(wstatus))
                                      : fmt::format("child exited ({})", WEXITSTATUS(wstatus)));
    }
    try {
      return json::parse(text);
    } catch (const std::exception& e) {
      return Err(std::string("bad child output: ") + e.what());
    }
  }

  void Serve(const Data& d, const Config& c, std::FILE* in, std::FILE* out) {
    auto reply = [&](const json& j) {
      std::fprintf(out, "%s\n", j.dump().c_str());
      std::fflush(out);
    };
    auto runner = MakeRunnerWithRerank(lib_);
    const double rss_before = RssMb();
    const double anon_before = StatusMb("RssAnon"), file_before = StatusMb("RssFile");
    Timer t;
    if (Status s = runner->Build(d, c); !s.ok()) {
      reply(Err("build: " + s.ToString()));
      return;
    }
    const double build_s = t.Seconds();
    const double rss_after = RssMb();
    fmt::print(stderr, "[{}] built in {:.1f} s, index RSS +{:.1f} MB\n", lib_, build_s,
               rss_after - rss_before);
    reply({{"lib", lib_}, {"build_s", build_s}, {"rss_before_build_mb", rss_before},
           {"rss_after_build_mb", rss_after}, {"index_rss_mb", rss_after - rss_before},
           {"info", runner->Info()}});
    const size_t nq = d.queries.size(), k = c.k;
    std::vector<Neighbor> results(nq * k);
    char* line = nullptr;
    size_t cap = 0;
    while (getline(&line, &cap, in) > 0) {
      std::string cmd(line);
      if (cmd.rfind("search ", 0) == 0) {
        const size_t ef = std::stoul(cmd.substr(7));
        runner->SetEf(ef);
        Timer st;
        Status err;
        for (size_t q = 0; q < nq && err.ok(); ++q) err = runner->Search(d, q, k, results.data() + q * k);
        const double secs = st.Seconds();
        if (!err.ok()) {
          reply(Err(fmt::format("search ef={}: {}", ef, err.ToString())));
          continue;
        }
        reply({{"qps", double(nq) / secs}, {"recall", d.eval->Recall(results, k, nq)}});
      } else {
        // After every search pass: what the index holds now, above the pre-build level.
        reply({{"peak_rss_mb", PeakRssMb()}, {"end_index_rss_mb", RssMb() - rss_before},
               {"end_index_anon_mb", StatusMb("RssAnon") - anon_before},
               {"end_index_file_mb", StatusMb("RssFile") - file_before}});
        break;
      }
    }
    std::free(line);
  }

  std::string lib_;
  pid_t pid_ = -1;
  std::FILE* to_ = nullptr;
  std::FILE* from_ = nullptr;
};

// Builds every library (one after the other), then sweeps ef with the
// libraries interleaved per repetition; returns one result object per library.
std::vector<json> RunAll(const Data& d, const Config& c) {
  std::vector<std::unique_ptr<Child>> children;
  std::vector<json> results;
  for (const auto& lib : c.libs) {
    fmt::print(stderr, "[{}] building in a child process...\n", lib);
    children.push_back(std::make_unique<Child>(lib));
    results.push_back(children.back()->Start(d, c));
    results.back()["lib"] = lib;
    results.back()["points"] = json::array();
  }
  for (size_t ef : c.efs) {
    std::vector<std::vector<double>> qps(children.size());
    std::vector<double> recall(children.size(), 0);
    for (int r = 0; r < std::max(1, c.reps); ++r) {
      for (size_t i = 0; i < children.size(); ++i) {
        if (results[i].contains("error")) continue;
        json reply = children[i]->Send(fmt::format("search {}", ef));
        if (reply.contains("error")) {
          results[i]["error"] = reply["error"];
          continue;
        }
        qps[i].push_back(reply["qps"].get<double>());
        recall[i] = reply["recall"].get<double>();
      }
    }
    for (size_t i = 0; i < children.size(); ++i) {
      if (qps[i].empty()) continue;
      const double med = Median(qps[i]);
      fmt::print(stderr, "[{}] ef {:4d}: recall@{} {:.4f}, {:.0f} QPS\n", c.libs[i], ef, c.k,
                 recall[i], med);
      results[i]["points"].push_back(
          {{"ef", ef}, {"recall", recall[i]}, {"qps", med}, {"qps_reps", qps[i]}});
    }
  }
  for (size_t i = 0; i < children.size(); ++i) {
    if (results[i].contains("error")) continue;
    json reply = children[i]->Send("quit");
    for (const char* key : {"peak_rss_mb", "end_index_rss_mb", "end_index_anon_mb", "end_index_file_mb"}) {
      if (reply.contains(key)) results[i][key] = reply[key];
    }
  }
  return results;
}

// QPS at `target` recall along the sweep (in ef order): log(QPS) interpolated
// linearly in recall between the last point below the target and the first
// point at or above it. nullopt when no point reaches the target. `at_first`
// is set when the lowest ef already reaches it (its QPS is then a lower bound).
std::optional<double> QpsAtRecall(const json& lib, double target, bool* at_first) {
  *at_first = false;
  if (!lib.contains("points")) return std::nullopt;
  const json& pts = lib["points"];
  for (size_t j = 0; j < pts.size(); ++j) {
    const double rj = pts[j]["recall"].get<double>();
    if (rj < target) continue;
    const double qj = pts[j]["qps"].get<double>();
    if (j == 0) {
      *at_first = true;
      return qj;
    }
    const double ri = pts[j - 1]["recall"].get<double>(), qi = pts[j - 1]["qps"].get<double>();
    const double f = rj > ri ? (target - ri) / (rj - ri) : 1.0;
    return std::exp(std::log(qi) + f * (std::log(qj) - std::log(qi)));
  }
  return std::nullopt;
}

std::string Ratio(std::optional<double> a, std::optional<double> b) {
  if (!a || !b || *b <= 0) return "n/a";
  return fmt::format("{:.2f}x", *a / *b);
}

int Die(const Status& s) {
  fmt::print(stderr, "hnsw_peers: {}\n", s.ToString());
  return 1;
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  std::string ef_list = "10,16,24,32,48,64,96,128,192,256,384,512,768,1024";
  std::string lib_list = "strata,hnswlib,faiss";
  CLI::App app{"HNSW peer comparison: Strata vs hnswlib vs FAISS IndexHNSWFlat"};
  app.add_option("--base", c.base_path, "base vectors (.fbin/.u8bin/.fvecs/...)")->required();
  app.add_option("--queries", c.query_path, "query vectors")->required();
  app.add_option("--gt", c.gt_path, "ground truth (.ibin/.ivecs/.npy)")->required();
  app.add_option("--metric", c.metric_name, "cosine or l2")
      ->check(CLI::IsMember({"cosine", "l2"}));
  app.add_option("--k", c.k, "recall@k")->check(CLI::PositiveNumber);
  app.add_option("--M", c.M, "HNSW M")->check(CLI::Range(2, 1024));
  app.add_option("--ef-construction", c.ef_construction, "HNSW ef_construction")
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", c.threads, "build threads (search is single-threaded)")
      ->check(CLI::PositiveNumber);
  app.add_option("--ef", ef_list, "comma-separated ef values to sweep");
  app.add_option("--libs", lib_list,
                 "comma-separated subset of strata,strata-sq8,strata-sq8-mmap,strata-sq8-pread,strata-sq8-pread-sync,strata-sq8-refined,hnswlib,faiss "
                 "(strata-sq8*@N: that library with rerank depth N)");
  app.add_option("--rerank", c.rerank, "strata-sq8*: candidates reranked with full vectors (0: index default)");
  app.add_option("--save-dir", c.save_dir, "strata-sq8-mmap: where the index file is written");
  app.add_option("--json", c.json_path, "write the full results as one JSON document");
  app.add_option("--reps", c.reps, "timed passes over the queries per ef (median QPS)")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  c.efs.clear();
  for (const auto& s : SplitList(ef_list)) {
    try {
      size_t pos = 0;
      long v = std::stol(s, &pos);
      if (pos != s.size() || v <= 0) throw std::invalid_argument(s);
      c.efs.push_back(size_t(v));
    } catch (const std::exception&) {
      fmt::print(stderr, "hnsw_peers: bad --ef value '{}'\n", s);
      return 2;
    }
  }
  c.libs = SplitList(lib_list);
  for (const auto& l : c.libs) {
    if (!MakeRunnerWithRerank(l)) {
      fmt::print(stderr, "hnsw_peers: unknown library '{}' (strata, strata-sq8, strata-sq8-mmap, "
                 "strata-sq8-pread, strata-sq8-pread-sync, strata-sq8-refined, hnswlib, faiss; a strata-sq8* name may end in @N, "
                 "a rerank depth of its own)\n", l);
      return 2;
    }
  }
  if (c.efs.empty() || c.libs.empty()) {
    fmt::print(stderr, "hnsw_peers: --ef and --libs must not be empty\n");
    return 2;
  }

  Data d;
  auto metric = ParseMetric(c.metric_name);
  if (!metric) return Die(metric.error());
  d.metric = *metric;
  Timer load;
  auto base = storage::ReadVectors(c.base_path);
  if (!base) return Die(base.error());
  auto queries = storage::ReadVectors(c.query_path);
  if (!queries) return Die(queries.error());
  auto gt = storage::ReadGroundTruth(c.gt_path);
  if (!gt) return Die(gt.error());
  d.base = std::move(*base);
  d.queries = std::move(*queries);
  d.gt = std::move(*gt);
  if (d.base.dim() != d.queries.dim()) {
    fmt::print(stderr, "hnsw_peers: base dim {} != query dim {}\n", d.base.dim(), d.queries.dim());
    return 1;
  }
  auto ev = tools::RecallEvaluator::Create(d.base, d.queries, d.gt, d.metric, c.k);
  if (!ev) return Die(ev.error());
  d.eval.emplace(std::move(*ev));
  if (d.metric == Metric::kCosine) {
    auto nb = d.base.Clone();
    if (!nb) return Die(nb.error());
    auto nq = d.queries.Clone();
    if (!nq) return Die(nq.error());
    d.nbase = std::move(*nb);
    d.nqueries = std::move(*nq);
    d.nbase.NormalizeRows();
    d.nqueries.NormalizeRows();
    d.peer_base = &d.nbase;
    d.peer_queries = &d.nqueries;
  } else {
    d.peer_base = &d.base;
    d.peer_queries = &d.queries;
  }

  fmt::print("hnsw_peers: base {} ({} x {}), {} queries, {}, recall@{}, M={}, ef_construction={}, "
             "{} build threads, 1 search thread, {} rep(s) per ef (median QPS, libraries interleaved); data loaded in "
             "{:.1f} s, parent RSS {:.0f} MB\n",
             c.base_path, d.base.size(), d.base.dim(), d.queries.size(), MetricName(d.metric), c.k,
             c.M, c.ef_construction, c.threads, c.reps, load.Seconds(), RssMb());
  std::fflush(stdout);

  std::vector<json> results = RunAll(d, c);

  // Table.
  fmt::print("\n{:<15} {:>5} {:>9} {:>10}\n", "lib", "ef", fmt::format("recall@{}", c.k), "QPS");
  for (const auto& r : results) {
    if (r.contains("points")) {
      for (const auto& p : r["points"]) {
        fmt::print("{:<15} {:>5} {:>9.4f} {:>10.0f}\n", r["lib"].get<std::string>(),
                   p["ef"].get<size_t>(), p["recall"].get<double>(), p["qps"].get<double>());
      }
    }
    if (r.contains("error")) {
      fmt::print("{:<15} ERROR: {}\n", r["lib"].get<std::string>(), r["error"].get<std::string>());
    }
  }
  // index_rss_mb: growth over the build (and reload); end_*: above the pre-build
  // level after every search pass, all / anonymous / file-backed.
  fmt::print("\n{:<15} {:>9} {:>12} {:>13} {:>11} {:>10} {:>10} {}\n", "lib", "build_s",
             "peak_rss_mb", "index_rss_mb", "end_rss_mb", "end_anon", "end_file", "");
  for (const auto& r : results) {
    if (!r.contains("build_s")) continue;
    fmt::print("{:<15} {:>9.1f} {:>12.1f} {:>13.1f} {:>11.1f} {:>10.1f} {:>10.1f} {}\n",
               r["lib"].get<std::string>(), r["build_s"].get<double>(), r.value("peak_rss_mb", 0.0),
               r["index_rss_mb"].get<double>(), r.value("end_index_rss_mb", 0.0),
               r.value("end_index_anon_mb", 0.0), r.value("end_index_file_mb", 0.0),
               r.value("info", std::string()));
  }

  // JSON lines: one per (lib, ef) point, one per lib.
  const json common = {{"base", c.base_path}, {"metric", std::string(MetricName(d.metric))},
                       {"n", d.base.size()},   {"dim", d.base.dim()},
                       {"nq", d.queries.size()}, {"k", c.k},
                       {"M", c.M},             {"ef_construction", c.ef_construction},
                       {"threads", c.threads}, {"reps", c.reps}};
  fmt::print("\n");
  for (const auto& r : results) {
    if (!r.contains("points")) continue;
    for (const auto& p : r["points"]) {
      json line = common;
      line["lib"] = r["lib"];
      line["ef"] = p["ef"];
      line["recall"] = p["recall"];
      line["qps"] = p["qps"];
      fmt::print("{}\n", line.dump());
    }
  }
  for (const auto& r : results) {
    json line = common;
    line["lib"] = r["lib"];
    for (const char* key : {"build_s", "peak_rss_mb", "index_rss_mb", "end_index_rss_mb",
                            "end_index_anon_mb", "end_index_file_mb", "error"}) {
      if (r.contains(key)) line[key] = r[key];
    }
    fmt::print("{}\n", line.dump());
  }

  // Comparison.
  std::map<std::string, const json*> by_lib;
  for (const auto& r : results) by_lib[r["lib"].get<std::string>()] = &r;
  auto lib_qps = [&](const std::string& lib, double target, std::string* text) {
    std::optional<double> q;
    auto it = by_lib.find(lib);
    if (it == by_lib.end()) {
      *text = "-";
      return q;
    }
    if (!it->second->contains("points") || (*it->second)["points"].empty()) {
      *text = "failed";
      return q;
    }
    bool at_first = false;
    q = QpsAtRecall(*it->second, target, &at_first);
    *text = !q ? std::string("not reached")
               : fmt::format("{:.0f}{}", *q, at_first ? "*" : "");
    return q;
  };
  json comparison = json::array();
  fmt::print("\nQPS at target recall@{} (log-QPS interpolated along the ef sweep; * = lowest ef "
             "already above the target, so the value is a lower bound)\n",
             c.k);
  auto field = [&](const std::string& lib, const char* key) -> std::optional<double> {
    auto it = by_lib.find(lib);
    if (it == by_lib.end() || !it->second->contains(key)) return std::nullopt;
    return (*it->second)[key].get<double>();
  };
  // One block per Strata variant that ran (JSON keys named after it: strata_qps, ...).
  for (const std::string strata :
       {"strata", "strata-sq8", "strata-sq8-mmap", "strata-sq8-pread", "strata-sq8-pread-sync",
        "strata-sq8-refined"}) {
    if (!by_lib.count(strata)) continue;
    fmt::print("{:>7} {:>15} {:>13} {:>13} {:>24} {:>13}\n", "target", strata, "hnswlib", "faiss",
               strata + "/hnswlib", "/faiss");
    for (double target : {0.90, 0.95, 0.99}) {
      std::string ts, th, tf;
      auto s = lib_qps(strata, target, &ts);
      auto h = lib_qps("hnswlib", target, &th);
      auto f = lib_qps("faiss", target, &tf);
      fmt::print("{:>7.2f} {:>15} {:>13} {:>13} {:>24} {:>13}\n", target, ts, th, tf, Ratio(s, h),
                 Ratio(s, f));
      json row = {{"target", target}, {"lib", strata}};
      if (s) row[strata + "_qps"] = *s;
      if (h) row["hnswlib_qps"] = *h;
      if (f) row["faiss_qps"] = *f;
      if (s && h) row[strata + "_over_hnswlib"] = *s / *h;
      if (s && f) row[strata + "_over_faiss"] = *s / *f;
      comparison.push_back(row);
    }
    // Build time: lower is better, so the ratio is strata time / peer time.
    fmt::print("build time        {}/hnswlib {}  /faiss {}\n", strata,
               Ratio(field(strata, "build_s"), field("hnswlib", "build_s")),
               Ratio(field(strata, "build_s"), field("faiss", "build_s")));
    fmt::print("index RSS growth  {}/hnswlib {}  /faiss {}\n", strata,
               Ratio(field(strata, "index_rss_mb"), field("hnswlib", "index_rss_mb")),
               Ratio(field(strata, "index_rss_mb"), field("faiss", "index_rss_mb")));
    fmt::print("index RSS at end  {}/hnswlib {} (anonymous {}, file-backed {} MB)\n", strata,
               Ratio(field(strata, "end_index_rss_mb"), field("hnswlib", "end_index_rss_mb")),
               Ratio(field(strata, "end_index_anon_mb"), field("hnswlib", "end_index_rss_mb")),
               field(strata, "end_index_file_mb").value_or(0.0));
    fmt::print("peak RSS          {}/hnswlib {}  /faiss {}\n\n", strata,
               Ratio(field(strata, "peak_rss_mb"), field("hnswlib", "peak_rss_mb")),
               Ratio(field(strata, "peak_rss_mb"), field("faiss", "peak_rss_mb")));
  }

  if (!c.json_path.empty()) {
    json doc = common;
    doc["gt"] = c.gt_path;
    doc["queries"] = c.query_path;
    doc["ef_sweep"] = c.efs;
    doc["libs"] = results;
    doc["qps_at_recall"] = comparison;
    std::ofstream out(c.json_path);
    out << doc.dump(2) << "\n";
    if (!out) {
      fmt::print(stderr, "hnsw_peers: cannot write {}\n", c.json_path);
      return 1;
    }
  }
  bool any_error = false;
  for (const auto& r : results) any_error |= r.contains("error");
  return any_error ? 1 : 0;
}
