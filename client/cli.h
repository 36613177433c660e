#pragma once
// Internal to strata-cli: what its subcommands share -- the global flags and the
// connection they open, error reporting, search flags and query files, JSON output --
// and the subcommands themselves, one file per family:
//   cli_collections.cc  ping, list, describe, create, drop, flush, compact, snapshot, stats
//   cli_records.cc      upsert, delete, get
//   cli_search.cc       search (one vector, or a measured query file)
//   cli_load.cc         load (measured search load over several connections)
//   cli_cluster.cc      cluster status, cluster create (through etcd, not a server)
// cli_main.cc defines the command line and calls them. Each Cmd* returns the exit
// status, having printed its result on stdout or one error line on stderr.
// Single-threaded, like the program (load's threads are client::RunLoad's).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/client.h"
#include "client/measure.h"
#include "core/status.h"
#include "core/vector_set.h"
#include "storage/dataset_io.h"

namespace CLI {
class App;
}  // namespace CLI

namespace strata::cli {

using client::Client;
using Json = nlohmann::ordered_json;

// JSON text; invalid UTF-8 from the server (names, attribute strings) is replaced, not thrown.
inline std::string Dump(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

// Prints `s` as one line on stderr; returns the exit status 1.
int Fail(const Status& s);
// The same for a usage error (a bad flag or combination, an input file missing or
// unreadable): exit status 2, as everywhere in strata.
int Usage(const Status& s);

struct GlobalArgs {
  std::string host = "127.0.0.1";
  uint16_t port = 7420;
  std::string token;
  uint32_t connect_timeout_ms = 5000;
  uint32_t timeout_ms = 60000;
};

client::ClientOptions Options(const GlobalArgs& g);
// Connects and says hello; a missing token is explained with where a token comes from.
Result<std::unique_ptr<Client>> Open(const GlobalArgs& g);

// A record's attributes as a JSON object (tags as arrays).
Json AttributesJson(const Attributes& attributes);
// The server's warnings about a filter (search_with, EXPLAIN), one line each on stderr:
// "strata-cli: warning: ...".
void PrintWarnings(const std::vector<std::string>& warnings);

// "512 B", "1.5 KiB", "2.0 GiB".
std::string HumanBytes(uint64_t bytes);
Json LatencyJson(const client::LatencySummary& l);

// Search options shared by `search` and `load`.
struct SearchArgs {
  uint32_t k = 10;
  double recall = 0;
  uint32_t ef = 0;
  uint32_t max_lists = 0;
  std::string filter;
  std::string strategy = "auto";
};
void AddSearchArgs(CLI::App* cmd, SearchArgs& a);
Result<SearchOptions> ToSearchOptions(const SearchArgs& a);

// Says on stderr when a vector file's values are converted to float32 (an .npy of float64,
// float16, int8 or uint8), as `strata` does.
void NoteConversion(const std::string& path, const storage::DatasetShape& shape);
// Reads queries (at most `limit` rows; 0: all) and, when `gt_path` is set, ground truth that
// covers them.
struct QueryData {
  VectorSet queries;
  std::optional<storage::GroundTruth> truth;
};
Result<QueryData> ReadQueryData(const std::string& path, size_t limit, const std::string& gt_path);

// ---- cli_collections.cc ----
int CmdPing(const GlobalArgs& g, bool json);
int CmdList(const GlobalArgs& g, bool json);
int CmdDescribe(const GlobalArgs& g, const std::string& name, bool json);
struct CreateArgs {
  std::string name;
  uint32_t dim = 0;
  std::string metric = "l2";
  uint32_t m = 16;
  uint32_t ef_construction = 200;
  uint64_t seal_threshold = 100000;
  std::string memory_budget = "0";
  std::string codes = "none";
  uint32_t rerank = 0;
};
// The create flags (name, dim, metric, HNSW, seal, budget, codes), shared by create and
// cluster create, and the spec they give; errors are usage errors.
void AddCreateFlags(CLI::App& cmd, CreateArgs& a);
Result<CollectionSpec> SpecFromFlags(const CreateArgs& a);
int CmdCreate(const GlobalArgs& g, const CreateArgs& a);
// drop, flush, compact: one name, one call, one line.
int CmdSimple(const GlobalArgs& g, const std::string& verb, const std::string& name);
// A consistent copy of a collection, written by the server as folder `snapshot` of its
// --snapshot-dir; prints the path and the last write batch it holds.
int CmdSnapshot(const GlobalArgs& g, const std::string& name, const std::string& snapshot, bool json);
int CmdStats(const GlobalArgs& g, bool json);

// ---- cli_cluster.cc ----
// `cluster status` and `cluster create`, through etcd (cluster/admin.h); sets `rc`.
void AddClusterCommands(CLI::App& app, int& rc);

// ---- cli_records.cc ----
struct UpsertArgs {
  std::string name;
  std::string vectors;
  uint64_t id_offset = 0;
  uint32_t batch = 1000;
  size_t limit = 0;
  // By key: a text file of keys, line i for row i of `vectors` (instead of ids), or one
  // record: `key` with `vector` ("0.1,0.2,...").
  std::string keys_file;
  std::string key;
  std::string vector;
  // Ids per row (instead of row + id_offset): .npy of int64/uint64, or JSON Lines.
  std::string ids_file;
  // Attributes per row, JSON Lines (api/attribute_rows.h, as `strata build --attributes`);
  // an "id" there names the row's record too. An upsert replaces the whole record.
  std::string attributes_file;
  // A file of float16, int8 or uint8 values is sent as it is (upsert_typed) unless this is set
  // (then widened to float32 here and sent through upsert, as for servers before opcode 29).
  bool send_float32 = false;
  bool json = false;
};
int CmdUpsert(const GlobalArgs& g, const UpsertArgs& a);
// By id and/or by key (records written by key; api/types.h).
int CmdDelete(const GlobalArgs& g, const std::string& name, const std::vector<uint64_t>& ids,
              const std::vector<std::string>& keys);
int CmdGet(const GlobalArgs& g, const std::string& name, const std::vector<uint64_t>& ids,
           const std::vector<std::string>& keys, bool json);
// A page of keys (or, with `all`, every page) in id order.
int CmdKeys(const GlobalArgs& g, const std::string& name, uint64_t cursor, uint32_t count, bool all,
            bool json);

// "1,2,3" or "1 2 3" (commas and/or spaces), finite; `flag` names the option in errors.
Result<std::vector<float>> ParseVector(const std::string& text, std::string_view flag = "--vector");
// A key as the CLI prints it: printable ASCII as is, a backslash and other bytes as \xNN.
std::string KeyText(std::string_view key);

// ---- cli_search.cc ----
struct SearchCmdArgs {
  std::string name;
  std::string vector;
  std::string queries;
  size_t limit = 0;
  SearchArgs search;
  bool explain = false;
  // Each hit's attributes with it (search_with: one request, no get per hit).
  bool with_attributes = false;
  // A cluster collection (search_with, one query): a shard that does not answer in time
  // leaves the reply partial (said on stderr, and in --json) instead of failing it; the
  // routing node's wait per shard replica (0: the server's --cluster-shard-timeout-ms).
  bool allow_partial = false;
  uint32_t shard_timeout_ms = 0;
  std::string gt;
  uint64_t id_offset = 0;
  uint32_t pipeline = 1;
  bool results = false;
  // A query file of float16, int8 or uint8 values is sent as it is (search_typed, one query a
  // request, --pipeline 1) unless this is set or --pipeline is over 1.
  bool send_float32 = false;
  bool json = false;
};
int CmdSearch(const GlobalArgs& g, const SearchCmdArgs& a);

// ---- cli_load.cc ----
struct LoadCmdArgs {
  std::string name;
  std::string queries;
  size_t limit = 0;
  SearchArgs search;
  uint32_t connections = 4;
  double duration_s = 10;
  uint32_t pipeline = 1;
  double rate = 0;
  std::string gt;
  uint64_t id_offset = 0;
  bool json = false;
};
int CmdLoad(const GlobalArgs& g, const LoadCmdArgs& a);

}  // namespace strata::cli
