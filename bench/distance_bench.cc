// Distance kernel micro-benchmark: Strata's levels against hnswlib's SIMD kernels.
//
// Each benchmark scores one query against a working set of kWorkingSet vectors,
// cycled, so the data is not a single hot cache line (at d = 960 the set is ~4 MB,
// out of L2, as in a real graph walk). Every variant sees the same data and the same
// loop, so the reported time_per_dist compares kernels, not harnesses.
//
// Names: {l2sq,ip}/{strata_<level>,hnswlib}/<dim> for one pair per call, and
// {l2sq,ip}_batch/strata_<level>/<dim> for the one-query-vs-rows batch kernels.
//
// Run: distance_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true

#include <benchmark/benchmark.h>

#include <cstddef>
#include <random>
#include <string>
#include <vector>

#include "index/distance/distance.h"

#if defined(STRATA_HAVE_HNSWLIB)
#include <hnswlib/hnswlib.h>
#endif

namespace strata::index {
namespace {

constexpr size_t kWorkingSet = 1024;
constexpr size_t kDims[] = {100, 128, 784, 960};

struct Data {
  std::vector<float> query;
  std::vector<float> base;  // kWorkingSet rows of dim floats.
};

Data MakeData(size_t dim) {
  std::mt19937 rng(static_cast<unsigned>(dim));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Data d;
  d.query.resize(dim);
  d.base.resize(kWorkingSet * dim);
  for (float& x : d.query) x = dist(rng);
  for (float& x : d.base) x = dist(rng);
  return d;
}

// time_per_dist = time / (iterations * kWorkingSet); an inverted rate, so Google
// Benchmark prints it with time units ("4.56ns").
void ReportPerDistance(benchmark::State& state) {
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kWorkingSet));
  state.counters["time_per_dist"] = benchmark::Counter(
      static_cast<double>(kWorkingSet),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

using PairFn = float (*)(const float*, const float*, size_t);

void BM_StrataPair(benchmark::State& state, PairFn fn, size_t dim) {
  const Data data = MakeData(dim);
  for (auto _ : state) {
    float sum = 0.0f;
    for (size_t i = 0; i < kWorkingSet; ++i) {
      sum += fn(data.query.data(), data.base.data() + i * dim, dim);
    }
    benchmark::DoNotOptimize(sum);
  }
  ReportPerDistance(state);
}

using BatchFn = void (*)(const float*, const float*, size_t, size_t, float*);

void BM_StrataBatch(benchmark::State& state, BatchFn fn, size_t dim) {
  const Data data = MakeData(dim);
  std::vector<float> out(kWorkingSet);
  for (auto _ : state) {
    fn(data.query.data(), data.base.data(), kWorkingSet, dim, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  ReportPerDistance(state);
}

#if defined(STRATA_HAVE_HNSWLIB)
// hnswlib picks its kernel per dim in the space constructor (AVX-512 / AVX / SSE,
// with or without a residual loop), exactly as its index would use it.
void BM_Hnswlib(benchmark::State& state, hnswlib::SpaceInterface<float>* space, size_t dim) {
  const Data data = MakeData(dim);
  hnswlib::DISTFUNC<float> fn = space->get_dist_func();
  const void* param = space->get_dist_func_param();
  for (auto _ : state) {
    float sum = 0.0f;
    for (size_t i = 0; i < kWorkingSet; ++i) {
      sum += fn(data.query.data(), data.base.data() + i * dim, param);
    }
    benchmark::DoNotOptimize(sum);
  }
  ReportPerDistance(state);
}
#endif

void RegisterAll() {
  for (size_t dim : kDims) {
    const std::string d = std::to_string(dim);
    for (SimdLevel level : {SimdLevel::kScalar, SimdLevel::kAvx2, SimdLevel::kAvx512}) {
      if (!SimdSupported(level)) continue;
      const DistanceKernels& k = KernelsFor(level);
      const std::string name = "strata_" + std::string(SimdLevelName(level)) + "/" + d;
      benchmark::RegisterBenchmark(("l2sq/" + name).c_str(), BM_StrataPair, k.l2sq, dim);
      benchmark::RegisterBenchmark(("ip/" + name).c_str(), BM_StrataPair, k.ip, dim);
      benchmark::RegisterBenchmark(("l2sq_batch/" + name).c_str(), BM_StrataBatch, k.l2sq_batch,
                                   dim);
      benchmark::RegisterBenchmark(("ip_batch/" + name).c_str(), BM_StrataBatch, k.ip_batch, dim);
    }
#if defined(STRATA_HAVE_HNSWLIB)
    // Spaces live for the whole run; the registered closures keep raw pointers.
    auto* l2 = new hnswlib::L2Space(dim);
    auto* ip = new hnswlib::InnerProductSpace(dim);
    benchmark::RegisterBenchmark(("l2sq/hnswlib/" + d).c_str(), BM_Hnswlib, l2, dim);
    benchmark::RegisterBenchmark(("ip/hnswlib/" + d).c_str(), BM_Hnswlib, ip, dim);
#endif
  }
}

}  // namespace
}  // namespace strata::index

int main(int argc, char** argv) {
  strata::index::RegisterAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
