#include "core/metric.h"

#include <algorithm>
#include <string>

namespace strata {

std::string_view MetricName(Metric m) {
  switch (m) {
    case Metric::kL2: return "l2";
    case Metric::kInnerProduct: return "ip";
    case Metric::kCosine: return "cosine";
  }
  return "unknown";
}

Result<Metric> ParseMetric(std::string_view name) {
  std::string s(name);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "l2" || s == "euclidean" || s == "l2sq") return Metric::kL2;
  if (s == "ip" || s == "inner_product" || s == "dot") return Metric::kInnerProduct;
  if (s == "cosine" || s == "angular" || s == "cos") return Metric::kCosine;
  return Error(InvalidArgument("unknown metric '{}' (expected l2, ip or cosine)", name));
}

}  // namespace strata
