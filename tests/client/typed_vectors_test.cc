// Vectors as float16, int8 and uint8 (issue 18): WriteBatch::UpsertRow through the engine,
// upsert_typed and search_typed through a live server with the client library, and
// strata-cli sending an .npy of each type as it is.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/element.h"
#include "storage/dataset_io.h"
#include "tests/client/cli_util.h"
#include "tests/client/fake_server.h"
#include "tests/client/integration_util.h"

namespace strata::client {
namespace {

using testing::CliRun;
using testing::CliTest;
using testing::ServerFixture;
using Json = nlohmann::json;

constexpr uint32_t kDim = 8;

// Row i of a test set in element type `t`: values exact in every type (small integers,
// non-negative for uint8), as little-endian bytes.
std::vector<uint8_t> Rows(ElementType t, size_t rows) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i < rows; ++i) {
    for (uint32_t j = 0; j < kDim; ++j) {
      const int v = int((i * 7 + j * 3) % 50) - (t == ElementType::kUint8 ? 0 : 20);
      if (t == ElementType::kFloat16) {
        // Small integers: exponent and mantissa of a half by hand (exact).
        const uint16_t h = [&] {
          if (v == 0) return uint16_t(0);
          const uint32_t a = uint32_t(std::abs(v));
          int e = 31 - __builtin_clz(a);
          const uint16_t mant = uint16_t((a << (10 - e)) & 0x3ff);
          return uint16_t((v < 0 ? 0x8000 : 0) | ((e + 15) << 10) | mant);
        }();
        out.push_back(uint8_t(h & 0xff));
        out.push_back(uint8_t(h >> 8));
      } else {
        out.push_back(uint8_t(int8_t(v)));
      }
    }
  }
  return out;
}

std::vector<float> Widened(ElementType t, const std::vector<uint8_t>& rows, size_t i) {
  std::vector<float> v(kDim);
  WidenRow(t, rows.data() + i * kDim * ElementSize(t), kDim, v.data());
  return v;
}

constexpr ElementType kNarrow[] = {ElementType::kFloat16, ElementType::kInt8, ElementType::kUint8};

TEST(EngineTyped, UpsertRowWidensEachRowAndValidationNamesTheRecord) {
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("strata_typed_engine_{}", ::getpid());
  std::filesystem::remove_all(dir);
  {
    auto engine = Engine::Open(dir, {.durability = Durability::kNone, .background_compaction = false});
    ASSERT_TRUE(engine.has_value()) << engine.error().ToString();
    for (ElementType t : kNarrow) {
      SCOPED_TRACE(std::string(ElementTypeName(t)));
      const std::string name(ElementTypeName(t));
      ASSERT_TRUE((*engine)->CreateCollection({.name = name, .dim = kDim}).ok());
      const std::vector<uint8_t> rows = Rows(t, 20);
      WriteBatch batch;
      for (size_t i = 0; i < 20; ++i) {
        batch.UpsertRow(i, t, rows.data() + i * kDim * ElementSize(t), kDim, {{"row", int64_t(i)}});
      }
      batch.UpsertRowByKey("k", t, rows.data(), kDim);
      ASSERT_TRUE((*engine)->Write(name, batch).ok());
      for (size_t i : {0, 7, 19}) {
        auto rec = (*engine)->Get(name, i);
        ASSERT_TRUE(rec.has_value()) << rec.error().ToString();
        EXPECT_EQ(rec->vector, Widened(t, rows, i));
      }
      EXPECT_EQ((*engine)->GetByKey(name, "k")->vector, Widened(t, rows, 0));
      auto hits = (*engine)->Search(name, Widened(t, rows, 7), {.k = 1});
      ASSERT_TRUE(hits.has_value());
      EXPECT_EQ(hits->at(0).id, 7u);
      // A row of the wrong dimension is refused whole, naming the dimensions.
      WriteBatch wrong;
      wrong.UpsertRow(99, t, rows.data(), kDim - 1);
      Status s = (*engine)->Write(name, wrong);
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
      EXPECT_NE(s.message().find(std::to_string(kDim - 1)), std::string::npos) << s.ToString();
      EXPECT_FALSE((*engine)->Get(name, 99).has_value());
    }
    // A float16 infinity widens to infinity, which the engine refuses.
    const uint16_t inf[kDim] = {0x3C00, 0x7C00, 0, 0, 0, 0, 0, 0};
    WriteBatch bad;
    bad.UpsertRow(5, ElementType::kFloat16, inf, kDim);
    Status s = (*engine)->Write("float16", bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  }
  std::filesystem::remove_all(dir);
}

// The log keeps a typed row in its own type (record type 3): a quarter of float32's bytes for
// uint8, and after a reopen (replay) every record is what was written, keys and ids included.
TEST(EngineTyped, TheLogKeepsRowsInTheirOwnTypeAndReplaysThem) {
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / fmt::format("strata_typed_log_{}", ::getpid());
  fs::remove_all(dir);
  constexpr size_t kRows = 300;
  // The bytes of collection `name`'s log files (collections/<id>/wal, docs/formats/engine.md).
  std::map<std::string, uint64_t> id_of;
  auto log_bytes = [&](const std::string& name) {
    uintmax_t total = 0;
    for (const auto& e : fs::directory_iterator(dir / "collections" / std::to_string(id_of[name]) / "wal")) {
      if (e.path().extension() == ".wal") total += e.file_size();
    }
    return total;
  };
  std::map<std::string, std::vector<Record>> written;
  {
    auto engine = Engine::Open(dir, {.background_compaction = false});
    ASSERT_TRUE(engine.has_value()) << engine.error().ToString();
    for (ElementType t : {ElementType::kFloat32, ElementType::kFloat16, ElementType::kInt8, ElementType::kUint8}) {
      const std::string name = "c_" + std::string(ElementTypeName(t));
      ASSERT_TRUE((*engine)->CreateCollection({.name = name, .dim = kDim}).ok());
      const std::vector<uint8_t> rows = Rows(t == ElementType::kFloat32 ? ElementType::kUint8 : t, kRows);
      const ElementType sent = t == ElementType::kFloat32 ? ElementType::kUint8 : t;
      WriteBatch batch;
      for (size_t i = 0; i < kRows; ++i) {
        const uint8_t* row = rows.data() + i * kDim * ElementSize(sent);
        if (t == ElementType::kFloat32) {
          batch.Upsert(i, Widened(sent, rows, i), {{"row", int64_t(i)}});  // the same values as float32
        } else if (i % 3 == 0) {
          batch.UpsertRowByKey("k" + std::to_string(i), t, row, kDim, {{"row", int64_t(i)}});
        } else {
          batch.UpsertRow(i, t, row, kDim, {{"row", int64_t(i)}});
        }
      }
      batch.Delete(1);
      ASSERT_TRUE((*engine)->Write(name, batch).ok());
      id_of[name] = (*engine)->DescribeCollection(name)->id;
      for (size_t i = 0; i < kRows; ++i) {
        auto rec = (t != ElementType::kFloat32 && i % 3 == 0) ? (*engine)->GetByKey(name, "k" + std::to_string(i))
                                                              : (*engine)->Get(name, i);
        if (i == 1) continue;
        ASSERT_TRUE(rec.has_value()) << name << " row " << i << ": " << rec.error().ToString();
        written[name].push_back(*rec);
      }
    }
  }
  const uintmax_t f32 = log_bytes("c_float32"), u8 = log_bytes("c_uint8"), f16 = log_bytes("c_float16");
  // Per value uint8 saves 3 bytes and float16 2; per row a type 3 record adds a u32 key length,
  // an element byte, and for a third of the rows a key of up to 4 bytes.
  EXPECT_GT(f32, 0u);
  EXPECT_GE(f32 - std::min(f32, u8), kRows * (kDim * 3 - 9)) << "uint8 rows " << u8 << " bytes, float32 " << f32;
  EXPECT_GE(f32 - std::min(f32, f16), kRows * (kDim * 2 - 9)) << "float16 rows " << f16 << " bytes, float32 " << f32;
  auto engine = Engine::Open(dir, {.background_compaction = false});
  ASSERT_TRUE(engine.has_value()) << engine.error().ToString();
  for (const auto& [name, records] : written) {
    for (const Record& want : records) {
      auto got = want.key.empty() ? (*engine)->Get(name, want.id) : (*engine)->GetByKey(name, want.key);
      ASSERT_TRUE(got.has_value()) << name << " " << want.id << ": " << got.error().ToString();
      EXPECT_EQ(*got, want) << name << " id " << want.id;
    }
    EXPECT_FALSE((*engine)->Get(name, 1).has_value()) << name;
  }
  engine->reset();
  fs::remove_all(dir);
}

class TypedServerTest : public ServerFixture {};

TEST_F(TypedServerTest, UpsertAndSearchEachElementType) {
  auto c = Connect();
  ASSERT_TRUE(c);
  for (ElementType t : kNarrow) {
    SCOPED_TRACE(std::string(ElementTypeName(t)));
    const std::string name = fmt::format("t_{}", ElementTypeName(t));
    ASSERT_TRUE(c->CreateCollection({.name = name, .dim = kDim}).ok());
    constexpr size_t kRows = 50;
    const std::vector<uint8_t> rows = Rows(t, kRows);
    std::vector<Record> records(kRows);
    for (size_t i = 0; i < kRows; ++i) {
      records[i].id = 100 + i;
      records[i].attributes = {{"i", int64_t(i)}};
    }
    auto applied = c->UpsertTyped(name, kDim, t, rows, records);
    ASSERT_TRUE(applied.has_value()) << applied.error().ToString();
    EXPECT_EQ(*applied, kRows);
    auto got = c->Get(name, std::vector<VectorId>{100, 149});
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ((*got)[0]->vector, Widened(t, rows, 0));
    EXPECT_EQ((*got)[1]->vector, Widened(t, rows, 49));
    EXPECT_EQ((*got)[1]->attributes, (Attributes{{"i", int64_t(49)}}));
    // Queries in the same type: each row finds itself first.
    SearchOptions options{.k = 3};
    options.with_attributes = true;
    auto hits = c->SearchTyped(name, t, std::span<const uint8_t>(rows.data(), 4 * kDim * ElementSize(t)), kDim, 4,
                               options);
    ASSERT_TRUE(hits.has_value()) << hits.error().ToString();
    ASSERT_EQ(hits->results.size(), 4u);
    for (size_t q = 0; q < 4; ++q) {
      EXPECT_EQ(hits->results[q][0].id, 100 + q);
      EXPECT_EQ(hits->results[q][0].distance, 0.f);
      EXPECT_EQ(hits->results[q][0].attributes, (Attributes{{"i", int64_t(q)}}));
    }
    // By key.
    std::vector<Record> keyed(2);
    keyed[0].key = "a";
    keyed[1].key = "b";
    ASSERT_TRUE(c->UpsertTyped(name, kDim, t, std::span<const uint8_t>(rows.data(), 2 * kDim * ElementSize(t)),
                               keyed, /*keyed=*/true)
                    .has_value());
    auto by_key = c->GetKeyed(name, std::vector<std::string>{"b"});
    ASSERT_TRUE(by_key.has_value());
    EXPECT_EQ((*by_key)[0]->vector, Widened(t, rows, 1));
    // A collection of another dimension: the server's error names both.
    ASSERT_TRUE(c->CreateCollection({.name = name + "_wide", .dim = kDim * 2}).ok());
    auto wrong = c->UpsertTyped(name + "_wide", kDim, t, rows, records);
    ASSERT_FALSE(wrong.has_value());
    EXPECT_EQ(wrong.error().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(wrong.error().message().find(std::to_string(kDim * 2)), std::string::npos) << wrong.error().ToString();
    auto wrong_q = c->SearchTyped(name + "_wide", t, std::span<const uint8_t>(rows.data(), kDim * ElementSize(t)),
                                  kDim, 1, {.k = 1});
    ASSERT_FALSE(wrong_q.has_value());
    EXPECT_EQ(wrong_q.error().code(), StatusCode::kInvalidArgument) << wrong_q.error().ToString();
  }
  // Refused before sending: a buffer that is not records x dim values, float32, keys missing.
  std::vector<Record> one(1);
  std::vector<uint8_t> seven(7);
  auto r = c->UpsertTyped("t_uint8", kDim, ElementType::kUint8, seven, one);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("7 bytes of uint8 values for 1 records of dim 8 (needs 8)"), std::string::npos)
      << r.error().ToString();
  r = c->UpsertTyped("t_uint8", 2, ElementType::kFloat32, seven, one);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("float32 through upsert"), std::string::npos);
  // A float16 infinity: the server names the record.
  const uint16_t inf[kDim] = {0x7C00, 0, 0, 0, 0, 0, 0, 0};
  std::vector<uint8_t> bytes(reinterpret_cast<const uint8_t*>(inf), reinterpret_cast<const uint8_t*>(inf) + 16);
  one[0].id = 5;
  r = c->UpsertTyped("t_float16", kDim, ElementType::kFloat16, bytes, one);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.error().message().find("upsert_typed: record 0 (id 5)"), std::string::npos) << r.error().ToString();
  EXPECT_TRUE(c->is_open());
}

// An .npy with `descr` and rows x kDim values from `bytes`.
void WriteNpy(const std::filesystem::path& path, const std::string& descr, size_t rows,
              const std::vector<uint8_t>& bytes) {
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}, {}), }}", descr, rows, kDim);
  dict.append((64 - (10 + dict.size() + 1) % 64) % 64, ' ');
  dict.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = uint16_t(dict.size());
  out.write(reinterpret_cast<const char*>(&len), 2);
  out << dict;
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

class TypedCliTest : public CliTest {};

TEST_F(TypedCliTest, NarrowNpyIsSentAsItIs) {
  const std::pair<ElementType, const char*> kinds[] = {
      {ElementType::kFloat16, "<f2"}, {ElementType::kInt8, "|i1"}, {ElementType::kUint8, "|u1"}};
  for (const auto& [t, descr] : kinds) {
    SCOPED_TRACE(descr);
    const std::string name = fmt::format("cli_{}", ElementTypeName(t));
    const std::vector<uint8_t> rows = Rows(t, 30);
    const auto path = dir_ / (name + ".npy");
    WriteNpy(path, descr, 30, rows);
    ASSERT_EQ(Cli(fmt::format("create {} --dim {}", name, kDim)).rc, 0);
    CliRun r = Cli(fmt::format("upsert {} --vectors {} --batch 7", name, path.string()));
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_NE(r.out.find(fmt::format("sent as {}", ElementTypeName(t))), std::string::npos) << r.out;
    EXPECT_EQ(r.err.find("converted to float32"), std::string::npos) << r.err;
    r = Cli(fmt::format("get {} 29 --json", name));
    ASSERT_EQ(r.rc, 0) << r.err;
    const std::vector<float> want = Widened(t, rows, 29);
    EXPECT_EQ(ParseJson(r)[0]["vector"].get<std::vector<float>>(), want);
    // The same file as queries: each finds its own row.
    r = Cli(fmt::format("search {} --queries {} --k 1 --results --json", name, path.string()));
    ASSERT_EQ(r.rc, 0) << r.err;
    const Json j = ParseJson(r);
    ASSERT_EQ(j["results"].size(), 30u);
    EXPECT_EQ(j["results"][12][0]["id"], 12);
    // --send-float32: the old path, with its note.
    r = Cli(fmt::format("upsert {} --vectors {} --send-float32 --id-offset 1000", name, path.string()));
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out.find("sent as"), std::string::npos) << r.out;
    EXPECT_NE(r.err.find("converted to float32"), std::string::npos) << r.err;
    r = Cli(fmt::format("get {} 1029 --json", name));
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(ParseJson(r)[0]["vector"].get<std::vector<float>>(), want);
  }
  // A narrow file of the wrong dimension: refused before sending, naming both.
  const auto path = dir_ / "wide.npy";
  std::vector<uint8_t> wide(2 * kDim * 2);
  std::string dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 16), }";
  dict.append((64 - (10 + dict.size() + 1) % 64) % 64, ' ');
  dict.push_back('\n');
  {
    std::ofstream out(path, std::ios::binary);
    out.write("\x93NUMPY\x01\x00", 8);
    const uint16_t len = uint16_t(dict.size());
    out.write(reinterpret_cast<const char*>(&len), 2);
    out << dict;
    out.write(reinterpret_cast<const char*>(wide.data()), std::streamsize(wide.size()));
  }
  CliRun r = Cli("upsert cli_uint8 --vectors " + path.string());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("has dimension 16, collection cli_uint8 has 8"), std::string::npos) << r.err;
}

// A server before opcode 29 (UnknownOp): strata-cli says so and sends the rows widened, through
// upsert, from that request on.
TEST(TypedCliFallback, ServerWithoutUpsertTypedGetsFloat32) {
  using protocol::Op;
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("strata_typed_fallback_{}", ::getpid());
  std::filesystem::create_directories(dir);
  const std::vector<uint8_t> rows = Rows(ElementType::kUint8, 3);
  WriteNpy(dir / "v.npy", "|u1", 3, rows);
  std::vector<std::vector<float>> got;
  testing::FakeServer server([&](testing::FakeConnection& c) {
    if (!c.AcceptHello({.server_version = "old 0.9", .max_payload = 1u << 20, .max_batch = 100, .max_k = 10})) return;
    auto describe = c.Read();
    if (!describe) return;
    CollectionInfo info;
    info.spec = {.name = "c", .dim = kDim};
    c.Reply(describe->header.request_id, {describe->request.op, protocol::DescribeCollectionReply{info}});
    auto typed = c.Expect(Op::kUpsertTyped);
    if (!typed) return;
    c.ReplyError(typed->header.request_id, protocol::ErrorCode::kUnknownOp, "opcode 29 is not a request");
    auto plain = c.Expect(Op::kUpsert);
    if (!plain) return;
    for (const Record& r : std::get<protocol::UpsertRequest>(plain->request.body).records) got.push_back(r.vector);
    c.Reply(plain->header.request_id, {Op::kUpsert, protocol::WriteReply{3}});
    c.WaitForClose();
  });
  const auto out = dir / "out", err = dir / "err";
  const int status = std::system(fmt::format("{} upsert c --vectors {} --port {} >{} 2>{}", STRATA_CLI_PATH,
                                             (dir / "v.npy").string(), server.port(), out.string(), err.string())
                                     .c_str());
  EXPECT_EQ(status, 0) << testing::ReadAll(err);
  EXPECT_NE(testing::ReadAll(err).find("predates upsert_typed (opcode 29)"), std::string::npos) << testing::ReadAll(err);
  EXPECT_NE(testing::ReadAll(err).find("sending float32 instead"), std::string::npos);
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(got[i], Widened(ElementType::kUint8, rows, i));
  std::filesystem::remove_all(dir);
}

TEST(StorageTyped, ReadRawRowsKeepsTheBytesAndRefusesFloatFiles) {
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("strata_typed_raw_{}", ::getpid());
  std::filesystem::create_directories(dir);
  const std::vector<uint8_t> rows = Rows(ElementType::kUint8, 5);
  ASSERT_TRUE(storage::WriteU8Vectors(dir / "v.bvecs", rows.data(), 5, kDim).ok());
  auto raw = storage::ReadRawRows(dir / "v.bvecs", {.first_row = 1, .max_rows = 3});
  ASSERT_TRUE(raw.has_value()) << raw.error().ToString();
  EXPECT_EQ(raw->element, ElementType::kUint8);
  EXPECT_EQ(raw->rows, 3u);
  EXPECT_EQ(std::vector<uint8_t>(raw->bytes.begin(), raw->bytes.end()),
            std::vector<uint8_t>(rows.begin() + kDim, rows.begin() + 4 * kDim));
  auto vs = VectorSet::Create(2, kDim);
  ASSERT_TRUE(storage::WriteVectors(dir / "f.fbin", *vs).ok());
  auto f = storage::ReadRawRows(dir / "f.fbin");
  ASSERT_FALSE(f.has_value());
  EXPECT_NE(f.error().message().find("holds float32 values"), std::string::npos) << f.error().ToString();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace strata::client
