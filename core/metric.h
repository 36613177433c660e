#pragma once
// Distance metrics.
//
// Every metric is expressed as a distance where smaller is closer, so that all
// indexes share one ordering:
//   kL2            squared Euclidean distance, sum (a_i - b_i)^2
//   kInnerProduct  negated dot product, -<a, b>
//   kCosine        vectors are normalized to unit length once (at insert and at
//                  query time), then scored as negated inner product. The
//                  reported distance is -cos(a, b); 1 + distance is the usual
//                  cosine distance.

#include <cstdint>
#include <string_view>

#include "core/status.h"

namespace strata {

enum class Metric : uint8_t { kL2 = 0, kInnerProduct = 1, kCosine = 2 };

std::string_view MetricName(Metric m);
// Accepts "l2", "euclidean", "ip", "inner_product", "dot", "cosine", "angular".
Result<Metric> ParseMetric(std::string_view name);

// True when vectors must be normalized before being stored or compared.
inline bool MetricNormalizes(Metric m) { return m == Metric::kCosine; }

}  // namespace strata
