// Embedding Strata: open an engine, create a collection, write vectors with
// attributes in batches, search, read one back, then reopen the data directory
// to show that everything written was recovered.
//
//   embed [DATA_DIR]        (default ./strata-example-data)
//
// Exits 0 on success; on any error prints the Status and exits 1. Running it a
// second time on the same directory finds the collection and its vectors.
// Uses only the public header engine/strata.h.

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "engine/strata.h"

namespace {

constexpr const char* kCollection = "demo";
constexpr size_t kDim = 8;
constexpr size_t kNumVectors = 300;
constexpr size_t kBatchSize = 50;
constexpr strata::VectorId kProbeId = 7;

int Fail(const std::string& what, const strata::Status& status) {
  std::cerr << "error: " << what << ": " << status.ToString() << "\n";
  return 1;
}

// The same vectors on every run (fixed seed), so that a rerun rewrites them unchanged.
std::vector<std::vector<float>> MakeVectors() {
  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<float>> vectors(kNumVectors, std::vector<float>(kDim));
  for (auto& v : vectors) {
    for (float& x : v) x = normal(rng);
  }
  return vectors;
}

std::string FormatValue(const strata::AttributeValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return "\"" + v + "\"";
        } else if constexpr (std::is_same_v<T, strata::TagList>) {
          std::string out = "[";
          for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
          return out + "]";
        } else {
          return std::to_string(v);
        }
      },
      value);
}

void PrintRecord(const strata::Record& record) {
  std::cout << "  id " << record.id << ": vector [";
  for (size_t i = 0; i < record.vector.size(); ++i) std::cout << (i ? ", " : "") << record.vector[i];
  std::cout << "]\n";
  for (const strata::Attribute& a : record.attributes) {
    std::cout << "    " << a.name << " = " << FormatValue(a.value) << "\n";
  }
}

void PrintRecovery(const strata::Engine& engine) {
  const strata::RecoveryReport& r = engine.recovery();
  std::cout << "opened " << engine.dir().string() << ": " << r.collections << " collection(s), "
            << r.batches_replayed << " batch(es) replayed from the log, " << r.torn_bytes_dropped
            << " torn byte(s) dropped\n";
  for (const std::string& note : r.notes) std::cout << "  recovery: " << note << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  const std::filesystem::path dir = argc > 1 ? argv[1] : "./strata-example-data";

  // 1. Open (creates the directory when empty; recovers it otherwise).
  auto opened = strata::Engine::Open(dir);
  if (!opened) return Fail("open " + dir.string(), opened.error());
  std::unique_ptr<strata::Engine> engine = std::move(*opened);
  PrintRecovery(*engine);

  // 2. The collection: found from an earlier run, or created now.
  if (auto info = engine->DescribeCollection(kCollection)) {
    std::cout << "found collection '" << kCollection << "' with " << info->num_vectors
              << " vectors (last sequence " << info->last_sequence << ")\n";
  } else if (info.error().code() == strata::StatusCode::kNotFound) {
    strata::Status s = engine->CreateCollection(
        {.name = kCollection, .dim = kDim, .metric = strata::Metric::kCosine});
    if (!s.ok()) return Fail("create collection", s);
    std::cout << "created collection '" << kCollection << "' (dim " << kDim << ", cosine)\n";
  } else {
    return Fail("describe collection", info.error());
  }

  // 3. Upsert vectors with attributes, a batch at a time (each batch is atomic and
  //    durable when Write returns).
  const std::vector<std::vector<float>> vectors = MakeVectors();
  for (size_t begin = 0; begin < kNumVectors; begin += kBatchSize) {
    strata::WriteBatch batch;
    for (size_t i = begin; i < begin + kBatchSize && i < kNumVectors; ++i) {
      batch.Upsert(i, vectors[i],
                   {{"group", int64_t(i % 5)},
                    {"score", double(i) / kNumVectors},
                    {"name", "item-" + std::to_string(i)},
                    {"tags", strata::TagList{i % 2 ? "odd" : "even", "demo"}}});
    }
    strata::Status s = engine->Write(kCollection, batch);
    if (!s.ok()) return Fail("write batch at " + std::to_string(begin), s);
  }
  auto info = engine->DescribeCollection(kCollection);
  if (!info) return Fail("describe collection", info.error());
  std::cout << "wrote " << kNumVectors << " vectors in batches of " << kBatchSize << "; collection holds "
            << info->num_vectors << "\n";

  // 4. Search: a slightly perturbed copy of one vector finds that vector first.
  std::vector<float> query = vectors[kProbeId];
  for (float& x : query) x *= 1.01f;
  query[0] += 0.05f;
  auto hits = engine->Search(kCollection, query, {.k = 5});
  if (!hits) return Fail("search", hits.error());
  std::cout << "top " << hits->size() << " hits for a query near id " << kProbeId << ":\n";
  for (const strata::Neighbor& n : *hits) {
    std::cout << "  id " << n.id << "  distance " << n.distance << "\n";
  }
  if (hits->empty()) return Fail("search", strata::Status(strata::StatusCode::kInternal, "no hits"));

  // 5. Get: the stored vector and its attributes.
  auto record = engine->Get(kCollection, kProbeId);
  if (!record) return Fail("get", record.error());
  std::cout << "get:\n";
  PrintRecord(*record);

  // 6. Reopen: close the engine and open the directory again; recovery brings
  //    back every acknowledged write.
  engine.reset();
  opened = strata::Engine::Open(dir);
  if (!opened) return Fail("reopen " + dir.string(), opened.error());
  engine = std::move(*opened);
  PrintRecovery(*engine);
  auto reinfo = engine->DescribeCollection(kCollection);
  if (!reinfo) return Fail("describe collection after reopen", reinfo.error());
  auto again = engine->Get(kCollection, kProbeId);
  if (!again) return Fail("get after reopen", again.error());
  if (reinfo->num_vectors != info->num_vectors || again->vector != record->vector ||
      again->attributes != record->attributes) {
    return Fail("reopen", strata::Status(strata::StatusCode::kCorruption,
                                         "the reopened collection differs from what was written"));
  }
  std::cout << "after reopen: collection '" << kCollection << "' holds " << reinfo->num_vectors
            << " vectors; id " << kProbeId << " unchanged\n";
  std::cout << "OK\n";
  return 0;
}
