// Memory and disk of a collection whose rows are rewritten again and again (issue 14, D1).
//
//   reupsert_memory write DIR [--rows N] [--dim D] [--batch B] [--rewrites R]
//       creates collection "c" in a new DIR, writes ids 0..N-1 once and then R more times with
//       fresh random vectors in batches of B, and prints one JSON line after the writes and one
//       after a flush;
//   reupsert_memory open DIR
//       opens DIR again (a restart) and prints one JSON line.
//
// After the flush and after the restart, a second line ("..._settled") is printed once background
// compaction is done: one sealed segment and the engine's memory counter unchanged for 3 s (at
// most 120 s).
//
// Each line: phase, live vectors, the engine's memory counter (DescribeCollection), the process's
// resident set (VmRSS) and peak (VmHWM), and the bytes the data directory takes on disk (du's
// allocated blocks). bench/reupsert_memory.sh runs one write and 40 rewrites side by side and
// prints the ratios; docs/RELIABILITY.md has the figures.

#include <sys/stat.h>

#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/strata.h"

namespace fs = std::filesystem;
using namespace strata;

namespace {

uint64_t StatusKib(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field, 0) == 0) return std::strtoull(line.c_str() + std::string(field).size(), nullptr, 10);
  }
  return 0;
}

uint64_t DiskBytes(const fs::path& dir) {
  uint64_t bytes = 0;
  for (const auto& f : fs::recursive_directory_iterator(dir)) {
    struct stat st;
    if (::lstat(f.path().c_str(), &st) == 0) bytes += uint64_t(st.st_blocks) * 512;
  }
  return bytes;
}

int Report(const Engine& e, const fs::path& dir, const char* phase) {
  auto info = e.DescribeCollection("c");
  if (!info) {
    std::fprintf(stderr, "describe: %s\n", info.error().ToString().c_str());
    return 1;
  }
  std::printf(
      "{\"phase\": \"%s\", \"vectors\": %zu, \"sealed_segments\": %zu, \"engine_memory_bytes\": %zu, "
      "\"rss_bytes\": %llu, \"peak_rss_bytes\": %llu, \"disk_bytes\": %llu}\n",
      phase, info->num_vectors, info->sealed_segments, info->memory_bytes,
      (unsigned long long)(StatusKib("VmRSS:") * 1024), (unsigned long long)(StatusKib("VmHWM:") * 1024),
      (unsigned long long)DiskBytes(dir));
  std::fflush(stdout);
  return 0;
}

// Waits until background compaction is done: at most one sealed segment and the memory counter
// unchanged for 3 s (at most 120 s in all).
void Settle(const Engine& e) {
  size_t last = 0;
  int stable = 0;
  for (int i = 0; i < 240 && stable < 6; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    auto info = e.DescribeCollection("c");
    const size_t now = info ? info->memory_bytes : 0;
    stable = now == last && info && info->sealed_segments <= 1 ? stable + 1 : 0;
    last = now;
  }
}

int Fail(const Status& s) {
  std::fprintf(stderr, "%s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s write DIR [--rows N] [--dim D] [--batch B] [--rewrites R] | open DIR\n",
                 argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  const fs::path dir = argv[2];
  size_t rows = 10000, dim = 256, batch = 1000, rewrites = 40;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const size_t v = std::strtoull(argv[i + 1], nullptr, 10);
    if (flag == "--rows") rows = v;
    else if (flag == "--dim") dim = v;
    else if (flag == "--batch") batch = v;
    else if (flag == "--rewrites") rewrites = v;
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  EngineOptions options;
  options.background_compaction = true;  // as a server runs it
  if (mode == "open") {
    auto e = Engine::Open(dir, options);
    if (!e) return Fail(e.error());
    if (Report(**e, dir, "after_restart") != 0) return 1;
    Settle(**e);
    return Report(**e, dir, "after_restart_settled");
  }
  if (mode != "write" || rows == 0 || dim == 0 || batch == 0) {
    std::fprintf(stderr, "bad arguments\n");
    return 2;
  }
  if (fs::exists(dir)) {
    std::fprintf(stderr, "%s exists; give a new directory\n", dir.c_str());
    return 2;
  }
  auto e = Engine::Open(dir, options);
  if (!e) return Fail(e.error());
  CollectionSpec spec;
  spec.name = "c";
  spec.dim = dim;
  if (Status s = (*e)->CreateCollection(spec); !s.ok()) return Fail(s);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (size_t pass = 0; pass <= rewrites; ++pass) {
    for (size_t start = 0; start < rows; start += batch) {
      WriteBatch b;
      for (size_t id = start; id < std::min(rows, start + batch); ++id) {
        std::vector<float> v(dim);
        for (float& x : v) x = u(rng);
        b.Upsert(id, v);
      }
      if (Status s = (*e)->Write("c", b); !s.ok()) return Fail(s);
    }
    std::fprintf(stderr, "pass %zu of %zu written\n", pass + 1, rewrites + 1);
  }
  if (Report(**e, dir, "after_writes") != 0) return 1;
  if (Status s = (*e)->Flush("c"); !s.ok()) return Fail(s);
  if (Report(**e, dir, "after_flush") != 0) return 1;
  Settle(**e);
  return Report(**e, dir, "after_flush_settled");
}
