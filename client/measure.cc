#include "client/measure.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <thread>
#include <unordered_map>

#include <fmt/core.h>

#include "core/recall.h"
#include "core/stats.h"

namespace strata::client {
namespace {

using Clock = std::chrono::steady_clock;
using protocol::Op;
using protocol::Request;
using protocol::Response;

double Millis(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// A kSearch request for one query; Load() overwrites its vector before each send.
Request SearchTemplate(const std::string& collection, uint32_t dim,
                       const SearchOptions& options) {
  protocol::SearchRequest search;
  search.collection = collection;
  search.options = options;
  search.dim = dim;
  search.count = 1;
  search.queries.resize(dim);
  return Request{.op = Op::kSearch, .body = std::move(search)};
}

void Load(Request& request, const float* queries, uint32_t dim, uint32_t index) {
  auto& q = std::get<protocol::SearchRequest>(request.body).queries;
  std::copy_n(queries + size_t(index) * dim, dim, q.begin());
}

// The single result list of a search answer, or null for an answer of another shape.
std::vector<Neighbor>* SingleResult(Response& response) {
  auto* reply = std::get_if<protocol::SearchReply>(&response.body);
  if (reply == nullptr || reply->results.size() != 1) return nullptr;
  return &reply->results[0];
}

// What one load connection measured.
struct WorkerResult {
  uint64_t sent = 0;
  uint64_t ok = 0;
  uint64_t unsent = 0;
  std::map<std::string, uint64_t> errors;
  std::vector<double> latency_ms;
  double recall_sum = 0;
  uint64_t recall_count = 0;
  std::string broken;  // why the connection broke ("" if it did not)
  Clock::time_point last_answer{};
};

class LoadWorker {
 public:
  LoadWorker(const LoadConfig& config, Client& client, uint32_t index, Clock::time_point start,
             Clock::time_point end, WorkerResult& out)
      : config_(config), client_(client), index_(index), start_(start), end_(end), out_(out),
        request_(SearchTemplate(config.collection, config.dim, config.search)) {}

  void Run() {
    if (Status s = config_.rate > 0 ? OpenLoop() : ClosedLoop(); !s.ok()) {
      out_.broken = s.message();
      out_.errors["connection"] += pending_.size();
      return;
    }
    // Stop sending; drain what is in flight.
    while (!pending_.empty()) {
      auto got = client_.Receive();
      if (!got) {
        out_.broken = got.error().message();
        out_.errors["connection"] += pending_.size();
        return;
      }
      Handle(got->first, got->second);
    }
  }

 private:
  Status ClosedLoop() {
    while (Clock::now() < end_) {
      while (pending_.size() < config_.pipeline) {
        STRATA_RETURN_IF_ERROR(SendNext(Clock::now()));
      }
      STRATA_ASSIGN_OR_RETURN(auto got, client_.Receive());
      Handle(got.first, got.second);
    }
    return Status::Ok();
  }

  // Request j of this connection is due at start + (index + j * connections) / rate: the
  // connections interleave, so together they send at the total rate, evenly spaced.
  Status OpenLoop() {
    const auto interval = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(double(config_.connections) / config_.rate));
    Clock::time_point due = start_ + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(index_ / config_.rate));
    for (;;) {
      const Clock::time_point now = Clock::now();
      if (now >= end_) break;
      if (due < end_ && now >= due && pending_.size() < config_.pipeline) {
        STRATA_RETURN_IF_ERROR(SendNext(due));  // latency counts from the scheduled time
        due += interval;
        continue;
      }
      // Wait for an answer, or until the next request is due (if a slot is free), or the end.
      const Clock::time_point wake =
          pending_.size() < config_.pipeline ? std::min(due, end_) : end_;
      if (pending_.empty()) {
        std::this_thread::sleep_until(wake);
        continue;
      }
      const auto wait = std::chrono::duration_cast<std::chrono::microseconds>(
          std::max(Clock::duration::zero(), wake - now));
      STRATA_ASSIGN_OR_RETURN(auto got, client_.Poll(wait));
      if (got) Handle(got->first, got->second);
    }
    // Requests that came due before the end but found the window full.
    while (due < end_) {
      ++out_.unsent;
      due += interval;
    }
    return Status::Ok();
  }

  Status SendNext(Clock::time_point timed_from) {
    // Each connection walks its own residue class of the query list, round robin.
    const uint32_t query =
        uint32_t((index_ + uint64_t(config_.connections) * requests_) % config_.num_queries);
    ++requests_;
    Load(request_, config_.queries, config_.dim, query);
    STRATA_ASSIGN_OR_RETURN(uint64_t id, client_.Send(request_));
    pending_.emplace(id, Pending{.query = query, .timed_from = timed_from});
    ++out_.sent;
    return Status::Ok();
  }

  void Handle(uint64_t id, Response& response) {
    const Clock::time_point now = Clock::now();
    auto it = pending_.find(id);
    if (it == pending_.end()) return;  // not possible: the Client only returns ids it sent
    const Pending pending = it->second;
    pending_.erase(it);
    out_.last_answer = now;
    if (response.op == Op::kError) {
      const auto& e = std::get<protocol::ErrorReply>(response.body);
      ++out_.errors[std::string(protocol::ErrorCodeName(e.code))];
      return;
    }
    const std::vector<Neighbor>* result = SingleResult(response);
    if (result == nullptr) {
      ++out_.errors["bad reply"];
      return;
    }
    ++out_.ok;
    out_.latency_ms.push_back(Millis(now - pending.timed_from));
    if (config_.truth != nullptr) {
      out_.recall_sum += RecallAtK(*config_.truth, pending.query, *result, config_.search.k,
                                   config_.id_offset);
      ++out_.recall_count;
    }
  }

  struct Pending {
    uint32_t query;
    Clock::time_point timed_from;
  };

  const LoadConfig& config_;
  Client& client_;
  const uint32_t index_;
  const Clock::time_point start_;
  const Clock::time_point end_;
  WorkerResult& out_;
  Request request_;
  uint64_t requests_ = 0;
  std::unordered_map<uint64_t, Pending> pending_;
};

}  // namespace

LatencySummary SummarizeLatencies(std::vector<double>& ms) {
  const SampleSummary s = Summarize(ms);
  return {.count = s.count,
          .mean_ms = s.mean,
          .p50_ms = s.p50,
          .p90_ms = s.p90,
          .p99_ms = s.p99,
          .p999_ms = s.p999,
          .max_ms = s.max};
}

double RecallAtK(const storage::GroundTruth& truth, size_t query, std::span<const Neighbor> result,
                 uint32_t k, uint64_t id_offset) {
  const size_t kk = std::min<size_t>(k, truth.k);
  if (kk == 0 || query >= truth.num_queries) return 0;
  const std::span<const int32_t> row(truth.row(query), kk);
  const std::span<const float> distances =
      truth.distances.empty()
          ? std::span<const float>()
          : std::span<const float>(truth.distances).subspan(query * truth.k, kk);
  std::vector<VectorId> ids;
  return strata::RecallAtK(TruthFromFileRow(row, distances, id_offset, ids), result);
}

Result<QueryRun> RunQueries(Client& client, const std::string& collection, const float* queries,
                            uint32_t dim, uint32_t count, const SearchOptions& options,
                            uint32_t window) {
  if (window == 0) return Error(InvalidArgument("the pipeline window must be >= 1"));
  if (dim == 0) return Error(InvalidArgument("query dim must be > 0"));
  if (client.outstanding() != 0) {
    return Error(InvalidArgument("RunQueries needs a client with no request outstanding"));
  }
  QueryRun run;
  run.results.resize(count);
  run.latency_ms.resize(count);
  Request request = SearchTemplate(collection, dim, options);
  struct Pending {
    uint32_t query;
    Clock::time_point sent;
  };
  std::unordered_map<uint64_t, Pending> pending;
  Status first_error;
  uint32_t next = 0;
  const Clock::time_point start = Clock::now();
  Clock::time_point last = start;
  for (;;) {
    while (first_error.ok() && next < count && pending.size() < window) {
      Load(request, queries, dim, next);
      auto id = client.Send(request);
      if (!id) {
        if (!client.is_open()) return Error(id.error());
        first_error = id.error().WithContext(fmt::format("query {}", next));
        break;
      }
      pending.emplace(*id, Pending{.query = next++, .sent = Clock::now()});
    }
    if (pending.empty()) break;
    STRATA_ASSIGN_OR_RETURN(auto got, client.Receive());
    last = Clock::now();
    auto it = pending.find(got.first);
    if (it == pending.end()) continue;  // not possible: nothing else was outstanding
    const Pending p = it->second;
    pending.erase(it);
    if (!first_error.ok()) continue;
    if (got.second.op == Op::kError) {
      const auto& e = std::get<protocol::ErrorReply>(got.second.body);
      first_error = protocol::StatusFromError(e.code, e.message)
                        .WithContext(fmt::format("query {}", p.query));
      continue;
    }
    std::vector<Neighbor>* result = SingleResult(got.second);
    if (result == nullptr) {
      first_error = Internal("query {}: the server's answer holds no single result list", p.query);
      continue;
    }
    run.results[p.query] = std::move(*result);
    run.latency_ms[p.query] = Millis(last - p.sent);
  }
  if (!first_error.ok()) return Error(first_error);
  run.elapsed_s = std::chrono::duration<double>(last - start).count();
  return run;
}

Result<LoadReport> RunLoad(const LoadConfig& config) {
  if (config.connections == 0) return Error(InvalidArgument("--connections must be >= 1"));
  if (config.pipeline == 0) return Error(InvalidArgument("--pipeline must be >= 1"));
  if (!(config.duration_s > 0) || !std::isfinite(config.duration_s)) {
    return Error(InvalidArgument("--duration must be > 0 seconds"));
  }
  if (!(config.rate >= 0) || !std::isfinite(config.rate)) {
    return Error(InvalidArgument("--rate must be >= 0"));
  }
  // Each connection sends every connections / rate seconds; the schedule is kept in
  // clock ticks, so a shorter interval would round to nothing (and the schedule would
  // never advance). A microsecond is far below what one connection can send anyway.
  if (config.rate > 0 && double(config.connections) / config.rate < 1e-6) {
    return Error(InvalidArgument(
        "--rate {} over {} connections asks each connection to send every {:.3g} s; the "
        "shortest interval per connection is 1 us (rate at most {:.0f} per connection): lower "
        "--rate or add --connections",
        config.rate, config.connections, double(config.connections) / config.rate, 1e6));
  }
  if (config.num_queries == 0 || config.dim == 0 || config.queries == nullptr) {
    return Error(InvalidArgument("the load needs at least one query"));
  }
  if (config.truth != nullptr && config.truth->num_queries < config.num_queries) {
    return Error(InvalidArgument("the ground truth has {} rows for {} queries",
                                 config.truth->num_queries, config.num_queries));
  }

  std::vector<std::unique_ptr<Client>> clients;
  for (uint32_t i = 0; i < config.connections; ++i) {
    auto client = Client::Connect(config.host, config.port, config.client_options);
    if (!client) return Error(client.error().WithContext(fmt::format("connection {}", i)));
    clients.push_back(std::move(*client));
  }

  std::vector<WorkerResult> results(config.connections);
  const Clock::time_point start = Clock::now();
  const Clock::time_point end =
      start + std::chrono::duration_cast<Clock::duration>(
                  std::chrono::duration<double>(config.duration_s));
  {
    std::vector<std::jthread> threads;
    for (uint32_t i = 0; i < config.connections; ++i) {
      threads.emplace_back([&, i] {
        LoadWorker(config, *clients[i], i, start, end, results[i]).Run();
      });
    }
  }

  LoadReport report;
  std::vector<double> latencies;
  double recall_sum = 0;
  uint64_t recall_count = 0;
  Clock::time_point last = start;
  for (uint32_t i = 0; i < config.connections; ++i) {
    WorkerResult& w = results[i];
    report.sent += w.sent;
    report.ok += w.ok;
    report.unsent += w.unsent;
    for (const auto& [code, n] : w.errors) report.errors[code] += n;
    if (!w.broken.empty()) {
      report.connection_errors.push_back(fmt::format("connection {}: {}", i, w.broken));
    }
    latencies.insert(latencies.end(), w.latency_ms.begin(), w.latency_ms.end());
    recall_sum += w.recall_sum;
    recall_count += w.recall_count;
    last = std::max(last, w.last_answer);
  }
  for (auto it = report.errors.begin(); it != report.errors.end();) {
    it = it->second == 0 ? report.errors.erase(it) : std::next(it);
  }
  report.elapsed_s = std::chrono::duration<double>(last - start).count();
  if (report.elapsed_s <= 0) report.elapsed_s = config.duration_s;
  report.qps = double(report.ok) / report.elapsed_s;
  report.latency = SummarizeLatencies(latencies);
  if (config.truth != nullptr && recall_count > 0) {
    report.recall = recall_sum / double(recall_count);
  }
  return report;
}

}  // namespace strata::client
