// strata restore SNAPSHOT --into DATA_DIR (tools/restore.h has the rules).
#include <fmt/core.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "tools/commands.h"
#include "tools/restore.h"

namespace strata::tools::cmd {

int RunRestore(const std::string& snapshot, const std::string& into, bool json) {
  auto report = RestoreSnapshot(snapshot, into);
  if (!report) {
    // A snapshot or destination refused by the rules is the caller's to fix: a usage error.
    if (report.error().code() == StatusCode::kInvalidArgument || report.error().code() == StatusCode::kNotFound) {
      fmt::print(stderr, "strata: error: {}\n", report.error().ToString());
      return 2;
    }
    return Fail(report.error());
  }
  if (json) {
    nlohmann::json j = {{"snapshot", snapshot},    {"into", report->into.string()},
                        {"files", report->files},  {"directories", report->directories},
                        {"bytes", report->bytes},  {"batches_replayed", report->batches_replayed},
                        {"collections", nlohmann::json::array()}};
    for (const CollectionInfo& c : report->collections) {
      j["collections"].push_back(
          {{"name", c.spec.name}, {"vectors", c.num_vectors}, {"last_sequence", c.last_sequence}});
    }
    fmt::print("{}\n", j.dump());
    return 0;
  }
  fmt::print("restored {} into {}: {} files, {} folders, {} bytes (copied and fsynced)\n", snapshot,
             report->into.string(), report->files, report->directories, report->bytes);
  for (const CollectionInfo& c : report->collections) {
    fmt::print("  collection '{}': {} vectors, last write batch {}\n", c.spec.name, c.num_vectors, c.last_sequence);
  }
  fmt::print("serve it with: strata-server --data-dir {}\n", report->into.string());
  return 0;
}

}  // namespace strata::tools::cmd
