// Engine::Snapshot: a consistent copy of a collection taken while writes, seals and
// compactions go on -- exactly a prefix of the acknowledged batches, whole batches
// only -- and the refusals that keep it from touching anything it did not create.

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/strata.h"
#include "engine/write_batch.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
constexpr size_t kDim = 8;
constexpr size_t kPerBatch = 10;

fs::path TestDir(const std::string& what) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::temp_directory_path() /
                 ("strata_snapshot_test_" + std::string(info->name()) + "_" + what + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);  // this test's own name and pid: left by nothing else
  return dir;
}

// Batch b (1-based) upserts ids [b*kPerBatch, (b+1)*kPerBatch), every coordinate b,
// with the attribute batch=b.
WriteBatch Batch(uint64_t b) {
  WriteBatch w;
  for (size_t j = 0; j < kPerBatch; ++j) {
    std::vector<float> v(kDim, float(b) + 0.001f * float(j));
    w.Upsert(b * kPerBatch + j, v, {{"batch", int64_t(b)}});
  }
  return w;
}

CollectionSpec Spec(uint64_t seal_threshold) {
  CollectionSpec s;
  s.name = "c";
  s.dim = kDim;
  s.seal_threshold = seal_threshold;
  return s;
}

// The batches whose records the engine at `dir` holds, checking each is whole.
std::set<uint64_t> BatchesIn(const fs::path& dir, uint64_t up_to) {
  auto e = Engine::Open(dir);
  EXPECT_TRUE(e.has_value()) << e.error().ToString();
  std::set<uint64_t> present;
  if (!e) return present;
  for (uint64_t b = 1; b <= up_to; ++b) {
    size_t found = 0;
    for (size_t j = 0; j < kPerBatch; ++j) {
      auto r = (*e)->Get("c", b * kPerBatch + j);
      if (r) {
        ++found;
        EXPECT_FLOAT_EQ(r->vector[0], float(b) + 0.001f * float(j));
      }
    }
    EXPECT_TRUE(found == 0 || found == kPerBatch) << "batch " << b << " is in part: " << found << " of " << kPerBatch;
    if (found) present.insert(b);
  }
  return present;
}

TEST(EngineSnapshot, HoldsExactlyTheBatchesUpToItsPointWhileWritesSealsAndCompactionsGoOn) {
  const fs::path dir = TestDir("data"), snap = TestDir("snap");
  EngineOptions o;
  o.maintenance_interval_ms = 5;
  auto engine = Engine::Open(dir, o);
  ASSERT_TRUE(engine.has_value()) << engine.error().ToString();
  ASSERT_TRUE((*engine)->CreateCollection(Spec(200)).ok());  // a seal every 20 batches
  for (uint64_t b = 1; b <= 60; ++b) ASSERT_TRUE((*engine)->Write("c", Batch(b)).ok());
  ASSERT_TRUE((*engine)->Flush("c").ok());  // at least one sealed segment to link

  std::atomic<uint64_t> acked{60};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (uint64_t b = 61; !stop.load(); ++b) {
      ASSERT_TRUE((*engine)->Write("c", Batch(b)).ok());
      acked.store(b);
    }
  });
  std::thread compactor([&] {
    while (!stop.load()) ASSERT_TRUE((*engine)->Compact("c").ok());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const uint64_t before = acked.load();
  auto report = (*engine)->Snapshot("c", snap);
  const uint64_t after = acked.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // writes go on after it
  stop = true;
  writer.join();
  compactor.join();
  ASSERT_TRUE(report.has_value()) << report.error().ToString();
  EXPECT_GE(report->sequence, before);
  EXPECT_LE(report->sequence, after);
  EXPECT_GE(report->segments, 1u);
  EXPECT_GT(report->files_linked, 0u);

  // Exactly batches 1..sequence, each whole; none written after the snapshot point.
  const std::set<uint64_t> present = BatchesIn(snap, acked.load());
  ASSERT_EQ(present.size(), report->sequence);
  if (!present.empty()) {
    EXPECT_EQ(*present.begin(), 1u);
    EXPECT_EQ(*present.rbegin(), report->sequence);
  }
  // The original goes on with everything.
  EXPECT_EQ((*engine)->DescribeCollection("c")->num_vectors, acked.load() * kPerBatch);
  engine->reset();
  EXPECT_EQ(BatchesIn(dir, acked.load()).size(), acked.load());
  fs::remove_all(dir);
  fs::remove_all(snap);
}

TEST(EngineSnapshot, IsAnEngineDirectoryThatSearchesAndTakesWritesOnItsOwn) {
  const fs::path dir = TestDir("data"), snap = TestDir("snap");
  {
    auto engine = Engine::Open(dir);
    ASSERT_TRUE(engine.has_value());
    ASSERT_TRUE((*engine)->CreateCollection(Spec(50)).ok());
    ASSERT_TRUE((*engine)->CreateCollection({.name = "other", .dim = 4}).ok());
    for (uint64_t b = 1; b <= 12; ++b) ASSERT_TRUE((*engine)->Write("c", Batch(b)).ok());
    ASSERT_TRUE((*engine)->Delete("c", 15).ok());
    auto report = (*engine)->Snapshot("c", snap);
    ASSERT_TRUE(report.has_value()) << report.error().ToString();
    EXPECT_EQ(report->sequence, 13u);
  }
  auto copy = Engine::Open(snap);
  ASSERT_TRUE(copy.has_value()) << copy.error().ToString();
  auto names = (*copy)->ListCollections();
  ASSERT_EQ(names.size(), 1u);  // that collection alone
  EXPECT_EQ(names[0].spec.name, "c");
  EXPECT_EQ(names[0].num_vectors, 12 * kPerBatch - 1);
  EXPECT_FALSE((*copy)->Get("c", 15).has_value());
  std::vector<float> q(kDim, 7.0f);
  auto hits = (*copy)->Search("c", q, {.k = 3, .filter = "batch = 7"});
  ASSERT_TRUE(hits.has_value()) << hits.error().ToString();
  ASSERT_EQ(hits->size(), 3u);
  EXPECT_EQ((*hits)[0].id / kPerBatch, 7u);
  // Writes to the copy leave the original alone (hard-linked files are never written).
  ASSERT_TRUE((*copy)->Write("c", Batch(100)).ok());
  ASSERT_TRUE((*copy)->Compact("c").ok());
  copy->reset();
  auto orig = Engine::Open(dir);
  ASSERT_TRUE(orig.has_value());
  EXPECT_FALSE((*orig)->Get("c", 100 * kPerBatch).has_value());
  EXPECT_EQ((*orig)->DescribeCollection("c")->num_vectors, 12 * kPerBatch - 1);
  orig->reset();
  fs::remove_all(dir);
  fs::remove_all(snap);
}

TEST(EngineSnapshot, RefusesWhatItDidNotCreateAndLeavesItAlone) {
  const fs::path dir = TestDir("data"), taken = TestDir("taken");
  auto engine = Engine::Open(dir);
  ASSERT_TRUE(engine.has_value());
  ASSERT_TRUE((*engine)->CreateCollection(Spec(1000)).ok());
  ASSERT_TRUE((*engine)->Write("c", Batch(1)).ok());

  // An existing folder (even empty) or file is never overwritten.
  fs::create_directories(taken / "sub");
  { std::ofstream(taken / "sub" / "keep.txt") << "mine"; }
  auto r = (*engine)->Snapshot("c", taken);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kAlreadyExists) << r.error().ToString();
  EXPECT_TRUE(fs::exists(taken / "sub" / "keep.txt"));
  EXPECT_EQ(std::distance(fs::directory_iterator(taken), fs::directory_iterator()), 1);
  const fs::path file = taken / "file";
  { std::ofstream(file) << "x"; }
  r = (*engine)->Snapshot("c", file);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kAlreadyExists);
  // No leftover partial folders next to the refused destinations.
  EXPECT_EQ(std::distance(fs::directory_iterator(taken), fs::directory_iterator()), 2);

  r = (*engine)->Snapshot("c", taken / "missing-parent" / "snap");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kNotFound);
  r = (*engine)->Snapshot("c", dir / "collections" / "snap");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument) << r.error().ToString();
  r = (*engine)->Snapshot("nope", taken / "snap");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kNotFound);
  r = (*engine)->Snapshot("c", "");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(taken / "snap"));
  engine->reset();
  fs::remove_all(dir);
  fs::remove_all(taken);
}

// ReplaceCollection: a cluster replica's catch-up puts a peer's copy of a shard in the place of
// its own collection -- moved out of a scratch folder, listed durably, the old files gone.
TEST(EngineSnapshot, ReplaceCollectionPutsAnotherEnginesCopyInItsPlaceDurably) {
  const fs::path a_dir = TestDir("a"), b_dir = TestDir("b");
  auto a = Engine::Open(a_dir);
  auto b = Engine::Open(b_dir);
  ASSERT_TRUE(a.has_value() && b.has_value());
  ASSERT_TRUE((*a)->CreateCollection(Spec(50)).ok());
  for (uint64_t b_ = 1; b_ <= 12; ++b_) ASSERT_TRUE((*a)->Write("c", Batch(b_)).ok());  // sealed + logged
  ASSERT_TRUE((*a)->Delete("c", 15).ok());
  ASSERT_TRUE((*b)->CreateCollection(Spec(1000)).ok());
  ASSERT_TRUE((*b)->CreateCollection({.name = "other", .dim = 4}).ok());
  ASSERT_TRUE((*b)->Write("c", Batch(200)).ok());  // b's own records: gone after the swap
  const auto old_dirs = std::distance(fs::directory_iterator(b_dir / "collections"), fs::directory_iterator());

  auto scratch = (*b)->MakeScratchDir("catch-up");
  ASSERT_TRUE(scratch.has_value()) << scratch.error().ToString();
  EXPECT_EQ(scratch->parent_path(), b_dir / "scratch");
  EXPECT_TRUE(scratch->filename().string().starts_with("catch-up-"));
  EXPECT_FALSE((*b)->MakeScratchDir("../x").has_value());
  ASSERT_TRUE((*a)->Snapshot("c", *scratch / "copy").has_value());
  // A copy of the wrong shape is refused and changes nothing.
  auto wrong = (*b)->ReplaceCollection("other", *scratch / "copy");
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().code(), StatusCode::kInvalidArgument) << wrong.error().ToString();
  EXPECT_EQ((*b)->DescribeCollection("other")->spec.dim, 4u);
  auto empty = (*b)->ReplaceCollection("c", *scratch);  // no MANIFEST: not a snapshot
  ASSERT_FALSE(empty.has_value());
  EXPECT_TRUE((*b)->Get("c", 200 * kPerBatch).has_value());

  auto rows = (*b)->ReplaceCollection("c", *scratch / "copy");
  ASSERT_TRUE(rows.has_value()) << rows.error().ToString();
  EXPECT_EQ(*rows, 12 * kPerBatch - 1);
  EXPECT_FALSE((*b)->Get("c", 200 * kPerBatch).has_value());
  EXPECT_FALSE((*b)->Get("c", 15).has_value());
  auto r = (*b)->Get("c", 7 * kPerBatch + 3);
  ASSERT_TRUE(r.has_value());
  EXPECT_FLOAT_EQ(r->vector[0], 7.003f);
  EXPECT_EQ((*b)->DescribeCollection("c")->spec.seal_threshold, 50u);  // the copy's spec
  ASSERT_TRUE((*b)->Write("c", Batch(300)).ok());
  // The old folder is gone, the copy's moved in: as many collection folders as before.
  EXPECT_EQ(std::distance(fs::directory_iterator(b_dir / "collections"), fs::directory_iterator()), old_dirs);
  EXPECT_TRUE(fs::is_empty(*scratch / "copy" / "collections"));  // moved, not copied
  // A name that is not there (a drop came first) is not made again.
  auto again = (*b)->MakeScratchDir("catch-up");
  ASSERT_TRUE(again.has_value());
  ASSERT_TRUE((*a)->Snapshot("c", *again / "copy").has_value());
  auto absent = (*b)->ReplaceCollection("fresh", *again / "copy");
  ASSERT_FALSE(absent.has_value());
  EXPECT_EQ(absent.error().code(), StatusCode::kNotFound);
  EXPECT_FALSE((*b)->DescribeCollection("fresh").has_value());
  // A failing before_swap cancels it: the old collection stays, the moved folder goes.
  auto cancelled = (*b)->ReplaceCollection("c", *again / "copy", [] { return Cancelled("not now"); });
  ASSERT_FALSE(cancelled.has_value());
  EXPECT_EQ(cancelled.error().code(), StatusCode::kCancelled);
  EXPECT_TRUE((*b)->Get("c", 300 * kPerBatch).has_value());
  EXPECT_EQ(std::distance(fs::directory_iterator(b_dir / "collections"), fs::directory_iterator()), old_dirs);
  // The engine may snapshot into its own scratch folders (not elsewhere in its directory).
  ASSERT_TRUE((*b)->Snapshot("c", *again / "own").has_value());
  // Durable: all of it after a reopen, and what was left in scratch/ removed.
  { std::ofstream(*again / "left.txt") << "x"; }
  b->reset();
  auto reopened = Engine::Open(b_dir);
  ASSERT_TRUE(reopened.has_value()) << reopened.error().ToString();
  EXPECT_FALSE(fs::exists(b_dir / "scratch"));
  // A "scratch" folder the engine did not make (no marker) is left alone, and not used.
  reopened->reset();
  fs::create_directories(b_dir / "scratch" / "mine");
  reopened = Engine::Open(b_dir);
  ASSERT_TRUE(reopened.has_value()) << reopened.error().ToString();
  EXPECT_TRUE(fs::exists(b_dir / "scratch" / "mine"));
  auto refused = (*reopened)->MakeScratchDir("catch-up");
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), StatusCode::kAlreadyExists) << refused.error().ToString();
  EXPECT_TRUE(fs::exists(b_dir / "scratch" / "mine"));
  EXPECT_EQ((*reopened)->DescribeCollection("c")->num_vectors, 13 * kPerBatch - 1);
  EXPECT_TRUE((*reopened)->Get("c", 300 * kPerBatch).has_value());
  EXPECT_FALSE((*reopened)->Get("c", 200 * kPerBatch).has_value());
  EXPECT_EQ((*reopened)->DescribeCollection("other")->spec.dim, 4u);
  // The peer's collection is untouched by all of it.
  EXPECT_EQ((*a)->DescribeCollection("c")->num_vectors, 12 * kPerBatch - 1);
  reopened->reset();
  a->reset();
  fs::remove_all(a_dir);
  fs::remove_all(b_dir);
}

}  // namespace
}  // namespace strata
