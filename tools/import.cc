#include "tools/import.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/progress.h"
#include "core/vector_set.h"
#include "storage/dataset_io.h"
#include "storage/file_util.h"

namespace strata::tools {
namespace {

// SAX handler for the wink embeddings JSON. Only three things matter: the
// "dimensions" and "size" numbers at top level, and each array under
// "vectors": [dim floats, norm, row index]. Streaming keeps memory at one copy
// of the vectors instead of a DOM several times the file size.
class GloveSax : public nlohmann::json_sax<nlohmann::json> {
 public:
  using json = nlohmann::json;

  bool null() override { return Unexpected("null"); }
  bool boolean(bool) override { return Unexpected("boolean"); }
  bool number_integer(json::number_integer_t v) override { return Number(double(v)); }
  bool number_unsigned(json::number_unsigned_t v) override { return Number(double(v)); }
  bool number_float(json::number_float_t v, const json::string_t&) override { return Number(v); }
  bool string(json::string_t&) override { return true; }  // words list, or other strings
  bool binary(json::binary_t&) override { return Unexpected("binary"); }
  bool start_object(std::size_t) override {
    ++depth_;
    return true;
  }
  bool key(json::string_t& k) override {
    if (depth_ == 1) top_key_ = k;
    if (depth_ == 2 && top_key_ == "vectors") word_ = k;
    return true;
  }
  bool end_object() override {
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override {
    ++depth_;
    if (depth_ == 3 && top_key_ == "vectors") {
      if (dim_ == 0 || size_ == 0) return Fail("\"vectors\" appears before \"dimensions\"/\"size\"");
      current_.clear();
    }
    return true;
  }
  bool end_array() override {
    if (depth_ == 3 && top_key_ == "vectors") {
      if (current_.size() != dim_ + 2) {
        return Fail("vector of word '" + word_ + "' has " + std::to_string(current_.size()) +
                    " numbers, expected " + std::to_string(dim_ + 2));
      }
      double idx = current_[dim_ + 1];
      if (idx < 0 || idx >= double(size_) || idx != std::floor(idx)) {
        return Fail("word '" + word_ + "' has row index " + std::to_string(idx) + " out of range");
      }
      size_t row = size_t(idx);
      if (seen_[row]) return Fail("row " + std::to_string(row) + " appears twice");
      seen_[row] = 1;
      float* dst = vectors_.mutable_row(row);
      for (size_t i = 0; i < dim_; ++i) dst[i] = float(current_[i]);
      ++filled_;
      if (progress_) progress_->Add();
    }
    --depth_;
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    error_ = "JSON parse error at byte " + std::to_string(position) + ": " + ex.what();
    return false;
  }

  Status status() const { return error_.empty() ? Status::Ok() : Corruption("{}", error_); }
  size_t dim() const { return dim_; }
  size_t size() const { return size_; }
  size_t filled() const { return filled_; }
  VectorSet& vectors() { return vectors_; }

 private:
  bool Number(double v) {
    if (depth_ == 1) {
      if (top_key_ == "dimensions") dim_ = size_t(v);
      if (top_key_ == "size") size_ = size_t(v);
      if (dim_ && size_ && vectors_.size() == 0) {
        if (dim_ > 65536 || size_ > 100'000'000) return Fail("implausible dimensions/size");
        auto set = VectorSet::Create(size_, dim_);
        if (!set) return Fail(set.error().message());
        vectors_ = std::move(*set);
        seen_.assign(size_, 0);
        progress_ = std::make_unique<Progress>("import glove", size_);
      }
      return true;
    }
    if (depth_ == 3 && top_key_ == "vectors") current_.push_back(v);
    return true;
  }
  bool Unexpected(const char* what) { return Fail(std::string("unexpected JSON ") + what); }
  bool Fail(std::string msg) {
    error_ = std::move(msg);
    return false;
  }

  int depth_ = 0;
  std::string top_key_, word_, error_;
  size_t dim_ = 0, size_ = 0, filled_ = 0;
  std::vector<double> current_;
  std::vector<uint8_t> seen_;
  VectorSet vectors_;
  std::unique_ptr<Progress> progress_;
};

Result<std::vector<size_t>> ReadQueryIds(const std::filesystem::path& path, size_t rows) {
  std::ifstream in(path);
  if (!in) return Error(NotFound("{}: cannot open query id list", path.string()));
  std::vector<size_t> ids;
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    char* end = nullptr;
    unsigned long long v = std::strtoull(line.c_str(), &end, 10);
    if (end == line.c_str() || *end != '\0') {
      return Error(Corruption("{}: line {} is not a row number: '{}'", path.string(), line_no, line));
    }
    if (v >= rows) {
      return Error(Corruption("{}: line {}: row {} is out of range (data has {} rows)",
                              path.string(), line_no, v, rows));
    }
    if (!ids.empty() && v <= ids.back()) {
      return Error(Corruption("{}: line {}: row numbers must be strictly ascending", path.string(),
                              line_no));
    }
    ids.push_back(size_t(v));
  }
  return ids;
}

}  // namespace

Status ImportGlove(const std::filesystem::path& json_path,
                   const std::filesystem::path& query_ids_path,
                   const std::filesystem::path& out_dir) {
  std::ifstream in(json_path, std::ios::binary);
  if (!in) return NotFound("{}: cannot open", json_path.string());
  GloveSax sax;
  bool ok = nlohmann::json::sax_parse(in, &sax);
  if (!ok || !sax.status().ok()) {
    Status s = sax.status();
    if (s.ok()) s = Corruption("JSON parse failed");
    return s.WithContext(json_path.string());
  }
  if (sax.filled() != sax.size()) {
    return Corruption("{}: {} of {} rows have a vector", json_path.string(), sax.filled(),
                      sax.size());
  }
  STRATA_ASSIGN_OR_RETURN(std::vector<size_t> qids, ReadQueryIds(query_ids_path, sax.size()));
  const VectorSet& all = sax.vectors();
  STRATA_ASSIGN_OR_RETURN(VectorSet base, VectorSet::Create(0, all.dim()));
  STRATA_ASSIGN_OR_RETURN(VectorSet queries, VectorSet::Create(0, all.dim()));
  STRATA_RETURN_IF_ERROR(base.Reserve(all.size() - qids.size()));
  STRATA_RETURN_IF_ERROR(queries.Reserve(qids.size()));
  size_t next_q = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    if (next_q < qids.size() && qids[next_q] == i) {
      STRATA_RETURN_IF_ERROR(queries.Append(all[i]));
      ++next_q;
    } else {
      STRATA_RETURN_IF_ERROR(base.Append(all[i]));
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return IOError("{}: cannot create directory: {}", out_dir.string(), ec.message());
  STRATA_RETURN_IF_ERROR(storage::WriteVectors(out_dir / "base.fbin", base));
  STRATA_RETURN_IF_ERROR(storage::WriteVectors(out_dir / "query.fbin", queries));
  return Status::Ok();
}

Status ImportIdx(const std::filesystem::path& idx_path, const std::filesystem::path& out_path) {
  STRATA_ASSIGN_OR_RETURN(storage::MappedFile file, storage::MappedFile::Open(idx_path));
  const auto* p = reinterpret_cast<const unsigned char*>(file.data());
  if (file.size() < 16) {
    return Corruption("{}: IDX header needs 16 bytes, file has {} (offset 0)", idx_path.string(),
                      file.size());
  }
  auto be32 = [&](size_t off) {
    return uint32_t(p[off]) << 24 | uint32_t(p[off + 1]) << 16 | uint32_t(p[off + 2]) << 8 |
           uint32_t(p[off + 3]);
  };
  if (be32(0) != 0x00000803) {
    return Corruption("{}: bad IDX magic 0x{:08x} at offset 0 (expected 0x00000803, unsigned byte "
                      "3-d images)", idx_path.string(), be32(0));
  }
  size_t n = be32(4), rows = be32(8), cols = be32(12);
  size_t dim = rows * cols, payload = 0;
  if (dim == 0 || !CheckedMul(n, dim, &payload)) {
    return Corruption("{}: IDX sizes {} x {} x {} at offset 4 are invalid", idx_path.string(), n,
                      rows, cols);
  }
  if (file.size() - 16 != payload) {
    return Corruption("{}: IDX header at offset 4 claims {} bytes of images, file holds {}",
                      idx_path.string(), payload, file.size() - 16);
  }
  return storage::WriteU8Vectors(out_path, p + 16, n, dim);
}

}  // namespace strata::tools
