// Exact k-NN side by side: Strata's FlatIndex::SearchBatch against FAISS
// IndexFlatIP / IndexFlatL2 (Debian libfaiss-dev, BLAS = Debian's OpenBLAS),
// same base, same queries, same thread count, alternating runs; prints every
// run and the medians, and how often the two agree on the top-10 set.
//
//   flat_vs_faiss --base B --queries Q --metric cosine|l2 [--k 100] [--threads 2] [--reps 3]

#include <faiss/IndexFlat.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "core/timer.h"
#include "index/distance/distance.h"
#include "index/flat/flat_index.h"
#include "storage/dataset_io.h"

using namespace strata;

namespace {
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
int Die(const Status& s) {
  fmt::print(stderr, "flat_vs_faiss: {}\n", s.ToString());
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  std::string base_path, query_path, metric_name = "cosine";
  int k = 100, threads = 2, reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--base") base_path = argv[i + 1];
    else if (a == "--queries") query_path = argv[i + 1];
    else if (a == "--metric") metric_name = argv[i + 1];
    else if (a == "--k") k = std::stoi(argv[i + 1]);
    else if (a == "--threads") threads = std::stoi(argv[i + 1]);
    else if (a == "--reps") reps = std::stoi(argv[i + 1]);
    else { fmt::print(stderr, "unknown option {}\n", a); return 2; }
  }
  if (base_path.empty() || query_path.empty()) {
    fmt::print(stderr, "usage: flat_vs_faiss --base B --queries Q [--metric cosine|l2] [--k 100] "
                       "[--threads 2] [--reps 3]\n");
    return 2;
  }
  auto metric = ParseMetric(metric_name);
  if (!metric) return Die(metric.error());
  auto base = storage::ReadVectors(base_path);
  if (!base) return Die(base.error());
  auto queries = storage::ReadVectors(query_path);
  if (!queries) return Die(queries.error());
  const size_t nq = queries->size(), dim = base->dim();
  omp_set_num_threads(threads);

  // FAISS side: cosine = normalize, then inner product (same as Strata).
  auto fbase = *base->Clone();
  auto fq = *queries->Clone();
  if (*metric == Metric::kCosine) {
    fbase.NormalizeRows();
    fq.NormalizeRows();
  }
  std::unique_ptr<faiss::IndexFlat> faiss_index;
  if (*metric == Metric::kL2) faiss_index = std::make_unique<faiss::IndexFlatL2>(dim);
  else faiss_index = std::make_unique<faiss::IndexFlatIP>(dim);
  faiss_index->add(fbase.size(), fbase.data());

  auto flat = index::FlatIndex::Build(std::move(*base), *metric);
  if (!flat) return Die(flat.error());
  index::FlatIndex::BatchOptions opt;
  opt.num_threads = threads;

  fmt::print("exact top-{} of {} queries over {} x {} ({}), {} threads, strata simd {}\n", k, nq,
             (*flat)->size(), dim, MetricName(*metric), threads,
             index::SimdLevelName(index::Kernels().level));
  std::vector<float> fd(nq * k);
  std::vector<faiss::Index::idx_t> fi(nq * k);
  std::vector<Neighbor> ours;
  std::vector<double> t_ours, t_faiss;
  for (int r = 0; r < reps; ++r) {
    Timer t;
    auto res = (*flat)->SearchBatch(*queries, k, opt);
    if (!res) return Die(res.error());
    t_ours.push_back(t.Seconds());
    ours = std::move(*res);
    t.Reset();
    faiss_index->search(nq, fq.data(), k, fd.data(), fi.data());
    t_faiss.push_back(t.Seconds());
    fmt::print("run {}: strata {:.2f} s, faiss {:.2f} s\n", r + 1, t_ours.back(), t_faiss.back());
  }
  // Agreement of the top-10 sets (ties may legitimately differ).
  size_t agree = 0;
  const int kk = std::min(k, 10);
  for (size_t q = 0; q < nq; ++q) {
    std::vector<int64_t> a(kk), b(kk);
    for (int j = 0; j < kk; ++j) {
      a[j] = int64_t(ours[q * k + j].id);
      b[j] = fi[q * k + j];
    }
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    agree += a == b;
  }
  const double mo = Median(t_ours), mf = Median(t_faiss);
  fmt::print("median: strata {:.2f} s ({:.0f} q/s), faiss {:.2f} s ({:.0f} q/s), strata/faiss time "
             "ratio {:.2f}; top-{} sets identical for {:.4f} of queries\n",
             mo, nq / mo, mf, nq / mf, mo / mf, kk, double(agree) / nq);
  return 0;
}
