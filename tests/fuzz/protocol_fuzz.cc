// libFuzzer target for the wire protocol (protocol/protocol.h).
//
// An input is one frame: a 24-byte header and the payload after it. The header is first
// decoded as it came (bad magic, versions, flags and sizes reach DecodeHeader), then repaired
// (magic, version, flags, payload_size = the bytes that follow) so that every input reaches the
// payload decoders. The payload is decoded as a request and as a response, under the header's
// opcode and under its request/response twin (opcode with kResponseBit set or cleared), so that
// request seeds also exercise the response decoders and the other way round.
//
// Whenever a decode succeeds the message is encoded again; the frame must come back byte for
// byte (the decoders refuse anything the encoders would not write) -- except an explain reply,
// whose plan (JSON) is decoded into an Explain and written back in its canonical form -- and
// decoding the new frame must succeed and encode to the same bytes. A mismatch aborts: that is
// a finding.
//
// Allocation bound: the global operator new is replaced (tests/protocol/counting_new.h) to
// count what one input allocates. The decoders promise never to allocate more than a small
// multiple of the payload (counts are checked against the bytes left before anything is
// reserved); an input that makes this file allocate more than kAllocFactor x its size, plus a
// constant for error strings, aborts.
//
// Built two ways: with clang's -fsanitize=fuzzer (STRATA_FUZZ, scripts/fuzz.sh) and, with gcc,
// into protocol_fuzz_corpus_test, whose main() (corpus_driver.cc) replays the committed corpus.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <vector>

#include "protocol/protocol.h"
#include "tests/protocol/counting_new.h"

namespace {

using namespace strata::protocol;

// The largest legitimate expansion is a GetReply of absent records: 1 wire byte each, one
// std::optional<Record> (64 bytes) each in memory. Every decoder together, two decodes per
// message and the re-encodings stay well under 512 bytes per input byte.
constexpr size_t kAllocFactor = 512;
constexpr size_t kAllocSlack = 256 << 10;

size_t g_round_trips = 0;

[[noreturn]] void Finding(const char* what, uint16_t opcode) {
  std::fprintf(stderr, "protocol_fuzz: %s (opcode 0x%04x)\n", what, opcode);
  std::abort();
}

std::vector<uint8_t> Frame(const FrameHeader& h, std::span<const uint8_t> payload) {
  std::vector<uint8_t> frame(kHeaderSize);
  EncodeHeader(h, std::span<uint8_t, kHeaderSize>(frame.data(), kHeaderSize));
  frame.insert(frame.end(), payload.begin(), payload.end());
  return frame;
}

// Splits a frame produced by an encoder; it must decode.
FrameHeader HeaderOf(const std::vector<uint8_t>& frame, uint16_t opcode) {
  if (frame.size() < kHeaderSize) Finding("encoder wrote less than a header", opcode);
  auto h = DecodeHeader(std::span<const uint8_t, kHeaderSize>(frame.data(), kHeaderSize),
                        kAbsoluteMaxPayload);
  if (!h) Finding("encoded header does not decode", opcode);
  if (h->payload_size != frame.size() - kHeaderSize) Finding("payload_size is wrong", opcode);
  return *h;
}

void CheckRequest(const FrameHeader& h, std::span<const uint8_t> payload) {
  auto req = DecodeRequest(h, payload);
  if (!req) return;
  const std::vector<uint8_t> original = Frame(h, payload);
  std::vector<uint8_t> again;
  EncodeRequest(*req, h.request_id, again);
  if (again != original) Finding("request re-encodes to different bytes", h.opcode);
  const FrameHeader h2 = HeaderOf(again, h.opcode);
  auto req2 = DecodeRequest(h2, std::span(again).subspan(kHeaderSize));
  if (!req2) Finding("re-encoded request does not decode", h.opcode);
  if (req2->op != req->op || req2->body.index() != req->body.index()) {
    Finding("re-decoded request has another kind", h.opcode);
  }
  std::vector<uint8_t> third;
  EncodeRequest(*req2, h2.request_id, third);
  if (third != again) Finding("request encoding is not stable", h.opcode);
  ++g_round_trips;
}

void CheckResponse(const FrameHeader& h, std::span<const uint8_t> payload) {
  auto resp = DecodeResponse(h, payload);
  if (!resp) return;
  const std::vector<uint8_t> original = Frame(h, payload);
  std::vector<uint8_t> again;
  EncodeResponse(*resp, h.request_id, again);
  // An explain reply carries the plan as JSON that the decoder reads into an Explain (keys in
  // any order, unknown keys ignored, any spacing); the encoder writes its canonical form
  // (Explain::ToJson), so only the stability check below applies to it.
  const bool canonicalized = resp->op == Op::kExplain;
  if (!canonicalized && again != original) {
    Finding("response re-encodes to different bytes", h.opcode);
  }
  const FrameHeader h2 = HeaderOf(again, h.opcode);
  auto resp2 = DecodeResponse(h2, std::span(again).subspan(kHeaderSize));
  if (!resp2) Finding("re-encoded response does not decode", h.opcode);
  if (resp2->op != resp->op || resp2->body.index() != resp->body.index()) {
    Finding("re-decoded response has another kind", h.opcode);
  }
  std::vector<uint8_t> third;
  EncodeResponse(*resp2, h2.request_id, third);
  if (third != again) Finding("response encoding is not stable", h.opcode);
  // Error frames become a Status on the client; any code must map to one.
  if (const auto* e = std::get_if<ErrorReply>(&resp->body)) {
    if (StatusFromError(e->code, e->message).ok()) Finding("error frame maps to OK", h.opcode);
  }
  ++g_round_trips;
}

void FuzzOne(const uint8_t* data, size_t size) {
  if (size >= kHeaderSize) {
    // The raw header, as a peer would read it, under a tight and the absolute limit.
    std::span<const uint8_t, kHeaderSize> raw(data, kHeaderSize);
    (void)DecodeHeader(raw, 64);
    (void)DecodeHeader(raw, kAbsoluteMaxPayload);
  }
  // Repair the header: keep opcode and request id, make the rest valid.
  uint8_t header_bytes[kHeaderSize] = {};
  std::memcpy(header_bytes, data, size < kHeaderSize ? size : kHeaderSize);
  std::span<const uint8_t> payload;
  if (size > kHeaderSize)
    payload = std::span<const uint8_t>(data + kHeaderSize, size - kHeaderSize);
  FrameHeader h;
  std::memcpy(&h.opcode, header_bytes + 6, sizeof(h.opcode));
  std::memcpy(&h.request_id, header_bytes + 8, sizeof(h.request_id));
  h.payload_size = static_cast<uint32_t>(payload.size());
  {
    // The repaired header must pass DecodeHeader exactly as written.
    std::vector<uint8_t> enc(kHeaderSize);
    EncodeHeader(h, std::span<uint8_t, kHeaderSize>(enc.data(), kHeaderSize));
    auto back = DecodeHeader(std::span<const uint8_t, kHeaderSize>(enc.data(), kHeaderSize),
                             kAbsoluteMaxPayload);
    if (!back || back->opcode != h.opcode || back->request_id != h.request_id ||
        back->payload_size != h.payload_size) {
      Finding("a valid header does not round-trip", h.opcode);
    }
  }

  CheckRequest(h, payload);
  CheckResponse(h, payload);
  if (h.opcode != static_cast<uint16_t>(Op::kError)) {
    FrameHeader twin = h;
    twin.opcode = static_cast<uint16_t>(h.opcode ^ kResponseBit);
    CheckRequest(twin, payload);
    CheckResponse(twin, payload);
  }
}

}  // namespace

// How many decodes so far have survived the re-encoding checks (the corpus driver uses it to
// tell a corpus of valid frames from one that no longer decodes).
extern "C" size_t StrataFuzzRoundTrips() { return g_round_trips; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  strata::protocol::testing::CountAllocations count(kAllocFactor * size + kAllocSlack);
  FuzzOne(data, size);
  return 0;
}
