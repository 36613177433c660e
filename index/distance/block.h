#pragma once
// Multi-query block kernel: inner products of a group of queries against a
// block of rows, organised like a small matrix multiply so that exact scans are
// bound by arithmetic rather than memory bandwidth.
//
//   out[q * ldo + i] = <queries[q], rows[i]>   for q < nq, i < n
//
// queries and rows are row-major with stride `dim`; any alignment, any dim >= 1.
// Each SIMD level packs 16 or 32 rows at a time into a transposed scratch tile
// (dim x width, in the caller-provided `scratch`: scratch_floats(dim) floats,
// 64-byte aligned), then runs a register-blocked
// micro-kernel: per dimension, one vector load of the packed rows and one
// broadcast per query feed several independent FMA chains. The packing cost is
// shared by all nq queries, so callers should pass many queries (64+) at once.
//
// Thread-safe: no shared state; `scratch` is the caller's.

#include <cstddef>

#include "index/distance/distance.h"

namespace strata::index {

struct BlockKernels {
  void (*ip_block)(const float* queries, size_t nq, const float* rows, size_t n, size_t dim,
                   float* out, size_t ldo, float* scratch);
  // Floats of scratch ip_block needs for `dim` (a packed tile of rows).
  size_t (*scratch_floats)(size_t dim);
  SimdLevel level;
};

// Block kernels at the same level as Kernels().
const BlockKernels& GetBlockKernels();
const BlockKernels& BlockKernelsFor(SimdLevel level);

namespace detail {
const BlockKernels& ScalarBlockKernels();
const BlockKernels& Avx2BlockKernels();
const BlockKernels& Avx512BlockKernels();
}  // namespace detail

}  // namespace strata::index
