// HnswIndex under concurrent writers and readers. Run under ThreadSanitizer by
// scripts/test.sh (label "concurrent"). Every thread does a fixed amount of work;
// nothing depends on timing.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <latch>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "index/flat/flat_index.h"
#include "index/hnsw/hnsw_index.h"
#include "tests/index/test_data.h"

namespace strata::index {
namespace {

constexpr size_t kDim = 16;

using test_data::Clustered;

// Recall@10 of `index` against exact search over the rows of `base` for which `live` is true.
double RecallAgainstLive(const HnswIndex& index, const VectorSet& base,
                         const std::vector<bool>& live, const VectorSet& queries) {
  std::vector<VectorId> ids;
  for (size_t i = 0; i < base.size(); ++i) {
    if (live[i]) ids.push_back(i);
  }
  auto rows = *VectorSet::Create(ids.size(), base.dim());
  for (size_t i = 0; i < ids.size(); ++i) {
    std::memcpy(rows.mutable_row(i), base.row(ids[i]), base.dim() * sizeof(float));
  }
  auto exact = *FlatIndex::Build(std::move(rows), index.metric(), ids);
  SearchContext ctx;
  SearchParams p;
  p.k = 10;
  p.ef = 64;
  size_t hit = 0, total = 0;
  for (size_t q = 0; q < queries.size(); ++q) {
    auto got = *index.Search(queries[q], p, ctx);
    auto want = *exact->Search(queries[q], p, ctx);
    std::unordered_set<VectorId> w;
    for (const auto& n : want) w.insert(n.id);
    for (const auto& n : got) hit += w.count(n.id);
    total += want.size();
  }
  return double(hit) / double(total);
}

// Checks one search result: no error, sorted, only ids that were inserted at some point
// (< max_id), none removed before the search started (rank in 1..removed_before).
void CheckResult(const Result<std::vector<Neighbor>>& got, VectorId max_id,
                 const std::vector<uint32_t>& removal_rank, size_t removed_before,
                 std::atomic<int>& failures) {
  if (!got.has_value()) {
    ADD_FAILURE() << got.error().ToString();
    ++failures;
    return;
  }
  if (!std::is_sorted(got->begin(), got->end())) {
    ADD_FAILURE() << "results not sorted";
    ++failures;
  }
  for (const auto& n : *got) {
    if (n.id >= max_id) {
      ADD_FAILURE() << "id " << n.id << " was never inserted";
      ++failures;
    } else if (removal_rank[n.id] != 0 && removal_rank[n.id] <= removed_before) {
      ADD_FAILURE() << "id " << n.id << " returned after its removal completed";
      ++failures;
    }
  }
}

TEST(HnswConcurrency, SearchWhileInsertingAndRemoving) {
  constexpr size_t kInitial = 1000, kTotal = 5000, kSearches = 600;
  auto base = Clustered(kTotal, kDim, 1);
  auto queries = Clustered(100, kDim, 2);
  HnswOptions opt;
  opt.ef_construction = 64;  // default consolidate_fraction: repairs run during the test
  auto index = *HnswIndex::Create(kDim, Metric::kL2, opt);
  for (size_t i = 0; i < kInitial; ++i) ASSERT_TRUE(index->Add(i, base[i]).ok());

  // Removal order: every 4th initial id, shuffled. removal_rank[id] = position + 1.
  std::vector<size_t> removals;
  for (size_t i = 0; i < kInitial; i += 4) removals.push_back(i);
  std::shuffle(removals.begin(), removals.end(), std::mt19937(3));
  std::vector<uint32_t> removal_rank(kTotal, 0);
  for (size_t r = 0; r < removals.size(); ++r) removal_rank[removals[r]] = uint32_t(r + 1);
  std::atomic<size_t> removed{0};
  std::atomic<int> failures{0};
  std::latch start(5);

  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (size_t i = kInitial + t; i < kTotal; i += 2) {
        Status s = index->Add(i, base[i]);
        if (!s.ok()) {
          ADD_FAILURE() << s.ToString();
          ++failures;
        }
      }
    });
  }
  threads.emplace_back([&] {
    start.arrive_and_wait();
    for (size_t r = 0; r < removals.size(); ++r) {
      Status s = index->Remove(removals[r]);
      if (!s.ok()) {
        ADD_FAILURE() << s.ToString();
        ++failures;
      }
      removed.store(r + 1, std::memory_order_release);
    }
  });
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      SearchContext ctx;
      SearchParams p;
      p.k = 10;
      p.ef = 48;
      start.arrive_and_wait();
      for (size_t i = 0; i < kSearches; ++i) {
        // Alternate random queries with the vectors being removed (their own best match).
        VectorView q = i % 2 ? queries[(i + t) % queries.size()]
                             : base[removals[(i / 2 + t * 7) % removals.size()]];
        const size_t before = removed.load(std::memory_order_acquire);
        CheckResult(index->Search(q, p, ctx), kTotal, removal_rank, before, failures);
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);

  std::vector<bool> live(kTotal, true);
  for (size_t r : removals) live[r] = false;
  EXPECT_EQ(index->size(), kTotal - removals.size());
  for (size_t r : removals) EXPECT_FALSE(index->Contains(r)) << r;
  EXPECT_GE(RecallAgainstLive(*index, base, live, queries), 0.9);
}

TEST(HnswConcurrency, AddBatchWhileSearching) {
  constexpr size_t kInitial = 500, kTotal = 3500, kSearches = 600;
  auto base = Clustered(kTotal, kDim, 4);
  auto queries = Clustered(100, kDim, 5);
  HnswOptions opt;
  opt.ef_construction = 64;
  auto index = *HnswIndex::Create(kDim, Metric::kL2, opt);
  for (size_t i = 0; i < kInitial; ++i) ASSERT_TRUE(index->Add(i, base[i]).ok());
  auto batch = *VectorSet::Create(kTotal - kInitial, kDim);
  std::memcpy(batch.mutable_data(), base.row(kInitial), batch.size_bytes());
  std::vector<VectorId> ids(batch.size());
  std::iota(ids.begin(), ids.end(), VectorId(kInitial));

  const std::vector<uint32_t> no_removals(kTotal, 0);
  std::atomic<int> failures{0};
  std::latch start(3);
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    HnswBuildOptions b;
    b.num_threads = 2;
    start.arrive_and_wait();
    Status s = index->AddBatch(batch, ids, b);
    if (!s.ok()) {
      ADD_FAILURE() << s.ToString();
      ++failures;
    }
  });
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      SearchContext ctx;
      SearchParams p;
      p.k = 10;
      p.ef = 48;
      start.arrive_and_wait();
      for (size_t i = 0; i < kSearches; ++i) {
        VectorView q = queries[(i * 2 + t) % queries.size()];
        CheckResult(index->Search(q, p, ctx), kTotal, no_removals, 0, failures);
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  EXPECT_EQ(index->size(), kTotal);
  EXPECT_GE(RecallAgainstLive(*index, base, std::vector<bool>(kTotal, true), queries), 0.9);
}

// Issue 14: a batch that replaces present ids consolidates between its slices (taking
// the index exclusively) while searches and single inserts go on.
TEST(HnswConcurrency, ReplacingBatchWhileSearchingAndInserting) {
  constexpr size_t kIds = 1500, kExtra = 300, kSearches = 300;
  auto base = Clustered(kIds, kDim, 7);
  auto next = Clustered(kIds, kDim, 8);
  auto extra = Clustered(kExtra, kDim, 9);
  auto queries = Clustered(100, kDim, 10);
  HnswOptions opt;
  opt.ef_construction = 64;
  auto index = *HnswIndex::Create(kDim, Metric::kL2, opt);
  std::vector<VectorId> ids(kIds);
  std::iota(ids.begin(), ids.end(), VectorId(0));
  ASSERT_TRUE(index->AddBatch(base, ids).ok());

  const VectorId max_id = kIds + kExtra;
  const std::vector<uint32_t> no_removals(max_id, 0);
  std::atomic<int> failures{0};
  std::latch start(4);
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    // One OpenMP thread: the batch runs one parallel region per slice, and with a pool of
    // two ThreadSanitizer cannot see libgomp's barriers between regions (false reports on
    // the reused stack slots). The races that matter here are with the other threads.
    HnswBuildOptions b;
    b.num_threads = 1;
    start.arrive_and_wait();
    for (const VectorSet* round : {&next, &base}) {
      Status s = index->AddBatch(*round, ids, b);
      if (!s.ok()) {
        ADD_FAILURE() << s.ToString();
        ++failures;
      }
    }
  });
  threads.emplace_back([&] {
    start.arrive_and_wait();
    for (size_t i = 0; i < kExtra; ++i) {
      Status s = index->Add(kIds + i, extra[i]);
      if (!s.ok()) {
        ADD_FAILURE() << s.ToString();
        ++failures;
      }
    }
  });
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      SearchContext ctx;
      SearchParams p;
      p.k = 10;
      p.ef = 48;
      start.arrive_and_wait();
      for (size_t i = 0; i < kSearches; ++i) {
        CheckResult(index->Search(queries[(i * 2 + t) % queries.size()], p, ctx), max_id, no_removals, 0,
                    failures);
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  EXPECT_EQ(index->size(), max_id);
  EXPECT_LE(index->GraphStats().num_nodes, max_id * 3 / 2);
  EXPECT_EQ(*index->Get(0), std::vector<float>(base.row(0), base.row(0) + kDim));
}

TEST(HnswConcurrency, ConcurrentUpsertsKeepOneVectorPerId) {
  constexpr size_t kIds = 200, kRounds = 3;
  auto base = Clustered(2 * kIds * kRounds, kDim, 6);
  HnswOptions opt;
  opt.ef_construction = 32;
  auto index = *HnswIndex::Create(kDim, Metric::kL2, opt);
  std::latch start(2);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  // Thread t writes row (round * 2 + t) * kIds + id for every id, racing the other thread.
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (size_t round = 0; round < kRounds; ++round) {
        for (size_t id = 0; id < kIds; ++id) {
          Status s = index->Add(id, base[(round * 2 + t) * kIds + id]);
          if (!s.ok()) {
            ADD_FAILURE() << s.ToString();
            ++failures;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  EXPECT_EQ(index->size(), kIds);
  const HnswStats st = index->GraphStats();
  EXPECT_EQ(st.num_nodes - st.num_deleted - st.num_free, kIds);
  // Each id holds one of the two vectors written to it last, and search nearly always
  // finds it there. (Not always: under this churn every node's neighbours are replaced
  // several times, and the repair after deletes can leave a few live nodes without
  // in-links; 0-4 of 200 were seen unreachable under ThreadSanitizer.)
  SearchContext ctx;
  SearchParams p;
  p.k = 1;
  size_t found = 0;
  for (size_t id = 0; id < kIds; ++id) {
    auto v = index->Get(id);
    ASSERT_TRUE(v.has_value());
    const size_t last = (kRounds - 1) * 2;
    const bool from0 = std::memcmp(v->data(), base.row(last * kIds + id), kDim * 4) == 0;
    const bool from1 = std::memcmp(v->data(), base.row((last + 1) * kIds + id), kDim * 4) == 0;
    EXPECT_TRUE(from0 || from1) << "id " << id;
    auto got = *index->Search(VectorView(v->data(), kDim), p, ctx);
    ASSERT_EQ(got.size(), 1u);
    found += got[0].id == id;
  }
  EXPECT_GE(found, kIds * 95 / 100);
}

}  // namespace
}  // namespace strata::index
