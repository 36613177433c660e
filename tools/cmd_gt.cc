#include <omp.h>

#include <algorithm>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "core/timer.h"
#include "index/distance/distance.h"
#include "storage/dataset_io.h"
#include "tools/commands.h"
#include "tools/eval.h"
#include "tools/gt_cache.h"

namespace strata::tools::cmd {

int RunGt(DataArgs a, uint32_t k, std::string out, int threads, std::string compare,
          uint32_t compare_k, bool json) {
  auto metric = ResolveDataArgs(a, true);
  if (!metric) return Fail(metric.error());
  if (out.empty()) out = a.gt;
  if (out.empty()) return Fail(InvalidArgument("--out is required"));
  auto base = ReadVectorFile(a.base);
  if (!base) return Fail(base.error());
  auto queries = ReadQueries(a.queries, a.max_queries);
  if (!queries) return Fail(queries.error());
  fmt::print(stderr, "ground truth: {} queries x {} base, dim {}, {}, k={}, simd {}\n",
             queries->size(), base->size(), base->dim(), MetricName(*metric), k,
             index::SimdLevelName(index::Kernels().level));
  Timer timer;
  auto computed = tools::ComputeGroundTruth(*base, *queries, *metric, k, threads);
  if (!computed) return Fail(computed.error());
  const double seconds = timer.Seconds();
  const storage::GroundTruth& gt = *computed;
  if (Status s = storage::WriteGroundTruth(out, gt); !s.ok()) return Fail(s);
  const int used_threads = threads > 0 ? threads : omp_get_max_threads();
  nlohmann::ordered_json j = {{"command", "gt"},     {"out", out},
                              {"queries", gt.num_queries}, {"base", base->size()},
                              {"dim", base->dim()},  {"metric", MetricName(*metric)},
                              {"k", gt.k},           {"seconds", seconds},
                              {"threads", used_threads}};
  if (!json) fmt::print("ground truth written to {}: {} queries, k={}, {:.2f} s on {} threads ({:.0f} "
             "queries/s)\n",
             out, gt.num_queries, gt.k, seconds, used_threads, gt.num_queries / seconds);
  if (!compare.empty()) {
    auto ref = storage::ReadGroundTruth(compare);
    if (!ref) return Fail(ref.error());
    auto eval = tools::RecallEvaluator::Create(*base, *queries, *ref, *metric, compare_k);
    if (!eval) return Fail(eval.error());
    // The computed rows as search results, k per query (padded when the base is smaller).
    std::vector<Neighbor> result(queries->size() * k);
    for (size_t q = 0; q < gt.num_queries; ++q) {
      for (size_t j = 0; j < gt.k; ++j) {
        result[q * k + j] = Neighbor{VectorId(gt.ids[q * gt.k + j]), gt.distances[q * gt.k + j]};
      }
    }
    const double exact = eval->ExactSetAgreement(result, k, queries->size());
    const double recall = eval->Recall(result, k, queries->size());
    size_t tie_equal = 0;
    for (size_t q = 0; q < queries->size(); ++q) {
      if (eval->QueryRecall(q, result.data() + q * k, k) == 1.0) ++tie_equal;
    }
    j["compare"] = {{"reference", compare}, {"k", compare_k}, {"identical_sets", exact},
                    {"identical_with_ties", double(tie_equal) / queries->size()}, {"recall", recall}};
    if (!json) fmt::print("compared with {} at k={}: identical top-{} sets for {:.4f} of queries, "
               "{:.4f} counting ties; recall@{} {:.5f}\n",
               compare, compare_k, compare_k, exact, double(tie_equal) / queries->size(),
               compare_k, recall);
  }
  if (json) fmt::print("{}\n", j.dump());
  return 0;
}

}  // namespace strata::tools::cmd
