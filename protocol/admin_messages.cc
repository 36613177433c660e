// Admin messages: the stats reply (the engine's counters and the server's, with two
// latency histograms), flush and compact (a collection name; the empty reply), and
// snapshot (a collection and a snapshot name; the path written and what it holds).

#include <limits>
#include <string>
#include <string_view>
#include <utility>

#include "protocol/messages.h"

namespace strata::protocol::wire {

namespace {

void WriteHistogram(Writer& w, const HistogramSnapshot& h) {
  w.Count(h.upper_bounds_seconds.size());
  for (double b : h.upper_bounds_seconds) w.F64(b);
  w.Count(h.counts.size());
  for (uint64_t c : h.counts) w.U64(c);
  w.U64(h.count);
  w.F64(h.sum_seconds);
}

Result<HistogramSnapshot> ReadHistogram(Reader& r) {
  HistogramSnapshot h;
  // Bounded by the payload only: the server's histograms have a few dozen buckets.
  STRATA_ASSIGN_OR_RETURN(uint32_t nb,
                          r.Count("bound count", std::numeric_limits<uint32_t>::max(), "", 8));
  h.upper_bounds_seconds.reserve(nb);
  for (uint32_t i = 0; i < nb; ++i) {
    STRATA_ASSIGN_OR_RETURN(double b, r.F64("upper bound"));
    h.upper_bounds_seconds.push_back(b);
  }
  STRATA_ASSIGN_OR_RETURN(uint32_t nc,
                          r.Count("bucket count", std::numeric_limits<uint32_t>::max(), "", 8));
  h.counts.reserve(nc);
  for (uint32_t i = 0; i < nc; ++i) {
    STRATA_ASSIGN_OR_RETURN(uint64_t c, r.U64("bucket"));
    h.counts.push_back(c);
  }
  STRATA_ASSIGN_OR_RETURN(h.count, r.U64("count"));
  STRATA_ASSIGN_OR_RETURN(h.sum_seconds, r.F64("sum_seconds"));
  return h;
}

}  // namespace

void WriteStatsReply(Writer& w, const StatsReply& m) {
  for (uint64_t v :
       {m.write_batches, m.upserts, m.deletes, m.searches, m.gets, m.wal_bytes, m.wal_fsyncs,
        m.vectors, m.memory_bytes, m.disk_reads, m.disk_read_bytes}) {
    w.U64(v);
  }
  WriteHistogram(w, m.search_latency);
  WriteHistogram(w, m.write_latency);
  w.U64(m.connections);
  w.U64(m.requests);
  w.U64(m.errors);
  w.U64(m.busy_rejections);
}

Result<StatsReply> ReadStatsReply(Reader& r) {
  StatsReply m;
  const std::pair<uint64_t*, std::string_view> counters[] = {
      {&m.write_batches, "write_batches"},
      {&m.upserts, "upserts"},
      {&m.deletes, "deletes"},
      {&m.searches, "searches"},
      {&m.gets, "gets"},
      {&m.wal_bytes, "wal_bytes"},
      {&m.wal_fsyncs, "wal_fsyncs"},
      {&m.vectors, "vectors"},
      {&m.memory_bytes, "memory_bytes"},
      {&m.disk_reads, "disk_reads"},
      {&m.disk_read_bytes, "disk_read_bytes"}};
  for (const auto& [field, name] : counters) {
    STRATA_ASSIGN_OR_RETURN(*field, r.U64(name));
  }
  {
    auto h = ReadHistogram(r);
    if (!h) return Error(h.error().WithContext("search_latency"));
    m.search_latency = std::move(*h);
  }
  {
    auto h = ReadHistogram(r);
    if (!h) return Error(h.error().WithContext("write_latency"));
    m.write_latency = std::move(*h);
  }
  STRATA_ASSIGN_OR_RETURN(m.connections, r.U64("connections"));
  STRATA_ASSIGN_OR_RETURN(m.requests, r.U64("requests"));
  STRATA_ASSIGN_OR_RETURN(m.errors, r.U64("errors"));
  STRATA_ASSIGN_OR_RETURN(m.busy_rejections, r.U64("busy_rejections"));
  return m;
}

void WriteFlush(Writer& w, const FlushRequest& m) { w.String(m.collection); }

Result<FlushRequest> ReadFlush(Reader& r, const DecodeLimits& limits) {
  STRATA_ASSIGN_OR_RETURN(std::string name, r.String("collection", limits.max_string));
  return FlushRequest{std::move(name)};
}

void WriteCompact(Writer& w, const CompactRequest& m) { w.String(m.collection); }

Result<CompactRequest> ReadCompact(Reader& r, const DecodeLimits& limits) {
  STRATA_ASSIGN_OR_RETURN(std::string name, r.String("collection", limits.max_string));
  return CompactRequest{std::move(name)};
}

void WriteSnapshot(Writer& w, const SnapshotRequest& m) {
  w.String(m.collection);
  w.String(m.name);
}

Result<SnapshotRequest> ReadSnapshot(Reader& r, const DecodeLimits& limits) {
  SnapshotRequest m;
  STRATA_ASSIGN_OR_RETURN(m.collection, r.String("collection", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.name, r.String("name", limits.max_string));
  return m;
}

void WriteSnapshotReply(Writer& w, const SnapshotReply& m) {
  w.String(m.path);
  for (uint64_t v : {m.sequence, m.segments, m.files_linked, m.files_copied, m.bytes_copied}) w.U64(v);
}

// The path is the server's text, bounded by the payload only (as error messages are).
Result<SnapshotReply> ReadSnapshotReply(Reader& r) {
  SnapshotReply m;
  STRATA_ASSIGN_OR_RETURN(m.path, r.String("path", std::numeric_limits<uint32_t>::max()));
  const std::pair<uint64_t*, std::string_view> fields[] = {{&m.sequence, "sequence"},
                                                           {&m.segments, "segments"},
                                                           {&m.files_linked, "files_linked"},
                                                           {&m.files_copied, "files_copied"},
                                                           {&m.bytes_copied, "bytes_copied"}};
  for (const auto& [field, name] : fields) {
    STRATA_ASSIGN_OR_RETURN(*field, r.U64(name));
  }
  return m;
}

}  // namespace strata::protocol::wire
