// The `strata._strata` extension module: errors, conversions, and the entry point.
// The classes are bound in engine.cc, indexes.cc and client.cc.

#include <algorithm>
#include <cmath>
#include <limits>

#include "python/src/common.h"

#ifndef STRATA_VERSION
#define STRATA_VERSION "0.0.0"
#endif

namespace strata::python {

namespace {

// One Python class per StatusCode, created in RegisterErrors.
struct ErrorClasses {
  PyObject* base = nullptr;
  PyObject* by_code[16] = {};
  PyObject* no_such_file = nullptr;
};
ErrorClasses& Classes() {
  static ErrorClasses classes;  // lives as long as the interpreter holds the module
  return classes;
}

PyObject* NewError(py::module_& m, const char* name, std::initializer_list<PyObject*> bases,
                   const char* code, const char* doc) {
  py::tuple t(bases.size());
  size_t i = 0;
  for (PyObject* b : bases) t[i++] = py::reinterpret_borrow<py::object>(b);
  const std::string qualified = std::string("strata.") + name;
  PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, t.ptr(), nullptr);
  if (cls == nullptr) throw py::error_already_set();
  py::object holder = py::reinterpret_steal<py::object>(cls);
  holder.attr("code") = code;
  m.attr(name) = holder;
  return holder.release().ptr();  // kept for the life of the process
}

}  // namespace

void RegisterErrors(py::module_& m) {
  ErrorClasses& c = Classes();
  c.base = NewError(m, "Error", {PyExc_Exception}, "Error",
                    "Base of every error Strata raises. `code` names Strata's status code; the "
                    "message names the argument, file or field at fault.");
  auto add = [&](StatusCode code, const char* name, PyObject* builtin, const char* doc) {
    PyObject* cls = NewError(m, name, {c.base, builtin}, std::string(StatusCodeName(code)).c_str(), doc);
    c.by_code[int(code)] = cls;
    return cls;
  };
  add(StatusCode::kInvalidArgument, "InvalidArgumentError", PyExc_ValueError,
      "A bad argument: wrong dimension or dtype, NaN, unknown metric, a filter that does not "
      "parse (the message gives the position). Also a ValueError.");
  add(StatusCode::kOutOfRange, "OutOfRangeError", PyExc_ValueError,
      "A value past a limit (k, ef, batch size, ...). Also a ValueError.");
  PyObject* not_found = add(StatusCode::kNotFound, "NotFoundError", PyExc_LookupError,
                            "No such collection, id or file. Also a LookupError.");
  add(StatusCode::kAlreadyExists, "AlreadyExistsError", PyExc_ValueError,
      "The collection or file already exists. Also a ValueError.");
  add(StatusCode::kCorruption, "CorruptionError", PyExc_OSError,
      "A file failed its checks (checksum, header, structure). Also an OSError.");
  add(StatusCode::kIOError, "IoError", PyExc_OSError,
      "A file or network operation failed (the message names the file or peer). Also an OSError.");
  add(StatusCode::kUnimplemented, "UnimplementedError", PyExc_NotImplementedError,
      "Not supported (e.g. inner product for SPANN). Also a NotImplementedError.");
  add(StatusCode::kResourceExhausted, "ResourceExhaustedError", PyExc_RuntimeError,
      "Out of memory, or the server is busy. Also a RuntimeError.");
  add(StatusCode::kCancelled, "CancelledError", PyExc_RuntimeError, "Cancelled. Also a RuntimeError.");
  add(StatusCode::kInternal, "InternalError", PyExc_RuntimeError, "A bug in Strata. Also a RuntimeError.");
  c.no_such_file = NewError(m, "NoSuchFileError", {not_found, PyExc_FileNotFoundError}, "NotFound",
                            "A named file or directory does not exist: both a strata.NotFoundError "
                            "and a FileNotFoundError (so an OSError).");

  py::register_exception_translator([](std::exception_ptr p) {
    if (!p) return;
    try {
      std::rethrow_exception(p);
    } catch (const StatusError& e) {
      ErrorClasses& classes = Classes();
      PyObject* cls = nullptr;
      if (e.file_op && e.status.code() == StatusCode::kNotFound) cls = classes.no_such_file;
      const int code = int(e.status.code());
      if (cls == nullptr && code >= 0 && code < 16) cls = classes.by_code[code];
      if (cls == nullptr) cls = classes.base;
      PyErr_SetString(cls, e.status.message().c_str());
    }
  });
}

Matrix ToMatrix(py::handle obj, const char* what, size_t dim) {
  py::array arr;
  if (py::isinstance<py::array>(obj)) {
    arr = py::reinterpret_borrow<py::array>(obj);
  } else {
    arr = py::array::ensure(obj);
    if (!arr) ThrowInvalid("{}: expected a numpy array or a sequence of numbers", what);
  }
  const char kind = arr.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u') {
    ThrowInvalid("{}: dtype {} is not supported; use float32 (float64, float16, int8 and uint8 are converted)",
                 what, std::string(py::str(arr.dtype())));
  }
  if (arr.ndim() != 1 && arr.ndim() != 2) {
    ThrowInvalid("{}: expected one vector (1-D) or a matrix (2-D), got {} dimensions", what, arr.ndim());
  }
  // Borrowed as is when float32 and C-contiguous; otherwise converted (and made
  // contiguous) once here.
  auto f = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(arr);
  if (!f) throw py::error_already_set();
  Matrix m;
  m.one_row = f.ndim() == 1;
  m.rows = m.one_row ? 1 : size_t(f.shape(0));
  m.dim = size_t(f.shape(f.ndim() - 1));
  m.data = f.data();
  m.keep = std::move(f);
  if (m.dim == 0) ThrowInvalid("{}: vectors have dimension 0", what);
  if (dim != 0 && m.dim != dim) {
    ThrowInvalid("{}: vectors have dimension {}, expected {}", what, m.dim, dim);
  }
  return m;
}

VectorSet ToVectorSet(const Matrix& m) {
  auto set = VectorSet::Create(m.rows, m.dim);
  if (!set) Throw(set.error());
  if (m.rows) std::memcpy(set->mutable_data(), m.data, m.rows * m.dim * sizeof(float));
  return std::move(*set);
}

std::vector<VectorId> ToIds(py::handle obj, const char* what) {
  if (py::isinstance<py::int_>(obj) && !py::isinstance<py::bool_>(obj)) {
    // Python ints beyond 64 bits raise OverflowError in the cast; negative ones are refused.
    if (obj.attr("__lt__")(0).cast<bool>()) ThrowInvalid("{}: id {} is negative", what, std::string(py::str(obj)));
    const auto id = obj.cast<uint64_t>();
    if (id == kInvalidVectorId) ThrowInvalid("{}: id 2^64-1 is reserved", what);
    return {id};
  }
  py::array arr = py::array::ensure(obj);
  if (!arr) ThrowInvalid("{}: expected an int or a sequence of ints", what);
  if (arr.ndim() == 0) arr = py::array(arr.attr("reshape")(1));
  if (arr.ndim() != 1) ThrowInvalid("{}: expected a 1-D sequence of ids, got {} dimensions", what, arr.ndim());
  const char kind = arr.dtype().kind();
  if (arr.size() > 0 && kind != 'i' && kind != 'u') {
    ThrowInvalid("{}: ids must be integers, got dtype {}", what, std::string(py::str(arr.dtype())));
  }
  std::vector<VectorId> ids(size_t(arr.size()));
  if (arr.size() == 0) return ids;
  if (kind == 'i') {
    auto a = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
    const int64_t* p = a.data();
    for (size_t i = 0; i < ids.size(); ++i) {
      if (p[i] < 0) ThrowInvalid("{}: position {}: id {} is negative", what, i, p[i]);
      ids[i] = VectorId(p[i]);
    }
  } else {
    auto a = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
    const uint64_t* p = a.data();
    for (size_t i = 0; i < ids.size(); ++i) {
      if (p[i] == kInvalidVectorId) ThrowInvalid("{}: position {}: id 2^64-1 is reserved", what, i);
      ids[i] = p[i];
    }
  }
  return ids;
}

py::tuple ToArrays(const std::vector<std::vector<Neighbor>>& results, size_t k, bool one_row) {
  const size_t n = results.size();
  // A single query gives (k,) arrays, built with that shape directly (no reshape call:
  // the one-query-per-call path is the one where the binding's own cost shows).
  std::vector<py::ssize_t> shape = one_row && n == 1 ? std::vector<py::ssize_t>{py::ssize_t(k)}
                                                     : std::vector<py::ssize_t>{py::ssize_t(n), py::ssize_t(k)};
  py::array_t<uint64_t> ids(shape);
  py::array_t<float> dist(shape);
  uint64_t* ip = ids.mutable_data();
  float* dp = dist.mutable_data();
  for (size_t i = 0; i < n; ++i) {
    const auto& r = results[i];
    const size_t m = std::min(r.size(), k);
    for (size_t j = 0; j < m; ++j) {
      ip[i * k + j] = r[j].id;
      dp[i * k + j] = r[j].distance;
    }
    for (size_t j = m; j < k; ++j) {
      ip[i * k + j] = kInvalidVectorId;
      dp[i * k + j] = std::numeric_limits<float>::infinity();
    }
  }
  return py::make_tuple(std::move(ids), std::move(dist));
}

py::tuple SearchResult(const std::vector<std::vector<Neighbor>>& results, size_t k, bool one_row,
                       const py::list* attributes, const std::vector<std::string>* explains) {
  py::tuple arrays = ToArrays(results, k, one_row);
  py::list out;
  out.append(arrays[0]);
  out.append(arrays[1]);
  if (attributes) out.append(one_row ? (*attributes)[0] : py::object(*attributes));
  if (explains) {
    py::object loads = py::module_::import("json").attr("loads");
    py::list rows;
    for (const auto& j : *explains) rows.append(loads(j));
    out.append(one_row ? rows[0] : py::object(rows));
  }
  return py::tuple(out);
}

Metric ToMetric(const std::string& name) { return ValueOrThrow(ParseMetric(name)); }

py::dict InfoDict(const CollectionInfo& info) {
  py::dict d;
  d["name"] = info.spec.name;
  d["dim"] = info.spec.dim;
  d["metric"] = std::string(MetricName(info.spec.metric));
  d["M"] = info.spec.hnsw_M;
  d["ef_construction"] = info.spec.hnsw_ef_construction;
  d["seal_threshold"] = info.spec.seal_threshold;
  d["memory_budget_bytes"] = info.spec.memory_budget_bytes;
  d["codes"] = std::string(VectorCodesName(info.spec.codes));
  d["rerank"] = info.spec.rerank;
  d["id"] = info.id;
  d["num_vectors"] = info.num_vectors;
  d["last_sequence"] = info.last_sequence;
  d["memory_bytes"] = info.memory_bytes;
  d["sealed_segments"] = info.sealed_segments;
  return d;
}

py::object RecordDict(const Record& r) {
  py::dict d;
  d["id"] = r.id;
  py::array_t<float> v(py::ssize_t(r.vector.size()));
  std::copy(r.vector.begin(), r.vector.end(), v.mutable_data());
  d["vector"] = std::move(v);
  d["attributes"] = FromAttributes(r.attributes);
  return d;
}

SearchOptions ToSearchOptions(uint32_t k, std::optional<double> recall,
                              const std::optional<std::string>& filter, std::optional<uint32_t> ef,
                              std::optional<uint32_t> max_lists, const std::string& strategy) {
  SearchOptions o;
  o.k = k;
  if (recall) o.recall = *recall;
  if (filter) o.filter = *filter;
  if (ef) o.ef = *ef;
  if (max_lists) o.max_lists = *max_lists;
  o.strategy = ValueOrThrow(ParseSearchStrategy(strategy));
  return o;
}

engine::Attributes ToAttributes(py::handle obj, size_t row) {
  engine::Attributes out;
  if (obj.is_none()) return out;
  if (!py::isinstance<py::dict>(obj)) {
    ThrowInvalid("attributes: row {}: expected a dict, got {}", row,
                 std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  for (auto [key, value] : py::reinterpret_borrow<py::dict>(obj)) {
    if (!py::isinstance<py::str>(key)) ThrowInvalid("attributes: row {}: names must be str", row);
    engine::Attribute a;
    a.name = key.cast<std::string>();
    if (py::isinstance<py::bool_>(value)) {
      a.value = int64_t(value.cast<bool>());
    } else if (py::isinstance<py::int_>(value)) {
      try {
        a.value = value.cast<int64_t>();
      } catch (const py::cast_error&) {
        ThrowInvalid("attributes: row {}: '{}': integer out of the int64 range", row, a.name);
      }
    } else if (py::isinstance<py::float_>(value)) {
      a.value = value.cast<double>();
    } else if (py::isinstance<py::str>(value)) {
      a.value = value.cast<std::string>();
    } else if (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) {
      engine::TagList tags;
      for (auto t : value) {
        if (!py::isinstance<py::str>(t)) {
          ThrowInvalid("attributes: row {}: '{}': a tag list holds str only", row, a.name);
        }
        tags.push_back(t.cast<std::string>());
      }
      a.value = std::move(tags);
    } else if (py::hasattr(value, "dtype") && py::hasattr(value, "item")) {
      // numpy scalars (np.int64(3), np.float32(0.5)).
      py::object item = value.attr("item")();
      if (py::isinstance<py::int_>(item)) a.value = item.cast<int64_t>();
      else if (py::isinstance<py::float_>(item)) a.value = item.cast<double>();
      else ThrowInvalid("attributes: row {}: '{}': unsupported value type", row, a.name);
    } else {
      ThrowInvalid("attributes: row {}: '{}': values are int, float, str or a list of str, not {}", row,
                   a.name, std::string(py::str(py::type::of(value).attr("__name__"))));
    }
    out.push_back(std::move(a));
  }
  if (Status s = engine::ValidateAttributes(out); !s.ok()) Throw(s.WithContext(fmt::format("attributes: row {}", row)));
  return out;
}

py::dict FromAttributes(const engine::Attributes& attributes) {
  py::dict d;
  for (const auto& a : attributes) {
    std::visit([&](const auto& v) { d[py::str(a.name)] = py::cast(v); }, a.value);
  }
  return d;
}

}  // namespace strata::python

PYBIND11_MODULE(_strata, m) {
  using namespace strata::python;
  using strata::kInvalidVectorId;
  m.doc() =
      "Strata, from Python: the embedded engine (Engine), the indexes on their own (HnswIndex, "
      "SpannIndex) and the network client (Client). Vectors are numpy arrays; the GIL is released "
      "while Strata works.";
  m.attr("__version__") = STRATA_VERSION;
  m.attr("NO_ID") = py::int_(kInvalidVectorId);
  RegisterErrors(m);
  BindEngine(m);
  BindIndexes(m);
  BindClient(m);
}
