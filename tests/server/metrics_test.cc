#include "server/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <vector>
#include <sstream>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

#include "server/auth.h"
#include "server/server.h"

namespace strata::server {
namespace {

// Parses the exposition into "name{labels}" -> value, checking that every sample's
// metric family was announced with # HELP and # TYPE before it.
std::map<std::string, std::string> ParseExposition(const std::string& text,
                                                   std::map<std::string, std::string>* types) {
  std::map<std::string, std::string> samples;
  std::map<std::string, bool> helped;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# HELP ", 0) == 0) {
      helped[line.substr(7, line.find(' ', 7) - 7)] = true;
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      const size_t sp = line.find(' ', 7);
      (*types)[line.substr(7, sp - 7)] = line.substr(sp + 1);
      continue;
    }
    EXPECT_FALSE(line.empty());
    const size_t sp = line.rfind(' ');
    const std::string key = line.substr(0, sp);
    std::string family = key.substr(0, key.find('{'));
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s(suffix);
      if (family.size() > s.size() && family.compare(family.size() - s.size(), s.size(), s) == 0 &&
          types->count(family.substr(0, family.size() - s.size())) &&
          (*types)[family.substr(0, family.size() - s.size())] == "histogram") {
        family = family.substr(0, family.size() - s.size());
      }
    }
    EXPECT_TRUE(helped.count(family)) << "no # HELP before " << line;
    EXPECT_TRUE(types->count(family)) << "no # TYPE before " << line;
    samples[key] = line.substr(sp + 1);
  }
  return samples;
}

HistogramSnapshot SampleHistogram() {
  LatencyHistogram h;
  h.Record(10'000);       // 10 us: first bucket (<= 50 us)
  h.Record(60'000);       // 60 us: second bucket (<= 100 us)
  h.Record(70'000);       // 70 us: second bucket
  h.Record(200'000'000);  // 0.2 s
  return h.Snapshot();
}

TEST(Prometheus, RendersEveryMetricWithHelpAndType) {
  EngineCounters e;
  e.write_batches = 3;
  e.upserts = 30;
  e.deletes = 2;
  e.searches = 17;
  e.gets = 5;
  e.wal_bytes = 4096;
  e.wal_fsyncs = 3;
  e.disk_reads = 9;
  e.disk_read_bytes = 36864;
  e.vectors = 28;
  e.memory_bytes = 123456;
  e.search_latency = SampleHistogram();
  e.write_latency = LatencyHistogram().Snapshot();
  ServerMetrics m;
  m.ConnectionOpened();
  m.ConnectionOpened();
  m.ConnectionClosed();
  m.RequestAnswered(static_cast<uint16_t>(protocol::Op::kSearch), 1000);
  m.RequestAnswered(static_cast<uint16_t>(protocol::Op::kSearch), 1000);
  m.RequestAnswered(static_cast<uint16_t>(protocol::Op::kUpsert), 1000);
  m.RequestAnswered(999, 1000);
  m.ErrorSent(protocol::ErrorCode::kBusy);
  m.BusyRejection();
  const std::string text = RenderPrometheus(e, m.Snapshot());

  std::map<std::string, std::string> types;
  auto samples = ParseExposition(text, &types);
  for (const char* counter :
       {"strata_write_batches_total", "strata_upserts_total", "strata_deletes_total",
        "strata_searches_total", "strata_gets_total", "strata_wal_bytes_total",
        "strata_wal_fsyncs_total", "strata_disk_reads_total", "strata_disk_read_bytes_total",
        "strata_server_requests_total", "strata_server_errors_total",
        "strata_server_busy_rejections_total"}) {
    EXPECT_EQ(types[counter], "counter") << counter;
  }
  for (const char* gauge : {"strata_vectors", "strata_memory_bytes", "strata_server_connections"}) {
    EXPECT_EQ(types[gauge], "gauge") << gauge;
  }
  for (const char* histogram : {"strata_search_latency_seconds", "strata_write_latency_seconds",
                                "strata_server_request_duration_seconds"}) {
    EXPECT_EQ(types[histogram], "histogram") << histogram;
  }
  EXPECT_EQ(samples["strata_write_batches_total"], "3");
  EXPECT_EQ(samples["strata_upserts_total"], "30");
  EXPECT_EQ(samples["strata_deletes_total"], "2");
  EXPECT_EQ(samples["strata_searches_total"], "17");
  EXPECT_EQ(samples["strata_gets_total"], "5");
  EXPECT_EQ(samples["strata_wal_bytes_total"], "4096");
  EXPECT_EQ(samples["strata_wal_fsyncs_total"], "3");
  EXPECT_EQ(samples["strata_disk_reads_total"], "9");
  EXPECT_EQ(samples["strata_disk_read_bytes_total"], "36864");
  EXPECT_EQ(samples["strata_vectors"], "28");
  EXPECT_EQ(samples["strata_memory_bytes"], "123456");
  EXPECT_EQ(samples["strata_server_connections"], "1");
  EXPECT_EQ(samples["strata_server_requests_total{op=\"search\"}"], "2");
  EXPECT_EQ(samples["strata_server_requests_total{op=\"upsert\"}"], "1");
  EXPECT_EQ(samples["strata_server_requests_total{op=\"ping\"}"], "0");
  EXPECT_EQ(samples["strata_server_requests_total{op=\"unknown\"}"], "1");
  EXPECT_EQ(samples["strata_server_errors_total{code=\"busy\"}"], "1");
  EXPECT_EQ(samples["strata_server_errors_total{code=\"malformed\"}"], "0");
  EXPECT_EQ(samples["strata_server_busy_rejections_total"], "1");
}

TEST(Prometheus, HistogramBucketsAreCumulativeAndEndWithInf) {
  EngineCounters e;
  e.search_latency = SampleHistogram();
  const std::string text = RenderPrometheus(e, ServerMetrics().Snapshot());
  std::map<std::string, std::string> types;
  auto samples = ParseExposition(text, &types);
  const std::string name = "strata_search_latency_seconds";
  EXPECT_EQ(samples[name + "_bucket{le=\"5e-05\"}"], "1");
  EXPECT_EQ(samples[name + "_bucket{le=\"0.0001\"}"], "3");
  EXPECT_EQ(samples[name + "_bucket{le=\"0.0002\"}"], "3");
  EXPECT_EQ(samples[name + "_bucket{le=\"0.2048\"}"], "4");
  EXPECT_EQ(samples[name + "_bucket{le=\"+Inf\"}"], "4");
  EXPECT_EQ(samples[name + "_count"], "4");
  EXPECT_NEAR(std::stod(samples[name + "_sum"]), 0.20014, 1e-9);
  // Cumulative: never decreasing, in the order written.
  uint64_t last = 0;
  size_t buckets = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + "_bucket", 0) != 0) continue;
    const uint64_t v = std::stoull(line.substr(line.rfind(' ') + 1));
    EXPECT_GE(v, last) << line;
    last = v;
    ++buckets;
  }
  EXPECT_EQ(buckets, LatencyHistogram::kFiniteBuckets + 1);
  // An empty histogram still has every bucket, at zero.
  EXPECT_EQ(samples["strata_write_latency_seconds_bucket{le=\"+Inf\"}"], "0");
  EXPECT_EQ(samples["strata_write_latency_seconds_count"], "0");
}

// Per-collection gauges carry a collection label (issue 13), one sample per collection.
TEST(Prometheus, CollectionMetricsCarryTheCollectionLabel) {
  std::vector<CollectionInfo> collections(2);
  collections[0].spec = {.name = "docs", .dim = 100, .metric = Metric::kCosine};
  collections[0].num_vectors = 1234;
  collections[0].memory_bytes = 56789;
  collections[0].sealed_segments = 2;
  collections[0].last_sequence = 41;
  collections[1].spec = {.name = "img-2", .dim = 784, .metric = Metric::kL2};
  collections[1].num_vectors = 7;
  const std::string text = RenderPrometheus(EngineCounters{}, ServerMetrics().Snapshot(), collections);
  std::map<std::string, std::string> types;
  auto samples = ParseExposition(text, &types);
  for (const char* gauge : {"strata_collection_vectors", "strata_collection_memory_bytes",
                            "strata_collection_sealed_segments", "strata_collection_last_sequence",
                            "strata_collection_info"}) {
    EXPECT_EQ(types[gauge], "gauge") << gauge;
  }
  EXPECT_EQ(samples["strata_collection_vectors{collection=\"docs\"}"], "1234");
  EXPECT_EQ(samples["strata_collection_vectors{collection=\"img-2\"}"], "7");
  EXPECT_EQ(samples["strata_collection_memory_bytes{collection=\"docs\"}"], "56789");
  EXPECT_EQ(samples["strata_collection_sealed_segments{collection=\"docs\"}"], "2");
  EXPECT_EQ(samples["strata_collection_last_sequence{collection=\"docs\"}"], "41");
  EXPECT_EQ(samples["strata_collection_info{collection=\"docs\",dim=\"100\",metric=\"cosine\"}"], "1");
  EXPECT_EQ(samples["strata_collection_info{collection=\"img-2\",dim=\"784\",metric=\"l2\"}"], "1");
  // No collections: the families are announced, with no samples.
  const std::string empty = RenderPrometheus(EngineCounters{}, ServerMetrics().Snapshot());
  EXPECT_NE(empty.find("# TYPE strata_collection_vectors gauge"), std::string::npos);
  EXPECT_EQ(empty.find("strata_collection_vectors{"), std::string::npos);
}

// A live server's metrics port shows each collection under its own label.
TEST(MetricsHttp, LiveServerLabelsEachCollection) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("strata_metrics_labels_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  {
    EngineOptions eo;
    eo.durability = Durability::kNone;
    auto engine = Engine::Open(dir, eo);
    ASSERT_TRUE(engine.has_value()) << engine.error().ToString();
    ASSERT_TRUE((*engine)->CreateCollection({.name = "alpha", .dim = 2}).ok());
    ASSERT_TRUE((*engine)->CreateCollection({.name = "beta", .dim = 3}).ok());
    for (VectorId id = 0; id < 3; ++id) {
      ASSERT_TRUE((*engine)->Upsert("beta", id, std::vector<float>{1.0f, float(id), 0.5f}).ok());
    }
    ServerConfig config;
    config.port = 0;
    config.data_dir = dir.string();
    config.worker_threads = 1;
    config.log_level = "error";
    // A port the kernel hands out; another test may take it before the server binds it: then
    // another one, a few times.
    auto free_port = [] {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
      socklen_t n = sizeof a;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
      ::close(fd);
      return ntohs(a.sin_port);
    };
    config.metrics_port = free_port();
    auto server = Server::Start(config, **engine);
    for (int attempt = 0; attempt < 5 && !server &&
                          server.error().message().find("in use") != std::string::npos;
         ++attempt) {
      config.metrics_port = free_port();
      server = Server::Start(config, **engine);
    }
    ASSERT_TRUE(server.has_value()) << server.error().ToString();
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((*server)->metrics_port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    const std::string get = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(::send(fd, get.data(), get.size(), 0), ssize_t(get.size()));
    std::string reply;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) reply.append(buf, size_t(n));
    ::close(fd);
    (*server)->Shutdown();
    (*server)->Wait();
    EXPECT_NE(reply.find("strata_collection_vectors{collection=\"alpha\"} 0\n"), std::string::npos) << reply;
    EXPECT_NE(reply.find("strata_collection_vectors{collection=\"beta\"} 3\n"), std::string::npos) << reply;
    EXPECT_NE(reply.find("strata_collection_info{collection=\"beta\",dim=\"3\",metric=\"l2\"} 1\n"),
              std::string::npos)
        << reply;
  }
  std::filesystem::remove_all(dir);
}

TEST(MetricsHttp, GetMetricsIs200WithPrometheusContentType) {
  int calls = 0;
  HttpResponse r = HandleMetricsRequest("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", [&] {
    ++calls;
    return std::string("m 1\n");
  });
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(r.body, "m 1\n");
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  const std::string bytes = SerializeHttpResponse(r);
  EXPECT_EQ(bytes.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << bytes;
  EXPECT_NE(bytes.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(bytes.find("Content-Length: 4\r\n"), std::string::npos);
  EXPECT_NE(bytes.find("Connection: close\r\n\r\nm 1\n"), std::string::npos);
  // A query string does not change the path.
  EXPECT_EQ(HandleMetricsRequest("GET /metrics?x=1 HTTP/1.0\r\n\r\n", [] { return std::string(); })
                .status,
            200);
}

TEST(MetricsHttp, OtherPathsAre404AndGarbageIs400) {
  auto never = []() -> std::string {
    ADD_FAILURE() << "rendered for a request that is not GET /metrics";
    return {};
  };
  EXPECT_EQ(HandleMetricsRequest("GET / HTTP/1.1\r\n\r\n", never).status, 404);
  EXPECT_EQ(HandleMetricsRequest("GET /metricsx HTTP/1.1\r\n\r\n", never).status, 404);
  EXPECT_EQ(HandleMetricsRequest("POST /metrics HTTP/1.1\r\n\r\n", never).status, 405);
  EXPECT_EQ(HandleMetricsRequest("hello\r\n\r\n", never).status, 400);
  EXPECT_EQ(HandleMetricsRequest("GET /metrics\r\n\r\n", never).status, 400);
  EXPECT_EQ(HandleMetricsRequest("GET  /metrics HTTP/1.1\r\n\r\n", never).status, 400);
  EXPECT_EQ(HandleMetricsRequest("GET /metrics SPDY/3\r\n\r\n", never).status, 400);
  EXPECT_EQ(HandleMetricsRequest("", never).status, 400);
  EXPECT_EQ(HandleMetricsRequest(std::string("\0\1\2\n", 4), never).status, 400);
  const std::string not_found =
      SerializeHttpResponse(HandleMetricsRequest("GET /x HTTP/1.1\r\n\r\n", never));
  EXPECT_EQ(not_found.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u);
}

// Issue 13: liveness and readiness on the metrics port, for orchestrators' probes.
TEST(MetricsHttp, HealthzAndReadyz) {
  auto never = []() -> std::string {
    ADD_FAILURE() << "rendered for a request that is not GET /metrics";
    return {};
  };
  HttpResponse h = HandleMetricsRequest("GET /healthz HTTP/1.1\r\n\r\n", never, /*ready=*/false);
  EXPECT_EQ(h.status, 200);  // alive even while not ready
  EXPECT_EQ(h.body, "ok\n");
  HttpResponse r = HandleMetricsRequest("GET /readyz HTTP/1.1\r\n\r\n", never, /*ready=*/true);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ready\n");
  HttpResponse n = HandleMetricsRequest("GET /readyz?verbose HTTP/1.0\r\n\r\n", never, /*ready=*/false);
  EXPECT_EQ(n.status, 503);
  EXPECT_NE(n.body.find("shutting down"), std::string::npos);
  EXPECT_EQ(HandleMetricsRequest("POST /healthz HTTP/1.1\r\n\r\n", never).status, 405);
  EXPECT_EQ(HandleMetricsRequest("GET /health HTTP/1.1\r\n\r\n", never).status, 404);
}

TEST(Auth, TokensEqualComparesWholeStrings) {
  EXPECT_TRUE(TokensEqual("s3cret", "s3cret"));
  EXPECT_TRUE(TokensEqual("", ""));
  EXPECT_FALSE(TokensEqual("s3cret", "s3creT"));
  EXPECT_FALSE(TokensEqual("s3cret", "t3cret"));
  EXPECT_FALSE(TokensEqual("s3cret", "s3cre"));
  EXPECT_FALSE(TokensEqual("s3cret", "s3cret "));
  EXPECT_FALSE(TokensEqual("s3cret", ""));
  EXPECT_FALSE(TokensEqual("", "s3cret"));
  // A prefix padded with NULs is not the token (the padding of the shorter side is not a match).
  EXPECT_FALSE(TokensEqual(std::string("ab\0", 3), "ab"));
  EXPECT_TRUE(TokensEqual(std::string("a\0b", 3), std::string("a\0b", 3)));
}

// The comparison takes as long whether the strings differ at the first byte or the last:
// an early exit (memcmp, operator==) would answer a first-byte difference about 100,000
// times faster on these 256 KiB strings. Medians of many runs, a factor of 2 allowed, so that
// a loaded machine does not make the test flaky while an early exit still fails it.
TEST(Auth, TokensEqualTakesAsLongWhereverTheStringsDiffer) {
  const std::string expected(256 << 10, 'k');
  std::string first = expected;
  first.front() = 'x';
  std::string last = expected;
  last.back() = 'x';
  auto median_ns = [&expected](const std::string& given) {
    std::vector<int64_t> ns;
    for (int i = 0; i < 21; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      const bool equal = TokensEqual(expected, given);
      const auto t1 = std::chrono::steady_clock::now();
      EXPECT_FALSE(equal);
      ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    }
    std::nth_element(ns.begin(), ns.begin() + ns.size() / 2, ns.end());
    return double(ns[ns.size() / 2]);
  };
  // Interleaved, so that a change of machine load hits both.
  double at_first = 0, at_last = 0;
  for (int round = 0; round < 3; ++round) {
    at_first += median_ns(first);
    at_last += median_ns(last);
  }
  EXPECT_GT(at_first, at_last / 2) << "first-byte difference " << at_first / 3
                                   << " ns, last-byte difference " << at_last / 3 << " ns";
  EXPECT_GT(at_last, at_first / 2);
}

}  // namespace
}  // namespace strata::server
