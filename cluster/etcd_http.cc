#include "cluster/etcd_http.h"

#include <charconv>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

namespace strata::cluster {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

Result<EtcdEndpoint> ParseEtcdEndpoint(std::string_view url) {
  std::string_view rest = url;
  if (rest.starts_with("https://")) {
    return Error(InvalidArgument("etcd endpoint '{}': https is not supported (TLS); use http://",
                                 url));
  }
  if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else if (rest.find("://") != std::string_view::npos) {
    return Error(InvalidArgument("etcd endpoint '{}': the scheme must be http://", url));
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) {
    return Error(InvalidArgument("etcd endpoint '{}': a path is not allowed (give http://HOST:PORT)",
                                 url));
  }
  EtcdEndpoint ep;
  std::string_view port_text;
  if (rest.starts_with("[")) {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return Error(InvalidArgument("etcd endpoint '{}': expected [IPV6]:PORT", url));
    }
    ep.host = std::string(rest.substr(1, close - 1));
    port_text = rest.substr(close + 2);
  } else {
    const size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      return Error(InvalidArgument("etcd endpoint '{}': no port (give http://HOST:PORT)", url));
    }
    ep.host = std::string(rest.substr(0, colon));
    port_text = rest.substr(colon + 1);
  }
  if (ep.host.empty()) return Error(InvalidArgument("etcd endpoint '{}': no host", url));
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535) {
    return Error(InvalidArgument("etcd endpoint '{}': port '{}' is not in 1..65535", url,
                                 port_text));
  }
  ep.port = static_cast<uint16_t>(port);
  ep.url = ep.host.find(':') != std::string::npos
               ? fmt::format("http://[{}]:{}", ep.host, ep.port)
               : fmt::format("http://{}:{}", ep.host, ep.port);
  return ep;
}

Result<std::vector<EtcdEndpoint>> ParseEtcdEndpoints(std::string_view urls) {
  std::vector<EtcdEndpoint> out;
  size_t begin = 0;
  while (begin <= urls.size()) {
    size_t comma = urls.find(',', begin);
    if (comma == std::string_view::npos) comma = urls.size();
    std::string_view one = urls.substr(begin, comma - begin);
    while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
    while (!one.empty() && one.back() == ' ') one.remove_suffix(1);
    if (one.empty()) {
      return Error(InvalidArgument("etcd endpoints '{}': an empty entry", urls));
    }
    STRATA_ASSIGN_OR_RETURN(EtcdEndpoint ep, ParseEtcdEndpoint(one));
    out.push_back(std::move(ep));
    begin = comma + 1;
  }
  return out;
}

std::expected<HttpReply, HttpError> HttpPost(const EtcdEndpoint& endpoint, std::string_view path,
                                             const std::string& body,
                                             std::chrono::milliseconds timeout) {
  asio::io_context io;
  tcp::resolver resolver(io);
  tcp::socket socket(io);
  asio::steady_timer deadline(io);
  bool timed_out = false;
  bool finished = false;
  // Where the call stopped, for the error.
  const char* stage = "resolving";
  bool sent = false;
  boost::system::error_code error;
  HttpReply reply;

  deadline.expires_after(timeout);
  deadline.async_wait([&](const boost::system::error_code& ec) {
    if (ec || finished) return;
    timed_out = true;
    resolver.cancel();
    boost::system::error_code ignored;
    socket.close(ignored);
  });

  auto run = [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    auto results = co_await resolver.async_resolve(
        endpoint.host, std::to_string(endpoint.port), asio::redirect_error(asio::use_awaitable, ec));
    if (ec || timed_out) {
      error = ec;
      co_return;
    }
    stage = "connecting";
    co_await asio::async_connect(socket, results, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || timed_out) {
      error = ec;
      co_return;
    }
    socket.set_option(tcp::no_delay(true), ec);
    http::request<http::string_body> request{http::verb::post, std::string(path), 11};
    request.set(http::field::host, fmt::format("{}:{}", endpoint.host, endpoint.port));
    request.set(http::field::content_type, "application/json");
    request.body() = body;
    request.prepare_payload();
    stage = "sending the request";
    sent = true;
    co_await http::async_write(socket, request, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || timed_out) {
      error = ec;
      co_return;
    }
    stage = "waiting for the reply";
    boost::beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(uint64_t{256} << 20);
    co_await http::async_read(socket, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || timed_out) {
      error = ec;
      co_return;
    }
    reply.status = parser.get().result_int();
    reply.body = std::move(parser.get().body());
  };
  asio::co_spawn(io, run, [&](std::exception_ptr e) {
    finished = true;
    deadline.cancel();
    if (e && !error) error = asio::error::fault;
  });
  io.run();

  if (!timed_out && !error) return reply;
  const HttpFailure failure = sent ? HttpFailure::kSent : HttpFailure::kNotSent;
  if (timed_out) {
    return std::unexpected(HttpError{
        failure, IOError("etcd {}{}: timed out after {} ms {}", endpoint.url, path,
                         timeout.count(), stage)});
  }
  return std::unexpected(HttpError{
      failure, IOError("etcd {}{}: {} failed: {}", endpoint.url, path, stage, error.message())});
}

}  // namespace strata::cluster
