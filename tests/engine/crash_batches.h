#pragma once
// The deterministic batches of the crash test, shared by the child that writes
// them and the parent that checks what survived: batch b depends only on (seed, b).

#include <random>
#include <string>

#include "engine/strata.h"

namespace strata::crash_test {

inline constexpr size_t kDim = 8;
inline constexpr VectorId kMaxId = 400;
inline constexpr char kCollection[] = "crash";

inline constexpr int kKeys = 200;  // keys "key:0" .. "key:199"

inline std::string CrashKey(uint64_t i) { return "key:" + std::to_string(i); }

// By id and, one operation in three, by key (records written by key: api/types.h).
inline WriteBatch MakeBatch(uint64_t seed, uint64_t b) {
  std::mt19937_64 rng(seed * 1000003 + b);
  std::normal_distribution<float> g;
  WriteBatch batch;
  const int n = 1 + int(rng() % 16);
  for (int i = 0; i < n; ++i) {
    const VectorId id = rng() % kMaxId;
    const bool by_key = rng() % 3 == 0;
    if (rng() % 5 == 0) {
      if (by_key) {
        batch.DeleteByKey(CrashKey(id % kKeys));
      } else {
        batch.Delete(id);
      }
    } else {
      std::vector<float> v(kDim);
      for (float& x : v) x = g(rng);
      if (by_key) {
        batch.UpsertByKey(CrashKey(id % kKeys), v, {{"batch", int64_t(b)}});
      } else {
        batch.Upsert(id, v, {{"batch", int64_t(b)}});
      }
    }
  }
  return batch;
}

}  // namespace strata::crash_test
