#!/usr/bin/env bash
# The README's main command, end to end on a built-in default:
#   1. installs what is missing and builds Release (strata, strata-server, strata-cli);
#   2. fetches GloVe-100 (and its exact ground truth);
#   3. loads it into two collections of a fresh engine data directory: one HNSW
#      (in memory) and one SPANN (posting lists on disk, 20% of the vectors' bytes in memory);
#   4. starts strata-server on a free loopback port, queries both collections through
#      strata-cli (recall@10 against the ground truth, QPS, p50/p99 latency; a filtered
#      query with its EXPLAIN; a short load run), through the Python client, and with
#      redis-cli on the server's RESP port (a vector set with attributes, VSIM with FILTER,
#      a GloVe query), prints the server's metrics, and
#   5. stops the server with SIGTERM (graceful shutdown);
#   6. shows the cluster (scripts/cluster_demo.sh): a real etcd and three nodes on loopback, a
#      collection of 4 shards x 2 replicas loaded and searched through different nodes,
#      `strata-cli cluster status`, a node stopped, then started again and caught up.
#
# Environment: STRATA_DATA_DIR (data sets, default ./data), STRATA_REFERENCE_DATA (the
# independent reference ground truth; default ../shared/data when present),
# STRATA_MAIN_DIR (the engine data directory, default ./build/main-data; rebuilt each run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
bash scripts/setup.sh
# ccache (installed by setup.sh) keyed on paths relative to the checkout, so that a fresh clone
# reuses what an earlier build of the same sources compiled.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_TESTS=OFF \
  -DSTRATA_BUILD_BENCH=OFF -DSTRATA_BUILD_PYTHON=ON -DPython_EXECUTABLE=/usr/bin/python3 >/dev/null
cmake --build build/release --target strata strata-server strata-cli _strata -j"$(nproc)"
STRATA="$ROOT/build/release/tools/strata"
SERVER="$ROOT/build/release/server/strata-server"
CLI="$ROOT/build/release/client/strata-cli"
DATA="${STRATA_DATA_DIR:-$ROOT/data}"
REF="${STRATA_REFERENCE_DATA:-$ROOT/../shared/data}"
ENGINE_DIR="${STRATA_MAIN_DIR:-$ROOT/build/main-data}"
source scripts/lib/scratch.sh

STRATA_BIN="$STRATA" bash tools/fetch_dataset.sh glove-100 "$DATA"
GT="$REF/glove-100/groundtruth_angular_k100.ivecs"
[[ -f "$GT" ]] || GT="$DATA/glove-100/gt_cosine_k100.ibin"
QUERIES="$DATA/glove-100/query.fbin"
echo "ground truth: $GT"

# 3. Two collections, bulk-loaded (index build + calibration of the planner).
# Never a directory this script did not create, nor one a running server holds (scripts/lib/scratch.sh).
claim_scratch "$ENGINE_DIR" "$([[ -z "${STRATA_MAIN_DIR:-}" ]] && echo 1 || echo 0)"
RAW_BYTES=$((331479 * 100 * 4))
# Every vector of the HNSW collection gets an attribute `tenant` (one of 100, row % 100), so that
# filters can be shown; the SPANN collection has none.
ATTRS="$ENGINE_DIR/tenant-attributes.jsonl"   # inside the scratch directory: nothing outside it is written
awk 'BEGIN { for (i = 0; i < 331479; i++) printf "{\"attributes\": {\"tenant\": \"t%d\"}}\n", i % 100 }' >"$ATTRS"
echo
echo "=== loading GloVe-100 into collection glove_hnsw (HNSW, attribute tenant) ==="
"$STRATA" build --dataset glove-100 --data-dir "$DATA" --into "$ENGINE_DIR" --collection glove_hnsw \
  --attributes "$ATTRS"
echo
echo "=== loading GloVe-100 into collection glove_spann (SPANN: past a 1 MB memory budget) ==="
"$STRATA" build --dataset glove-100 --data-dir "$DATA" --into "$ENGINE_DIR" --collection glove_spann \
  --memory-budget 1000000
echo "(raw vectors: $((RAW_BYTES / 1048576)) MiB)"

# 4. Serve on a free loopback port (the server writes the port it bound).
PORT_FILE="$ENGINE_DIR/server.port"
LOG="$ENGINE_DIR/server.log"
# The RESP (Redis protocol) listener takes a fixed port: one the kernel has just handed out.
RESP_PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$SERVER" --data-dir "$ENGINE_DIR" --port 0 --metrics-port 0 --port-file "$PORT_FILE" --resp-port "$RESP_PORT" \
  >"$LOG" 2>&1 &
SERVER_PID=$!
stop_server() {
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
  fi
}
trap stop_server EXIT
for _ in $(seq 1 600); do
  [[ -s "$PORT_FILE" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$LOG" >&2; echo "main: the server exited" >&2; exit 1; }
  sleep 0.1
done
[[ -s "$PORT_FILE" ]] || { cat "$LOG" >&2; echo "main: the server did not start" >&2; exit 1; }
PORT=$(head -n1 "$PORT_FILE")
CLI_AT=("$CLI" --port "$PORT")
echo
echo "=== strata-server listening on 127.0.0.1:$PORT (log: $LOG) ==="
"${CLI_AT[@]}" ping
"${CLI_AT[@]}" list

for c in glove_hnsw glove_spann; do
  echo
  echo "=== $c: 10,000 queries through strata-cli, recall target 0.95, 16 in flight ==="
  "${CLI_AT[@]}" search "$c" --queries "$QUERIES" --gt "$GT" --k 10 --recall 0.95 --pipeline 16
done

for f in 'tenant == "t7"' 'tenant IN ("t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10")' \
         'NOT tenant == "t7"'; do
  echo
  echo "=== the first query, filtered by: $f (k = 5, with the planner's EXPLAIN) ==="
  "${CLI_AT[@]}" search glove_hnsw --queries "$QUERIES" --max-queries 1 --k 5 --filter "$f" --explain
done

echo
echo "=== load: 2 connections x 8 in flight for 10 s on glove_hnsw ==="
"${CLI_AT[@]}" load glove_hnsw --queries "$QUERIES" --gt "$GT" --connections 2 --pipeline 8 --duration 10

echo
echo "=== Python: strata.Client, the 10,000 queries as one matrix (pipelined), recall target 0.95 ==="
PYTHONPATH="$ROOT/build/release/python" /usr/bin/python3 - "$PORT" "$QUERIES" "$GT" <<'PY'
import sys, time
import numpy as np
import strata

port, queries_path, gt_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
n, d = np.fromfile(queries_path, dtype=np.int32, count=2)
queries = np.fromfile(queries_path, dtype=np.float32, offset=8).reshape(n, d)
if gt_path.endswith(".ivecs"):
    raw = np.fromfile(gt_path, dtype=np.int32)
    gt = raw.reshape(-1, raw[0] + 1)[:, 1:]
else:  # .ibin: rows, k, then the ids
    rows, k = np.fromfile(gt_path, dtype=np.int32, count=2)
    gt = np.fromfile(gt_path, dtype=np.int32, offset=8, count=rows * k).reshape(rows, k)
with strata.Client(port=port) as client:
    start = time.perf_counter()
    ids, distances = client.search("glove_hnsw", queries, k=10, recall=0.95)
    seconds = time.perf_counter() - start
hits = sum(len(set(ids[i].tolist()) & set(gt[i, :10].tolist())) for i in range(len(queries)))
print(f"strata {strata.__version__}: {len(queries)} queries in {seconds:.2f} s "
      f"({len(queries) / seconds:.0f} QPS), recall@10 {hits / (10 * len(queries)):.4f}")
print("first query's neighbours:", ids[0].tolist())
PY

echo
echo "=== redis-cli on the RESP port ($RESP_PORT): a vector set with attributes, VSIM with FILTER ==="
R=(redis-cli -p "$RESP_PORT")
(set -x
 "${R[@]}" VADD movies VALUES 3 0.9 0.1 0.2 m1 SETATTR '{"year": 1984, "rating": 8.1, "genre": "scifi"}'
 "${R[@]}" VADD movies VALUES 3 0.1 0.8 0.3 m2 SETATTR '{"year": 1995, "rating": 6.5, "genre": "drama"}'
 "${R[@]}" VADD movies VALUES 3 0.8 0.3 0.1 m3 SETATTR '{"year": 1979, "rating": 7.9, "genre": "scifi"}'
 "${R[@]}" VSIM movies VALUES 3 1 0 0 WITHSCORES FILTER '.year >= 1980 and .rating > 7'
 "${R[@]}" VSIM movies ELE m1 WITHSCORES COUNT 2 FILTER '.genre == "scifi"'
 "${R[@]}" VCARD movies)
echo "--- the first GloVe query against glove_hnsw over RESP (records written by id show as their id):"
FIRST_QUERY=$(/usr/bin/python3 -c 'import sys, numpy as np; q = np.fromfile(sys.argv[1], dtype=np.float32, offset=8, count=100); print(" ".join(f"{x:.6g}" for x in q))' "$QUERIES")
# shellcheck disable=SC2086  # the 100 numbers are separate arguments
"${R[@]}" VSIM glove_hnsw VALUES 100 $FIRST_QUERY COUNT 5 WITHSCORES
"${R[@]}" DEL movies

echo
echo "=== server counters ==="
"${CLI_AT[@]}" stats

# 5. Graceful shutdown.
stop_server
trap - EXIT
echo
echo "server stopped (SIGTERM); its log ends:"
tail -n 3 "$LOG"

# 6. The cluster in brief (issue 19, docs/CLUSTER.md): etcd and three nodes on loopback, a sharded
# and replicated collection, a node stopped and started again (scripts/cluster_demo.sh; it stops
# everything it started).
echo
echo "=== cluster: etcd + 3 strata-server nodes on loopback, 4 shards x 2 replicas (first 20,000 GloVe vectors) ==="
bash scripts/cluster_demo.sh "$ROOT/build/release" "$DATA"
