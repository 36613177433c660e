#!/usr/bin/env bash
# Peer benchmarks (longer than the test suite; not part of CI):
#   - distance kernels, every SIMD level, against hnswlib's (Google Benchmark);
#   - exact ground truth for GloVe-100, Strata's flat index against FAISS IndexFlatIP.
# Installs hnswlib and FAISS from Debian, builds Release, fetches GloVe-100 if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
bash scripts/setup.sh --peers
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_TESTS=OFF \
  -DSTRATA_BUILD_BENCH=ON >/dev/null
cmake --build build/release -j"$(nproc)"
DATA="${STRATA_DATA_DIR:-$ROOT/data}"
STRATA_BIN="$ROOT/build/release/tools/strata" bash tools/fetch_dataset.sh glove-100 "$DATA"

echo "=== distance kernels (ns per distance; medians of 5) ==="
build/release/bench/distance_bench --benchmark_repetitions=5 \
  --benchmark_report_aggregates_only=true --benchmark_filter="${DISTANCE_FILTER:-.}" 2>&1 |
  grep -E "median|^Benchmark|^-|CPU|Run"

echo "=== exact ground truth, GloVe-100 cosine, k=100, 2 threads: strata vs FAISS ==="
build/release/bench/flat_vs_faiss --base "$DATA/glove-100/base.fbin" \
  --queries "$DATA/glove-100/query.fbin" --metric cosine --k 100 --threads 2 --reps 3
