#include "index/distance/block.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "core/vector_set.h"

namespace strata::index {
namespace {

// Integer-valued inputs make every level exact, so results must match the
// scalar reference bit for bit regardless of summation order.
std::vector<float> IntegerData(size_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int> u(-8, 8);
  std::vector<float> v(n);
  for (auto& x : v) x = float(u(rng));
  return v;
}

class BlockKernelTest : public ::testing::TestWithParam<SimdLevel> {};

TEST_P(BlockKernelTest, MatchesScalarOnTailsAndOffsets) {
  const SimdLevel level = GetParam();
  if (!SimdSupported(level)) GTEST_SKIP() << "CPU lacks " << SimdLevelName(level);
  const BlockKernels& ref = detail::ScalarBlockKernels();
  const BlockKernels& k = BlockKernelsFor(level);
  ASSERT_EQ(k.level, level);
  std::mt19937 rng(11);
  for (size_t dim : {1, 3, 16, 17, 100, 129}) {
    for (size_t nq : {1, 5, 8, 13}) {
      for (size_t n : {1, 15, 16, 31, 32, 33, 70}) {
        for (size_t offset : {0, 1}) {  // unaligned queries and rows
          auto qbuf = IntegerData(nq * dim + offset, rng);
          auto rbuf = IntegerData(n * dim + offset, rng);
          const size_t ldo = n + 3;
          std::vector<float> want(nq * ldo, -1), got(nq * ldo, -1);
          std::unique_ptr<float[], AlignedFree> scratch(static_cast<float*>(
              AlignedAlloc(std::max<size_t>(1, k.scratch_floats(dim)) * sizeof(float))));
          ref.ip_block(qbuf.data() + offset, nq, rbuf.data() + offset, n, dim, want.data(), ldo,
                       nullptr);
          k.ip_block(qbuf.data() + offset, nq, rbuf.data() + offset, n, dim, got.data(), ldo,
                     scratch.get());
          // Entries past n in each output row must be left alone.
          ASSERT_EQ(want, got) << "dim " << dim << " nq " << nq << " n " << n;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Levels, BlockKernelTest,
                         ::testing::Values(SimdLevel::kAvx2, SimdLevel::kAvx512),
                         [](const auto& info) { return std::string(SimdLevelName(info.param)); });

}  // namespace
}  // namespace strata::index
