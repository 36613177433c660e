// A replica's catch-up from its peer's files (ShardGate::CatchUpFromFiles; the peer's side is
// shard_copy.h; docs/CLUSTER.md, "Catch-up").

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>

#include "cluster/catch_up.h"
#include "cluster/shard_copy.h"
#include "engine/strata.h"
#include "storage/file_util.h"
#include "storage/posix_file.h"

namespace strata::cluster {

namespace fs = std::filesystem;

namespace {

// A path the peer listed, checked before anything is made of it here: relative, '/'
// separated, no empty, "." or ".." part.
Status CheckCopyPath(const std::string& path) {
  if (path.empty() || path.front() == '/' || path.size() > 4096) {
    return InvalidArgument("the peer listed the file '{}': not a relative path", path);
  }
  size_t from = 0;
  while (from <= path.size()) {
    const size_t to = std::min(path.find('/', from), path.size());
    const std::string_view part(path.data() + from, to - from);
    if (part.empty() || part == "." || part == ".." || part.find('\0') != std::string_view::npos) {
      return InvalidArgument("the peer listed the file '{}': an empty, '.' or '..' part", path);
    }
    from = to + 1;
  }
  return Status::Ok();
}

// Copies file `f` of the peer's copy `token` to `to`, checking its size and xxh64, fsynced;
// Cancelled as soon as `stopping` says so.
Status CopyFile(client::Client& peer, const std::string& remote, const std::string& token,
                const protocol::ShardFile& f, const fs::path& to, const std::function<Status()>& stopping) {
  std::error_code ec;
  fs::create_directories(to.parent_path(), ec);
  if (ec) return IOError("{}: cannot create: {}", to.parent_path().string(), ec.message());
  const int fd = storage::RetryOnEintr(
      [&] { return ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644); });
  if (fd < 0) return storage::OsError(errno, "cannot create", to);
  XXH64_state_t* state = XXH64_createState();
  if (state == nullptr) {
    ::close(fd);
    return Internal("xxh64: out of memory");
  }
  XXH64_reset(state, 0);
  Status status;
  uint64_t at = 0;
  while (status.ok() && at < f.size) {
    if (status = stopping(); !status.ok()) break;
    const uint32_t want = uint32_t(std::min<uint64_t>(protocol::kMaxShardFileChunk, f.size - at));
    auto chunk = peer.ShardFileRead(remote, token, f.path, at, want);
    if (!chunk) {
      status = chunk.error();
    } else if (chunk->size() != want) {
      status = IOError("the peer's file {} ended at {} bytes; it listed {}", f.path, at + chunk->size(), f.size);
    } else {
      XXH64_update(state, chunk->data(), chunk->size());
      status = storage::PwriteAll(fd, std::as_bytes(std::span(chunk->data(), chunk->size())), at, to);
      at += want;
    }
  }
  const uint64_t h = XXH64_digest(state);
  XXH64_freeState(state);
  if (status.ok() && h != f.xxh64) {
    status = Corruption("the peer's file {} arrived with xxh64 {:016x}; it listed {:016x}", f.path, h, f.xxh64);
  }
  if (status.ok() && storage::RetryOnEintr([&] { return ::fsync(fd); }) != 0) {
    status = storage::OsError(errno, "cannot fsync", to);
  }
  ::close(fd);
  return status;
}

}  // namespace

Result<CatchUpReport> ShardGate::CatchUpFromFiles(const ShardAddress& address, client::Client& peer) {
  Shard& shard = ShardOf(address.local);
  const uint64_t since = address.epoch;
  ForgetOlderThan(shard, since);
  // The local collection this catch-up replaces: one dropped and made again meanwhile (its
  // collection dropped and created again in the cluster) is not replaced by this copy.
  STRATA_ASSIGN_OR_RETURN(const CollectionInfo before, engine_.DescribeCollection(address.local));
  const std::string remote =
      ShardAddress{address.local, address.collection, address.shard, since, false}.ToString();
  CatchUpReport report;
  using Clock = std::chrono::steady_clock;
  auto lap = [at = Clock::now()]() mutable {
    const auto now = Clock::now();
    const double s = std::chrono::duration<double>(now - at).count();
    at = now;
    return s;
  };
  // The peer raises its fence to `since` before it takes the copy.
  STRATA_RETURN_IF_ERROR(CancelledIfStopping(address.local));
  STRATA_ASSIGN_OR_RETURN(protocol::ShardFilesReply offer, peer.ShardFiles(remote));
  report.offer_s = lap();
  // The peer's copy is let go once its files are here (or on any error before that); the
  // scratch folder once the catch-up is over.
  struct Release {
    client::Client& peer;
    const std::string& remote;
    const std::string& token;
    bool done = false;
    void operator()() {
      if (done) return;
      done = true;
      (void)peer.ShardFilesDone(remote, token);  // best effort: the peer expires it anyway
    }
    ~Release() { (*this)(); }
  } release{peer, remote, offer.token};
  STRATA_ASSIGN_OR_RETURN(fs::path scratch, engine_.MakeScratchDir("catch-up"));
  struct Cleanup {
    fs::path scratch;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(scratch, ec);
    }
  } cleanup{scratch};
  const fs::path root = scratch / "copy";
  std::set<fs::path> folders{root};
  for (const protocol::ShardFile& f : offer.files) {
    STRATA_RETURN_IF_ERROR(CheckCopyPath(f.path));
    const fs::path to = root / f.path;
    STRATA_RETURN_IF_ERROR(
        CopyFile(peer, remote, offer.token, f, to, [&] { return CancelledIfStopping(address.local); }));
    for (fs::path p = to.parent_path(); p != root && p.has_relative_path(); p = p.parent_path()) folders.insert(p);
    ++report.files;
    report.bytes += f.size;
  }
  // Deepest first: each folder's entries are durable before its own name is.
  for (auto it = folders.rbegin(); it != folders.rend(); ++it) {
    if (*it == root) continue;
    STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(*it / "."));
    STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(*it));
  }
  STRATA_RETURN_IF_ERROR(storage::SyncParentDirectory(root / "."));
  release();
  report.copy_s = lap();

  // The swap, with the live "+" writes held back (they wait on touch_mu) from the moment the
  // copy is open (its log replayed) until what they wrote is carried over into it.
  std::unique_lock touch(shard.touch_mu, std::defer_lock);
  // What the live writes left here, for every id and key they reached: the record, or none.
  std::vector<Record> put;
  std::unordered_set<VectorId> put_ids;
  std::vector<VectorId> gone_ids;
  std::vector<std::string> gone_keys;
  auto read_live = [&]() -> Status {
    report.open_s = lap();
    // Under the engine's catalog lock: no drop or create of the name can come in between.
    auto now = engine_.DescribeCollection(address.local);
    if (!now || now->id != before.id) {
      return Cancelled("{} was dropped (and perhaps made again) during its catch-up: the copy is not put "
                       "in its place",
                       address.local);
    }
    touch.lock();
    for (const auto& [id, epoch] : shard.touched) {
      if (epoch < since) continue;
      auto mine = engine_.Get(address.local, id);
      if (mine) {
        if (put_ids.insert(id).second) put.push_back(std::move(*mine));
      } else if (mine.error().code() == StatusCode::kNotFound) {
        gone_ids.push_back(id);
      } else {
        return mine.error();
      }
    }
    for (const auto& [key, epoch] : shard.touched_keys) {
      if (epoch < since) continue;
      auto held = engine_.FindKey(address.local, key);
      if (!held) {
        if (held.error().code() != StatusCode::kNotFound) return held.error();
        gone_keys.push_back(key);
        continue;
      }
      if (put_ids.contains(*held)) continue;
      auto mine = engine_.Get(address.local, *held);
      if (!mine) return mine.error();
      put_ids.insert(*held);
      put.push_back(std::move(*mine));
    }
    return Status::Ok();
  };
  STRATA_ASSIGN_OR_RETURN(report.vectors, engine_.ReplaceCollection(address.local, root, read_live));
  // The swap is done; live writes stay held back (touch) until what they wrote is carried over.
  // Into the copy: first what live writes deleted, then what they wrote (the records read above
  // are one consistent state, so no two of them hold one key), then the records of the live
  // writes this replica refused, as the peer holds them now (CarryRefused).
  uint64_t refused = 0;
  auto carry = [&]() -> Status {
    detail::RecordWriter out(engine_, address.local);
    for (VectorId id : gone_ids) STRATA_RETURN_IF_ERROR(out.Delete(id));
    for (const std::string& key : gone_keys) STRATA_RETURN_IF_ERROR(out.DeleteKey(key));
    STRATA_RETURN_IF_ERROR(out.Flush());
    for (const Record& r : put) STRATA_RETURN_IF_ERROR(out.Put(r));
    STRATA_RETURN_IF_ERROR(out.Flush());
    STRATA_ASSIGN_OR_RETURN(refused, CarryRefused(shard, address, remote, peer));
    return Status::Ok();
  };
  if (Status s = carry(); !s.ok()) {
    // The marks describe the collection that was swapped out: a retry must not carry those
    // values over its own copy (the peer's next copy holds every write they stood for).
    shard.touched = {};
    shard.touched_keys = {};
    shard.refused = {};
    shard.refused_keys = {};
    return Error(s.WithContext(fmt::format("catch-up of {}: carrying the live writes over into the copy", address.local)));
  }
  report.carried = put.size() + refused;
  report.carried += gone_ids.size() + gone_keys.size();
  if (auto info = engine_.DescribeCollection(address.local); info) report.vectors = info->num_vectors;
  report.carry_s = lap();
  return report;
}

}  // namespace strata::cluster
