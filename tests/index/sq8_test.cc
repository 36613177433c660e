// SQ8 codes: every SIMD level of the kernels against the scalar reference, and the
// quantized distances against float distances.
//
// Integer-valued float queries keep every partial sum exact, so the float-by-byte
// kernels must match the scalar loop bit for bit whatever order they add in; the
// int8 kernel is exact by construction. Codes sit at the very end of their own heap
// block (std::vector of exactly dim bytes), so under ASan a kernel that reads one
// byte past a tail fails.

#include "index/codes/sq8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

namespace strata::index {
namespace {

std::vector<SimdLevel> Levels() {
  std::vector<SimdLevel> out;
  for (SimdLevel l : {SimdLevel::kScalar, SimdLevel::kAvx2, SimdLevel::kAvx512}) {
    if (SimdSupported(l)) out.push_back(l);
  }
  return out;
}

TEST(Sq8Kernels, EveryLevelMatchesScalarExactlyOnIntegerInputs) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255), small(-8, 8), s8(-127, 127);
  const Sq8Kernels& ref = detail::Sq8ScalarKernels();
  for (SimdLevel level : Levels()) {
    const Sq8Kernels& k = Sq8KernelsFor(level);
    ASSERT_EQ(k.level, level);
    for (size_t dim = 1; dim <= 257; ++dim) {
      std::vector<uint8_t> c(dim);
      std::vector<float> q(dim), lo(dim), scale(dim);
      std::vector<int8_t> qi(dim);
      for (size_t i = 0; i < dim; ++i) {
        c[i] = uint8_t(byte(rng));
        q[i] = float(small(rng));
        qi[i] = int8_t(s8(rng));
        lo[i] = float(small(rng)) * 0.25f;
        scale[i] = float(byte(rng)) / 256.0f;
      }
      ASSERT_EQ(k.dot_f32_u8(q.data(), c.data(), dim), ref.dot_f32_u8(q.data(), c.data(), dim))
          << SimdLevelName(level) << " dim " << dim;
      ASSERT_EQ(k.dot_s8_u8(qi.data(), c.data(), dim), ref.dot_s8_u8(qi.data(), c.data(), dim))
          << SimdLevelName(level) << " dim " << dim;
      std::vector<float> a(dim), b(dim);
      k.decode(c.data(), lo.data(), scale.data(), a.data(), dim);
      ref.decode(c.data(), lo.data(), scale.data(), b.data(), dim);
      ASSERT_EQ(a, b) << SimdLevelName(level) << " dim " << dim;
    }
  }
}

TEST(Sq8Kernels, Int8DotIsExactAtExtremes) {
  // 255 * -127 in every lane: the widening kernels must not saturate.
  for (SimdLevel level : Levels()) {
    const Sq8Kernels& k = Sq8KernelsFor(level);
    for (size_t dim : {1, 31, 64, 100, 129, 784}) {
      std::vector<uint8_t> c(dim, 255);
      std::vector<int8_t> q(dim, -127);
      EXPECT_EQ(k.dot_s8_u8(q.data(), c.data(), dim), -127 * 255 * int32_t(dim))
          << SimdLevelName(level);
    }
  }
}

// Random Gaussian rows, trained and encoded.
struct Fixture {
  size_t n = 500, dim = 100;
  std::vector<float> rows;
  Sq8Encoder enc;
  std::vector<uint8_t> codes;
  Fixture(bool normalize) {
    std::mt19937 rng(11);
    std::normal_distribution<float> g(0.0f, 1.0f);
    rows.resize(n * dim);
    for (size_t i = 0; i < n; ++i) {
      float norm = 0;
      for (size_t d = 0; d < dim; ++d) {
        rows[i * dim + d] = g(rng) * (1.0f + float(d % 7));
        norm += rows[i * dim + d] * rows[i * dim + d];
      }
      if (normalize) {
        for (size_t d = 0; d < dim; ++d) rows[i * dim + d] /= std::sqrt(norm);
      }
    }
    auto e = Sq8Encoder::Train(rows.data(), n, dim);
    EXPECT_TRUE(e.has_value());
    enc = std::move(*e);
    codes.resize(n * dim);
    for (size_t i = 0; i < n; ++i) enc.Encode(&rows[i * dim], &codes[i * dim]);
  }
};

TEST(Sq8Encoder, DecodedValuesWithinHalfAStep) {
  Fixture f(false);
  std::vector<float> x(f.dim);
  for (size_t i = 0; i < f.n; ++i) {
    f.enc.Decode(&f.codes[i * f.dim], x.data());
    for (size_t d = 0; d < f.dim; ++d) {
      ASSERT_LE(std::fabs(x[d] - f.rows[i * f.dim + d]), 0.5001f * f.enc.scale()[d] + 1e-6f);
    }
  }
}

TEST(Sq8Encoder, RefinedValuesWithinATwentyEighthOfAStep) {
  Fixture f(false);
  std::vector<float> x(f.dim), plain(f.dim);
  // Refinements sit at the end of their own heap block too: an odd dimension's last
  // byte holds one nibble, and nothing past it may be read or written.
  std::vector<uint8_t> r;
  double refined_err = 0, plain_err = 0;
  for (size_t i = 0; i < f.n; ++i) {
    r.assign(Sq8Encoder::RefinementBytes(f.dim), 0xAB);
    const float* row = &f.rows[i * f.dim];
    f.enc.EncodeRefinement(row, &f.codes[i * f.dim], r.data());
    f.enc.DecodeRefined(&f.codes[i * f.dim], r.data(), x.data());
    f.enc.Decode(&f.codes[i * f.dim], plain.data());
    for (size_t d = 0; d < f.dim; ++d) {
      ASSERT_LE(std::fabs(x[d] - row[d]), f.enc.scale()[d] / 28.0f * 1.001f + 1e-6f)
          << "row " << i << " dimension " << d;
      refined_err += std::fabs(x[d] - row[d]);
      plain_err += std::fabs(plain[d] - row[d]);
    }
  }
  // Uniform rounding errors: the mean shrinks by about the 14 fourteenths.
  EXPECT_LT(refined_err * 8, plain_err);
}

TEST(Sq8Encoder, RefinementOfAnOddDimensionAndOfClampedValues) {
  auto e = Sq8Encoder::FromParams({0.0f, 0.0f, 1.0f}, {1.0f, 0.5f, 0.0f});
  ASSERT_TRUE(e.has_value());
  ASSERT_EQ(Sq8Encoder::RefinementBytes(3), 2u);
  const float v[3] = {2.3f, 1000.0f, 3.0f};
  uint8_t c[3], r[2];
  e->Encode(v, c);
  e->EncodeRefinement(v, c, r);
  float x[3];
  e->DecodeRefined(c, r, x);
  EXPECT_NEAR(x[0], 2.3f, 1.0f / 28 + 1e-6f);
  EXPECT_NEAR(x[1], 127.5f + 0.5f * 0.5f, 1e-5f);  // clamped: half a step above the last code
  EXPECT_EQ(x[2], 1.0f);                                 // constant dimension: its offset
  EXPECT_EQ(r[1] >> 4, 0);  // the unused nibble (dimension 1 + 2 = 3) stays zero
}

// Integer data with a step of 1 (uint8 pixels): codes are exact, and so are the refined codes.
TEST(Sq8Encoder, RefinementKeepsExactCodesExact) {
  std::vector<float> rows = {0, 255, 0, 255, 0, 255, 17, 128, 64};  // each dimension spans 0..255
  auto e = Sq8Encoder::Train(rows.data(), 3, 3);
  ASSERT_TRUE(e.has_value());
  for (size_t i = 0; i < 3; ++i) {
    uint8_t c[3], r[2];
    float x[3];
    e->Encode(&rows[i * 3], c);
    e->EncodeRefinement(&rows[i * 3], c, r);
    e->DecodeRefined(c, r, x);
    for (size_t d = 0; d < 3; ++d) EXPECT_EQ(x[d], rows[i * 3 + d]) << "row " << i << " dimension " << d;
  }
}

// Dimensions of integers spanning at most 255 get a step of 1, so their codes are exact;
// wider or fractional ones keep (max - min) / 255, and the encoder is not exact.
TEST(Sq8Encoder, IntegerDimensionsGetStepOneAndExactCodes) {
  // uint8-like (3..40), int8-like (-128..127), a constant fraction: exact.
  const std::vector<float> ints = {3, -128, 0.25f, 40, 127, 0.25f, 17, 0, 0.25f};
  auto e = Sq8Encoder::Train(ints.data(), 3, 3);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->scale()[0], 1.0f);
  EXPECT_EQ(e->scale()[1], 1.0f);
  EXPECT_EQ(e->scale()[2], 0.0f);
  EXPECT_TRUE(e->exact());
  for (size_t i = 0; i < 3; ++i) {
    uint8_t c[3];
    float x[3];
    e->Encode(&ints[i * 3], c);
    e->Decode(c, x);
    for (size_t d = 0; d < 3; ++d) EXPECT_EQ(x[d], ints[i * 3 + d]) << "row " << i << " dimension " << d;
  }
  // Integers spanning 1000: step 1000 / 255, not exact.
  const std::vector<float> wide = {0, 1000, 500};
  auto w = Sq8Encoder::Train(wide.data(), 3, 1);
  ASSERT_TRUE(w.has_value());
  EXPECT_FLOAT_EQ(w->scale()[0], 1000.0f / 255.0f);
  EXPECT_FALSE(w->exact());
  // A fraction among integers: not an integer dimension.
  const std::vector<float> frac = {0, 10, 2.5f};
  auto f = Sq8Encoder::Train(frac.data(), 3, 1);
  ASSERT_TRUE(f.has_value());
  EXPECT_FLOAT_EQ(f->scale()[0], 10.0f / 255.0f);
  EXPECT_FALSE(f->exact());
  // -0.0 among integers decodes to +0.0: equal as floats, but not the value written, so not
  // exact (an index keeps the float32 rows, and Get returns -0.0).
  const std::vector<float> negative_zero = {-0.0f, 3.0f};
  auto z = Sq8Encoder::Train(negative_zero.data(), 2, 1);
  ASSERT_TRUE(z.has_value());
  EXPECT_FALSE(z->exact());
  // From saved parameters the rows are unknown.
  EXPECT_FALSE(Sq8Encoder::FromParams({0.0f}, {1.0f})->exact());
}

TEST(Sq8Encoder, ClampsOutOfRangeValues) {
  auto e = Sq8Encoder::FromParams({0.0f, 0.0f, 1.0f}, {1.0f, 0.5f, 0.0f});
  ASSERT_TRUE(e.has_value());
  const float v[3] = {-5.0f, 1000.0f, 3.0f};
  uint8_t c[3];
  e->Encode(v, c);
  EXPECT_EQ(c[0], 0);
  EXPECT_EQ(c[1], 255);
  EXPECT_EQ(c[2], 0);  // constant dimension: decodes to its offset
}

TEST(Sq8Encoder, RejectsBadInput) {
  EXPECT_FALSE(Sq8Encoder::Train(nullptr, 0, 4).has_value());
  const float nan_row[2] = {1.0f, std::nanf("")};
  EXPECT_FALSE(Sq8Encoder::Train(nan_row, 1, 2).has_value());
  EXPECT_FALSE(Sq8Encoder::FromParams({0.0f}, {-1.0f}).has_value());
  EXPECT_FALSE(Sq8Encoder::FromParams({0.0f, 1.0f}, {1.0f}).has_value());
  EXPECT_FALSE(ParseCodesKind("pq").has_value());
  EXPECT_EQ(*ParseCodesKind("sq8"), CodesKind::kSq8);
}

// The quantized distance equals the float distance to the decoded vector (up to
// float rounding), and differs from the distance to the original vector by at most
// the bound the step sizes give.
void CheckDistances(Metric metric, bool normalize) {
  Fixture f(normalize);
  const Sq8Kernels& k = Sq8KernelsActive();
  const DistanceKernels& fk = Kernels();
  std::vector<float> x(f.dim);
  Sq8Query pq, pi;
  for (size_t qi = 0; qi < 20; ++qi) {
    const float* q = &f.rows[qi * f.dim];
    f.enc.PrepareQuery(q, metric, Sq8QueryMode::kFloat, pq);
    f.enc.PrepareQuery(q, metric, Sq8QueryMode::kInt8, pi);
    for (size_t i = 20; i < f.n; ++i) {
      const uint8_t* c = &f.codes[i * f.dim];
      const float* v = &f.rows[i * f.dim];
      const float norm2 = f.enc.DecodedNorm2(c);
      f.enc.Decode(c, x.data());
      const float to_decoded = Distance(fk, metric, q, x.data(), f.dim);
      const float exact = Distance(fk, metric, q, v, f.dim);
      const float got = Sq8Distance(k, pq, c, norm2, f.dim);
      double qabs = 0, q2 = 0, step_dot = 0, csum = 0;
      for (size_t d = 0; d < f.dim; ++d) {
        qabs += std::fabs(q[d]) * f.enc.scale()[d];
        q2 += std::fabs(q[d] - v[d]) * f.enc.scale()[d];
        step_dot += f.enc.scale()[d] * f.enc.scale()[d];
        csum += c[d];
      }
      const double mag = std::fabs(exact) + pq.q_norm2 + norm2 + 1.0;
      ASSERT_NEAR(got, to_decoded, 1e-4 * mag);
      // |<q, x - x^>| <= sum |q| scale / 2; for L2 add |x - x^|^2 <= sum scale^2 / 4.
      const double bound = metric == Metric::kL2 ? q2 + 0.25 * step_dot : 0.5 * qabs;
      ASSERT_LE(std::fabs(double(got) - exact), 1.001 * bound + 1e-4 * mag);
      // The int8 query adds at most half its step per unit of code.
      const float got_i = Sq8Distance(k, pi, c, norm2, f.dim);
      const double qi_bound = (metric == Metric::kL2 ? 2.0 : 1.0) * 0.5 * pi.qi_step * csum;
      ASSERT_LE(std::fabs(double(got_i) - got), 1.001 * qi_bound + 1e-4 * mag);
    }
  }
}

TEST(Sq8Distance, L2WithinQuantizationBound) { CheckDistances(Metric::kL2, false); }
TEST(Sq8Distance, InnerProductWithinQuantizationBound) { CheckDistances(Metric::kInnerProduct, false); }
TEST(Sq8Distance, CosineOnNormalizedWithinQuantizationBound) { CheckDistances(Metric::kCosine, true); }

}  // namespace
}  // namespace strata::index
