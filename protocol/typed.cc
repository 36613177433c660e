// Widening the vectors of typed requests (upsert_typed, search_typed) to float32.

#include <cmath>
#include <string>

#include "protocol/protocol.h"

namespace strata::protocol {

namespace {

// The first non-finite component of a widened float16 row, as an error naming it.
Status CheckWidenedRow(const float* v, size_t dim, std::string_view op, std::string_view what) {
  for (size_t i = 0; i < dim; ++i) {
    if (!std::isfinite(v[i])) {
      return InvalidArgument("{}: {}: component {} is {} (vector components must be finite)", op, what, i,
                             std::isnan(v[i]) ? "NaN" : (v[i] > 0 ? "+inf" : "-inf"));
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<float>> WidenedQueries(const SearchRequest& m) {
  if (m.element == ElementType::kFloat32) return m.queries;
  const uint64_t row_bytes = uint64_t{m.dim} * ElementSize(m.element);
  if (m.count == 0 || m.elements.size() != m.count * row_bytes) {
    return Error(InvalidArgument("search_typed: {} bytes of {} values for {} queries of dimension {}",
                                 m.elements.size(), ElementTypeName(m.element), m.count, m.dim));
  }
  std::vector<float> out(uint64_t{m.count} * m.dim);
  for (uint32_t q = 0; q < m.count; ++q) {
    float* dst = out.data() + uint64_t{q} * m.dim;
    WidenRow(m.element, m.elements.data() + q * row_bytes, m.dim, dst);
    if (m.element == ElementType::kFloat16) {
      STRATA_RETURN_IF_ERROR(CheckWidenedRow(dst, m.dim, "search_typed", "query " + std::to_string(q)));
    }
  }
  return out;
}

Status CheckTypedRows(const UpsertRequest& m) {
  const uint64_t row_bytes = uint64_t{m.dim} * ElementSize(m.element);
  if (m.elements.size() != m.records.size() * row_bytes) {
    return InvalidArgument("upsert_typed: {} bytes of {} values for {} records of dimension {}",
                           m.elements.size(), ElementTypeName(m.element), m.records.size(), m.dim);
  }
  return Status::Ok();
}

Result<std::vector<Record>> WidenedRecords(const UpsertRequest& m) {
  std::vector<Record> out = m.records;
  if (m.element == ElementType::kFloat32) return out;
  STRATA_RETURN_IF_ERROR(CheckTypedRows(m));
  const uint64_t row_bytes = uint64_t{m.dim} * ElementSize(m.element);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].vector.resize(m.dim);
    WidenRow(m.element, m.elements.data() + i * row_bytes, m.dim, out[i].vector.data());
    if (m.element == ElementType::kFloat16) {
      STRATA_RETURN_IF_ERROR(CheckWidenedRow(out[i].vector.data(), m.dim, "upsert_typed",
                                             "record " + std::to_string(i)));
    }
  }
  return out;
}

}  // namespace strata::protocol
