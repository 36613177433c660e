#include "server/metrics.h"

#include <fmt/core.h>

namespace strata::server {

using protocol::ErrorCode;

namespace {

// Slot i of the error counters holds kErrorSlotCodes[i].
constexpr ErrorCode kErrorSlotCodes[] = {
    ErrorCode::kInvalidArgument, ErrorCode::kNotFound,
    ErrorCode::kAlreadyExists,   ErrorCode::kCorruption,
    ErrorCode::kIOError,         ErrorCode::kOutOfRange,
    ErrorCode::kUnimplemented,   ErrorCode::kResourceExhausted,
    ErrorCode::kCancelled,       ErrorCode::kInternal,
    ErrorCode::kMalformed,       ErrorCode::kUnknownOp,
    ErrorCode::kUnauthenticated, ErrorCode::kBusy,
    ErrorCode::kTooLarge,        ErrorCode::kShuttingDown,
};
constexpr size_t kOtherErrorSlot = std::size(kErrorSlotCodes);

}  // namespace

std::string_view ErrorCodeLabel(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kAlreadyExists:
      return "already_exists";
    case ErrorCode::kCorruption:
      return "corruption";
    case ErrorCode::kIOError:
      return "io_error";
    case ErrorCode::kOutOfRange:
      return "out_of_range";
    case ErrorCode::kUnimplemented:
      return "unimplemented";
    case ErrorCode::kResourceExhausted:
      return "resource_exhausted";
    case ErrorCode::kCancelled:
      return "cancelled";
    case ErrorCode::kInternal:
      return "internal";
    case ErrorCode::kMalformed:
      return "malformed";
    case ErrorCode::kUnknownOp:
      return "unknown_op";
    case ErrorCode::kUnauthenticated:
      return "unauthenticated";
    case ErrorCode::kBusy:
      return "busy";
    case ErrorCode::kTooLarge:
      return "too_large";
    case ErrorCode::kShuttingDown:
      return "shutting_down";
  }
  return "other";
}

size_t ServerMetrics::ErrorSlot(ErrorCode code) {
  for (size_t i = 0; i < std::size(kErrorSlotCodes); ++i) {
    if (kErrorSlotCodes[i] == code) return i;
  }
  return kOtherErrorSlot;
}
static_assert(std::size(kErrorSlotCodes) + 1 == 17, "kErrorCodes must count every slot");

void ServerMetrics::ConnectionOpened() {
  connections_.fetch_add(1, std::memory_order_relaxed);
  connections_total_.fetch_add(1, std::memory_order_relaxed);
}

void ServerMetrics::ConnectionClosed() { connections_.fetch_sub(1, std::memory_order_relaxed); }

void ServerMetrics::RequestAnswered(uint16_t opcode, uint64_t nanos) {
  const size_t slot = protocol::IsKnownRequestOp(opcode) ? opcode : 0;
  requests_by_op_[slot].fetch_add(1, std::memory_order_relaxed);
  request_duration_.Record(nanos);
}

void ServerMetrics::RespCommandAnswered(uint64_t nanos, bool error) {
  resp_commands_.fetch_add(1, std::memory_order_relaxed);
  if (error) resp_errors_.fetch_add(1, std::memory_order_relaxed);
  resp_command_duration_.Record(nanos);
}

void ServerMetrics::ErrorSent(ErrorCode code) {
  errors_.fetch_add(1, std::memory_order_relaxed);
  errors_by_code_[ErrorSlot(code)].fetch_add(1, std::memory_order_relaxed);
}

void ServerMetrics::ReplyBytes(uint64_t now) {
  reply_bytes_.store(now, std::memory_order_relaxed);
  uint64_t peak = reply_bytes_peak_.load(std::memory_order_relaxed);
  while (now > peak &&
         !reply_bytes_peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

ServerMetricsSnapshot ServerMetrics::Snapshot() const {
  ServerMetricsSnapshot s;
  s.connections = connections_.load(std::memory_order_relaxed);
  s.connections_total = connections_total_.load(std::memory_order_relaxed);
  s.errors = errors_.load(std::memory_order_relaxed);
  s.busy_rejections = busy_rejections_.load(std::memory_order_relaxed);
  s.in_progress = in_progress_.load(std::memory_order_relaxed);
  s.reply_bytes = reply_bytes_.load(std::memory_order_relaxed);
  s.reply_bytes_peak = reply_bytes_peak_.load(std::memory_order_relaxed);
  s.failed_hellos = failed_hellos_.load(std::memory_order_relaxed);
  s.hello_backoff_refusals = hello_backoff_refusals_.load(std::memory_order_relaxed);
  s.unauthenticated_refusals = unauthenticated_refusals_.load(std::memory_order_relaxed);
  s.unauthenticated_displaced = unauthenticated_displaced_.load(std::memory_order_relaxed);
  s.slow_client_closes = slow_client_closes_.load(std::memory_order_relaxed);
  s.resp_commands = resp_commands_.load(std::memory_order_relaxed);
  s.resp_errors = resp_errors_.load(std::memory_order_relaxed);
  s.resp_command_duration = resp_command_duration_.Snapshot();
  for (size_t op = 1; op < kOps; ++op) {
    if (!protocol::IsKnownRequestOp(uint16_t(op))) continue;  // holes in the range (27, 28): always 0
    const uint64_t n = requests_by_op_[op].load(std::memory_order_relaxed);
    s.requests_by_op.emplace_back(protocol::OpName(static_cast<protocol::Op>(op)), n);
    s.requests += n;
  }
  const uint64_t unknown = requests_by_op_[0].load(std::memory_order_relaxed);
  s.requests_by_op.emplace_back("unknown", unknown);
  s.requests += unknown;
  for (size_t i = 0; i < std::size(kErrorSlotCodes); ++i) {
    s.errors_by_code.emplace_back(ErrorCodeLabel(kErrorSlotCodes[i]),
                                  errors_by_code_[i].load(std::memory_order_relaxed));
  }
  s.errors_by_code.emplace_back("other",
                                errors_by_code_[kOtherErrorSlot].load(std::memory_order_relaxed));
  s.request_duration = request_duration_.Snapshot();
  return s;
}

// ---------------------------------------------------------------------------
// Prometheus text format.
// ---------------------------------------------------------------------------

namespace {

class PromWriter {
 public:
  void Header(std::string_view name, std::string_view type, std::string_view help) {
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void Value(std::string_view name, uint64_t value) { out_ += fmt::format("{} {}\n", name, value); }
  void Raw(std::string_view line) { out_ += line; }
  void Counter(std::string_view name, std::string_view help, uint64_t value) {
    Header(name, "counter", help);
    Value(name, value);
  }
  void Gauge(std::string_view name, std::string_view help, uint64_t value) {
    Header(name, "gauge", help);
    Value(name, value);
  }
  void Labelled(std::string_view name, std::string_view type, std::string_view help,
                std::string_view label,
                const std::vector<std::pair<std::string, uint64_t>>& values) {
    Header(name, type, help);
    for (const auto& [l, v] : values)
      out_ += fmt::format("{}{{{}=\"{}\"}} {}\n", name, label, l, v);
  }
  // Buckets are stored per bucket; the format wants them cumulative. _count is the
  // cumulative total (not the snapshot's separate count) so that it always equals
  // the +Inf bucket, as the format requires, even when the snapshot raced a Record.
  void Histogram(std::string_view name, std::string_view help, const HistogramSnapshot& h) {
    Header(name, "histogram", help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.counts.size(); ++i) {
      cumulative += h.counts[i];
      if (i < h.upper_bounds_seconds.size()) {
        out_ +=
            fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, h.upper_bounds_seconds[i], cumulative);
      }
    }
    out_ += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, cumulative);
    out_ += fmt::format("{}_sum {}\n", name, h.sum_seconds);
    out_ += fmt::format("{}_count {}\n", name, cumulative);
  }
  // One gauge, a sample per collection (label collection="NAME"), in the order given.
  void PerCollection(std::string_view name, std::string_view help, const std::vector<CollectionInfo>& collections,
                     uint64_t (*value)(const CollectionInfo&)) {
    Header(name, "gauge", help);
    for (const CollectionInfo& c : collections) {
      out_ += fmt::format("{}{{collection=\"{}\"}} {}\n", name, LabelValue(c.spec.name), value(c));
    }
  }
  // A label value as the format wants it: backslash, double quote and line feed escaped.
  static std::string LabelValue(std::string_view v) {
    std::string out;
    for (const char c : v) {
      if (c == '\\' || c == '"') {
        out.push_back('\\');
        out.push_back(c);
      } else if (c == '\n') {
        out += "\\n";
      } else {
        out.push_back(c);
      }
    }
    return out;
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string RenderPrometheus(const EngineCounters& e, const ServerMetricsSnapshot& s,
                             const std::vector<CollectionInfo>& collections) {
  PromWriter w;
  w.Counter("strata_write_batches_total", "Write batches applied by the engine.", e.write_batches);
  w.Counter("strata_upserts_total", "Vectors upserted.", e.upserts);
  w.Counter("strata_deletes_total", "Vectors deleted.", e.deletes);
  w.Counter("strata_searches_total", "Searches run (each query of a batch counts).", e.searches);
  w.Counter("strata_gets_total", "Records looked up by id.", e.gets);
  w.Counter("strata_wal_bytes_total", "Bytes of write-ahead log written or opened by this process.",
            e.wal_bytes);
  w.Counter("strata_wal_fsyncs_total", "Write-ahead log fsyncs made by this process.",
            e.wal_fsyncs);
  w.Counter("strata_disk_reads_total",
            "Posting lists read from disk by searches of SPANN segments.", e.disk_reads);
  w.Counter("strata_disk_read_bytes_total", "Bytes read from disk by searches of SPANN segments.",
            e.disk_read_bytes);
  w.Gauge("strata_vectors", "Live vectors in all collections.", e.vectors);
  w.Gauge("strata_memory_bytes", "Resident bytes of all collections' indexes and records.",
          e.memory_bytes);
  // Per collection (labels): what the totals above add up.
  w.PerCollection("strata_collection_vectors", "Live vectors, per collection.", collections,
                  [](const CollectionInfo& c) { return uint64_t(c.num_vectors); });
  w.PerCollection("strata_collection_memory_bytes", "Resident bytes of the indexes and records, per collection.",
                  collections, [](const CollectionInfo& c) { return uint64_t(c.memory_bytes); });
  w.PerCollection("strata_collection_sealed_segments", "Segments on disk, per collection.", collections,
                  [](const CollectionInfo& c) { return uint64_t(c.sealed_segments); });
  w.PerCollection("strata_collection_last_sequence", "Log sequence of the last applied write batch, per collection.",
                  collections, [](const CollectionInfo& c) { return c.last_sequence; });
  w.Header("strata_collection_info", "gauge", "One per collection: its dimension and metric as labels.");
  for (const CollectionInfo& c : collections) {
    w.Raw(fmt::format("strata_collection_info{{collection=\"{}\",dim=\"{}\",metric=\"{}\"}} 1\n",
                      PromWriter::LabelValue(c.spec.name), c.spec.dim, MetricName(c.spec.metric)));
  }
  w.Gauge("strata_server_connections", "Client connections open now.", s.connections);
  w.Counter("strata_server_connections_total", "Client connections accepted since start.",
            s.connections_total);
  w.Gauge("strata_server_requests_in_progress",
          "Requests queued for or running on the worker pool now.", s.in_progress);
  w.Histogram("strata_search_latency_seconds", "Engine search latency.", e.search_latency);
  w.Histogram("strata_write_latency_seconds", "Engine write latency, through the durability point.",
              e.write_latency);
  w.Histogram("strata_server_request_duration_seconds",
              "Time from a request frame read to its reply handed to the writer.",
              s.request_duration);
  w.Labelled("strata_server_requests_total", "counter", "Requests answered, by operation.", "op",
             s.requests_by_op);
  w.Labelled("strata_server_errors_total", "counter", "Error frames sent, by code.", "code",
             s.errors_by_code);
  w.Counter("strata_server_busy_rejections_total",
            "Requests and connections refused because the server was at its limit.",
            s.busy_rejections);
  w.Gauge("strata_server_reply_bytes",
          "Bytes held for replies now: an upper bound per request until its reply is encoded, "
          "then the encoded reply until written.",
          s.reply_bytes);
  w.Gauge("strata_server_reply_bytes_peak", "The most strata_server_reply_bytes since start.",
          s.reply_bytes_peak);
  w.Counter("strata_server_failed_hellos_total", "Hellos with a wrong or missing token.",
            s.failed_hellos);
  w.Counter("strata_server_hello_backoff_refusals_total",
            "Connections and hellos refused because their address failed too many hellos.",
            s.hello_backoff_refusals);
  w.Counter("strata_server_unauthenticated_refusals_total",
            "Connections refused because too many from their address had not said a valid hello.",
            s.unauthenticated_refusals);
  w.Counter("strata_server_unauthenticated_displaced_total",
            "Connections without a valid hello closed to make room for a new connection.",
            s.unauthenticated_displaced);
  w.Counter("strata_server_slow_client_closes_total",
            "Connections closed because their client took its replies too slowly.",
            s.slow_client_closes);
  w.Counter("strata_resp_commands_total",
            "RESP (Redis protocol) commands that reached the engine, answered since start.",
            s.resp_commands);
  w.Counter("strata_resp_errors_total", "Of strata_resp_commands_total, those answered with an error.",
            s.resp_errors);
  w.Histogram("strata_resp_command_duration_seconds",
              "RESP commands that reached the engine: from dispatch to the reply made.",
              s.resp_command_duration);
  return w.Take();
}

// ---------------------------------------------------------------------------
// HTTP.
// ---------------------------------------------------------------------------

namespace {

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
  }
  return "Unknown";
}

HttpResponse TextResponse(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

}  // namespace

std::string SerializeHttpResponse(const HttpResponse& r) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
                                r.status, ReasonPhrase(r.status), r.content_type, r.body.size());
  for (const auto& [name, value] : r.extra_headers) out += fmt::format("{}: {}\r\n", name, value);
  out += "Connection: close\r\n\r\n";
  out += r.body;
  return out;
}

HttpResponse HandleMetricsRequest(std::string_view head,
                                  const std::function<std::string()>& render_metrics, bool ready) {
  const size_t eol = head.find('\n');
  if (eol == std::string_view::npos) return TextResponse(400, "bad request: no request line\n");
  std::string_view line = head.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // request-line = method SP request-target SP HTTP-version (exactly two single spaces).
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
      line.find(' ', sp2 + 1) != std::string_view::npos) {
    return TextResponse(400, "bad request: malformed request line\n");
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (method.empty() || target.empty() || target.front() != '/' ||
      (version != "HTTP/1.1" && version != "HTTP/1.0")) {
    return TextResponse(400, "bad request: malformed request line\n");
  }
  for (char c : method) {
    if (c < 'A' || c > 'Z') return TextResponse(400, "bad request: malformed method\n");
  }
  const std::string_view path = target.substr(0, target.find('?'));
  if (path != "/metrics" && path != "/healthz" && path != "/readyz") {
    return TextResponse(404, "not found: try GET /metrics, /healthz or /readyz\n");
  }
  if (method != "GET") {
    HttpResponse r = TextResponse(405, "method not allowed: use GET\n");
    r.extra_headers.emplace_back("Allow", "GET");
    return r;
  }
  if (path == "/healthz") return TextResponse(200, "ok\n");
  if (path == "/readyz") {
    return ready ? TextResponse(200, "ready\n") : TextResponse(503, "not ready: the server is shutting down\n");
  }
  HttpResponse r;
  r.status = 200;
  r.content_type = std::string(kPrometheusContentType);
  r.body = render_metrics();
  return r;
}

}  // namespace strata::server
