#!/usr/bin/env bash
# The indexes on their own (no engine, no server): installs what is missing, builds
# Release, fetches the reference data sets (GloVe-100 and Fashion-MNIST), computes
# exact ground truth, runs exact search and builds and queries HNSW indexes on both
# and a SPANN index on GloVe-100, printing recall, QPS and latency for each.
# (Until the server existed this was the README's main command.)
#
# Environment: STRATA_DATA_DIR (default ./data), STRATA_REFERENCE_DATA (the
# independent reference ground truth; default ../shared/data when present).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
bash scripts/setup.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_TESTS=OFF \
  -DSTRATA_BUILD_BENCH=OFF >/dev/null
cmake --build build/release --target strata -j"$(nproc)"
STRATA="$ROOT/build/release/tools/strata"
DATA="${STRATA_DATA_DIR:-$ROOT/data}"
REF="${STRATA_REFERENCE_DATA:-$ROOT/../shared/data}"

STRATA_BIN="$STRATA" bash tools/fetch_dataset.sh glove-100 "$DATA"
STRATA_BIN="$STRATA" bash tools/fetch_dataset.sh fashion-mnist "$DATA"

# Score against the independent reference ground truth when it is present,
# otherwise against the ground truth computed above.
gt_for() {  # dataset reffile
  if [[ -f "$REF/$1/$2" ]]; then echo "$REF/$1/$2"; else echo ""; fi
}
run_bench() {  # dataset index reffile [extra args...]
  local gt; gt=$(gt_for "$1" "$3")
  local ds=$1 kind=$2
  shift 3
  echo
  echo "=== $kind on $ds (ground truth: ${gt:-computed by strata gt}) ==="
  "$STRATA" bench --index "$kind" --dataset "$ds" --data-dir "$DATA" ${gt:+--gt "$gt"} "$@"
}
# Exact search must find the true neighbours.
run_bench glove-100 flat groundtruth_angular_k100.ivecs --min-recall 0.999
run_bench fashion-mnist flat groundtruth_l2_k100.ivecs --min-recall 0.999
# HNSW (M=16, ef_construction=200) across a sweep of ef.
run_bench glove-100 hnsw groundtruth_angular_k100.ivecs --ef 16,32,64,128,256
run_bench fashion-mnist hnsw groundtruth_l2_k100.ivecs --ef 16,32,64,128
# SPANN: posting lists on disk, read with O_DIRECT (lists and KiB read per query are printed).
run_bench glove-100 spann groundtruth_angular_k100.ivecs --max-lists 32,64,96 --single-queries 2000
