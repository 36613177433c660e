// Background threads' CPU confinement (issue 14 R1): the CPU-list parser, the per-thread
// mask and OpenMP team size, and the engine's own threads following
// EngineOptions::background_cpus.
#include "engine/background_priority.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/strata.h"

namespace strata::engine {
namespace {

std::vector<int> Allowed() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(::sched_getaffinity(0, sizeof(set), &set), 0);
  std::vector<int> out;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) out.push_back(c);
  }
  return out;
}

TEST(CpuList, ParsesWhatTasksetWrites) {
  const std::vector<int> allowed = Allowed();
  ASSERT_FALSE(allowed.empty());
  const int c = allowed.front();
  auto empty = ParseCpuList("");
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
  auto one = ParseCpuList(std::to_string(c));
  ASSERT_TRUE(one.has_value()) << one.error().ToString();
  EXPECT_EQ(*one, std::vector<int>{c});
  // Ranges and repeats collapse to sorted, distinct CPUs.
  auto repeated = ParseCpuList(fmt::format("{0}-{0},{0}", c));
  ASSERT_TRUE(repeated.has_value()) << repeated.error().ToString();
  EXPECT_EQ(*repeated, std::vector<int>{c});
  // The whole allowed set, written back, reads the same.
  auto all = ParseCpuList(FormatCpuList(allowed));
  ASSERT_TRUE(all.has_value()) << all.error().ToString();
  EXPECT_EQ(*all, allowed);
  // auto: every allowed CPU but the lowest, or none on a one-CPU process.
  auto a = ParseCpuList("auto");
  ASSERT_TRUE(a.has_value());
  const std::vector<int> want =
      allowed.size() >= 2 ? std::vector<int>(allowed.begin() + 1, allowed.end()) : std::vector<int>{};
  EXPECT_EQ(*a, want);
}

TEST(CpuList, FormatsRuns) {
  EXPECT_EQ(FormatCpuList({}), "");
  EXPECT_EQ(FormatCpuList({3}), "3");
  EXPECT_EQ(FormatCpuList({0, 1, 2, 5, 7, 8}), "0-2,5,7-8");
}

TEST(CpuList, BadListsAreRefusedNamingWhatIsWrong) {
  struct Case {
    const char* text;
    const char* says;
  };
  for (const Case& k : {Case{"one", "\"one\" is not a CPU number"}, Case{"1-", "\"\" is not a CPU number"},
                        Case{"-1", "\"\" is not a CPU number"}, Case{"0,,1", "\"\" is not a CPU number"},
                        Case{"0 ", "\"0 \" is not a CPU number"}, Case{"3-1", "range \"3-1\" runs backwards"},
                        Case{"99999", "past the largest"}}) {
    auto r = ParseCpuList(k.text);
    ASSERT_FALSE(r.has_value()) << k.text;
    EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.error().message().find(k.says), std::string::npos) << k.text << ": " << r.error().message();
  }
  // A CPU this process may not run on (CPU_SETSIZE - 1 on any machine with fewer CPUs).
  const std::vector<int> allowed = Allowed();
  if (allowed.back() < CPU_SETSIZE - 1) {
    auto r = ParseCpuList(std::to_string(CPU_SETSIZE - 1));
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message().find(fmt::format("may not run on CPU {}", CPU_SETSIZE - 1)), std::string::npos)
        << r.error().message();
  }
}

TEST(BackgroundPriority, ConfinesTheThreadAndItsOpenMpTeam) {
  const std::vector<int> allowed = Allowed();
  const int cpu = allowed.back();
  std::set<int> team_cpus;
  int team_size = 0;
  int nice = -100;
  std::vector<int> mask;
  Status applied;
  std::thread t([&] {
    // nice 19: lowering priority needs no privilege whatever nice the tests run under.
    applied = ApplyToThisThread(BackgroundPriority{.nice = 19, .cpus = {cpu}});
    errno = 0;
    nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
    cpu_set_t set;
    CPU_ZERO(&set);
    ASSERT_EQ(::pthread_getaffinity_np(::pthread_self(), sizeof(set), &set), 0);
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) mask.push_back(c);
    }
    team_size = omp_get_max_threads();  // the default team: capped at the CPUs it may use
    // A team of two anyway (explicit): both threads run where their parent may, on `cpu`.
    std::mutex mu;
    int explicit_team = 0;
#pragma omp parallel num_threads(2)
    {
#pragma omp single
      explicit_team = omp_get_num_threads();
      for (int i = 0; i < 1000; ++i) {
        const int here = ::sched_getcpu();
        std::lock_guard<std::mutex> g(mu);
        team_cpus.insert(here);
      }
    }
    EXPECT_EQ(explicit_team, 2);
  });
  t.join();
  ASSERT_TRUE(applied.ok()) << applied.ToString();
  EXPECT_EQ(nice, 19);
  EXPECT_EQ(mask, std::vector<int>{cpu});
  EXPECT_EQ(team_size, 1);
  EXPECT_EQ(team_cpus, std::set<int>{cpu});
}

TEST(BackgroundPriority, TheTeamCapNeverRaisesTheTeamSize) {
  const std::vector<int> allowed = Allowed();
  if (allowed.size() < 2) GTEST_SKIP() << "needs a process that may run on two CPUs";
  int team = 0;
  std::thread t([&] {
    omp_set_num_threads(1);  // as OMP_NUM_THREADS=1 would
    (void)ApplyToThisThread(BackgroundPriority{.nice = 19, .cpus = allowed});
    team = omp_get_max_threads();
  });
  t.join();
  EXPECT_EQ(team, 1);
}

// The CPUs each of this process's threads may run on, from /proc/self/task/*/status.
std::vector<std::string> ThreadCpuLists() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream f(e.path() / "status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("Cpus_allowed_list:", 0) == 0) {
        const size_t v = line.find_first_not_of(" \t", line.find(':') + 1);
        out.push_back(v == std::string::npos ? "" : line.substr(v));
      }
    }
  }
  return out;
}

TEST(BackgroundPriority, EngineThreadsFollowBackgroundCpus) {
  const std::vector<int> allowed = Allowed();
  if (allowed.size() < 2) GTEST_SKIP() << "needs a process that may run on two CPUs";
  const std::string dir = ::testing::TempDir() + "strata_background_cpus_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);  // this test's own name under the test temp dir
  const int cpu = allowed.back();
  const size_t confined_before = [&] {
    size_t n = 0;
    for (const auto& l : ThreadCpuLists()) n += l == std::to_string(cpu);
    return n;
  }();
  {
    EngineOptions o;
    o.background_cpus = {cpu};
    auto e = Engine::Open(dir, o);
    ASSERT_TRUE(e.has_value()) << e.error().ToString();
    // The insert, maintenance and compaction threads confine themselves as they start.
    size_t confined = 0;
    for (int i = 0; i < 200 && confined < confined_before + 3; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      confined = 0;
      for (const auto& l : ThreadCpuLists()) confined += l == std::to_string(cpu);
    }
    EXPECT_GE(confined, confined_before + 3);
  }
  std::filesystem::remove_all(dir);
}

TEST(BackgroundPriority, RunAsBackgroundConfinesTheCallingThread) {
  const std::vector<int> allowed = Allowed();
  if (allowed.size() < 2) GTEST_SKIP() << "needs a process that may run on two CPUs";
  const std::string dir = ::testing::TempDir() + "strata_run_as_background_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);  // this test's own name under the test temp dir
  {
    EngineOptions o;
    o.background_cpus = {allowed.back()};
    auto e = Engine::Open(dir, o);
    ASSERT_TRUE(e.has_value()) << e.error().ToString();
    std::vector<int> mask;
    int nice = 0;
    Status s;
    std::thread t([&] {
      s = (*e)->RunAsBackground();
      cpu_set_t set;
      CPU_ZERO(&set);
      ASSERT_EQ(::pthread_getaffinity_np(::pthread_self(), sizeof(set), &set), 0);
      for (int c = 0; c < CPU_SETSIZE; ++c) {
        if (CPU_ISSET(c, &set)) mask.push_back(c);
      }
      errno = 0;
      nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
    });
    t.join();
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(mask, std::vector<int>{allowed.back()});
    EXPECT_EQ(nice, 19);
  }
  std::filesystem::remove_all(dir);
}

TEST(BackgroundPriority, EngineRefusesACpuItMayNotRunOn) {
  const std::vector<int> allowed = Allowed();
  if (allowed.back() >= CPU_SETSIZE - 1) GTEST_SKIP() << "every CPU number is allowed here";
  const std::string dir = ::testing::TempDir() + "strata_background_cpus_bad_" + std::to_string(::getpid());
  EngineOptions o;
  o.background_cpus = {CPU_SETSIZE - 1};
  auto e = Engine::Open(dir, o);
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(e.error().message().find("background_cpus"), std::string::npos) << e.error().message();
  EXPECT_FALSE(std::filesystem::exists(dir));  // refused before anything was made
}

}  // namespace
}  // namespace strata::engine
