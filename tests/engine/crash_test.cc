// Crash test: a child process writes batches and is killed with SIGKILL at
// random moments; after every kill the data directory is reopened and must hold
// every acknowledged batch, and no batch partly: its state must be exactly the
// model after batches 0..k, where k is the last acknowledged batch or the one
// after it (written to the log but killed before it could say so). Batches write
// records by id and by string key; both are checked.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>

#include "tests/engine/crash_batches.h"

extern char** environ;

namespace strata {
namespace {

namespace fs = std::filesystem;
// Records by id, and records by key (their ids are the engine's to assign).
struct Model {
  std::map<VectorId, Record> ids;
  std::map<std::string, Record> keys;
  size_t size() const { return ids.size() + keys.size(); }
};

void Apply(Model& m, const WriteBatch& b) {
  for (const auto& op : b.ops()) {
    const bool upsert = op.kind == engine::WriteOp::Kind::kUpsert;
    if (op.by_key()) {
      if (upsert) {
        m.keys[op.key] = Record{0, op.vector, op.attributes, op.key};
      } else {
        m.keys.erase(op.key);
      }
    } else if (upsert) {
      m.ids[op.id] = Record{op.id, op.vector, op.attributes};
    } else {
      m.ids.erase(op.id);
    }
  }
}

struct Child {
  pid_t pid = -1;
  int out = -1;
};

Child Spawn(const fs::path& dir, uint64_t first, uint64_t seed) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  const std::string d = dir.string(), f = std::to_string(first), s = std::to_string(seed);
  char* argv[] = {const_cast<char*>(STRATA_CRASH_CHILD), const_cast<char*>(d.c_str()),
                  const_cast<char*>(f.c_str()), const_cast<char*>(s.c_str()), nullptr};
  Child c;
  EXPECT_EQ(posix_spawn(&c.pid, STRATA_CRASH_CHILD, &fa, nullptr, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  c.out = fds[0];
  fcntl(c.out, F_SETFL, O_NONBLOCK);
  return c;
}

// Reads the child's output, kills it `ms` milliseconds after it said "ready"
// (or after it started, when `from_start`), and returns the highest batch number
// it acknowledged (or -1) and whether it reported creating the collection.
// Fails the test if the child exited on its own.
struct Outcome {
  int64_t last = -1;       // highest acknowledged batch
  bool created = false;    // the child created the collection
  bool in_flush = false;    // killed between "flush" and "flushed"
  bool in_compact = false;  // killed between "compact" and "compacted"
};

// kill_in_flush: kill `ms` (0..2) milliseconds after the child announces a seal.
Outcome RunAndKill(Child c, int ms, bool from_start, bool kill_in_flush = false) {
  std::string buf;
  int64_t last = -1;
  bool created = false, ready = false, in_flush = false, in_compact = false;
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + (from_start ? std::chrono::milliseconds(ms) : std::chrono::seconds(60));
  auto drain = [&] {
    char tmp[4096];
    ssize_t n;
    while ((n = read(c.out, tmp, sizeof tmp)) > 0) buf.append(tmp, size_t(n));
    size_t pos;
    while ((pos = buf.find('\n')) != std::string::npos) {
      const std::string line = buf.substr(0, pos);
      buf.erase(0, pos + 1);
      if (line == "created") {
        created = true;
      } else if (line == "flush") {
        in_flush = true;
        if (kill_in_flush) deadline = Clock::now() + std::chrono::milliseconds(ms);
      } else if (line == "flushed") {
        in_flush = false;
      } else if (line == "compact") {
        in_compact = true;
        if (kill_in_flush) deadline = Clock::now() + std::chrono::milliseconds(ms);
      } else if (line == "compacted") {
        in_compact = false;
      } else if (line == "ready") {
        if (!from_start && !kill_in_flush && !ready) deadline = Clock::now() + std::chrono::milliseconds(ms);
        ready = true;
      } else if (!line.empty() && line.find_first_not_of("0123456789") == std::string::npos) {
        last = std::stoll(line);
      }  // anything else is the engine's log on stdout (seal and compaction notes)
    }
  };
  while (Clock::now() < deadline) {
    pollfd p{c.out, POLLIN, 0};
    poll(&p, 1, 2);
    drain();
    int status;
    if (waitpid(c.pid, &status, WNOHANG) == c.pid) {
      ADD_FAILURE() << "child exited by itself with status " << status;
      close(c.out);
      return {last, created, false, false};
    }
  }
  kill(c.pid, SIGKILL);
  int status;
  waitpid(c.pid, &status, 0);
  drain();  // lines written before the kill
  close(c.out);
  return {last, created, in_flush, in_compact};
}

TEST(EngineCrash, AcknowledgedBatchesSurviveSigkill) {
  const int rounds = std::getenv("STRATA_CRASH_ROUNDS") ? std::atoi(std::getenv("STRATA_CRASH_ROUNDS")) : 50;
  const fs::path dir = fs::temp_directory_path() / ("strata_crash_test_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const uint64_t seed = 20261129;
  std::mt19937 rng(seed);
  Model model;             // state after batches 0..applied-1
  std::map<std::string, VectorId> key_ids;  // the id each live key had at the last check
  uint64_t keyed_checked = 0;
  uint64_t applied = 0;    // batches in `model`
  bool created = false;
  uint64_t torn_rounds = 0, torn_bytes = 0, unacked_present = 0, killed_in_seal = 0, killed_in_compaction = 0;
  for (int round = 0; round < rounds; ++round) {
    // One round in five kills the child while it is still opening (recovering),
    // one in four right after it announces a seal; the others let it write for up
    // to 300 ms.
    const unsigned mode = rng() % 20;
    const bool during_open = mode < 4, during_seal = mode >= 15;
    const int ms = during_open ? int(rng() % 150) : during_seal ? int(rng() % 4) : 1 + int(rng() % 300);
    const Outcome out = RunAndKill(Spawn(dir, applied, seed), ms, during_open, during_seal);
    const int64_t last = out.last;
    created = created || out.created;
    killed_in_seal += out.in_flush;
    killed_in_compaction += out.in_compact;
    auto e = Engine::Open(dir);
    ASSERT_TRUE(e.has_value()) << "round " << round << ": " << e.error().ToString();
    torn_bytes += (*e)->recovery().torn_bytes_dropped;
    torn_rounds += (*e)->recovery().torn_bytes_dropped > 0;
    auto info = (*e)->DescribeCollection(crash_test::kCollection);
    if (!info) {
      ASSERT_FALSE(created) << "round " << round << ": an acknowledged collection is gone";
      ASSERT_EQ(applied, 0u);
      continue;
    }
    // One log record per batch: the sequence says how many batches are in.
    const uint64_t present = info->last_sequence;
    const uint64_t acked = last >= 0 ? uint64_t(last) + 1 : applied;
    ASSERT_GE(present, acked) << "round " << round << ": acknowledged batches lost";
    ASSERT_LE(present, acked + 1) << "round " << round << ": more batches than were written";
    unacked_present += present == acked + 1;
    while (applied < present) Apply(model, crash_test::MakeBatch(seed, applied++));
    ASSERT_EQ(info->num_vectors, model.size()) << "round " << round;
    for (VectorId id = 0; id < crash_test::kMaxId; ++id) {
      auto r = (*e)->Get(crash_test::kCollection, id);
      auto it = model.ids.find(id);
      ASSERT_EQ(r.has_value(), it != model.ids.end()) << "round " << round << " id " << id;
      if (r) {
        ASSERT_EQ(r->vector, it->second.vector) << "round " << round << " id " << id;
        ASSERT_EQ(r->attributes, it->second.attributes) << "round " << round << " id " << id;
      }
    }
    // Every acknowledged keyed write, by key; a live key keeps its id across crashes.
    for (int k = 0; k < crash_test::kKeys; ++k) {
      const std::string key = crash_test::CrashKey(uint64_t(k));
      auto r = (*e)->GetByKey(crash_test::kCollection, key);
      auto it = model.keys.find(key);
      ASSERT_EQ(r.has_value(), it != model.keys.end()) << "round " << round << " key " << key;
      if (!r) {
        key_ids.erase(key);
        continue;
      }
      ASSERT_EQ(r->key, key);
      ASSERT_TRUE(IsKeyedId(r->id)) << r->id;
      ASSERT_EQ(r->vector, it->second.vector) << "round " << round << " key " << key;
      ASSERT_EQ(r->attributes, it->second.attributes) << "round " << round << " key " << key;
      if (auto seen = key_ids.find(key); seen != key_ids.end() && seen->second != r->id) {
        // Only a delete and re-add (between the two checks) gives a key a new, larger id.
        ASSERT_GT(r->id, seen->second) << "round " << round << " key " << key;
      }
      key_ids[key] = r->id;
      ++keyed_checked;
    }
    if (!model.ids.empty()) {
      // Search returns live ids at their true distances (the graph is approximate:
      // exactness is not asserted, content is).
      const Record& probe = model.ids.begin()->second;
      auto hits = (*e)->SearchWithKeys(crash_test::kCollection, probe.vector, {.k = 5, .ef = 512});
      ASSERT_TRUE(hits.has_value());
      ASSERT_EQ(hits->size(), std::min<size_t>(5, model.size()));
      for (const auto& h : *hits) {
        const Record* rec = nullptr;
        if (h.key.empty()) {
          auto it = model.ids.find(h.id);
          if (it != model.ids.end()) rec = &it->second;
        } else if (auto it = model.keys.find(h.key); it != model.keys.end()) {
          rec = &it->second;
        }
        ASSERT_TRUE(rec != nullptr) << "round " << round << ": search returned absent id " << h.id << " key "
                                    << h.key;
        float d = 0;
        for (size_t j = 0; j < crash_test::kDim; ++j) {
          d += (rec->vector[j] - probe.vector[j]) * (rec->vector[j] - probe.vector[j]);
        }
        EXPECT_NEAR(h.distance, d, 1e-3f * (1 + d)) << "round " << round;
      }
    }
  }
  std::printf("crash test: %d rounds, %llu batches acknowledged and verified, %llu kills inside a seal, "
              "%llu inside a compaction, %llu rounds with a torn log tail (%llu bytes dropped in all), "
              "%llu rounds where the in-flight batch had reached the log\n",
              rounds, static_cast<unsigned long long>(applied), static_cast<unsigned long long>(killed_in_seal),
              static_cast<unsigned long long>(killed_in_compaction),
              static_cast<unsigned long long>(torn_rounds), static_cast<unsigned long long>(torn_bytes),
              static_cast<unsigned long long>(unacked_present));
  EXPECT_GT(killed_in_seal, 0u);
  EXPECT_GT(killed_in_compaction, 0u);
  EXPECT_GT(applied, uint64_t(rounds));  // the children made progress
  EXPECT_GT(keyed_checked, 0u);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace strata
