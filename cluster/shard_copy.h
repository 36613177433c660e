#pragma once
// A shard replica's files for another replica's catch-up (docs/CLUSTER.md, "Catch-up"): the
// peer's side of shard_files / shard_file_read / shard_files_done (protocol.h).
//
// Take raises this node's write fence of the shard to the catch-up's epoch (ShardGate::Fence:
// from then on every write applied here also goes to the catching-up replica), seals the
// shard's in-memory segment (Engine::Seal: the copy is then segment files and a short log, which
// the replica opens without inserting rows again), then takes a consistent copy of the shard's
// engine collection (Engine::Snapshot: hard links of the sealed segment files and a copy of the
// log up to one write batch) into a scratch folder of the
// engine's (Engine::MakeScratchDir), and lists its files with their sizes and xxh64. The
// catching-up replica reads them piece by piece (Read) and lets the copy go (Done); a copy
// nobody read for kIdleSeconds is removed at the next call of any kind (a replica reads its
// copy without pause: an idle one belongs to a catch-up that failed or a reply that was lost),
// and every copy left is removed when this object goes (and by the engine's next open).
//
// Thread-safe: every method may be called from any threads at once.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>

#include "cluster/catch_up.h"
#include "cluster/model.h"
#include "core/status.h"
#include "protocol/protocol.h"

namespace strata {
class Engine;
}

namespace strata::cluster {

class ShardCopies {
 public:
  // Copies kept at once (a catching-up replica takes one at a time; more are refused with
  // ResourceExhausted until one is done or expires).
  static constexpr size_t kMaxCopies = 4;
  static constexpr int kIdleSeconds = 300;

  // `engine` and `gate` are borrowed and must outlive this object.
  ShardCopies(Engine& engine, ShardGate& gate) : engine_(engine), gate_(gate) {}
  ~ShardCopies();
  ShardCopies(const ShardCopies&) = delete;
  ShardCopies& operator=(const ShardCopies&) = delete;

  // A copy of the shard `address` names (its engine collection address.local), for the
  // catch-up started at address.epoch; NotFound when this node holds no such collection.
  Result<protocol::ShardFilesReply> Take(const ShardAddress& address);
  // Up to `length` bytes of file `path` of copy `token` from `offset` (fewer only at its end).
  // NotFound for an unknown (done, expired) token or a path the copy does not list.
  Result<std::string> Read(const ShardAddress& address, const std::string& token, const std::string& path,
                           uint64_t offset, uint32_t length);
  // Removes copy `token` (no error when it is gone already).
  Status Done(const ShardAddress& address, const std::string& token);
  // Copies held now.
  size_t size() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Copy {
    std::string local;                        // the engine collection copied
    std::filesystem::path scratch;            // the scratch folder (removed with the copy)
    std::filesystem::path root;               // the snapshot inside it
    std::map<std::string, uint64_t> files;    // relative path -> size
    Clock::time_point used;
  };
  // Takes the copies idle for kIdleSeconds out of copies_ into `out` (removed by the caller
  // outside the lock).
  void ExpireLocked(Clock::time_point now, std::vector<std::filesystem::path>& out);

  Engine& engine_;
  ShardGate& gate_;
  mutable std::mutex mu_;
  std::map<std::string, Copy> copies_;  // token -> copy; guarded by mu_
  size_t taking_ = 0;                   // Takes in progress; guarded by mu_
};

// The xxh64 (seed 0) of a whole file, read in pieces; IOError naming the file.
Result<uint64_t> FileXxh64(const std::filesystem::path& path);

}  // namespace strata::cluster
