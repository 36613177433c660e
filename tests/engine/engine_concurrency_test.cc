// Mixed load: two writers and two readers on one collection for a while (60 s
// by default; STRATA_MIXED_SECONDS overrides), with seals and compactions along
// the way; run under ThreadSanitizer by scripts/test.sh. Then the final data are
// checked against exact search.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_set>
#include <vector>

#include "engine/strata.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
constexpr size_t kDim = 16;

std::vector<float> RandomVector(std::mt19937& rng) {
  std::normal_distribution<float> g;
  std::vector<float> v(kDim);
  for (float& x : v) x = g(rng);
  return v;
}

TEST(EngineConcurrency, TwoWritersTwoReadersThenExactCheck) {
  const int seconds = std::getenv("STRATA_MIXED_SECONDS") ? std::atoi(std::getenv("STRATA_MIXED_SECONDS")) : 60;
  const fs::path dir = fs::temp_directory_path() / ("strata_mixed_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto opened = Engine::Open(dir);
  ASSERT_TRUE(opened.has_value()) << opened.error().ToString();
  Engine& e = **opened;
  CollectionSpec spec;
  spec.name = "mixed";
  spec.dim = kDim;
  spec.hnsw_ef_construction = 64;
  spec.seal_threshold = 400;
  ASSERT_TRUE(e.CreateCollection(spec).ok());

  // Each writer owns half of the id space, so the final state is the union of
  // two sequential histories: exactly what each writer last wrote per id.
  std::mutex model_mu;
  std::map<VectorId, std::vector<float>> model;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> writes{0}, searches{0}, gets{0}, errors{0}, compactions{0};
  auto writer = [&](int w) {
    std::mt19937 rng(100 + w);
    std::map<VectorId, std::vector<float>> mine;
    uint64_t n = 0;
    while (!stop.load()) {
      WriteBatch b;
      for (int i = 0; i < 20; ++i) {
        const VectorId id = VectorId(w) * 100000 + rng() % 2000;
        if (rng() % 4 == 0) {
          b.Delete(id);
          mine.erase(id);
        } else {
          auto v = RandomVector(rng);
          b.Upsert(id, v, {{"w", int64_t(w)}});
          mine[id] = v;
        }
      }
      if (!e.Write("mixed", b).ok()) ++errors;
      ++writes;
      if (++n % 50 == 0 && w == 0) {
        if (!e.Compact("mixed").ok()) ++errors;
        ++compactions;
      }
    }
    std::lock_guard<std::mutex> g(model_mu);
    model.insert(mine.begin(), mine.end());
  };
  auto reader = [&](int r) {
    std::mt19937 rng(200 + r);
    while (!stop.load()) {
      auto q = RandomVector(rng);
      auto hits = e.Search("mixed", q, {.k = 10, .ef = 64});
      if (!hits) {
        ++errors;
        continue;
      }
      if (!std::is_sorted(hits->begin(), hits->end())) ++errors;
      std::unordered_set<VectorId> seen;
      for (const auto& h : *hits) {
        if (!seen.insert(h.id).second) ++errors;  // an id live in two segments
      }
      ++searches;
      const VectorId id = VectorId(rng() % 2) * 100000 + rng() % 2000;
      auto got = e.Get("mixed", id);
      if (got) {
        if (got->vector.size() != kDim) ++errors;
      } else if (got.error().code() != StatusCode::kNotFound) {
        ++errors;
      }
      ++gets;
    }
  };
  std::vector<std::thread> threads;
  threads.emplace_back(writer, 0);
  threads.emplace_back(writer, 1);
  threads.emplace_back(reader, 0);
  threads.emplace_back(reader, 1);
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop.store(true);
  for (auto& t : threads) t.join();
  std::printf("mixed load: %d s, %llu write batches, %llu compactions, %llu searches, %llu gets, %llu errors\n",
              seconds, static_cast<unsigned long long>(writes.load()),
              static_cast<unsigned long long>(compactions.load()),
              static_cast<unsigned long long>(searches.load()), static_cast<unsigned long long>(gets.load()),
              static_cast<unsigned long long>(errors.load()));
  EXPECT_EQ(errors.load(), 0u);
  EXPECT_GT(writes.load(), 10u);
  EXPECT_GT(searches.load(), 10u);

  // Final data: every id as its writer last left it, and search recall against
  // exact search over that model.
  auto info = e.DescribeCollection("mixed");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->num_vectors, model.size());
  for (const auto& [id, v] : model) {
    auto got = e.Get("mixed", id);
    ASSERT_TRUE(got.has_value()) << id;
    ASSERT_EQ(got->vector, v) << id;
  }
  std::mt19937 rng(7);
  size_t hit = 0, total = 0;
  for (int q = 0; q < 100; ++q) {
    auto query = RandomVector(rng);
    auto got = e.Search("mixed", query, {.k = 10, .ef = 128});
    ASSERT_TRUE(got.has_value());
    std::vector<std::pair<float, VectorId>> all;
    for (const auto& [id, v] : model) {
      float d = 0;
      for (size_t j = 0; j < kDim; ++j) d += (v[j] - query[j]) * (v[j] - query[j]);
      all.push_back({d, id});
    }
    std::sort(all.begin(), all.end());
    std::unordered_set<VectorId> want;
    for (size_t i = 0; i < std::min<size_t>(10, all.size()); ++i) want.insert(all[i].second);
    for (const auto& h : *got) hit += want.count(h.id);
    total += want.size();
  }
  const double recall = double(hit) / double(total);
  std::printf("mixed load: final %zu vectors in %zu sealed segments, recall@10 %.4f against exact search\n",
              model.size(), info->sealed_segments, recall);
  EXPECT_GE(recall, 0.95);
  opened->reset();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace strata
