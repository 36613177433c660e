// Writes the seed corpus of the protocol fuzzer (tests/fuzz/corpus/protocol/):
//
//   protocol_make_corpus DIR
//
// valid_req_<op> and valid_resp_<op>: one frame per request and response kind, the same
// messages protocol_test proves valid (tests/protocol/sample_messages.h). malformed_<what>: a
// few frames each decoder must refuse (bad header fields, a huge count in a short payload,
// truncation, trailing bytes, bad bool and enum bytes, search count rules, an unknown opcode).
// Run by hand when the format changes; the output is committed.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "protocol/protocol.h"
#include "tests/protocol/sample_messages.h"

namespace {

using namespace strata::protocol;
namespace fs = std::filesystem;

bool Write(const fs::path& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    std::fprintf(stderr, "%s: cannot write\n", (dir / name).c_str());
    return false;
  }
  return true;
}

// A frame with a correct header around an arbitrary payload.
std::vector<uint8_t> RawFrame(uint16_t opcode, const std::vector<uint8_t>& payload) {
  FrameHeader h;
  h.opcode = opcode;
  h.request_id = 77;
  h.payload_size = static_cast<uint32_t>(payload.size());
  std::vector<uint8_t> frame(kHeaderSize);
  EncodeHeader(h, std::span<uint8_t, kHeaderSize>(frame.data(), kHeaderSize));
  frame.insert(frame.end(), payload.begin(), payload.end());
  return frame;
}

void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  uint8_t b[4];
  std::memcpy(b, &v, 4);
  out.insert(out.end(), b, b + 4);
}

std::vector<uint8_t> PayloadOf(const std::vector<uint8_t>& frame) {
  return std::vector<uint8_t>(frame.begin() + kHeaderSize, frame.end());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const fs::path dir = argv[1];
  std::error_code ec;
  fs::create_directories(dir, ec);
  bool ok = true;
  uint64_t id = 1;
  std::vector<uint8_t> search_frame, ping_frame, create_frame, hello_reply_frame;
  for (const Request& req : testing::SampleRequests()) {
    std::vector<uint8_t> frame;
    EncodeRequest(req, id++, frame);
    ok &= Write(dir, "valid_req_" + std::string(OpName(req.op)), frame);
    if (req.op == Op::kSearch) search_frame = frame;
    if (req.op == Op::kPing) ping_frame = frame;
    if (req.op == Op::kCreateCollection) create_frame = frame;
  }
  for (const Response& resp : testing::SampleResponses()) {
    std::vector<uint8_t> frame;
    EncodeResponse(resp, id++, frame);
    ok &= Write(dir, "valid_resp_" + std::string(OpName(resp.op)), frame);
    if (resp.op == Op::kHello) hello_reply_frame = frame;
  }

  {  // Header faults: the fuzzer repairs them for the payload decoders, DecodeHeader sees them.
    std::vector<uint8_t> f = ping_frame;
    f[0] = 'X';
    ok &= Write(dir, "malformed_bad_magic", f);
    f = ping_frame;
    f[4] = 2;
    ok &= Write(dir, "malformed_bad_version", f);
    f = ping_frame;
    f[20] = 1;
    ok &= Write(dir, "malformed_bad_flags", f);
    f = ping_frame;
    f[19] = 0x7f;  // payload_size far over any limit
    ok &= Write(dir, "malformed_payload_over_limit", f);
  }
  {  // upsert: 2^32 - 1 records of dim 4 in a few bytes.
    std::vector<uint8_t> p;
    PutU32(p, 1);
    p.push_back('d');
    PutU32(p, 4);
    PutU32(p, 0xffffffffu);
    p.insert(p.end(), 6, 0);
    ok &= Write(dir, "malformed_upsert_huge_count", RawFrame(uint16_t(Op::kUpsert), p));
  }
  {  // get reply: 2^32 - 1 records.
    std::vector<uint8_t> p;
    PutU32(p, 0xffffffffu);
    p.insert(p.end(), 6, 1);
    ok &= Write(dir, "malformed_get_reply_huge_count",
                RawFrame(uint16_t(Op::kGet) | kResponseBit, p));
  }
  {  // search cut short, and with a trailing byte.
    std::vector<uint8_t> p = PayloadOf(search_frame);
    std::vector<uint8_t> cut(p.begin(), p.end() - 3);
    ok &= Write(dir, "malformed_search_truncated", RawFrame(uint16_t(Op::kSearch), cut));
    p.push_back(0);
    ok &= Write(dir, "malformed_search_trailing", RawFrame(uint16_t(Op::kSearch), p));
    // The same one-query payload sent as a batch of 0 queries: count byte zeroed. Count sits
    // just before the 16 query bytes.
    std::vector<uint8_t> zero = PayloadOf(search_frame);
    std::memset(zero.data() + zero.size() - 16 - 4, 0, 4);
    zero.resize(zero.size() - 16);
    ok &= Write(dir, "malformed_search_batch_zero", RawFrame(uint16_t(Op::kSearchBatch), zero));
  }
  {  // ping with a payload byte.
    ok &= Write(dir, "malformed_ping_trailing", RawFrame(uint16_t(Op::kPing), {0}));
  }
  {  // hello reply whose auth_required byte is 2.
    std::vector<uint8_t> p = PayloadOf(hello_reply_frame);
    p.back() = 2;
    ok &= Write(dir, "malformed_hello_reply_bad_bool",
                RawFrame(uint16_t(Op::kHello) | kResponseBit, p));
  }
  {  // create with metric 3. The metric byte follows name (4 + 4 bytes "docs") and dim.
    std::vector<uint8_t> p = PayloadOf(create_frame);
    p[4 + 4 + 4] = 3;
    ok &= Write(dir, "malformed_create_bad_metric", RawFrame(uint16_t(Op::kCreateCollection), p));
  }
  ok &= Write(dir, "malformed_unknown_opcode", RawFrame(0x42, {1, 2, 3}));
  return ok ? 0 : 1;
}
