#pragma once
// The wire mapping that is not a plain copy: the engine's counters and the server's
// metrics as one stats reply, and a failed engine call as an error frame. Everything
// else crosses unchanged, because the engine and the protocol speak the same vocabulary
// (api/: CollectionSpec, CollectionInfo, SearchOptions, Record, Attributes, Explain).
//
// Free functions over values; safe to call from any thread.

#include "engine/strata.h"
#include "protocol/protocol.h"
#include "server/metrics.h"

namespace strata::server {

// The engine's counters and the server's, as one stats reply.
protocol::StatsReply ToStatsReply(const EngineCounters& engine,
                                  const ServerMetricsSnapshot& server);

// An error frame's body for a failed engine call (code from the status code, the status's message).
protocol::ErrorReply ToErrorReply(const Status& status);

}  // namespace strata::server
