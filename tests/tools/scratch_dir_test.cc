// The benchmark tools never delete what they did not create (issue 13's data-loss
// defect): a directory with unrelated files, an engine data directory, or one whose
// LOCK a running engine holds is refused and left exactly as it was.
#include "tools/scratch_dir.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <random>

#include "engine/strata.h"
#include "tools/engine_bench.h"
#include "tools/planner_bench.h"

namespace strata::tools {
namespace {
namespace fs = std::filesystem;

// A parent directory for the cases, removed by the test itself (it made it).
class ScratchDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("strata_scratch_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(root_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  // Every regular file under `dir` with its contents.
  static std::map<std::string, std::string> Snapshot(const fs::path& dir) {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      if (!e.is_regular_file()) {
        out[fs::relative(e.path(), dir).string()] = "<dir>";
        continue;
      }
      std::ifstream in(e.path(), std::ios::binary);
      out[fs::relative(e.path(), dir).string()] =
          std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    return out;
  }
  static void WriteFile(const fs::path& p, const std::string& text) {
    std::ofstream out(p);
    out << text;
  }
  // A tiny data set (rows in [0,1)^8) with exact ground truth for the benches.
  static LoadedDataset TinyData() {
    LoadedDataset d;
    d.name = "tiny";
    d.base = *VectorSet::Create(300, 8);
    d.queries = *VectorSet::Create(5, 8);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(0, 1);
    for (size_t i = 0; i < 300; ++i)
      for (size_t j = 0; j < 8; ++j) d.base.mutable_row(i)[j] = u(rng);
    for (size_t i = 0; i < 5; ++i)
      for (size_t j = 0; j < 8; ++j) d.queries.mutable_row(i)[j] = u(rng);
    d.gt.num_queries = 5;
    d.gt.k = 10;
    for (size_t q = 0; q < 5; ++q) {
      std::vector<std::pair<float, uint32_t>> all;
      for (uint32_t i = 0; i < 300; ++i) {
        float s = 0;
        for (size_t j = 0; j < 8; ++j) {
          const float t = d.base.row(i)[j] - d.queries.row(q)[j];
          s += t * t;
        }
        all.push_back({s, i});
      }
      std::sort(all.begin(), all.end());
      for (size_t j = 0; j < 10; ++j) d.gt.ids.push_back(all[j].second);
    }
    return d;
  }
  fs::path root_;
};

TEST_F(ScratchDirTest, FreshTemporaryDirectoryIsMarkedAndRemoved) {
  fs::path p;
  {
    auto s = ScratchDir::Claim({}, "strata-scratch-test", "scratch_dir_test");
    ASSERT_TRUE(s.has_value()) << s.error().ToString();
    p = (*s)->path();
    EXPECT_TRUE(fs::is_directory(p));
    EXPECT_TRUE(fs::is_regular_file(p / kScratchMarker));
    WriteFile(p / "work", "x");
  }
  EXPECT_FALSE(fs::exists(p));
}

TEST_F(ScratchDirTest, NewDirectoryIsCreatedAndRemoved) {
  const fs::path p = root_ / "new" / "deeper";
  {
    auto s = ScratchDir::Claim(p, "x", "scratch_dir_test");
    ASSERT_TRUE(s.has_value()) << s.error().ToString();
    WriteFile(p / "work", "x");
  }
  EXPECT_FALSE(fs::exists(p));
}

TEST_F(ScratchDirTest, EmptyDirectoryIsUsedAndLeftEmpty) {
  const fs::path p = root_ / "empty";
  fs::create_directories(p);
  {
    auto s = ScratchDir::Claim(p, "x", "scratch_dir_test");
    ASSERT_TRUE(s.has_value()) << s.error().ToString();
    WriteFile(p / "work", "x");
  }
  ASSERT_TRUE(fs::is_directory(p));
  EXPECT_TRUE(fs::is_empty(p));
}

TEST_F(ScratchDirTest, DirectoryWithUnrelatedFileIsRefusedAndUntouched) {
  const fs::path p = root_ / "mine";
  fs::create_directories(p / "sub");
  WriteFile(p / "thesis.tex", "six years of work");
  WriteFile(p / "sub" / "notes", "more");
  const auto before = Snapshot(p);
  {
    auto s = ScratchDir::Claim(p, "x", "scratch_dir_test");
    ASSERT_FALSE(s.has_value());
    EXPECT_NE(s.error().message().find(p.string()), std::string::npos) << s.error().message();
    EXPECT_NE(s.error().message().find("not empty"), std::string::npos) << s.error().message();
  }
  EXPECT_EQ(Snapshot(p), before);
}

TEST_F(ScratchDirTest, RegularFileIsRefused) {
  const fs::path p = root_ / "file";
  WriteFile(p, "data");
  auto s = ScratchDir::Claim(p, "x", "scratch_dir_test");
  ASSERT_FALSE(s.has_value());
  std::ifstream in(p);
  std::string text;
  in >> text;
  EXPECT_EQ(text, "data");
}

TEST_F(ScratchDirTest, MarkedDirectoryOfAnEarlierRunIsCleared) {
  const fs::path p = root_ / "kept";
  {
    auto s = ScratchDir::Claim(p, "x", "scratch_dir_test");
    ASSERT_TRUE(s.has_value());
    WriteFile(p / "old-run", "x");
    (*s)->Keep();
  }
  ASSERT_TRUE(fs::exists(p / "old-run"));
  {
    auto s = ScratchDir::Claim(p, "x", "scratch_dir_test");
    ASSERT_TRUE(s.has_value()) << s.error().ToString();
    EXPECT_FALSE(fs::exists(p / "old-run"));
  }
  EXPECT_TRUE(fs::is_empty(p));
}

// A directory whose LOCK is held is refused even when it carries the marker.
TEST_F(ScratchDirTest, HeldLockIsAlwaysRefused) {
  const fs::path p = root_ / "served";
  fs::create_directories(p);
  WriteFile(p / kScratchMarker, "scratch");
  auto engine = Engine::Open(p);
  ASSERT_TRUE(engine.has_value()) << engine.error().ToString();
  CollectionSpec spec;
  spec.name = "c";
  spec.dim = 4;
  ASSERT_TRUE((*engine)->CreateCollection(spec).ok());
  EXPECT_TRUE(LockIsHeld(p));
  const auto before = Snapshot(p);
  auto s = ScratchDir::Claim(p, "x", "scratch_dir_test");
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().message().find("LOCK is held"), std::string::npos) << s.error().message();
  EXPECT_EQ(Snapshot(p), before);
  engine->reset();
  EXPECT_FALSE(LockIsHeld(p));
}

// The defect as reported: engine-bench and planner-bench given an existing engine
// directory, a directory with an unrelated file, and one an open engine holds.
TEST_F(ScratchDirTest, BenchesRefuseDirectoriesTheyDidNotCreate) {
  const LoadedDataset data = TinyData();
  const fs::path unrelated = root_ / "unrelated";
  fs::create_directories(unrelated);
  WriteFile(unrelated / "keep.me", "precious");

  const fs::path existing = root_ / "engine";
  {
    auto e = Engine::Open(existing);
    ASSERT_TRUE(e.has_value());
    CollectionSpec spec;
    spec.name = "users";
    spec.dim = 8;
    ASSERT_TRUE((*e)->CreateCollection(spec).ok());
    WriteBatch b;
    b.Upsert(1, std::vector<float>(8, 0.5f));
    ASSERT_TRUE((*e)->Write("users", b).ok());
  }
  const fs::path locked = root_ / "locked";
  auto holder = Engine::Open(locked);
  ASSERT_TRUE(holder.has_value());

  for (const fs::path& dir : {unrelated, existing, locked}) {
    const auto before = Snapshot(dir);
    EngineBenchConfig ec;
    ec.data_dir = dir;
    ec.ef_values = {16};
    Status s = RunEngineBench(data, ec);
    EXPECT_FALSE(s.ok()) << dir;
    EXPECT_EQ(Snapshot(dir), before) << dir;

    PlannerBenchConfig pc;
    pc.data_dir = dir;
    pc.kinds = {"hnsw"};
    s = RunPlannerBench(data, pc);
    EXPECT_FALSE(s.ok()) << dir;
    EXPECT_EQ(Snapshot(dir), before) << dir;
  }
  // The engine directory still opens with its record.
  holder->reset();
  auto e = Engine::Open(existing);
  ASSERT_TRUE(e.has_value());
  auto got = (*e)->Get("users", 1);
  EXPECT_TRUE(got.has_value());
}

// By default engine-bench works in a fresh temporary directory and removes only that.
TEST_F(ScratchDirTest, EngineBenchDefaultsToATemporaryDirectory) {
  const LoadedDataset data = TinyData();
  EngineBenchConfig c;
  c.ef_values = {16};
  c.batch = 100;
  c.seals = 1;
  ASSERT_TRUE(RunEngineBench(data, c).ok());
  // And a new directory it is given is created and removed again.
  c.data_dir = root_ / "fresh";
  ASSERT_TRUE(RunEngineBench(data, c).ok());
  EXPECT_FALSE(fs::exists(c.data_dir));
}

}  // namespace
}  // namespace strata::tools
