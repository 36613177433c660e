#!/usr/bin/env bash
# The cluster (issue 19, docs/CLUSTER.md) in brief, for scripts/main.sh: a real etcd and three
# strata-server nodes on loopback, a collection of 4 shards x 2 replicas, the first 20,000 GloVe-100
# vectors loaded through one node (routed by id hash to both replicas of each shard), 1,000
# queries through another node (scattered to one replica per shard, top-k merged) with recall@10
# against the exact neighbours of those 20,000, `strata-cli cluster status`, a node stopped
# (SIGTERM), the searches still answered and writes going on without it, the node started again,
# catching up and back in sync; then everything stopped.
#
#   scripts/cluster_demo.sh [BUILD_DIR (default build/release)] [DATA_DIR (default data)]
#
# Everything it starts listens on 127.0.0.1 and lives in a fresh temporary directory that it
# removes at the end (that directory only); it stops every process it started, on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
DATA=${2:-data}
SERVER=$BUILD/server/strata-server
CLI=$BUILD/client/strata-cli
STRATA=$BUILD/tools/strata
for f in "$SERVER" "$CLI" "$STRATA"; do
  [[ -x $f ]] || { echo "cluster_demo: $f not built" >&2; exit 2; }
done
command -v etcd >/dev/null || { echo "cluster_demo: etcd not installed (scripts/setup.sh)" >&2; exit 2; }
BASE=$DATA/glove-100/base.fbin
QUERIES=$DATA/glove-100/query.fbin
for f in "$BASE" "$QUERIES"; do
  [[ -f $f ]] || { echo "cluster_demo: $f missing (tools/fetch_dataset.sh glove-100 $DATA)" >&2; exit 2; }
done
N=20000
Q=1000

source scripts/lib/cluster.sh
cluster_scratch cluster_demo
start_etcd demo
echo "etcd on $ETCD (data in $T/etcd)"

# Not called in $(...) (scripts/lib/cluster.sh).
start_node() {  # id [metrics port]; sets PORT
  start_server "$1" "${2:-0}" --cluster-etcd "$ETCD" --node-id "$1" --advertise 127.0.0.1 --lease-ttl 2
}
start_node n0; P0=$PORT; N0_PID=${PIDS[-1]}; N0_AT=${#PIDS[@]}
start_node n1; P1=$PORT
M2=$(free_port)
start_node n2 "$M2"; P2=$PORT
echo "nodes n0 n1 n2 on 127.0.0.1:$P0 :$P1 :$P2"
CLUSTER=("$CLI" cluster --etcd "$ETCD")

set -x
"${CLUSTER[@]}" create glove --dim 100 --metric cosine --shards 4 --replicas 2 --wait 30
"$CLI" --port "$P1" upsert glove --vectors "$BASE" --limit $N --batch 2000
{ set +x; } 2>/dev/null
# The exact neighbours of the first $Q queries among those $N vectors.
/usr/bin/python3 - "$BASE" "$T/base-$N.fbin" $N <<'PY'
import sys, numpy as np
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows, dim = np.fromfile(src, dtype=np.int32, count=2)
x = np.fromfile(src, dtype=np.float32, offset=8, count=n * dim)
with open(dst, "wb") as f:
    np.array([n, dim], dtype=np.int32).tofile(f)
    x.tofile(f)
PY
"$STRATA" gt --base "$T/base-$N.fbin" --queries "$QUERIES" --metric cosine --max-queries $Q -k 10 \
  --out "$T/gt.ibin" >/dev/null 2>&1
set -x
"$CLI" --port "$P2" search glove --queries "$QUERIES" --max-queries $Q --gt "$T/gt.ibin" --k 10 --recall 0.95
"$CLI" --port "$P0" describe glove
"${CLUSTER[@]}" status
{ set +x; } 2>/dev/null
echo "--- n2's metrics: the searches it routed, per shard replica (curl 127.0.0.1:$M2/metrics)"
curl -sf "http://127.0.0.1:$M2/metrics" | grep -E '^strata_cluster_shard_requests_total.*op="search_batch",result="ok"' || true
echo "--- node n0 stopped (SIGTERM): it leaves at once; the leader takes it out of the in-sync sets"
kill -TERM "$N0_PID"; wait "$N0_PID" 2>/dev/null || true
sleep 1
set -x
"$CLI" --port "$P2" search glove --queries "$QUERIES" --max-queries $Q --gt "$T/gt.ibin" --k 10 --recall 0.95
"$CLI" --port "$P1" upsert glove --vectors "$QUERIES" --limit 500 --id-offset 1000000
{ set +x; } 2>/dev/null
sleep 1.2  # replicas refresh their reported figures every second: let them show the upsert
set -x
"${CLUSTER[@]}" status
{ set +x; } 2>/dev/null
echo "--- node n0 started again: it catches up from the in-sync replicas (a copy of each shard's files, the 500 records it missed among them) and rejoins"
unset "PIDS[N0_AT-1]"  # reaped above
rm -f "$T/n0.port"
start_node n0
t0=$(date +%s.%N)
for _ in $(seq 300); do
  "${CLUSTER[@]}" status --json | /usr/bin/python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["all_ready"] else 1)' && break
  sleep 0.1
done
echo "back in every in-sync set $(/usr/bin/python3 -c "import sys; print('%.1f' % ($(date +%s.%N) - $t0))") s after its restart"
sleep 1.2  # the figures each replica reports, refreshed every second
set -x
"${CLUSTER[@]}" status
{ set +x; } 2>/dev/null
echo "cluster demo done: stopping the nodes and etcd, removing $T"
