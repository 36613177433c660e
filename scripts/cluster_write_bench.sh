#!/usr/bin/env bash
# Write throughput through a 3-node cluster (one collection of 4 shards x 2 replicas) against
# one node alone, all on this machine's loopback: WRITERS strata-cli upsert processes at once,
# spread over the nodes (writer i talks to node i mod 3), each upserting ROWS rows of the data
# set under its own ids, BATCH rows a request. Prints one JSON line per target with the wall
# time and the vectors per second over all writers.
#
#   scripts/cluster_write_bench.sh [--build-dir build/release] [--data-dir data] [--set glove-100]
#                                  [--writers 3] [--rows 20000] [--batch 100]
#
# Starts its own etcd and strata-server processes on free loopback ports, in a fresh temporary
# directory that it removes at the end (that directory only), and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build/release
DATA=data
SET=glove-100
WRITERS=3
ROWS=20000
BATCH=100
while (($#)); do
  case "$1" in
    --build-dir) BUILD=$2; shift 2 ;;
    --data-dir) DATA=$2; shift 2 ;;
    --set) SET=$2; shift 2 ;;
    --writers) WRITERS=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    *) echo "cluster_write_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
SERVER=$BUILD/server/strata-server
CLI=$BUILD/client/strata-cli

source scripts/lib/cluster.sh
cluster_tools cluster_write_bench
cluster_data_set cluster_write_bench "$SET" "$DATA"
cluster_scratch cluster_write_bench
start_etcd bench
# Not called in $(...) (scripts/lib/cluster.sh).
start_server n0 0 --cluster-etcd "$ETCD" --node-id n0 --advertise 127.0.0.1; PORTS=($PORT)
start_server n1 0 --cluster-etcd "$ETCD" --node-id n1 --advertise 127.0.0.1; PORTS+=($PORT)
start_server n2 0 --cluster-etcd "$ETCD" --node-id n2 --advertise 127.0.0.1; PORTS+=($PORT)
start_server single 0; ONE=$PORT

"$CLI" cluster --etcd "$ETCD" create bench --dim $DIM --metric $METRIC --shards 4 --replicas 2 --wait 30 >&2
"$CLI" --port "$ONE" create bench --dim $DIM --metric $METRIC >&2

for target in cluster single; do
  t0=$(date +%s.%N)
  pids=()
  for ((w = 0; w < WRITERS; ++w)); do
    port=$ONE; [[ $target == cluster ]] && port=${PORTS[$((w % 3))]}
    "$CLI" --port "$port" upsert bench --vectors "$BASE" --limit "$ROWS" --batch "$BATCH" \
      --id-offset $((w * ROWS)) >"$T/writer_${target}_$w.log" 2>&1 &
    pids+=($!)
  done
  failed=0
  for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
  t1=$(date +%s.%N)
  ((failed == 0)) || { echo "cluster_write_bench: $failed writer(s) failed:" >&2; cat "$T"/writer_*.log >&2; exit 1; }
  python3 -c "import json; s=$t1-$t0; print(json.dumps({'target': '$target', 'writers': $WRITERS, 'rows_per_writer': $ROWS, 'batch': $BATCH, 'seconds': round(s, 3), 'vectors_per_s': round($WRITERS*$ROWS/s, 1)}))"
done
