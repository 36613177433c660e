// strata.Engine: engine/strata.h from Python.

#include <omp.h>

#include <atomic>

#include "engine/background_priority.h"
#include "engine/strata.h"
#include "python/src/common.h"

namespace strata::python {

namespace {

Durability ToDurability(const std::string& name) {
  if (name == "sync") return Durability::kSync;
  if (name == "interval") return Durability::kInterval;
  if (name == "none") return Durability::kNone;
  ThrowInvalid("durability '{}': expected sync, interval or none", name);
}

// The Python object. The engine is shared with the calls in flight (each takes
// a reference under the GIL before releasing it), so close() never frees it
// under a running search.
class PyEngine {
 public:
  PyEngine(const std::string& path, const std::string& durability, bool background_compaction,
           const std::string& background_cpus) {
    EngineOptions o;
    o.durability = ToDurability(durability);
    o.background_compaction = background_compaction;
    o.background_cpus = ValueOrThrow(engine::ParseCpuList(background_cpus));
    std::unique_ptr<Engine> e;
    {
      py::gil_scoped_release release;
      e = ValueOrThrow(Engine::Open(path, o), /*file_op=*/true);
    }
    engine_ = std::shared_ptr<Engine>(std::move(e));
  }

  std::shared_ptr<Engine> Get() const {
    if (!engine_) Throw(Status(StatusCode::kInvalidArgument, "the engine is closed"));
    return engine_;
  }
  void Close() {
    std::shared_ptr<Engine> e = std::move(engine_);
    py::gil_scoped_release release;
    e.reset();  // waits for nothing: the last call in flight frees it otherwise
  }

  void CreateCollection(const std::string& name, size_t dim, const std::string& metric, uint32_t M,
                        uint32_t ef_construction, size_t seal_threshold, uint64_t memory_budget_bytes,
                        const std::string& codes, uint32_t rerank) {
    CollectionSpec spec{.name = name,
                        .dim = dim,
                        .metric = ToMetric(metric),
                        .hnsw_M = M,
                        .hnsw_ef_construction = ef_construction,
                        .seal_threshold = seal_threshold,
                        .memory_budget_bytes = memory_budget_bytes,
                        .codes = ValueOrThrow(ParseVectorCodes(codes)),
                        .rerank = rerank};
    auto e = Get();
    py::gil_scoped_release release;
    ThrowIfError(e->CreateCollection(spec));
  }

  size_t Upsert(const std::string& collection, py::handle ids_obj, py::handle vectors_obj,
                py::handle attributes_obj) {
    auto e = Get();
    const std::vector<VectorId> ids = ToIds(ids_obj, "ids");
    // The dimension is checked by the engine (ValidateBatch), which names the operation.
    const Matrix m = ToMatrix(vectors_obj, "vectors", 0);
    if (ids.size() != m.rows) ThrowInvalid("ids: {} ids for {} vectors", ids.size(), m.rows);
    std::vector<engine::Attributes> attributes = ToAttributeRows(attributes_obj, m.rows);
    py::gil_scoped_release release;
    WriteBatch batch;
    for (size_t i = 0; i < m.rows; ++i) {
      batch.Upsert(ids[i], std::span<const float>(m.row(i), m.dim),
                   attributes.empty() ? engine::Attributes{} : std::move(attributes[i]));
    }
    ThrowIfError(e->Write(collection, batch));
    return m.rows;
  }

  size_t BulkLoad(const std::string& collection, py::handle vectors_obj, py::handle ids_obj,
                  py::handle attributes_obj) {
    auto e = Get();
    const Matrix m = ToMatrix(vectors_obj, "vectors", 0);
    std::vector<VectorId> ids;
    if (!ids_obj.is_none()) ids = ToIds(ids_obj, "ids");
    if (!ids.empty() && ids.size() != m.rows) ThrowInvalid("ids: {} ids for {} vectors", ids.size(), m.rows);
    std::vector<engine::Attributes> attributes = ToAttributeRows(attributes_obj, m.rows);
    py::gil_scoped_release release;
    VectorSet set = ToVectorSet(m);
    ThrowIfError(e->BulkLoad(collection, set, ids, attributes));
    return m.rows;
  }

  size_t Delete(const std::string& collection, py::handle ids_obj) {
    auto e = Get();
    const std::vector<VectorId> ids = ToIds(ids_obj, "ids");
    py::gil_scoped_release release;
    WriteBatch batch;
    for (VectorId id : ids) batch.Delete(id);
    ThrowIfError(e->Write(collection, batch));
    return ids.size();
  }

  py::object GetRecords(const std::string& collection, py::handle ids_obj) {
    auto e = Get();
    const bool one = IsScalarId(ids_obj);
    const std::vector<VectorId> ids = ToIds(ids_obj, "ids");
    std::vector<std::optional<Record>> records(ids.size());
    {
      py::gil_scoped_release release;
      for (size_t i = 0; i < ids.size(); ++i) {
        auto r = e->Get(collection, ids[i]);
        if (r) {
          records[i] = std::move(*r);
        } else if (r.error().code() != StatusCode::kNotFound ||
                   r.error().message().find("is not in collection") == std::string::npos) {
          // A missing collection is an error; a missing id is None (Collection::Get's
          // NotFound says "id N is not in collection 'name'").
          Throw(r.error());
        }
      }
    }
    py::list out;
    for (auto& r : records) out.append(r ? RecordDict(*r) : py::none());
    if (one) return out[0];
    return out;
  }

  py::tuple Search(const std::string& collection, py::handle queries_obj, uint32_t k, std::optional<double> recall,
                   std::optional<std::string> filter, std::optional<uint32_t> ef,
                   std::optional<uint32_t> max_lists, bool with_attributes, bool explain,
                   const std::string& strategy, int num_threads) {
    auto e = Get();
    const SearchOptions o = ToSearchOptions(k, recall, filter, ef, max_lists, strategy);
    if (k == 0) ThrowInvalid("k must be at least 1");
    const Matrix q = ToMatrix(queries_obj, "queries", 0);
    std::vector<std::vector<Neighbor>> results;
    std::vector<std::string> explains;
    std::vector<std::vector<std::optional<Record>>> records;
    {
      py::gil_scoped_release release;
      if (explain) {
        // EXPLAIN is per query: Engine::Search one by one on this thread.
        results.resize(q.rows);
        explains.resize(q.rows);
        for (size_t i = 0; i < q.rows; ++i) {
          Explain ex;
          auto r = e->Search(collection, std::span<const float>(q.row(i), q.dim), o, &ex);
          if (!r) Throw(r.error().WithContext(fmt::format("query {}", i)));
          results[i] = std::move(*r);
          explains[i] = ex.ToJson();
        }
      } else if (with_attributes && q.rows > 0) {
        // SearchOptions::with_attributes: each hit's attributes from the search's own snapshot.
        SearchOptions oa = o;
        oa.with_attributes = true;
        auto hits = ValueOrThrow(e->SearchBatchWithKeys(collection, std::span<const float>(q.data, q.rows * q.dim),
                                                        q.dim, oa, size_t(Threads(num_threads))));
        results.resize(hits.size());
        records.resize(hits.size());
        for (size_t i = 0; i < hits.size(); ++i) {
          for (KeyedNeighbor& n : hits[i]) {
            results[i].push_back({n.id, n.distance});
            records[i].push_back(Record{n.id, {}, std::move(n.attributes), std::move(n.key)});
          }
        }
      } else if (q.rows == 1) {
        // One vector: no batch machinery (thread team, query copy) for the common case.
        results.push_back(ValueOrThrow(e->Search(collection, std::span<const float>(q.data, q.dim), o)));
      } else if (q.rows > 1) {
        // The caller's float32 buffer as it is: no copy.
        results = ValueOrThrow(e->SearchBatch(collection, std::span<const float>(q.data, q.rows * q.dim), q.dim, o,
                                              size_t(Threads(num_threads))));
      }
      if (with_attributes && explain) records = FetchRecords(*e, collection, results);
    }
    py::list rows;
    if (with_attributes) {
      for (const auto& row : records) {
        py::list hits;
        for (const auto& r : row) hits.append(r ? py::object(FromAttributes(r->attributes)) : py::none());
        rows.append(std::move(hits));
      }
    }
    return SearchResult(results, k, q.one_row, with_attributes ? &rows : nullptr, explain ? &explains : nullptr);
  }

 private:
  static std::vector<engine::Attributes> ToAttributeRows(py::handle obj, size_t rows) {
    std::vector<engine::Attributes> out;
    if (obj.is_none()) return out;
    if (py::isinstance<py::dict>(obj) && rows == 1) {
      out.push_back(ToAttributes(obj, 0));
      return out;
    }
    if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj)) {
      ThrowInvalid("attributes: expected a list of dicts (one per vector)");
    }
    auto seq = py::reinterpret_borrow<py::sequence>(obj);
    if (seq.size() != rows) ThrowInvalid("attributes: {} entries for {} vectors", seq.size(), rows);
    out.reserve(rows);
    for (size_t i = 0; i < rows; ++i) out.push_back(ToAttributes(seq[i], i));
    return out;
  }

  // With explain (Engine::Search, ids and distances only), the attributes of the hits
  // come from Engine::Get, one call per hit (a hit deleted meanwhile gets None).
  static std::vector<std::vector<std::optional<Record>>> FetchRecords(
      const Engine& e, const std::string& collection, const std::vector<std::vector<Neighbor>>& results) {
    std::vector<std::vector<std::optional<Record>>> out(results.size());
    for (size_t i = 0; i < results.size(); ++i) {
      for (const Neighbor& n : results[i]) {
        auto r = e.Get(collection, n.id);
        out[i].push_back(r ? std::optional<Record>(std::move(*r)) : std::nullopt);
      }
    }
    return out;
  }

  std::shared_ptr<Engine> engine_;
};

}  // namespace

void BindEngine(py::module_& m) {
  py::class_<PyEngine>(m, "Engine", R"doc(
The embedded engine: a data directory of collections, each with a write-ahead log,
an in-memory HNSW segment taking writes and sealed HNSW/SPANN segments
(engine/strata.h). Opening recovers what the directory holds.

Every method may be called from several Python threads at once: the GIL is
released while the engine works, so searches from many threads run in
parallel, also while another thread writes.

    with strata.Engine("./data") as e:
        e.create_collection("docs", dim=100, metric="cosine")
        e.upsert("docs", ids, vectors, attributes=[{"lang": "en"}, ...])
        ids, dists = e.search("docs", queries, k=10, filter='lang == "en"')
)doc")
      .def(py::init<const std::string&, const std::string&, bool, const std::string&>(), py::arg("path"),
           py::arg("durability") = "sync", py::arg("background_compaction") = true,
           py::arg("background_cpus") = "", R"doc(
Opens (creating when absent) the data directory `path`.

durability: "sync" (every write is fsynced before it returns), "interval"
(fsynced every 100 ms in the background) or "none" (left to the OS).
background_cpus: CPUs the engine's insert, seal and compaction threads may
run on, as taskset writes a list ("1", "1-3") or "auto" (every CPU but the
lowest); "" (the default): any. Leaving a CPU to searches keeps their tail
latency while large writes and compactions run. Raises InvalidArgumentError
for a list that does not parse or names a CPU this process may not run on.
Raises NoSuchFileError/IoError/CorruptionError for directory problems.
)doc")
      .def("close", &PyEngine::Close,
           "Closes the engine (searches in flight finish first). Later calls raise strata.Error.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyEngine& self, py::args) { self.Close(); })
      .def("create_collection", &PyEngine::CreateCollection, py::arg("name"), py::arg("dim"),
           py::arg("metric") = "l2", py::arg("M") = 16, py::arg("ef_construction") = 200,
           py::arg("seal_threshold") = 100000, py::arg("memory_budget_bytes") = 0, py::arg("codes") = "none",
           py::arg("rerank") = 0, R"doc(
Creates a collection. metric: "l2" (squared Euclidean), "ip" (negated dot
product) or "cosine" (-cos). The in-memory segment is sealed to disk every
`seal_threshold` vectors; compaction builds SPANN past `memory_budget_bytes`
(0: always HNSW). codes: "none" or "sq8" (one byte per dimension: sealed
segments search on the codes and rerank `rerank` candidates with the full
vectors; 0: the index's default). describe_collection shows both.
AlreadyExistsError when the name is taken; ValueError for unknown codes.
)doc")
      .def("drop_collection",
           [](PyEngine& self, const std::string& name) {
             auto e = self.Get();
             py::gil_scoped_release release;
             ThrowIfError(e->DropCollection(name));
           },
           py::arg("name"), "Removes the collection and its files. NotFoundError when absent.")
      .def("list_collections",
           [](PyEngine& self) {
             auto e = self.Get();
             std::vector<CollectionInfo> infos;
             {
               py::gil_scoped_release release;
               infos = e->ListCollections();
             }
             py::list out;
             for (const auto& i : infos) out.append(InfoDict(i));
             return out;
           },
           "Every collection, as describe_collection returns it.")
      .def("describe_collection",
           [](PyEngine& self, const std::string& name) {
             auto e = self.Get();
             CollectionInfo info;
             {
               py::gil_scoped_release release;
               info = ValueOrThrow(e->DescribeCollection(name));
             }
             return InfoDict(info);
           },
           py::arg("name"),
           "A dict: name, dim, metric, M, ef_construction, seal_threshold, memory_budget_bytes, codes, rerank, id, "
           "num_vectors, last_sequence, memory_bytes, sealed_segments.")
      .def("upsert", &PyEngine::Upsert, py::arg("collection"), py::arg("ids"), py::arg("vectors"),
           py::arg("attributes") = py::none(), R"doc(
Inserts or replaces vectors, atomically (one write batch: all or nothing,
durable when it returns under durability="sync").

ids: int or 1-D integer array (non-negative, below 2^64-1).
vectors: (N, dim) array, or one vector of dim. float32 is used as is;
float64, float16, int8, uint8 (any integer) are converted; non-contiguous
arrays are copied.
attributes: None or a list of N dicts (or None entries) whose values are int,
float, str or list of str -- what filters test.
Returns the number of vectors written. InvalidArgumentError (a ValueError)
for a wrong dimension, NaN/inf, bad ids or attributes.
)doc")
      .def("bulk_load", &PyEngine::BulkLoad, py::arg("collection"), py::arg("vectors"),
           py::arg("ids") = py::none(), py::arg("attributes") = py::none(), R"doc(
Loads an empty collection in one go (straight into one sealed segment, without
the log): much faster than upsert for an initial load. ids default to 0..N-1.
)doc")
      .def("delete", &PyEngine::Delete, py::arg("collection"), py::arg("ids"),
           "Deletes ids (an int or a sequence), atomically. Absent ids are not an error. Returns len(ids).")
      .def("get", &PyEngine::GetRecords, py::arg("collection"), py::arg("ids"), R"doc(
The stored record of an id: {"id": int, "vector": ndarray float32, "attributes": dict},
or None when absent. With a sequence of ids, a list of those.
)doc")
      .def("flush",
           [](PyEngine& self, const std::string& collection) {
             auto e = self.Get();
             py::gil_scoped_release release;
             ThrowIfError(e->Flush(collection));
           },
           py::arg("collection"), "Seals the in-memory segment to disk now and cuts the log.")
      .def("compact",
           [](PyEngine& self, const std::string& collection) {
             auto e = self.Get();
             py::gil_scoped_release release;
             ThrowIfError(e->Compact(collection));
           },
           py::arg("collection"),
           "Seals, then merges the sealed segments into one, dropping deleted vectors.")
      .def("search", &PyEngine::Search, py::arg("collection"), py::arg("queries"), py::arg("k") = 10,
           py::arg("recall") = py::none(), py::arg("filter") = py::none(), py::arg("ef") = py::none(),
           py::arg("max_lists") = py::none(), py::arg("with_attributes") = false, py::arg("explain") = false,
           py::arg("strategy") = "auto", py::arg("num_threads") = -1, R"doc(
The k nearest live vectors to each query, nearest first.

queries: one vector (dim,) or a matrix (N, dim); any real dtype (converted
to float32). A matrix runs through the engine's SearchBatch, spread over
`num_threads` threads (-1: all cores); the GIL is released meanwhile.
recall: recall@k wanted in (0, 1]; each segment turns it into its own ef /
max_lists from its calibration table (default 0.95 when neither recall nor
ef / max_lists is given). ef / max_lists: explicit HNSW candidate list /
SPANN posting lists, overriding recall.
filter: an expression over attributes, e.g. 'lang == "en" AND year >= 2020'
(==, !=, <, <=, >, >=, IN, NOT IN, AND, OR, NOT, parentheses); a filter that
does not parse raises InvalidArgumentError giving the position.
strategy: "auto", "index", "scan" or "post-filter".

Returns (ids, distances): uint64 (N, k) and float32 (N, k) arrays -- or (k,)
for a single vector. Rows with fewer than k hits are padded with
strata.NO_ID (2^64-1) and inf.
with_attributes=True appends the hits' attributes: per query a list of dicts,
read by the search itself from the snapshot it searched (SearchOptions::
with_attributes); with explain=True they are fetched after the search (None for
a hit deleted meanwhile).
explain=True appends, per query, the planner's EXPLAIN as a dict (segments,
strategy, ef / lists, distances computed, milliseconds); queries then run one
after the other on one thread.
)doc");
}

}  // namespace strata::python
