// Run-time choice of the distance kernel level.
//
// The CPU is probed with __builtin_cpu_supports, never by trying an instruction: the
// SIMD translation units are compiled with their own -m flags and must not run at all
// on a CPU that lacks them. No logging here (this layer has no logger); the CLI
// prints SimdLevelName(Kernels().level).

#include "index/distance/distance.h"

#include <atomic>
#include <cctype>
#include <string_view>

#include "core/status.h"

namespace strata::index {
namespace {

bool CpuHasAvx2() {
  __builtin_cpu_init();  // Harmless if already done; needed if called before constructors run.
  // F16C converts the half-precision vectors (every AVX2 CPU so far has it).
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

bool CpuHasAvx512() {
  __builtin_cpu_init();
  // The AVX-512 file is built with F, BW, VL and DQ (and AVX2/FMA), so all are required.
  return CpuHasAvx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

// What the CPU supports, probed once (thread-safe static initialization).
struct CpuLevels {
  bool avx2 = CpuHasAvx2();
  bool avx512 = CpuHasAvx512();
};
const CpuLevels& Cpu() {
  static const CpuLevels kCpu;
  return kCpu;
}

// The table Kernels() returns: null until first use, or set by SetSimdOverride.
// An atomic pointer rather than a function-local static so that an override can
// replace the choice; readers pay one plain load.
std::atomic<const DistanceKernels*> g_active{nullptr};

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string_view SimdLevelName(SimdLevel level) {
  switch (level) {
    case SimdLevel::kScalar:
      return "scalar";
    case SimdLevel::kAvx2:
      return "avx2";
    case SimdLevel::kAvx512:
      return "avx512";
  }
  return "unknown";
}

Result<SimdLevel> ParseSimdLevel(std::string_view name) {
  if (EqualsIgnoreCase(name, "scalar")) return SimdLevel::kScalar;
  if (EqualsIgnoreCase(name, "avx2")) return SimdLevel::kAvx2;
  if (EqualsIgnoreCase(name, "avx512")) return SimdLevel::kAvx512;
  if (EqualsIgnoreCase(name, "auto")) return BestSimdLevel();
  return Error(
      InvalidArgument("unknown SIMD level '{}': expected scalar, avx2, avx512 or auto", name));
}

bool SimdSupported(SimdLevel level) {
  switch (level) {
    case SimdLevel::kScalar:
      return true;
    case SimdLevel::kAvx2:
      return Cpu().avx2;
    case SimdLevel::kAvx512:
      return Cpu().avx512;
  }
  return false;
}

SimdLevel BestSimdLevel() {
  if (Cpu().avx512) return SimdLevel::kAvx512;
  if (Cpu().avx2) return SimdLevel::kAvx2;
  return SimdLevel::kScalar;
}

const DistanceKernels& KernelsFor(SimdLevel level) {
  if (level >= SimdLevel::kAvx512 && Cpu().avx512) return detail::Avx512Kernels();
  if (level >= SimdLevel::kAvx2 && Cpu().avx2) return detail::Avx2Kernels();
  return detail::ScalarKernels();
}

const DistanceKernels& Kernels() {
  const DistanceKernels* active = g_active.load(std::memory_order_acquire);
  if (active != nullptr) return *active;
  // First call: install the best level unless an override got there first.
  const DistanceKernels* best = &KernelsFor(BestSimdLevel());
  if (g_active.compare_exchange_strong(active, best, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
    return *best;
  }
  return *active;  // compare_exchange stored the winner's table in `active`.
}

Status SetSimdOverride(SimdLevel level) {
  if (!SimdSupported(level)) {
    return InvalidArgument("SIMD level '{}' is not supported by this CPU (best is '{}')",
                           SimdLevelName(level), SimdLevelName(BestSimdLevel()));
  }
  g_active.store(&KernelsFor(level), std::memory_order_release);
  return Status::Ok();
}

}  // namespace strata::index
