#include "engine/catalog.h"

#include <cctype>
#include <string>

#include <nlohmann/json.hpp>

#include "storage/section_file.h"

namespace strata::engine {
namespace fs = std::filesystem;

namespace {

constexpr char kManifestMagic[] = "STRMANI";
constexpr uint16_t kManifestMajor = 1;
// Minor 1: a collection may carry "codes" and "rerank" (absent: none and 0, as in 1.0).
constexpr uint16_t kManifestMinor = 1;
constexpr uint32_t kTagCatalog = storage::SectionTag("CATL");

}  // namespace

Status ValidateSpec(const CollectionSpec& s) {
  if (s.name.empty() || s.name.size() > 64) {
    return InvalidArgument("collection name '{}' must have 1 to 64 characters", s.name);
  }
  for (char c : s.name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') {
      return InvalidArgument("collection name '{}' may only hold letters, digits, '_' and '-'", s.name);
    }
  }
  if (s.dim == 0 || s.dim > 65536) return InvalidArgument("dimension {} must be in 1..65536", s.dim);
  if (s.metric != Metric::kL2 && s.metric != Metric::kInnerProduct && s.metric != Metric::kCosine) {
    return InvalidArgument("unknown metric");
  }
  if (s.hnsw_M < 2 || s.hnsw_M > 256) return InvalidArgument("hnsw_M {} must be in 2..256", s.hnsw_M);
  if (s.hnsw_ef_construction < 1) return InvalidArgument("hnsw_ef_construction must be at least 1");
  if (s.seal_threshold < 1) return InvalidArgument("seal_threshold must be at least 1");
  if (s.codes != VectorCodes::kNone && s.codes != VectorCodes::kSq8) {
    return InvalidArgument("unknown codes value {} (0 none, 1 sq8)", int(s.codes));
  }
  if (s.codes == VectorCodes::kNone && s.rerank != 0) {
    return InvalidArgument("rerank {} needs codes (it is the depth of their rerank)", s.rerank);
  }
  if (s.rerank > kMaxSearchEf) return InvalidArgument("rerank {} must be at most {}", s.rerank, kMaxSearchEf);
  return Status::Ok();
}

Status WriteCatalog(const fs::path& dir, uint64_t next_id, const std::vector<CatalogEntry>& entries) {
  nlohmann::json j;
  j["next_collection_id"] = next_id;
  j["collections"] = nlohmann::json::array();
  for (const CatalogEntry& e : entries) {
    const CollectionSpec& spec = e.spec;
    nlohmann::json c = {{"id", e.id},
                        {"name", spec.name},
                        {"dim", spec.dim},
                        {"metric", std::string(MetricName(spec.metric))},
                        {"hnsw_M", spec.hnsw_M},
                        {"hnsw_ef_construction", spec.hnsw_ef_construction},
                        {"seal_threshold", spec.seal_threshold},
                        {"memory_budget_bytes", spec.memory_budget_bytes}};
    if (spec.codes != VectorCodes::kNone) {
      c["codes"] = std::string(VectorCodesName(spec.codes));
      c["rerank"] = spec.rerank;
    }
    j["collections"].push_back(std::move(c));
  }
  const std::string text = j.dump(1);
  STRATA_ASSIGN_OR_RETURN(auto w, storage::SectionFileWriter::Create(dir / kCatalogFile, kManifestMagic,
                                                                       kManifestMajor, kManifestMinor));
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagCatalog, std::as_bytes(std::span(text.data(), text.size()))));
  return w.Commit();
}

Result<std::vector<CatalogEntry>> ReadCatalog(const fs::path& dir, uint64_t& next_id) {
  const fs::path path = dir / kCatalogFile;
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::vector<CatalogEntry>{};
  STRATA_ASSIGN_OR_RETURN(storage::SectionFile sf,
                          storage::SectionFile::Open(path, kManifestMagic, kManifestMajor));
  STRATA_ASSIGN_OR_RETURN(auto bytes, sf.Section(kTagCatalog));
  const std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  std::vector<CatalogEntry> out;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    next_id = j.at("next_collection_id").get<uint64_t>();
    for (const auto& c : j.at("collections")) {
      CatalogEntry e;
      e.id = c.at("id").get<uint64_t>();
      e.spec.name = c.at("name").get<std::string>();
      e.spec.dim = c.at("dim").get<size_t>();
      auto metric = ParseMetric(c.at("metric").get<std::string>());
      if (!metric) return Error(Corruption("{}: collection '{}': {}", path.string(), e.spec.name,
                                           metric.error().message()));
      e.spec.metric = *metric;
      e.spec.hnsw_M = c.at("hnsw_M").get<uint32_t>();
      e.spec.hnsw_ef_construction = c.at("hnsw_ef_construction").get<uint32_t>();
      // Added after the first manifests were written: absent means the default.
      e.spec.seal_threshold = c.value("seal_threshold", CollectionSpec{}.seal_threshold);
      e.spec.memory_budget_bytes = c.value("memory_budget_bytes", CollectionSpec{}.memory_budget_bytes);
      if (c.contains("codes")) {  // 1.1
        auto codes = ParseVectorCodes(c.at("codes").get<std::string>());
        if (!codes) return Error(Corruption("{}: collection '{}': {}", path.string(), e.spec.name,
                                            codes.error().message()));
        e.spec.codes = *codes;
        e.spec.rerank = c.value("rerank", uint32_t{0});
      }
      if (Status s = ValidateSpec(e.spec); !s.ok()) {
        return Error(Corruption("{}: collection entry is invalid: {}", path.string(), s.message()));
      }
      if (e.id >= next_id) {
        return Error(Corruption("{}: collection id {} is not below next_collection_id {}",
                                path.string(), e.id, next_id));
      }
      out.push_back(std::move(e));
    }
  } catch (const nlohmann::json::exception& e) {
    return Error(Corruption("{}: catalog is not the expected JSON: {}", path.string(), e.what()));
  }
  return out;
}

}  // namespace strata::engine
