#include "index/distance/block.h"

namespace strata::index {

const BlockKernels& BlockKernelsFor(SimdLevel level) {
  // KernelsFor already falls back to the best supported level at or below `level`.
  switch (KernelsFor(level).level) {
    case SimdLevel::kAvx512: return detail::Avx512BlockKernels();
    case SimdLevel::kAvx2: return detail::Avx2BlockKernels();
    case SimdLevel::kScalar: break;
  }
  return detail::ScalarBlockKernels();
}

const BlockKernels& GetBlockKernels() { return BlockKernelsFor(Kernels().level); }

}  // namespace strata::index
