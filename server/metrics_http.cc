// The metrics port of Server::Impl: a minimal HTTP/1.1 responder for GET /metrics
// (Prometheus text, rendered on a worker and cached), /healthz and /readyz.

#include <algorithm>
#include <array>
#include <utility>

#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "server/server_impl.h"

namespace strata::server {

namespace {

// A metrics request must arrive whole within this long (or request_timeout_s, if shorter).
constexpr double kHttpTimeoutSeconds = 10.0;
// The metrics text is rendered at most once per this period (engine.counters() takes the
// engine's locks and walks every collection) and by one worker at a time; scrapes in
// between get the cached text.
constexpr auto kMetricsCacheTtl = std::chrono::seconds(1);
constexpr size_t kMaxHttpHeadBytes = 16 * 1024;

}  // namespace

asio::awaitable<void> Server::Impl::MetricsAcceptLoop() {
  asio::steady_timer backoff(control_);
  for (;;) {
    auto socket = std::make_shared<tcp::socket>(asio::make_strand(io_));
    error_code ec;
    co_await metrics_acceptor_.async_accept(*socket, asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_.load() || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      ServerLog().warn("accept on metrics port {} failed: {}", metrics_port_, ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    asio::co_spawn(socket->get_executor(), ServeHttp(socket),
                   [](std::exception_ptr e) { LogCoroutineFailure("metrics connection", e); });
  }
}

asio::awaitable<std::string> Server::Impl::RenderMetricsOnPool() {
  // engine.counters() takes the engine's locks and walks every collection: it runs
  // on a worker, never on an I/O thread. The work guard keeps the I/O threads up
  // until the text has been handed back.
  return asio::async_initiate<decltype(asio::use_awaitable), void(std::string)>(
      [this](auto handler) {
        asio::post(pool_, [this, handler = std::move(handler),
                           work = asio::make_work_guard(io_)]() mutable {
          std::string text;
          try {
            text = RenderPrometheus(engine_.counters(), metrics_.Snapshot(), engine_.ListCollections());
            text += handler_.HookMetrics();
          } catch (const std::exception& e) {
            text = fmt::format("# rendering failed: {}\n", e.what());
          }
          auto ex = asio::get_associated_executor(handler);
          asio::dispatch(ex, [handler = std::move(handler), text = std::move(text)]() mutable {
            handler(std::move(text));
          });
        });
      },
      asio::use_awaitable);
}

asio::awaitable<std::optional<std::string>> Server::Impl::MetricsText(
    Clock::time_point deadline) {
  asio::steady_timer poll(co_await asio::this_coro::executor);
  for (;;) {
    {
      std::lock_guard<std::mutex> l(metrics_cache_mu_);
      if (metrics_rendered_at_ && Clock::now() - *metrics_rendered_at_ < kMetricsCacheTtl) {
        co_return metrics_text_;
      }
      if (!metrics_rendering_) {
        metrics_rendering_ = true;
        break;
      }
    }
    // Another scrape is rendering: wait for its text rather than render a second time.
    if (Clock::now() >= deadline) co_return std::nullopt;
    poll.expires_after(std::chrono::milliseconds(10));
    error_code ec;
    co_await poll.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  std::string text = co_await RenderMetricsOnPool();
  std::lock_guard<std::mutex> l(metrics_cache_mu_);
  metrics_text_ = text;
  metrics_rendered_at_ = Clock::now();
  metrics_rendering_ = false;
  co_return text;
}

asio::awaitable<void> Server::Impl::ServeHttp(std::shared_ptr<tcp::socket> socket) {
  asio::steady_timer deadline(socket->get_executor());
  deadline.expires_after(Seconds(std::min(kHttpTimeoutSeconds, config_.request_timeout_s)));
  deadline.async_wait([socket](error_code ec) {
    if (ec) return;
    error_code ignored;
    socket->close(ignored);
  });
  std::string head;
  error_code ec;
  const size_t n =
      co_await asio::async_read_until(*socket, asio::dynamic_buffer(head, kMaxHttpHeadBytes),
                                      "\r\n\r\n", asio::redirect_error(asio::use_awaitable, ec));
  HttpResponse response;
  if (ec == asio::error::not_found) {
    response.status = 431;
    response.body = "request head too large\n";
  } else if (ec) {
    deadline.cancel();
    co_return;  // the client went away or timed out
  } else {
    bool wants_metrics = false;
    // Ready: the engine is open and recovered (the server starts after both) and no
    // shutdown has begun.
    const bool ready = !stopping_.load(std::memory_order_acquire);
    response = HandleMetricsRequest(
        std::string_view(head).substr(0, n),
        [&wants_metrics] {
          wants_metrics = true;
          return std::string();
        },
        ready);
    if (wants_metrics) {
      std::optional<std::string> text = co_await MetricsText(deadline.expiry());
      if (text) {
        response.body = std::move(*text);
      } else {
        response = HttpResponse{};
        response.status = 503;
        response.body = "metrics are being rendered for another scrape; retry\n";
        response.extra_headers.emplace_back("Retry-After", "1");
      }
    }
  }
  const std::string bytes = SerializeHttpResponse(response);
  co_await asio::async_write(*socket, asio::buffer(bytes),
                             asio::redirect_error(asio::use_awaitable, ec));
  socket->shutdown(tcp::socket::shutdown_send, ec);
  // Drain what the client may still send (bounded by the deadline), then close.
  std::array<char, 512> scratch;
  while (!ec) {
    co_await socket->async_read_some(asio::buffer(scratch),
                                     asio::redirect_error(asio::use_awaitable, ec));
  }
  socket->close(ec);
  deadline.cancel();
}

}  // namespace strata::server
