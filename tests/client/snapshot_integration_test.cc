// Snapshots end to end (issue 13): a live server with a snapshot_dir, a client writing batches
// while another asks for a snapshot, then `strata restore` (RestoreSnapshot, and the binary)
// into a fresh data directory, opened and checked to hold exactly the acknowledged batches up
// to the reported sequence, whole batches only; and every refusal -- no snapshot_dir, a name
// that is not one folder name, a name that exists, a restore onto something that is not new or
// empty -- leaving what it refused untouched. strata-cli snapshot through the real binary.

#include <sys/file.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "client/client.h"
#include "engine/strata.h"
#include "server/server.h"
#include "tools/restore.h"

namespace strata::client {
namespace {

namespace fs = std::filesystem;
constexpr uint32_t kDim = 8;
constexpr size_t kPerBatch = 10;

// Batch b (1-based): ids [b*kPerBatch, (b+1)*kPerBatch), coordinates b + 0.001 j, attribute batch=b.
std::vector<Record> Batch(uint64_t b) {
  std::vector<Record> out;
  for (size_t j = 0; j < kPerBatch; ++j) {
    Record r;
    r.id = b * kPerBatch + j;
    r.vector.assign(kDim, float(b) + 0.001f * float(j));
    r.attributes = {{"batch", int64_t(b)}};
    out.push_back(std::move(r));
  }
  return out;
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every path under `dir` with its contents, to show that a refusal changed nothing.
std::string Listing(const fs::path& dir) {
  std::string out;
  std::set<std::string> lines;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    lines.insert(fs::relative(e.path(), dir).string() + (e.is_regular_file() ? "=" + ReadAll(e.path()) : "/"));
  }
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// The batches the engine at `dir` holds, each checked to be whole and to carry its values.
std::set<uint64_t> BatchesIn(const fs::path& dir, uint64_t up_to) {
  std::set<uint64_t> present;
  auto e = Engine::Open(dir);
  EXPECT_TRUE(e.has_value()) << e.error().ToString();
  if (!e) return present;
  for (uint64_t b = 1; b <= up_to; ++b) {
    size_t found = 0;
    for (size_t j = 0; j < kPerBatch; ++j) {
      auto r = (*e)->Get("c", b * kPerBatch + j);
      if (!r) continue;
      ++found;
      EXPECT_FLOAT_EQ(r->vector[0], float(b) + 0.001f * float(j));
      EXPECT_EQ(r->attributes.size(), 1u);
      if (r->attributes.size() == 1) EXPECT_EQ(std::get<int64_t>(r->attributes[0].value), int64_t(b));
    }
    EXPECT_TRUE(found == 0 || found == kPerBatch) << "batch " << b << " is in part: " << found;
    if (found) present.insert(b);
  }
  return present;
}

struct ProcessRun {
  int rc = -1;
  std::string out, err;
};

class SnapshotIntegration : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    root_ = fs::temp_directory_path() /
            ("strata_snapshot_it_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(root_);  // this process's own name: left by nothing else
    fs::create_directories(snaps());
    EngineOptions options;  // durability sync: acknowledged means on disk
    options.maintenance_interval_ms = 5;
    auto engine = Engine::Open(root_ / "data", options);
    ASSERT_TRUE(engine.has_value()) << engine.error().ToString();
    engine_ = std::move(*engine);
  }

  void StartServer(bool with_snapshot_dir) {
    server::ServerConfig config;
    config.port = 0;
    config.metrics_port = 0;
    config.data_dir = (root_ / "data").string();
    if (with_snapshot_dir) config.snapshot_dir = snaps().string();
    config.worker_threads = 4;
    config.log_level = "warn";
    auto server = server::Server::Start(config, *engine_);
    ASSERT_TRUE(server.has_value()) << server.error().ToString();
    server_ = std::move(*server);
  }

  void TearDown() override {
    if (server_) {
      server_->Shutdown();
      server_->Wait();
      server_.reset();
    }
    engine_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  std::unique_ptr<Client> Connect() {
    auto c = Client::Connect("127.0.0.1", server_->port(), {.io_timeout_ms = 60000});
    EXPECT_TRUE(c.has_value()) << c.error().ToString();
    return c ? std::move(*c) : nullptr;
  }

  void CreateAndFill(Client& c, uint64_t batches) {
    CollectionSpec spec;
    spec.name = "c";
    spec.dim = kDim;
    spec.seal_threshold = 200;  // a seal every 20 batches: segments to hard-link
    ASSERT_TRUE(c.CreateCollection(spec).ok());
    for (uint64_t b = 1; b <= batches; ++b) {
      auto r = c.Upsert("c", kDim, Batch(b));
      ASSERT_TRUE(r.has_value()) << r.error().ToString();
    }
    ASSERT_TRUE(c.Flush("c").ok());
  }

  // A binary with shell words `args`; stdout and stderr captured.
  ProcessRun Exec(const std::string& binary, const std::string& args) {
    const fs::path out = root_ / "run.out", err = root_ / "run.err";
    const std::string cmd = binary + " " + args + " >" + out.string() + " 2>" + err.string();
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ReadAll(out), ReadAll(err)};
  }

  fs::path snaps() const { return root_ / "snaps"; }

  fs::path root_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<server::Server> server_;
};

TEST_F(SnapshotIntegration, TakenWhileAClientWritesRestoresToExactlyTheBatchesUpToItsSequence) {
  StartServer(true);
  auto admin = Connect();
  ASSERT_NE(admin, nullptr);
  CreateAndFill(*admin, 30);

  std::atomic<uint64_t> acked{30};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    auto w = Connect();
    ASSERT_NE(w, nullptr);
    for (uint64_t b = 31; !stop.load(); ++b) {
      auto r = w->Upsert("c", kDim, Batch(b));
      ASSERT_TRUE(r.has_value()) << r.error().ToString();
      acked.store(b);
    }
  });
  auto wait_for = [&](uint64_t n) {
    while (acked.load() < n) std::this_thread::yield();
  };
  wait_for(50);
  const uint64_t before = acked.load();
  auto report = admin->Snapshot("c", "snap-1");
  const uint64_t after = acked.load();
  wait_for(after + 10);  // writes go on after it
  stop = true;
  writer.join();
  ASSERT_TRUE(report.has_value()) << report.error().ToString();

  EXPECT_EQ(report->path, (fs::absolute(snaps()) / "snap-1").lexically_normal().string());
  EXPECT_GE(report->sequence, before);
  EXPECT_LE(report->sequence, after);
  EXPECT_GE(report->segments, 1u);
  EXPECT_GT(report->files_linked, 0u);
  // Only the new folder appeared in snapshot_dir (the partial one was renamed into place).
  EXPECT_EQ(std::distance(fs::directory_iterator(snaps()), fs::directory_iterator()), 1);

  const std::string snapshot_before = Listing(report->path);
  auto restored = tools::RestoreSnapshot(report->path, root_ / "restored");
  ASSERT_TRUE(restored.has_value()) << restored.error().ToString();
  ASSERT_EQ(restored->collections.size(), 1u);
  EXPECT_EQ(restored->collections[0].spec.name, "c");
  EXPECT_EQ(restored->collections[0].num_vectors, report->sequence * kPerBatch);
  EXPECT_GT(restored->files, 0u);
  EXPECT_EQ(Listing(report->path), snapshot_before);  // the snapshot is left as it was
  EXPECT_FALSE(fs::exists(fs::path(report->path) / "LOCK"));

  // Exactly batches 1..sequence, each whole; nothing written after the snapshot point.
  const std::set<uint64_t> present = BatchesIn(root_ / "restored", acked.load());
  ASSERT_EQ(present.size(), report->sequence);
  EXPECT_EQ(*present.begin(), 1u);
  EXPECT_EQ(*present.rbegin(), report->sequence);
  // The server's collection goes on with everything.
  auto info = admin->DescribeCollection("c");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->num_vectors, acked.load() * kPerBatch);
}

TEST_F(SnapshotIntegration, RefusedWithoutASnapshotDirSayingHowToEnableIt) {
  StartServer(false);
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  CreateAndFill(*c, 2);
  auto r = c->Snapshot("c", "s");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kUnimplemented) << r.error().ToString();
  EXPECT_NE(r.error().message().find("--snapshot-dir"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("snapshot_dir"), std::string::npos) << r.error().message();
  EXPECT_TRUE(fs::is_empty(snaps()));
  EXPECT_TRUE(c->Ping().ok());  // the connection stays usable
}

TEST_F(SnapshotIntegration, NamesThatAreNotOneFolderNameAreRefusedAndNothingIsWritten) {
  StartServer(true);
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  CreateAndFill(*c, 2);
  for (const std::string& name :
       {std::string(""), std::string("."), std::string(".."), std::string("../escape"), std::string("a/b"),
        std::string("/tmp/abs"), std::string("sp ace"), std::string("new\nline"), std::string("nul\0x", 5),
        std::string("caf\xc3\xa9"), std::string("x*"), std::string(201, 'n')}) {
    auto r = c->Snapshot("c", name);
    ASSERT_FALSE(r.has_value()) << name;
    EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument) << r.error().ToString();
    EXPECT_NE(r.error().message().find("name"), std::string::npos) << r.error().message();
  }
  EXPECT_TRUE(fs::is_empty(snaps()));
  EXPECT_FALSE(fs::exists(root_ / "escape"));
  // Names at the edges of the rule are fine.
  for (const std::string& name : {std::string("..."), std::string(".hidden"), std::string("A-z_0.9"),
                                  std::string(200, 'n')}) {
    auto r = c->Snapshot("c", name);
    EXPECT_TRUE(r.has_value()) << name << ": " << r.error().ToString();
  }
  EXPECT_EQ(std::distance(fs::directory_iterator(snaps()), fs::directory_iterator()), 4);
}

TEST_F(SnapshotIntegration, AnExistingNameIsRefusedAndItsContentsAreUntouched) {
  StartServer(true);
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  CreateAndFill(*c, 3);
  fs::create_directories(snaps() / "taken" / "sub");
  { std::ofstream(snaps() / "taken" / "sub" / "keep.txt") << "mine"; }
  { std::ofstream(snaps() / "afile") << "also mine"; }
  const std::string before = Listing(snaps());
  for (const char* name : {"taken", "afile"}) {
    auto r = c->Snapshot("c", name);
    ASSERT_FALSE(r.has_value()) << name;
    EXPECT_EQ(r.error().code(), StatusCode::kAlreadyExists) << r.error().ToString();
  }
  EXPECT_EQ(Listing(snaps()), before);  // no partial folder left beside them either

  ASSERT_TRUE(c->Snapshot("c", "first").has_value());
  const std::string first = Listing(snaps() / "first");
  ASSERT_TRUE(c->Upsert("c", kDim, Batch(4)).has_value());
  auto again = c->Snapshot("c", "first");
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(Listing(snaps() / "first"), first);

  auto missing = c->Snapshot("nope", "other");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(snaps() / "other"));
}

TEST_F(SnapshotIntegration, RestoreRefusesWhatItMustNotTouchAndFillsAnEmptyFolder) {
  StartServer(true);
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  CreateAndFill(*c, 5);
  auto snap = c->Snapshot("c", "s");
  ASSERT_TRUE(snap.has_value()) << snap.error().ToString();

  // A folder with something in it.
  fs::create_directories(root_ / "busy");
  { std::ofstream(root_ / "busy" / "notes.txt") << "keep"; }
  auto r = tools::RestoreSnapshot(snap->path, root_ / "busy");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.error().message().find("not empty"), std::string::npos) << r.error().message();
  EXPECT_EQ(Listing(root_ / "busy"), "notes.txt=keep\n");
  // A file; a missing parent.
  r = tools::RestoreSnapshot(snap->path, root_ / "busy" / "notes.txt");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(ReadAll(root_ / "busy" / "notes.txt"), "keep");
  r = tools::RestoreSnapshot(snap->path, root_ / "no" / "such" / "dir");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(root_ / "no"));
  // A source that a running engine has open (the server's own data directory), and one that
  // is not a snapshot at all.
  r = tools::RestoreSnapshot(root_ / "data", root_ / "x");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("LOCK"), std::string::npos) << r.error().message();
  r = tools::RestoreSnapshot(root_ / "busy", root_ / "x");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("MANIFEST"), std::string::npos) << r.error().message();
  EXPECT_FALSE(fs::exists(root_ / "x"));
  // A destination whose LOCK someone holds (it is not empty then, and refused as such).
  fs::create_directories(root_ / "locked");
  const int fd = ::open((root_ / "locked" / "LOCK").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  r = tools::RestoreSnapshot(snap->path, root_ / "locked");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("LOCK is held"), std::string::npos) << r.error().message();
  ::close(fd);
  EXPECT_EQ(Listing(root_ / "locked"), "LOCK=\n");
  // Nothing was left beside the destinations (no hidden staging folders).
  for (const auto& e : fs::directory_iterator(root_)) {
    EXPECT_NE(e.path().filename().string().front(), '.') << e.path();
  }

  // An existing empty folder is filled in place.
  fs::create_directories(root_ / "empty");
  auto ok = tools::RestoreSnapshot(snap->path, root_ / "empty");
  ASSERT_TRUE(ok.has_value()) << ok.error().ToString();
  EXPECT_EQ(BatchesIn(root_ / "empty", 5).size(), 5u);
}

TEST_F(SnapshotIntegration, StrataCliSnapshotAndStrataRestore) {
  StartServer(true);
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  CreateAndFill(*c, 4);
  const std::string port = " --port " + std::to_string(server_->port());
  ProcessRun r = Exec(STRATA_CLI_PATH, "snapshot c cli-snap" + port);
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::string path = (fs::absolute(snaps()) / "cli-snap").lexically_normal().string();
  EXPECT_NE(r.out.find(path), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("write batch 4"), std::string::npos) << r.out;

  r = Exec(STRATA_CLI_PATH, "snapshot c cli-json --json" + port);
  ASSERT_EQ(r.rc, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["sequence"], 4);
  EXPECT_EQ(j["collection"], "c");
  EXPECT_EQ(j["path"], (fs::absolute(snaps()) / "cli-json").lexically_normal().string());

  r = Exec(STRATA_CLI_PATH, "snapshot c ../out" + port);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("name"), std::string::npos) << r.err;
  r = Exec(STRATA_CLI_PATH, "snapshot c cli-snap" + port);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("AlreadyExists"), std::string::npos) << r.err;
  r = Exec(STRATA_CLI_PATH, "snapshot c" + port);  // NAME missing: a usage error
  EXPECT_EQ(r.rc, 2);

  const fs::path into = root_ / "cli-restored";
  r = Exec(STRATA_BINARY, "restore " + path + " --into " + into.string());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("collection 'c': 40 vectors"), std::string::npos) << r.out;
  const std::string restored = Listing(into);
  r = Exec(STRATA_BINARY, "restore " + path + " --into " + into.string());
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("not empty"), std::string::npos) << r.err;
  EXPECT_EQ(Listing(into), restored);
  r = Exec(STRATA_BINARY, "restore " + (root_ / "data").string() + " --into " + (root_ / "y").string());
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("LOCK"), std::string::npos) << r.err;
  EXPECT_EQ(BatchesIn(into, 4).size(), 4u);
}

}  // namespace
}  // namespace strata::client
