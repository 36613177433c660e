#pragma once
// Conversions between the wire's types (protocol/protocol.h) and the engine's
// (engine/strata.h). The protocol keeps its own copies of the few types that
// cross the wire so that a client never links the engine; this file is the one
// place where the two meet.
//
// Free functions over values; safe to call from any thread.

#include "engine/strata.h"
#include "protocol/protocol.h"
#include "server/metrics.h"

namespace strata::server {

Metric ToEngine(protocol::WireMetric metric);
protocol::WireMetric ToWire(Metric metric);

CollectionSpec ToEngine(const protocol::CollectionSpec& spec);
protocol::CollectionSpec ToWire(const CollectionSpec& spec);
protocol::CollectionInfo ToWire(const CollectionInfo& info);

SearchOptions ToEngine(const protocol::SearchOptions& options);

engine::Attributes ToEngine(const protocol::Attributes& attributes);
protocol::Attributes ToWire(const engine::Attributes& attributes);

protocol::Record ToWire(const Record& record);

protocol::HistogramWire ToWire(const HistogramSnapshot& histogram);
// The engine's counters and the server's, as one stats reply.
protocol::StatsReply ToStatsReply(const EngineCounters& engine,
                                  const ServerMetricsSnapshot& server);

// An error frame's body for a failed engine call (code from the status code, the status's message).
protocol::ErrorReply ToErrorReply(const Status& status);

}  // namespace strata::server
