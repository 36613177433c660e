#include "engine/segment_writer.h"

#include <algorithm>
#include <cstring>
#include <random>

#include "core/timer.h"
#include "core/vector_set.h"
#include "engine/segment_calibration.h"
#include "index/spann/spann_index.h"

namespace strata::engine {
namespace fs = std::filesystem;

namespace {

index::CodesKind IndexCodes(VectorCodes codes) {
  return codes == VectorCodes::kSq8 ? index::CodesKind::kSq8 : index::CodesKind::kNone;
}

// `count` distinct rows of `n`, ascending (a fixed seed: rewriting the same rows
// picks the same sample).
std::vector<uint32_t> SampleRows(size_t n, size_t count) {
  std::vector<uint32_t> picked;
  std::mt19937_64 rng(7);
  std::vector<bool> taken(n, false);
  while (picked.size() < count) {
    const size_t r = size_t(rng() % n);
    if (!taken[r]) {
      taken[r] = true;
      picked.push_back(uint32_t(r));
    }
  }
  std::sort(picked.begin(), picked.end());
  return picked;
}

Status WriteSpann(const fs::path& sdir, const CollectionSpec& spec, std::span<const SealedSegment::Row> rows,
                  SegmentWriteTimes& times) {
  // SPANN entries are labelled with their rows of records.strata (in id order).
  // A random sample of rows (the side rows) stays out of the index: the segment's
  // calibration queries them, truly held out, and every search scores them exactly.
  const size_t n = rows.size();
  std::vector<uint32_t> side;
  if (n >= kMinCalibrationRows) side = SampleRows(n, CalibrationQueries(n, SegmentKind::kSpann));
  STRATA_RETURN_IF_ERROR(SealedSegment::WriteRecords(sdir, spec.dim, spec.metric, SealedSegment::Kind::kSpann, rows,
                                                     /*graph_labels_rows=*/false, side));
  STRATA_ASSIGN_OR_RETURN(VectorSet vs, VectorSet::Create(n - side.size(), spec.dim));
  std::vector<uint32_t> labels;
  labels.reserve(n - side.size());
  size_t next = 0;
  for (size_t r = 0; r < n; ++r) {
    if (next < side.size() && side[next] == r) {
      ++next;
      continue;
    }
    std::memcpy(vs.mutable_row(labels.size()), rows[r].vector, spec.dim * sizeof(float));
    labels.push_back(uint32_t(r));
  }
  index::SpannBuildOptions so;
  so.metric = spec.metric;
  so.codes = IndexCodes(spec.codes);
  // Heads stay float16 here, unlike strata build --codes sq8: with heads on codes the planner
  // held GloVe's and Fashion-MNIST's recall targets only to -0.019 and +0.0203 (the promise is
  // +-0.02; float16 heads: +0.006 and +0.006; BENCHMARKS section 5, "With codes").
  so.memory_budget_fraction = index::SpannDefaultBudgetFraction(so.codes);
  so.rerank = spec.rerank;
  so.progress = times.progress;
  const Timer build;
  Status built = index::SpannIndex::Build(std::move(vs), SealedSegment::SpannPath(sdir), so, labels);
  times.index_build_seconds += build.Seconds();
  return built;
}

Result<std::unique_ptr<index::HnswIndex>> NewGraph(const CollectionSpec& spec) {
  index::HnswOptions ho;
  ho.M = spec.hnsw_M;
  ho.ef_construction = spec.hnsw_ef_construction;
  ho.codes = IndexCodes(spec.codes);
  ho.rerank = spec.rerank;
  return index::HnswIndex::Create(spec.dim, spec.metric, ho);
}

Status WriteHnsw(const fs::path& sdir, const CollectionSpec& spec, std::span<const SealedSegment::Row> rows,
                 SegmentWriteTimes& times) {
  // The graph labels its nodes with row numbers, so that filters test a bitmap
  // instead of looking ids up.
  STRATA_RETURN_IF_ERROR(SealedSegment::WriteRecords(sdir, spec.dim, spec.metric, SealedSegment::Kind::kHnsw, rows,
                                                     /*graph_labels_rows=*/true));
  const size_t n = rows.size();
  STRATA_ASSIGN_OR_RETURN(auto graph, NewGraph(spec));
  // Truly held-out calibration queries: a random sample of the rows is left out of
  // the graph while it is measured, then inserted. Below kMinCalibrationRows the
  // planner scans: no calibration.
  std::vector<uint32_t> held;
  if (n >= kMinCalibrationRows) held = SampleRows(n, CalibrationQueries(n, SegmentKind::kHnsw));
  STRATA_ASSIGN_OR_RETURN(VectorSet vs, VectorSet::Create(n - held.size(), spec.dim));
  std::vector<VectorId> labels;  // position in vs -> row
  labels.reserve(n - held.size());
  std::vector<uint32_t> position(n, UINT32_MAX);  // row -> position in vs
  size_t next = 0;
  for (size_t r = 0; r < n; ++r) {
    if (next < held.size() && held[next] == r) {
      ++next;
      continue;
    }
    position[r] = uint32_t(labels.size());
    std::memcpy(vs.mutable_row(labels.size()), rows[r].vector, spec.dim * sizeof(float));
    labels.push_back(r);
  }
  const Timer build;
  index::HnswBuildOptions bo;
  bo.progress = times.progress;
  if (!labels.empty()) STRATA_RETURN_IF_ERROR(graph->AddBatch(vs, labels, bo));
  times.index_build_seconds += build.Seconds();
  if (!held.empty()) {
    std::vector<float> queries;
    queries.reserve(held.size() * spec.dim);
    for (uint32_t r : held) queries.insert(queries.end(), rows[r].vector, rows[r].vector + spec.dim);
    HnswCalibrationTarget t;
    t.graph = graph.get();
    t.label_of_row = [&labels](size_t p) { return labels[p]; };
    t.row_of_label = [&position](VectorId label) {
      return label < position.size() && position[label] != UINT32_MAX ? size_t(position[label]) : SIZE_MAX;
    };
    CalibrationSource src;
    src.rows = labels.size();
    src.dim = spec.dim;
    src.metric = spec.metric;
    src.vector = [&vs](size_t p, float*) { return vs.row(p); };
    SetUpHnswCalibration(src, t);
    src.external_queries = queries.data();
    src.num_external_queries = held.size();
    src.progress = times.progress;
    STRATA_ASSIGN_OR_RETURN(Calibration cal, Calibrate(src));
    times.calibration_seconds += cal.seconds;
    STRATA_RETURN_IF_ERROR(cal.Save(SealedSegment::CalibrationPath(sdir)));
    const Timer add_held;
    for (uint32_t r : held) STRATA_RETURN_IF_ERROR(graph->Add(r, VectorView(rows[r].vector, spec.dim)));
    times.index_build_seconds += add_held.Seconds();
  }
  return graph->Save(SealedSegment::GraphPath(sdir));
}

// Opens what was written and calibrates it when the writer did not.
Result<std::unique_ptr<SealedSegment>> OpenCalibrated(const fs::path& sdir, uint64_t sid, size_t dim,
                                                      SegmentWriteTimes& times) {
  STRATA_ASSIGN_OR_RETURN(auto seg, SealedSegment::Open(sdir, sid, dim));
  double seconds = 0;
  STRATA_RETURN_IF_ERROR(seg->CalibrateAndSave(300, &seconds, times.progress));
  times.calibration_seconds += seconds;
  return seg;
}

}  // namespace

Result<std::unique_ptr<SealedSegment>> WriteBuiltSegment(const fs::path& sdir, uint64_t sid,
                                                         const CollectionSpec& spec,
                                                         std::span<const SealedSegment::Row> rows,
                                                         SegmentWriteTimes& times) {
  const uint64_t raw_bytes = uint64_t(rows.size()) * spec.dim * sizeof(float);
  const bool spann = spec.memory_budget_bytes > 0 && raw_bytes > spec.memory_budget_bytes &&
                     spec.metric != Metric::kInnerProduct && rows.size() >= 1000;
  STRATA_RETURN_IF_ERROR(spann ? WriteSpann(sdir, spec, rows, times) : WriteHnsw(sdir, spec, rows, times));
  return OpenCalibrated(sdir, sid, spec.dim, times);
}

Result<std::unique_ptr<SealedSegment>> WriteSegmentWithGraph(const fs::path& sdir, uint64_t sid,
                                                             const CollectionSpec& spec,
                                                             std::span<const SealedSegment::Row> rows,
                                                             const index::HnswIndex& graph,
                                                             std::span<const VectorId> relabel,
                                                             SegmentWriteTimes& times) {
  STRATA_RETURN_IF_ERROR(SealedSegment::WriteRecords(sdir, spec.dim, spec.metric, SealedSegment::Kind::kHnsw, rows,
                                                     /*graph_labels_rows=*/true));
  STRATA_RETURN_IF_ERROR(graph.SaveRelabeled(SealedSegment::GraphPath(sdir), relabel));
  return OpenCalibrated(sdir, sid, spec.dim, times);
}

}  // namespace strata::engine
