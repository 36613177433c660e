#pragma once
// Deterministic synthetic data: a mixture of Gaussian clusters, for scale tests
// (e.g. 5,000,000 x 100 for SPANN). Everything it writes is labelled synthetic.
// Row i depends only on (seed, i), so generation is parallel, streamed in
// blocks (memory stays at one block), and identical across runs and thread counts.
// Thread-safe (no shared state).

#include <cstdint>
#include <filesystem>

#include "core/status.h"

namespace strata::tools {

struct SynthOptions {
  uint64_t num_base = 1'000'000;
  uint64_t num_queries = 1'000;
  uint32_t dim = 100;
  uint32_t clusters = 1'000;   // mixture components
  float center_spread = 1.0f;  // centres ~ N(0, spread^2) per coordinate
  float noise = 0.35f;         // points ~ centre + N(0, noise^2) per coordinate
  uint64_t seed = 42;
  int num_threads = 0;
  bool progress = true;
};

// Writes out_dir/base.fbin and out_dir/query.fbin (queries drawn from the same
// mixture with an independent stream), plus out_dir/SYNTHETIC.txt describing them.
Status WriteSynthetic(const std::filesystem::path& out_dir, const SynthOptions& options);

}  // namespace strata::tools
