#include "tools/engine_bench.h"

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/progress.h"
#include "core/stats.h"
#include "core/timer.h"
#include "engine/strata.h"
#include "index/hnsw/hnsw_index.h"
#include "tools/bench.h"
#include "tools/eval.h"
#include "tools/scratch_dir.h"

namespace strata::tools {
namespace fs = std::filesystem;

namespace {

struct Point {
  double recall = 0, qps = 0, mean_ms = 0;
};

// One thread, one query at a time, every query scored.
template <typename SearchFn>
Result<Point> Measure(const RecallEvaluator& eval, size_t nq, uint32_t k,
                      SearchFn&& search) {
  std::vector<Neighbor> results(nq * k);
  Timer t;
  for (size_t q = 0; q < nq; ++q) {
    STRATA_ASSIGN_OR_RETURN(std::vector<Neighbor> r, search(q));
    for (size_t j = 0; j < k; ++j) results[q * k + j] = j < r.size() ? r[j] : Neighbor{};
  }
  const double s = t.Seconds();
  return Point{eval.Recall(results, k, nq), double(nq) / s, 1000.0 * s / double(nq)};
}

// --mixed ----------------------------------------------------------------

// What one search cost its thread (getrusage(RUSAGE_THREAD) around it): wall time,
// CPU time, context switches (voluntary: it blocked; involuntary: it was preempted)
// and page faults. Tells a tail made of work from one made of waiting.
struct SearchCost {
  double wall_ms = 0, cpu_ms = 0;
  long nvcsw = 0, nivcsw = 0, minflt = 0;
  double at_s = 0;  // when it began, in seconds since the readers started (--latency-log)
};

struct ThreadUsage {
  double cpu_ms = 0;
  long nvcsw = 0, nivcsw = 0, minflt = 0;
  static ThreadUsage Now() {
    rusage u{};
    getrusage(RUSAGE_THREAD, &u);
    timespec cpu{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);  // exact, unlike rusage's tick-scaled times
    return {double(cpu.tv_sec) * 1e3 + double(cpu.tv_nsec) / 1e6, u.ru_nvcsw, u.ru_nivcsw, u.ru_minflt};
  }
};

// The slowest searches of a phase with their EXPLAIN (--show-slowest).
struct SlowSearch {
  double wall_ms = 0, cpu_ms = 0;
  size_t query = 0;
  Explain explain;
};

// Search costs and recall of one phase, merged over the reader threads.
struct PhaseStats {
  std::vector<SearchCost> costs;
  std::vector<double> latency_ms;  // sorted, filled by Finish
  double recall_sum = 0;

  void Merge(const PhaseStats& o) {
    costs.insert(costs.end(), o.costs.begin(), o.costs.end());
    recall_sum += o.recall_sum;
    slowest.insert(slowest.end(), o.slowest.begin(), o.slowest.end());
  }
  void Finish() {
    latency_ms.clear();
    for (const SearchCost& c : costs) latency_ms.push_back(c.wall_ms);
    std::sort(latency_ms.begin(), latency_ms.end());
  }
  size_t searches() const { return costs.size(); }
  double recall() const { return costs.empty() ? 0 : recall_sum / double(costs.size()); }
  std::vector<SlowSearch> slowest;  // at most --show-slowest, any order

  // Keeps `s` if it is among the `keep` slowest so far.
  void OfferSlow(size_t keep, SlowSearch&& s) {
    if (slowest.size() < keep) {
      slowest.push_back(std::move(s));
      return;
    }
    auto it = std::min_element(slowest.begin(), slowest.end(),
                               [](const SlowSearch& a, const SlowSearch& b) { return a.wall_ms < b.wall_ms; });
    if (it != slowest.end() && it->wall_ms < s.wall_ms) *it = std::move(s);
  }

  // Median wall and CPU time of the searches at or above the p99 latency (the tail)
  // or of all; means of the switch and fault counts (x100, two decimals in a long).
  SearchCost Summary(bool tail_only) const {
    SearchCost m;
    if (costs.empty()) return m;
    const double p99 = PercentileOfSorted<double>(latency_ms, 0.99);
    std::vector<double> wall, cpu;
    double nv = 0, ni = 0, mf = 0;
    for (const SearchCost& c : costs) {
      if (tail_only && c.wall_ms < p99) continue;
      wall.push_back(c.wall_ms);
      cpu.push_back(c.cpu_ms);
      nv += double(c.nvcsw);
      ni += double(c.nivcsw);
      mf += double(c.minflt);
    }
    if (wall.empty()) return m;
    std::sort(wall.begin(), wall.end());
    std::sort(cpu.begin(), cpu.end());
    const double n = double(wall.size());
    m.wall_ms = PercentileOfSorted<double>(wall, 0.5);
    m.cpu_ms = PercentileOfSorted<double>(cpu, 0.5);
    m.nvcsw = long(std::lround(100 * nv / n));
    m.nivcsw = long(std::lround(100 * ni / n));
    m.minflt = long(std::lround(100 * mf / n));
    return m;
  }
};

// Sleeps up to `seconds`, returning early once `stop` is set (a thread failed).
void WaitUnlessStopped(double seconds, const std::atomic<bool>& stop) {
  Timer t;
  while (!stop.load(std::memory_order_relaxed) && t.Seconds() < seconds) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// --latency-log: the file is made when the bench starts, new ("wx": an existing one is
// refused, never overwritten), and removed again -- it is this run's own -- unless the bench
// gets as far as writing it. One thread.
class LatencyLog {
 public:
  static Result<std::unique_ptr<LatencyLog>> Create(const fs::path& path) {
    std::FILE* f = std::fopen(path.c_str(), "wx");
    if (f == nullptr) {
      const int err = errno;
      return Error(IOError("engine-bench --latency-log {}: cannot create it{}: {}", path.string(),
                           err == EEXIST ? " (it exists; this tool writes only a new file)" : "",
                           std::strerror(err)));
    }
    return std::unique_ptr<LatencyLog>(new LatencyLog(path, f));
  }
  ~LatencyLog() {
    if (f_ != nullptr) std::fclose(f_);
    if (!written_) ::unlink(path_.c_str());
  }
  LatencyLog(const LatencyLog&) = delete;
  LatencyLog& operator=(const LatencyLog&) = delete;

  // Every search of both phases, in the order they began, then closes the file.
  Status Write(const std::array<PhaseStats, 2>& phases, double writes_start) {
    fmt::print(f_, "# engine-bench --mixed: one line per search: phase (0 idle, 1 writes), seconds into the "
                   "phase when it began, wall ms, CPU ms\n");
    for (int ph = 0; ph < 2; ++ph) {
      std::vector<SearchCost> costs = phases[ph].costs;
      std::sort(costs.begin(), costs.end(), [](const SearchCost& a, const SearchCost& b) { return a.at_s < b.at_s; });
      const double start = ph == 0 ? 0.0 : writes_start;
      for (const SearchCost& sc : costs) {
        fmt::print(f_, "{} {:.6f} {:.4f} {:.4f}\n", ph, sc.at_s - start, sc.wall_ms, sc.cpu_ms);
      }
    }
    const bool failed = std::ferror(f_) != 0;
    const int closed = std::fclose(f_);
    const int err = errno;
    f_ = nullptr;
    if (failed || closed != 0) {
      return IOError("engine-bench --latency-log {}: write failed: {}", path_.string(), std::strerror(err));
    }
    written_ = true;
    fmt::print("latency log: {} ({} searches)\n", path_.string(), phases[0].costs.size() + phases[1].costs.size());
    return Status::Ok();
  }

 private:
  LatencyLog(fs::path path, std::FILE* f) : path_(std::move(path)), f_(f) {}
  fs::path path_;
  std::FILE* f_;
  bool written_ = false;
};

Status RunMixed(const LoadedDataset& data, const EngineBenchConfig& c) {
  if (c.readers == 0 || c.writers == 0) {
    return InvalidArgument("engine-bench --mixed: --readers and --writers must be at least 1");
  }
  if (!(c.seconds > 0)) return InvalidArgument("engine-bench --mixed: --seconds must be positive");
  if (c.batch == 0) return InvalidArgument("engine-bench: --batch must be at least 1");
  const size_t n = data.base.size(), dim = data.base.dim();
  const size_t nq = c.max_queries ? std::min(c.max_queries, data.queries.size()) : data.queries.size();
  if (n == 0 || nq == 0) return InvalidArgument("engine-bench --mixed: the base and the queries must not be empty");
  // A batch never holds one id twice, whatever the size of the base.
  const size_t batch = std::min(c.batch, n);
  // The latency log is made here, before any long work (LatencyLog).
  std::unique_ptr<LatencyLog> latency_log;
  if (!c.latency_log.empty()) {
    STRATA_ASSIGN_OR_RETURN(latency_log, LatencyLog::Create(c.latency_log));
  }
  STRATA_ASSIGN_OR_RETURN(RecallEvaluator eval,
                          RecallEvaluator::Create(data.base, data.queries, data.gt, c.metric, c.k));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<ScratchDir> scratch,
                          ScratchDir::Claim(c.data_dir, "strata-engine-bench", "strata engine-bench"));
  if (c.keep) scratch->Keep();
  fmt::print("engine data directory: {}{}\n", scratch->path().string(), c.keep ? " (kept)" : "");

  // Maintenance as strata-server runs it: the defaults, with background compaction on.
  EngineOptions options;
  options.durability = Durability::kSync;
  options.background_compaction = true;
  options.insert_nice = c.insert_nice;
  options.insert_threads = c.insert_threads;
  options.maintenance_nice = c.maintenance_nice;
  options.maintenance_threads = c.maintenance_threads;
  options.background_idle = c.background_idle;
  options.memory_ef_construction = c.memory_ef_construction;
  STRATA_ASSIGN_OR_RETURN(auto engine, Engine::Open(scratch->path(), options));
  const std::string name = "bench";
  CollectionSpec spec;
  spec.name = name;
  spec.dim = dim;
  spec.metric = c.metric;
  spec.hnsw_M = c.M;
  spec.hnsw_ef_construction = c.ef_construction;  // seal_threshold: the default, as the server's
  STRATA_RETURN_IF_ERROR(engine->CreateCollection(spec));

  // Start state: the base in one sealed, calibrated segment, nothing in memory.
  Timer tl;
  STRATA_RETURN_IF_ERROR(engine->BulkLoad(name, data.base));
  STRATA_RETURN_IF_ERROR(engine->Flush(name));
  STRATA_ASSIGN_OR_RETURN(CollectionInfo start_info, engine->DescribeCollection(name));
  fmt::print("engine-bench --mixed {}: {} x {} ({}) bulk-loaded in {:.1f} s into {} sealed segment(s); "
             "seal threshold {}, background compaction on\n",
             data.name, n, dim, MetricName(c.metric), tl.Seconds(), start_info.sealed_segments,
             spec.seal_threshold);
  fmt::print("{} reader(s): k={}, recall target {}, {} queries in turn; {} writer(s): batches of {} base "
             "vectors re-upserted under their own ids, durability sync; {} s per phase\n",
             c.readers, c.k, c.recall_target, nq, c.writers, batch, c.seconds);
  const EngineCounters before = engine->counters();

  // Phase 0 ("idle"): readers only; phase 1 ("writes"): readers and writers.
  std::atomic<int> phase{0};
  const auto origin = std::chrono::steady_clock::now();
  auto since_origin = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - origin).count(); };
  std::atomic<bool> stop{false};
  std::vector<std::array<PhaseStats, 2>> reader_stats(c.readers);
  std::vector<Status> reader_status(c.readers, Status::Ok());
  std::vector<std::thread> readers;
  SearchOptions so;
  so.k = c.k;
  so.recall = c.recall_target;
  for (size_t r = 0; r < c.readers; ++r) {
    readers.emplace_back([&, r] {
      size_t q = r * nq / c.readers;  // each reader from its own offset
      Explain explain;
      while (!stop.load(std::memory_order_relaxed)) {
        const int ph = phase.load(std::memory_order_relaxed);
        const ThreadUsage u0 = ThreadUsage::Now();
        const double at = since_origin();
        Timer t;
        auto result = engine->Search(name, std::span<const float>(data.queries.row(q), dim), so,
                                     c.show_slowest ? &explain : nullptr);
        const double ms = t.Millis();
        const ThreadUsage u1 = ThreadUsage::Now();
        if (!result) {
          reader_status[r] = result.error();
          stop = true;
          return;
        }
        PhaseStats& st = reader_stats[r][ph];
        st.costs.push_back({ms, u1.cpu_ms - u0.cpu_ms, u1.nvcsw - u0.nvcsw, u1.nivcsw - u0.nivcsw,
                            u1.minflt - u0.minflt, at});
        st.recall_sum += eval.QueryRecall(q, result->data(), result->size());
        if (c.show_slowest) st.OfferSlow(c.show_slowest, {ms, u1.cpu_ms - u0.cpu_ms, q, explain});
        q = (q + 1) % nq;
      }
    });
  }
  WaitUnlessStopped(c.seconds, stop);

  std::atomic<size_t> next_batch{0};
  std::vector<size_t> written(c.writers, 0);
  std::vector<std::vector<double>> write_ms(c.writers);
  std::vector<Status> writer_status(c.writers, Status::Ok());
  std::vector<std::thread> writers;
  const double writes_start = since_origin();
  phase = 1;
  Timer tw;
  for (size_t w = 0; w < c.writers; ++w) {
    writers.emplace_back([&, w] {
      WriteBatch b;
      while (!stop.load(std::memory_order_relaxed)) {
        const size_t first = next_batch.fetch_add(1) * batch % n;
        b.Clear();
        for (size_t j = 0; j < batch; ++j) {
          const size_t row = (first + j) % n;
          b.Upsert(VectorId(row), std::span<const float>(data.base.row(row), dim));
        }
        Timer t;
        Status s = engine->Write(name, b);
        if (!s.ok()) {
          writer_status[w] = s;
          stop = true;
          return;
        }
        write_ms[w].push_back(t.Millis());
        written[w] += batch;
      }
    });
  }
  WaitUnlessStopped(c.seconds, stop);
  stop = true;
  for (auto& t : writers) t.join();
  const double writes_s = tw.Seconds();  // includes the batches in flight when the phase ended
  for (auto& t : readers) t.join();
  for (const Status& s : reader_status) STRATA_RETURN_IF_ERROR(s);
  for (const Status& s : writer_status) STRATA_RETURN_IF_ERROR(s);

  std::array<PhaseStats, 2> phases;
  for (const auto& per_reader : reader_stats) {
    for (int ph = 0; ph < 2; ++ph) phases[ph].Merge(per_reader[ph]);
  }
  for (auto& p : phases) p.Finish();
  if (latency_log) STRATA_RETURN_IF_ERROR(latency_log->Write(phases, writes_start));
  size_t vectors = 0;
  std::vector<double> all_write_ms;
  for (size_t w = 0; w < c.writers; ++w) {
    vectors += written[w];
    all_write_ms.insert(all_write_ms.end(), write_ms[w].begin(), write_ms[w].end());
  }
  std::sort(all_write_ms.begin(), all_write_ms.end());
  const double upserts_per_s = double(vectors) / writes_s;
  const EngineCounters after = engine->counters();
  STRATA_ASSIGN_OR_RETURN(CollectionInfo end_info, engine->DescribeCollection(name));

  const std::string recall_col = "recall@" + std::to_string(c.k);
  fmt::print("\n{:<7} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>10}\n", "phase", "searches", "QPS", "p50 ms",
             "p90 ms", "p99 ms", "max ms", recall_col);
  const char* labels[2] = {"idle", "writes"};
  for (int ph = 0; ph < 2; ++ph) {
    const PhaseStats& p = phases[ph];
    const double phase_s = ph == 0 ? c.seconds : writes_s;
    fmt::print("{:<7} {:>9} {:>9.1f} {:>8.3f} {:>8.3f} {:>8.3f} {:>9.3f} {:>10.4f}\n", labels[ph],
               p.searches(), double(p.searches()) / phase_s,
               PercentileOfSorted<double>(p.latency_ms, 0.5),
               PercentileOfSorted<double>(p.latency_ms, 0.9),
               PercentileOfSorted<double>(p.latency_ms, 0.99),
               p.latency_ms.empty() ? 0.0 : p.latency_ms.back(), p.recall());
  }
  // Where the time of the slowest 1% went: CPU (work, page faults) or waiting
  // (preempted: involuntary switches; blocked on a lock or I/O: voluntary ones).
  fmt::print("\n{:<7} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "phase", "part", "wall ms", "cpu ms",
             "off-cpu", "vol csw", "invol csw", "minflt");
  for (int ph = 0; ph < 2; ++ph) {
    for (bool tail : {false, true}) {
      const SearchCost m = phases[ph].Summary(tail);
      fmt::print("{:<7} {:>6} {:>9.3f} {:>9.3f} {:>9.3f} {:>9.2f} {:>9.2f} {:>9.2f}\n", labels[ph],
                 tail ? ">=p99" : "all", m.wall_ms, m.cpu_ms, std::max(0.0, m.wall_ms - m.cpu_ms),
                 double(m.nvcsw) / 100, double(m.nivcsw) / 100, double(m.minflt) / 100);
    }
  }
  fmt::print("(wall and CPU: medians; switches and minor faults: means per search)\n");
  for (int ph = 0; ph < 2; ++ph) {
    auto slow = phases[ph].slowest;
    std::sort(slow.begin(), slow.end(),
              [](const SlowSearch& a, const SlowSearch& b) { return a.wall_ms > b.wall_ms; });
    if (slow.size() > c.show_slowest) slow.resize(c.show_slowest);
    for (const SlowSearch& s : slow) {
      fmt::print("\nslow search ({}): query {}, {:.3f} ms wall, {:.3f} ms CPU\n{}", labels[ph], s.query,
                 s.wall_ms, s.cpu_ms, s.explain.ToString());
    }
  }
  fmt::print("writes: {} vectors in {:.1f} s = {:.0f} vectors/s ({} batches; write latency p50 {:.1f} ms, "
             "p99 {:.1f} ms, max {:.1f} ms)\n",
             vectors, writes_s, upserts_per_s, all_write_ms.size(),
             PercentileOfSorted<double>(all_write_ms, 0.5),
             PercentileOfSorted<double>(all_write_ms, 0.99),
             all_write_ms.empty() ? 0.0 : all_write_ms.back());
  fmt::print("engine during the writes: sealed segments {} -> {}, {} calibrations ({:.1f} s), {:.1f} s of "
             "compaction index builds\n",
             start_info.sealed_segments, end_info.sealed_segments, after.calibrations - before.calibrations,
             after.calibration_seconds - before.calibration_seconds,
             after.index_build_seconds - before.index_build_seconds);
  Timer tc;
  engine.reset();  // waits for a compaction in progress; before the scratch directory goes
  fmt::print("engine closed in {:.1f} s\n", tc.Seconds());

  auto ms = [](double v) { return std::round(v * 1e4) / 1e4; };  // 0.1 us is plenty
  nlohmann::ordered_json j;
  j["bench"] = "engine_mixed";
  j["dataset"] = data.name;
  j["readers"] = c.readers;
  j["writers"] = c.writers;
  j["seconds"] = c.seconds;
  j["batch"] = batch;
  j["k"] = c.k;
  j["recall_target"] = c.recall_target;
  j["queries"] = nq;
  j["base"] = n;
  j["searches_idle"] = phases[0].searches();
  j["searches_writes"] = phases[1].searches();
  j["search_p50_idle_ms"] = ms(PercentileOfSorted<double>(phases[0].latency_ms, 0.5));
  j["search_p99_idle_ms"] = ms(PercentileOfSorted<double>(phases[0].latency_ms, 0.99));
  j["search_p50_writes_ms"] = ms(PercentileOfSorted<double>(phases[1].latency_ms, 0.5));
  j["search_p99_writes_ms"] = ms(PercentileOfSorted<double>(phases[1].latency_ms, 0.99));
  j["search_max_writes_ms"] = ms(phases[1].latency_ms.empty() ? 0.0 : phases[1].latency_ms.back());
  for (int ph = 0; ph < 2; ++ph) {
    const SearchCost m = phases[ph].Summary(true);
    const std::string p = std::string("tail_") + labels[ph];
    j[p + "_cpu_ms"] = ms(m.cpu_ms);
    j[p + "_offcpu_ms"] = ms(std::max(0.0, m.wall_ms - m.cpu_ms));
    j[p + "_nvcsw"] = double(m.nvcsw) / 100;
    j[p + "_nivcsw"] = double(m.nivcsw) / 100;
    j[p + "_minflt"] = double(m.minflt) / 100;
  }
  j["recall_idle"] = std::round(phases[0].recall() * 1e5) / 1e5;
  j["recall"] = std::round(phases[1].recall() * 1e5) / 1e5;
  j["upserts_per_s"] = std::round(upserts_per_s * 10) / 10;
  j["vectors_upserted"] = vectors;
  j["write_p50_ms"] = ms(PercentileOfSorted<double>(all_write_ms, 0.5));
  j["write_p99_ms"] = ms(PercentileOfSorted<double>(all_write_ms, 0.99));
  j["sealed_segments_start"] = start_info.sealed_segments;
  j["sealed_segments_end"] = end_info.sealed_segments;
  j["insert_nice"] = c.insert_nice;
  j["insert_threads"] = c.insert_threads;
  j["maintenance_nice"] = c.maintenance_nice;
  j["maintenance_threads"] = c.maintenance_threads;
  j["background_idle"] = c.background_idle;
  j["memory_ef_construction"] = c.memory_ef_construction;
  j["rev"] = GitRevision();
  fmt::print("JSON {}\n", j.dump());
  return Status::Ok();
}

}  // namespace

Status RunEngineBench(const LoadedDataset& data, const EngineBenchConfig& c) {
  if (c.mixed) return RunMixed(data, c);
  if (!c.latency_log.empty()) return InvalidArgument("engine-bench: --latency-log needs --mixed");
  const size_t n = data.base.size(), dim = data.base.dim();
  const size_t nq = c.max_queries ? std::min(c.max_queries, data.queries.size()) : data.queries.size();
  STRATA_ASSIGN_OR_RETURN(RecallEvaluator eval,
                          RecallEvaluator::Create(data.base, data.queries, data.gt, c.metric, c.k));
  // Scratch space: a fresh temporary directory, or the one given if this tool may use it
  // (new, empty, or marked by an earlier run; never one whose LOCK is held).
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<ScratchDir> scratch,
                          ScratchDir::Claim(c.data_dir, "strata-engine-bench", "strata engine-bench"));
  if (c.keep) scratch->Keep();
  fmt::print("engine data directory: {}{}\n", scratch->path().string(), c.keep ? " (kept)" : "");
  EngineOptions options;
  options.progress = !Progress::GlobalQuiet();  // the compaction it waits for
  STRATA_ASSIGN_OR_RETURN(auto engine, Engine::Open(scratch->path(), options));
  CollectionSpec spec;
  spec.name = "bench";
  spec.dim = dim;
  spec.metric = c.metric;
  spec.hnsw_M = c.M;
  spec.hnsw_ef_construction = c.ef_construction;
  spec.seal_threshold = (n + c.seals - 1) / std::max<size_t>(1, c.seals);
  STRATA_RETURN_IF_ERROR(engine->CreateCollection(spec));

  // 1. Upserts, batches of c.batch, durability kSync (the default).
  fmt::print("engine-bench {}: {} x {} ({}), batches of {}, durability sync, seal every {} vectors\n",
             data.name, n, dim, MetricName(c.metric), c.batch, spec.seal_threshold);
  Timer tw;
  for (size_t start = 0; start < n; start += c.batch) {
    WriteBatch b;
    const size_t end = std::min(n, start + c.batch);
    for (size_t i = start; i < end; ++i) {
      b.Upsert(i, std::span<const float>(data.base.row(i), dim));
    }
    STRATA_RETURN_IF_ERROR(engine->Write("bench", b));
  }
  STRATA_RETURN_IF_ERROR(engine->Flush("bench"));
  const double write_s = tw.Seconds();
  const EngineCounters counters = engine->counters();
  STRATA_ASSIGN_OR_RETURN(CollectionInfo info, engine->DescribeCollection("bench"));
  auto quantile = [](const HistogramSnapshot& h, double q) {
    uint64_t target = uint64_t(std::ceil(q * double(h.count))), seen = 0;
    for (size_t i = 0; i < h.counts.size(); ++i) {
      seen += h.counts[i];
      if (seen >= target) return i < h.upper_bounds_seconds.size() ? h.upper_bounds_seconds[i] * 1e3 : INFINITY;
    }
    return double(INFINITY);
  };
  fmt::print("upserts: {} vectors in {:.1f} s = {:.0f} vectors/s ({} batches, {} fsyncs, write latency "
             "p50 <= {:.1f} ms, p99 <= {:.1f} ms by histogram bucket; includes {} seals)\n",
             n, write_s, double(n) / write_s, counters.write_batches, counters.wal_fsyncs,
             quantile(counters.write_latency, 0.5), quantile(counters.write_latency, 0.99),
             info.sealed_segments);

  // 2. Search: sealed segments, then after compaction, then a fresh HNSW.
  fmt::print("\n{:<34} {:>6} {:>10} {:>10} {:>9}\n", "index", "ef", "recall@" + std::to_string(c.k), "QPS(1t)",
             "mean ms");
  auto sweep = [&](const std::string& label, auto&& search_at) -> Status {
    for (uint32_t ef : c.ef_values) {
      STRATA_ASSIGN_OR_RETURN(Point p, Measure(eval, nq, c.k, [&](size_t q) { return search_at(q, ef); }));
      fmt::print("{:<34} {:>6} {:>10.4f} {:>10.1f} {:>9.3f}\n", label, ef, p.recall, p.qps, p.mean_ms);
      fmt::print("JSON {{\"bench\":\"engine\",\"index\":\"{}\",\"ef\":{},\"recall\":{:.5f},\"qps_1t\":{:.1f},"
                 "\"mean_ms\":{:.4f},\"dataset\":\"{}\",\"rev\":\"{}\"}}\n",
                 label, ef, p.recall, p.qps, p.mean_ms, data.name, GitRevision());
    }
    return Status::Ok();
  };
  auto engine_search = [&](size_t q, uint32_t ef) {
    return engine->Search("bench", std::span<const float>(data.queries.row(q), dim), {.k = c.k, .ef = ef});
  };
  STRATA_RETURN_IF_ERROR(sweep(fmt::format("engine, {} sealed segments", info.sealed_segments), engine_search));
  Timer tc;
  STRATA_RETURN_IF_ERROR(engine->Compact("bench"));
  const double compact_s = tc.Seconds();
  STRATA_ASSIGN_OR_RETURN(info, engine->DescribeCollection("bench"));
  STRATA_RETURN_IF_ERROR(sweep("engine, after compaction", engine_search));
  fmt::print("compaction: {:.1f} s into {} segment(s)\n", compact_s, info.sealed_segments);

  index::HnswOptions ho;
  ho.M = c.M;
  ho.ef_construction = c.ef_construction;
  STRATA_ASSIGN_OR_RETURN(auto fresh, index::HnswIndex::Create(dim, c.metric, ho));
  Timer tb;
  STRATA_RETURN_IF_ERROR(fresh->AddBatch(data.base, {}));
  const double fresh_s = tb.Seconds();
  index::SearchContext ctx;
  STRATA_RETURN_IF_ERROR(sweep("fresh HNSW", [&](size_t q, uint32_t ef) {
    index::SearchParams p;
    p.k = c.k;
    p.ef = std::max(ef, c.k);
    return fresh->Search(data.queries[q], p, ctx);
  }));
  fmt::print("fresh HNSW build: {:.1f} s\n", fresh_s);
  engine.reset();  // closes the engine before the scratch directory is removed
  return Status::Ok();
}

}  // namespace strata::tools
