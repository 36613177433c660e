// Session messages: hello (client name and token; the server's version and limits) and
// the error reply any request may get.

#include <limits>

#include "protocol/messages.h"

namespace strata::protocol::wire {

void WriteHello(Writer& w, const HelloRequest& m) {
  w.String(m.client_name);
  w.String(m.token);
}

Result<HelloRequest> ReadHello(Reader& r, const DecodeLimits& limits) {
  HelloRequest m;
  STRATA_ASSIGN_OR_RETURN(m.client_name, r.String("client_name", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.token, r.String("token", limits.max_string));
  return m;
}

void WriteHelloReply(Writer& w, const HelloReply& m) {
  w.U16(m.protocol_version);
  w.String(m.server_version);
  w.U32(m.max_payload);
  w.U32(m.max_batch);
  w.U32(m.max_k);
  w.Bool(m.auth_required);
}

Result<HelloReply> ReadHelloReply(Reader& r) {
  // The version is for humans: bounded by the payload only.
  constexpr uint32_t kAnyLength = std::numeric_limits<uint32_t>::max();
  HelloReply m;
  STRATA_ASSIGN_OR_RETURN(m.protocol_version, r.U16("protocol_version"));
  STRATA_ASSIGN_OR_RETURN(m.server_version, r.String("server_version", kAnyLength));
  STRATA_ASSIGN_OR_RETURN(m.max_payload, r.U32("max_payload"));
  STRATA_ASSIGN_OR_RETURN(m.max_batch, r.U32("max_batch"));
  STRATA_ASSIGN_OR_RETURN(m.max_k, r.U32("max_k"));
  STRATA_ASSIGN_OR_RETURN(m.auth_required, r.Bool("auth_required"));
  return m;
}

void WriteErrorReply(Writer& w, const ErrorReply& m) {
  w.U16(static_cast<uint16_t>(m.code));
  w.String(m.message);
}

Result<ErrorReply> ReadErrorReply(Reader& r) {
  ErrorReply m;
  // Any code is kept as sent, so that a newer server's codes survive a round trip;
  // StatusFromError maps the ones this build does not know to Internal.
  STRATA_ASSIGN_OR_RETURN(uint16_t code, r.U16("code"));
  m.code = static_cast<ErrorCode>(code);
  STRATA_ASSIGN_OR_RETURN(m.message, r.String("message", std::numeric_limits<uint32_t>::max()));
  return m;
}

}  // namespace strata::protocol::wire
