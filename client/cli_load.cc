// strata-cli: load -- search load over several connections, closed or open loop,
// reported as QPS, latency percentiles, errors by code and recall@k.

#include <algorithm>
#include <string>

#include <fmt/core.h>

#include "client/cli.h"

namespace strata::cli {

int CmdLoad(const GlobalArgs& g, const LoadCmdArgs& a) {
  auto options = ToSearchOptions(a.search);
  if (!options) return Usage(options.error());
  auto data = ReadQueryData(a.queries, a.limit, a.gt);
  if (!data) return Fail(data.error());
  client::LoadConfig config;
  config.host = g.host;
  config.port = g.port;
  config.client_options = Options(g);
  config.collection = a.name;
  config.queries = data->queries.data();
  config.dim = uint32_t(data->queries.dim());
  config.num_queries = uint32_t(data->queries.size());
  config.search = *options;
  config.connections = a.connections;
  config.duration_s = a.duration_s;
  config.pipeline = a.pipeline;
  config.rate = a.rate;
  config.truth = data->truth ? &*data->truth : nullptr;
  config.id_offset = a.id_offset;
  if (!a.json) {
    fmt::print(stderr, "load: {} connections, pipeline {}, {}, {:.1f} s, {} queries\n",
               a.connections, a.pipeline,
               a.rate > 0 ? fmt::format("open loop at {:.1f} QPS", a.rate) : "closed loop",
               a.duration_s, config.num_queries);
  }
  auto report = client::RunLoad(config);
  if (!report) return Fail(report.error());
  const client::LoadReport& r = *report;
  uint64_t errors = 0;
  for (const auto& [code, n] : r.errors) errors += n;
  if (a.json) {
    Json errs = Json::object();
    for (const auto& [code, n] : r.errors) errs[code] = n;
    Json o = {{"command", "load"},        {"collection", a.name},
              {"connections", a.connections}, {"pipeline", a.pipeline},
              {"rate", a.rate},           {"duration_s", a.duration_s},
              {"elapsed_s", r.elapsed_s}, {"k", options->k},
              {"sent", r.sent},           {"ok", r.ok},
              {"errors", errs},           {"unsent", r.unsent},
              {"qps", r.qps},             {"latency_ms", LatencyJson(r.latency)}};
    o["recall"] = r.recall ? Json(*r.recall) : Json(nullptr);
    o["connection_errors"] = r.connection_errors;
    fmt::print("{}\n", Dump(o));
  } else {
    fmt::print("requests: {} sent, {} ok, {} errors", r.sent, r.ok, errors);
    if (errors > 0) {
      std::string by_code;
      for (const auto& [code, n] : r.errors) by_code += fmt::format("{}{}: {}", by_code.empty() ? "" : ", ", code, n);
      fmt::print(" ({})", by_code);
    }
    fmt::print("\n");
    if (r.unsent > 0) {
      fmt::print("unsent: {} requests came due while every connection's window was full\n",
                 r.unsent);
    }
    fmt::print("throughput: {:.1f} QPS over {:.2f} s\n", r.qps, r.elapsed_s);
    fmt::print("latency ms{}: p50 {:.3f}  p90 {:.3f}  p99 {:.3f}  p99.9 {:.3f}  max {:.3f}  "
               "mean {:.3f}\n",
               a.rate > 0 ? " (from the scheduled send time)" : "", r.latency.p50_ms,
               r.latency.p90_ms, r.latency.p99_ms, r.latency.p999_ms, r.latency.max_ms,
               r.latency.mean_ms);
    if (r.recall) {
      fmt::print("recall@{}: {:.4f}\n", std::min<size_t>(options->k, data->truth->k), *r.recall);
    }
  }
  for (const std::string& e : r.connection_errors) fmt::print(stderr, "strata-cli: warning: {}\n", e);
  if (r.ok == 0) {
    return Fail(IOError("no request succeeded ({} sent, {} errors)", r.sent, errors));
  }
  return 0;
}

}  // namespace strata::cli
