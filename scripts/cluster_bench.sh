#!/usr/bin/env bash
# Issue 19's routing overhead: the same data and the same client load through a 3-node cluster
# (one collection of 4 shards x 2 replicas; the client talks to one node, which routes) and
# against one node alone, all on this machine's loopback. Prints recall@10 at target 0.95, QPS
# and p50/p99 of each, as strata-cli's JSON lines.
#
#   scripts/cluster_bench.sh [--build-dir build/release] [--data-dir data] [--set fashion-mnist]
#                            [--duration 10] [--connections 2]
#
# Starts its own etcd and strata-server processes on free loopback ports, in a fresh temporary
# directory that it removes at the end (that directory only), and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build/release
DATA=data
SET=fashion-mnist
DURATION=10
CONNECTIONS=2
while (($#)); do
  case "$1" in
    --build-dir) BUILD=$2; shift 2 ;;
    --data-dir) DATA=$2; shift 2 ;;
    --set) SET=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    *) echo "cluster_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
SERVER=$BUILD/server/strata-server
CLI=$BUILD/client/strata-cli

source scripts/lib/cluster.sh
cluster_tools cluster_bench
cluster_data_set cluster_bench "$SET" "$DATA"
cluster_scratch cluster_bench
start_etcd bench
# Not called in $(...) (scripts/lib/cluster.sh).
start_server n0 0 --cluster-etcd "$ETCD" --node-id n0 --advertise 127.0.0.1; N0=$PORT
start_server n1 0 --cluster-etcd "$ETCD" --node-id n1 --advertise 127.0.0.1
start_server n2 0 --cluster-etcd "$ETCD" --node-id n2 --advertise 127.0.0.1
start_server single 0; ONE=$PORT

"$CLI" cluster --etcd "$ETCD" create bench --dim $DIM --metric $METRIC --shards 4 --replicas 2 --wait 30 >&2
"$CLI" --port "$ONE" create bench --dim $DIM --metric $METRIC >&2
echo "loading $BASE through node n0 (routed: 4 shards x 2 replicas) and into the single node" >&2
t0=$(date +%s.%N)
"$CLI" --port "$N0" upsert bench --vectors "$BASE" --batch 1000 >&2
t1=$(date +%s.%N)
"$CLI" --port "$ONE" upsert bench --vectors "$BASE" --batch 1000 >&2
t2=$(date +%s.%N)
python3 -c "print('load: cluster %.1f s, one node %.1f s' % ($t1-$t0, $t2-$t1))" >&2
"$CLI" cluster --etcd "$ETCD" status >&2

for target in cluster single; do
  port=$N0; [[ $target == single ]] && port=$ONE
  echo "== $target: search (all queries, recall target 0.95)" >&2
  "$CLI" --port "$port" search bench --queries "$QUERIES" --gt "$GT" -k 10 --recall 0.95 --json \
    | python3 -c "import json,sys; d=json.load(sys.stdin); d['target']='$target'; print(json.dumps(d))"
  echo "== $target: load ($CONNECTIONS connections, $DURATION s)" >&2
  "$CLI" --port "$port" load bench --queries "$QUERIES" -k 10 --recall 0.95 \
    --connections "$CONNECTIONS" --duration "$DURATION" --json \
    | python3 -c "import json,sys; d=json.load(sys.stdin); d['target']='$target'; print(json.dumps(d))"
done
