#!/usr/bin/env bash
# RESP search throughput against the binary protocol's, same server, same collection, same
# query, same concurrency (docs/BENCHMARKS.md, "RESP against the binary protocol").
#
#   scripts/resp_bench.sh [BUILD_DIR]     default build/release (strata-server, strata-cli)
#
# Starts BUILD_DIR's strata-server (loopback, ephemeral ports, --workers $STRATA_WORKERS or 2)
# with --resp-port, loads Fashion-MNIST (data/fashion-mnist/base.u8bin, 60,000 x 784, l2) with
# strata-cli upsert and seals it (flush), then for each concurrency (connections x pipeline):
#   binary: strata-cli load fm --k 10 --ef 64 (one query, below)
#   RESP:   redis-benchmark VSIM fm VALUES 784 <that query> COUNT 10 EF 64, and the same with
#           FP32 <the query's 3,136 bytes>
# each for $STRATA_BENCH_SECONDS (default 10) seconds' worth, alternating, twice.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
SERVER=$BUILD/server/strata-server
CLI=$BUILD/client/strata-cli
WORKERS=${STRATA_WORKERS:-2}
SECONDS_EACH=${STRATA_BENCH_SECONDS:-10}
DATA=data/fashion-mnist
for f in "$SERVER" "$CLI" "$DATA/base.u8bin" "$DATA/query.u8bin"; do
  [[ -e "$f" ]] || { echo "missing $f (build $BUILD; tools/fetch_dataset.sh fashion-mnist)" >&2; exit 1; }
done
command -v redis-benchmark >/dev/null || { echo "redis-benchmark not installed (redis-tools)" >&2; exit 1; }

TMP=$(mktemp -d)
PID=
cleanup() {
  if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
RESP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$SERVER" --data-dir "$TMP/data" --listen 127.0.0.1 --port 0 --metrics-port 0 \
  --resp-port "$RESP_PORT" --workers "$WORKERS" --port-file "$TMP/port" --log-level warn \
  >"$TMP/server.log" 2>&1 &
PID=$!
for _ in $(seq 600); do [[ -f "$TMP/port" ]] && break; sleep 0.1; done
PORT=$(cat "$TMP/port")
C=("$CLI" --port "$PORT")

"${C[@]}" create fm --dim 784 --metric l2 >/dev/null
"${C[@]}" upsert fm --vectors "$DATA/base.u8bin" --batch 1000 >/dev/null
"${C[@]}" flush fm >/dev/null
# One query, the same for all three: the first of query.u8bin plus 1/3, each float nudged until
# none of its bytes is NUL or newline (a shell argument cannot hold a NUL, so that redis-benchmark
# can send it as an FP32 blob). Written as an fbin for strata-cli, as text for VALUES, as bytes.
python3 - "$DATA/query.u8bin" "$TMP" <<'EOF2'
import struct, sys
src, tmp = sys.argv[1], sys.argv[2]
with open(src, "rb") as f:
    n, d = struct.unpack("<II", f.read(8))
    row = f.read(d)
vals = []
for b in row:
    v = struct.unpack("<f", struct.pack("<f", b + 1.0 / 3))[0]
    while any(x in (0, 10) for x in struct.pack("<f", v)):
        v = struct.unpack("<f", struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0] + 1))[0]
    vals.append(v)
blob = struct.pack(f"<{d}f", *vals)
open(f"{tmp}/q.fbin", "wb").write(struct.pack("<II", 1, d) + blob)
open(f"{tmp}/q.blob", "wb").write(blob)
open(f"{tmp}/q.txt", "w").write(" ".join(repr(v) for v in vals))
EOF2
QUERY=$(cat "$TMP/q.txt")
BLOB=$(LC_ALL=C cat "$TMP/q.blob")
(LC_ALL=C; [[ ${#BLOB} -eq $((784 * 4)) ]]) || { echo "the FP32 blob lost bytes" >&2; exit 1; }
echo "# $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), server --workers $WORKERS, $(git rev-parse --short HEAD)"
echo "# connections x pipeline | binary QPS (strata-cli load) | RESP VALUES QPS | RESP FP32 QPS (redis-benchmark) | VALUES / binary | FP32 / binary"
for round in 1 2; do
  for conc in "1 1" "4 1" "4 8"; do
    read -r conns pipe <<<"$conc"
    bin=$("${C[@]}" load fm --queries "$TMP/q.fbin" --k 10 --ef 64 \
      --connections "$conns" --pipeline "$pipe" --duration "$SECONDS_EACH" --json |
      python3 -c 'import json, sys; print(round(json.load(sys.stdin)["qps"]))')
    # As many requests as the binary run answered, so that each runs about as long.
    n=$((bin * SECONDS_EACH))
    rb() {
      redis-benchmark -p "$RESP_PORT" -c "$conns" -P "$pipe" -n "$n" -q "$@" 2>/dev/null |
        tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1
    }
    # shellcheck disable=SC2086
    values=$(rb VSIM fm VALUES 784 $QUERY COUNT 10 EF 64)
    fp32=$(LC_ALL=C rb VSIM fm FP32 "$BLOB" COUNT 10 EF 64)
    r1=$(python3 -c "print(f'{float(\"$values\") / $bin:.2f}')")
    r2=$(python3 -c "print(f'{float(\"$fp32\") / $bin:.2f}')")
    echo "round $round: $conns x $pipe | $bin | ${values%.*} | ${fp32%.*} | $r1 | $r2"
  done
done
