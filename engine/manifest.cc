#include "engine/manifest.h"

#include <nlohmann/json.hpp>

#include "storage/section_file.h"

namespace strata::engine {
namespace fs = std::filesystem;

namespace {
constexpr char kMagic[] = "STRCOLL";
constexpr uint16_t kMajor = 1;
constexpr uint16_t kMinor = 1;  // 1.1: next_key_id
constexpr uint32_t kTagManifest = storage::SectionTag("CMAN");
}  // namespace

bool CollectionManifest::Exists(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(dir / kFile, ec);
}

Result<CollectionManifest> CollectionManifest::Load(const fs::path& dir) {
  CollectionManifest m;
  const fs::path path = dir / kFile;
  if (!Exists(dir)) return m;  // never sealed
  STRATA_ASSIGN_OR_RETURN(storage::SectionFile sf, storage::SectionFile::Open(path, kMagic, kMajor));
  STRATA_ASSIGN_OR_RETURN(auto bytes, sf.Section(kTagManifest));
  try {
    const auto j = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    m.checkpoint = j.at("checkpoint_sequence").get<uint64_t>();
    m.wal_first = j.at("wal_first_sequence").get<uint64_t>();
    m.next_segment = j.at("next_segment_id").get<uint64_t>();
    m.generation = j.at("generation").get<uint64_t>();
    m.next_key_id = j.value("next_key_id", m.next_key_id);
    for (const auto& s : j.at("segments")) {
      m.segments.emplace_back(s.at("id").get<uint64_t>(), s.at("deletes_generation").get<uint64_t>());
    }
  } catch (const nlohmann::json::exception& e) {
    return Error(Corruption("{}: not the expected JSON: {}", path.string(), e.what()));
  }
  if (m.next_key_id < (uint64_t{1} << 63)) {
    return Error(Corruption("{}: next_key_id {} is below the keyed range (2^63)", path.string(), m.next_key_id));
  }
  if (m.wal_first != m.checkpoint + 1) {
    return Error(Corruption("{}: log starts at {} but the checkpoint is {}", path.string(), m.wal_first,
                            m.checkpoint));
  }
  for (const auto& [id, gen] : m.segments) {
    if (id >= m.next_segment || gen > m.generation) {
      return Error(Corruption("{}: segment {} (deletes generation {}) is out of range", path.string(), id, gen));
    }
  }
  return m;
}

Status CollectionManifest::Save(const fs::path& dir) const {
  nlohmann::json j;
  j["checkpoint_sequence"] = checkpoint;
  j["wal_first_sequence"] = wal_first;
  j["next_segment_id"] = next_segment;
  j["generation"] = generation;
  j["next_key_id"] = next_key_id;
  j["segments"] = nlohmann::json::array();
  for (const auto& [sid, gen] : segments) j["segments"].push_back({{"id", sid}, {"deletes_generation", gen}});
  const std::string text = j.dump(1);
  STRATA_ASSIGN_OR_RETURN(auto w, storage::SectionFileWriter::Create(dir / kFile, kMagic, kMajor, kMinor));
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagManifest, std::as_bytes(std::span(text.data(), text.size()))));
  return w.Commit();
}

}  // namespace strata::engine
