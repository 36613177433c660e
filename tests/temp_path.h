#pragma once
// Scratch files of the running test: `name` inside a folder of its own under the system's
// temporary directory, named by `prefix`, the test's suite and name, and the process id (two
// runs of a suite at once -- a CI clone beside a working tree -- never share files). Every
// folder handed out is removed when the test program exits, so a run leaves nothing behind.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

namespace strata::test_support {

inline std::filesystem::path TestTempPath(std::string_view prefix, const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string test = std::string(info->test_suite_name()) + "_" + info->name();
  std::replace(test.begin(), test.end(), '/', '_');
  auto dir = std::filesystem::temp_directory_path() /
             (std::string(prefix) + "_" + test + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  static struct Made {
    std::vector<std::filesystem::path> dirs;
    ~Made() {
      std::error_code ec;
      for (const auto& d : dirs) std::filesystem::remove_all(d, ec);
    }
  } made;
  if (std::find(made.dirs.begin(), made.dirs.end(), dir) == made.dirs.end()) made.dirs.push_back(dir);
  return dir / name;
}

}  // namespace strata::test_support
