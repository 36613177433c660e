#include "cluster/shard_copy.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "engine/strata.h"
#include "storage/file_util.h"
#include "storage/posix_file.h"

namespace strata::cluster {

namespace fs = std::filesystem;

namespace {

// A token nobody guesses: 128 random bits in hex.
std::string NewToken() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}{:08x}{:08x}", rd(), rd(), rd(), rd());
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

Result<uint64_t> FileXxh64(const fs::path& path) {
  STRATA_ASSIGN_OR_RETURN(storage::MappedFile file, storage::MappedFile::Open(path));
  return uint64_t(XXH64(file.data(), file.size(), 0));
}

ShardCopies::~ShardCopies() {
  std::error_code ec;
  for (const auto& [token, copy] : copies_) fs::remove_all(copy.scratch, ec);
}

size_t ShardCopies::size() const {
  std::lock_guard lock(mu_);
  return copies_.size();
}

void ShardCopies::ExpireLocked(Clock::time_point now, std::vector<fs::path>& out) {
  for (auto it = copies_.begin(); it != copies_.end();) {
    if (now - it->second.used > std::chrono::seconds(kIdleSeconds)) {
      out.push_back(it->second.scratch);
      it = copies_.erase(it);
    } else {
      ++it;
    }
  }
}

Result<protocol::ShardFilesReply> ShardCopies::Take(const ShardAddress& address) {
  std::vector<fs::path> expired;
  {
    std::lock_guard lock(mu_);
    ExpireLocked(Clock::now(), expired);
    if (copies_.size() + taking_ >= kMaxCopies) {
      return Error(ResourceExhausted("{}: this node holds {} shard copies for catch-ups already (at most {}); "
                                     "retry once one is done",
                                     address.local, copies_.size() + taking_, kMaxCopies));
    }
    ++taking_;
  }
  std::error_code ec;
  for (const fs::path& p : expired) fs::remove_all(p, ec);
  struct Untake {
    ShardCopies* self;
    ~Untake() {
      std::lock_guard lock(self->mu_);
      --self->taking_;
    }
  } untake{this};
  if (auto info = engine_.DescribeCollection(address.local); !info) return Error(info.error());
  // From here on every write applied here also goes to the catching-up replica (it was routed
  // with a placement that lists it); the writes that passed the older fence have finished.
  gate_.Fence(address.local, address.epoch);
  // Sealed first, so that the copy is segment files and a short log: the replica opens it
  // without inserting the in-memory segment's rows again one by one.
  STRATA_RETURN_IF_ERROR(engine_.Seal(address.local));
  STRATA_ASSIGN_OR_RETURN(fs::path scratch, engine_.MakeScratchDir("shard-copy"));
  auto made = [&]() -> Result<protocol::ShardFilesReply> {
    const fs::path root = scratch / "copy";
    STRATA_ASSIGN_OR_RETURN(SnapshotReport snap, engine_.Snapshot(address.local, root));
    protocol::ShardFilesReply reply;
    reply.token = NewToken();
    reply.sequence = snap.sequence;
    Copy copy{address.local, scratch, root, {}, Clock::now()};
    for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->is_directory(ec)) continue;
      if (!it->is_regular_file(ec)) {
        return Error(Internal("{}: the copy holds {}, which is not a regular file", address.local,
                              it->path().string()));
      }
      protocol::ShardFile f;
      f.path = it->path().lexically_relative(root).generic_string();
      f.size = it->file_size(ec);
      if (ec) break;
      STRATA_ASSIGN_OR_RETURN(f.xxh64, FileXxh64(it->path()));
      copy.files[f.path] = f.size;
      reply.files.push_back(std::move(f));
    }
    if (ec) return Error(IOError("{}: listing the copy in {}: {}", address.local, root.string(), ec.message()));
    std::sort(reply.files.begin(), reply.files.end(),
              [](const protocol::ShardFile& a, const protocol::ShardFile& b) { return a.path < b.path; });
    std::lock_guard lock(mu_);
    copy.used = Clock::now();  // idle from here, not from before the checksums
    copies_.emplace(reply.token, std::move(copy));
    return reply;
  }();
  if (!made) fs::remove_all(scratch, ec);
  return made;
}

Result<std::string> ShardCopies::Read(const ShardAddress& address, const std::string& token,
                                      const std::string& path, uint64_t offset, uint32_t length) {
  fs::path file;
  uint64_t size = 0;
  std::vector<fs::path> expired;
  struct Remove {
    std::vector<fs::path>& paths;
    ~Remove() {
      std::error_code ec;
      for (const fs::path& p : paths) fs::remove_all(p, ec);
    }
  } remove{expired};
  {
    std::lock_guard lock(mu_);
    ExpireLocked(Clock::now(), expired);
    auto it = copies_.find(token);
    if (it == copies_.end() || it->second.local != address.local) {
      return Error(NotFound("{}: no shard copy '{}' here (done, expired after {} s idle, or the node restarted)",
                            address.local, token, kIdleSeconds));
    }
    auto f = it->second.files.find(path);
    if (f == it->second.files.end()) {
      return Error(NotFound("{}: shard copy '{}' has no file '{}'", address.local, token, path));
    }
    it->second.used = Clock::now();
    file = it->second.root / path;
    size = f->second;
  }
  length = std::min<uint32_t>(length, protocol::kMaxShardFileChunk);
  const uint64_t n = offset >= size ? 0 : std::min<uint64_t>(length, size - offset);
  std::string data(n, '\0');
  if (n == 0) return data;
  // The copy's files are its own (hard links of immutable segment files, or copies): they do
  // not change while it is held; a Done meanwhile removes the name, not the open file.
  Fd fd(storage::RetryOnEintr([&] { return ::open(file.c_str(), O_RDONLY | O_CLOEXEC); }));
  if (fd.get() < 0) return Error(storage::OsError(errno, "cannot open", file));
  STRATA_RETURN_IF_ERROR(storage::PreadExact(fd.get(), reinterpret_cast<std::byte*>(data.data()), n, offset, file));
  return data;
}

Status ShardCopies::Done(const ShardAddress& address, const std::string& token) {
  std::vector<fs::path> doomed;
  {
    std::lock_guard lock(mu_);
    ExpireLocked(Clock::now(), doomed);
    auto it = copies_.find(token);
    if (it != copies_.end() && it->second.local == address.local) {
      doomed.push_back(it->second.scratch);
      copies_.erase(it);
    }
  }
  std::error_code ec;
  for (const fs::path& p : doomed) fs::remove_all(p, ec);
  return Status::Ok();
}

}  // namespace strata::cluster
