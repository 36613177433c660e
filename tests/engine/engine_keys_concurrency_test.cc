// Records by key under concurrency: a writer rewrites a set of keys batch after
// batch (one batch = one generation of every key, and a key deleted and re-added
// with a fresh id), with seals along the way, while readers search, get and list
// by key. A reader must see each batch entirely or not at all: every key once,
// all of one generation. Run under ThreadSanitizer by scripts/test.sh (label
// concurrent, in the engine_concurrency_test executable).

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/strata.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
constexpr size_t kDim = 4;
constexpr int kKeys = 10;

std::string KeyName(int i) { return "elem:" + std::to_string(i); }

// Generation g, key i: the vector (g, i, 0, 0); attribute gen = g.
std::vector<float> Vec(int g, int i) { return {float(g), float(i), 0.0f, 0.0f}; }

TEST(EngineKeysConcurrency, ReadersSeeWholeBatchesOfKeys) {
  const fs::path dir = fs::temp_directory_path() / ("strata_keys_mixed_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  EngineOptions o;
  o.background_compaction = true;
  o.maintenance_interval_ms = 5;
  auto opened = Engine::Open(dir, o);
  ASSERT_TRUE(opened.has_value()) << opened.error().ToString();
  Engine& e = **opened;
  CollectionSpec spec;
  spec.name = "k";
  spec.dim = kDim;
  spec.hnsw_ef_construction = 32;
  spec.seal_threshold = 60;  // a seal every few batches
  ASSERT_TRUE(e.CreateCollection(spec).ok());
  auto write_generation = [&](int g) {
    WriteBatch b;
    for (int i = 0; i < kKeys; ++i) b.UpsertByKey(KeyName(i), Vec(g, i), {{"gen", int64_t(g)}});
    b.DeleteByKey("churn");
    b.UpsertByKey("churn", Vec(g, kKeys), {{"gen", int64_t(g)}});
    return e.Write("k", b);
  };
  ASSERT_TRUE(write_generation(0).ok());

  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::atomic<uint64_t> reads{0};
  auto fail = [&](const std::string& what) {
    if (failures.fetch_add(1) < 5) ADD_FAILURE() << what;
  };
  auto reader = [&](int r) {
    while (!stop.load()) {
      // One snapshot: all kKeys + 1 records, every one of the same generation.
      const std::vector<float> q = {0, 0, 0, 0};
      auto hits = e.SearchWithKeys("k", q, {.k = 50, .strategy = SearchStrategy::kScan});
      if (!hits) {
        fail(hits.error().ToString());
        continue;
      }
      std::set<std::string> keys;
      std::set<float> gens;
      for (const auto& h : *hits) {
        keys.insert(h.key);
        if (!IsKeyedId(h.id)) fail("hit without a keyed id");
      }
      if (hits->size() != kKeys + 1 || keys.size() != kKeys + 1 || keys.count("")) {
        fail("search saw " + std::to_string(hits->size()) + " hits, " + std::to_string(keys.size()) + " keys");
      }
      for (const auto& h : *hits) {
        auto rec = e.Get("k", h.id);  // may be replaced by now: then NotFound or a newer one
        if (rec && rec->key != h.key) fail("id " + std::to_string(h.id) + " changed its key");
        // distance = g^2 + i^2 (squared l2 from the origin): the generation it was written by.
        const int i = h.key == "churn" ? kKeys : std::stoi(h.key.substr(5));
        gens.insert(std::round(std::sqrt(std::max(0.0f, h.distance - float(i * i)))));
      }
      if (gens.size() > 1) fail("one search saw " + std::to_string(gens.size()) + " generations");
      // By key: always present (a batch never shows the delete without the re-add).
      const std::string name = r % 2 ? "churn" : KeyName(int(reads.load() % kKeys));
      auto rec = e.GetByKey("k", name);
      if (!rec) {
        fail("GetByKey(" + name + "): " + rec.error().ToString());
      } else if (rec->key != name) {
        fail("GetByKey returned key " + rec->key);
      }
      auto page = e.ListKeys("k", 0, 1000);
      if (!page || page->keys.size() != kKeys + 1) fail("ListKeys saw a partial batch");
      reads.fetch_add(1);
    }
  };
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) readers.emplace_back(reader, r);
  int g = 1;
  for (; g <= 150 && failures.load() == 0; ++g) {
    if (Status s = write_generation(g); !s.ok()) {
      fail(s.ToString());
      break;
    }
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(reads.load(), 0u);
  // The last generation is what a fresh search sees, generation by vector.
  auto hits = e.SearchWithKeys("k", std::vector<float>{0, 0, 0, 0}, {.k = 50, .strategy = SearchStrategy::kScan});
  ASSERT_TRUE(hits.has_value());
  for (const auto& h : *hits) EXPECT_EQ(e.Get("k", h.id)->vector[0], float(g - 1)) << h.key;
  opened->reset();
  fs::remove_all(dir);
}

// Two writers upserting the same keys at once: a key is resolved under the collection's
// write lock, so each key ends up as one record with one id, never two.
TEST(EngineKeysConcurrency, ConcurrentWritersOfOneKeyMakeOneRecord) {
  const fs::path dir = fs::temp_directory_path() / ("strata_keys_writers_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  EngineOptions o;
  o.background_compaction = false;
  auto opened = Engine::Open(dir, o);
  ASSERT_TRUE(opened.has_value()) << opened.error().ToString();
  Engine& e = **opened;
  CollectionSpec spec;
  spec.name = "w";
  spec.dim = kDim;
  spec.hnsw_ef_construction = 32;
  spec.seal_threshold = 100;
  ASSERT_TRUE(e.CreateCollection(spec).ok());
  constexpr int kShared = 40;
  std::atomic<int> failures{0};
  auto writer = [&](int w) {
    for (int round = 0; round < 30; ++round) {
      WriteBatch b;
      for (int i = 0; i < kShared; ++i) b.UpsertByKey(KeyName(i), Vec(round, w));
      if (!e.Write("w", b).ok()) failures.fetch_add(1);
    }
  };
  std::thread a(writer, 0), b(writer, 1);
  a.join();
  b.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(e.DescribeCollection("w")->num_vectors, size_t(kShared));
  auto page = e.ListKeys("w", 0, 1000);
  ASSERT_TRUE(page.has_value());
  EXPECT_EQ(page->keys.size(), size_t(kShared));
  EXPECT_EQ(std::set<std::string>(page->keys.begin(), page->keys.end()).size(), size_t(kShared));
  // Ids were assigned once per key: the first kShared keyed ids.
  EXPECT_EQ(page->ids.back(), kKeyedIdBase + kShared - 1);
  opened->reset();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace strata
