#include "engine/calibration.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <random>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "index/distance/distance.h"
#include "storage/section_file.h"

namespace strata::engine {
namespace {

constexpr char kMagic[] = "STRCAL";
constexpr uint16_t kMajor = 1;
constexpr uint16_t kMinor = 0;
constexpr uint32_t kTagJson = storage::SectionTag("JSON");

const CalibrationTable& TableFor(const Calibration& c, uint32_t k) {
  return (k <= 10 || c.k100.points.empty()) ? c.k10 : c.k100;
}

Calibration::Choice Interpolate(const CalibrationPoint& a, const CalibrationPoint& b, double param) {
  const double t = b.param == a.param ? 1.0 : (param - a.param) / double(b.param - a.param);
  Calibration::Choice c;
  c.param = uint32_t(std::ceil(param));
  c.predicted_recall = a.recall + t * (b.recall - a.recall);
  c.cost = a.cost + t * (b.cost - a.cost);
  return c;
}

nlohmann::json TableJson(const CalibrationTable& t) {
  nlohmann::json j;
  j["k"] = t.k;
  j["points"] = nlohmann::json::array();
  for (const auto& p : t.points) j["points"].push_back({p.param, p.recall, p.cost});
  return j;
}

CalibrationTable TableFrom(const nlohmann::json& j) {
  CalibrationTable t;
  t.k = j.at("k").get<uint32_t>();
  for (const auto& p : j.at("points")) {
    t.points.push_back({p.at(0).get<uint32_t>(), p.at(1).get<double>(), p.at(2).get<double>()});
  }
  return t;
}

}  // namespace

Calibration::Choice Calibration::ChooseIn(const CalibrationTable& t, double target, uint32_t k,
                                          bool param_at_least_k) {
  Choice c;
  if (t.points.empty()) {
    c.reachable = false;
    return c;
  }
  const auto& pts = t.points;
  size_t i = 0;
  while (i < pts.size() && pts[i].recall < target) ++i;
  if (i == pts.size()) {
    c.param = pts.back().param;
    c.predicted_recall = pts.back().recall;
    c.cost = pts.back().cost;
    c.reachable = false;
  } else if (i == 0) {
    c.param = pts[0].param;
    c.predicted_recall = pts[0].recall;
    c.cost = pts[0].cost;
  } else {
    const auto& a = pts[i - 1];
    const auto& b = pts[i];
    const double t01 = (target - a.recall) / std::max(b.recall - a.recall, 1e-12);
    c = Interpolate(a, b, a.param + t01 * (b.param - a.param));
  }
  if (param_at_least_k && c.param < k) c.param = k;
  return c;
}

Calibration::Choice Calibration::For(double target, uint32_t k, bool param_at_least_k) const {
  return ChooseIn(TableFor(*this, k), target, k, param_at_least_k);
}

Calibration::Choice Calibration::At(uint32_t param, uint32_t k) const {
  const CalibrationTable& t = TableFor(*this, k);
  Choice c;
  c.param = param;
  if (t.points.empty()) return c;
  const auto& pts = t.points;
  if (param <= pts.front().param) {
    c.predicted_recall = pts.front().recall;
    c.cost = pts.front().cost * double(param) / std::max<uint32_t>(pts.front().param, 1);
    return c;
  }
  for (size_t i = 1; i < pts.size(); ++i) {
    if (param <= pts[i].param) {
      c = Interpolate(pts[i - 1], pts[i], param);
      c.param = param;
      return c;
    }
  }
  c.predicted_recall = pts.back().recall;
  c.cost = pts.back().cost * double(param) / std::max<uint32_t>(pts.back().param, 1);
  return c;
}

Calibration::Choice Calibration::ForDepth(double target, uint32_t depth, bool param_at_least_k) const {
  if (depth <= 10 || k100.points.empty()) return For(target, std::min<uint32_t>(depth, 10), param_at_least_k);
  const Choice a = ChooseIn(k10, target, 10, param_at_least_k);
  const Choice b = ChooseIn(k100, target, 100, false);
  const double t = std::log(double(std::min<uint32_t>(depth, 100)) / 10.0) / std::log(10.0);
  Choice c;
  c.param = uint32_t(std::ceil(double(a.param) + t * (double(b.param) - double(a.param))));
  c.param = std::max(c.param, a.param);
  c.reachable = a.reachable && b.reachable;
  c.predicted_recall = c.reachable ? target : std::min(a.predicted_recall, b.predicted_recall);
  c.cost = At(c.param, 10).cost;
  return c;
}

bool Calibration::InSubset(size_t row, double s) {
  uint64_t z = uint64_t(row) + 0x9e3779b97f4a7c15ull;  // splitmix64
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return double(z >> 11) * 0x1.0p-53 < s;
}

Calibration::Choice Calibration::ForFiltered(double target, uint32_t k, double s, bool param_at_least_k,
                                             double margin) const {
  Choice none;
  if (filtered.empty() || k > 10) return none;  // filtered tables are recall@10
  target = std::min(1.0, target + margin);
  // Walk the tables from s = 1 down until two bracket s (no copies: this runs per query).
  double s_hi = 1.0;
  Choice hi = For(target, k, param_at_least_k);
  if (s >= 1.0) return hi;
  for (const auto& f : filtered) {
    const double s_lo = f.selectivity;
    const Choice lo = ChooseIn(f.table, target, k, param_at_least_k);
    if (s >= s_lo) {
      const double t = (std::log(s_hi) - std::log(s)) / (std::log(s_hi) - std::log(s_lo));
      Choice c;
      c.param = uint32_t(std::ceil(hi.param + t * (double(lo.param) - double(hi.param))));
      c.predicted_recall = hi.predicted_recall + t * (lo.predicted_recall - hi.predicted_recall);
      c.cost = hi.cost + t * (lo.cost - hi.cost);
      c.reachable = hi.reachable && lo.reachable;
      if (param_at_least_k && c.param < k) c.param = k;
      return c;
    }
    s_hi = s_lo;
    hi = lo;
  }
  // Below the smallest measured selectivity: its parameter, its cost scaled by 1/s.
  Choice c = hi;
  c.cost = hi.cost * s_hi / std::max(s, 1e-9);
  return c;
}

std::string Calibration::ToJson() const {
  nlohmann::json j;
  j["queries"] = queries;
  j["k10"] = TableJson(k10);
  j["k100"] = TableJson(k100);
  j["filtered"] = nlohmann::json::array();
  for (const auto& f : filtered) j["filtered"].push_back({{"selectivity", f.selectivity}, {"table", TableJson(f.table)}});
  return j.dump();
}

Result<Calibration> Calibration::FromJson(const std::string& text) {
  try {
    const auto j = nlohmann::json::parse(text);
    Calibration c;
    c.queries = j.at("queries").get<uint32_t>();
    c.k10 = TableFrom(j.at("k10"));
    c.k100 = TableFrom(j.at("k100"));
    if (j.contains("filtered")) {
      for (const auto& f : j.at("filtered")) {
        c.filtered.push_back({f.at("selectivity").get<double>(), TableFrom(f.at("table"))});
      }
    }
    return c;
  } catch (const std::exception& e) {
    return Error(Corruption("calibration table is not valid: {}", e.what()));
  }
}

Status Calibration::Save(const std::filesystem::path& path) const {
  const std::string text = ToJson();
  STRATA_ASSIGN_OR_RETURN(auto w, storage::SectionFileWriter::Create(path, kMagic, kMajor, kMinor));
  STRATA_RETURN_IF_ERROR(w.AddSection(kTagJson, std::as_bytes(std::span(text.data(), text.size()))));
  return w.Commit();
}

Result<Calibration> Calibration::Load(const std::filesystem::path& path) {
  STRATA_ASSIGN_OR_RETURN(storage::SectionFile f, storage::SectionFile::Open(path, kMagic, kMajor));
  STRATA_ASSIGN_OR_RETURN(auto bytes, f.Section(kTagJson));
  auto c = FromJson(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  if (!c) return Error(c.error().WithContext(path.string()));
  return c;
}

std::vector<uint32_t> HnswCalibrationGrid() {
  return {10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256,
          320, 384, 448, 512, 640, 768, 1024, 1536, 2048};
}

std::vector<uint32_t> SpannCalibrationGrid(size_t lists) {
  std::vector<uint32_t> g;
  for (uint32_t v : {4u, 8u, 12u, 16u, 24u, 32u, 40u, 48u, 64u, 80u, 96u, 128u, 160u, 192u, 256u, 320u,
                     384u, 512u, 768u, 1024u}) {
    if (v >= lists) {
      g.push_back(uint32_t(lists));
      break;
    }
    g.push_back(v);
  }
  return g;
}

Result<Calibration> Calibrate(const CalibrationSource& src, size_t queries, uint64_t seed) {
  Calibration cal;
  const size_t n = src.rows;
  if (n < 2 || src.grid.empty()) return cal;
  constexpr size_t kNoRow = SIZE_MAX;
  const bool external = src.external_queries != nullptr;
  size_t nq = external ? src.num_external_queries : std::min(queries, n);
  if (nq == 0) return cal;
  // Distinct sample rows (or, with external queries, none held out of the index).
  std::vector<size_t> sample(external ? nq : 0, kNoRow);
  if (!external) {
    std::mt19937_64 rng(seed);
    std::unordered_set<size_t> seen;
    for (size_t tries = 0; sample.size() < nq && tries < 50 * nq; ++tries) {
      const size_t r = size_t(rng() % n);
      if (seen.insert(r).second) sample.push_back(r);
    }
    if (sample.empty()) return cal;
    nq = sample.size();
  }
  const auto& kern = index::Kernels();
  const size_t dim = src.dim;
  const bool cosine = src.metric == Metric::kCosine;
  const Metric scored = cosine ? Metric::kInnerProduct : src.metric;
  std::vector<float> inv_norm;
  if (cosine) {
    inv_norm.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const float* v = src.vector(i);
      const float nn = kern.ip(v, v, dim);
      inv_norm[i] = nn > 0 ? 1.0f / std::sqrt(nn) : 0.0f;
    }
  }
  const size_t kmax = std::min<size_t>(100, external ? n : n - 1);
  constexpr size_t kSubsets = std::size(Calibration::kFilteredSelectivities);
  // Exact top-kmax of each query (its own row excluded), and the query itself;
  // also the exact top-10 within each random subset.
  std::vector<std::vector<VectorId>> truth(nq);
  std::vector<std::array<std::vector<VectorId>, kSubsets>> subset_truth(nq);
  std::vector<std::array<bool, kSubsets>> member(n);
  for (size_t r = 0; r < n; ++r) {
    for (size_t si = 0; si < kSubsets; ++si) member[r][si] = Calibration::InSubset(r, Calibration::kFilteredSelectivities[si]);
  }
  std::vector<std::vector<float>> qv(nq, std::vector<float>(dim));
#pragma omp parallel for schedule(dynamic, 4)
  for (size_t qi = 0; qi < nq; ++qi) {
    const size_t self = sample[qi];
    const float* qsrc = external ? src.external_queries + qi * dim : src.vector(self);
    std::copy(qsrc, qsrc + dim, qv[qi].begin());
    if (cosine) {
      const float nn = kern.ip(qsrc, qsrc, dim);
      const float inv = nn > 0 ? 1.0f / std::sqrt(nn) : 0.0f;
      for (float& x : qv[qi]) x *= inv;
    }
    std::vector<Neighbor> heap;  // max-heap of the best kmax
    heap.reserve(kmax + 1);
    std::array<std::vector<Neighbor>, kSubsets> sub;
    auto push = [](std::vector<Neighbor>& h, size_t cap, const Neighbor& nb) {
      if (h.size() < cap) {
        h.push_back(nb);
        std::push_heap(h.begin(), h.end());
      } else if (nb < h.front()) {
        std::pop_heap(h.begin(), h.end());
        h.back() = nb;
        std::push_heap(h.begin(), h.end());
      }
    };
    for (size_t r = 0; r < n; ++r) {
      if (r == self) continue;
      float d = index::Distance(kern, scored, qv[qi].data(), src.vector(r), dim);
      if (cosine) d *= inv_norm[r];
      const Neighbor nb{src.id(r), d};
      push(heap, kmax, nb);
      for (size_t si = 0; si < kSubsets; ++si) {
        if (member[r][si]) push(sub[si], 10, nb);
      }
    }
    std::sort_heap(heap.begin(), heap.end());
    truth[qi].reserve(heap.size());
    for (const auto& h : heap) truth[qi].push_back(h.id);
    for (size_t si = 0; si < kSubsets; ++si) {
      std::sort_heap(sub[si].begin(), sub[si].end());
      for (const auto& h : sub[si]) subset_truth[qi][si].push_back(h.id);
    }
  }
  // subset < 0: unfiltered, recall@k against `truth`; otherwise recall@10 within subset `subset`.
  auto measure = [&](uint32_t k, CalibrationTable& table, int subset = -1) -> Status {
    table.k = k;
    if (k > kmax) return Status::Ok();
    std::function<bool(size_t)> allowed;
    if (subset >= 0) allowed = [&member, subset](size_t r) { return member[r][size_t(subset)]; };
    int misses = 0;
    for (uint32_t param : src.grid) {
      if (src.param_at_least_k && param < k) continue;
      std::vector<double> recall(nq, 0), cost(nq, 0);
      Status failed;
#pragma omp parallel for schedule(dynamic, 4)
      for (size_t qi = 0; qi < nq; ++qi) {
        double c = 0;
        auto res = src.search(qv[qi].data(), k + 1, param, sample[qi], subset >= 0 ? &allowed : nullptr, &c);
        if (!res) {
#pragma omp critical
          failed = res.error();
          continue;
        }
        const VectorId self = sample[qi] == kNoRow ? kInvalidVectorId : src.id(sample[qi]);
        const auto& t = subset >= 0 ? subset_truth[qi][size_t(subset)] : truth[qi];
        const size_t kk = std::min<size_t>(k, t.size());
        std::unordered_set<VectorId> want(t.begin(), t.begin() + kk);
        size_t hit = 0, taken = 0;
        for (const Neighbor& nb : *res) {
          if (nb.id == self) continue;
          if (taken++ == kk) break;
          hit += want.count(nb.id);
        }
        recall[qi] = kk ? double(hit) / double(kk) : 1.0;
        cost[qi] = c;
      }
      STRATA_RETURN_IF_ERROR(failed);
      const double r = std::accumulate(recall.begin(), recall.end(), 0.0) / nq;
      const double c = std::accumulate(cost.begin(), cost.end(), 0.0) / nq;
      table.points.push_back({param, r, c});
      // Stop once recall is (nearly) saturated twice in a row.
      if (r >= 0.999 && ++misses >= 2) break;
    }
    return Status::Ok();
  };
  cal.queries = uint32_t(nq);
  STRATA_RETURN_IF_ERROR(measure(10, cal.k10));
  if (cal.k10.points.empty()) STRATA_RETURN_IF_ERROR(measure(uint32_t(std::min<size_t>(10, kmax)), cal.k10));
  STRATA_RETURN_IF_ERROR(measure(100, cal.k100));
  for (size_t si = 0; si < kSubsets; ++si) {
    FilteredTable f;
    f.selectivity = Calibration::kFilteredSelectivities[si];
    STRATA_RETURN_IF_ERROR(measure(10, f.table, int(si)));
    cal.filtered.push_back(std::move(f));
  }
  return cal;
}

}  // namespace strata::engine
