// strata.HnswIndex and strata.SpannIndex: the indexes on their own, without the
// engine (index/hnsw/hnsw_index.h, index/spann/spann_index.h). HnswIndex follows
// hnswlib's Python API closely enough that switching takes minutes.

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <optional>

#include "index/hnsw/hnsw_index.h"
#include "index/spann/spann_index.h"
#include "python/src/common.h"

namespace strata::python {

namespace {

// An id array as a filter: a bitmap when the largest id is small, else a sorted
// vector (binary search). Immutable; safe from many threads.
class IdSetFilter final : public index::IdFilter {
 public:
  explicit IdSetFilter(std::vector<VectorId> ids) {
    VectorId max_id = 0;
    for (VectorId id : ids) max_id = std::max(max_id, id);
    if (max_id < (VectorId(1) << 28) && max_id / 16 <= ids.size() * 64 + 4096) {
      bits_.assign(size_t(max_id / 64 + 1), 0);
      for (VectorId id : ids) bits_[id / 64] |= uint64_t(1) << (id % 64);
    } else {
      sorted_ = std::move(ids);
      std::sort(sorted_.begin(), sorted_.end());
    }
  }
  bool Contains(VectorId id) const override {
    if (!bits_.empty()) return id / 64 < bits_.size() && (bits_[id / 64] >> (id % 64) & 1);
    return std::binary_search(sorted_.begin(), sorted_.end(), id);
  }

 private:
  std::vector<uint64_t> bits_;
  std::vector<VectorId> sorted_;
};

// A Python callable `f(id) -> bool` as a filter. Each call takes the GIL, so a
// callable filter serializes the threads of a search (as in hnswlib); the first
// exception it raises stops the search and is raised to the caller.
class CallableFilter final : public index::IdFilter {
 public:
  explicit CallableFilter(py::object fn) : fn_(std::move(fn)) {}
  bool Contains(VectorId id) const override {
    if (failed_.load(std::memory_order_relaxed)) return false;
    py::gil_scoped_acquire gil;
    if (failed_.load(std::memory_order_relaxed)) return false;
    PyObject* r = PyObject_CallFunction(fn_.ptr(), "K", static_cast<unsigned long long>(id));
    int truth = -1;
    if (r != nullptr) {
      truth = PyObject_IsTrue(r);
      Py_DECREF(r);
    }
    if (truth < 0) {
      error_.emplace();  // fetches the Python error (GIL held)
      failed_.store(true);
      return false;
    }
    return truth == 1;
  }
  // With the GIL held, after the search: raises what the callable raised.
  void RaiseIfFailed() {
    if (error_) {
      py::error_already_set e = std::move(*error_);
      error_.reset();
      throw e;
    }
  }

 private:
  py::object fn_;
  mutable std::atomic<bool> failed_{false};
  mutable std::optional<py::error_already_set> error_;  // written under the GIL
};

// None, a callable, or ids (an array / sequence of integers).
struct FilterArg {
  std::unique_ptr<IdSetFilter> ids;
  std::unique_ptr<CallableFilter> callable;
  const index::IdFilter* get() const {
    return ids ? static_cast<const index::IdFilter*>(ids.get()) : callable.get();
  }
  void RaiseIfFailed() {
    if (callable) callable->RaiseIfFailed();
  }
};

FilterArg ToFilter(py::handle obj) {
  FilterArg f;
  if (obj.is_none()) return f;
  if (PyCallable_Check(obj.ptr())) {
    f.callable = std::make_unique<CallableFilter>(py::reinterpret_borrow<py::object>(obj));
  } else {
    f.ids = std::make_unique<IdSetFilter>(ToIds(obj, "filter"));
  }
  return f;
}

void CheckFinite(const Matrix& m, const char* what) {
  for (size_t i = 0; i < m.rows; ++i) {
    if (!AllFinite(m.row(i), m.dim)) ThrowInvalid("{}: row {} has a NaN or infinite component", what, i);
  }
}

// Runs search(row, ctx) over the rows, on one thread or an OpenMP team, each
// thread with its own scratch from `pool`. Called without the GIL. Errors are
// kept per row (nothing throws inside the parallel region); the first is raised.
template <typename Ctx, typename Fn>
std::vector<std::vector<Neighbor>> SearchRows(const Matrix& q, int num_threads, ScratchPool<Ctx>& pool,
                                              Fn search) {
  std::vector<std::vector<Neighbor>> results(q.rows);
  std::vector<Status> errors(q.rows);
  const int threads = num_threads > 0 ? num_threads : omp_get_max_threads();
  if (q.rows <= 1 || threads == 1) {
    auto ctx = pool.Borrow();
    for (size_t i = 0; i < q.rows; ++i) {
      auto r = search(q.row(i), *ctx);
      if (!r) Throw(q.rows > 1 ? r.error().WithContext(fmt::format("query {}", i)) : r.error());
      results[i] = std::move(*r);
    }
    return results;
  }
#pragma omp parallel num_threads(threads)
  {
    auto ctx = pool.Borrow();
#pragma omp for schedule(dynamic, 16)
    for (size_t i = 0; i < q.rows; ++i) {
      auto r = search(q.row(i), *ctx);
      if (r) {
        results[i] = std::move(*r);
      } else {
        errors[i] = r.error();
      }
    }
  }
  for (size_t i = 0; i < q.rows; ++i) {
    if (!errors[i].ok()) Throw(errors[i].WithContext(fmt::format("query {}", i)));
  }
  return results;
}

class PyHnsw {
 public:
  PyHnsw(size_t dim, const std::string& metric, uint32_t M, uint32_t ef_construction, uint64_t seed,
         bool float16, const std::string& codes, uint32_t rerank) {
    index::HnswOptions o;
    o.M = M;
    o.ef_construction = ef_construction;
    o.seed = seed;
    o.encoding = float16 ? index::VectorEncoding::kFloat16 : index::VectorEncoding::kFloat32;
    o.codes = ValueOrThrow(index::ParseCodesKind(codes));
    o.rerank = rerank;
    index_ = ValueOrThrow(index::HnswIndex::Create(dim, ToMetric(metric), o));
  }
  explicit PyHnsw(std::unique_ptr<index::HnswIndex> index, bool mapped) : index_(std::move(index)), mapped_(mapped) {}

  static std::unique_ptr<PyHnsw> Load(const std::string& path, bool mmap) {
    std::unique_ptr<index::HnswIndex> idx;
    {
      py::gil_scoped_release release;
      idx = ValueOrThrow(index::HnswIndex::Load(path, {.mmap = mmap}), /*file_op=*/true);
    }
    auto out = std::make_unique<PyHnsw>(std::move(idx), mmap);
    // Auto-assigned ids continue after the largest present one... unknown after a
    // load without walking the graph; they start at the slot count, which is past
    // every id assigned automatically before the save.
    out->next_id_ = out->index_->num_slots();
    return out;
  }

  void Add(py::handle vectors, py::handle ids_obj, int num_threads) {
    if (mapped_) Throw(InvalidArgument("this index is memory-mapped (loaded with mmap=True) and read-only"));
    const Matrix m = ToMatrix(vectors, "vectors", index_->dim());
    std::vector<VectorId> ids;
    if (ids_obj.is_none()) {
      const VectorId first = next_id_.fetch_add(m.rows);
      ids.resize(m.rows);
      for (size_t i = 0; i < m.rows; ++i) ids[i] = first + i;
    } else {
      ids = ToIds(ids_obj, "ids");
      if (ids.size() != m.rows) ThrowInvalid("ids: {} ids for {} vectors", ids.size(), m.rows);
      VectorId top = 0;
      for (VectorId id : ids) top = std::max(top, id + 1);
      VectorId cur = next_id_.load();
      while (cur < top && !next_id_.compare_exchange_weak(cur, top)) {
      }
    }
    py::gil_scoped_release release;
    CheckFinite(m, "vectors");
    if (m.rows == 1) {
      ThrowIfError(index_->Add(ids[0], VectorView(m.data, m.dim)));
      return;
    }
    VectorSet set = ToVectorSet(m);
    ThrowIfError(index_->AddBatch(set, ids, {.num_threads = Threads(num_threads)}));
  }

  py::tuple Search(py::handle queries, uint32_t k, std::optional<uint32_t> ef, int num_threads, py::handle filter,
                   uint32_t rerank) {
    if (k == 0) ThrowInvalid("k must be at least 1");
    if (rerank && index_->options().codes == index::CodesKind::kNone) {
      ThrowInvalid("rerank: this index has no codes (HnswIndex(..., codes='sq8'))");
    }
    const Matrix q = ToMatrix(queries, "queries", index_->dim());
    FilterArg f = ToFilter(filter);
    index::SearchParams p;
    p.k = k;
    p.ef = ef ? *ef : std::max<uint32_t>(64, k);
    p.rerank = rerank;
    p.filter = f.get();
    std::vector<std::vector<Neighbor>> results;
    {
      py::gil_scoped_release release;
      results = SearchRows(q, num_threads, pool_, [&](const float* row, index::SearchContext& ctx) {
        return index_->Search(VectorView(row, q.dim), p, ctx);
      });
    }
    f.RaiseIfFailed();
    return ToArrays(results, k, q.one_row);
  }

  void Remove(py::handle ids_obj) {
    if (mapped_) Throw(InvalidArgument("this index is memory-mapped (loaded with mmap=True) and read-only"));
    const std::vector<VectorId> ids = ToIds(ids_obj, "ids");
    py::gil_scoped_release release;
    for (VectorId id : ids) ThrowIfError(index_->Remove(id));
  }

  py::array_t<float> GetVectors(py::handle ids_obj) {
    const bool one = IsScalarId(ids_obj);
    const std::vector<VectorId> ids = ToIds(ids_obj, "ids");
    py::array_t<float> out(std::vector<py::ssize_t>{py::ssize_t(ids.size()), py::ssize_t(index_->dim())});
    float* p = out.mutable_data();
    {
      py::gil_scoped_release release;
      for (size_t i = 0; i < ids.size(); ++i) {
        auto v = ValueOrThrow(index_->Get(ids[i]));
        std::copy(v.begin(), v.end(), p + i * index_->dim());
      }
    }
    if (one) return out.attr("reshape")(py::ssize_t(index_->dim()));
    return out;
  }

  void Save(const std::string& path) {
    py::gil_scoped_release release;
    ThrowIfError(index_->Save(path), /*file_op=*/true);
  }

  index::HnswIndex& index() { return *index_; }
  bool mapped() const { return mapped_; }

 private:
  std::unique_ptr<index::HnswIndex> index_;
  bool mapped_ = false;
  std::atomic<VectorId> next_id_{0};
  ScratchPool<index::SearchContext> pool_;
};

class PySpann {
 public:
  explicit PySpann(std::unique_ptr<index::SpannIndex> index) : index_(std::move(index)) {}

  static std::unique_ptr<PySpann> Build(py::handle vectors, const std::string& path, const std::string& metric,
                                        std::optional<double> memory_budget, size_t cluster_size, uint32_t replicas,
                                        bool half_lists, int num_threads, bool progress, const std::string& codes,
                                        std::optional<bool> head_codes) {
    index::SpannBuildOptions o;
    o.metric = ToMetric(metric);
    o.codes = ValueOrThrow(index::ParseCodesKind(codes));
    o.head_codes = head_codes ? *head_codes : o.codes != index::CodesKind::kNone;
    o.memory_budget_fraction = memory_budget ? *memory_budget : index::SpannDefaultBudgetFraction(o.codes);
    o.cluster_size = cluster_size;
    o.replicas = replicas;
    o.half_lists = half_lists;
    o.num_threads = Threads(num_threads);
    o.progress = progress;
    const Matrix m = ToMatrix(vectors, "vectors", 0);
    py::gil_scoped_release release;
    CheckFinite(m, "vectors");
    ThrowIfError(index::SpannIndex::Build(ToVectorSet(m), path, o), /*file_op=*/true);
    return std::make_unique<PySpann>(ValueOrThrow(index::SpannIndex::Open(path), /*file_op=*/true));
  }

  static std::unique_ptr<PySpann> Open(const std::string& path, const std::string& io, bool direct) {
    index::SpannOpenOptions o;
    if (io == "auto") o.backend = storage::IoBackend::kAuto;
    else if (io == "io_uring") o.backend = storage::IoBackend::kIoUring;
    else if (io == "pread") o.backend = storage::IoBackend::kPread;
    else ThrowInvalid("io '{}': expected auto, io_uring or pread", io);
    o.direct = direct;
    py::gil_scoped_release release;
    return std::make_unique<PySpann>(ValueOrThrow(index::SpannIndex::Open(path, o), /*file_op=*/true));
  }

  py::tuple Search(py::handle queries, uint32_t k, uint32_t max_lists, double prune_epsilon, int num_threads,
                   py::handle filter, uint32_t head_ef, uint32_t rerank) {
    if (k == 0) ThrowInvalid("k must be at least 1");
    if (rerank && index_->codes() == index::CodesKind::kNone) {
      ThrowInvalid("rerank: this index has no codes (SpannIndex.build(..., codes='sq8'))");
    }
    const Matrix q = ToMatrix(queries, "queries", index_->dim());
    FilterArg f = ToFilter(filter);
    index::SpannSearchParams p;
    p.k = k;
    p.max_lists = max_lists;
    p.prune_epsilon = prune_epsilon;
    p.head_ef = head_ef;
    p.rerank = rerank;
    p.filter = f.get();
    std::vector<std::vector<Neighbor>> results;
    {
      py::gil_scoped_release release;
      results = SearchRows(q, num_threads, pool_, [&](const float* row, index::SpannContext& ctx) {
        return index_->Search(VectorView(row, q.dim), p, ctx);
      });
    }
    f.RaiseIfFailed();
    return ToArrays(results, k, q.one_row);
  }

  index::SpannIndex& index() { return *index_; }

 private:
  std::unique_ptr<index::SpannIndex> index_;
  ScratchPool<index::SpannContext> pool_;
};

}  // namespace

void BindIndexes(py::module_& m) {
  py::class_<PyHnsw>(m, "HnswIndex", R"doc(
An in-memory HNSW graph (Malkov & Yashunin), without the engine: close to
hnswlib's Python API.

    index = strata.HnswIndex(dim=784, metric="l2", M=16, ef_construction=200)
    index.add(vectors)                       # ids 0..N-1 (or ids=...)
    ids, dists = index.search(queries, k=10, ef=64)
    index.save("x.hnsw"); index = strata.HnswIndex.load("x.hnsw", mmap=True)

From hnswlib: add_items -> add, knn_query -> search (ef per call instead of
set_ef), mark_deleted -> remove, get_items -> get, load_index -> load. Distances:
l2 is squared L2 as in hnswlib; ip is -dot (hnswlib: 1 - dot) and cosine is
-cos (hnswlib: 1 - cos), so the order is the same.

Searches may run from many Python threads at once and concurrently with add
and remove (the GIL is released); an index loaded with mmap=True is read-only.
)doc")
      .def(py::init<size_t, const std::string&, uint32_t, uint32_t, uint64_t, bool, const std::string&, uint32_t>(),
           py::arg("dim"), py::arg("metric") = "l2", py::arg("M") = 16, py::arg("ef_construction") = 200,
           py::arg("seed") = 42, py::arg("float16") = false, py::arg("codes") = "none", py::arg("rerank") = 0,
           "metric: 'l2', 'ip' or 'cosine'. float16=True stores vectors as IEEE half (half the memory). "
           "codes='sq8': the graph is walked on SQ8 codes (one byte a dimension) and the best `rerank` "
           "candidates (0: 2k) re-scored with the float32 vectors; not with float16.")
      .def_static("load", &PyHnsw::Load, py::arg("path"), py::arg("mmap") = false, R"doc(
Loads a saved index (checksums and structure verified). mmap=True maps the file
read-only instead of reading it. NoSuchFileError when absent, CorruptionError
for a damaged file.
)doc")
      .def("add", &PyHnsw::Add, py::arg("vectors"), py::arg("ids") = py::none(), py::arg("num_threads") = -1,
           R"doc(
Adds vectors ((N, dim) or (dim,), any real dtype) in parallel on `num_threads`
threads (-1: all cores). ids: integers, default the next N after the largest id
added so far. Adding a present id replaces its vector.
)doc")
      .def("search", &PyHnsw::Search, py::arg("queries"), py::arg("k") = 10, py::arg("ef") = py::none(),
           py::arg("num_threads") = -1, py::arg("filter") = py::none(), py::arg("rerank") = 0, R"doc(
The k nearest neighbours of each query: (ids uint64, distances float32), shaped
(N, k) for a matrix and (k,) for one vector, nearest first; padded with
strata.NO_ID and inf when fewer than k match.

ef: candidate list size (default max(64, k)); num_threads: threads over the
rows of a matrix (-1: all cores). filter: an array of allowed ids, or a callable
f(id) -> bool (called with the GIL held, so slower; an exception it raises is
raised here). Filters apply during the traversal, so k hits come back whenever k
exist.
)doc")
      .def("remove", &PyHnsw::Remove, py::arg("ids"),
           "Removes ids (int or sequence): never returned again. NotFoundError for an absent id.")
      .def("get", &PyHnsw::GetVectors, py::arg("ids"),
           "The stored vectors of ids (normalized for cosine): (N, dim) float32, or (dim,) for one id.")
      .def("save", &PyHnsw::Save, py::arg("path"), "Writes the index (checksummed, replaced atomically).")
      .def("__len__", [](PyHnsw& self) { return self.index().size(); })
      .def("__contains__", [](PyHnsw& self, uint64_t id) { return self.index().Contains(id); })
      .def_property_readonly("dim", [](PyHnsw& self) { return self.index().dim(); })
      .def_property_readonly("metric", [](PyHnsw& self) { return std::string(MetricName(self.index().metric())); })
      .def_property_readonly("M", [](PyHnsw& self) { return self.index().options().M; })
      .def_property_readonly("ef_construction", [](PyHnsw& self) { return self.index().options().ef_construction; })
      .def_property_readonly("mmap", &PyHnsw::mapped)
      .def("stats",
           [](PyHnsw& self) {
             const index::HnswStats s = self.index().GraphStats();
             py::dict d;
             d["num_nodes"] = s.num_nodes;
             d["num_deleted"] = s.num_deleted;
             d["num_free"] = s.num_free;
             d["max_level"] = s.max_level;
             d["mean_degree0"] = s.mean_degree0;
             d["memory_bytes"] = s.memory_bytes;
             d["codes"] = std::string(index::CodesKindName(self.index().options().codes));
             d["exact_codes"] = s.exact_codes;
             return d;
           },
           "Graph statistics (walks the graph).")
      .def("__repr__", [](PyHnsw& self) {
        return fmt::format("strata.HnswIndex(dim={}, metric='{}', M={}, ef_construction={}, len={})",
                           self.index().dim(), MetricName(self.index().metric()), self.index().options().M,
                           self.index().options().ef_construction, self.index().size());
      });

  py::class_<PySpann>(m, "SpannIndex", R"doc(
A SPANN memory-disk index (Chen et al., NeurIPS 2021): cluster heads in memory
(an HNSW), posting lists on disk read with io_uring. Immutable once built; ids
are the row numbers of the vectors it was built from. Metrics: l2 and cosine.

    index = strata.SpannIndex.build(vectors, "idx.spann", metric="l2", memory_budget=0.2)
    index = strata.SpannIndex.open("idx.spann")
    ids, dists = index.search(queries, k=10, max_lists=64)
)doc")
      .def_static("build", &PySpann::Build, py::arg("vectors"), py::arg("path"), py::arg("metric") = "l2",
                  py::arg("memory_budget") = py::none(), py::arg("cluster_size") = 0, py::arg("replicas") = 8,
                  py::arg("half_lists") = true, py::arg("num_threads") = -1, py::arg("progress") = false,
                  py::arg("codes") = "none", py::arg("head_codes") = py::none(),
                  R"doc(
Builds an index directory at `path` (which must not exist) from the rows of
`vectors` (ids 0..N-1) and opens it. memory_budget: the share of the raw vector
bytes the in-memory part may take (heads fill it; default 0.2, 0.1 with codes);
cluster_size > 0 sets the largest cluster instead. half_lists stores posting
vectors as float16 (half the bytes read; distances carry ~1e-3 relative
rounding). codes='sq8': the lists carry SQ8 codes and searches rerank the best
candidates with float32 vectors (exact distances). head_codes: the heads' HNSW
walks SQ8 codes (about 1.5x the heads in the same budget; default: with codes).
)doc")
      .def_static("open", &PySpann::Open, py::arg("path"), py::arg("io") = "auto", py::arg("direct") = true,
                  "Opens a built index directory. io: 'auto', 'io_uring' or 'pread'; direct: O_DIRECT reads.")
      .def("search", &PySpann::Search, py::arg("queries"), py::arg("k") = 10, py::arg("max_lists") = 64,
           py::arg("prune_epsilon") = 0.6, py::arg("num_threads") = -1, py::arg("filter") = py::none(),
           py::arg("head_ef") = 0, py::arg("rerank") = 0, R"doc(
Like HnswIndex.search: (ids, distances). max_lists: most posting lists read
per query; prune_epsilon: read a list only when its head is within (1 + eps) x
the nearest head's distance. filter: allowed ids or a callable. head_ef: the
heads' HNSW ef (0: 2 x max_lists). rerank (codes): candidates re-scored with
float32 vectors (0: the index's default).
)doc")
      .def("__len__", [](PySpann& self) { return self.index().Stats().num_vectors; })
      .def_property_readonly("dim", [](PySpann& self) { return self.index().dim(); })
      .def_property_readonly("metric", [](PySpann& self) { return std::string(MetricName(self.index().metric())); })
      .def("stats", [](PySpann& self) {
        const index::SpannStats s = self.index().Stats();
        py::dict d;
        d["num_vectors"] = s.num_vectors;
        d["num_lists"] = s.num_lists;
        d["total_entries"] = s.total_entries;
        d["memory_bytes"] = s.memory_bytes;
        d["disk_bytes"] = s.disk_bytes;
        d["half_heads"] = s.half_heads;
        d["head_codes"] = s.head_codes;
        d["half_lists"] = s.half_lists;
        d["codes"] = std::string(index::CodesKindName(s.codes));
        d["exact_codes"] = s.exact_codes;
        return d;
      }, "Index statistics: lists, entries, memory and disk bytes.");
}

}  // namespace strata::python
