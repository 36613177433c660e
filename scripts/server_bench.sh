#!/usr/bin/env bash
# Server benchmark (docs/BENCHMARKS.md section 6): GloVe-100 in an HNSW collection, searched
#   (a) in process: Engine::SearchBatch on all cores (`strata search --engine-dir ... --threads 0`);
#   (b) over loopback: strata-server with one worker per core, driven by `strata-cli load` with
#       pipelined requests (closed loop) -- the peak;
#   (c) open loop at 50% and 90% of that peak: p50 / p99 latency.
# (a) and (b) alternate for ROUNDS rounds (default 3); medians are reported. Same queries, same
# recall target, so the same recall.
#
#   bash scripts/server_bench.sh [--recall 0.95] [--rounds 3] [--duration 15] [--pipeline 16]
#
# Environment: STRATA_DATA_DIR (data sets, default ./data), STRATA_REFERENCE_DATA (default
# ../shared/data), STRATA_BENCH_DIR (engine data directory, default ./build/server-bench-data;
# loaded once and reused).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RECALL=0.95 ROUNDS=3 DURATION=15 PIPELINE=16
while (($#)); do
  case "$1" in
    --recall) RECALL=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --pipeline) PIPELINE=$2; shift 2 ;;
    *) echo "server_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
bash scripts/setup.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_TESTS=OFF \
  -DSTRATA_BUILD_BENCH=OFF >/dev/null
cmake --build build/release --target strata strata-server strata-cli -j"$(nproc)" >/dev/null
STRATA="$ROOT/build/release/tools/strata"
SERVER="$ROOT/build/release/server/strata-server"
CLI="$ROOT/build/release/client/strata-cli"
DATA="${STRATA_DATA_DIR:-$ROOT/data}"
REF="${STRATA_REFERENCE_DATA:-$ROOT/../shared/data}"
DIR="${STRATA_BENCH_DIR:-$ROOT/build/server-bench-data}"
source scripts/lib/scratch.sh
CORES=$(nproc)

STRATA_BIN="$STRATA" bash tools/fetch_dataset.sh glove-100 "$DATA" >/dev/null
GT="$REF/glove-100/groundtruth_angular_k100.ivecs"
[[ -f "$GT" ]] || GT="$DATA/glove-100/gt_cosine_k100.ibin"
QUERIES="$DATA/glove-100/query.fbin"
if [[ ! -f "$DIR/MANIFEST" || ! -f "$DIR/.strata-scratch" ]]; then
  claim_scratch "$DIR" "$([[ -z "${STRATA_BENCH_DIR:-}" ]] && echo 1 || echo 0)"
  "$STRATA" build --dataset glove-100 --data-dir "$DATA" --into "$DIR" --collection glove
fi

num() {  # json key -> the first number after "key":
  grep -o "\"$2\": *[-0-9.eE+]*" <<<"$1" | head -n1 | sed 's/.*: *//'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

PORT_FILE="$DIR/server.port"
SERVER_PID=""
start_server() {
  rm -f "$PORT_FILE"
  "$SERVER" --data-dir "$DIR" --port 0 --metrics-port 0 --workers "$CORES" --port-file "$PORT_FILE" \
    --log-level warn >"$DIR/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    [[ -s "$PORT_FILE" ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$DIR/server.log" >&2; return 1; }
    sleep 0.1
  done
  return 1
}
stop_server() {
  [[ -n "$SERVER_PID" ]] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" || true
  SERVER_PID=""
}
trap stop_server EXIT

echo "GloVe-100, collection 'glove' (HNSW), recall target $RECALL, k = 10, $CORES cores, rev $(git rev-parse --short HEAD)"
inproc=() remote=() recall_in="" recall_remote=""
for r in $(seq 1 "$ROUNDS"); do
  out=$("$STRATA" search --engine-dir "$DIR" --collection glove --queries "$QUERIES" --gt "$GT" \
    --recall "$RECALL" --threads 0 --show 0)
  line=$(grep '^JSON' <<<"$out")
  inproc+=("$(num "$line" qps)")
  recall_in=$(grep -o 'recall@10 = [0-9.]*' <<<"$out" | cut -d' ' -f3)
  start_server
  port=$(head -n1 "$PORT_FILE")
  "$CLI" --port "$port" search glove --queries "$QUERIES" --max-queries 200 --recall "$RECALL" >/dev/null  # warm-up
  out=$("$CLI" --port "$port" load glove --queries "$QUERIES" --gt "$GT" --recall "$RECALL" \
    --connections "$CORES" --pipeline "$PIPELINE" --duration "$DURATION" --json)
  remote+=("$(printf '%.1f' "$(num "$out" qps)")")
  recall_remote=$(num "$out" recall)
  stop_server
  echo "round $r: in-process ${inproc[-1]} QPS, loopback pipelined ${remote[-1]} QPS"
done
IN=$(median "${inproc[@]}")
RE=$(median "${remote[@]}")
echo
echo "in process (Engine::SearchBatch, $CORES threads): $IN QPS (median of $ROUNDS), recall@10 $recall_in"
echo "over loopback ($CORES connections x $PIPELINE in flight): $RE QPS (median of $ROUNDS), recall@10 $recall_remote"
awk -v a="$RE" -v b="$IN" 'BEGIN { printf "ratio loopback / in-process: %.2f\n", a / b }'

echo
echo "open loop at 50% and 90% of the loopback peak ($DURATION s each):"
start_server
port=$(head -n1 "$PORT_FILE")
printf '%-6s %10s %10s %9s %9s %9s %9s\n' load "target/s" "achieved" "p50 ms" "p90 ms" "p99 ms" "p99.9 ms"
for share in 0.5 0.9; do
  rate=$(awk -v p="$RE" -v s="$share" 'BEGIN { printf "%d", p * s }')
  out=$("$CLI" --port "$port" load glove --queries "$QUERIES" --recall "$RECALL" --connections "$CORES" \
    --pipeline 64 --rate "$rate" --duration "$DURATION" --json)
  printf '%-6s %10s %10.0f %9.3f %9.3f %9.3f %9.3f\n' "$(awk -v s="$share" 'BEGIN{printf "%d%%", s*100}')" "$rate" \
    "$(num "$out" qps)" "$(num "$out" p50)" "$(num "$out" p90)" "$(num "$out" p99)" "$(num "$out" p999)"
  echo "JSON $out"
done
stop_server
