#!/usr/bin/env bash
# Issue 14, R2: the server's resident memory when a client pipelines large replies and never
# reads them. Starts the real strata-server binary on 127.0.0.1 (an ephemeral port, a temporary
# data directory, the default limits unless a config file is given), creates a collection of
# 10,000 one-dimensional vectors, then sends 20 pipelined search_batch requests (dim 1, 500
# queries, k 10,000: 40 KB of requests, 60 MB of reply each) on a raw socket and reads nothing.
# Samples VmRSS of the server's process (/proc/PID/status) every 20 ms until the server has
# closed the connection, and prints one line of figures.
#
#   bash tests/server/reply_memory.sh [path/to/strata-server] [config.toml]
#
# The server binary defaults to build/release/server/strata-server. Exit status 1 when the
# growth of the resident set passes the documented budget of this experiment (docs/
# RELIABILITY.md): max_connection_reply_bytes + one reply + the engine's results of the
# request running (16 bytes a neighbor: 4/3 of its reply) + 64 MiB for the allocator's
# slack, 0 otherwise. docs/RELIABILITY.md records the figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
SERVER=${1:-build/release/server/strata-server}
CONFIG=${2:-}
[[ -x $SERVER ]] || { echo "reply_memory.sh: no server binary at $SERVER" >&2; exit 2; }
WORK=$(mktemp -d /tmp/strata-reply-memory-XXXXXX)
PID=""
cleanup() {
  if [[ -n $PID ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

args=(--data-dir "$WORK/data" --port 0 --port-file "$WORK/port" --metrics-port 0 --log-level warn)
[[ -n $CONFIG ]] && args=(--config "$CONFIG" "${args[@]}")
"$SERVER" "${args[@]}" >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 200); do [[ -s $WORK/port ]] && break; sleep 0.05; done
[[ -s $WORK/port ]] || { echo "reply_memory.sh: the server did not start:" >&2; cat "$WORK/server.log" >&2; exit 2; }

python3 - "$(cat "$WORK/port")" "$PID" <<'EOF'
import socket, struct, sys, time

port, pid = int(sys.argv[1]), int(sys.argv[2])
MAGIC, VERSION = 0x41525453, 1
OP_HELLO, OP_CREATE, OP_UPSERT, OP_SEARCH_BATCH = 1, 3, 7, 11
QUERIES, K, ROWS, REQUESTS = 500, 10000, 10000, 20

def frame(op, rid, payload):
    return struct.pack("<IHHQII", MAGIC, VERSION, op, rid, len(payload), 0) + payload

def string(s):
    b = s.encode()
    return struct.pack("<I", len(b)) + b

def read_frame(sock):
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise RuntimeError("connection closed")
            buf += chunk
        return buf
    _, _, op, rid, size, _ = struct.unpack("<IHHQII", exact(24))
    payload = exact(size)
    if op == 0x7FFF:
        code, n = struct.unpack("<HI", payload[:6])
        raise RuntimeError(f"error {code}: {payload[6:6 + n].decode()}")
    return op, rid, payload

def rss_bytes():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

def connections():
    # The server's own count would need the metrics port; /proc tells the sockets instead:
    # an established TCP connection to `port` from this process.
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local_port = int(fields[1].rsplit(":", 1)[1], 16)
                    if local_port == port and fields[3] == "01":  # ESTABLISHED
                        n += 1
        except FileNotFoundError:
            pass
    return n

# The collection: 10,000 vectors of dimension 1 (no attributes), in batches of 1,000.
admin = socket.create_connection(("127.0.0.1", port))
admin.sendall(frame(OP_HELLO, 1, string("reply_memory.sh") + string("")))
read_frame(admin)
spec = string("one") + struct.pack("<IBIIQQ", 1, 0, 16, 200, 100000, 0)
admin.sendall(frame(OP_CREATE, 2, spec))
read_frame(admin)
for first in range(0, ROWS, 1000):
    records = b"".join(struct.pack("<QfH", i + 1, float(i % 101) / 10, 0)
                       for i in range(first, first + 1000))
    admin.sendall(frame(OP_UPSERT, 3, string("one") + struct.pack("<II", 1, 1000) + records))
    read_frame(admin)
admin.close()
time.sleep(0.5)

# 20 pipelined search_batch requests (exact scan, so that every reply holds k results),
# never read. The client's receive buffer is kept small (64 KiB) so that the server's
# writes stall as soon as possible.
options = struct.pack("<IdII", K, 0.0, 0, 0) + string("") + struct.pack("<B", 2)  # kScan
queries = struct.pack(f"<{QUERIES}f", *[float(i % 101) / 10 for i in range(QUERIES)])
request = string("one") + options + struct.pack("<II", 1, QUERIES) + queries
wire = b"".join(frame(OP_SEARCH_BATCH, rid, request) for rid in range(1, REQUESTS + 1))
reply = 24 + 4 + QUERIES * (4 + K * 12)

before = rss_bytes()
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
sock.connect(("127.0.0.1", port))
sock.sendall(wire)
start = time.monotonic()
peak, held_until = before, None
while time.monotonic() - start < 600:
    peak = max(peak, rss_bytes())
    if connections() == 0:
        held_until = time.monotonic() - start
        break
    time.sleep(0.02)
after = rss_bytes()
sock.close()
mib = 1 << 20
budget = 16 * mib + reply + reply * 4 // 3 + 64 * mib
growth = peak - before
print(f"requests {REQUESTS} x {len(request) + 24} bytes, replies of {reply / mib:.1f} MiB each; "
      f"server RSS {before / mib:.0f} MiB before, {peak / mib:.0f} MiB at most "
      f"(+{growth / mib:.0f} MiB; budget {budget / mib:.0f} MiB), {after / mib:.0f} MiB after; "
      f"connection closed by the server after "
      f"{'more than 600' if held_until is None else f'{held_until:.1f}'} s")
sys.exit(0 if growth <= budget else 1)
EOF
