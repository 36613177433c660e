#!/usr/bin/env bash
# First search after writes (issue 15; docs/BENCHMARKS.md, "Engine under mixed load"): how much
# slower the first search right after a large write is than the steady state.
#
#   1. strata-server on 127.0.0.1, a port the kernel picks (--port 0, read back from a port file),
#      a fresh data directory made with mktemp;
#   2. a cosine collection, then the first VECTORS rows of GloVe-100's base upserted through the
#      server (strata-cli upsert, batches of 1,000, fsync per batch) -- timed;
#   3. as soon as the last upsert is acknowledged: ONE search (query 0), its latency as strata-cli
#      measures it (request sent to answer received);
#   4. then SEARCHES searches one at a time (queries 0.., pipeline 1): the steady p50;
#   5. prints both, their ratio (issue 15's goal: first <= 3 x steady p50) and one JSON line last.
#
# The collection's seal threshold defaults to 1,000,000, above VECTORS, so the written vectors are
# still in the in-memory segment when the first search comes (with the server's default of 100,000
# the last batch would seal them and the first search would meet a sealed segment; pass
# --seal-threshold 100000 to measure that case).
#
#   bash bench/first_search.sh [--build-dir build/release] [--vectors 100000] [--searches 1000]
#                              [--recall 0.95] [--seal-threshold 1000000] [--workers 0]
#
# Needs build/<dir>/server/strata-server and build/<dir>/client/strata-cli (built here when
# missing: cmake --build <dir> --target strata-server strata-cli) and GloVe-100 under
# STRATA_DATA_DIR (default ./data; tools/fetch_dataset.sh glove-100 makes it). Deletes only the
# temporary directory it made.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=build/release VECTORS=100000 SEARCHES=1000 RECALL=0.95 SEAL=1000000 WORKERS=0
while (($#)); do
  case "$1" in
    --build-dir) BUILD=$2; shift 2 ;;
    --vectors) VECTORS=$2; shift 2 ;;
    --searches) SEARCHES=$2; shift 2 ;;
    --recall) RECALL=$2; shift 2 ;;
    --seal-threshold) SEAL=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    *) echo "first_search: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$BUILD" = /* ]] || BUILD="$ROOT/$BUILD"
SERVER="$BUILD/server/strata-server"
CLI="$BUILD/client/strata-cli"
if [[ ! -x "$SERVER" || ! -x "$CLI" ]]; then
  cmake --build "$BUILD" --target strata-server strata-cli >/dev/null
fi
DATA="${STRATA_DATA_DIR:-$ROOT/data}"
BASE="$DATA/glove-100/base.fbin"
QUERIES="$DATA/glove-100/query.fbin"
for f in "$BASE" "$QUERIES"; do
  [[ -f "$f" ]] || { echo "first_search: $f missing (bash tools/fetch_dataset.sh glove-100 $DATA)" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-first-search.XXXXXX")
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"  # made by mktemp above: ours alone
}
trap cleanup EXIT

"$SERVER" --listen 127.0.0.1 --port 0 --metrics-port 0 --data-dir "$WORK/data" --workers "$WORKERS" \
  --port-file "$WORK/port" --log-level warn >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do
  [[ -s "$WORK/port" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done
[[ -s "$WORK/port" ]] || { echo "first_search: the server did not start listening" >&2; exit 1; }
PORT=$(head -n1 "$WORK/port")
cli() { "$CLI" --port "$PORT" "$@"; }
num() {  # json key -> the first number after "key":
  grep -o "\"$2\": *[-0-9.eE+]*" <<<"$1" | head -n1 | sed 's/.*: *//'
}

# The binaries' version, not the working tree's commit: BUILD may have been built from another tree.
echo "first_search: GloVe-100, first $VECTORS base rows, seal threshold $SEAL, recall target $RECALL," \
  "$(nproc) cores, $("$SERVER" --version) from $BUILD"
cli create glove --dim 100 --metric cosine --seal-threshold "$SEAL" >/dev/null
start=$(date +%s.%N)
cli upsert glove --vectors "$BASE" --limit "$VECTORS" --batch 1000 >"$WORK/upsert.log" 2>&1 ||
  { cat "$WORK/upsert.log" >&2; exit 1; }
upsert_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

first=$(cli search glove --queries "$QUERIES" --limit 1 --recall "$RECALL" --json)
steady=$(cli search glove --queries "$QUERIES" --limit "$SEARCHES" --recall "$RECALL" --json)
# The same single search again from a fresh strata-cli once everything is warm: what a first
# request of a new process and connection costs by itself (the first search above pays it too).
fresh=$(cli search glove --queries "$QUERIES" --limit 1 --recall "$RECALL" --json)
FIRST_MS=$(num "$first" p50)
FRESH_MS=$(num "$fresh" p50)
P50_MS=$(num "$steady" p50)
P99_MS=$(num "$steady" p99)
RATIO=$(awk -v a="$FIRST_MS" -v b="$P50_MS" 'BEGIN { printf "%.1f", a / b }')
VERDICT=$(awk -v r="$RATIO" 'BEGIN { print (r <= 3 ? "met" : "not met") }')

printf 'upserts: %s vectors in %s s (%s vectors/s)\n' "$VECTORS" "$upsert_s" \
  "$(awk -v n="$VECTORS" -v s="$upsert_s" 'BEGIN { printf "%.0f", n / s }')"
printf 'first search after the upserts: %.3f ms\n' "$FIRST_MS"
printf 'steady, %s searches one at a time: p50 %.3f ms, p99 %.3f ms\n' "$SEARCHES" "$P50_MS" "$P99_MS"
printf 'first / steady p50: %sx (issue 15 goal <= 3x: %s)\n' "$RATIO" "$VERDICT"
printf 'the same single search from a fresh strata-cli once warm: %.3f ms (first / that: %sx)\n' "$FRESH_MS" \
  "$(awk -v a="$FIRST_MS" -v b="$FRESH_MS" 'BEGIN { printf "%.1f", a / b }')"
printf 'JSON {"bench":"first_search","dataset":"glove-100","vectors":%s,"seal_threshold":%s,"recall_target":%s,' \
  "$VECTORS" "$SEAL" "$RECALL"
printf '"upsert_s":%s,"first_search_ms":%s,"steady_p50_ms":%s,"steady_p99_ms":%s,"searches":%s,"ratio":%s,' \
  "$upsert_s" "$FIRST_MS" "$P50_MS" "$P99_MS" "$SEARCHES" "$RATIO"
printf '"fresh_process_search_ms":%s}\n' "$FRESH_MS"
