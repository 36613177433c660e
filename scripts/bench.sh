#!/usr/bin/env bash
# Peer benchmarks (longer than the test suite; not part of CI):
#   - distance kernels, every SIMD level, against hnswlib's (Google Benchmark);
#   - exact ground truth for GloVe-100, Strata's flat index against FAISS IndexFlatIP;
#   - HNSW (M=16, ef_construction=200, ef sweep) against hnswlib and FAISS IndexHNSWFlat
#     on GloVe-100 (cosine) and Fashion-MNIST (l2);
#   - SPANN against FAISS IndexIVFFlat with on-disk inverted lists on GloVe-100, warm and cold;
#   - plots of the last two (recall@10 against QPS): `strata plot`, SVG in build/release/bench/results.
# Installs hnswlib and FAISS from Debian, builds Release, fetches the data sets if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
bash scripts/setup.sh --peers
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_TESTS=OFF \
  -DSTRATA_BUILD_BENCH=ON >/dev/null
cmake --build build/release -j"$(nproc)"
DATA="${STRATA_DATA_DIR:-$ROOT/data}"
STRATA_BIN="$ROOT/build/release/tools/strata" bash tools/fetch_dataset.sh glove-100 "$DATA"
STRATA_BIN="$ROOT/build/release/tools/strata" bash tools/fetch_dataset.sh fashion-mnist "$DATA"

echo "=== distance kernels (ns per distance; medians of 5) ==="
build/release/bench/distance_bench --benchmark_repetitions=5 \
  --benchmark_report_aggregates_only=true --benchmark_filter="${DISTANCE_FILTER:-.}" 2>&1 |
  grep -E "median|^Benchmark|^-|CPU|Run"

echo "=== exact ground truth, GloVe-100 cosine, k=100, 2 threads: strata vs FAISS ==="
build/release/bench/flat_vs_faiss --base "$DATA/glove-100/base.fbin" \
  --queries "$DATA/glove-100/query.fbin" --metric cosine --k 100 --threads 2 --reps 3

# Each library builds and searches in its own child process (own peak RSS); build on 2
# threads, search one query at a time on one thread; prints the ef sweep, JSON lines and
# QPS ratios at recall 0.90/0.95/0.99.
RESULTS=build/release/bench/results
STRATA=build/release/tools/strata
mkdir -p "$RESULTS"
echo "=== HNSW peers, GloVe-100 cosine, recall@10, M=16 efc=200, 2 build threads ==="
build/release/bench/hnsw_peers --base "$DATA/glove-100/base.fbin" \
  --queries "$DATA/glove-100/query.fbin" --gt "$DATA/glove-100/gt_cosine_k100.ibin" \
  --metric cosine --k 10 --M 16 --ef-construction 200 --threads 2 --reps 3 \
  --ef 10,16,32,64,128,256,512,768,1024 --libs strata,strata-sq8,strata-sq8-pread,hnswlib \
  --save-dir "$RESULTS" \
  --json build/release/bench/results/hnsw_peers_glove-100.json | tee "$RESULTS/hnsw_peers_glove-100.txt"
# FAISS IndexHNSWFlat on GloVe-100 (for information: Debian's FAISS lacks AVX2, its build takes
# ~8 minutes here): add faiss to --libs above. strata-sq8: HNSW on SQ8 codes (issue 18);
# strata-sq8-pread: the same saved and reloaded with the full vectors read from the file.

echo "=== HNSW peers, Fashion-MNIST l2, recall@10, M=16 efc=200, 2 build threads ==="
build/release/bench/hnsw_peers --base "$DATA/fashion-mnist/base.u8bin" \
  --queries "$DATA/fashion-mnist/query.u8bin" --gt "$DATA/fashion-mnist/gt_l2_k100.ibin" \
  --metric l2 --k 10 --M 16 --ef-construction 200 --threads 2 --reps 3 \
  --ef 10,16,32,64,128,256 --libs strata,strata-sq8,strata-sq8-pread,hnswlib,faiss \
  --save-dir "$RESULTS" --json build/release/bench/results/hnsw_peers_fashion-mnist.json |
  tee "$RESULTS/hnsw_peers_fashion-mnist.txt"

# SPANN vs FAISS IndexIVFFlat whose lists live in an OnDiskInvertedLists file (mmap), FAISS's
# centroid memory matched to SPANN's in-memory part; one query at a time on one thread, warm
# (page cache) and cold (Strata: O_DIRECT; FAISS: page cache dropped with fadvise). The work
# directory must be on a real disk (not tmpfs); the SPANN and FAISS indexes there are reused.
echo "=== SPANN vs FAISS IVFFlat on disk, GloVe-100 cosine, recall@10 ==="
# Codes rows (issue 18): strata-sq8, the same heads with SQ8 codes in the lists, prune 1.0.
rm -rf build/release/bench/spann_work/spann build/release/bench/spann_work/spann-sq8   # rebuilt from the current code (~15 s each); FAISS's is kept
build/release/bench/spann_vs_faiss --base "$DATA/glove-100/base.fbin" \
  --queries "$DATA/glove-100/query.fbin" --gt "$DATA/glove-100/gt_cosine_k100.ibin" \
  --metric cosine --k 10 --threads 2 --max-queries 1000 --reps 3 --faiss-prefetch-threads 0 \
  --spann-variants default,sq8 --prune-epsilon 0.6,1.0 \
  --workdir build/release/bench/spann_work | tee "$RESULTS/spann_vs_faiss_glove-100.txt"

# Plots (strata plot: recall@10 against QPS, one Pareto curve per library; matplotlib from
# Debian): into build/release/bench/results, and into docs/plots when PLOTS_TO_DOCS=1 (to
# commit them with docs/BENCHMARKS.md).
echo "=== plots ==="
PLOTS="$RESULTS"
[[ "${PLOTS_TO_DOCS:-0}" == 1 ]] && PLOTS="$ROOT/docs/plots" && mkdir -p "$PLOTS"
# The title names this machine's CPU and cores, or STRATA_MACHINE when set.
MACHINE=()
[[ -n "${STRATA_MACHINE:-}" ]] && MACHINE=(--machine "$STRATA_MACHINE")
for name in hnsw_peers_glove-100 hnsw_peers_fashion-mnist spann_vs_faiss_glove-100; do
  "$STRATA" plot "$RESULTS/$name.txt" -o "$PLOTS/$name.svg" "${MACHINE[@]}"
done
