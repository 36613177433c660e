#!/usr/bin/env bash
# Issue 14 R1: do searches keep their latency while another collection is maintained?
#
# A strata-server (Release, default worker count) serves two collections:
#   B: 50,000 x 100 (synthetic Gaussian mixture), searched open loop by strata-cli load
#      at RATE queries/s from one connection;
#   A: 1470-d; during the "busy" phase it gets, all at once, a 56 MiB upsert (one request
#      of 10,000 x 1470 floats), a flush and a compaction (A holds 3 sealed segments first).
# Each round measures B's latency idle, then busy (the load runs while A's jobs run);
# ROUNDS rounds, interleaved; the medians of p50/p99 are printed last as one JSON line.
# Goal: busy p99 <= 3x idle p99.
#
#   bash scripts/maintenance_bench.sh            # ROUNDS=3 RATE=50 DURATION=20
#   STRATA_BIN_DIR=DIR bash scripts/maintenance_bench.sh   # strata, strata-server, strata-cli from DIR
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-50}
DURATION=${DURATION:-20}
if [[ -n "${STRATA_BIN_DIR:-}" ]]; then  # binaries of another build (e.g. an older revision)
  STRATA="$STRATA_BIN_DIR/strata" SERVER="$STRATA_BIN_DIR/strata-server" CLI="$STRATA_BIN_DIR/strata-cli"
else
  bash scripts/setup.sh
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
  cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build/release --target strata strata-server strata-cli >/dev/null
  STRATA="$ROOT/build/release/tools/strata"
  SERVER="$ROOT/build/release/server/strata-server"
  CLI="$ROOT/build/release/client/strata-cli"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-maintenance-bench-XXXXXX")
SERVER_PID=""
cleanup() {
  [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"  # made by mktemp above: ours
}
trap cleanup EXIT

"$STRATA" --quiet dataset synth --n 50000 --queries 1000 --dim 100 --out-dir "$WORK/b" >/dev/null
"$STRATA" --quiet dataset synth --n 3000 --queries 10 --dim 1470 --clusters 100 --out-dir "$WORK/a" >/dev/null
# The 56 MiB request: 10,000 x 1470 floats, sent as one batch.
"$STRATA" --quiet dataset synth --n 10000 --queries 10 --dim 1470 --clusters 100 --seed 7 \
  --out-dir "$WORK/a-big" >/dev/null
"$SERVER" --data-dir "$WORK/data" --port 0 --metrics-port 0 --port-file "$WORK/port" \
  --log-level warn >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
PORT=$(cat "$WORK/port")
C=("$CLI" --port "$PORT")
"${C[@]}" create b --dim 100 >/dev/null
"${C[@]}" upsert b --vectors "$WORK/b/base.fbin" --batch 1000 >/dev/null
"${C[@]}" flush b >/dev/null

num() {  # json key -> the first number after "key":
  grep -o "\"$2\": *[-0-9.eE+]*" <<<"$1" | head -n1 | sed 's/.*: *//'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
load_b() {
  "${C[@]}" load b --queries "$WORK/b/query.fbin" --connections 1 --rate "$RATE" \
    --duration "$DURATION" --recall 0.95 --json
}

idle_p50=() idle_p99=() busy_p50=() busy_p99=()
for round in $(seq "$ROUNDS"); do
  out=$(load_b)
  idle_p50+=("$(num "$out" p50)") idle_p99+=("$(num "$out" p99)")
  # A: three sealed segments of 3,000, so that the compaction has work.
  "${C[@]}" drop a >/dev/null 2>&1 || true
  "${C[@]}" create a --dim 1470 >/dev/null
  for s in 0 1 2; do
    "${C[@]}" upsert a --vectors "$WORK/a/base.fbin" --id-offset $((s * 3000)) --batch 1000 >/dev/null
    "${C[@]}" flush a >/dev/null
  done
  t0=$(date +%s.%N)
  since() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
  ( "${C[@]}" upsert a --vectors "$WORK/a-big/base.fbin" --id-offset 100000 --batch 10000 >/dev/null
    echo "upsert(56MiB) $(since)" >>"$WORK/jobs.$round" ) &
  up=$!
  ( "${C[@]}" flush a >/dev/null; echo "flush $(since)" >>"$WORK/jobs.$round" ) &
  fl=$!
  ( "${C[@]}" compact a >/dev/null; echo "compact $(since)" >>"$WORK/jobs.$round" ) &
  co=$!
  out=$(load_b)
  busy_p50+=("$(num "$out" p50)") busy_p99+=("$(num "$out" p99)")
  wait $up $fl $co
  echo "round $round: idle p50 ${idle_p50[-1]} p99 ${idle_p99[-1]} ms; busy p50 ${busy_p50[-1]} p99" \
       "${busy_p99[-1]} ms; A's jobs done after (s): $(tr '\n' ' ' <"$WORK/jobs.$round")"
done
ip50=$(median "${idle_p50[@]}") ip99=$(median "${idle_p99[@]}")
bp50=$(median "${busy_p50[@]}") bp99=$(median "${busy_p99[@]}")
ratio=$(awk -v a="$bp99" -v b="$ip99" 'BEGIN { printf "%.2f", a / b }')
echo "{\"bench\":\"maintenance\",\"rounds\":$ROUNDS,\"rate\":$RATE,\"duration_s\":$DURATION," \
     "\"search_p50_idle_ms\":$ip50,\"search_p99_idle_ms\":$ip99,\"search_p50_busy_ms\":$bp50," \
     "\"search_p99_busy_ms\":$bp99,\"p99_ratio\":$ratio}"
