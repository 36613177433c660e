#include "engine/calibration.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <unordered_map>
#include <random>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "core/progress.h"
#include "core/topk.h"
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
  j["seconds"] = seconds;
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
    c.seconds = j.value("seconds", 0.0);
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

namespace {

// Adaptive measurement (docs/PLANNER.md, "Calibration cost"); the constants were
// chosen on GloVe-100 and Fashion-MNIST (docs/BENCHMARKS.md section 5):
// - kFirstQueries: every point is measured with this many held-out queries first;
//   a point whose recall lies where targets are asked for (kSeLow..kSeHigh) gets
//   more (doubling, up to the caller's maximum) while its standard error is above
//   kMaxStdErr. The planner promises +-0.02; at 0.005 a point's sampling error stays
//   within 0.01 at 2 sigma, leaving the rest for held-out rows that differ from the
//   real queries (at 0.0075 -- 100 queries at recall 0.95 on Fashion-MNIST -- ef 10
//   measured 0.954 where the data set's queries find 0.933). The filtered tables,
//   read with a margin and interpolated in log(selectivity), take
//   kMaxStdErrFiltered. Recall varies most from query to query where it is low
//   (per-query sd about 0.15 at 0.9 on GloVe, 0.03 at 0.99), and the points there
//   are the cheap ones: the expensive high-parameter points keep the first 100.
// - kMaxGap / kMaxGapFiltered: neighbouring measured points further apart than this
//   in recall get the grid point between them measured (bisection of the recall
//   curve). The curve is concave, so linear interpolation between points errs low:
//   the planner asks for a slightly larger parameter, never a smaller. Filtered
//   tables are interpolated in log(selectivity) and searched with a margin anyway.
// - kSaturated: the walk up the grid (doubling the parameter) stops at the first
//   point reaching it (both recall@10 and recall@100 for the unfiltered table).
// - kPlateauFrom / kPlateauGain: it also stops when a doubling gained at most
//   0.001 in every recall above 0.99 (levelled off short of kSaturated).
// - kCostCapScans: and when a search costs this many times the exact scan of the
//   rows the table covers (for a filtered table, the rows of the next broader one:
//   the range the planner interpolates it over), since the planner scans there.
constexpr size_t kFirstQueries = 100;
constexpr double kMaxStdErr = 0.005, kMaxStdErrFiltered = 0.0075;
constexpr double kSeLow = 0.8, kSeHigh = 0.995;
constexpr double kMaxGap = 0.015;
constexpr double kMaxGapFiltered = 0.03;
constexpr double kSaturated = 0.999;
constexpr double kPlateauFrom = 0.99, kPlateauGain = 0.001;
constexpr double kCostCapScans = 1.0;
// Answers asked for when the filtered tables are derived from unfiltered searches:
// enough that the smallest subset (2%) has 10 members among them (20 expected).
constexpr size_t kDeriveK = 1000;

// Sums over the queries measured at one grid point.
struct Acc {
  size_t n = 0;
  double r10 = 0, r10sq = 0, r100 = 0, r100sq = 0, cost = 0;
  // Recall@10 within each random subset, derived from the same searches
  // (CalibrationSource::derive_filtered).
  std::array<double, std::size(Calibration::kFilteredSelectivities)> sub{};
  bool has100 = false;
  double Mean10() const { return n ? r10 / double(n) : 0; }
  double Mean100() const { return n ? r100 / double(n) : 0; }
  double MeanCost() const { return n ? cost / double(n) : 0; }
  static double StdErr(double sum, double sq, size_t n) {
    if (n < 2) return 1.0;
    const double m = sum / double(n);
    const double var = std::max(0.0, (sq - double(n) * m * m) / double(n - 1));
    return std::sqrt(var / double(n));
  }
  // The largest standard error among this point's recalls in the range targets use.
  double WorstStdErr() const {
    double se = 0;
    const double m10 = Mean10();
    if (m10 >= kSeLow && m10 <= kSeHigh) se = std::max(se, StdErr(r10, r10sq, n));
    const double m100 = Mean100();
    if (has100 && m100 >= kSeLow && m100 <= kSeHigh) se = std::max(se, StdErr(r100, r100sq, n));
    return se;
  }
};

}  // namespace

Result<Calibration> Calibrate(const CalibrationSource& src, size_t queries, uint64_t seed) {
  const auto started = std::chrono::steady_clock::now();
  Calibration cal;
  const size_t n = src.rows;
  if (n < 2 || src.grid.empty()) return cal;
  constexpr size_t kNoRow = SIZE_MAX;
  const bool external = src.external_queries != nullptr;
  size_t nq = external ? src.num_external_queries : std::min(queries, n);
  if (nq == 0) return cal;
  std::mt19937_64 rng(seed);
  // Distinct sample rows (or, with external queries, none held out of the index).
  std::vector<size_t> sample(external ? nq : 0, kNoRow);
  // The order queries are measured in: random, since the first batch may be all that
  // is measured (external queries come in row order, and rows may be sorted by
  // something that correlates with difficulty, e.g. word frequency).
  std::vector<size_t> order;
  if (!external) {
    std::unordered_set<size_t> seen;
    for (size_t tries = 0; sample.size() < nq && tries < 50 * nq; ++tries) {
      const size_t r = size_t(rng() % n);
      if (seen.insert(r).second) sample.push_back(r);
    }
    if (sample.empty()) return cal;
    nq = sample.size();
    order.resize(nq);
    std::iota(order.begin(), order.end(), 0);
  } else {
    order.resize(nq);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
  }
  const auto& kern = index::Kernels();
  const size_t dim = src.dim;
  const bool cosine = src.metric == Metric::kCosine;
  const Metric scored = cosine ? Metric::kInnerProduct : src.metric;
  std::vector<float> inv_norm;
  if (cosine) {
    inv_norm.resize(n);
    std::vector<float> buf(dim);
    for (size_t i = 0; i < n; ++i) {
      const float* v = src.vector(i, buf.data());
      const float nn = kern.ip(v, v, dim);
      inv_norm[i] = nn > 0 ? 1.0f / std::sqrt(nn) : 0.0f;
    }
  }
  const size_t kmax = std::min<size_t>(100, external ? n : n - 1);
  const uint32_t k10 = uint32_t(std::min<size_t>(10, kmax));
  const bool with100 = kmax >= 100;
  constexpr size_t kSubsets = std::size(Calibration::kFilteredSelectivities);
  std::vector<std::array<bool, kSubsets>> member(n);
  for (size_t r = 0; r < n; ++r) {
    for (size_t si = 0; si < kSubsets; ++si) member[r][si] = Calibration::InSubset(r, Calibration::kFilteredSelectivities[si]);
  }
  // Deriving the filtered tables needs the row of an answer's id.
  std::unordered_map<VectorId, uint32_t> row_of;
  if (src.derive_filtered) {
    row_of.reserve(n);
    for (size_t r = 0; r < n; ++r) row_of.emplace(src.id(r), uint32_t(r));
  }
  // Per query (index into `order`'s positions, filled as batches are added): the
  // query, its exact top-kmax (its own row excluded), and its exact top-10 within
  // each random subset.
  std::vector<std::vector<VectorId>> truth(nq);
  std::vector<std::array<std::vector<VectorId>, kSubsets>> subset_truth(nq);
  std::vector<std::vector<float>> qv(nq);
  std::vector<VectorId> self_id(nq, kInvalidVectorId);
  size_t prepared = 0;
  // Counts the queries whose exact answers are known: the bulk of the work, and what an
  // ETA can be given for (how many grid points are measured depends on what they show).
  Progress progress("calibration", nq, !src.progress);
  auto prepare = [&](size_t upto) {
    if (upto <= prepared) return;
    // Queries go in groups of kGroup per pass over the rows, so that each row is
    // read from memory once per group: the rows of a large segment do not fit in
    // cache, and one pass per query was bound by memory bandwidth.
    constexpr size_t kGroup = 8;
    const size_t groups = (upto - prepared + kGroup - 1) / kGroup;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t g = 0; g < groups; ++g) {
      const size_t lo = prepared + g * kGroup, hi = std::min(upto, lo + kGroup);
      struct Pending {
        size_t self = kNoRow;
        TopK<VectorId> top;                         // the best kmax
        std::array<TopK<VectorId>, kSubsets> sub;  // the best 10 of each subset
      };
      std::array<Pending, kGroup> qs;
      std::vector<float> buf(dim);
      for (size_t pos = lo; pos < hi; ++pos) {
        const size_t qi = order[pos];
        Pending& p = qs[pos - lo];
        p.self = sample[qi];
        if (p.self != kNoRow) self_id[pos] = src.id(p.self);
        const float* qsrc = external ? src.external_queries + qi * dim : src.vector(p.self, buf.data());
        qv[pos].assign(qsrc, qsrc + dim);
        if (cosine) {
          const float nn = kern.ip(qsrc, qsrc, dim);
          const float inv = nn > 0 ? 1.0f / std::sqrt(nn) : 0.0f;
          for (float& x : qv[pos]) x *= inv;
        }
        p.top.Reset(kmax);
        for (auto& sub_top : p.sub) sub_top.Reset(10);
      }
      for (size_t r = 0; r < n; ++r) {
        const float* v = src.vector(r, buf.data());
        const VectorId id = src.id(r);
        for (size_t pos = lo; pos < hi; ++pos) {
          Pending& p = qs[pos - lo];
          if (r == p.self) continue;
          float d = index::Distance(kern, scored, qv[pos].data(), v, dim);
          if (cosine) d *= inv_norm[r];
          p.top.Push(d, id);
          for (size_t si = 0; si < kSubsets; ++si) {
            if (member[r][si]) p.sub[si].Push(d, id);
          }
        }
      }
      progress.Add(hi - lo);
      for (size_t pos = lo; pos < hi; ++pos) {
        Pending& p = qs[pos - lo];
        truth[pos].reserve(p.top.size());
        for (const auto& h : p.top.TakeSorted()) truth[pos].push_back(h.id);
        for (size_t si = 0; si < kSubsets; ++si) {
          for (const auto& h : p.sub[si].TakeSorted()) subset_truth[pos][si].push_back(h.id);
        }
      }
    }
    prepared = upto;
  };

  // One table's measurements: grid index -> sums over queries [0, queries_in).
  // subset < 0: unfiltered, recall@10 and (where the parameter allows k = 100)
  // recall@100 from the same search; otherwise recall@10 within subset `subset`.
  const std::vector<uint32_t>& grid = src.grid;
  struct Curve {
    int subset = -1;
    double cost_cap = 0;  // 0: none
    std::map<size_t, Acc> points;
  };
  const size_t first_queries = std::min(nq, kFirstQueries);
  auto wants100 = [&](const Curve& c, size_t gi) {
    return c.subset < 0 && with100 && (!src.param_at_least_k || grid[gi] >= 100);
  };
  // Adds queries [from, to) to grid point gi of curve c.
  auto measure = [&](Curve& c, size_t gi, size_t from, size_t to) -> Status {
    if (from >= to) return Status::Ok();
    const uint32_t param = grid[gi];
    const bool both = wants100(c, gi);
    const bool derive = src.derive_filtered && c.subset < 0;
    const uint32_t k = derive ? uint32_t(std::min<size_t>(kDeriveK, n)) : both ? 100 : k10;
    std::function<bool(size_t)> allowed;
    if (c.subset >= 0) allowed = [&member, s = size_t(c.subset)](size_t r) { return member[r][s]; };
    std::vector<double> r10(to - from, 0), r100(to - from, 0), cost(to - from, 0);
    std::vector<std::array<double, kSubsets>> rsub(to - from);
    Status failed;
#pragma omp parallel for schedule(dynamic, 2)
    for (size_t pos = from; pos < to; ++pos) {
      double cst = 0;
      auto res = src.search(qv[pos].data(), k + 1, param, sample[order[pos]], c.subset >= 0 ? &allowed : nullptr, &cst);
      if (!res) {
#pragma omp critical
        failed = res.error();
        continue;
      }
      // Recall@kk of the answer (the query's own row dropped) against `t`.
      auto recall = [&](const std::vector<VectorId>& t, size_t kk) {
        kk = std::min(kk, t.size());
        if (kk == 0) return 1.0;
        size_t hit = 0, taken = 0;
        for (const Neighbor& nb : *res) {
          if (nb.id == self_id[pos]) continue;
          if (taken++ == kk) break;
          hit += std::find(t.begin(), t.begin() + kk, nb.id) != t.begin() + kk;
        }
        return double(hit) / double(kk);
      };
      const auto& t = c.subset >= 0 ? subset_truth[pos][size_t(c.subset)] : truth[pos];
      r10[pos - from] = recall(t, k10);
      if (both) r100[pos - from] = recall(t, 100);
      cost[pos - from] = cst;
      if (derive) {
        // What a filtered search of subset si returns: the best matching entries
        // among those read -- the first 10 members of this longer answer.
        for (size_t si = 0; si < kSubsets; ++si) {
          const auto& st = subset_truth[pos][si];
          const size_t kk = std::min<size_t>(10, st.size());
          size_t hit = 0, taken = 0;
          for (const Neighbor& nb : *res) {
            if (taken == kk) break;
            if (nb.id == self_id[pos]) continue;
            auto row = row_of.find(nb.id);
            if (row == row_of.end() || !member[row->second][si]) continue;
            ++taken;
            hit += std::find(st.begin(), st.begin() + kk, nb.id) != st.begin() + kk;
          }
          rsub[pos - from][si] = kk ? double(hit) / double(kk) : 1.0;
        }
      }
    }
    STRATA_RETURN_IF_ERROR(failed);
    Acc& a = c.points[gi];
    a.has100 = both;
    for (size_t i = 0; i < r10.size(); ++i) {
      a.r10 += r10[i];
      a.r10sq += r10[i] * r10[i];
      a.r100 += r100[i];
      a.r100sq += r100[i] * r100[i];
      a.cost += cost[i];
      for (size_t si = 0; si < kSubsets; ++si) a.sub[si] += rsub[i][si];
    }
    a.n += to - from;
    return Status::Ok();
  };
  auto ensure = [&](Curve& c, size_t gi) -> Status {
    if (c.points.count(gi)) return Status::Ok();
    return measure(c, gi, 0, first_queries);
  };
  auto saturated = [&](const Acc& a) {
    return a.Mean10() >= kSaturated && (!a.has100 || a.Mean100() >= kSaturated);
  };
  // A doubling of the parameter that gained at most kPlateauGain in every recall,
  // once targets up to kPlateauFrom are bracketed: recall has levelled off below 1
  // (a few held-out queries the index does not find at any affordable parameter),
  // and a target above it is served by the scan.
  auto plateau = [&](const Acc& lo, const Acc& hi) {
    if (hi.Mean10() < kPlateauFrom || hi.Mean10() - lo.Mean10() > kPlateauGain) return false;
    if (!hi.has100) return true;
    return lo.has100 && hi.Mean100() >= kPlateauFrom && hi.Mean100() - lo.Mean100() <= kPlateauGain;
  };
  // First grid point the table may use (HNSW: ef >= k).
  size_t first = 0;
  while (first < grid.size() && src.param_at_least_k && grid[first] < k10) ++first;
  if (first == grid.size()) return cal;
  // The first point of the recall@100 table, so that it starts where it did with a
  // fixed grid (k > 10 searches and post-filters read it).
  size_t first100 = first;
  while (first100 < grid.size() && src.param_at_least_k && grid[first100] < 100) ++first100;

  // Walks up the grid doubling the parameter until recall saturates or the cost
  // passes the cap, then bisects neighbouring points whose recalls differ by more
  // than kMaxGap; adds queries while the standard error says so.
  auto build = [&](Curve& c) -> Status {
    prepare(first_queries);
    for (;;) {
      for (size_t gi = first, prev = SIZE_MAX;;) {
        STRATA_RETURN_IF_ERROR(ensure(c, gi));
        const Acc& a = c.points[gi];
        if (saturated(a) || (c.cost_cap > 0 && a.MeanCost() >= c.cost_cap) || gi + 1 == grid.size()) break;
        if (prev != SIZE_MAX && plateau(c.points[prev], a)) break;
        prev = gi;
        size_t next = gi + 1;
        while (next + 1 < grid.size() && grid[next] < 2 * grid[gi]) ++next;
        if (c.subset < 0 && with100 && gi < first100 && next > first100) next = first100;
        gi = next;
      }
      for (bool changed = true; changed;) {
        changed = false;
        for (auto it = c.points.begin(); std::next(it) != c.points.end(); ++it) {
          auto nx = std::next(it);
          if (nx->first <= it->first + 1) continue;
          double gap = nx->second.Mean10() - it->second.Mean10();
          if (it->second.has100 && nx->second.has100) gap = std::max(gap, nx->second.Mean100() - it->second.Mean100());
          if (gap > (c.subset < 0 ? kMaxGap : kMaxGapFiltered)) {
            STRATA_RETURN_IF_ERROR(ensure(c, (it->first + nx->first) / 2));
            changed = true;
            break;  // the map changed: walk it again
          }
        }
      }
      // Each point gets the queries its own confidence needs: recall varies most
      // from query to query where it is low, and the points there are the cheap ones.
      bool grew = false;
      for (auto& [gi, a] : c.points) {
        if (a.n >= nq || a.WorstStdErr() <= (c.subset < 0 ? kMaxStdErr : kMaxStdErrFiltered)) continue;
        const size_t more = std::min(nq, 2 * a.n);
        prepare(more);
        STRATA_RETURN_IF_ERROR(measure(c, gi, a.n, more));
        grew = true;
      }
      if (!grew) return Status::Ok();
    }
  };
  const double scan_cap = kCostCapScans * src.scan_cost_per_row * double(n);
  Curve unfiltered;
  unfiltered.cost_cap = scan_cap;
  STRATA_RETURN_IF_ERROR(build(unfiltered));
  for (const auto& [gi, a] : unfiltered.points) cal.queries = std::max(cal.queries, uint32_t(a.n));
  cal.k10.k = k10;
  cal.k100.k = 100;
  for (const auto& [gi, a] : unfiltered.points) {
    cal.k10.points.push_back({grid[gi], a.Mean10(), a.MeanCost()});
    if (a.has100) cal.k100.points.push_back({grid[gi], a.Mean100(), a.MeanCost()});
  }
  double broader = 1.0;
  for (size_t si = 0; si < kSubsets; ++si) {
    if (src.derive_filtered) {
      // From the unfiltered searches, up to the point where the table's own cost
      // cap would have stopped it (the cost of a filtered search is the same).
      FilteredTable f;
      f.selectivity = Calibration::kFilteredSelectivities[si];
      f.table.k = 10;
      for (const auto& [gi, a] : unfiltered.points) {
        f.table.points.push_back({grid[gi], a.sub[si] / double(a.n), a.MeanCost()});
        if (scan_cap > 0 && a.MeanCost() >= scan_cap * broader) break;
      }
      cal.filtered.push_back(std::move(f));
      broader = Calibration::kFilteredSelectivities[si];
      continue;
    }
    Curve c;
    c.subset = int(si);
    c.cost_cap = scan_cap * broader;
    STRATA_RETURN_IF_ERROR(build(c));
    FilteredTable f;
    f.selectivity = Calibration::kFilteredSelectivities[si];
    f.table.k = 10;
    for (const auto& [gi, a] : c.points) f.table.points.push_back({grid[gi], a.Mean10(), a.MeanCost()});
    cal.filtered.push_back(std::move(f));
    broader = Calibration::kFilteredSelectivities[si];
  }
  cal.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return cal;
}

}  // namespace strata::engine
