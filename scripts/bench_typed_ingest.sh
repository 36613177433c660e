#!/usr/bin/env bash
# Upsert of a uint8 set through strata-cli, side by side (docs/BENCHMARKS.md section 12, typed
# ingest): widened to float32 on the client (--send-float32: upsert, 4 bytes a value) against
# sent as it is (upsert_typed, 1 byte a value). Each run gets a fresh server and data directory;
# it reports strata-cli's peak RSS (/usr/bin/time), the server's (VmHWM) and the upsert's wall
# time and the bytes of the collection's write-ahead log (float32 records, or uint8 rows kept as
# uint8: record type 3); then the same upsert again into a second collection under strace, which
# counts the bytes strata-cli sent to its socket (the sum of its send/write calls on the socket).
#
#   scripts/bench_typed_ingest.sh [BUILD_DIR] [U8_FILE] [ROWS] [ROUNDS] [BATCHES]
#   scripts/bench_typed_ingest.sh build/release data/fashion-mnist/base.u8bin 20000 1 "1000 10000"
set -euo pipefail
BUILD=${1:-build/release}
FILE=${2:-data/fashion-mnist/base.u8bin}
ROWS=${3:-60000}
ROUNDS=${4:-1}
BATCHES=${5:-1000}
SERVER=$BUILD/server/strata-server
CLI=$BUILD/client/strata-cli
DIM=$(od -An -t u4 -j 4 -N 4 "$FILE" | tr -d ' ')
WORK=$(mktemp -d /tmp/strata_typed_ingest.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
printf '%-6s %-6s %-8s %14s %14s %16s %10s %12s\n' round batch sent_as bytes_on_wire client_rss_kib server_rss_kib seconds log_bytes
for round in $(seq 1 "$ROUNDS"); do
 for batch in $BATCHES; do
  for mode in float32 uint8; do
    rm -rf "$WORK/data" "$WORK/port"
    "$SERVER" --data-dir "$WORK/data" --port 0 --port-file "$WORK/port" --log-level warn &
    spid=$!
    for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
    port=$(cat "$WORK/port")
    # ef_construction 40 keeps the graph inserts (the same work in both runs) short.
    "$CLI" --port "$port" create u8 --dim "$DIM" --ef-construction 40 >/dev/null
    extra=""
    [ "$mode" = float32 ] && extra="--send-float32"
    start=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$WORK/time" \
      "$CLI" --port "$port" upsert u8 --vectors "$FILE" --limit "$ROWS" --batch "$batch" $extra >"$WORK/out" 2>"$WORK/err"
    end=$(date +%s.%N)
    crss=$(tail -1 "$WORK/time")
    srss=$(awk '/^VmHWM/ {print $2}' /proc/$spid/status)
    logb=$(cat "$WORK"/data/collections/*/wal/*.wal | wc -c)
    "$CLI" --port "$port" create u8b --dim "$DIM" --ef-construction 40 >/dev/null
    strace -f -qq -e trace=write,writev,sendto,sendmsg -e signal=none -o "$WORK/strace" \
      "$CLI" --port "$port" upsert u8b --vectors "$FILE" --limit "$ROWS" --batch "$batch" $extra >/dev/null 2>&1
    # Calls on fds other than stdout / stderr: the socket.
    sent=$(grep -vE '(write|writev)\((1|2),' "$WORK/strace" | sed -nE 's/.* = ([0-9]+)$/\1/p' | awk '{s += $1} END {print s + 0}')
    kill "$spid"; wait "$spid" || true
    printf '%-6s %-6s %-8s %14s %14s %16s %10.2f %12s\n' "$round" "$batch" "$mode" "$sent" "$crss" "$srss" \
      "$(echo "$end - $start" | bc)" "$logb"
  done
 done
done
