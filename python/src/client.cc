// strata.Client: the Engine's methods over the network (client/client.h).

#include <mutex>
#include <unordered_map>

#include "client/client.h"
#include "python/src/common.h"

namespace strata::python {

namespace {

// Encoded size of one upsert record, for splitting batches under the server's frame limit.
size_t RecordBytes(const Record& r) {
  size_t n = 8 + 4 * r.vector.size() + 2;
  for (const auto& a : r.attributes) {
    n += 8 + a.name.size();
    if (const auto* s = std::get_if<std::string>(&a.value)) n += s->size();
    if (const auto* t = std::get_if<TagList>(&a.value)) {
      for (const auto& s : *t) n += 4 + s.size();
    }
    n += 8;
  }
  return n;
}

// One connection, shared by the Python threads that use this object: calls are
// serialized by a mutex (taken after the GIL is released).
class PyClient {
 public:
  PyClient(const std::string& host, uint16_t port, py::handle token, uint32_t timeout_ms) {
    client::ClientOptions o;
    if (!token.is_none()) o.token = token.cast<std::string>();
    o.client_name = "strata-python";
    o.io_timeout_ms = timeout_ms;
    py::gil_scoped_release release;
    client_ = ValueOrThrow(client::Client::Connect(host, port, o));
  }

  // Runs fn(client) without the GIL, one call at a time.
  template <typename Fn>
  auto With(Fn fn) {
    py::gil_scoped_release release;
    std::lock_guard lock(mu_);
    if (!client_) Throw(Status(StatusCode::kInvalidArgument, "the client is closed"));
    return fn(*client_);
  }

  void Close() {
    py::gil_scoped_release release;
    std::lock_guard lock(mu_);
    client_.reset();
  }

  size_t Upsert(const std::string& collection, py::handle ids_obj, py::handle vectors, py::handle attributes) {
    const std::vector<VectorId> ids = ToIds(ids_obj, "ids");
    const Matrix m = ToMatrix(vectors, "vectors", 0);
    if (ids.size() != m.rows) ThrowInvalid("ids: {} ids for {} vectors", ids.size(), m.rows);
    std::vector<Record> records(m.rows);
    py::sequence attr_rows;
    if (!attributes.is_none()) {
      if (py::isinstance<py::dict>(attributes) && m.rows == 1) {
        py::list l;
        l.append(attributes);
        attr_rows = l;
      } else if (!py::isinstance<py::sequence>(attributes) || py::isinstance<py::str>(attributes)) {
        ThrowInvalid("attributes: expected a list of dicts (one per vector)");
      } else {
        attr_rows = py::reinterpret_borrow<py::sequence>(attributes);
      }
      if (attr_rows.size() != m.rows) ThrowInvalid("attributes: {} entries for {} vectors", attr_rows.size(), m.rows);
    }
    for (size_t i = 0; i < m.rows; ++i) {
      records[i].id = ids[i];
      records[i].vector.assign(m.row(i), m.row(i) + m.dim);
      if (!attributes.is_none()) records[i].attributes = ToAttributes(attr_rows[i], i);
    }
    return With([&](client::Client& c) {
      // Split under the server's limits (records per request, frame size); each
      // request is one atomic batch on the server.
      const size_t max_batch = std::max<size_t>(1, c.server().max_batch);
      const size_t max_bytes = c.server().max_payload > 4096 ? c.server().max_payload - 4096 : 1;
      size_t applied = 0, begin = 0;
      while (begin < records.size()) {
        size_t end = begin, bytes = 64 + collection.size();
        while (end < records.size() && end - begin < max_batch) {
          const size_t b = RecordBytes(records[end]);
          if (end > begin && bytes + b > max_bytes) break;
          bytes += b;
          ++end;
        }
        applied += ValueOrThrow(c.Upsert(collection, uint32_t(m.dim),
                                         std::span<const Record>(records.data() + begin, end - begin)));
        begin = end;
      }
      return applied;
    });
  }

  size_t Delete(const std::string& collection, py::handle ids_obj) {
    const std::vector<VectorId> ids = ToIds(ids_obj, "ids");
    return With([&](client::Client& c) {
      const size_t step = std::max<size_t>(1, c.server().max_batch);
      size_t applied = 0;
      for (size_t b = 0; b < ids.size(); b += step) {
        applied += ValueOrThrow(c.Delete(collection, std::span<const VectorId>(ids).subspan(b, std::min(step, ids.size() - b))));
      }
      return applied;
    });
  }

  std::vector<std::optional<Record>> Fetch(client::Client& c, const std::string& collection,
                                                     const std::vector<VectorId>& ids) {
    std::vector<std::optional<Record>> out;
    const size_t step = std::max<size_t>(1, c.server().max_batch);
    for (size_t b = 0; b < ids.size(); b += step) {
      auto part = ValueOrThrow(c.Get(collection, std::span<const VectorId>(ids).subspan(b, std::min(step, ids.size() - b))));
      for (auto& r : part) out.push_back(std::move(r));
    }
    return out;
  }

  py::object Get(const std::string& collection, py::handle ids_obj) {
    const bool one = IsScalarId(ids_obj);
    const std::vector<VectorId> ids = ToIds(ids_obj, "ids");
    auto records = With([&](client::Client& c) { return Fetch(c, collection, ids); });
    py::list out;
    for (auto& r : records) {
      if (!r) {
        out.append(py::none());
        continue;
      }
      out.append(RecordDict(*r));
    }
    if (one) return out[0];
    return out;
  }

  py::tuple Search(const std::string& collection, py::handle queries, uint32_t k, std::optional<double> recall,
                   std::optional<std::string> filter, std::optional<uint32_t> ef,
                   std::optional<uint32_t> max_lists, bool with_attributes, bool explain,
                   const std::string& strategy, uint32_t pipeline) {
    if (k == 0) ThrowInvalid("k must be at least 1");
    if (pipeline == 0) ThrowInvalid("pipeline must be at least 1");
    const SearchOptions o = ToSearchOptions(k, recall, filter, ef, max_lists, strategy);
    const Matrix q = ToMatrix(queries, "queries", 0);
    std::vector<std::vector<Neighbor>> results;
    std::vector<std::string> explains;
    std::unordered_map<VectorId, std::optional<Record>> found;
    std::vector<std::vector<std::optional<Record>>> hit_records;  // with_attributes, without explain
    With([&](client::Client& c) {
      if (explain) {
        for (size_t i = 0; i < q.rows; ++i) {
          auto r = c.Explain(collection, std::span<const float>(q.row(i), q.dim), o);
          if (!r) Throw(r.error().WithContext(fmt::format("query {}", i)));
          results.push_back(std::move(r->first));
          explains.push_back(r->second.ToJson());
        }
      } else if (with_attributes) {
        // search_with: the hits with their attributes, as many queries per request as the
        // server takes (no get per hit).
        SearchOptions oa = o;
        oa.with_attributes = true;
        const size_t step = std::max<size_t>(1, c.server().max_batch);
        for (size_t b = 0; b < q.rows; b += step) {
          const size_t n = std::min(step, q.rows - b);
          auto reply = ValueOrThrow(c.SearchWith(collection, q.row(b), uint32_t(q.dim), uint32_t(n), oa));
          for (auto& row : reply.results) {
            std::vector<Neighbor> ns;
            std::vector<std::optional<Record>> rs;
            for (KeyedNeighbor& h : row) {
              ns.push_back({h.id, h.distance});
              rs.push_back(Record{h.id, {}, std::move(h.attributes), std::move(h.key)});
            }
            results.push_back(std::move(ns));
            hit_records.push_back(std::move(rs));
          }
        }
      } else if (q.rows == 1) {
        results.push_back(ValueOrThrow(c.Search(collection, std::span<const float>(q.data, q.dim), o)));
      } else if (q.rows > 1) {
        // One frame per query, `pipeline` in flight: the server's workers take them in parallel.
        results = ValueOrThrow(c.SearchPipelined(collection, q.data, uint32_t(q.dim), uint32_t(q.rows), o, pipeline));
      }
      if (with_attributes && explain) {
        std::vector<VectorId> ids;
        for (const auto& row : results) {
          for (const auto& n : row) {
            if (found.emplace(n.id, std::nullopt).second) ids.push_back(n.id);
          }
        }
        auto records = Fetch(c, collection, ids);
        for (size_t i = 0; i < ids.size(); ++i) found[ids[i]] = std::move(records[i]);
      }
      return 0;
    });
    py::list rows;
    if (with_attributes && !explain) {
      for (const auto& row : hit_records) {
        py::list hits;
        for (const auto& r : row) hits.append(r ? py::object(FromAttributes(r->attributes)) : py::none());
        rows.append(std::move(hits));
      }
    } else if (with_attributes) {
      for (const auto& row : results) {
        py::list hits;
        for (const auto& n : row) {
          const auto& r = found[n.id];
          hits.append(r ? py::object(FromAttributes(r->attributes)) : py::none());
        }
        rows.append(std::move(hits));
      }
    }
    return SearchResult(results, k, q.one_row, with_attributes ? &rows : nullptr, explain ? &explains : nullptr);
  }

 private:
  std::mutex mu_;
  std::unique_ptr<client::Client> client_;
};

}  // namespace

void BindClient(py::module_& m) {
  py::class_<PyClient>(m, "Client", R"doc(
A connection to a strata-server (docs/PROTOCOL.md) with the Engine's methods.
Searches over a query matrix are pipelined: one frame per query, `pipeline` in
flight, answered by the server's workers in parallel. Upserts larger than the
server's batch or frame limit are split into several requests (each atomic on
its own). One connection per Client; calls from several Python threads are
serialized on it (open one Client per thread for parallel requests).

Errors: the server's errors become the same exceptions as the Engine's; a
broken connection raises IoError (an OSError) and closes the Client for good.
)doc")
      .def(py::init<const std::string&, uint16_t, py::handle, uint32_t>(), py::arg("host") = "127.0.0.1",
           py::arg("port") = 7420, py::arg("token") = py::none(), py::arg("timeout_ms") = 60000,
           "Connects and says hello. token: the server's shared secret, when it needs one.")
      .def("close", &PyClient::Close, "Closes the connection.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyClient& self, py::args) { self.Close(); })
      .def("ping", [](PyClient& self) { self.With([](client::Client& c) { ThrowIfError(c.Ping()); return 0; }); },
           "Round trip to the server.")
      .def_property_readonly("server_version", [](PyClient& self) {
        return self.With([](client::Client& c) { return c.server().server_version; });
      })
      .def("create_collection",
           [](PyClient& self, const std::string& name, uint32_t dim, const std::string& metric, uint32_t M,
              uint32_t ef_construction, uint64_t seal_threshold, uint64_t memory_budget_bytes,
              const std::string& codes, uint32_t rerank) {
             CollectionSpec spec{.name = name,
                                 .dim = dim,
                                 .metric = ValueOrThrow(ParseMetric(metric)),
                                 .hnsw_M = M,
                                 .hnsw_ef_construction = ef_construction,
                                 .seal_threshold = seal_threshold,
                                 .memory_budget_bytes = memory_budget_bytes,
                                 .codes = ValueOrThrow(ParseVectorCodes(codes)),
                                 .rerank = rerank};
             self.With([&](client::Client& c) { ThrowIfError(c.CreateCollection(spec)); return 0; });
           },
           py::arg("name"), py::arg("dim"), py::arg("metric") = "l2", py::arg("M") = 16,
           py::arg("ef_construction") = 200, py::arg("seal_threshold") = 100000, py::arg("memory_budget_bytes") = 0,
           py::arg("codes") = "none", py::arg("rerank") = 0, "As Engine.create_collection.")
      .def("drop_collection",
           [](PyClient& self, const std::string& name) {
             self.With([&](client::Client& c) { ThrowIfError(c.DropCollection(name)); return 0; });
           },
           py::arg("name"), "As Engine.drop_collection.")
      .def("list_collections",
           [](PyClient& self) {
             auto infos = self.With([](client::Client& c) { return ValueOrThrow(c.ListCollections()); });
             py::list out;
             for (const auto& i : infos) out.append(InfoDict(i));
             return out;
           },
           "As Engine.list_collections.")
      .def("describe_collection",
           [](PyClient& self, const std::string& name) {
             return InfoDict(self.With([&](client::Client& c) { return ValueOrThrow(c.DescribeCollection(name)); }));
           },
           py::arg("name"), "As Engine.describe_collection.")
      .def("upsert", &PyClient::Upsert, py::arg("collection"), py::arg("ids"), py::arg("vectors"),
           py::arg("attributes") = py::none(),
           "As Engine.upsert (split into several atomic requests past the server's limits).")
      .def("delete", &PyClient::Delete, py::arg("collection"), py::arg("ids"), "As Engine.delete.")
      .def("get", &PyClient::Get, py::arg("collection"), py::arg("ids"), "As Engine.get.")
      .def("flush",
           [](PyClient& self, const std::string& collection) {
             self.With([&](client::Client& c) { ThrowIfError(c.Flush(collection)); return 0; });
           },
           py::arg("collection"), "As Engine.flush.")
      .def("compact",
           [](PyClient& self, const std::string& collection) {
             self.With([&](client::Client& c) { ThrowIfError(c.Compact(collection)); return 0; });
           },
           py::arg("collection"), "As Engine.compact.")
      .def("snapshot",
           [](PyClient& self, const std::string& collection, const std::string& name) {
             auto r = self.With([&](client::Client& c) {
               auto s = c.Snapshot(collection, name);
               ThrowIfError(s.has_value() ? Status::Ok() : s.error());
               return *s;
             });
             py::dict d;
             d["path"] = r.path;
             d["sequence"] = r.sequence;
             d["segments"] = r.segments;
             d["files_linked"] = r.files_linked;
             d["files_copied"] = r.files_copied;
             d["bytes_copied"] = r.bytes_copied;
             return d;
           },
           py::arg("collection"), py::arg("name"),
           "A consistent copy of the collection, taken while writes go on, written by the server as the\n"
           "new folder `name` (letters, digits, '.', '_', '-') of its --snapshot-dir. Returns a dict:\n"
           "path (on the server's host), sequence (the last write batch in it), segments, files_linked,\n"
           "files_copied, bytes_copied. Restore it with `strata restore PATH --into DIR`, or serve it.\n"
           "Raises AlreadyExistsError for a name that exists (never overwritten), ValueError for a bad\n"
           "name, and an error saying how to enable snapshots when the server has no --snapshot-dir.")
      .def("search", &PyClient::Search, py::arg("collection"), py::arg("queries"), py::arg("k") = 10,
           py::arg("recall") = py::none(), py::arg("filter") = py::none(), py::arg("ef") = py::none(),
           py::arg("max_lists") = py::none(), py::arg("with_attributes") = false, py::arg("explain") = false,
           py::arg("strategy") = "auto", py::arg("pipeline") = 32, R"doc(
As Engine.search, over the network: (ids, distances[, attributes][, explain]).
A matrix is sent as one frame per query with `pipeline` requests in flight.
with_attributes sends search_with requests instead (as many queries per request
as the server's max_batch): each hit comes back with its attributes, no get per
hit (with explain=True they are fetched with get requests after the search).
)doc");
}

}  // namespace strata::python
