#include "server/convert.h"

#include <type_traits>

namespace strata::server {

Metric ToEngine(protocol::WireMetric metric) {
  switch (metric) {
    case protocol::WireMetric::kL2:
      return Metric::kL2;
    case protocol::WireMetric::kInnerProduct:
      return Metric::kInnerProduct;
    case protocol::WireMetric::kCosine:
      return Metric::kCosine;
  }
  // The decoder refuses any other byte; an out-of-range value reaching here is a bug.
  STRATA_CHECK(false && "unknown WireMetric");
  return Metric::kL2;
}

protocol::WireMetric ToWire(Metric metric) {
  switch (metric) {
    case Metric::kL2:
      return protocol::WireMetric::kL2;
    case Metric::kInnerProduct:
      return protocol::WireMetric::kInnerProduct;
    case Metric::kCosine:
      return protocol::WireMetric::kCosine;
  }
  STRATA_CHECK(false && "unknown Metric");
  return protocol::WireMetric::kL2;
}

CollectionSpec ToEngine(const protocol::CollectionSpec& spec) {
  CollectionSpec out;
  out.name = spec.name;
  out.dim = spec.dim;
  out.metric = ToEngine(spec.metric);
  out.hnsw_M = spec.hnsw_M;
  out.hnsw_ef_construction = spec.hnsw_ef_construction;
  out.seal_threshold = size_t(spec.seal_threshold);
  out.memory_budget_bytes = spec.memory_budget_bytes;
  return out;
}

protocol::CollectionSpec ToWire(const CollectionSpec& spec) {
  protocol::CollectionSpec out;
  out.name = spec.name;
  out.dim = uint32_t(spec.dim);
  out.metric = ToWire(spec.metric);
  out.hnsw_M = spec.hnsw_M;
  out.hnsw_ef_construction = spec.hnsw_ef_construction;
  out.seal_threshold = spec.seal_threshold;
  out.memory_budget_bytes = spec.memory_budget_bytes;
  return out;
}

protocol::CollectionInfo ToWire(const CollectionInfo& info) {
  protocol::CollectionInfo out;
  out.spec = ToWire(info.spec);
  out.id = info.id;
  out.num_vectors = info.num_vectors;
  out.last_sequence = info.last_sequence;
  out.memory_bytes = info.memory_bytes;
  out.sealed_segments = info.sealed_segments;
  return out;
}

SearchOptions ToEngine(const protocol::SearchOptions& options) {
  SearchOptions out;
  out.k = options.k;
  out.recall = options.recall;
  out.ef = options.ef;
  out.max_lists = options.max_lists;
  out.filter = options.filter;
  switch (options.strategy) {
    case protocol::WireStrategy::kAuto:
      out.strategy = SearchStrategy::kAuto;
      break;
    case protocol::WireStrategy::kIndex:
      out.strategy = SearchStrategy::kIndex;
      break;
    case protocol::WireStrategy::kScan:
      out.strategy = SearchStrategy::kScan;
      break;
    case protocol::WireStrategy::kPostFilter:
      out.strategy = SearchStrategy::kPostFilter;
      break;
  }
  return out;
}

namespace {

// The two attribute variants list the same alternatives in the same order (wire types 0..3).
template <typename To, typename From>
To ConvertValue(const From& value) {
  return std::visit([](const auto& v) -> To { return To(v); }, value);
}

}  // namespace

engine::Attributes ToEngine(const protocol::Attributes& attributes) {
  engine::Attributes out;
  out.reserve(attributes.size());
  for (const protocol::Attribute& a : attributes) {
    out.push_back({a.name, ConvertValue<engine::AttributeValue>(a.value)});
  }
  return out;
}

protocol::Attributes ToWire(const engine::Attributes& attributes) {
  protocol::Attributes out;
  out.reserve(attributes.size());
  for (const engine::Attribute& a : attributes) {
    out.push_back({a.name, ConvertValue<protocol::AttributeValue>(a.value)});
  }
  return out;
}

protocol::Record ToWire(const Record& record) {
  return {record.id, record.vector, ToWire(record.attributes)};
}

protocol::HistogramWire ToWire(const HistogramSnapshot& h) {
  return {h.upper_bounds_seconds, h.counts, h.count, h.sum_seconds};
}

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
  r.search_latency = ToWire(e.search_latency);
  r.write_latency = ToWire(e.write_latency);
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
