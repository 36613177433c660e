#pragma once
// Scratch directories for tools that need somewhere to write (engine-bench,
// planner-bench, the SPANN bench target): a tool deletes only what it created.
//
//   - No directory given: a fresh one is made with mkdtemp under $TMPDIR (or /tmp)
//     and removed when the tool is done (unless kept).
//   - A directory given: it is used when it does not exist (created, and removed
//     when done), when it is empty (its contents are removed when done, the folder
//     stays), or when it carries this tool family's marker file, `.strata-scratch`
//     (written into every scratch directory: a rerun may clear it). Anything else --
//     a directory holding other files, an engine data directory, a file -- is
//     refused with an error naming it, and left untouched.
//   - A directory whose LOCK file is held (a running engine or strata-server) is
//     always refused, marker or not.
//
// Thread safety: one ScratchDir per tool run; not for concurrent use.

#include <filesystem>
#include <memory>
#include <string>

#include "core/status.h"

namespace strata::tools {

inline constexpr const char* kScratchMarker = ".strata-scratch";

class ScratchDir {
 public:
  // `requested` empty: a fresh temporary directory named `<prefix>-XXXXXX`.
  // `owner` names the tool in the marker and in errors (e.g. "strata engine-bench").
  static Result<std::unique_ptr<ScratchDir>> Claim(const std::filesystem::path& requested,
                                                    const std::string& prefix, const std::string& owner);
  // The refusals of Claim for `requested`, without creating or clearing anything: what a
  // tool checks before its long work starts (OK for "" and for a path that does not exist).
  static Status CheckUsable(const std::filesystem::path& requested, const std::string& owner);
  ~ScratchDir();  // removes what this run created, unless Keep() was called
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  void Keep() { keep_ = true; }

 private:
  enum class Origin { kCreated, kWasEmpty, kMarked };
  ScratchDir(std::filesystem::path path, Origin origin) : path_(std::move(path)), origin_(origin) {}
  void Cleanup();

  std::filesystem::path path_;
  Origin origin_;
  bool keep_ = false;
};

// True when `dir`/LOCK exists and another open file description holds its flock
// (an Engine or strata-server has the directory open).
bool LockIsHeld(const std::filesystem::path& dir);

}  // namespace strata::tools
