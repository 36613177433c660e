// strata-cli: upsert (a vector file, in batches that fit the server's limits, by id or
// by key; or one record by key), delete and get (by id and by key), and keys (a listing).

#include <algorithm>
#include <fstream>
#include <limits>
#include <string>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <variant>

#include <fmt/core.h>

#include "api/attribute_rows.h"
#include "client/cli.h"
#include "core/progress.h"
#include "core/timer.h"

namespace strata::cli {
namespace {

std::string AttributesText(const Attributes& attributes) {
  std::string out;
  for (const Attribute& a : attributes) {
    if (!out.empty()) out += ", ";
    out += a.name + "=";
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string>) {
            out += Dump(Json(v));
          } else if constexpr (std::is_same_v<T, TagList>) {
            out += Dump(Json(v));
          } else {
            out += fmt::format("{}", v);
          }
        },
        a.value);
  }
  return out;
}

// `upsert NAME --key K --vector V`: one record by key.
int CmdUpsertOne(const GlobalArgs& g, const UpsertArgs& a) {
  if (!a.vectors.empty() || !a.keys_file.empty() || !a.ids_file.empty() || !a.attributes_file.empty()) {
    return Usage(InvalidArgument("--key and --vector upsert one record: without --vectors, --keys, --ids or "
                                 "--attributes"));
  }
  if (a.vector.empty() || a.key.empty()) {
    return Usage(InvalidArgument("--key and --vector go together (one record by key)"));
  }
  auto vec = ParseVector(a.vector);
  if (!vec) return Usage(vec.error());
  if (Status s = ValidateKey(a.key); !s.ok()) return Usage(s.WithContext("--key"));
  auto c = Open(g);
  if (!c) return Fail(c.error());
  Record rec;
  rec.key = a.key;
  rec.vector = std::move(*vec);
  auto done = (*c)->UpsertKeyed(a.name, uint32_t(rec.vector.size()), std::span<const Record>(&rec, 1));
  if (!done) return Fail(done.error());
  auto got = (*c)->GetKeyed(a.name, std::vector<std::string>{a.key});
  if (got && (*got)[0]) {
    fmt::print("upserted key {} (id {}) into {}\n", KeyText(a.key), (*got)[0]->id, a.name);
  } else {
    fmt::print("upserted key {} into {}\n", KeyText(a.key), a.name);
  }
  return 0;
}

// The lines of a keys file (without their line ends); at least `rows` of them.
Result<std::vector<std::string>> ReadKeys(const std::string& path, size_t rows) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(IOError("{}: cannot open the keys file", path));
  std::vector<std::string> keys;
  std::string line;
  while (keys.size() < rows && std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (Status s = ValidateKey(line); !s.ok()) {
      return Error(s.WithContext(fmt::format("{}: line {}", path, keys.size() + 1)));
    }
    keys.push_back(std::move(line));
  }
  if (keys.size() < rows) {
    return Error(InvalidArgument("{}: {} keys for {} vectors (one key per line, line i for row i)", path,
                                 keys.size(), rows));
  }
  return keys;
}


// Encoded size of a record's attributes on the wire (u16 count; per attribute the name,
// a type byte and the value: docs/PROTOCOL.md).
size_t AttributeWireBytes(const Attributes& attributes) {
  size_t n = 2;
  for (const Attribute& at : attributes) {
    n += 4 + at.name.size() + 1;
    std::visit(
        [&n](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string>) {
            n += 4 + v.size();
          } else if constexpr (std::is_same_v<T, TagList>) {
            n += 4;
            for (const std::string& tag : v) n += 4 + tag.size();
          } else {
            n += 8;
          }
        },
        at.value);
  }
  return n;
}

// What upsert takes per row besides the vector: ids (--ids, or the attribute rows' "id"),
// keys (--keys), attributes (--attributes); each empty when not given. Every file must have
// exactly one row per vector.
struct RowInputs {
  std::vector<VectorId> ids;
  std::vector<std::string> keys;
  std::vector<Attributes> attributes;
};

Result<RowInputs> ReadRowInputs(const UpsertArgs& a, size_t rows) {
  RowInputs in;
  if (!a.ids_file.empty()) {
    if (a.ids_file.ends_with(".npy")) {
      STRATA_ASSIGN_OR_RETURN(in.ids, storage::ReadIdsNpy(a.ids_file));
    } else {
      STRATA_ASSIGN_OR_RETURN(auto lines, ReadAttributeRows(a.ids_file));
      for (size_t i = 0; i < lines.size(); ++i) {
        if (!lines[i].id) {
          return Error(InvalidArgument("{}: row {} has no id (one id per line: 7, or {{\"id\": 7}})", a.ids_file, i));
        }
        in.ids.push_back(*lines[i].id);
      }
    }
    if (in.ids.size() != rows) {
      return Error(InvalidArgument("--ids {} holds {} ids for {} vectors in {} (one id per row)", a.ids_file,
                                   in.ids.size(), rows, a.vectors));
    }
  }
  if (!a.attributes_file.empty()) {
    STRATA_ASSIGN_OR_RETURN(auto lines, ReadAttributeRows(a.attributes_file));
    if (lines.size() != rows) {
      return Error(InvalidArgument("--attributes {} has {} rows for {} vectors in {} (one row per vector)",
                                   a.attributes_file, lines.size(), rows, a.vectors));
    }
    const bool any_id = std::any_of(lines.begin(), lines.end(), [](const AttributeRow& r) { return r.id.has_value(); });
    if (any_id && !a.keys_file.empty()) {
      return Error(InvalidArgument("--attributes {} gives ids, but --keys names the records by key",
                                   a.attributes_file));
    }
    if (any_id && a.id_offset != 0) {
      return Error(InvalidArgument("--attributes {} gives ids: --id-offset does not apply", a.attributes_file));
    }
    for (size_t i = 0; i < lines.size(); ++i) {
      if (!lines[i].id) {
        if (any_id && in.ids.empty()) {
          return Error(InvalidArgument("--attributes {}: row {} has no id, others do (all rows or none)",
                                       a.attributes_file, i));
        }
      } else if (!a.ids_file.empty() && in.ids[i] != *lines[i].id) {
        return Error(InvalidArgument("row {}: --ids gives id {}, --attributes {} gives {}", i, in.ids[i],
                                     a.attributes_file, *lines[i].id));
      }
      in.attributes.push_back(std::move(lines[i].attributes));
    }
    if (any_id && a.ids_file.empty()) {
      for (const AttributeRow& r : lines) in.ids.push_back(*r.id);
    }
  }
  for (const VectorId id : in.ids) {
    if (id >= kKeyedIdBase) {
      return Error(InvalidArgument("id {} is in the range kept for records written by key (from 2^63)", id));
    }
  }
  if (!a.keys_file.empty()) {
    STRATA_ASSIGN_OR_RETURN(in.keys, ReadKeys(a.keys_file, rows));
  }
  return in;
}

}  // namespace

int CmdUpsert(const GlobalArgs& g, const UpsertArgs& a) {
  if (!a.key.empty() || !a.vector.empty()) return CmdUpsertOne(g, a);
  if (a.vectors.empty()) return Usage(InvalidArgument("give --vectors FILE, or --key with --vector"));
  if (a.batch == 0) return Usage(InvalidArgument("--batch must be >= 1"));
  if (!a.keys_file.empty() && !a.ids_file.empty()) {
    return Usage(InvalidArgument("--keys and --ids do not go together (records by key, or by id)"));
  }
  if (!a.ids_file.empty() && a.id_offset != 0) {
    return Usage(InvalidArgument("--ids and --id-offset do not go together"));
  }
  if (!a.keys_file.empty() && a.id_offset != 0) {
    return Usage(InvalidArgument("--keys and --id-offset do not go together"));
  }
  auto shape = storage::ProbeVectors(a.vectors);
  if (!shape) return Usage(shape.error());
  // float16, int8 and uint8 files go as they are (upsert_typed), unless asked otherwise.
  const std::optional<ElementType> narrow = a.send_float32 ? std::nullopt : storage::NarrowElementType(*shape);
  if (!narrow) NoteConversion(a.vectors, *shape);
  // Every input is read and checked before anything is sent.
  auto rows = ReadRowInputs(a, shape->rows);
  if (!rows) return Usage(rows.error());
  const std::vector<VectorId>& ids = rows->ids;
  const std::vector<std::string>& keys = rows->keys;
  const std::vector<Attributes>& attributes = rows->attributes;
  size_t n_rows = shape->rows;
  if (a.limit > 0) n_rows = std::min(n_rows, a.limit);
  if (ids.empty() && n_rows > 0 && a.id_offset > std::numeric_limits<uint64_t>::max() - (n_rows - 1)) {
    return Usage(InvalidArgument("--id-offset {} + {} rows overflows a 64-bit id", a.id_offset, n_rows));
  }
  auto c = Open(g);
  if (!c) return Fail(c.error());
  Client& client = **c;
  auto info = client.DescribeCollection(a.name);
  if (!info) return Fail(info.error());
  if (info->spec.dim != shape->dim) {
    return Fail(InvalidArgument("{} has dimension {}, collection {} has {}", a.vectors, shape->dim,
                                a.name, info->spec.dim));
  }
  const uint32_t dim = uint32_t(shape->dim);
  // Requests must fit the server's limits: records per request, and the frame size (per
  // record: u64 id or the key, dim floats, the attributes; plus the name and two counts).
  size_t batch = a.batch;
  if (client.server().max_batch > 0) batch = std::min<size_t>(batch, client.server().max_batch);
  const size_t max_payload = client.server().max_payload > 0 ? client.server().max_payload : SIZE_MAX;
  // Whether narrow rows still go as they are: a server before opcode 29, or a cluster node that
  // does not route upsert_typed, answers Unimplemented, and the rest go widened (upsert).
  bool typed = narrow.has_value();
  size_t overhead = 4 + a.name.size() + 8 + (typed ? 2 : 0);
  size_t value_bytes = typed ? ElementSize(*narrow) : sizeof(float);
  auto record_bytes = [&](size_t row) {
    size_t n = (keys.empty() ? 8 : 4 + keys[row].size()) + size_t(dim) * value_bytes;
    return n + (attributes.empty() ? 2 : AttributeWireBytes(attributes[row]));
  };
  // Read the file in chunks (bounded memory for large files); cut requests by count and size.
  const size_t chunk = std::max<size_t>(batch, 65536);
  Progress progress("upsert", n_rows);
  Timer timer;
  std::vector<Record> records;
  std::vector<uint8_t> elements;  // narrow: the records' vectors as they are in the file
  uint64_t applied = 0;
  size_t batches = 0;
  auto send = [&](size_t first_row) -> Status {
    if (records.empty()) return Status::Ok();
    Result<uint64_t> done = uint64_t{0};
    if (typed) {
      done = client.UpsertTyped(a.name, dim, *narrow, elements, records, !keys.empty());
      if (!done && done.error().code() == StatusCode::kUnimplemented && client.is_open()) {
        fmt::print(stderr, "strata-cli: {}; sending float32 instead\n", done.error().message());
        typed = false;
        overhead -= 2;
        value_bytes = sizeof(float);
        const size_t row_bytes = size_t(dim) * ElementSize(*narrow);
        for (size_t i = 0; i < records.size(); ++i) {
          records[i].vector.resize(dim);
          WidenRow(*narrow, elements.data() + i * row_bytes, dim, records[i].vector.data());
        }
      }
    }
    if (!typed) done = keys.empty() ? client.Upsert(a.name, dim, records) : client.UpsertKeyed(a.name, dim, records);
    elements.clear();
    if (!done) {
      return done.error().WithContext(
          fmt::format("rows {}..{} of {}", first_row, first_row + records.size() - 1, a.vectors));
    }
    applied += *done;
    ++batches;
    progress.Add(records.size());
    records.clear();
    return Status::Ok();
  };
  size_t batch_first = 0, batch_bytes = overhead;
  for (size_t first = 0; first < n_rows; first += chunk) {
    storage::ReadOptions opt;
    opt.first_row = first;
    opt.max_rows = std::min(chunk, n_rows - first);
    // Narrow files are read as they are (2 or 1 bytes a value), never widened here.
    Result<VectorSet> part = narrow ? VectorSet() : storage::ReadVectors(a.vectors, opt);
    if (!part) return Fail(part.error());
    Result<storage::RawRows> raw = narrow ? storage::ReadRawRows(a.vectors, opt) : storage::RawRows{};
    if (!raw) return Fail(raw.error());
    const size_t part_rows = narrow ? raw->rows : part->size();
    for (size_t i = 0; i < part_rows; ++i) {
      const size_t row = first + i;
      const size_t bytes = record_bytes(row);
      if (overhead + bytes > max_payload) {
        return Fail(InvalidArgument("row {} of {} takes {} bytes, over the server's frame limit of {} bytes",
                                    row, a.vectors, overhead + bytes, max_payload));
      }
      if (records.size() == batch || batch_bytes + bytes > max_payload) {
        if (Status s = send(batch_first); !s.ok()) return Fail(s);
        batch_bytes = overhead;
      }
      if (records.empty()) batch_first = row;
      Record& r = records.emplace_back();
      r.id = ids.empty() ? a.id_offset + row : ids[row];
      if (!keys.empty()) r.key = keys[row];
      if (typed) {
        elements.insert(elements.end(), raw->row(i), raw->row(i) + size_t(dim) * value_bytes);
      } else if (narrow) {  // the server does not take them as they are
        r.vector.resize(dim);
        WidenRow(*narrow, raw->row(i), dim, r.vector.data());
      } else {
        r.vector.assign(part->row(i), part->row(i) + dim);
      }
      // An upsert replaces the whole record: a row without attributes leaves none.
      if (!attributes.empty()) r.attributes = attributes[row];
      batch_bytes += bytes;
    }
  }
  if (Status s = send(batch_first); !s.ok()) return Fail(s);
  progress.Finish();
  const double s = timer.Seconds();
  if (a.json) {
    fmt::print("{}\n", Dump(Json{{"command", "upsert"},
                                 {"collection", a.name},
                                 {"upserted", applied},
                                 {"by_key", !keys.empty()},
                                 {"with_attributes", !attributes.empty()},
                                 {"sent_as", std::string(typed ? ElementTypeName(*narrow) : "float32")},
                                 {"requests", batches},
                                 {"seconds", s}}));
    return 0;
  }
  fmt::print("upserted {} vectors{}{} into {} in {:.2f} s ({:.0f} vectors/s, {} requests{})\n", applied,
             keys.empty() ? "" : " by key", attributes.empty() ? "" : " with attributes", a.name, s,
             s > 0 ? double(applied) / s : 0.0, batches,
             typed ? fmt::format(", sent as {}", ElementTypeName(*narrow)) : std::string());
  return 0;
}

int CmdDelete(const GlobalArgs& g, const std::string& name, const std::vector<uint64_t>& ids,
              const std::vector<std::string>& keys) {
  if (ids.empty() && keys.empty()) return Usage(InvalidArgument("give ids, or --key (repeatable)"));
  auto c = Open(g);
  if (!c) return Fail(c.error());
  if (!ids.empty()) {
    auto applied = (*c)->Delete(name, ids);
    if (!applied) return Fail(applied.error());
    // `applied` counts every id sent, whether or not it existed: say so rather than suggest
    // that some ids were skipped.
    fmt::print("delete of {} ids applied to {} (ids that did not exist count too)\n", *applied,
               name);
  }
  if (!keys.empty()) {
    auto applied = (*c)->DeleteKeyed(name, keys);
    if (!applied) return Fail(applied.error());
    fmt::print("delete of {} keys applied to {} (keys that did not exist count too)\n", *applied,
               name);
  }
  return 0;
}

int CmdGet(const GlobalArgs& g, const std::string& name, const std::vector<uint64_t>& ids,
           const std::vector<std::string>& keys, bool json) {
  if (ids.empty() && keys.empty()) return Usage(InvalidArgument("give ids, or --key (repeatable)"));
  auto c = Open(g);
  if (!c) return Fail(c.error());
  // What was asked for (an id or a key) and what came back, in the order asked.
  std::vector<std::pair<std::string, std::optional<Record>>> found;
  if (!ids.empty()) {
    auto records = (*c)->Get(name, ids);
    if (!records) return Fail(records.error());
    for (size_t i = 0; i < ids.size(); ++i) found.emplace_back(std::to_string(ids[i]), std::move((*records)[i]));
  }
  if (!keys.empty()) {
    auto records = (*c)->GetKeyed(name, keys);
    if (!records) return Fail(records.error());
    for (size_t i = 0; i < keys.size(); ++i) found.emplace_back(KeyText(keys[i]), std::move((*records)[i]));
  }
  if (json) {
    Json a = Json::array();
    for (size_t i = 0; i < found.size(); ++i) {
      const auto& r = found[i].second;
      Json o;
      if (i < ids.size()) {
        o["id"] = ids[i];
      } else {
        o["key"] = keys[i - ids.size()];
      }
      o["found"] = r.has_value();
      if (r) {
        o["id"] = r->id;
        if (!r->key.empty()) o["key"] = r->key;
        o["vector"] = r->vector;
        o["attributes"] = AttributesJson(r->attributes);
      }
      a.push_back(std::move(o));
    }
    fmt::print("{}\n", Dump(a));
    return 0;
  }
  for (const auto& [asked, r] : found) {
    if (!r) {
      fmt::print("{}: not found\n", asked);
      continue;
    }
    std::string v;
    for (size_t j = 0; j < r->vector.size(); ++j) v += fmt::format("{}{}", j ? "," : "", r->vector[j]);
    fmt::print("{}", r->id);
    if (!r->key.empty()) fmt::print(" key={}", KeyText(r->key));
    fmt::print(": [{}]", v);
    if (!r->attributes.empty()) fmt::print(" {{{}}}", AttributesText(r->attributes));
    fmt::print("\n");
  }
  return 0;
}

int CmdKeys(const GlobalArgs& g, const std::string& name, uint64_t cursor, uint32_t count, bool all,
            bool json) {
  if (count == 0) return Usage(InvalidArgument("--count must be >= 1"));
  auto c = Open(g);
  if (!c) return Fail(c.error());
  if (client::Client& client = **c; client.server().max_batch > 0) count = std::min(count, client.server().max_batch);
  Json listed = Json::array();
  uint64_t next = cursor;
  size_t n = 0;
  do {
    auto page = (*c)->ListKeys(name, next, count);
    if (!page) return Fail(page.error());
    for (size_t i = 0; i < page->keys.size(); ++i) {
      if (json) {
        listed.push_back({{"id", page->ids[i]}, {"key", page->keys[i]}});
      } else {
        fmt::print("{}\t{}\n", page->ids[i], KeyText(page->keys[i]));
      }
    }
    n += page->keys.size();
    next = page->next_cursor;
  } while (all && next != 0);
  if (json) {
    fmt::print("{}\n", Dump(Json{{"keys", listed}, {"next_cursor", next}}));
  } else {
    fmt::print(stderr, "{} keys{}\n", n, next != 0 ? fmt::format("; more from --cursor {}", next) : "");
  }
  return 0;
}

}  // namespace strata::cli
