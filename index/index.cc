#include "index/index.h"

#include <cmath>

namespace strata::index {

float* SearchContext::Floats(size_t n) {
  if (n > floats_size_) {
    floats_.reset(static_cast<float*>(AlignedAlloc(n * sizeof(float))));
    STRATA_CHECK(floats_ != nullptr);
    floats_size_ = n;
  }
  return floats_.get();
}

Status ValidateQuery(VectorView query, size_t dim, const SearchParams& params) {
  if (query.dim != dim) {
    return InvalidArgument("query has dimension {}, index expects {}", query.dim, dim);
  }
  if (params.k == 0) return InvalidArgument("k must be at least 1");
  for (size_t i = 0; i < query.dim; ++i) {
    if (!std::isfinite(query.data[i])) {
      return InvalidArgument("query component {} is not finite ({})", i, query.data[i]);
    }
  }
  return Status::Ok();
}

}  // namespace strata::index
