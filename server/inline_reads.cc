// Small reads answered on the I/O thread that read them (ServerConfig::inline_reads).
//
// A search handed to a worker meets three thread wake-ups -- the I/O thread that reads
// it, the worker that runs it, the I/O thread again to write the reply -- and each is a
// wait for a core when writes and maintenance hold both (docs/RELIABILITY.md, R1: 3-5 ms
// each on this machine, one scheduler slice). Run where it was read, it meets one.
#include <exception>
#include <string>
#include <variant>
#include <vector>

#include <fmt/core.h>

#include "protocol/protocol.h"
#include "server/server_impl.h"

namespace strata::server {

bool Server::Impl::RunsInline(const protocol::Request& request) const {
  if (!config_.inline_reads || handler_.has_hook()) return false;
  switch (request.op) {
    case Op::kSearch:
    case Op::kSearchKeyed:
    case Op::kSearchWith: {
      const auto* s = std::get_if<protocol::SearchRequest>(&request.body);
      return s != nullptr && s->count == 1 && s->options.k <= kInlineMaxK;
    }
    case Op::kGet: {
      const auto* g = std::get_if<protocol::GetRequest>(&request.body);
      return g != nullptr && g->ids.size() <= kInlineMaxRecords;
    }
    case Op::kGetKeyed: {
      const auto* g = std::get_if<protocol::KeysRequest>(&request.body);
      return g != nullptr && g->keys.size() <= kInlineMaxRecords;
    }
    case Op::kDescribeCollection:
    case Op::kDescribeCollectionWith:
    case Op::kListCollections:
      return true;
    default:
      return false;
  }
}

std::vector<uint8_t> Server::Impl::ExecuteInline(const protocol::Request& request,
                                                 uint64_t request_id, uint64_t payload_bytes,
                                                 Clock::time_point start) {
  const uint16_t opcode = static_cast<uint16_t>(request.op);
  std::vector<uint8_t> frame;
  try {
    frame = EncodeReply(handler_.Execute(request), request_id, opcode, start);
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
