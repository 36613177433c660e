#include <fmt/core.h>

#include "tools/commands.h"
#include "tools/experiments.h"

namespace strata::tools::cmd {

int RunBenchCmd(DataArgs a, const std::string& kind, const tools::TargetOptions& topt,
                uint32_t k, int threads, size_t single_queries, bool json, const std::string& json_out,
                double min_recall) {
  Metric metric;
  auto loaded = LoadBenchData(a, metric, k);
  if (!loaded) return Fail(loaded.error());
  tools::LoadedDataset& data = *loaded;
  if (topt.deletes > 0 || !topt.selectivities.empty()) {
    if (kind != "hnsw") return Fail(InvalidArgument("--deletes and --filter need --index hnsw"));
    tools::ScenarioConfig sc;
    sc.dataset_label = data.name;
    sc.metric = metric;
    sc.k = k;
    sc.threads = threads;
    sc.M = topt.M;
    sc.ef_construction = topt.ef_construction;
    sc.ef_values = topt.ef_values;
    sc.max_queries = a.max_queries;
    sc.json_out = json_out;
    Status s = topt.deletes > 0 ? tools::RunDeleteScenario(data, topt.deletes, sc)
                                : tools::RunFilterScenario(data, topt.selectivities, sc);
    return s.ok() ? 0 : Fail(s);
  }
  auto target = tools::MakeBenchTarget(kind, topt);
  if (!target) return Fail(target.error());
  tools::BenchConfig config;
  config.dataset_label = data.name;
  config.metric = metric;
  config.k = k;
  config.threads = threads;
  if (single_queries) config.single_thread_queries = single_queries;
  config.json_out = json_out;
  config.text = !json || !json_out.empty();  // --json alone: JSON lines only on stdout
  fmt::print(config.text ? stdout : stderr, "dataset {}: {} base x {} dim, {} queries, ground truth {}\n",
             data.name, data.base.size(), data.base.dim(), data.queries.size(), a.gt);
  auto res = tools::RunBench(**target, data, config);
  if (!res) return Fail(res.error());
  if (min_recall > 0) {
    for (const auto& p : *res) {
      if (p.recall < min_recall) {
        fmt::print(stderr, "strata: recall {:.4f} is below the required {:.4f}\n", p.recall,
                   min_recall);
        return 2;
      }
    }
  }
  return 0;
}

int RunEngineBenchCmd(DataArgs a, tools::EngineBenchConfig config) {
  auto data = LoadBenchData(a, config.metric, config.k);
  if (!data) return Fail(data.error());
  config.max_queries = a.max_queries;
  Status s = tools::RunEngineBench(*data, config);
  return s.ok() ? 0 : Fail(s);
}

int RunPlannerBenchCmd(DataArgs a, PlannerBenchConfig config, bool filters_only) {
  auto data = LoadBenchData(a, config.metric, config.k);
  if (!data) return Fail(data.error());
  config.max_queries = a.max_queries;
  if (filters_only) config.targets.clear();
  Status st = RunPlannerBench(*data, config);
  return st.ok() ? 0 : Fail(st);
}

}  // namespace strata::tools::cmd
