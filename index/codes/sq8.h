#pragma once
// SQ8: scalar quantization of float vectors to one unsigned byte per dimension.
//
// A trained encoder holds, per dimension d, an offset lo[d] and a step scale[d]
// (from the training rows' per-dimension minimum and maximum): a value x is coded
// as round((x - lo) / scale) clamped to [0, 255] and decoded as lo + scale * code.
// A code's decoded vector is x^. A dimension whose training values are all integers
// spanning at most 255 (uint8 pixels, int8 embeddings, small counts) gets a step of
// exactly 1 instead of (max - min) / 255, so that its codes are its values: data
// that arrived as uint8 or int8 lose nothing to the codes (Sq8Encoder::exact).
//
// Distances are asymmetric (a float query against byte codes), which keeps the
// query exact and loses only the codes' rounding:
//   q . x^      = sum_d q[d] lo[d] + sum_d (q[d] scale[d]) code[d]  = bias + q'.code
//   |q - x^|^2  = |q|^2 - 2 q . x^ + |x^|^2           (|x^|^2 kept per code)
// so one kernel, a float-by-byte dot product, serves L2, inner product and
// cosine (whose vectors the caller has normalized). A second kernel quantizes q'
// itself to int8 and takes an exact integer dot product (AVX-512 VNNI vpdpbusd,
// or AVX2 madd): a little more error, fewer instructions; Sq8QueryMode picks.
//
// Kernels come in a scalar reference and AVX2 / AVX-512 versions, one translation
// unit each, chosen with the level of index/distance (Kernels().level); the VNNI
// kernel only where the CPU has AVX512_VNNI.
//
// Thread safety: Sq8Encoder is immutable after Train/FromParams (any number of
// threads may encode and prepare queries); an Sq8Query belongs to one thread.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/metric.h"
#include "core/status.h"
#include "index/distance/distance.h"

namespace strata::index {

// The kinds of vector codes an index may traverse with (HnswOptions::codes).
enum class CodesKind : uint8_t { kNone = 0, kSq8 = 1 };
std::string_view CodesKindName(CodesKind kind);
Result<CodesKind> ParseCodesKind(std::string_view name);  // "none", "sq8"

struct Sq8Kernels {
  // sum_i q[i] * c[i]
  float (*dot_f32_u8)(const float* q, const uint8_t* c, size_t dim);
  // sum_i q[i] * c[i], exact in int32 for dim <= 66,000 (|q| <= 127, c <= 255).
  int32_t (*dot_s8_u8)(const int8_t* q, const uint8_t* c, size_t dim);
  // out[i] = lo[i] + scale[i] * c[i]
  void (*decode)(const uint8_t* c, const float* lo, const float* scale, float* out, size_t dim);
  SimdLevel level;
  bool vnni;  // dot_s8_u8 uses AVX512_VNNI
};
// The kernels of `level` (falling back like KernelsFor), and of the active distance level.
const Sq8Kernels& Sq8KernelsFor(SimdLevel level);
const Sq8Kernels& Sq8KernelsActive();

// How a query is scored against codes (measured in docs/BENCHMARKS.md, section 10).
enum class Sq8QueryMode : uint8_t { kFloat = 0, kInt8 = 1 };

// A query prepared for one encoder: what the per-code distance needs.
struct Sq8Query {
  std::vector<float> qs;      // q[d] * scale[d]
  std::vector<int8_t> qi;     // qs quantized: qs ~= qi * qi_step (kInt8)
  float qi_step = 0;
  float bias = 0;             // sum_d q[d] lo[d]
  float q_norm2 = 0;          // |q|^2
  Metric metric = Metric::kL2;
  Sq8QueryMode mode = Sq8QueryMode::kFloat;
};

class Sq8Encoder {
 public:
  Sq8Encoder() = default;
  // Per-dimension minimum and maximum over `n` rows of `dim` floats (row-major); a step of
  // 1 where a dimension's values are integers spanning at most 255.
  static Result<Sq8Encoder> Train(const float* rows, size_t n, size_t dim);
  // From saved parameters; scale[d] >= 0 and finite, as many as lo.
  static Result<Sq8Encoder> FromParams(std::vector<float> lo, std::vector<float> scale);

  size_t dim() const { return lo_.size(); }
  bool trained() const { return !lo_.empty(); }
  const std::vector<float>& lo() const { return lo_; }
  const std::vector<float>& scale() const { return scale_; }
  // Train: every training row decodes from its code to exactly its own values (integer
  // data as above, and constant dimensions), so distances to those codes are the rows'
  // distances. False for an encoder made FromParams (its rows are unknown).
  bool exact() const { return exact_; }

  // code: dim bytes. Values outside the trained range are clamped.
  void Encode(const float* v, uint8_t* code) const;
  // Whether `code` decodes to exactly `v`, bit for bit (-0.0 decodes to +0.0: not exact; an
  // integer vector within the steps of 1 above is).
  bool Reproduces(const float* v, const uint8_t* code) const;
  void Decode(const uint8_t* code, float* out) const;
  // |x^|^2 of a code (the L2 term stored beside it).
  float DecodedNorm2(const uint8_t* code) const;

  // A 4-bit refinement of a code: per dimension, the value's rounding error in
  // fourteenths of the code's step, r - 7 in [-7, 7], two dimensions a byte
  // (RefinementBytes: byte j holds dimension j in its low nibble and dimension
  // j + RefinementBytes in its high one, so spreading them is two plain loops). A refined code decodes to x^ + scale * (r - 7) / 14,
  // within scale / 28 of the value wherever the value lies inside the trained
  // range, and exactly to x^ where the code was exact (r = 7: integer data such
  // as uint8 pixels, whose step is 1, stays exact).
  static size_t RefinementBytes(size_t dim) { return (dim + 1) / 2; }
  void EncodeRefinement(const float* v, const uint8_t* code, uint8_t* refinement) const;
  void DecodeRefined(const uint8_t* code, const uint8_t* refinement, float* out) const;

  void PrepareQuery(const float* q, Metric metric, Sq8QueryMode mode, Sq8Query& out) const;

 private:
  std::vector<float> lo_, scale_;
  bool exact_ = false;
};

// Distance (smaller is closer) from a prepared query to a code; `norm2` is the
// code's DecodedNorm2 (read only for L2).
inline float Sq8Distance(const Sq8Kernels& k, const Sq8Query& q, const uint8_t* code,
                         float norm2, size_t dim) {
  const float dot = q.mode == Sq8QueryMode::kFloat
                        ? k.dot_f32_u8(q.qs.data(), code, dim)
                        : float(k.dot_s8_u8(q.qi.data(), code, dim)) * q.qi_step;
  const float ip = q.bias + dot;
  return q.metric == Metric::kL2 ? q.q_norm2 - 2.0f * ip + norm2 : -ip;
}

namespace detail {
const Sq8Kernels& Sq8ScalarKernels();
const Sq8Kernels& Sq8Avx2Kernels();
const Sq8Kernels& Sq8Avx512Kernels();  // dot_s8_u8 without VNNI (AVX-512 BW madd)
const Sq8Kernels& Sq8Avx512VnniKernels();
}  // namespace detail

}  // namespace strata::index
