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

#include "client/cli.h"
#include "core/progress.h"
#include "core/timer.h"

namespace strata::cli {
namespace {

Json AttributesJson(const Attributes& attributes) {
  Json o = Json::object();
  for (const Attribute& a : attributes) {
    std::visit([&](const auto& v) { o[a.name] = v; }, a.value);
  }
  return o;
}

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
  if (!a.vectors.empty() || !a.keys_file.empty()) {
    return Fail(InvalidArgument("--key and --vector upsert one record: without --vectors or --keys"));
  }
  if (a.vector.empty() || a.key.empty()) {
    return Fail(InvalidArgument("--key and --vector go together (one record by key)"));
  }
  auto vec = ParseVector(a.vector);
  if (!vec) return Fail(vec.error());
  if (Status s = ValidateKey(a.key); !s.ok()) return Fail(s.WithContext("--key"));
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

}  // namespace

int CmdUpsert(const GlobalArgs& g, const UpsertArgs& a) {
  if (!a.key.empty() || !a.vector.empty()) return CmdUpsertOne(g, a);
  if (a.vectors.empty()) return Fail(InvalidArgument("give --vectors FILE, or --key with --vector"));
  auto shape = storage::ProbeVectors(a.vectors);
  if (!shape) return Fail(shape.error());
  NoteConversion(a.vectors, *shape);
  size_t rows = shape->rows;
  if (a.limit > 0) rows = std::min(rows, a.limit);
  if (a.batch == 0) return Fail(InvalidArgument("--batch must be >= 1"));
  std::vector<std::string> keys;
  if (!a.keys_file.empty()) {
    if (a.id_offset != 0) return Fail(InvalidArgument("--keys and --id-offset do not go together"));
    auto read = ReadKeys(a.keys_file, rows);
    if (!read) return Fail(read.error());
    keys = std::move(*read);
  }
  if (rows > 0 && a.id_offset > std::numeric_limits<uint64_t>::max() - (rows - 1)) {
    return Fail(InvalidArgument("--id-offset {} + {} rows overflows a 64-bit id", a.id_offset, rows));
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
  // Requests must fit the server's limits: records per request, and the frame size
  // (per record: u64 id -- or a key, of the longest in the file --, dim floats, u16
  // attribute count; plus the name and two counts).
  size_t batch = a.batch;
  if (client.server().max_batch > 0) batch = std::min<size_t>(batch, client.server().max_batch);
  if (client.server().max_payload > 0) {
    size_t longest = 0;
    for (const std::string& k : keys) longest = std::max(longest, k.size());
    const size_t per_record = (keys.empty() ? 8 : 4 + longest) + size_t(dim) * 4 + 2;
    const size_t overhead = 4 + a.name.size() + 8;
    const size_t fits = client.server().max_payload > overhead
                            ? (client.server().max_payload - overhead) / per_record
                            : 0;
    if (fits == 0) {
      return Fail(InvalidArgument("one vector of dim {} does not fit the server's frame limit "
                                  "of {} bytes", dim, client.server().max_payload));
    }
    batch = std::min(batch, fits);
  }
  // Read the file in chunks of whole batches (bounded memory for large files).
  const size_t chunk = batch * std::max<size_t>(1, 65536 / batch);
  Progress progress("upsert", rows);
  Timer timer;
  std::vector<Record> records;
  uint64_t applied = 0;
  for (size_t first = 0; first < rows; first += chunk) {
    storage::ReadOptions opt;
    opt.first_row = first;
    opt.max_rows = std::min(chunk, rows - first);
    auto part = storage::ReadVectors(a.vectors, opt);
    if (!part) return Fail(part.error());
    for (size_t b = 0; b < part->size(); b += batch) {
      const size_t n = std::min(batch, part->size() - b);
      records.resize(n);
      for (size_t i = 0; i < n; ++i) {
        records[i].id = a.id_offset + first + b + i;
        if (!keys.empty()) records[i].key = keys[first + b + i];
        records[i].vector.assign(part->row(b + i), part->row(b + i) + dim);
        records[i].attributes.clear();
      }
      auto done = keys.empty() ? client.Upsert(a.name, dim, records) : client.UpsertKeyed(a.name, dim, records);
      if (!done) {
        return Fail(done.error().WithContext(
            fmt::format("rows {}..{} of {}", first + b, first + b + n - 1, a.vectors)));
      }
      applied += *done;
      progress.Add(n);
    }
  }
  progress.Finish();
  const double s = timer.Seconds();
  fmt::print("upserted {} vectors{} into {} in {:.2f} s ({:.0f} vectors/s, batches of {})\n",
             applied, keys.empty() ? "" : " by key", a.name, s, s > 0 ? double(applied) / s : 0.0, batch);
  return 0;
}

int CmdDelete(const GlobalArgs& g, const std::string& name, const std::vector<uint64_t>& ids,
              const std::vector<std::string>& keys) {
  if (ids.empty() && keys.empty()) return Fail(InvalidArgument("give ids, or --key (repeatable)"));
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
  if (ids.empty() && keys.empty()) return Fail(InvalidArgument("give ids, or --key (repeatable)"));
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
  if (count == 0) return Fail(InvalidArgument("--count must be >= 1"));
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
