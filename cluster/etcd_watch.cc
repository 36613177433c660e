// EtcdWatch: one streamed POST /v3/watch. The gateway answers with a chunked body of JSON
// messages, one per line ({"result": WatchResponse} or {"error": ...}); the first says
// "created". The reads run on a private io_context that only the thread in Next (or Open)
// drives, one completion at a time with a deadline, so a Next that times out leaves its read
// pending for the next call instead of cancelling it.

#include <atomic>
#include <deque>
#include <functional>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "cluster/base64.h"
#include "cluster/etcd_client.h"
#include "cluster/etcd_json.h"

namespace strata::cluster {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

class EtcdWatch::Impl {
 public:
  explicit Impl(EtcdEndpoint endpoint) : endpoint_(std::move(endpoint)) {
    parser_.body_limit(std::numeric_limits<uint64_t>::max());
    on_chunk_ = [this](uint64_t, boost::string_view body, boost::system::error_code&) {
      stream_.append(body.data(), body.size());
      SplitLines();
      return body.size();
    };
    parser_.on_chunk_body(on_chunk_);
  }

  const std::string& url() const { return endpoint_.url; }
  std::string where() const { return endpoint_.url + "/v3/watch"; }

  // Connects, sends the create request and reads the reply's header, within `timeout`.
  Status Start(const std::string& body, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    tcp::resolver resolver(io_);
    boost::system::error_code ec;
    tcp::resolver::results_type results;
    bool done = false;
    resolver.async_resolve(endpoint_.host, std::to_string(endpoint_.port),
                           [&](const boost::system::error_code& e, tcp::resolver::results_type r) {
                             ec = e;
                             results = std::move(r);
                             done = true;
                           });
    if (!RunUntil(done, deadline)) {
      resolver.cancel();
      Drain(done);
      return IOError("etcd {}: timed out after {} ms resolving", where(), timeout.count());
    }
    if (ec) return IOError("etcd {}: resolving failed: {}", where(), ec.message());
    done = false;
    asio::async_connect(socket_, results, [&](const boost::system::error_code& e, const tcp::endpoint&) {
      ec = e;
      done = true;
    });
    if (!RunUntil(done, deadline)) {
      Close();
      Drain(done);
      return IOError("etcd {}: timed out after {} ms connecting", where(), timeout.count());
    }
    if (ec) return IOError("etcd {}: connecting failed: {}", where(), ec.message());
    socket_.set_option(tcp::no_delay(true), ec);

    http::request<http::string_body> request{http::verb::post, "/v3/watch", 11};
    request.set(http::field::host, fmt::format("{}:{}", endpoint_.host, endpoint_.port));
    request.set(http::field::content_type, "application/json");
    request.body() = body;
    request.prepare_payload();
    done = false;
    http::async_write(socket_, request, [&](const boost::system::error_code& e, size_t) {
      ec = e;
      done = true;
    });
    if (!RunUntil(done, deadline)) {
      Close();
      Drain(done);
      return IOError("etcd {}: timed out after {} ms sending the request", where(),
                     timeout.count());
    }
    if (ec) return IOError("etcd {}: sending the request failed: {}", where(), ec.message());
    done = false;
    http::async_read_header(socket_, buffer_, parser_,
                            [&](const boost::system::error_code& e, size_t) {
                              ec = e;
                              done = true;
                            });
    if (!RunUntil(done, deadline)) {
      Close();
      Drain(done);
      return IOError("etcd {}: timed out after {} ms waiting for the reply", where(),
                     timeout.count());
    }
    if (ec) return IOError("etcd {}: reading the reply failed: {}", where(), ec.message());
    status_ = parser_.get().result_int();
    return Status::Ok();
  }

  unsigned status() const { return status_; }

  // The next line of the stream (one JSON message), waiting until `deadline`; nullopt when none
  // came in time. IOError when the stream ended or broke, Cancelled after Cancel().
  Result<std::optional<std::string>> NextLine(Clock::time_point deadline) {
    for (;;) {
      if (cancelled_.load()) return Error(Cancelled("etcd {}: the watch was cancelled", where()));
      if (!lines_.empty()) {
        std::string line = std::move(lines_.front());
        lines_.pop_front();
        return std::optional<std::string>(std::move(line));
      }
      if (failed_) return Error(failure_);
      if (!reading_) StartRead();
      if (io_.stopped()) io_.restart();
      if (io_.run_one_until(deadline) == 0 && Clock::now() >= deadline) {
        return std::optional<std::string>();
      }
    }
  }

  // Whatever the reply's body held besides chunk data (a non-chunked error reply).
  std::string Body() const { return parser_.get().body() + stream_; }

  void Cancel() {
    cancelled_.store(true);
    asio::post(io_, [this] { Close(); });
  }

 private:
  void SplitLines() {
    size_t begin = 0;
    for (size_t nl; (nl = stream_.find('\n', begin)) != std::string::npos; begin = nl + 1) {
      if (nl > begin) lines_.emplace_back(stream_.substr(begin, nl - begin));
    }
    stream_.erase(0, begin);
  }

  void StartRead() {
    reading_ = true;
    http::async_read_some(socket_, buffer_, parser_,
                          [this](const boost::system::error_code& ec, size_t) {
                            reading_ = false;
                            if (ec) {
                              failed_ = true;
                              failure_ = IOError("etcd {}: the watch stream broke: {}", where(),
                                                 ec.message());
                            } else if (parser_.is_done()) {
                              // A last message without its newline, then the end.
                              if (!stream_.empty()) lines_.push_back(std::move(stream_));
                              stream_.clear();
                              failed_ = true;
                              failure_ = IOError("etcd {}: etcd ended the watch stream", where());
                            }
                          });
  }

  // Runs completions until `done` or `deadline`; false on the deadline.
  bool RunUntil(const bool& done, Clock::time_point deadline) {
    while (!done) {
      if (io_.stopped()) io_.restart();
      if (io_.run_one_until(deadline) == 0 && Clock::now() >= deadline) return done;
    }
    return true;
  }
  // After a Close: lets the aborted operation complete.
  void Drain(const bool& done) {
    while (!done) {
      if (io_.stopped()) io_.restart();
      if (io_.run_one() == 0) break;
    }
  }
  void Close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

  const EtcdEndpoint endpoint_;
  asio::io_context io_;
  tcp::socket socket_{io_};
  boost::beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
  std::function<size_t(uint64_t, boost::string_view, boost::system::error_code&)> on_chunk_;
  unsigned status_ = 0;
  std::string stream_;  // chunk bytes not yet split into lines
  std::deque<std::string> lines_;
  bool reading_ = false;
  bool failed_ = false;
  Status failure_;
  std::atomic<bool> cancelled_{false};
};

namespace {

// One message of the stream: a batch (possibly without events), or the watch's end.
struct Message {
  bool created = false;
  bool canceled = false;
  int64_t compact_revision = 0;
  std::string cancel_reason;
  int64_t header_revision = 0;
  std::vector<EtcdEvent> events;
};

Result<Message> ParseMessage(const std::string& line, const std::string& where) {
  json parsed = json::parse(line, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return Error(IOError("etcd {}: a watch message that is not JSON: '{}'", where,
                         line.substr(0, 120)));
  }
  if (parsed.contains("error")) {
    Status s = internal::EtcdErrorStatus(parsed, where);
    return Error(s);
  }
  const json result = parsed.value("result", json::object());
  auto parse = [&]() -> Result<Message> {
    Message m;
    m.created = result.value("created", false);
    m.canceled = result.value("canceled", false);
    m.cancel_reason = result.value("cancel_reason", std::string());
    STRATA_ASSIGN_OR_RETURN(m.compact_revision, internal::JsonInt(result, "compact_revision"));
    if (auto h = result.find("header"); h != result.end()) {
      STRATA_ASSIGN_OR_RETURN(m.header_revision, internal::JsonInt(*h, "revision"));
    }
    if (auto ev = result.find("events"); ev != result.end() && ev->is_array()) {
      for (const json& e : *ev) {
        EtcdEvent event;
        event.type = e.value("type", std::string("PUT")) == "DELETE" ? EtcdEvent::Type::kDelete
                                                                   : EtcdEvent::Type::kPut;
        STRATA_ASSIGN_OR_RETURN(event.kv, internal::ParseKeyValue(e.value("kv", json::object())));
        m.events.push_back(std::move(event));
      }
    }
    return m;
  };
  auto m = parse();
  if (!m) return Error(IOError("etcd {}: unexpected watch message: {}", where, m.error().message()));
  return m;
}

}  // namespace

EtcdWatch::EtcdWatch(std::unique_ptr<Impl> impl, int64_t revision)
    : impl_(std::move(impl)), revision_(revision) {}
EtcdWatch::~EtcdWatch() = default;

const std::string& EtcdWatch::url() const { return impl_->url(); }

void EtcdWatch::Cancel() { impl_->Cancel(); }

Result<std::unique_ptr<EtcdWatch>> EtcdWatch::Open(EtcdClient& client, std::string_view key,
                                                   std::string_view range_end,
                                                   int64_t start_revision) {
  json create = {{"key", Base64Encode(key)}};
  if (!range_end.empty()) create["range_end"] = Base64Encode(range_end);
  if (start_revision > 0) create["start_revision"] = std::to_string(start_revision);
  const std::string body = json{{"create_request", create}}.dump();
  const auto timeout = std::chrono::milliseconds(client.options().timeout_ms);

  const size_t n = client.endpoints().size();
  size_t first = 0;
  for (size_t i = 0; i < n; ++i) {
    if (client.endpoints()[i].url == client.preferred().url) first = i;
  }
  std::string failures;
  for (size_t i = 0; i < n; ++i) {
    const EtcdEndpoint& ep = client.endpoints()[(first + i) % n];
    auto impl = std::make_unique<Impl>(ep);
    if (Status s = impl->Start(body, timeout); !s.ok()) {
      failures += (failures.empty() ? "" : "; ") + s.message();
      continue;
    }
    const std::string where = impl->url() + "/v3/watch";
    // The first message: "created", or an error.
    auto line = impl->NextLine(Clock::now() + timeout);
    if (!line) {
      if (impl->status() != 200) {
        json parsed = json::parse(impl->Body(), nullptr, false);
        if (!parsed.is_discarded()) {
          Status s = internal::EtcdErrorStatus(parsed, where);
          if (!s.ok()) return Error(s);
        }
        return Error(IOError("etcd {}: HTTP {}: '{}'", where, impl->status(),
                             impl->Body().substr(0, 120)));
      }
      failures += (failures.empty() ? "" : "; ") + line.error().message();
      continue;
    }
    if (!line->has_value()) {
      failures += (failures.empty() ? "" : "; ") +
                  fmt::format("etcd {}: no reply within {} ms", where, timeout.count());
      continue;
    }
    STRATA_ASSIGN_OR_RETURN(Message m, ParseMessage(**line, where));
    if (!m.created) {
      return Error(IOError("etcd {}: the first watch message is not 'created': '{}'", where,
                           (*line)->substr(0, 200)));
    }
    const int64_t revision = start_revision > 0 ? start_revision - 1 : m.header_revision;
    return std::unique_ptr<EtcdWatch>(new EtcdWatch(std::move(impl), revision));
  }
  return Error(IOError("etcd: no endpoint accepted the watch ({} tried): {}", n, failures));
}

Result<std::optional<EtcdWatchBatch>> EtcdWatch::Next(uint32_t wait_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
  const std::string where = impl_->url() + "/v3/watch";
  for (;;) {
    STRATA_ASSIGN_OR_RETURN(std::optional<std::string> line, impl_->NextLine(deadline));
    if (!line) return std::optional<EtcdWatchBatch>();
    auto parsed = ParseMessage(*line, where);
    if (!parsed) {
      // An error inside an open stream ends it, whatever gRPC code etcd puts on it (its gateway,
      // stopping, says code 1, "the client connection is closing"): to the caller a broken
      // stream, never the Cancelled of its own Cancel, on which a PrefixMirror stops for good.
      if (parsed.error().code() == StatusCode::kIOError) return Error(parsed.error());
      return Error(IOError("the watch stream ended: {}", parsed.error().message()));
    }
    Message& m = *parsed;
    if (m.canceled) {
      if (m.compact_revision > 0) {
        return Error(OutOfRange(
            "etcd {}: revision {} was compacted (the oldest kept is {}): read again, then watch",
            where, revision_ + 1, m.compact_revision));
      }
      return Error(IOError("etcd {}: etcd cancelled the watch: {}", where,
                           m.cancel_reason.empty() ? "no reason given" : m.cancel_reason));
    }
    if (m.events.empty()) {
      // A progress notification: every event up to its revision has been delivered.
      if (!m.created && m.header_revision > revision_) revision_ = m.header_revision;
      continue;
    }
    EtcdWatchBatch batch;
    for (const EtcdEvent& e : m.events) revision_ = std::max(revision_, e.kv.mod_revision);
    batch.revision = revision_;
    batch.events = std::move(m.events);
    return std::optional<EtcdWatchBatch>(std::move(batch));
  }
}

}  // namespace strata::cluster
