// strata-cli: the pieces its subcommands share (cli.h).

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <variant>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "client/cli.h"

namespace strata::cli {

Result<std::vector<float>> ParseVector(const std::string& text, std::string_view flag) {
  std::vector<float> v;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ',' || text[i] == ' ' || text[i] == '\t')) ++i;
    if (i >= text.size()) break;
    size_t j = i;
    while (j < text.size() && text[j] != ',' && text[j] != ' ' && text[j] != '\t') ++j;
    const std::string token = text.substr(i, j - i);
    float x = 0;
    // from_chars does not take a leading '+'.
    const char* b = token.data() + (token[0] == '+' ? 1 : 0);
    auto [p, ec] = std::from_chars(b, token.data() + token.size(), x);
    if (ec != std::errc() || p != token.data() + token.size()) {
      return Error(InvalidArgument("{}: '{}' (component {}) is not a number", flag, token,
                                   v.size()));
    }
    if (!std::isfinite(x)) {
      return Error(InvalidArgument("{}: component {} is not finite", flag, v.size()));
    }
    v.push_back(x);
    i = j;
  }
  if (v.empty()) return Error(InvalidArgument("{} is empty", flag));
  return v;
}

std::string KeyText(std::string_view key) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char ch : key) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(ch);
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

int Fail(const Status& s) {
  std::string line = s.ToString();
  std::replace(line.begin(), line.end(), '\n', ' ');
  fmt::print(stderr, "strata-cli: error: {}\n", line);
  return 1;
}

Json AttributesJson(const Attributes& attributes) {
  Json o = Json::object();
  for (const Attribute& a : attributes) {
    std::visit([&](const auto& v) { o[a.name] = v; }, a.value);
  }
  return o;
}

void PrintWarnings(const std::vector<std::string>& warnings) {
  for (std::string w : warnings) {
    std::replace(w.begin(), w.end(), '\n', ' ');
    fmt::print(stderr, "strata-cli: warning: {}\n", w);
  }
}

int Usage(const Status& s) {
  Fail(s);
  return 2;
}

client::ClientOptions Options(const GlobalArgs& g) {
  client::ClientOptions o;
  o.token = g.token;
  o.client_name = "strata-cli";
  o.connect_timeout_ms = g.connect_timeout_ms;
  o.io_timeout_ms = g.timeout_ms;
  return o;
}

Result<std::unique_ptr<Client>> Open(const GlobalArgs& g) {
  auto client = Client::Connect(g.host, g.port, Options(g));
  if (!client && g.token.empty() &&
      client.error().message().find("token required") != std::string::npos) {
    // The server told a missing token from a wrong one: say where a token comes from.
    return Error(Status(client.error().code(),
                        client.error().message() + " (give it with --token or STRATA_TOKEN)"));
  }
  return client;
}

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, units[u]);
}

Json LatencyJson(const client::LatencySummary& l) {
  return {{"count", l.count}, {"mean", l.mean_ms}, {"p50", l.p50_ms},  {"p90", l.p90_ms},
          {"p99", l.p99_ms},  {"p999", l.p999_ms}, {"max", l.max_ms}};
}

void AddSearchArgs(CLI::App* cmd, SearchArgs& a) {
  cmd->add_option("-k,--k", a.k, "Neighbours per query")->capture_default_str();
  cmd->add_option("--recall", a.recall, "Recall target in (0, 1]; 0: the server's default");
  cmd->add_option("--ef", a.ef, "HNSW candidate list (0: from the recall target)");
  cmd->add_option("--max-lists", a.max_lists, "SPANN posting lists read (0: from the recall target)");
  cmd->add_option("--filter", a.filter, "Filter expression, e.g. 'lang == \"en\" AND year >= 2020'");
  cmd->add_option("--strategy", a.strategy, "auto, index, scan or post-filter")->capture_default_str();
}

Result<SearchOptions> ToSearchOptions(const SearchArgs& a) {
  if (a.k == 0) return Error(InvalidArgument("--k must be >= 1"));
  if (!(a.recall >= 0 && a.recall <= 1)) {
    return Error(InvalidArgument("--recall {} is outside [0, 1]", a.recall));
  }
  SearchOptions o;
  o.k = a.k;
  o.recall = a.recall;
  o.ef = a.ef;
  o.max_lists = a.max_lists;
  o.filter = a.filter;
  STRATA_ASSIGN_OR_RETURN(o.strategy, ParseSearchStrategy(a.strategy));
  return o;
}

void NoteConversion(const std::string& path, const storage::DatasetShape& shape) {
  if (shape.format == storage::DatasetFormat::kNpy && shape.value_type != "float32") {
    fmt::print(stderr, "strata-cli: {} holds {} values; converted to float32\n", path, shape.value_type);
  }
}

Result<QueryData> ReadQueryData(const std::string& path, size_t limit, const std::string& gt_path) {
  QueryData d;
  STRATA_ASSIGN_OR_RETURN(storage::DatasetShape shape, storage::ProbeVectors(path));
  NoteConversion(path, shape);
  storage::ReadOptions opt;
  if (limit > 0) opt.max_rows = limit;
  STRATA_ASSIGN_OR_RETURN(d.queries, storage::ReadVectors(path, opt));
  if (d.queries.empty()) return Error(InvalidArgument("{}: no queries", path));
  if (d.queries.size() > std::numeric_limits<uint32_t>::max()) {
    return Error(InvalidArgument("{}: more than 2^32-1 queries; use --max-queries", path));
  }
  if (!gt_path.empty()) {
    STRATA_ASSIGN_OR_RETURN(storage::GroundTruth gt, storage::ReadGroundTruth(gt_path));
    if (gt.num_queries < d.queries.size()) {
      return Error(InvalidArgument("{} has {} rows for {} queries", gt_path, gt.num_queries,
                                   d.queries.size()));
    }
    d.truth = std::move(gt);
  }
  return d;
}

}  // namespace strata::cli
