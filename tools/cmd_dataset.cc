#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "storage/dataset_io.h"
#include "tools/commands.h"
#include "tools/import.h"

namespace strata::tools::cmd {

int RunImportGlove(const std::string& json, const std::string& query_ids, const std::string& out_dir) {
  Status s = ImportGlove(json, query_ids, out_dir);
  if (!s.ok()) return Fail(s);
  fmt::print("wrote {}/base.fbin and {}/query.fbin\n", out_dir, out_dir);
  return 0;
}

int RunImportIdx(const std::string& images, const std::string& out) {
  Status s = ImportIdx(images, out);
  if (!s.ok()) return Fail(s);
  fmt::print("wrote {}\n", out);
  return 0;
}

int RunDatasetInfo(const std::string& path, bool json) {
  auto shape = storage::ProbeVectors(path);
  if (!shape) return Fail(shape.error());
  if (json) {
    fmt::print("{}\n", nlohmann::ordered_json{{"path", path},
                                              {"rows", shape->rows},
                                              {"dim", shape->dim},
                                              {"format", storage::DatasetFormatName(shape->format)},
                                              {"value_type", shape->value_type}}
                           .dump());
    return 0;
  }
  fmt::print("{}: {} rows x {} dim ({}, {})\n", path, shape->rows, shape->dim,
             storage::DatasetFormatName(shape->format), shape->value_type);
  return 0;
}

int RunDatasetList(bool json) {
  for (const auto& d : KnownDatasets()) {
    if (json) {
      fmt::print("{}\n", nlohmann::ordered_json{{"name", d.name},
                                                {"metric", MetricName(d.default_metric)},
                                                {"description", d.description}}
                             .dump());
      continue;
    }
    fmt::print("{:<15} {:<7} {}\n", d.name, MetricName(d.default_metric), d.description);
  }
  return 0;
}

int RunSynth(const std::string& out_dir, const SynthOptions& options) {
  if (Status s = WriteSynthetic(out_dir, options); !s.ok()) return Fail(s);
  fmt::print("wrote SYNTHETIC data to {}: base.fbin ({} x {}), query.fbin ({})\n", out_dir,
             options.num_base, options.dim, options.num_queries);
  return 0;
}

}  // namespace strata::tools::cmd
