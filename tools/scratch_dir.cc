#include "tools/scratch_dir.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

namespace strata::tools {
namespace fs = std::filesystem;

bool LockIsHeld(const fs::path& dir) {
  const fs::path lock = dir / "LOCK";
  const int fd = ::open(lock.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;  // no LOCK file: nobody can hold it
  bool held = false;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    held = errno == EWOULDBLOCK;
  } else {
    ::flock(fd, LOCK_UN);
  }
  ::close(fd);
  return held;
}

namespace {

Status WriteMarker(const fs::path& dir, const std::string& owner) {
  const fs::path marker = dir / kScratchMarker;
  std::ofstream out(marker, std::ios::trunc);
  out << "scratch directory created by " << owner
      << "; Strata's benchmark tools may clear or remove this directory\n";
  out.flush();
  if (!out) return IOError("{}: cannot write the scratch marker", marker.string());
  return Status::Ok();
}

// Removes every entry of `dir` except the marker.
Status ClearContents(const fs::path& dir) {
  std::error_code ec;
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().filename() != kScratchMarker) entries.push_back(e.path());
  }
  if (ec) return IOError("{}: cannot list: {}", dir.string(), ec.message());
  for (const fs::path& p : entries) {
    fs::remove_all(p, ec);
    if (ec) return IOError("{}: cannot remove: {}", p.string(), ec.message());
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<ScratchDir>> ScratchDir::Claim(const fs::path& requested, const std::string& prefix,
                                                       const std::string& owner) {
  std::error_code ec;
  if (requested.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    fs::path base = tmp && *tmp ? fs::path(tmp) : fs::temp_directory_path(ec);
    if (base.empty()) base = "/tmp";
    std::string templ = (base / (prefix + "-XXXXXX")).string();
    if (::mkdtemp(templ.data()) == nullptr) {
      return Error(IOError("{}: cannot create a temporary directory: {}", templ, std::strerror(errno)));
    }
    STRATA_RETURN_IF_ERROR(WriteMarker(templ, owner));
    return std::unique_ptr<ScratchDir>(new ScratchDir(templ, Origin::kCreated));
  }

  STRATA_RETURN_IF_ERROR(CheckUsable(requested, owner));
  if (!fs::exists(requested, ec)) {
    fs::create_directories(requested, ec);
    if (ec) return Error(IOError("{}: cannot create: {}", requested.string(), ec.message()));
    STRATA_RETURN_IF_ERROR(WriteMarker(requested, owner));
    return std::unique_ptr<ScratchDir>(new ScratchDir(requested, Origin::kCreated));
  }
  if (fs::is_regular_file(requested / kScratchMarker)) {
    STRATA_RETURN_IF_ERROR(ClearContents(requested));
    return std::unique_ptr<ScratchDir>(new ScratchDir(requested, Origin::kMarked));
  }
  STRATA_RETURN_IF_ERROR(WriteMarker(requested, owner));
  return std::unique_ptr<ScratchDir>(new ScratchDir(requested, Origin::kWasEmpty));
}

Status ScratchDir::CheckUsable(const fs::path& requested, const std::string& owner) {
  if (requested.empty()) return Status::Ok();
  std::error_code ec;
  const fs::file_status st = fs::status(requested, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return IOError("{}: {}", requested.string(), ec.message());
  }
  if (!fs::exists(st)) return Status::Ok();
  if (!fs::is_directory(st)) {
    return InvalidArgument("{}: exists and is not a directory; {} needs a new or empty directory",
                           requested.string(), owner);
  }
  if (LockIsHeld(requested)) {
    return InvalidArgument(
        "{}: its LOCK is held (a running engine or strata-server has it open); {} refuses to touch it",
        requested.string(), owner);
  }
  if (fs::is_regular_file(requested / kScratchMarker)) return Status::Ok();
  const bool empty = fs::is_empty(requested, ec);
  if (ec) return IOError("{}: cannot list: {}", requested.string(), ec.message());
  if (!empty) {
    return InvalidArgument(
        "{}: is not empty and carries no {} marker, so {} did not create it and will not clear it; give a new "
        "or empty directory, or leave the option out to work in a fresh temporary directory",
        requested.string(), kScratchMarker, owner);
  }
  return Status::Ok();
}

ScratchDir::~ScratchDir() { Cleanup(); }

void ScratchDir::Cleanup() {
  if (keep_) {
    spdlog::info("kept {}", path_.string());
    return;
  }
  if (LockIsHeld(path_)) {
    spdlog::warn("{}: its LOCK is held by someone else now; left in place", path_.string());
    return;
  }
  std::error_code ec;
  if (origin_ == Origin::kCreated) {
    fs::remove_all(path_, ec);
  } else {
    // The folder was there before this run: empty it, marker included, and leave it.
    if (ClearContents(path_).ok()) fs::remove(path_ / kScratchMarker, ec);
  }
}

}  // namespace strata::tools
