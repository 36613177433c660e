#pragma once
// Shared pieces of the Python bindings: Status -> Python exception, numpy arrays
// in (any real dtype, any strides) and out, attributes <-> dicts, per-thread
// scratch pools.
//
// Every function here that touches Python objects must run with the GIL held;
// the *View types only borrow pointers into arrays the caller keeps alive, so
// they may be read with the GIL released.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "api/types.h"
#include "core/metric.h"
#include "core/status.h"
#include "core/types.h"
#include "core/vector_set.h"
#include "engine/attributes.h"

namespace strata::python {

namespace py = pybind11;

// Thrown by the bindings and translated into the Python class of its code
// (module.cc registers the translator). `file_op` marks errors of operations on
// named files (load, open, save, build), where NotFound becomes a
// FileNotFoundError too.
struct StatusError {
  Status status;
  bool file_op = false;
};

[[noreturn]] inline void Throw(Status s, bool file_op = false) {
  throw StatusError{std::move(s), file_op};
}
inline void ThrowIfError(const Status& s, bool file_op = false) {
  if (!s.ok()) Throw(s, file_op);
}
template <typename T>
T ValueOrThrow(Result<T> r, bool file_op = false) {
  if (!r) Throw(std::move(r).error(), file_op);
  return std::move(*r);
}
// A bad argument detected by the binding itself (shape, dtype, range):
// strata.InvalidArgumentError, a ValueError.
template <typename... Args>
[[noreturn]] void ThrowInvalid(fmt::format_string<Args...> format, Args&&... args) {
  Throw(InvalidArgument(format, std::forward<Args>(args)...));
}

void RegisterErrors(py::module_& m);

// A float32 row-major matrix borrowed from a numpy array (converted and made
// C-contiguous first when it was not already float32 C-order). `one_row` is
// true when the caller passed a single vector (1-D), so results can be 1-D too.
struct Matrix {
  py::array keep;  // owns the float32 data
  const float* data = nullptr;
  size_t rows = 0;
  size_t dim = 0;
  bool one_row = false;
  const float* row(size_t i) const { return data + i * dim; }
};
// `what` names the argument in errors ("vectors", "queries"); `dim` 0 accepts any.
Matrix ToMatrix(py::handle obj, const char* what, size_t dim);
// A copy as an owned VectorSet (the C++ calls that take one).
VectorSet ToVectorSet(const Matrix& m);

// Ids: an int, or a 1-D sequence / array of non-negative integers below 2^64-1.
std::vector<VectorId> ToIds(py::handle obj, const char* what);
// True for one id (a Python int or a 0-d numpy integer): the caller answers with one item.
inline bool IsScalarId(py::handle obj) {
  if (py::isinstance<py::int_>(obj)) return true;
  return py::hasattr(obj, "ndim") && py::hasattr(obj, "dtype") && obj.attr("ndim").cast<int>() == 0;
}

// Result arrays: ids (uint64, padded with kInvalidVectorId) and distances
// (float32, padded with +inf), shape (n, k), or (k,) when `one_row`.
py::tuple ToArrays(const std::vector<std::vector<Neighbor>>& results, size_t k, bool one_row);

// What Engine.search and Client.search return: (ids, distances), then the hits'
// attributes (one list per query of dict-or-None) when `attributes` is given, then the
// EXPLAIN of each query (JSON texts, parsed) when `explains` is given; one query's
// entries unwrapped when `one_row`.
py::tuple SearchResult(const std::vector<std::vector<Neighbor>>& results, size_t k, bool one_row,
                       const py::list* attributes, const std::vector<std::string>* explains);

Metric ToMetric(const std::string& name);

engine::Attributes ToAttributes(py::handle obj, size_t row);
py::dict FromAttributes(const engine::Attributes& attributes);

// The shared vocabulary (api/types.h) as Python values, for Engine and Client alike: a
// collection's description as a dict, a record as {"id", "vector" (numpy), "attributes"},
// and search keyword arguments as SearchOptions (ValueError for an unknown strategy).
py::dict InfoDict(const CollectionInfo& info);
py::object RecordDict(const Record& r);
SearchOptions ToSearchOptions(uint32_t k, std::optional<double> recall,
                              const std::optional<std::string>& filter, std::optional<uint32_t> ef,
                              std::optional<uint32_t> max_lists, const std::string& strategy);

// Rows per call of a batch: None or -1 -> 0 (all cores, the C++ convention).
inline int Threads(int num_threads) { return num_threads < 0 ? 0 : num_threads; }

// A pool of per-thread scratch objects (SearchContext, SpannContext): borrowed
// for one search, handed back after. Thread-safe. Keeps the scratch out of the
// indexes (STYLE.md) without a thread_local in the library.
template <typename T>
class ScratchPool {
 public:
  class Lease {
   public:
    Lease(ScratchPool* pool, std::unique_ptr<T> item) : pool_(pool), item_(std::move(item)) {}
    Lease(Lease&&) = default;
    ~Lease() {
      if (item_) pool_->Return(std::move(item_));
    }
    T& operator*() { return *item_; }
    T* operator->() { return item_.get(); }

   private:
    ScratchPool* pool_;
    std::unique_ptr<T> item_;
  };
  Lease Borrow() {
    {
      std::lock_guard lock(mu_);
      if (!free_.empty()) {
        auto item = std::move(free_.back());
        free_.pop_back();
        return Lease(this, std::move(item));
      }
    }
    return Lease(this, std::make_unique<T>());
  }

 private:
  void Return(std::unique_ptr<T> item) {
    std::lock_guard lock(mu_);
    if (free_.size() < 256) free_.push_back(std::move(item));
  }
  std::mutex mu_;
  std::vector<std::unique_ptr<T>> free_;
};

void BindEngine(py::module_& m);
void BindIndexes(py::module_& m);
void BindClient(py::module_& m);

}  // namespace strata::python
