#include "tools/synth.h"

#include <omp.h>

#include <cmath>
#include <fstream>
#include <vector>

#include <fmt/core.h>

#include "core/progress.h"
#include "storage/file_util.h"

namespace strata::tools {
namespace {

uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Counter-based generator: a stream per (seed, stream, row).
class Stream {
 public:
  Stream(uint64_t seed, uint64_t stream, uint64_t row)
      : state_(Mix(seed ^ Mix(stream * 0xA24BAED4963EE407ull ^ Mix(row)))) {}
  uint64_t Next() { return Mix(state_++); }
  double Uniform() { return (double(Next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  float Gaussian() {  // Box-Muller; one value per call keeps the stream simple
    const double u1 = Uniform(), u2 = Uniform();
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }

 private:
  uint64_t state_;
};

Status WriteSet(const std::filesystem::path& path, uint64_t n, const SynthOptions& o,
                const std::vector<float>& centers, uint64_t stream_id, const char* label) {
  if (n > UINT32_MAX) return InvalidArgument("{}: {} rows exceed the fbin limit of 2^32 - 1", path.string(), n);
  STRATA_ASSIGN_OR_RETURN(auto w, storage::AtomicFileWriter::Open(path));
  const uint32_t header[2] = {uint32_t(n), o.dim};
  STRATA_RETURN_IF_ERROR(w.Append(header, sizeof header));
  constexpr uint64_t kBlock = 65536;
  std::vector<float> block(kBlock * o.dim);
  Progress progress(label, n, !o.progress);
  const int threads = o.num_threads > 0 ? o.num_threads : omp_get_max_threads();
  for (uint64_t b0 = 0; b0 < n; b0 += kBlock) {
    const uint64_t rows = std::min(kBlock, n - b0);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (uint64_t r = 0; r < rows; ++r) {
      Stream s(o.seed, stream_id, b0 + r);
      const uint64_t c = s.Next() % o.clusters;
      const float* center = centers.data() + c * o.dim;
      float* out = block.data() + r * o.dim;
      for (uint32_t j = 0; j < o.dim; ++j) out[j] = center[j] + o.noise * s.Gaussian();
    }
    STRATA_RETURN_IF_ERROR(w.Append(block.data(), rows * o.dim * sizeof(float)));
    progress.Add(rows);
  }
  progress.Finish();
  return w.Commit();
}

}  // namespace

Status WriteSynthetic(const std::filesystem::path& out_dir, const SynthOptions& o) {
  if (o.dim == 0 || o.dim > 65536) return InvalidArgument("dim must be in [1, 65536], got {}", o.dim);
  if (o.clusters == 0) return InvalidArgument("clusters must be at least 1");
  if (o.num_base == 0) return InvalidArgument("the base set must hold at least one vector");
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return IOError("{}: cannot create directory: {}", out_dir.string(), ec.message());
  std::vector<float> centers(size_t(o.clusters) * o.dim);
  for (uint32_t c = 0; c < o.clusters; ++c) {
    Stream s(o.seed, 0, c);
    for (uint32_t j = 0; j < o.dim; ++j) centers[size_t(c) * o.dim + j] = o.center_spread * s.Gaussian();
  }
  STRATA_RETURN_IF_ERROR(WriteSet(out_dir / "base.fbin", o.num_base, o, centers, 1, "synth base"));
  if (o.num_queries) {
    STRATA_RETURN_IF_ERROR(WriteSet(out_dir / "query.fbin", o.num_queries, o, centers, 2, "synth queries"));
  }
  std::ofstream note(out_dir / "SYNTHETIC.txt");
  note << fmt::format(
      "SYNTHETIC data written by `strata dataset synth`: a mixture of {} Gaussian clusters in {} "
      "dimensions (centres ~ N(0, {}^2), points = centre + N(0, {}^2) per coordinate), seed {}; "
      "base.fbin holds {} vectors, query.fbin {} queries drawn from the same mixture with an "
      "independent stream. Not real data: label every figure measured on it as synthetic.\n",
      o.clusters, o.dim, o.center_spread, o.noise, o.seed, o.num_base, o.num_queries);
  if (!note) return IOError("{}: cannot write SYNTHETIC.txt", out_dir.string());
  return Status::Ok();
}

}  // namespace strata::tools
