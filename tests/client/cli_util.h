#pragma once
// strata-cli (STRATA_CLI_PATH) run against the fixture's real server: its exit status, stdout
// and stderr. Shared by the CLI suites (cli_test.cc, cli_attributes_test.cc).
//
// Thread-compatible: used from the test's thread.

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/client/integration_util.h"

namespace strata::client::testing {

struct CliRun {
  int rc = -1;
  std::string out;
  std::string err;
};

inline std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class CliTest : public ServerFixture {
 protected:
  // Runs strata-cli with `args` (shell words) against the fixture's server.
  CliRun Cli(const std::string& args, bool with_port = true) {
    const auto out = dir_ / "cli.out";
    const auto err = dir_ / "cli.err";
    std::string cmd = std::string(STRATA_CLI_PATH) + " " + args;
    if (with_port) cmd += " --port " + std::to_string(port());  // after the subcommand, on purpose
    cmd += " >" + out.string() + " 2>" + err.string();
    const int status = std::system(cmd.c_str());
    CliRun r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = ReadAll(out);
    r.err = ReadAll(err);
    return r;
  }

  static nlohmann::json ParseJson(const CliRun& r) {
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not one JSON document: " << r.out;
    return j;
  }
};

}  // namespace strata::client::testing
