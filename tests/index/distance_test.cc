// Tests every SIMD level of the distance kernels against the scalar reference.
//
// Integer-valued inputs (small ints) make every partial sum an exactly representable
// integer, so each level must match the scalar loops bit for bit whatever order it
// adds in; any lane, tail or offset bug shows up as an exact mismatch instead of
// hiding inside a tolerance. Random reals then check the ordinary case against a
// double-precision reference with a relative tolerance.
//
// Each vector sits at the very end of its own heap block (offset 0..3 floats from a
// 64-byte aligned start), so under ASan a kernel that reads one float too many fails.

#include "index/distance/distance.h"
#include "index/distance/half.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstddef>
#include <limits>
#include <memory>
#include <new>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "core/metric.h"
#include "core/status.h"

namespace strata::index {
namespace {

constexpr size_t kMaxDim = 1024;
constexpr size_t kMaxOffset = 3;

// `offset + size` floats in a block that starts 64-byte aligned and ends right after
// the last float, so data() is misaligned by `offset` floats.
class TailBuffer {
 public:
  TailBuffer(size_t offset, size_t size)
      : offset_(offset),
        size_(size),
        block_(static_cast<float*>(
            ::operator new((offset + size) * sizeof(float), std::align_val_t(64)))) {}
  TailBuffer(size_t offset, std::span<const float> values) : TailBuffer(offset, values.size()) {
    std::copy(values.begin(), values.end(), data());
  }
  float* data() { return block_.get() + offset_; }
  size_t size() const { return size_; }

 private:
  struct AlignedDelete {
    void operator()(float* p) const { ::operator delete(p, std::align_val_t(64)); }
  };
  size_t offset_;
  size_t size_;
  std::unique_ptr<float, AlignedDelete> block_;
};

std::vector<float> RandomInts(size_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int> dist(-8, 8);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(dist(rng));
  return v;
}

std::vector<float> RandomReals(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

const std::vector<SimdLevel>& AllLevels() {
  static const std::vector<SimdLevel> kLevels = {SimdLevel::kScalar, SimdLevel::kAvx2,
                                                 SimdLevel::kAvx512};
  return kLevels;
}

class DistanceLevelTest : public ::testing::TestWithParam<SimdLevel> {
 protected:
  void SetUp() override {
    if (!SimdSupported(GetParam())) {
      GTEST_SKIP() << "CPU does not support " << SimdLevelName(GetParam());
    }
    kernels_ = &KernelsFor(GetParam());
    ASSERT_EQ(kernels_->level, GetParam());
  }
  const DistanceKernels* kernels_ = nullptr;
  const DistanceKernels& scalar_ = detail::ScalarKernels();
};

TEST(ScalarReferenceTest, MatchesHandComputedValues) {
  const float a[] = {1, 2, 3, -4, 5};
  const float b[] = {2, 0, -1, 4, 5};
  const DistanceKernels& k = detail::ScalarKernels();
  EXPECT_EQ(k.l2sq(a, b, 5), 1.0f + 4 + 16 + 64 + 0);
  EXPECT_EQ(k.ip(a, b, 5), 2.0f + 0 - 3 - 16 + 25);
  EXPECT_EQ(k.l2sq(a, b, 1), 1.0f);
  EXPECT_EQ(k.ip(a, a, 1), 1.0f);
}

TEST_P(DistanceLevelTest, ExactOnIntegersForEveryDimAndOffset) {
  std::mt19937 rng(1234);
  for (size_t dim = 1; dim <= kMaxDim; ++dim) {
    const std::vector<float> a = RandomInts(dim, rng);
    const std::vector<float> b = RandomInts(dim, rng);
    const float want_l2 = scalar_.l2sq(a.data(), b.data(), dim);
    const float want_ip = scalar_.ip(a.data(), b.data(), dim);
    for (size_t off_a = 0; off_a <= kMaxOffset; ++off_a) {
      TailBuffer buf_a(off_a, a);
      for (size_t off_b = 0; off_b <= kMaxOffset; ++off_b) {
        TailBuffer buf_b(off_b, b);
        ASSERT_EQ(kernels_->l2sq(buf_a.data(), buf_b.data(), dim), want_l2)
            << "dim " << dim << " offsets " << off_a << "," << off_b;
        ASSERT_EQ(kernels_->ip(buf_a.data(), buf_b.data(), dim), want_ip)
            << "dim " << dim << " offsets " << off_a << "," << off_b;
      }
    }
  }
}

TEST_P(DistanceLevelTest, IntegerResultsAreExactSums) {
  // Guards the reference itself: with |x| <= 8 and dim <= 1024 every sum is below 2^24.
  std::mt19937 rng(99);
  for (size_t dim : {1, 15, 16, 17, 100, 128, 784, 960, 1024}) {
    const std::vector<float> a = RandomInts(dim, rng);
    const std::vector<float> b = RandomInts(dim, rng);
    double l2 = 0;
    double ip = 0;
    for (size_t i = 0; i < dim; ++i) {
      l2 += (double{a[i]} - b[i]) * (double{a[i]} - b[i]);
      ip += double{a[i]} * b[i];
    }
    EXPECT_EQ(kernels_->l2sq(a.data(), b.data(), dim), static_cast<float>(l2)) << dim;
    EXPECT_EQ(kernels_->ip(a.data(), b.data(), dim), static_cast<float>(ip)) << dim;
  }
}

TEST_P(DistanceLevelTest, RandomRealsWithinRelativeTolerance) {
  std::mt19937 rng(42);
  for (size_t dim = 1; dim <= kMaxDim; dim += (dim < 64 ? 1 : 7)) {
    const std::vector<float> a = RandomReals(dim, rng);
    const std::vector<float> b = RandomReals(dim, rng);
    double l2 = 0;
    double ip = 0;
    double ip_abs = 0;  // Scale for the ip error bound: the sum can cancel to near zero.
    for (size_t i = 0; i < dim; ++i) {
      const double diff = double{a[i]} - b[i];
      l2 += diff * diff;
      ip += double{a[i]} * b[i];
      ip_abs += std::abs(double{a[i]} * b[i]);
    }
    const size_t off = dim % (kMaxOffset + 1);
    TailBuffer buf_a(off, a);
    TailBuffer buf_b(kMaxOffset - off, b);
    constexpr double kRelTol = 1e-5;
    EXPECT_NEAR(kernels_->l2sq(buf_a.data(), buf_b.data(), dim), l2, kRelTol * l2 + 1e-30)
        << "dim " << dim;
    EXPECT_NEAR(kernels_->ip(buf_a.data(), buf_b.data(), dim), ip, kRelTol * ip_abs + 1e-30)
        << "dim " << dim;
  }
}

TEST_P(DistanceLevelTest, BatchMatchesPerPairExactlyOnIntegers) {
  std::mt19937 rng(7);
  const size_t dims[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 100, 128, 129, 784, 960};
  const size_t counts[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 17, 64};
  for (size_t dim : dims) {
    for (size_t n : counts) {
      const std::vector<float> query = RandomInts(dim, rng);
      const std::vector<float> rows = RandomInts(n * dim, rng);
      const size_t off = (dim + n) % (kMaxOffset + 1);
      TailBuffer buf_q(kMaxOffset - off, query);
      TailBuffer buf_rows(off, rows);
      std::vector<float> l2(n + 1, -1.0f);
      std::vector<float> ip(n + 1, -1.0f);
      kernels_->l2sq_batch(buf_q.data(), buf_rows.data(), n, dim, l2.data());
      kernels_->ip_batch(buf_q.data(), buf_rows.data(), n, dim, ip.data());
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(l2[i], scalar_.l2sq(query.data(), rows.data() + i * dim, dim))
            << "dim " << dim << " n " << n << " row " << i;
        ASSERT_EQ(ip[i], scalar_.ip(query.data(), rows.data() + i * dim, dim))
            << "dim " << dim << " n " << n << " row " << i;
      }
      // Nothing is written past out[n - 1].
      EXPECT_EQ(l2[n], -1.0f);
      EXPECT_EQ(ip[n], -1.0f);
    }
  }
}

TEST_P(DistanceLevelTest, BatchMatchesPerPairOnReals) {
  std::mt19937 rng(8);
  for (size_t dim : {5, 16, 100, 128, 784, 960}) {
    const size_t n = 37;
    const std::vector<float> query = RandomReals(dim, rng);
    const std::vector<float> rows = RandomReals(n * dim, rng);
    std::vector<float> l2(n);
    std::vector<float> ip(n);
    kernels_->l2sq_batch(query.data(), rows.data(), n, dim, l2.data());
    kernels_->ip_batch(query.data(), rows.data(), n, dim, ip.data());
    for (size_t i = 0; i < n; ++i) {
      const float* row = rows.data() + i * dim;
      const float want_l2 = kernels_->l2sq(query.data(), row, dim);
      EXPECT_NEAR(l2[i], want_l2, 1e-5 * want_l2) << "dim " << dim << " row " << i;
      double ip_abs = 0;
      for (size_t j = 0; j < dim; ++j) ip_abs += std::abs(double{query[j]} * row[j]);
      EXPECT_NEAR(ip[i], kernels_->ip(query.data(), row, dim), 1e-5 * ip_abs)
          << "dim " << dim << " row " << i;
    }
  }
}

TEST_P(DistanceLevelTest, MetricAwareDistance) {
  const float a[] = {1, 2, 3};
  const float b[] = {3, 2, 1};
  EXPECT_EQ(Distance(*kernels_, Metric::kL2, a, b, 3), 8.0f);
  EXPECT_EQ(Distance(*kernels_, Metric::kInnerProduct, a, b, 3), -10.0f);
  EXPECT_EQ(Distance(*kernels_, Metric::kCosine, a, b, 3), -10.0f);
}

// ---- half precision ---------------------------------------------------------

TEST(HalfTest, KnownConversions) {
  EXPECT_EQ(FloatToHalf(0.0f), 0x0000);
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(1.0f), 0x3C00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xC000);
  EXPECT_EQ(FloatToHalf(0.1f), 0x2E66);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7BFF);   // largest finite half
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7BFF);   // rounds down
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7C00);   // ties to even: infinity
  EXPECT_EQ(FloatToHalf(1e9f), 0x7C00);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -26)), 0x0000);  // below half of it
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie, to even
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie, to even (up)
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(FloatToHalf(std::nanf("")) & 0x7C00, 0x7C00);
  EXPECT_NE(FloatToHalf(std::nanf("")) & 0x03FF, 0);
  EXPECT_EQ(HalfToFloat(0x3C00), 1.0f);
  EXPECT_EQ(HalfToFloat(0x7BFF), 65504.0f);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x8400), -std::ldexp(1.0f, -14));
  EXPECT_TRUE(std::isinf(HalfToFloat(0x7C00)));
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7E00)));
}

TEST(HalfTest, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const float f = HalfToFloat(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalf(f), h) << std::hex << h;
  }
}

// Values spread over the half range, subnormals and overflow included.
std::vector<float> HalfTestValues(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exp(-28, 17);
  std::vector<float> v(n);
  for (float& x : v) x = std::ldexp(mant(rng), exp(rng));
  return v;
}

TEST_P(DistanceLevelTest, HalfConversionsMatchScalarBitForBit) {
  std::mt19937 rng(17);
  for (size_t n : {1, 7, 8, 9, 15, 16, 17, 33, 100, 1000}) {
    const std::vector<float> in = HalfTestValues(n, rng);
    std::vector<uint16_t> want(n + 1, 0xABCD), got(n + 1, 0xABCD);
    scalar_.to_f16(in.data(), want.data(), n);
    kernels_->to_f16(in.data(), got.data(), n);
    ASSERT_EQ(got, want) << "n " << n;  // the sentinel past the end included
    std::vector<float> back_want(n + 1, -7.0f), back_got(n + 1, -7.0f);
    scalar_.from_f16(want.data(), back_want.data(), n);
    kernels_->from_f16(want.data(), back_got.data(), n);
    for (size_t i = 0; i <= n; ++i) {
      ASSERT_EQ(std::bit_cast<uint32_t>(back_got[i]), std::bit_cast<uint32_t>(back_want[i]))
          << "n " << n << " i " << i;
    }
  }
}

TEST_P(DistanceLevelTest, HalfDistancesExactOnIntegers) {
  // Small integers are exact halves, so every level must equal the float32 sums.
  std::mt19937 rng(5);
  for (size_t dim = 1; dim <= 300; ++dim) {
    const std::vector<float> q = RandomInts(dim, rng);
    const std::vector<float> v = RandomInts(dim, rng);
    // At the very end of its allocation, so a read past the vector trips ASan.
    std::unique_ptr<uint16_t[]> h(new uint16_t[dim]);
    scalar_.to_f16(v.data(), h.get(), dim);
    ASSERT_EQ(kernels_->l2sq_f16(q.data(), h.get(), dim), scalar_.l2sq(q.data(), v.data(), dim))
        << "dim " << dim;
    ASSERT_EQ(kernels_->ip_f16(q.data(), h.get(), dim), scalar_.ip(q.data(), v.data(), dim))
        << "dim " << dim;
  }
}

TEST_P(DistanceLevelTest, HalfDistancesCloseToFloatOnReals) {
  std::mt19937 rng(6);
  for (size_t dim : {3, 16, 100, 128, 784}) {
    const std::vector<float> q = RandomReals(dim, rng);
    std::vector<float> v = RandomReals(dim, rng);
    std::vector<uint16_t> h(dim);
    scalar_.to_f16(v.data(), h.data(), dim);
    std::vector<float> rounded(dim);
    scalar_.from_f16(h.data(), rounded.data(), dim);
    // Against the float32 kernel on the rounded values: only summation order differs.
    const float want = scalar_.l2sq(q.data(), rounded.data(), dim);
    EXPECT_NEAR(kernels_->l2sq_f16(q.data(), h.data(), dim), want, 1e-5 * want) << dim;
    // And rounding itself moves the distance by well under 1%.
    const float exact = scalar_.l2sq(q.data(), v.data(), dim);
    EXPECT_NEAR(want, exact, 1e-2 * exact) << dim;
    const float* hq = q.data();
    EXPECT_EQ(Distance(*kernels_, Metric::kL2, hq, h.data(), dim),
              kernels_->l2sq_f16(q.data(), h.data(), dim));
    EXPECT_EQ(Distance(*kernels_, Metric::kCosine, hq, h.data(), dim),
              -kernels_->ip_f16(q.data(), h.data(), dim));
  }
}

INSTANTIATE_TEST_SUITE_P(AllLevels, DistanceLevelTest, ::testing::ValuesIn(AllLevels()),
                         [](const ::testing::TestParamInfo<SimdLevel>& info) {
                           return std::string(SimdLevelName(info.param));
                         });

TEST(SimdLevelTest, NamesRoundTrip) {
  for (SimdLevel level : AllLevels()) {
    Result<SimdLevel> parsed = ParseSimdLevel(SimdLevelName(level));
    ASSERT_TRUE(parsed.has_value()) << SimdLevelName(level);
    EXPECT_EQ(*parsed, level);
  }
  EXPECT_EQ(SimdLevelName(SimdLevel::kScalar), "scalar");
  EXPECT_EQ(SimdLevelName(SimdLevel::kAvx2), "avx2");
  EXPECT_EQ(SimdLevelName(SimdLevel::kAvx512), "avx512");
}

TEST(SimdLevelTest, ParseAcceptsAutoAndAnyCase) {
  Result<SimdLevel> best = ParseSimdLevel("auto");
  ASSERT_TRUE(best.has_value());
  EXPECT_EQ(*best, BestSimdLevel());
  Result<SimdLevel> upper = ParseSimdLevel("AVX2");
  ASSERT_TRUE(upper.has_value());
  EXPECT_EQ(*upper, SimdLevel::kAvx2);
}

TEST(SimdLevelTest, ParseRejectsUnknownNames) {
  for (std::string_view name : {"", "sse", "avx", "avx-512", "avx512f", "scalar "}) {
    Result<SimdLevel> parsed = ParseSimdLevel(name);
    ASSERT_FALSE(parsed.has_value()) << "'" << name << "'";
    EXPECT_EQ(parsed.error().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.error().message().find("scalar, avx2, avx512 or auto"), std::string::npos);
  }
}

TEST(SimdLevelTest, KernelsForFallsBackToBestSupportedBelow) {
  EXPECT_TRUE(SimdSupported(SimdLevel::kScalar));
  EXPECT_EQ(KernelsFor(SimdLevel::kScalar).level, SimdLevel::kScalar);
  for (SimdLevel level : AllLevels()) {
    const DistanceKernels& k = KernelsFor(level);
    EXPECT_LE(k.level, level);
    EXPECT_TRUE(SimdSupported(k.level));
    EXPECT_EQ(k.level, std::min(level, BestSimdLevel())) << SimdLevelName(level);
  }
  EXPECT_TRUE(SimdSupported(BestSimdLevel()));
  // Support is nested: AVX-512 is only reported where AVX2 is too.
  if (SimdSupported(SimdLevel::kAvx512)) {
    EXPECT_TRUE(SimdSupported(SimdLevel::kAvx2));
  }
}

TEST(SimdLevelTest, KernelsDefaultsToBestAndHonoursOverride) {
  EXPECT_EQ(Kernels().level, BestSimdLevel());
  EXPECT_EQ(&Kernels(), &KernelsFor(BestSimdLevel()));
  for (SimdLevel level : AllLevels()) {
    Status s = SetSimdOverride(level);
    if (SimdSupported(level)) {
      ASSERT_TRUE(s.ok()) << s.ToString();
      EXPECT_EQ(Kernels().level, level);
    } else {
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
      EXPECT_NE(Kernels().level, level);
    }
  }
  ASSERT_TRUE(SetSimdOverride(BestSimdLevel()).ok());
  EXPECT_EQ(Kernels().level, BestSimdLevel());
}

}  // namespace
}  // namespace strata::index
