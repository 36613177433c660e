#include <omp.h>

#include <algorithm>

#include <fmt/core.h>

#include "core/timer.h"
#include "index/distance/distance.h"
#include "index/flat/flat_index.h"
#include "storage/dataset_io.h"
#include "tools/commands.h"
#include "tools/eval.h"

namespace strata::tools::cmd {

int RunGt(DataArgs a, uint32_t k, std::string out, int threads, std::string compare,
          uint32_t compare_k) {
  auto metric = ResolveDataArgs(a, true);
  if (!metric) return Fail(metric.error());
  if (out.empty()) out = a.gt;
  if (out.empty()) return Fail(InvalidArgument("--out is required"));
  auto base = storage::ReadVectors(a.base);
  if (!base) return Fail(base.error());
  auto queries = ReadQueries(a.queries, a.max_queries);
  if (!queries) return Fail(queries.error());
  fmt::print(stderr, "ground truth: {} queries x {} base, dim {}, {}, k={}, simd {}\n",
             queries->size(), base->size(), base->dim(), MetricName(*metric), k,
             index::SimdLevelName(index::Kernels().level));
  auto base_copy = base->Clone();
  if (!base_copy) return Fail(base_copy.error());
  auto flat = index::FlatIndex::Build(std::move(*base_copy), *metric);
  if (!flat) return Fail(flat.error());
  index::FlatIndex::BatchOptions opt;
  opt.num_threads = threads;
  opt.progress = true;
  Timer timer;
  auto result = (*flat)->SearchBatch(*queries, k, opt);
  if (!result) return Fail(result.error());
  const double seconds = timer.Seconds();
  storage::GroundTruth gt;
  gt.num_queries = queries->size();
  gt.k = std::min<size_t>(k, base->size());
  gt.ids.resize(gt.num_queries * gt.k);
  gt.distances.resize(gt.num_queries * gt.k);
  for (size_t q = 0; q < gt.num_queries; ++q) {
    for (size_t j = 0; j < gt.k; ++j) {
      const Neighbor& n = (*result)[q * k + j];
      gt.ids[q * gt.k + j] = int32_t(n.id);
      gt.distances[q * gt.k + j] = n.distance;
    }
  }
  if (Status s = storage::WriteGroundTruth(out, gt); !s.ok()) return Fail(s);
  const int used_threads = threads > 0 ? threads : omp_get_max_threads();
  fmt::print("ground truth written to {}: {} queries, k={}, {:.2f} s on {} threads ({:.0f} "
             "queries/s)\n",
             out, gt.num_queries, gt.k, seconds, used_threads, gt.num_queries / seconds);
  if (!compare.empty()) {
    auto ref = storage::ReadGroundTruth(compare);
    if (!ref) return Fail(ref.error());
    auto eval = tools::RecallEvaluator::Create(*base, *queries, *ref, *metric, compare_k);
    if (!eval) return Fail(eval.error());
    const double exact = eval->ExactSetAgreement(*result, k, queries->size());
    const double recall = eval->Recall(*result, k, queries->size());
    size_t tie_equal = 0;
    for (size_t q = 0; q < queries->size(); ++q) {
      if (eval->QueryRecall(q, result->data() + q * k, k) == 1.0) ++tie_equal;
    }
    fmt::print("compared with {} at k={}: identical top-{} sets for {:.4f} of queries, "
               "{:.4f} counting ties; recall@{} {:.5f}\n",
               compare, compare_k, compare_k, exact, double(tie_equal) / queries->size(),
               compare_k, recall);
  }
  return 0;
}

}  // namespace strata::tools::cmd
