#include "server/convert.h"

namespace strata::server {

protocol::StatsReply ToStatsReply(const EngineCounters& e, const ServerMetricsSnapshot& s) {
  protocol::StatsReply r;
  r.write_batches = e.write_batches;
  r.upserts = e.upserts;
  r.deletes = e.deletes;
  r.searches = e.searches;
  r.gets = e.gets;
  r.wal_bytes = e.wal_bytes;
  r.wal_fsyncs = e.wal_fsyncs;
  r.vectors = e.vectors;
  r.memory_bytes = e.memory_bytes;
  r.disk_reads = e.disk_reads;
  r.disk_read_bytes = e.disk_read_bytes;
  r.search_latency = e.search_latency;
  r.write_latency = e.write_latency;
  r.connections = s.connections;
  r.requests = s.requests;
  r.errors = s.errors;
  r.busy_rejections = s.busy_rejections;
  return r;
}

protocol::ErrorReply ToErrorReply(const Status& status) {
  return {protocol::ErrorCodeFromStatus(status.code()), status.message()};
}

}  // namespace strata::server
