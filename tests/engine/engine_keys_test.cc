// Engine: records written by string key (api/types.h has the rule) -- writes,
// replacement, deletes, search results with keys, durability through the log,
// seals, compaction and reopen, the on-disk formats, validation, listing.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>
#include <optional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/vector_set.h"
#include "engine/strata.h"
#include "engine/codec.h"
#include "engine/wal.h"
#include "engine/write_batch.h"
#include "storage/section_file.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
constexpr size_t kDim = 8;

fs::path TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::temp_directory_path() / ("strata_keys_test_" + std::string(info->test_suite_name()) + "_" +
                                              info->name() + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

EngineOptions Quiet() {
  EngineOptions o;
  o.background_compaction = false;
  return o;
}

std::unique_ptr<Engine> OpenOrDie(const fs::path& dir) {
  auto e = Engine::Open(dir, Quiet());
  EXPECT_TRUE(e.has_value()) << e.error().ToString();
  return e ? std::move(*e) : nullptr;
}

CollectionSpec Spec(const std::string& name, size_t seal_threshold = 100000) {
  CollectionSpec s;
  s.name = name;
  s.dim = kDim;
  s.hnsw_ef_construction = 64;
  s.seal_threshold = seal_threshold;
  return s;
}

std::vector<float> Vec(float x) {
  std::vector<float> v(kDim, 0.0f);
  v[0] = x;
  return v;
}

// Vec(x) with a value no narrower type holds exactly: segments of it keep float32 vectors.
std::vector<float> FloatVec(float x) {
  std::vector<float> v = Vec(x);
  v[1] = 1e-3f;
  return v;
}

std::vector<float> RandomVector(std::mt19937& rng) {
  std::normal_distribution<float> g;
  std::vector<float> v(kDim);
  for (float& x : v) x = g(rng);
  return v;
}

// key -> (vector, attribute "n")
using Model = std::map<std::string, std::pair<std::vector<float>, int64_t>>;

void ExpectMatches(const Engine& e, const std::string& name, const Model& model) {
  for (const auto& [key, want] : model) {
    auto r = e.GetByKey(name, key);
    ASSERT_TRUE(r.has_value()) << KeyForMessage(key) << ": " << r.error().ToString();
    EXPECT_EQ(r->key, key);
    EXPECT_TRUE(IsKeyedId(r->id)) << r->id;
    EXPECT_EQ(r->vector, want.first) << KeyForMessage(key);
    EXPECT_EQ(r->attributes.at(0).value, AttributeValue(want.second)) << KeyForMessage(key);
    auto by_id = e.Get(name, r->id);
    ASSERT_TRUE(by_id.has_value());
    EXPECT_EQ(by_id->key, key);
  }
  auto info = e.DescribeCollection(name);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->num_vectors, model.size());
}

TEST(EngineKeys, WriteGetAndFindByKey) {
  const fs::path dir = TestDir();
  auto e = OpenOrDie(dir);
  ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
  ASSERT_TRUE(e->UpsertByKey("c", "alpha", Vec(1), {{"n", int64_t(1)}}).ok());
  ASSERT_TRUE(e->UpsertByKey("c", "beta", Vec(2)).ok());
  auto a = e->GetByKey("c", "alpha");
  ASSERT_TRUE(a.has_value()) << a.error().ToString();
  EXPECT_EQ(a->key, "alpha");
  EXPECT_EQ(a->id, kKeyedIdBase);  // the first key of a collection gets the first keyed id
  EXPECT_EQ(a->vector, Vec(1));
  auto b = e->FindKey("c", "beta");
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(*b, kKeyedIdBase + 1);
  auto missing = e->GetByKey("c", "gamma");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.error().message().find("gamma"), std::string::npos);
  EXPECT_EQ(e->FindKey("c", "gamma").error().code(), StatusCode::kNotFound);
  EXPECT_EQ(e->GetByKey("nope", "alpha").error().code(), StatusCode::kNotFound);
  fs::remove_all(dir);
}

// Review findings: a delete by id of an id high in the keyed range must not spend the
// range (it used to move the next keyed id to 2^64-1: the next keyed upsert was
// acknowledged but not stored, the one after took id 0, and the log no longer
// replayed); an operation by id that carries a key is refused.
TEST(EngineKeys, DeletesByIdDoNotSpendTheKeyedRangeAndByIdOpsCarryNoKey) {
  const fs::path dir = TestDir();
  {
    auto e = OpenOrDie(dir);
    ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
    ASSERT_TRUE(e->Upsert("c", 0, Vec(0)).ok());
    ASSERT_TRUE(e->Delete("c", kInvalidVectorId - 1).ok());  // absent: a no-op
    ASSERT_TRUE(e->UpsertByKey("c", "a", Vec(1)).ok());
    ASSERT_TRUE(e->UpsertByKey("c", "b", Vec(2)).ok());
    EXPECT_EQ(*e->FindKey("c", "a"), kKeyedIdBase);
    EXPECT_EQ(*e->FindKey("c", "b"), kKeyedIdBase + 1);
    EXPECT_EQ(e->Get("c", 0)->vector, Vec(0));  // the record written by id is untouched
    WriteBatch w;
    w.Append(engine::WriteOp{.kind = engine::WriteOp::Kind::kUpsert, .id = 5, .vector = Vec(5), .key = "x", .keyed = false});
    const Status s = e->Write("c", w);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find("carries a key"), std::string::npos) << s.ToString();
    EXPECT_FALSE(e->Get("c", 5).has_value());
    ASSERT_TRUE(e->Flush("c").ok());
    ASSERT_TRUE(e->Delete("c", kInvalidVectorId - 1).ok());  // in the log after the seal
  }
  auto e = OpenOrDie(dir);  // replays and opens
  EXPECT_EQ(*e->FindKey("c", "a"), kKeyedIdBase);
  ASSERT_TRUE(e->UpsertByKey("c", "c", Vec(3)).ok());
  EXPECT_EQ(*e->FindKey("c", "c"), kKeyedIdBase + 2);
  EXPECT_EQ(e->DescribeCollection("c")->num_vectors, 4u);
  fs::remove_all(dir);
}

TEST(EngineKeys, ReplaceByKeyKeepsTheIdAndDeleteThenReAddGetsAFreshOne) {
  const fs::path dir = TestDir();
  auto e = OpenOrDie(dir);
  ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
  ASSERT_TRUE(e->UpsertByKey("c", "k", Vec(1)).ok());
  const VectorId first = *e->FindKey("c", "k");
  ASSERT_TRUE(e->UpsertByKey("c", "k", Vec(5), {{"n", int64_t(5)}}).ok());
  auto r = e->GetByKey("c", "k");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->id, first);
  EXPECT_EQ(r->vector, Vec(5));
  EXPECT_EQ(e->DescribeCollection("c")->num_vectors, 1u);
  ASSERT_TRUE(e->DeleteByKey("c", "k").ok());
  EXPECT_EQ(e->GetByKey("c", "k").error().code(), StatusCode::kNotFound);
  EXPECT_EQ(e->Get("c", first).error().code(), StatusCode::kNotFound);
  EXPECT_EQ(e->DescribeCollection("c")->num_vectors, 0u);
  ASSERT_TRUE(e->DeleteByKey("c", "k").ok());        // absent: a no-op
  ASSERT_TRUE(e->DeleteByKey("c", "never").ok());
  ASSERT_TRUE(e->UpsertByKey("c", "k", Vec(7)).ok());
  EXPECT_GT(*e->FindKey("c", "k"), first);  // ids are never reused
  fs::remove_all(dir);
}

// UpsertByKeyWithId (a cluster replica's form, docs/CLUSTER.md): the key gets the id given;
// a key live under another id, or an id live under another key (or without one), is refused
// and nothing of the batch is written; the keyed-id counter moves past the id, so that fresh
// keys never get it; the log gives the same ids back on replay, and the counter too.
TEST(EngineKeys, UpsertByKeyWithIdTakesTheGivenIdRefusesConflictsAndSurvivesReplay) {
  const fs::path dir = TestDir();
  auto with_id = [](std::string key, VectorId id, float x) {
    WriteBatch b;
    b.UpsertByKeyWithId(std::move(key), id, Vec(x));
    return b;
  };
  {
    auto e = OpenOrDie(dir);
    ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
    ASSERT_TRUE(e->Upsert("c", 3, Vec(3)).ok());
    // A new key with an id well past the counter: taken as given, and ids written back.
    std::vector<VectorId> ids;
    ASSERT_TRUE(e->Write("c", with_id("far", kKeyedIdBase + 100, 1), &ids).ok());
    EXPECT_EQ(ids, std::vector<VectorId>{kKeyedIdBase + 100});
    EXPECT_EQ(*e->FindKey("c", "far"), kKeyedIdBase + 100);
    // The counter moved past it: a fresh key gets the next id.
    WriteBatch fresh;
    fresh.UpsertByKey("fresh", Vec(2));
    fresh.Upsert(4, Vec(4));
    ASSERT_TRUE(e->Write("c", fresh, &ids).ok());
    EXPECT_EQ(ids, (std::vector<VectorId>{kKeyedIdBase + 101, 4}));
    // The same key and id again: replaces the record, keeps the id.
    ASSERT_TRUE(e->Write("c", with_id("far", kKeyedIdBase + 100, 5)).ok());
    EXPECT_EQ(e->GetByKey("c", "far")->vector, Vec(5));
    // An id below the counter that nothing holds is taken too (a catch-up copies old ids).
    ASSERT_TRUE(e->Write("c", with_id("low", kKeyedIdBase + 7, 6)).ok());
    EXPECT_EQ(*e->FindKey("c", "low"), kKeyedIdBase + 7);
    // Conflicts: the key under another id, the id under another key, the id of a record
    // written by id (outside the keyed range: refused by validation).
    Status s = e->Write("c", with_id("far", kKeyedIdBase + 200, 7));
    EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
    EXPECT_NE(s.message().find("key 'far' is live under id " + std::to_string(kKeyedIdBase + 100)),
              std::string::npos) << s.ToString();
    s = e->Write("c", with_id("other", kKeyedIdBase + 100, 7));
    EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
    EXPECT_NE(s.message().find("under key 'far'"), std::string::npos) << s.ToString();
    s = e->Write("c", with_id("other", 3, 7));
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find("outside the keyed range"), std::string::npos) << s.ToString();
    // Within one batch: an id given to a key earlier in the batch is held.
    WriteBatch twice;
    twice.UpsertByKeyWithId("x", kKeyedIdBase + 300, Vec(1));
    twice.UpsertByKeyWithId("y", kKeyedIdBase + 300, Vec(1));
    EXPECT_EQ(e->Write("c", twice).code(), StatusCode::kAlreadyExists);
    EXPECT_FALSE(e->FindKey("c", "x").has_value());  // nothing of a refused batch is written
    // ... and one freed earlier in the batch may be given again (a catch-up's repair).
    WriteBatch repair;
    repair.DeleteByKey("low");
    repair.UpsertByKeyWithId("low2", kKeyedIdBase + 7, Vec(8));
    ASSERT_TRUE(e->Write("c", repair).ok());
    EXPECT_EQ(*e->FindKey("c", "low2"), kKeyedIdBase + 7);
    EXPECT_FALSE(e->FindKey("c", "low").has_value());
    // A delete by key takes no id.
    WriteBatch bad;
    bad.Append(engine::WriteOp{.kind = engine::WriteOp::Kind::kDelete, .id = kKeyedIdBase + 1, .vector = {}, .attributes = {}, .key = "far", .keyed = true});
    EXPECT_EQ(e->Write("c", bad).code(), StatusCode::kInvalidArgument);
  }
  for (int reopen = 0; reopen < 2; ++reopen) {
    auto e = OpenOrDie(dir);  // from the log; then from the sealed segment
    EXPECT_EQ(*e->FindKey("c", "far"), kKeyedIdBase + 100);
    EXPECT_EQ(e->GetByKey("c", "far")->vector, Vec(5));
    EXPECT_EQ(*e->FindKey("c", "fresh"), kKeyedIdBase + 101);
    EXPECT_EQ(*e->FindKey("c", "low2"), kKeyedIdBase + 7);
    EXPECT_EQ(e->DescribeCollection("c")->num_vectors, 5u + reopen);
    // The counter came back past every id given.
    const std::string key = "next" + std::to_string(reopen);
    ASSERT_TRUE(e->UpsertByKey("c", key, Vec(9)).ok());
    EXPECT_EQ(*e->FindKey("c", key), kKeyedIdBase + 102 + reopen);
    ASSERT_TRUE(e->Flush("c").ok());
  }
  fs::remove_all(dir);
}

TEST(EngineKeys, BatchOperationsByKeyApplyInOrder) {
  const fs::path dir = TestDir();
  auto e = OpenOrDie(dir);
  ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
  WriteBatch b;
  b.UpsertByKey("a", Vec(1));
  b.UpsertByKey("a", Vec(2));   // replaces the row of the same batch: one record
  b.UpsertByKey("gone", Vec(3));
  b.DeleteByKey("gone");
  b.Upsert(7, Vec(4));          // an id record beside them
  b.UpsertByKey("back", Vec(5));
  b.DeleteByKey("back");
  b.UpsertByKey("back", Vec(6));  // re-added in the same batch: a fresh id
  ASSERT_TRUE(e->Write("c", b).ok());
  EXPECT_EQ(e->DescribeCollection("c")->num_vectors, 3u);
  EXPECT_EQ(e->GetByKey("c", "a")->vector, Vec(2));
  EXPECT_EQ(e->GetByKey("c", "a")->id, kKeyedIdBase);
  EXPECT_EQ(e->GetByKey("c", "gone").error().code(), StatusCode::kNotFound);
  EXPECT_EQ(e->GetByKey("c", "back")->vector, Vec(6));
  EXPECT_EQ(e->GetByKey("c", "back")->id, kKeyedIdBase + 3);
  EXPECT_EQ(e->Get("c", 7)->key, "");
  // Deleting a keyed record by its id removes its key with it.
  WriteBatch d;
  d.Delete(kKeyedIdBase);
  d.UpsertByKey("a", Vec(9));  // "a" is gone by now: a fresh id
  ASSERT_TRUE(e->Write("c", d).ok());
  EXPECT_EQ(e->GetByKey("c", "a")->vector, Vec(9));
  EXPECT_EQ(e->GetByKey("c", "a")->id, kKeyedIdBase + 4);
  fs::remove_all(dir);
}

TEST(EngineKeys, SearchReturnsKeysOfMixedRecords) {
  const fs::path dir = TestDir();
  auto e = OpenOrDie(dir);
  ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
  WriteBatch b;
  for (int i = 0; i < 20; ++i) {
    if (i % 2) {
      b.UpsertByKey("key-" + std::to_string(i), Vec(float(i)));
    } else {
      b.Upsert(VectorId(i), Vec(float(i)));
    }
  }
  ASSERT_TRUE(e->Write("c", b).ok());
  auto check = [&] {
    auto hits = e->SearchWithKeys("c", Vec(10.2f), {.k = 4, .strategy = SearchStrategy::kScan});
    ASSERT_TRUE(hits.has_value()) << hits.error().ToString();
    ASSERT_EQ(hits->size(), 4u);
    EXPECT_EQ((*hits)[0].id, 10u);
    EXPECT_EQ((*hits)[0].key, "");
    EXPECT_EQ((*hits)[1].key, "key-11");
    EXPECT_TRUE(IsKeyedId((*hits)[1].id));
    EXPECT_EQ((*hits)[2].key, "key-9");
    EXPECT_EQ((*hits)[3].id, 12u);
    EXPECT_EQ((*hits)[3].key, "");
    // The same ids and distances as a plain search.
    auto plain = e->Search("c", Vec(10.2f), {.k = 4, .strategy = SearchStrategy::kScan});
    ASSERT_TRUE(plain.has_value());
    for (size_t i = 0; i < 4; ++i) {
      EXPECT_EQ((*plain)[i].id, (*hits)[i].id);
      EXPECT_EQ((*plain)[i].distance, (*hits)[i].distance);
    }
    std::vector<float> queries = Vec(10.2f);
    const auto more = Vec(1.1f);
    queries.insert(queries.end(), more.begin(), more.end());
    auto batch = e->SearchBatchWithKeys("c", queries, kDim, {.k = 1});
    ASSERT_TRUE(batch.has_value()) << batch.error().ToString();
    ASSERT_EQ(batch->size(), 2u);
    EXPECT_EQ((*batch)[0][0].id, 10u);
    EXPECT_EQ((*batch)[1][0].key, "key-1");
  };
  check();
  ASSERT_TRUE(e->Flush("c").ok());  // from a sealed segment
  check();
  fs::remove_all(dir);
}

TEST(EngineKeys, InvalidKeysAndReservedIdsAreRefusedWithClearErrors) {
  const fs::path dir = TestDir();
  auto e = OpenOrDie(dir);
  ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
  auto expect_invalid = [&](const WriteBatch& b, const std::string& words) {
    const Status s = e->Write("c", b);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find(words), std::string::npos) << s.ToString();
  };
  WriteBatch empty_key;
  empty_key.Upsert(1, Vec(1));
  empty_key.UpsertByKey("", Vec(1));
  expect_invalid(empty_key, "key is empty");
  WriteBatch long_key;
  long_key.UpsertByKey(std::string(kMaxKeyBytes + 1, 'x'), Vec(1));
  expect_invalid(long_key, "1025 bytes");
  WriteBatch long_delete;
  long_delete.DeleteByKey(std::string(kMaxKeyBytes + 1, 'x'));
  expect_invalid(long_delete, "at most 1024");
  WriteBatch reserved;
  reserved.Upsert(kKeyedIdBase + 5, Vec(1));
  expect_invalid(reserved, "reserved");
  WriteBatch nan;
  nan.UpsertByKey("k", std::vector<float>(kDim, std::nanf("")));
  expect_invalid(nan, "key 'k'");
  // Nothing of the refused batches was written.
  EXPECT_EQ(e->DescribeCollection("c")->num_vectors, 0u);
  EXPECT_EQ(e->GetByKey("c", "").error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e->FindKey("c", std::string(2000, 'y')).error().code(), StatusCode::kInvalidArgument);
  // Any bytes make a key, the longest one included.
  const std::string binary("a\0b\xff\n", 5);
  const std::string longest(kMaxKeyBytes, 'z');
  ASSERT_TRUE(e->UpsertByKey("c", binary, Vec(1)).ok());
  ASSERT_TRUE(e->UpsertByKey("c", longest, Vec(2)).ok());
  EXPECT_EQ(e->GetByKey("c", binary)->key, binary);
  EXPECT_EQ(e->GetByKey("c", std::string("a\0c", 3)).error().code(), StatusCode::kNotFound);
  EXPECT_EQ(e->GetByKey("c", longest)->vector, Vec(2));
  // Deleting or getting a keyed record by its id is allowed.
  EXPECT_EQ(e->Get("c", *e->FindKey("c", longest))->key, longest);
  fs::remove_all(dir);
}

// Random keyed writes (some replaced, some deleted) checked against a model after
// each way the data can reach disk and come back.
Model WriteRandomKeys(Engine& e, const std::string& name, int batches, uint32_t seed, Model model = {}) {
  std::mt19937 rng(seed);
  for (int b = 0; b < batches; ++b) {
    WriteBatch batch;
    for (int i = 0; i < 12; ++i) {
      const std::string key = "doc:" + std::to_string(rng() % 60);
      if (rng() % 5 == 0) {
        batch.DeleteByKey(key);
        model.erase(key);
      } else {
        const auto v = RandomVector(rng);
        const int64_t n = int64_t(rng() % 1000);
        batch.UpsertByKey(key, v, {{"n", n}});
        model[key] = {v, n};
      }
    }
    EXPECT_TRUE(e.Write(name, batch).ok());
  }
  return model;
}

TEST(EngineKeys, KeysSurviveReplaySealCompactionAndReopen) {
  const fs::path dir = TestDir();
  Model model;
  {
    auto e = OpenOrDie(dir);
    ASSERT_TRUE(e->CreateCollection(Spec("c", 40)).ok());
    model = WriteRandomKeys(*e, "c", 10, 1);
    ExpectMatches(*e, "c", model);
  }
  {
    auto e = OpenOrDie(dir);  // from the log (and segments sealed at the threshold)
    ExpectMatches(*e, "c", model);
    ASSERT_TRUE(e->Flush("c").ok());
    model = WriteRandomKeys(*e, "c", 10, 2, model);
    ASSERT_TRUE(e->Flush("c").ok());
    ExpectMatches(*e, "c", model);
  }
  {
    auto e = OpenOrDie(dir);  // from sealed segments
    ExpectMatches(*e, "c", model);
    ASSERT_TRUE(e->Compact("c").ok());
    ExpectMatches(*e, "c", model);
  }
  {
    auto e = OpenOrDie(dir);  // from the compacted segment
    ExpectMatches(*e, "c", model);
  }
  fs::remove_all(dir);
}

TEST(EngineKeys, IdsAreNeverReusedAfterCompactionAndReopen) {
  const fs::path dir = TestDir();
  VectorId newest = 0;
  {
    auto e = OpenOrDie(dir);
    ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
    for (const char* k : {"a", "b", "c"}) ASSERT_TRUE(e->UpsertByKey("c", k, Vec(1)).ok());
    newest = *e->FindKey("c", "c");
    ASSERT_TRUE(e->Flush("c").ok());
    ASSERT_TRUE(e->DeleteByKey("c", "c").ok());
    ASSERT_TRUE(e->Compact("c").ok());  // the row of "c" is gone from disk
  }
  auto e = OpenOrDie(dir);
  ASSERT_TRUE(e->UpsertByKey("c", "d", Vec(2)).ok());
  EXPECT_EQ(*e->FindKey("c", "d"), newest + 1);
  EXPECT_EQ(*e->FindKey("c", "a"), kKeyedIdBase);
  fs::remove_all(dir);
}

std::vector<engine::WalRecord> LogRecords(const fs::path& dir) {
  std::vector<engine::WalRecord> out;
  for (const auto& f : fs::directory_iterator(dir / "collections" / "1" / "wal")) {
    auto log = engine::ReadWal(f.path());
    EXPECT_TRUE(log.has_value()) << log.error().ToString();
    if (log) out.insert(out.end(), log->records.begin(), log->records.end());
  }
  return out;
}

uint16_t RecordsMinor(const fs::path& dir) {
  for (const auto& f : fs::directory_iterator(dir / "collections" / "1")) {
    if (!f.path().filename().string().starts_with("seg-")) continue;
    auto sf = storage::SectionFile::Open(f.path() / "records.strata", "STRSEG", 1);
    EXPECT_TRUE(sf.has_value()) << sf.error().ToString();
    return sf ? sf->minor() : 0;
  }
  ADD_FAILURE() << "no segment";
  return 0;
}

TEST(EngineKeys, DataWithoutKeysKeepsTheOldFormats) {
  const fs::path dir = TestDir();
  auto e = OpenOrDie(dir);
  ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
  ASSERT_TRUE(e->Upsert("c", 1, FloatVec(1)).ok());
  ASSERT_TRUE(e->Delete("c", 2).ok());
  for (const auto& r : LogRecords(dir)) EXPECT_EQ(r.type, engine::kBatchRecord);
  ASSERT_TRUE(e->Flush("c").ok());
  EXPECT_EQ(RecordsMinor(dir), 2);  // records.strata 1.2, as before keys (and narrow vectors)
  ASSERT_TRUE(e->UpsertByKey("c", "k", Vec(2)).ok());
  auto records = LogRecords(dir);
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.back().type, engine::kKeyedBatchRecord);
  e.reset();
  fs::remove_all(dir);
}

TEST(EngineKeys, SegmentsWithKeysAreVersion13) {
  const fs::path dir = TestDir();
  auto e = OpenOrDie(dir);
  ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
  ASSERT_TRUE(e->UpsertByKey("c", "k", FloatVec(2)).ok());
  ASSERT_TRUE(e->Upsert("c", 3, FloatVec(3)).ok());
  ASSERT_TRUE(e->Flush("c").ok());
  EXPECT_EQ(RecordsMinor(dir), 3);
  e.reset();
  e = OpenOrDie(dir);
  EXPECT_EQ(e->GetByKey("c", "k")->vector, FloatVec(2));
  EXPECT_EQ(e->Get("c", 3)->key, "");
  fs::remove_all(dir);
}

// Rewrites `file` (a section file) with `change` applied to its sections (tag -> bytes;
// a section mapped to nullopt is left out), checksums recomputed: structural damage that
// checksums cannot see.
void RewriteSections(const fs::path& file,
                     const std::function<std::optional<std::vector<std::byte>>(uint32_t, std::span<const std::byte>)>&
                         change) {
  std::vector<std::pair<uint32_t, std::vector<std::byte>>> sections;
  uint16_t major = 0, minor = 0;
  {
    auto sf = storage::SectionFile::Open(file, "STRSEG", 1);
    ASSERT_TRUE(sf.has_value()) << sf.error().ToString();
    major = sf->major();
    minor = sf->minor();
    for (const auto& entry : sf->entries()) {
      auto bytes = sf->Section(entry.tag);
      ASSERT_TRUE(bytes.has_value());
      if (auto kept = change(entry.tag, *bytes)) sections.emplace_back(entry.tag, std::move(*kept));
    }
  }
  auto w = storage::SectionFileWriter::Create(file, "STRSEG", major, minor);
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  for (const auto& [tag, bytes] : sections) ASSERT_TRUE(w->AddSection(tag, bytes).ok());
  ASSERT_TRUE(w->Commit().ok());
}

TEST(EngineKeys, KeySectionsAreCheckedOnOpen) {
  const fs::path dir = TestDir();
  {
    auto e = OpenOrDie(dir);
    ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
    for (const char* k : {"a", "b", "c"}) ASSERT_TRUE(e->UpsertByKey("c", k, Vec(1)).ok());
    ASSERT_TRUE(e->Flush("c").ok());
  }
  const fs::path records = dir / "collections" / "1" / "seg-1" / "records.strata";
  const fs::path saved = dir / "records.good";
  fs::copy_file(records, saved);
  auto expect_refused = [&](const std::string& words) {
    auto e = Engine::Open(dir, Quiet());
    ASSERT_FALSE(e.has_value()) << words;
    EXPECT_EQ(e.error().code(), StatusCode::kCorruption) << e.error().ToString();
    EXPECT_NE(e.error().message().find("records.strata"), std::string::npos) << e.error().ToString();
    EXPECT_NE(e.error().message().find(words), std::string::npos) << e.error().ToString();
    fs::copy_file(saved, records, fs::copy_options::overwrite_existing);
  };
  const uint32_t kord = storage::SectionTag("KORD");
  const uint32_t koff = storage::SectionTag("KOFF");
  // Keys out of order (a lookup's binary search would miss them).
  RewriteSections(records, [&](uint32_t tag, std::span<const std::byte> bytes) {
    std::vector<std::byte> out(bytes.begin(), bytes.end());
    if (tag == kord) std::reverse(reinterpret_cast<uint32_t*>(out.data()), reinterpret_cast<uint32_t*>(out.data()) + 3);
    return std::optional(out);
  });
  expect_refused("out of key order");
  // One of the three sections missing.
  RewriteSections(records, [&](uint32_t tag, std::span<const std::byte> bytes) {
    return tag == kord ? std::nullopt : std::optional(std::vector<std::byte>(bytes.begin(), bytes.end()));
  });
  expect_refused("not all");
  // Offsets past the keys' bytes.
  RewriteSections(records, [&](uint32_t tag, std::span<const std::byte> bytes) {
    std::vector<std::byte> out(bytes.begin(), bytes.end());
    if (tag == koff) reinterpret_cast<uint64_t*>(out.data())[3] += 1;
    return std::optional(out);
  });
  expect_refused("do not span KEYS");
  // META's element type (byte 24; the rows are small integers, held as uint8): unknown, or
  // float32 while VECS holds a byte a value.
  const uint32_t meta = storage::SectionTag("META");
  for (auto [element, words] : {std::pair<uint32_t, const char*>{9, "unknown element type 9"},
                                std::pair<uint32_t, const char*>{0, "section sizes"}}) {
    RewriteSections(records, [&](uint32_t tag, std::span<const std::byte> bytes) {
      std::vector<std::byte> out(bytes.begin(), bytes.end());
      if (tag == meta) {
        EXPECT_EQ(reinterpret_cast<const uint32_t*>(out.data())[6], 3u);  // uint8
        reinterpret_cast<uint32_t*>(out.data())[6] = element;
      }
      return std::optional(out);
    });
    expect_refused(words);
  }
  // The good file opens again.
  auto e = OpenOrDie(dir);
  EXPECT_EQ(*e->FindKey("c", "b"), kKeyedIdBase + 1);
  fs::remove_all(dir);
}

TEST(EngineKeys, ManifestWithoutNextKeyIdStillOpens) {
  // A collection.manifest 1.0 (before keys) has no next_key_id: the next keyed id comes
  // from the segments' largest.
  const fs::path dir = TestDir();
  {
    auto e = OpenOrDie(dir);
    ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
    for (const char* k : {"a", "b"}) ASSERT_TRUE(e->UpsertByKey("c", k, Vec(1)).ok());
    ASSERT_TRUE(e->Flush("c").ok());
  }
  const fs::path manifest = dir / "collections" / "1" / "collection.manifest";
  const uint32_t kCman = storage::SectionTag("CMAN");
  std::string json;
  {
    auto sf = storage::SectionFile::Open(manifest, "STRCOLL", 1);
    ASSERT_TRUE(sf.has_value()) << sf.error().ToString();
    EXPECT_EQ(sf->minor(), 1);
    auto bytes = sf->Section(kCman);
    ASSERT_TRUE(bytes.has_value());
    json.assign(reinterpret_cast<const char*>(bytes->data()), bytes->size());
  }
  const size_t at = json.find("\"next_key_id\"");
  ASSERT_NE(at, std::string::npos) << json;
  const size_t end = json.find_first_of(",}", at);
  json.erase(at, end - at + (json[end] == ',' ? 1 : 0));
  {
    auto w = storage::SectionFileWriter::Create(manifest, "STRCOLL", 1, 0);
    ASSERT_TRUE(w.has_value());
    ASSERT_TRUE(w->AddSection(kCman, std::as_bytes(std::span(json.data(), json.size()))).ok());
    ASSERT_TRUE(w->Commit().ok());
  }
  auto e = OpenOrDie(dir);
  EXPECT_EQ(*e->FindKey("c", "b"), kKeyedIdBase + 1);
  ASSERT_TRUE(e->UpsertByKey("c", "c", Vec(2)).ok());
  EXPECT_EQ(*e->FindKey("c", "c"), kKeyedIdBase + 2);
  fs::remove_all(dir);
}

TEST(EngineKeys, OldLogWithAnIdInTheKeyedRangeStillReplays) {
  // A log written before keys existed, holding an upsert of an id that is now in
  // the keyed range: it replays (the record has no key) and new keys get later ids.
  const fs::path dir = TestDir();
  {
    auto e = OpenOrDie(dir);
    ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
  }
  const VectorId legacy = kKeyedIdBase + 100;
  {
    const fs::path log = dir / "collections" / "1" / "wal" / fmt::format("{:020}.wal", 1);
    auto w = engine::WalWriter::OpenForAppend(log);
    ASSERT_TRUE(w.has_value()) << w.error().ToString();
    std::vector<std::byte> payload;
    engine::ByteWriter bw(payload);  // the 1.0 batch layout, spelled out
    bw.Put<uint32_t>(1);
    bw.Put<uint8_t>(1);
    bw.Put<uint64_t>(legacy);
    const auto v = Vec(4);
    bw.PutBytes(v.data(), kDim * sizeof(float));
    bw.Put<uint16_t>(0);
    ASSERT_TRUE((*w)->Append(engine::kBatchRecord, payload).has_value());
    ASSERT_TRUE((*w)->Close().ok());
  }
  auto e = OpenOrDie(dir);
  auto r = e->Get("c", legacy);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->vector, Vec(4));
  EXPECT_EQ(r->key, "");
  ASSERT_TRUE(e->UpsertByKey("c", "new", Vec(5)).ok());
  EXPECT_EQ(*e->FindKey("c", "new"), legacy + 1);
  // From a sealed segment too (a manifest whose next_key_id is behind it), the legacy
  // record's id is never given to a key: a key must not replace it.
  ASSERT_TRUE(e->DeleteByKey("c", "new").ok());
  ASSERT_TRUE(e->Flush("c").ok());
  e.reset();
  {
    const fs::path manifest = dir / "collections" / "1" / "collection.manifest";
    auto sf = storage::SectionFile::Open(manifest, "STRCOLL", 1);
    ASSERT_TRUE(sf.has_value());
    auto bytes = sf->Section(storage::SectionTag("CMAN"));
    ASSERT_TRUE(bytes.has_value());
    std::string json(reinterpret_cast<const char*>(bytes->data()), bytes->size());
    const std::string field = fmt::format("\"next_key_id\": {}", legacy + 2);
    const size_t at = json.find(field);
    ASSERT_NE(at, std::string::npos) << json;
    json.replace(at, field.size(), fmt::format("\"next_key_id\": {}", kKeyedIdBase));
    auto w = storage::SectionFileWriter::Create(manifest, "STRCOLL", 1, 1);
    ASSERT_TRUE(w.has_value());
    ASSERT_TRUE(w->AddSection(storage::SectionTag("CMAN"), std::as_bytes(std::span(json.data(), json.size()))).ok());
    ASSERT_TRUE(w->Commit().ok());
  }
  e = OpenOrDie(dir);
  ASSERT_TRUE(e->UpsertByKey("c", "later", Vec(6)).ok());
  EXPECT_GT(*e->FindKey("c", "later"), legacy);
  EXPECT_EQ(e->Get("c", legacy)->vector, Vec(4));
  EXPECT_EQ(e->Get("c", legacy)->key, "");
  fs::remove_all(dir);
}

TEST(EngineKeys, ListKeysPagesThroughMemoryAndSealedSegments) {
  const fs::path dir = TestDir();
  auto e = OpenOrDie(dir);
  ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
  std::set<std::string> want;
  for (int i = 0; i < 25; ++i) {
    ASSERT_TRUE(e->UpsertByKey("c", "s" + std::to_string(i), Vec(float(i))).ok());
    want.insert("s" + std::to_string(i));
  }
  ASSERT_TRUE(e->Upsert("c", 5, Vec(0)).ok());  // an id record: never listed
  ASSERT_TRUE(e->Flush("c").ok());
  for (int i = 0; i < 12; ++i) {
    ASSERT_TRUE(e->UpsertByKey("c", "m" + std::to_string(i), Vec(float(i))).ok());
    want.insert("m" + std::to_string(i));
  }
  ASSERT_TRUE(e->DeleteByKey("c", "s3").ok());   // sealed row deleted
  ASSERT_TRUE(e->DeleteByKey("c", "m4").ok());   // memory row deleted
  ASSERT_TRUE(e->UpsertByKey("c", "s7", Vec(70)).ok());  // replaced into memory: listed once
  want.erase("s3");
  want.erase("m4");
  std::vector<std::string> got;
  uint64_t cursor = 0;
  int pages = 0;
  do {
    auto page = e->ListKeys("c", cursor, 7);
    ASSERT_TRUE(page.has_value()) << page.error().ToString();
    EXPECT_LE(page->keys.size(), 7u);
    ASSERT_EQ(page->keys.size(), page->ids.size());
    EXPECT_TRUE(std::is_sorted(page->ids.begin(), page->ids.end()));
    got.insert(got.end(), page->keys.begin(), page->keys.end());
    cursor = page->next_cursor;
    ASSERT_LT(++pages, 20);
  } while (cursor != 0);
  EXPECT_EQ(got.size(), want.size());
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()), want);
  EXPECT_EQ(e->ListKeys("c", 0, 0).error().code(), StatusCode::kInvalidArgument);

  auto few = e->RandomKeys("c", 5, 42);
  ASSERT_TRUE(few.has_value()) << few.error().ToString();
  EXPECT_EQ(few->size(), 5u);
  EXPECT_EQ(std::set<std::string>(few->begin(), few->end()).size(), 5u);
  for (const auto& k : *few) EXPECT_TRUE(want.count(k)) << k;
  auto all = e->RandomKeys("c", 1000, 7);
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(std::set<std::string>(all->begin(), all->end()), want);
  fs::remove_all(dir);
}

TEST(EngineKeys, ListIdsPagesThroughEveryLiveRecord) {
  const fs::path dir = TestDir();
  auto e = OpenOrDie(dir);
  ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
  std::set<VectorId> want;
  for (VectorId id = 0; id < 30; ++id) {
    ASSERT_TRUE(e->Upsert("c", id * 3, Vec(float(id))).ok());
    want.insert(id * 3);
  }
  ASSERT_TRUE(e->UpsertByKey("c", "k", Vec(1)).ok());  // keyed records are listed too
  want.insert(*e->FindKey("c", "k"));
  ASSERT_TRUE(e->Flush("c").ok());
  for (VectorId id = 100; id < 110; ++id) {
    ASSERT_TRUE(e->Upsert("c", id, Vec(float(id))).ok());
    want.insert(id);
  }
  ASSERT_TRUE(e->Delete("c", 6).ok());    // sealed row deleted
  ASSERT_TRUE(e->Delete("c", 104).ok());  // memory row deleted
  ASSERT_TRUE(e->Upsert("c", 9, Vec(90)).ok());  // replaced into memory: listed once
  want.erase(6);
  want.erase(104);
  std::vector<VectorId> got;
  uint64_t cursor = 0;
  int pages = 0;
  do {
    auto page = e->ListIds("c", cursor, 7);
    ASSERT_TRUE(page.has_value()) << page.error().ToString();
    EXPECT_LE(page->ids.size(), 7u);
    ASSERT_EQ(page->keys.size(), page->ids.size());
    EXPECT_TRUE(std::is_sorted(page->ids.begin(), page->ids.end()));
    got.insert(got.end(), page->ids.begin(), page->ids.end());
    cursor = page->next_cursor;
    ASSERT_LT(++pages, 20);
  } while (cursor != 0);
  EXPECT_EQ(got.size(), want.size());
  EXPECT_EQ(std::set<VectorId>(got.begin(), got.end()), want);
  EXPECT_EQ(e->ListIds("c", 0, 0).error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e->ListIds("nope", 0, 5).error().code(), StatusCode::kNotFound);
  fs::remove_all(dir);
}

TEST(EngineKeys, RandomKeysProbesLargeCollections) {
  const fs::path dir = TestDir();
  auto e = OpenOrDie(dir);
  ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
  WriteBatch b;
  for (int i = 0; i < 400; ++i) b.UpsertByKey("r" + std::to_string(i), Vec(float(i)));
  ASSERT_TRUE(e->Write("c", b).ok());
  auto one = e->RandomKeys("c", 3, 1);
  auto two = e->RandomKeys("c", 3, 2);
  ASSERT_TRUE(one.has_value() && two.has_value());
  EXPECT_EQ(one->size(), 3u);
  EXPECT_NE(*one, *two);  // seeded differently
  EXPECT_EQ(*one, *e->RandomKeys("c", 3, 1));  // and the same seed picks the same
  fs::remove_all(dir);
}

TEST(EngineKeys, BulkLoadByKeyAssignsIdsAndRefusesDuplicates) {
  const fs::path dir = TestDir();
  {
    auto e = OpenOrDie(dir);
    ASSERT_TRUE(e->CreateCollection(Spec("c")).ok());
    auto vs = VectorSet::Create(3, kDim);
    ASSERT_TRUE(vs.has_value());
    for (size_t i = 0; i < 3; ++i) std::copy_n(Vec(float(i)).data(), kDim, vs->mutable_row(i));
    const std::vector<std::string> dup = {"x", "y", "x"};
    const Status s = e->BulkLoadByKey("c", *vs, dup);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("'x' is given twice"), std::string::npos) << s.ToString();
    const std::vector<std::string> bad = {"x", "", "z"};
    EXPECT_EQ(e->BulkLoadByKey("c", *vs, bad).code(), StatusCode::kInvalidArgument);
    const std::vector<VectorId> reserved = {1, kKeyedIdBase, 2};
    EXPECT_EQ(e->BulkLoad("c", *vs, reserved).code(), StatusCode::kInvalidArgument);
    const std::vector<std::string> keys = {"x", "y", "z"};
    ASSERT_TRUE(e->BulkLoadByKey("c", *vs, keys).ok());
    EXPECT_EQ(*e->FindKey("c", "z"), kKeyedIdBase + 2);
  }
  auto e = OpenOrDie(dir);
  EXPECT_EQ(e->GetByKey("c", "y")->vector, Vec(1));
  ASSERT_TRUE(e->UpsertByKey("c", "w", Vec(9)).ok());
  EXPECT_EQ(*e->FindKey("c", "w"), kKeyedIdBase + 3);
  ASSERT_TRUE(e->UpsertByKey("c", "x", Vec(8)).ok());  // replaces the loaded row
  EXPECT_EQ(e->GetByKey("c", "x")->id, kKeyedIdBase);
  EXPECT_EQ(e->DescribeCollection("c")->num_vectors, 4u);
  fs::remove_all(dir);
}

TEST(EngineKeys, MemoryFigureCountsKeys) {
  const fs::path dir = TestDir();
  auto e = OpenOrDie(dir);
  ASSERT_TRUE(e->CreateCollection(Spec("a")).ok());
  ASSERT_TRUE(e->CreateCollection(Spec("b")).ok());
  WriteBatch by_id, by_key;
  for (int i = 0; i < 200; ++i) {
    by_id.Upsert(VectorId(i), Vec(float(i)));
    by_key.UpsertByKey(std::string(500, 'k') + std::to_string(i), Vec(float(i)));
  }
  ASSERT_TRUE(e->Write("a", by_id).ok());
  ASSERT_TRUE(e->Write("b", by_key).ok());
  EXPECT_GE(e->DescribeCollection("b")->memory_bytes, e->DescribeCollection("a")->memory_bytes + 200 * 500);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace strata
