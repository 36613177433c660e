// strata-cli: upsert (a vector file, in batches that fit the server's limits),
// delete and get.

#include <algorithm>
#include <limits>
#include <string>
#include <type_traits>
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

}  // namespace

int CmdUpsert(const GlobalArgs& g, const UpsertArgs& a) {
  auto shape = storage::ProbeVectors(a.vectors);
  if (!shape) return Fail(shape.error());
  size_t rows = shape->rows;
  if (a.limit > 0) rows = std::min(rows, a.limit);
  if (a.batch == 0) return Fail(InvalidArgument("--batch must be >= 1"));
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
  // (per record: u64 id, dim floats, u16 attribute count; plus the name and two counts).
  size_t batch = a.batch;
  if (client.server().max_batch > 0) batch = std::min<size_t>(batch, client.server().max_batch);
  if (client.server().max_payload > 0) {
    const size_t per_record = 8 + size_t(dim) * 4 + 2;
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
        records[i].vector.assign(part->row(b + i), part->row(b + i) + dim);
        records[i].attributes.clear();
      }
      auto done = client.Upsert(a.name, dim, records);
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
  fmt::print("upserted {} vectors into {} in {:.2f} s ({:.0f} vectors/s, batches of {})\n",
             applied, a.name, s, s > 0 ? double(applied) / s : 0.0, batch);
  return 0;
}

int CmdDelete(const GlobalArgs& g, const std::string& name, const std::vector<uint64_t>& ids) {
  auto c = Open(g);
  if (!c) return Fail(c.error());
  auto applied = (*c)->Delete(name, ids);
  if (!applied) return Fail(applied.error());
  // `applied` counts every id sent, whether or not it existed: say so rather than suggest
  // that some ids were skipped.
  fmt::print("delete of {} ids applied to {} (ids that did not exist count too)\n", *applied,
             name);
  return 0;
}

int CmdGet(const GlobalArgs& g, const std::string& name, const std::vector<uint64_t>& ids,
           bool json) {
  auto c = Open(g);
  if (!c) return Fail(c.error());
  auto records = (*c)->Get(name, ids);
  if (!records) return Fail(records.error());
  if (json) {
    Json a = Json::array();
    for (size_t i = 0; i < ids.size(); ++i) {
      const auto& r = (*records)[i];
      if (!r) {
        a.push_back({{"id", ids[i]}, {"found", false}});
      } else {
        a.push_back({{"id", r->id}, {"found", true}, {"vector", r->vector},
                     {"attributes", AttributesJson(r->attributes)}});
      }
    }
    fmt::print("{}\n", Dump(a));
    return 0;
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto& r = (*records)[i];
    if (!r) {
      fmt::print("{}: not found\n", ids[i]);
      continue;
    }
    std::string v;
    for (size_t j = 0; j < r->vector.size(); ++j) v += fmt::format("{}{}", j ? "," : "", r->vector[j]);
    fmt::print("{}: [{}]", r->id, v);
    if (!r->attributes.empty()) fmt::print(" {{{}}}", AttributesText(r->attributes));
    fmt::print("\n");
  }
  return 0;
}

}  // namespace strata::cli
