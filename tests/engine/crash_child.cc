// Child process of engine_crash_test: writes the deterministic batches
// first_batch, first_batch + 1, ... into <dir> and prints each batch number on
// stdout once Write has acknowledged it, until it is killed.
//
// usage: engine_crash_child <dir> <first_batch> <seed>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/engine/crash_batches.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s <dir> <first_batch> <seed>\n", argv[0]);
    return 2;
  }
  const uint64_t first = std::strtoull(argv[2], nullptr, 10);
  const uint64_t seed = std::strtoull(argv[3], nullptr, 10);
  auto engine = strata::Engine::Open(argv[1]);
  if (!engine) {
    std::fprintf(stderr, "open: %s\n", engine.error().ToString().c_str());
    return 1;
  }
  auto& e = **engine;
  if (!e.DescribeCollection(strata::crash_test::kCollection)) {
    strata::CollectionSpec spec;
    spec.name = strata::crash_test::kCollection;
    spec.dim = strata::crash_test::kDim;
    spec.hnsw_ef_construction = 32;
    spec.seal_threshold = 120;  // seals (and log cuts) every few dozen batches
    if (auto s = e.CreateCollection(spec); !s.ok()) {
      std::fprintf(stderr, "create: %s\n", s.ToString().c_str());
      return 1;
    }
    std::printf("created\n");
    std::fflush(stdout);
  }
  std::printf("ready\n");
  std::fflush(stdout);
  for (uint64_t b = first;; ++b) {
    auto s = e.Write(strata::crash_test::kCollection, strata::crash_test::MakeBatch(seed, b));
    if (!s.ok()) {
      std::fprintf(stderr, "write %llu: %s\n", static_cast<unsigned long long>(b), s.ToString().c_str());
      return 1;
    }
    std::printf("%llu\n", static_cast<unsigned long long>(b));
    std::fflush(stdout);
    if (b % 48 == 47) {  // compactions and explicit seals, announced so the parent can kill inside one
      std::printf("compact\n");
      std::fflush(stdout);
      if (auto s = e.Compact(strata::crash_test::kCollection); !s.ok()) {
        std::fprintf(stderr, "compact: %s\n", s.ToString().c_str());
        return 1;
      }
      std::printf("compacted\n");
      std::fflush(stdout);
    } else if (b % 16 == 15) {
      std::printf("flush\n");
      std::fflush(stdout);
      if (auto s = e.Flush(strata::crash_test::kCollection); !s.ok()) {
        std::fprintf(stderr, "flush: %s\n", s.ToString().c_str());
        return 1;
      }
      std::printf("flushed\n");
      std::fflush(stdout);
    }
  }
}
