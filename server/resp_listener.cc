// RespListener: the RESP port's acceptor, its registry of connections, and its part of
// the graceful shutdown (resp_listener.h).

#include "server/resp_listener.h"

#include <fmt/core.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace strata::server {

RespListener::RespListener(Server::Impl& server, Engine& engine)
    : server_(server),
      commands_(engine, server.config_),
      strand_(asio::make_strand(server.io_)),
      acceptor_(strand_),
      drain_timer_(strand_) {}

RespListener::~RespListener() = default;

Status RespListener::Bind(const asio::ip::address& address) {
  const tcp::endpoint endpoint(address, server_.config_.resp_port);
  error_code e;
  acceptor_.open(endpoint.protocol(), e);
  if (!e) acceptor_.set_option(tcp::acceptor::reuse_address(true), e);
  if (!e) acceptor_.bind(endpoint, e);
  if (!e) acceptor_.listen(asio::socket_base::max_listen_connections, e);
  if (e) {
    return IOError("cannot listen on {}:{} (server.resp_port): {}", server_.config_.listen,
                   server_.config_.resp_port, e.message());
  }
  port_ = acceptor_.local_endpoint(e).port();
  if (e) return IOError("server.resp_port: cannot read the bound port: {}", e.message());
  return Status::Ok();
}

void RespListener::Start() {
  asio::co_spawn(strand_, AcceptLoop(),
                 [](std::exception_ptr e) { LogCoroutineFailure("RESP accept loop", e); });
}

asio::awaitable<void> RespListener::AcceptLoop() {
  asio::steady_timer backoff(strand_);
  for (;;) {
    Strand strand = asio::make_strand(server_.NextConnectionIo());
    tcp::socket socket(strand);
    error_code ec;
    co_await acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    if (server_.stopping_.load()) co_return;
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      ServerLog().warn("accept on RESP port {} failed: {}", port_, ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    const uint64_t id = ++next_id_;
    const std::string address = AddressString(socket);
    auto conn = std::make_shared<RespConnection>(*this, id, strand, std::move(socket));
    std::string refusal;
    if (!server_.config_.token.empty()) {
      if (const Clock::duration left = server_.HelloBackoff(address);
          left > Clock::duration::zero()) {
        server_.metrics_.HelloBackoffRefusal();
        refusal = fmt::format("-ERR too many failed AUTH from {}: its connections are refused "
                              "for {:.1f} s\r\n",
                              address, std::chrono::duration<double>(left).count());
      }
    }
    if (refusal.empty()) {
      std::lock_guard<std::mutex> l(mu_);
      // max_connections applies to each listener on its own (docs/RESP.md).
      if (conns_.size() >= server_.config_.max_connections) {
        refusal = fmt::format("-ERR max number of clients reached ({}, max_connections)\r\n",
                              server_.config_.max_connections);
        server_.metrics_.BusyRejection();
      } else {
        conns_.emplace(id, conn);
        server_.metrics_.ConnectionOpened();
      }
    }
    if (refusal.empty()) {
      asio::post(strand, [conn] { conn->Start(); });
    } else {
      asio::post(strand, [conn, refusal = std::move(refusal)]() mutable {
        conn->StartRejected(std::move(refusal));
      });
    }
  }
}

void RespListener::Unregister(uint64_t id) {
  std::lock_guard<std::mutex> l(mu_);
  if (conns_.erase(id) == 0) return;
  server_.metrics_.ConnectionClosed();
  if (server_.stopping_.load() && conns_.empty()) {
    asio::post(strand_, [this] { drain_timer_.cancel(); });
  }
}

std::vector<std::shared_ptr<RespConnection>> RespListener::Live() {
  std::vector<std::shared_ptr<RespConnection>> out;
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& [id, weak] : conns_) {
    if (auto c = weak.lock()) out.push_back(std::move(c));
  }
  return out;
}

void RespListener::Shutdown() {
  asio::post(strand_, [this] {
    error_code ec;
    acceptor_.close(ec);
    const auto conns = Live();
    for (const auto& c : conns) asio::post(c->strand(), [c] { c->StopAccepting(); });
    if (conns.empty()) return;
    drain_timer_.expires_after(Seconds(server_.config_.shutdown_timeout_s));
    drain_timer_.async_wait([this](error_code e) {
      if (e) return;  // every connection closed in time
      const auto left = Live();
      ServerLog().warn("shutdown: {} RESP connections still busy after {} s (shutdown_timeout_s); "
                       "closing them",
                       left.size(), server_.config_.shutdown_timeout_s);
      for (const auto& c : left) asio::post(c->strand(), [c] { c->Close("shutdown timeout"); });
    });
  });
}

}  // namespace strata::server
