// Collection::SnapshotTo: a consistent copy of a collection's files while writes go on
// (Engine::Snapshot has the contract; docs/formats/engine.md, "Snapshots").
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "engine/collection.h"
#include "storage/file_util.h"

namespace strata::engine {
namespace fs = std::filesystem;

namespace {

// fsyncs a file or a folder.
Status SyncPath(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return IOError("{}: cannot open to sync: {}", p.string(), std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return IOError("{}: fsync failed: {}", p.string(), std::strerror(err));
  return Status::Ok();
}

// Copies the first `bytes` of `from` (all of it when bytes is UINT64_MAX) to a new file `to`, fsynced.
Status CopyPrefix(const fs::path& from, const fs::path& to, uint64_t bytes, uint64_t& copied) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return IOError("{}: cannot open: {}", from.string(), std::strerror(errno));
  const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) {
    const int err = errno;
    ::close(in);
    return IOError("{}: cannot create: {}", to.string(), std::strerror(err));
  }
  Status st = Status::Ok();
  std::vector<char> buf(1 << 20);
  uint64_t left = bytes;
  while (left > 0) {
    const ssize_t n = ::read(in, buf.data(), size_t(std::min<uint64_t>(left, buf.size())));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      st = IOError("{}: read failed: {}", from.string(), std::strerror(errno));
      break;
    }
    if (n == 0) {
      if (bytes != UINT64_MAX) st = IOError("{}: shorter than the {} bytes to copy", from.string(), bytes);
      break;
    }
    for (ssize_t off = 0; off < n;) {
      const ssize_t w = ::write(out, buf.data() + off, size_t(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        st = IOError("{}: write failed: {}", to.string(), std::strerror(errno));
        break;
      }
      off += w;
    }
    if (!st.ok()) break;
    copied += uint64_t(n);
    if (bytes != UINT64_MAX) left -= uint64_t(n);
  }
  if (st.ok() && ::fsync(out) != 0) st = IOError("{}: fsync failed: {}", to.string(), std::strerror(errno));
  ::close(in);
  ::close(out);
  return st;
}

// A hard link of an immutable file, or a copy when the two paths are on different file systems.
Status LinkOrCopy(const fs::path& from, const fs::path& to, SnapshotReport& report) {
  std::error_code ec;
  fs::create_hard_link(from, to, ec);
  if (!ec) {
    ++report.files_linked;
    return Status::Ok();
  }
  if (ec != std::errc::cross_device_link && ec != std::errc::operation_not_permitted) {
    return IOError("{}: cannot link to {}: {}", from.string(), to.string(), ec.message());
  }
  ++report.files_copied;
  return CopyPrefix(from, to, UINT64_MAX, report.bytes_copied);
}

// Links every file under the segment folder `from` into `to` (made here), recursively,
// except deletes files other than `keep_deletes` and temporary files.
Status LinkSegment(const fs::path& from, const fs::path& to, const fs::path& keep_deletes, SnapshotReport& report) {
  std::error_code ec;
  fs::create_directory(to, ec);
  if (ec) return IOError("{}: cannot create: {}", to.string(), ec.message());
  for (const auto& f : fs::directory_iterator(from, ec)) {
    const std::string name = f.path().filename().string();
    if (name.ends_with(".tmp")) continue;
    if (name.starts_with("deletes-") && f.path() != keep_deletes) continue;
    if (f.is_directory()) {
      STRATA_RETURN_IF_ERROR(LinkSegment(f.path(), to / name, keep_deletes, report));
    } else {
      STRATA_RETURN_IF_ERROR(LinkOrCopy(f.path(), to / name, report));
    }
  }
  if (ec) return IOError("{}: cannot list: {}", from.string(), ec.message());
  return SyncPath(to, true);
}

}  // namespace

Result<SnapshotReport> Collection::SnapshotTo(const fs::path& dest) {
  SnapshotReport report;
  // manifest_mu_ keeps the manifest on disk, the segment folders and deletes files it
  // names, and the log files it needs, as they are: seals and compactions commit (and
  // remove what they replaced) under it. Searches take no lock; writes wait only for
  // the moment below.
  std::lock_guard<std::mutex> mm(manifest_mu_);
  std::vector<std::pair<fs::path, uint64_t>> logs;  // log files to copy, and their length (UINT64_MAX: whole)
  {
    std::lock_guard<std::mutex> g(write_mu_);
    if (!poisoned_.ok()) return Error(poisoned_);
    // Every acknowledged batch so far is whole and durable in the current log.
    STRATA_RETURN_IF_ERROR(wal_->Sync());
    report.sequence = last_sequence_.load();
    const std::string first = WalPath(dir_, wal_first_).filename().string();
    std::error_code ec;
    for (const auto& f : fs::directory_iterator(dir_ / "wal", ec)) {
      if (f.path().filename().string() < first) continue;  // covered by the segments (being removed)
      logs.emplace_back(f.path(), f.path() == wal_->path() ? wal_->bytes_written() : UINT64_MAX);
    }
    if (ec) return Error(IOError("{}: cannot list: {}", (dir_ / "wal").string(), ec.message()));
  }
  std::error_code ec;
  fs::create_directories(dest / "wal", ec);
  if (ec) return Error(IOError("{}: cannot create: {}", (dest / "wal").string(), ec.message()));
  // Logs after the current one cannot exist: a freeze needs write_mu_ and, to remove
  // the frozen log, manifest_mu_. A frozen log is closed (synced) and copied whole.
  for (const auto& [path, bytes] : logs) {
    STRATA_RETURN_IF_ERROR(CopyPrefix(path, dest / "wal" / path.filename(), bytes, report.bytes_copied));
    ++report.files_copied;
  }
  STRATA_RETURN_IF_ERROR(SyncPath(dest / "wal", true));
  if (CollectionManifest::Exists(dir_)) {
    STRATA_ASSIGN_OR_RETURN(CollectionManifest man, CollectionManifest::Load(dir_));
    for (const auto& [sid, gen] : man.segments) {
      const fs::path from = SegmentDir(dir_, sid);
      STRATA_RETURN_IF_ERROR(LinkSegment(from, SegmentDir(dest, sid),
                                         gen ? SealedSegment::DeletesPath(from, gen) : fs::path(), report));
      ++report.segments;
    }
    STRATA_RETURN_IF_ERROR(man.Save(dest));
  }
  STRATA_RETURN_IF_ERROR(SyncPath(dest, true));
  return report;
}

}  // namespace strata::engine
