#!/usr/bin/env bash
# How fast a replica that lost its data copies a whole shard back (docs/CLUSTER.md, "Catch-up"):
# two nodes hold one collection of 1 shard x 2 replicas (ROWS rows of the data set, loaded
# through n0); n1 is SIGKILLed, its data directory (made by this script) removed, and n1
# started again empty: once its lease has lapsed the leader has dropped it from the in-sync
# set, so it joins as catching up and copies the shard from n0 -- from its files (the default)
# or record by record (--catch-up records: strata-server --cluster-catch-up). Prints one JSON
# line: the rows, the mode, the seconds from n1's restart until it is in sync again (its own
# start and the lease's lapse included), the seconds of the copy alone (n1's log), and rows per
# second of the copy.
#
#   scripts/cluster_catchup_bench.sh [--build-dir build/release] [--data-dir data] [--set glove-100]
#                                    [--rows 100000] [--catch-up files|records]
#
# Starts its own etcd and strata-server processes on free loopback ports, in a fresh temporary
# directory that it removes at the end (that directory only), and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build/release
DATA=data
SET=glove-100
ROWS=100000
MODE=files
while (($#)); do
  case "$1" in
    --build-dir) BUILD=$2; shift 2 ;;
    --data-dir) DATA=$2; shift 2 ;;
    --set) SET=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --catch-up) MODE=$2; shift 2 ;;
    *) echo "cluster_catchup_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
SERVER=$BUILD/server/strata-server
CLI=$BUILD/client/strata-cli

source scripts/lib/cluster.sh
cluster_tools cluster_catchup_bench
cluster_data_set cluster_catchup_bench "$SET" "$DATA"
cluster_scratch cluster_catchup_bench
start_etcd bench
FLAGS=(--cluster-etcd "$ETCD" --advertise 127.0.0.1 --lease-ttl 2 --cluster-catch-up "$MODE")
# Not called in $(...) (scripts/lib/cluster.sh).
start_server n0 0 "${FLAGS[@]}" --node-id n0; N0=$PORT
LOG_LEVEL=info start_server n1 0 "${FLAGS[@]}" --node-id n1; N1_PID=${PIDS[-1]}

"$CLI" cluster --etcd "$ETCD" create bench --dim $DIM --metric $METRIC --shards 1 --replicas 2 --wait 30 >&2
echo "loading $ROWS rows of $BASE through n0" >&2
"$CLI" --port "$N0" upsert bench --vectors "$BASE" --limit "$ROWS" --batch 1000 >&2

in_sync() {  # the number of in-sync replicas of shard 0, none catching up
  "$CLI" cluster --etcd "$ETCD" status --json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)["collections"][0]["shard_status"][0]
print(len(s["in_sync"]) if not s["catching_up"] else 0)'
}

kill -KILL "$N1_PID"
wait "$N1_PID" 2>/dev/null || true
rm -rf "${T:?}/n1" "$T/n1.port"
# Until the leader has dropped n1 from the in-sync set (its lease lapsed), a restarted n1
# would stay in it: wait for that first, as a node gone for a while.
for _ in $(seq 200); do [[ $(in_sync) == 1 ]] && break; sleep 0.1; done
[[ $(in_sync) == 1 ]] || { echo "cluster_catchup_bench: n1 was not dropped from the in-sync set" >&2; exit 1; }
t0=$(date +%s.%N)
LOG_LEVEL=info start_server n1 0 "${FLAGS[@]}" --node-id n1
for _ in $(seq 6000); do [[ $(in_sync) == 2 ]] && break; sleep 0.1; done
t1=$(date +%s.%N)
[[ $(in_sync) == 2 ]] || { echo "cluster_catchup_bench: n1 not back in sync after 600 s" >&2; cat "$T/n1.log" >&2; exit 1; }
copy=$(grep -o 'caught up [^ ]* from [^ ]* (catch-up of epoch [0-9]*) in [0-9.]* s' "$T/n1.log" | tail -1 | sed 's/.* in \([0-9.]*\) s/\1/')
grep 'caught up' "$T/n1.log" | tail -1 | sed 's/^.*caught up/caught up/' >&2
python3 -c "import json; w=$t1-$t0; c=float('${copy:-nan}'); print(json.dumps({'rows': $ROWS, 'dim': $DIM, 'catch_up': '$MODE', 'restart_to_in_sync_s': round(w, 2), 'copy_s': c, 'copy_rows_per_s': round($ROWS / c, 1) if c == c else None}))"
