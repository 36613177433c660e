// strata-cli: the remote command line of a Strata server (the `strata` command works on local
// files; this one talks to `strata serve` over the wire protocol).
//
//   strata-cli [--host H] [--port P] [--token T]  ping | list | describe | create | drop |
//              upsert | delete | get | keys | search | stats | flush | compact |
//              snapshot | load | cluster (status | create, through etcd)
//
// `search --queries` and `load` measure (QPS, latency percentiles, recall@k against --gt);
// with --json they print one JSON object on stdout for scripts. Every subcommand reports an
// error as one line on stderr and exits non-zero.
//
// The subcommands live in the cli_*.cc files (cli.h); this file defines the command line.

#include <algorithm>
#include <exception>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "client/cli.h"

using namespace strata;
using namespace strata::cli;

int main(int argc, char** argv) {
  CLI::App app{"strata-cli: the remote command line of a Strata server"};
  app.set_version_flag("--version", std::string("strata-cli ") + STRATA_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global flags are accepted after the subcommand too
  GlobalArgs g;
  app.add_option("--host", g.host, "Server address or name")->capture_default_str();
  app.add_option("--port", g.port, "Server port")->capture_default_str();
  app.add_option("--token", g.token, "Shared secret, when the server requires one")
      ->envname("STRATA_TOKEN");
  app.add_option("--connect-timeout-ms", g.connect_timeout_ms, "Connect timeout")
      ->capture_default_str();
  app.add_option("--timeout-ms", g.timeout_ms,
                 "Longest wait for the server during a request (create, drop, flush and "
                 "compact (and snapshot) wait as long as the server works)")
      ->capture_default_str();

  int rc = 0;
  bool ping_json = false;
  auto* ping = app.add_subcommand("ping", "Check that the server answers; show its limits");
  ping->add_flag("--json", ping_json, "Print JSON");
  ping->callback([&] { rc = CmdPing(g, ping_json); });

  bool list_json = false;
  auto* list = app.add_subcommand("list", "List the collections");
  list->add_flag("--json", list_json, "Print JSON");
  list->callback([&] { rc = CmdList(g, list_json); });

  std::string describe_name;
  bool describe_json = false;
  auto* describe = app.add_subcommand("describe", "Describe one collection");
  describe->add_option("name", describe_name, "Collection")->required();
  describe->add_flag("--json", describe_json, "Print JSON");
  describe->callback([&] { rc = CmdDescribe(g, describe_name, describe_json); });

  CreateArgs create_args;
  auto* create = app.add_subcommand("create", "Create a collection");
  AddCreateFlags(*create, create_args);
  create->callback([&] { rc = CmdCreate(g, create_args); });

  std::string simple_name;
  for (const char* verb : {"drop", "flush", "compact"}) {
    const std::string v = verb;
    const char* help = v == "drop"    ? "Drop a collection and its files"
                       : v == "flush" ? "Seal a collection's memory segment to disk"
                                      : "Merge a collection's segments, dropping deleted vectors";
    auto* cmd = app.add_subcommand(v, help);
    cmd->add_option("name", simple_name, "Collection")->required();
    cmd->callback([&, v] { rc = CmdSimple(g, v, simple_name); });
  }

  UpsertArgs upsert_args;
  auto* upsert = app.add_subcommand(
      "upsert",
      "Upsert vectors from a file -- ids from --ids, the --attributes rows, or row + --id-offset; or "
      "keys from --keys -- or one record by --key. An upsert replaces the whole record: re-upserting "
      "an id (or key) replaces its vector and its attributes (a row without attributes leaves none)");
  upsert->add_option("name", upsert_args.name, "Collection")->required();
  upsert->add_option("--vectors", upsert_args.vectors, "fvecs, bvecs, fbin, u8bin or npy file");
  upsert->add_option("--ids", upsert_args.ids_file,
                     "Ids, one per row: .npy of int64 or uint64, or JSON Lines (7, or {\"id\": 7}, a line each)");
  upsert->add_option("--attributes", upsert_args.attributes_file,
                     "JSON Lines, one object per row, as strata build --attributes: {\"id\": 7, \"attributes\": "
                     "{\"lang\": \"en\", \"year\": 2024, \"tags\": [\"a\"]}} (id optional)");
  upsert->add_option("--id-offset", upsert_args.id_offset, "Added to the row number to make the id (without --ids)")
      ->capture_default_str();
  upsert->add_option("--batch", upsert_args.batch, "Vectors per request (fewer when they would not fit a frame)")
      ->capture_default_str();
  upsert->add_option("--limit", upsert_args.limit, "Upsert only the first N rows (0: all)");
  upsert->add_option("--keys", upsert_args.keys_file,
                     "By key: a text file of keys, line i the key of row i (instead of ids)");
  upsert->add_option("--key", upsert_args.key, "One record by key (with --vector)");
  upsert->add_option("--vector", upsert_args.vector, "The one record's vector: 0.1,-0.2,...");
  upsert->add_flag("--send-float32", upsert_args.send_float32,
                   "Widen a file of float16, int8 or uint8 values to float32 before sending (by default such "
                   "a file is sent as it is, 2 or 1 bytes a value: upsert_typed, servers from opcode 29 on)");
  upsert->add_flag("--json", upsert_args.json, "Print JSON");
  upsert->callback([&] { rc = CmdUpsert(g, upsert_args); });

  std::string ids_name;
  std::vector<uint64_t> ids;
  std::vector<std::string> keys;
  bool get_json = false;
  auto* del = app.add_subcommand("delete", "Delete vectors by id or by key");
  del->add_option("name", ids_name, "Collection")->required();
  del->add_option("ids", ids, "Ids");
  del->add_option("--key", keys, "A key (repeatable)");
  del->callback([&] { rc = CmdDelete(g, ids_name, ids, keys); });
  auto* get = app.add_subcommand("get", "Fetch vectors and attributes by id or by key");
  get->add_option("name", ids_name, "Collection")->required();
  get->add_option("ids", ids, "Ids");
  get->add_option("--key", keys, "A key (repeatable)");
  get->add_flag("--json", get_json, "Print JSON");
  get->callback([&] { rc = CmdGet(g, ids_name, ids, keys, get_json); });
  uint64_t keys_cursor = 0;
  uint32_t keys_count = 100;
  bool keys_all = false, keys_json = false;
  auto* keys_cmd = app.add_subcommand("keys", "List the keys of records written by key, in id order");
  keys_cmd->add_option("name", ids_name, "Collection")->required();
  keys_cmd->add_option("--cursor", keys_cursor, "Continue from a cursor (0: the start)");
  keys_cmd->add_option("--count", keys_count, "Keys per page")->capture_default_str();
  keys_cmd->add_flag("--all", keys_all, "Every page");
  keys_cmd->add_flag("--json", keys_json, "Print JSON");
  keys_cmd->callback([&] { rc = CmdKeys(g, ids_name, keys_cursor, keys_count, keys_all, keys_json); });

  SearchCmdArgs search_args;
  auto* search = app.add_subcommand(
      "search",
      "Search one vector, or a query file (measured). A filter naming an attribute no record has, or "
      "comparing with a type the attribute never holds, is warned about on stderr");
  search->add_option("name", search_args.name, "Collection")->required();
  search->add_option("--vector", search_args.vector, "One query: 0.1,-0.2,... (commas or spaces)");
  search->add_option("--queries", search_args.queries, "Query file (fvecs, bvecs, fbin, u8bin, npy)");
  search->add_option("--max-queries", search_args.limit, "Use only the first N queries (0: all)");
  search->add_option("--limit", search_args.limit)->group("");  // the old name, hidden
  AddSearchArgs(search, search_args.search);
  search->add_flag("--explain", search_args.explain, "Also print the plan (one --vector, or --queries with --max-queries 1)");
  search->add_flag("--with-attributes", search_args.with_attributes,
                   "Return each hit's attributes with it, in the same request (one --vector, or --queries "
                   "with --max-queries 1); text: a JSON object after each hit");
  search->add_flag("--allow-partial", search_args.allow_partial,
                   "A cluster collection: a shard that does not answer in time leaves the reply "
                   "partial (the other shards' hits; the missing shards named) instead of failing it "
                   "(one --vector, or --queries with --max-queries 1)");
  search->add_option("--shard-timeout-ms", search_args.shard_timeout_ms,
                     "A cluster collection: how long the node waits for each shard replica (0: the "
                     "server's --cluster-shard-timeout-ms)");
  search->add_option("--gt", search_args.gt, "Ground truth (ivecs, ibin, npy): report recall@k");
  search->add_option("--id-offset", search_args.id_offset,
                     "Subtracted from result ids before comparing with --gt rows");
  search->add_option("--pipeline", search_args.pipeline, "Queries in flight at once")
      ->capture_default_str();
  search->add_flag("--results", search_args.results, "With --queries: print every query's results");
  search->add_flag("--send-float32", search_args.send_float32,
                   "Widen a query file of float16, int8 or uint8 values to float32 before sending (by "
                   "default, with --pipeline 1, such queries are sent as they are: search_typed)");
  search->add_flag("--json", search_args.json, "Print one JSON object");
  search->callback([&] { rc = CmdSearch(g, search_args); });

  std::string snapshot_collection, snapshot_name;
  bool snapshot_json = false;
  auto* snapshot = app.add_subcommand(
      "snapshot",
      "Take a consistent copy of a collection while writes go on, as folder NAME of the server's "
      "--snapshot-dir (restore it with: strata restore PATH --into DIR)");
  snapshot->add_option("collection", snapshot_collection, "Collection")->required();
  snapshot->add_option("name", snapshot_name,
                       "The snapshot's folder name: letters, digits, '.', '_', '-' (never overwritten)")
      ->required();
  snapshot->add_flag("--json", snapshot_json, "Print JSON");
  snapshot->callback([&] { rc = CmdSnapshot(g, snapshot_collection, snapshot_name, snapshot_json); });

  bool stats_json = false;
  auto* stats = app.add_subcommand("stats", "Server and engine counters");
  stats->add_flag("--json", stats_json, "Print JSON");
  stats->callback([&] { rc = CmdStats(g, stats_json); });

  LoadCmdArgs load_args;
  auto* load = app.add_subcommand("load", "Generate search load; report QPS, latency, errors");
  load->add_option("name", load_args.name, "Collection")->required();
  load->add_option("--queries", load_args.queries, "Query file, used round robin")->required();
  load->add_option("--max-queries", load_args.limit, "Use only the first N queries (0: all)");
  load->add_option("--limit", load_args.limit)->group("");  // the old name, hidden
  load->add_option("--connections", load_args.connections, "Connections, one thread each")
      ->capture_default_str();
  load->add_option("--duration", load_args.duration_s, "Seconds")->capture_default_str();
  load->add_option("--pipeline", load_args.pipeline, "Requests in flight per connection")
      ->capture_default_str();
  load->add_option("--rate", load_args.rate,
                   "Total target QPS, open loop (latency from the scheduled time); 0: as fast as "
                   "possible")
      ->capture_default_str();
  AddSearchArgs(load, load_args.search);
  load->add_option("--gt", load_args.gt, "Ground truth: report recall@k");
  load->add_option("--id-offset", load_args.id_offset,
                   "Subtracted from result ids before comparing with --gt rows");
  load->add_flag("--json", load_args.json, "Print one JSON object");
  load->callback([&] { rc = CmdLoad(g, load_args); });

  AddClusterCommands(app, rc);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    if (app.get_subcommands().empty()) {
      // CLI11 says only "a subcommand is required"; name the word it did not know.
      for (int i = 1; i < argc; ++i) {
        const std::string word = argv[i];
        if (word.empty() || word[0] == '-') {
          const bool takes_value = word.find('=') == std::string::npos &&
                                   (word == "--host" || word == "--port" || word == "--token" ||
                                    word == "--connect-timeout-ms" || word == "--timeout-ms");
          if (takes_value) ++i;
          continue;
        }
        what = fmt::format("unknown subcommand '{}'", word);
        break;
      }
    }
    std::replace(what.begin(), what.end(), '\n', ' ');
    fmt::print(stderr, "strata-cli: error: {} (see --help)\n", what);
    return 2;
  } catch (const std::exception& e) {
    // Nothing below is expected to throw (the client returns Status); this keeps an
    // allocation failure or a library surprise to the promised one line.
    return Fail(Internal("{}", e.what()));
  }
  return rc;
}
