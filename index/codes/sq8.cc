// SQ8 training, encoding, query preparation, and the choice of kernels.

#include "index/codes/sq8.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cmath>
#include <limits>

namespace strata::index {

std::string_view CodesKindName(CodesKind kind) {
  switch (kind) {
    case CodesKind::kNone:
      return "none";
    case CodesKind::kSq8:
      return "sq8";
  }
  return "unknown";
}

Result<CodesKind> ParseCodesKind(std::string_view name) {
  if (name == "none") return CodesKind::kNone;
  if (name == "sq8") return CodesKind::kSq8;
  return Error(InvalidArgument("unknown codes kind '{}': expected none or sq8", name));
}

namespace {
bool CpuHasVnni() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni");
}
}  // namespace

const Sq8Kernels& Sq8KernelsFor(SimdLevel level) {
  // KernelsFor applies the CPU checks and the fall-back; follow its choice.
  switch (KernelsFor(level).level) {
    case SimdLevel::kAvx512: {
      static const bool vnni = CpuHasVnni();
      return vnni ? detail::Sq8Avx512VnniKernels() : detail::Sq8Avx512Kernels();
    }
    case SimdLevel::kAvx2:
      return detail::Sq8Avx2Kernels();
    case SimdLevel::kScalar:
      break;
  }
  return detail::Sq8ScalarKernels();
}

const Sq8Kernels& Sq8KernelsActive() { return Sq8KernelsFor(Kernels().level); }

Result<Sq8Encoder> Sq8Encoder::Train(const float* rows, size_t n, size_t dim) {
  if (dim == 0) return Error(InvalidArgument("SQ8 training: dimension must be at least 1"));
  if (n == 0) return Error(InvalidArgument("SQ8 training needs at least one vector"));
  std::vector<float> lo(dim, std::numeric_limits<float>::infinity());
  std::vector<float> hi(dim, -std::numeric_limits<float>::infinity());
  std::vector<char> integral(dim, 1);  // every value of the dimension is an integer
  for (size_t i = 0; i < n; ++i) {
    const float* r = rows + i * dim;
    for (size_t d = 0; d < dim; ++d) {
      if (!std::isfinite(r[d])) {
        return Error(InvalidArgument("SQ8 training: row {} dimension {} is not finite", i, d));
      }
      lo[d] = std::min(lo[d], r[d]);
      hi[d] = std::max(hi[d], r[d]);
      integral[d] &= char(r[d] == std::nearbyint(r[d]));
    }
  }
  // Dimensions of integers spanning at most 255 (uint8 or int8 data) get a step of 1.
  std::vector<float> scale(dim);
  for (size_t d = 0; d < dim; ++d) {
    scale[d] = integral[d] && hi[d] - lo[d] <= 255.0f && hi[d] > lo[d] ? 1.0f : (hi[d] - lo[d]) / 255.0f;
  }
  STRATA_ASSIGN_OR_RETURN(Sq8Encoder e, FromParams(std::move(lo), std::move(scale)));
  // Exact when every training value decodes back to itself (checked, not assumed: a large
  // offset can round lo + code in float).
  std::vector<uint8_t> code(dim);
  bool exact = true;
  for (size_t i = 0; i < n && exact; ++i) {
    e.Encode(rows + i * dim, code.data());
    exact = e.Reproduces(rows + i * dim, code.data());
  }
  e.exact_ = exact;
  return e;
}

Result<Sq8Encoder> Sq8Encoder::FromParams(std::vector<float> lo, std::vector<float> scale) {
  if (lo.empty() || lo.size() != scale.size()) {
    return Error(InvalidArgument("SQ8 parameters: {} offsets and {} scales (need equal, non-zero)",
                                 lo.size(), scale.size()));
  }
  for (size_t d = 0; d < lo.size(); ++d) {
    if (!std::isfinite(lo[d]) || !std::isfinite(scale[d]) || scale[d] < 0) {
      return Error(InvalidArgument("SQ8 parameters: dimension {} has offset {} and scale {}", d,
                                   lo[d], scale[d]));
    }
  }
  Sq8Encoder e;
  e.lo_ = std::move(lo);
  e.scale_ = std::move(scale);
  return e;
}

void Sq8Encoder::Encode(const float* v, uint8_t* code) const {
  for (size_t d = 0; d < lo_.size(); ++d) {
    if (scale_[d] == 0) {
      code[d] = 0;
      continue;
    }
    const float c = std::nearbyint((v[d] - lo_[d]) / scale_[d]);
    // NaN compares false both ways and lands on 0.
    code[d] = c >= 255.0f ? uint8_t(255) : (c > 0.0f ? uint8_t(c) : uint8_t(0));
  }
}

bool Sq8Encoder::Reproduces(const float* v, const uint8_t* code) const {
  for (size_t d = 0; d < lo_.size(); ++d) {
    // Bit for bit: -0.0 decodes to +0.0, which compares equal but is not the value written.
    const float decoded = lo_[d] + scale_[d] * float(code[d]);
    if (std::bit_cast<uint32_t>(decoded) != std::bit_cast<uint32_t>(v[d])) return false;
  }
  return true;
}

void Sq8Encoder::Decode(const uint8_t* code, float* out) const {
  for (size_t d = 0; d < lo_.size(); ++d) out[d] = lo_[d] + scale_[d] * float(code[d]);
}

float Sq8Encoder::DecodedNorm2(const uint8_t* code) const {
  float s = 0;
  for (size_t d = 0; d < lo_.size(); ++d) {
    const float x = lo_[d] + scale_[d] * float(code[d]);
    s += x * x;
  }
  return s;
}

void Sq8Encoder::EncodeRefinement(const float* v, const uint8_t* code, uint8_t* refinement) const {
  const size_t dim = lo_.size();
  std::fill_n(refinement, RefinementBytes(dim), uint8_t(0));
  for (size_t d = 0; d < dim; ++d) {
    uint8_t r = 0;
    if (scale_[d] > 0) {
      // The rounding error in fourteenths of a step, shifted to [0, 14]: rounding
      // put it in [-7, 7]; a clamped value lands on the nearest end.
      const float x = std::nearbyint((v[d] - (lo_[d] + scale_[d] * float(code[d]))) / scale_[d] * 14.0f) + 7.0f;
      r = x >= 14.0f ? uint8_t(14) : (x > 0.0f ? uint8_t(x) : uint8_t(0));  // NaN -> 0
    }
    const size_t half = RefinementBytes(dim);
    refinement[d < half ? d : d - half] |= uint8_t(d < half ? r : r << 4);
  }
}

void Sq8Encoder::DecodeRefined(const uint8_t* code, const uint8_t* refinement, float* out) const {
  const size_t half = RefinementBytes(lo_.size());
  for (size_t d = 0; d < lo_.size(); ++d) {
    const float r = float(d < half ? refinement[d] & 15u : refinement[d - half] >> 4);
    out[d] = lo_[d] + scale_[d] * (float(code[d]) + (r - 7.0f) * (1.0f / 14.0f));
  }
}

void Sq8Encoder::PrepareQuery(const float* q, Metric metric, Sq8QueryMode mode,
                              Sq8Query& out) const {
  const size_t dim = lo_.size();
  out.metric = metric;
  out.mode = mode;
  out.qs.resize(dim);
  float bias = 0, norm2 = 0, amax = 0;
  for (size_t d = 0; d < dim; ++d) {
    out.qs[d] = q[d] * scale_[d];
    bias += q[d] * lo_[d];
    norm2 += q[d] * q[d];
    amax = std::max(amax, std::fabs(out.qs[d]));
  }
  out.bias = bias;
  out.q_norm2 = norm2;
  if (mode == Sq8QueryMode::kInt8) {
    out.qi.resize(dim);
    out.qi_step = amax > 0 ? amax / 127.0f : 1.0f;
    for (size_t d = 0; d < dim; ++d) {
      out.qi[d] = int8_t(std::clamp(std::nearbyint(out.qs[d] / out.qi_step), -127.0f, 127.0f));
    }
  }
}

}  // namespace strata::index
