#pragma once
// Internal to client/: what the connection (client.cc) and the typed calls
// (client_calls.cc) share about replies. Free functions; safe from any thread.

#include <utility>
#include <variant>

#include "core/status.h"
#include "protocol/protocol.h"

namespace strata::client::detail {

// The Status an error frame stands for (protocol::StatusFromError).
inline Status ErrorStatus(const protocol::Response& response) {
  const auto& e = std::get<protocol::ErrorReply>(response.body);
  return protocol::StatusFromError(e.code, e.message);
}

// The body of a reply of the expected kind. ReadResponse has checked the opcode, and the
// decoder chooses the body from the opcode, so a mismatch here is a protocol-layer bug.
template <typename T>
Result<T> Body(protocol::Response&& response, protocol::Op op) {
  T* body = std::get_if<T>(&response.body);
  if (body == nullptr) {
    return Error(Internal("{} reply decoded to an unexpected message", protocol::OpName(op)));
  }
  return std::move(*body);
}

}  // namespace strata::client::detail
