// The etcd client (cluster/etcd_client.h) against a real etcd started by the test, and its
// pure parts (base64, endpoint URLs, prefix ranges) on their own.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "cluster/base64.h"
#include "cluster/etcd_client.h"
#include "cluster/etcd_json.h"
#include "tests/cluster/etcd_process.h"

namespace strata::cluster {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

TEST(Base64, RoundTripsEveryByteAndLength) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (size_t n = 0; n <= all.size(); n += (n < 8 ? 1 : 37)) {
    const std::string bytes = all.substr(0, n);
    auto back = Base64Decode(Base64Encode(bytes));
    ASSERT_TRUE(back.has_value()) << back.error().ToString();
    EXPECT_EQ(*back, bytes) << n;
  }
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(*Base64Decode("Zm8"), "fo");  // unpadded
}

TEST(Base64, RefusesWhatIsNotBase64) {
  auto bad = Base64Decode("Zm9v!A==");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.error().message().find("character 4"), std::string::npos) << bad.error().message();
  EXPECT_FALSE(Base64Decode("Zm9vY").has_value());   // 5 characters
  EXPECT_FALSE(Base64Decode("Zm8==").has_value());   // padded, not a multiple of 4
}

TEST(EtcdEndpoint, ParsesUrlsAndRefusesBadOnes) {
  auto ep = ParseEtcdEndpoint("http://127.0.0.1:2379");
  ASSERT_TRUE(ep.has_value());
  EXPECT_EQ(ep->host, "127.0.0.1");
  EXPECT_EQ(ep->port, 2379);
  EXPECT_EQ(ep->url, "http://127.0.0.1:2379");
  EXPECT_EQ(ParseEtcdEndpoint("localhost:23").value().url, "http://localhost:23");
  EXPECT_EQ(ParseEtcdEndpoint("http://[::1]:2379/").value().host, "::1");
  EXPECT_EQ(ParseEtcdEndpoint("http://[::1]:2379").value().url, "http://[::1]:2379");
  for (const char* bad : {"https://a:1", "grpc://a:1", "http://a", "http://a:0", "http://a:70000",
                          "http://a:1/v3", "http://:1", "http://a:x"}) {
    auto r = ParseEtcdEndpoint(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.error().message().find(bad), std::string::npos) << r.error().message();
  }
  auto list = ParseEtcdEndpoints("http://a:1, http://b:2");
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1].url, "http://b:2");
  EXPECT_FALSE(ParseEtcdEndpoints("http://a:1,,http://b:2").has_value());
  EXPECT_FALSE(ParseEtcdEndpoints("").has_value());
  EXPECT_FALSE(EtcdClient::Create("http://a:1", {.timeout_ms = 0}).has_value());
}

TEST(EtcdEndpoint, PrefixRangeEnd) {
  EXPECT_EQ(PrefixRangeEnd("abc"), "abd");
  EXPECT_EQ(PrefixRangeEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixRangeEnd(""), std::string(1, '\0'));
  EXPECT_EQ(PrefixRangeEnd("\xff\xff"), std::string(1, '\0'));
}

// One etcd for the suite; each test works under its own key prefix.
class EtcdClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto etcd = testing::EtcdProcess::Start();
    ASSERT_TRUE(etcd.has_value()) << etcd.error().ToString();
    etcd_ = std::move(*etcd).release();
  }
  static void TearDownTestSuite() {
    delete etcd_;
    etcd_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(etcd_, nullptr);
    auto client = EtcdClient::Create(etcd_->url(), {.timeout_ms = 2000});
    ASSERT_TRUE(client.has_value()) << client.error().ToString();
    etcd = std::move(*client);
    prefix = std::string("/t/") + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/";
  }
  std::string K(std::string_view name) const { return prefix + std::string(name); }

  static testing::EtcdProcess* etcd_;
  std::unique_ptr<EtcdClient> etcd;
  std::string prefix;
};
testing::EtcdProcess* EtcdClientTest::etcd_ = nullptr;

TEST_F(EtcdClientTest, PutGetDeleteKeepBytesExact) {
  const std::string value("v\0\xff\n\"x", 6);
  auto rev = etcd->Put(K("a"), value);
  ASSERT_TRUE(rev.has_value()) << rev.error().ToString();
  EXPECT_GT(*rev, 0);
  auto got = etcd->Get(K("a"));
  ASSERT_TRUE(got.has_value()) << got.error().ToString();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->key, K("a"));
  EXPECT_EQ((*got)->value, value);
  EXPECT_EQ((*got)->mod_revision, *rev);
  EXPECT_EQ((*got)->create_revision, *rev);
  EXPECT_EQ((*got)->version, 1);
  EXPECT_EQ((*got)->lease, 0);

  auto rev2 = etcd->Put(K("a"), "second");
  ASSERT_TRUE(rev2.has_value());
  EXPECT_GT(*rev2, *rev);
  EXPECT_EQ(etcd->Get(K("a")).value()->version, 2);
  EXPECT_EQ(etcd->Delete(K("a")).value(), 1);
  EXPECT_EQ(etcd->Delete(K("a")).value(), 0);
  EXPECT_FALSE(etcd->Get(K("a")).value().has_value());
}

TEST_F(EtcdClientTest, PrefixRangesAndLimits) {
  for (const char* k : {"p/1", "p/2", "p/3", "q"}) ASSERT_TRUE(etcd->Put(K(k), k).has_value());
  auto all = etcd->GetPrefix(K("p/"));
  ASSERT_TRUE(all.has_value()) << all.error().ToString();
  ASSERT_EQ(all->kvs.size(), 3u);
  EXPECT_EQ(all->kvs[0].key, K("p/1"));
  EXPECT_EQ(all->kvs[2].value, "p/3");
  EXPECT_EQ(all->count, 3);
  EXPECT_FALSE(all->more);
  EXPECT_GT(all->revision, 0);
  auto two = etcd->Range(K("p/"), PrefixRangeEnd(K("p/")), 2);
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(two->kvs.size(), 2u);
  EXPECT_EQ(two->count, 3);
  EXPECT_TRUE(two->more);
  EXPECT_EQ(etcd->DeletePrefix(K("p/")).value(), 3);
  EXPECT_EQ(etcd->GetPrefix(prefix).value().kvs.size(), 1u);  // "q" stays
}

TEST_F(EtcdClientTest, TxnCompareAndSwap) {
  // Create-if-absent: the first wins, the second sees the winner in its failure branch.
  EtcdTxn create{.compare = {EtcdCompare::Absent(K("lock"))},
                 .success = {EtcdOp::Put(K("lock"), "first")},
                 .failure = {EtcdOp::Get(K("lock"))}};
  auto first = etcd->Txn(create);
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  EXPECT_TRUE(first->succeeded);
  ASSERT_EQ(first->results.size(), 1u);
  EXPECT_EQ(first->results[0].kind, EtcdOp::Kind::kPut);
  create.success = {EtcdOp::Put(K("lock"), "second")};
  auto second = etcd->Txn(create);
  ASSERT_TRUE(second.has_value()) << second.error().ToString();
  EXPECT_FALSE(second->succeeded);
  ASSERT_EQ(second->results.size(), 1u);
  ASSERT_EQ(second->results[0].kvs.size(), 1u);
  EXPECT_EQ(second->results[0].kvs[0].value, "first");

  // Swap guarded by the mod revision: a stale revision fails, the current one succeeds.
  const int64_t mod = second->results[0].kvs[0].mod_revision;
  auto stale = etcd->Txn({.compare = {EtcdCompare::ModRevisionIs(K("lock"), mod - 1)},
                          .success = {EtcdOp::Put(K("lock"), "stale")}});
  ASSERT_TRUE(stale.has_value());
  EXPECT_FALSE(stale->succeeded);
  auto swap = etcd->Txn({.compare = {EtcdCompare::ModRevisionIs(K("lock"), mod),
                                     EtcdCompare::ValueIs(K("lock"), "first")},
                         .success = {EtcdOp::Put(K("lock"), "swapped"), EtcdOp::Delete(K("x")),
                                     EtcdOp::GetPrefix(K("lo"))}});
  ASSERT_TRUE(swap.has_value()) << swap.error().ToString();
  EXPECT_TRUE(swap->succeeded);
  ASSERT_EQ(swap->results.size(), 3u);
  EXPECT_EQ(swap->results[1].deleted, 0);
  ASSERT_EQ(swap->results[2].kvs.size(), 1u);
  EXPECT_EQ(swap->results[2].kvs[0].value, "swapped");
  EXPECT_EQ(etcd->Get(K("lock")).value()->value, "swapped");
}

TEST_F(EtcdClientTest, LeaseKeepsKeysAliveUntilRevokedOrLapsed) {
  auto lease = etcd->LeaseGrant(30);
  ASSERT_TRUE(lease.has_value()) << lease.error().ToString();
  EXPECT_NE(lease->id, 0);
  EXPECT_EQ(lease->ttl_s, 30);
  ASSERT_TRUE(etcd->Put(K("member"), "here", lease->id).has_value());
  EXPECT_EQ(etcd->Get(K("member")).value()->lease, lease->id);
  auto ttl = etcd->LeaseKeepAlive(lease->id);
  ASSERT_TRUE(ttl.has_value()) << ttl.error().ToString();
  EXPECT_EQ(*ttl, 30);
  auto left = etcd->LeaseTimeToLive(lease->id);
  ASSERT_TRUE(left.has_value()) << left.error().ToString();
  EXPECT_GT(*left, 25);
  ASSERT_TRUE(etcd->LeaseRevoke(lease->id).ok());
  EXPECT_FALSE(etcd->Get(K("member")).value().has_value());
  auto gone = etcd->LeaseKeepAlive(lease->id);
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(gone.error().code(), StatusCode::kNotFound) << gone.error().ToString();
  EXPECT_EQ(etcd->LeaseTimeToLive(lease->id).error().code(), StatusCode::kNotFound);
  Status again = etcd->LeaseRevoke(lease->id);
  EXPECT_EQ(again.code(), StatusCode::kNotFound) << again.ToString();
  EXPECT_NE(again.message().find("/v3/lease/revoke"), std::string::npos) << again.message();

  // A lease nobody keeps alive lapses, and its keys go with it.
  auto short_lease = etcd->LeaseGrant(1);
  ASSERT_TRUE(short_lease.has_value());
  ASSERT_TRUE(etcd->Put(K("brief"), "x", short_lease->id).has_value());
  const auto until = steady_clock::now() + std::chrono::seconds(10);
  while (etcd->Get(K("brief")).value().has_value() && steady_clock::now() < until) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_FALSE(etcd->Get(K("brief")).value().has_value());
  EXPECT_EQ(etcd->LeaseKeepAlive(short_lease->id).error().code(), StatusCode::kNotFound);
  EXPECT_EQ(etcd->LeaseGrant(0).error().code(), StatusCode::kInvalidArgument);
}

TEST_F(EtcdClientTest, ElectionHasOneLeaderAtATime) {
  const std::string election = K("leader");
  auto none = etcd->Leader(election);
  ASSERT_TRUE(none.has_value()) << none.error().ToString();
  EXPECT_FALSE(none->has_value());

  auto lease_a = etcd->LeaseGrant(30);
  auto lease_b = etcd->LeaseGrant(30);
  ASSERT_TRUE(lease_a && lease_b);
  auto a = etcd->Campaign(election, lease_a->id, "node-a");
  ASSERT_TRUE(a.has_value()) << a.error().ToString();
  EXPECT_EQ(a->name, election);
  EXPECT_EQ(a->lease, lease_a->id);
  EXPECT_TRUE(a->key.starts_with(election + "/")) << a->key;
  auto leader = etcd->Leader(election);
  ASSERT_TRUE(leader.has_value() && leader->has_value());
  EXPECT_EQ((*leader)->value, "node-a");
  EXPECT_EQ((*leader)->create_revision, a->rev);

  // B waits while A leads: its campaign times out (and etcd withdraws it).
  const auto t0 = steady_clock::now();
  auto b_early = etcd->Campaign(election, lease_b->id, "node-b", 300);
  ASSERT_FALSE(b_early.has_value());
  EXPECT_EQ(b_early.error().code(), StatusCode::kIOError);
  EXPECT_NE(b_early.error().message().find("timed out after 300 ms"), std::string::npos)
      << b_early.error().message();
  EXPECT_LT(steady_clock::now() - t0, milliseconds(2000));

  ASSERT_TRUE(etcd->Proclaim(*a, "node-a v2").ok());
  EXPECT_EQ(etcd->Leader(election).value()->value, "node-a v2");

  // B campaigns in the background; A resigns; B leads.
  std::optional<Result<EtcdLeaderKey>> b;
  std::thread campaign([&] { b = etcd->Campaign(election, lease_b->id, "node-b", 5000); });
  std::this_thread::sleep_for(milliseconds(100));
  ASSERT_TRUE(etcd->Resign(*a).ok());
  campaign.join();
  ASSERT_TRUE(b.has_value() && b->has_value()) << b->error().ToString();
  EXPECT_EQ(etcd->Leader(election).value()->value, "node-b");
  EXPECT_GT((*b)->rev, a->rev);

  // A lapsed lease takes its leadership with it.
  ASSERT_TRUE(etcd->LeaseRevoke(lease_b->id).ok());
  EXPECT_FALSE(etcd->Leader(election).value().has_value());
  ASSERT_TRUE(etcd->LeaseRevoke(lease_a->id).ok());
}

TEST_F(EtcdClientTest, WatchDeliversEventsInOrder) {
  auto watch = EtcdWatch::Open(*etcd, K("w/"), PrefixRangeEnd(K("w/")));
  ASSERT_TRUE(watch.has_value()) << watch.error().ToString();
  const int64_t start = (*watch)->revision();
  EXPECT_GT(start, 0);

  // Nothing yet: Next waits about as long as asked and says so.
  const auto t0 = steady_clock::now();
  auto nothing = (*watch)->Next(100);
  ASSERT_TRUE(nothing.has_value()) << nothing.error().ToString();
  EXPECT_FALSE(nothing->has_value());
  EXPECT_GE(steady_clock::now() - t0, milliseconds(90));

  ASSERT_TRUE(etcd->Put(K("w/1"), "one").has_value());
  ASSERT_TRUE(etcd->Put(K("outside"), "x").has_value());
  ASSERT_TRUE(etcd->Put(K("w/2"), "two").has_value());
  const int64_t last = etcd->Delete(K("w/1")).value() == 1 ? etcd->Get(K("outside")).value()->mod_revision : 0;
  ASSERT_GT(last, 0);

  std::vector<EtcdEvent> events;
  const auto until = steady_clock::now() + std::chrono::seconds(5);
  while (events.size() < 3 && steady_clock::now() < until) {
    auto batch = (*watch)->Next(1000);
    ASSERT_TRUE(batch.has_value()) << batch.error().ToString();
    if (!batch->has_value()) continue;
    EXPECT_EQ((*batch)->revision, (*watch)->revision());
    for (auto& e : (*batch)->events) events.push_back(std::move(e));
  }
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].type, EtcdEvent::Type::kPut);
  EXPECT_EQ(events[0].kv.key, K("w/1"));
  EXPECT_EQ(events[0].kv.value, "one");
  EXPECT_EQ(events[1].kv.key, K("w/2"));
  EXPECT_EQ(events[2].type, EtcdEvent::Type::kDelete);
  EXPECT_EQ(events[2].kv.key, K("w/1"));
  EXPECT_LT(events[0].kv.mod_revision, events[1].kv.mod_revision);
  EXPECT_EQ((*watch)->revision(), events[2].kv.mod_revision);

  // The same history again, from a revision.
  auto replay = EtcdWatch::Open(*etcd, K("w/"), PrefixRangeEnd(K("w/")), start + 1);
  ASSERT_TRUE(replay.has_value()) << replay.error().ToString();
  size_t replayed = 0;
  while (replayed < 3) {
    auto batch = (*replay)->Next(2000);
    ASSERT_TRUE(batch.has_value() && batch->has_value());
    replayed += (*batch)->events.size();
  }
  EXPECT_EQ(replayed, 3u);
}

TEST_F(EtcdClientTest, WatchCancelWakesAWaitingNext) {
  auto watch = EtcdWatch::Open(*etcd, K("c"), {});
  ASSERT_TRUE(watch.has_value()) << watch.error().ToString();
  std::thread canceller([&] {
    std::this_thread::sleep_for(milliseconds(100));
    (*watch)->Cancel();
  });
  const auto t0 = steady_clock::now();
  auto r = (*watch)->Next(10000);
  canceller.join();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kCancelled) << r.error().ToString();
  EXPECT_LT(steady_clock::now() - t0, milliseconds(5000));
  EXPECT_EQ((*watch)->Next(0).error().code(), StatusCode::kCancelled);
}

TEST_F(EtcdClientTest, WatchFromACompactedRevisionIsOutOfRange) {
  const int64_t first = etcd->Put(K("k"), "1").value();
  const int64_t second = etcd->Put(K("k"), "2").value();
  ASSERT_TRUE(etcd->Call("/v3/kv/compaction", fmt::format(R"({{"revision":"{}"}})", second),
                         EtcdClient::Retry::kIfNotSent)
                  .has_value());
  auto watch = EtcdWatch::Open(*etcd, K("k"), {}, first);
  ASSERT_TRUE(watch.has_value()) << watch.error().ToString();
  auto r = (*watch)->Next(2000);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kOutOfRange) << r.error().ToString();
  EXPECT_NE(r.error().message().find("compacted"), std::string::npos);
}

// A loopback listener that accepts connections (the kernel's backlog) and never answers.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 16);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// A loopback peer that answers one request with a scripted HTTP response, then keeps the
// connection open until it is destroyed.
class ScriptedPeer {
 public:
  explicit ScriptedPeer(std::string response) : response_(std::move(response)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 4);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      conn_ = ::accept(fd_, nullptr, nullptr);
      if (conn_ < 0) return;
      std::string request;
      char buf[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = ::read(conn_, buf, sizeof buf);
        if (n <= 0) return;
        request.append(buf, size_t(n));
      }
      (void)!::write(conn_, response_.data(), response_.size());
    });
  }
  ~ScriptedPeer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    if (conn_ >= 0) ::close(conn_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  std::string response_;
  int fd_ = -1;
  int conn_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

std::string Chunk(const std::string& line) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", line.size() + 1);
  return size + line + "\n\r\n";
}

// etcd's gateway, stopping, ends an open watch stream with an error message of gRPC code 1
// (Cancelled). To the caller that is a broken stream (IOError: open another watch), never the
// Cancelled of its own Cancel(), which a PrefixMirror takes as "stop following etcd".
TEST(EtcdWatchStream, AnErrorInsideTheStreamIsABrokenStreamWhateverItsCode) {
  ScriptedPeer peer("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
                    Chunk(R"({"result":{"header":{"revision":"7"},"created":true}})") +
                    Chunk(R"({"error":{"grpc_code":1,"http_code":499,"message":"grpc: the client connection is closing","http_status":"Client Closed Request"}})"));
  auto client = EtcdClient::Create(peer.url(), {.timeout_ms = 2000});
  ASSERT_TRUE(client.has_value()) << client.error().ToString();
  auto watch = EtcdWatch::Open(**client, "k", {});
  ASSERT_TRUE(watch.has_value()) << watch.error().ToString();
  EXPECT_EQ((*watch)->revision(), 7);
  auto broken = (*watch)->Next(2000);
  ASSERT_FALSE(broken.has_value());
  EXPECT_EQ(broken.error().code(), StatusCode::kIOError) << broken.error().ToString();
  EXPECT_NE(broken.error().message().find("the client connection is closing"), std::string::npos)
      << broken.error().ToString();
  // The same code on a unary call's reply is a failure to retry, not Cancelled either (a loop
  // such as the node's keep-alive stops on Cancelled).
  const Status unary = internal::EtcdErrorStatus(
      nlohmann::json::parse(R"({"error":"grpc: the client connection is closing","code":1})"),
      "http://127.0.0.1:1/v3/kv/range");
  EXPECT_EQ(unary.code(), StatusCode::kIOError) << unary.ToString();
}

TEST_F(EtcdClientTest, FailsOverToTheNextEndpoint) {
  // A port nothing listens on, then the real etcd.
  const std::string dead = "http://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  auto client = EtcdClient::Create(dead + "," + etcd_->url(), {.timeout_ms = 1000});
  ASSERT_TRUE(client.has_value());
  auto put = (*client)->Put(K("f"), "v");
  ASSERT_TRUE(put.has_value()) << put.error().ToString();
  EXPECT_EQ((*client)->preferred().url, etcd_->url());

  // None reachable: the error names every endpoint and the call.
  auto none = EtcdClient::Create(dead + "," + dead, {.timeout_ms = 1000});
  auto failed = (*none)->Get(K("f"));
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code(), StatusCode::kIOError);
  EXPECT_NE(failed.error().message().find("/v3/kv/range"), std::string::npos);
  EXPECT_NE(failed.error().message().find(dead), std::string::npos) << failed.error().message();
  EXPECT_NE(failed.error().message().find("2 tried"), std::string::npos);
  auto watch = EtcdWatch::Open(**none, K("f"), {});
  ASSERT_FALSE(watch.has_value());
  EXPECT_NE(watch.error().message().find(dead), std::string::npos) << watch.error().message();
}

TEST_F(EtcdClientTest, TimesOutOnAnEndpointThatNeverAnswers) {
  SilentListener silent;
  auto client = EtcdClient::Create(silent.url() + "," + etcd_->url(), {.timeout_ms = 200});
  ASSERT_TRUE(client.has_value());
  // A write that went out unanswered may have been applied: it is not sent again.
  const auto t0 = steady_clock::now();
  auto put = (*client)->Put(K("t"), "v");
  ASSERT_FALSE(put.has_value());
  EXPECT_EQ(put.error().code(), StatusCode::kIOError);
  EXPECT_NE(put.error().message().find("timed out after 200 ms waiting for the reply"),
            std::string::npos)
      << put.error().message();
  EXPECT_NE(put.error().message().find(silent.url() + "/v3/kv/put"), std::string::npos);
  EXPECT_NE(put.error().message().find("may have been applied"), std::string::npos);
  EXPECT_LT(steady_clock::now() - t0, milliseconds(1500));
  // A read is safe to repeat: it moves on to the next endpoint.
  auto get = (*client)->Get(K("t"));
  ASSERT_TRUE(get.has_value()) << get.error().ToString();
  EXPECT_FALSE(get->has_value());
}

TEST(EtcdRestart, WatchBreaksWhenEtcdStopsAndDataSurvivesRestart) {
  auto etcd = testing::EtcdProcess::Start();
  ASSERT_TRUE(etcd.has_value()) << etcd.error().ToString();
  auto client = EtcdClient::Create((*etcd)->url(), {.timeout_ms = 1000});
  ASSERT_TRUE(client.has_value());
  ASSERT_TRUE((*client)->Put("kept", "yes").has_value());
  auto watch = EtcdWatch::Open(**client, "kept", {});
  ASSERT_TRUE(watch.has_value()) << watch.error().ToString();

  (*etcd)->Stop();
  auto broken = (*watch)->Next(5000);
  ASSERT_FALSE(broken.has_value());
  EXPECT_EQ(broken.error().code(), StatusCode::kIOError) << broken.error().ToString();
  auto down = (*client)->Get("kept");
  ASSERT_FALSE(down.has_value());
  EXPECT_NE(down.error().message().find((*etcd)->url()), std::string::npos);

  ASSERT_TRUE((*etcd)->Restart().ok());
  auto kept = (*client)->Get("kept");
  ASSERT_TRUE(kept.has_value()) << kept.error().ToString();
  ASSERT_TRUE(kept->has_value());
  EXPECT_EQ((*kept)->value, "yes");
  // A new watch from the broken one's revision picks up where it stopped.
  auto resumed = EtcdWatch::Open(**client, "kept", {}, (*watch)->revision() + 1);
  ASSERT_TRUE(resumed.has_value()) << resumed.error().ToString();
  ASSERT_TRUE((*client)->Put("kept", "again").has_value());
  auto batch = (*resumed)->Next(2000);
  ASSERT_TRUE(batch.has_value() && batch->has_value());
  EXPECT_EQ((*batch)->events.at(0).kv.value, "again");
}

}  // namespace
}  // namespace strata::cluster
