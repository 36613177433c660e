// Small reads answered on the I/O thread that read them (ServerConfig::inline_reads).
//
// A search handed to a worker meets three thread wake-ups -- the I/O thread that reads
// it, the worker that runs it, the I/O thread again to write the reply -- and each is a
// wait for a core when writes and maintenance hold both (docs/RELIABILITY.md, R1: 3-5 ms
// each on this machine, one scheduler slice). Run where it was read, it meets one.
#include <exception>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <fmt/core.h>

#include "protocol/protocol.h"
#include "server/server_impl.h"

namespace strata::server {

bool Server::Impl::RunsInline(const protocol::Request& request) {
  if (!config_.inline_reads) return false;
  switch (request.op) {
    case Op::kSearch:
    case Op::kSearchBatch:  // of one query: what a cluster's router sends each shard
    case Op::kSearchKeyed:
    case Op::kSearchWith: {
      // Only the planner's own choice at a recall target: an explicit strategy (an exact
      // scan), ef or max_lists, a filter (whose plan may scan) or recall 1 can cost far more
      // than a worker's hand-off saves, and would hold an I/O thread meanwhile.
      const auto* s = std::get_if<protocol::SearchRequest>(&request.body);
      return s != nullptr && s->count == 1 && s->options.k <= kInlineMaxK &&
             s->options.strategy == SearchStrategy::kAuto && s->options.ef == 0 &&
             s->options.max_lists == 0 && s->options.filter.empty() && s->options.recall < 1.0 &&
             !handler_.MayReadFromDisk(s->collection);
    }
    case Op::kGet: {
      const auto* g = std::get_if<protocol::GetRequest>(&request.body);
      return g != nullptr && g->ids.size() <= kInlineMaxRecords && !handler_.MayReadFromDisk(g->collection);
    }
    case Op::kGetKeyed: {
      const auto* g = std::get_if<protocol::KeysRequest>(&request.body);
      return g != nullptr && g->keys.size() <= kInlineMaxRecords && !handler_.MayReadFromDisk(g->collection);
    }
    default:
      return false;
  }
}

std::optional<std::vector<uint8_t>> Server::Impl::ExecuteInline(const protocol::Request& request,
                                                                uint64_t request_id, uint64_t payload_bytes,
                                                                Clock::time_point start) {
  const uint16_t opcode = static_cast<uint16_t>(request.op);
  std::vector<uint8_t> frame;
  try {
    std::optional<protocol::Response> response = handler_.ExecuteUnlessHooked(request);
    if (!response) return std::nullopt;  // a cluster's router may take it: the workers run it
    frame = EncodeReply(std::move(*response), request_id, opcode, start);
  } catch (const std::exception& e) {
    // Out of memory while running or encoding, typically; as on the workers (Submit).
    ServerLog().error("{}: cannot run the request or encode the reply: {}",
                      protocol::OpName(request.op), e.what());
    frame.clear();
    try {
      frame = ErrorFrame(request_id, opcode, ErrorCode::kInternal,
                         fmt::format("cannot run the request or encode the reply: {}", e.what()),
                         start);
    } catch (const std::exception&) {
      frame.clear();
    }
  }
  Release(payload_bytes, request.op);
  if (config_.slow_request_ms > 0) {
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (ms >= config_.slow_request_ms) {
      ServerLog().warn("slow request: {}: {:.2f} ms, run on the I/O thread that read it",
                       protocol::OpName(request.op), ms);
    }
  }
  return frame;
}

}  // namespace strata::server
