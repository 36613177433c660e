#!/usr/bin/env bash
# The everyday workflow of issue 13, end to end, as a user runs it with the real binaries:
#
#   1. a small .npy of vectors, with ids (.npy int64) and attributes (JSON Lines), ingested
#      through strata-cli upsert --ids --attributes into a live strata-server (port 0, read back
#      from --port-file; --snapshot-dir set);
#   2. a filtered search with --with-attributes: each hit's attributes come back in the search
#      reply (checked against the filter and the row);
#   3. a filter naming a misspelt attribute: no answers, and strata-cli warns on stderr;
#   4. a snapshot (strata-cli snapshot) taken while strata-cli upserts more batches;
#   5. strata restore of that snapshot into a new data directory, a second server on it, and the
#      same answers as the first server gave; the copy holds whole batches up to the snapshot's
#      sequence, no more.
#
#   bash scripts/walkthrough.sh [--build-dir build/asan]
#
# Builds nothing: it uses BUILD/server/strata-server, BUILD/client/strata-cli and
# BUILD/tools/strata (scripts/test.sh builds them first). Works in a fresh mktemp directory and
# deletes that alone. Fails loudly: the first check that does not hold prints what was expected
# and what came, and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=build/asan
while (($#)); do
  case "$1" in
    --build-dir) BUILD=$2; shift 2 ;;
    *) echo "walkthrough: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$BUILD" = /* ]] || BUILD="$ROOT/$BUILD"
SERVER="$BUILD/server/strata-server"
CLI="$BUILD/client/strata-cli"
STRATA="$BUILD/tools/strata"
for b in "$SERVER" "$CLI" "$STRATA"; do
  [[ -x "$b" ]] || { echo "walkthrough: $b is missing; build it first (cmake --build $BUILD)" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-walkthrough.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"  # made by mktemp above: ours alone
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }
die() { echo "walkthrough: FAILED: $*" >&2; exit 1; }
json() {  # json 'python expression over j' < text
  python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"
}

# start_server DATA_DIR NAME [flags...]: starts strata-server on a free port; sets PORT.
start_server() {
  local data=$1 name=$2
  shift 2
  "$SERVER" --listen 127.0.0.1 --port 0 --metrics-port 0 --data-dir "$data" --workers 2 \
    --port-file "$WORK/$name.port" --log-level warn "$@" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 600); do
    [[ -s "$WORK/$name.port" ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/$name.log" >&2; die "strata-server ($name) exited at start"; }
    sleep 0.1
  done
  [[ -s "$WORK/$name.port" ]] || die "strata-server ($name) did not start listening within 60 s"
  PORT=$(head -n1 "$WORK/$name.port")
}

# ---- the data: 600 rows of dim 16 (.npy float32), ids 1000 + 3 x row, attributes per row -----
ROWS=600 DIM=16 MORE=2000 BATCH=20
python3 - "$WORK" "$ROWS" "$DIM" "$MORE" <<'EOF'
import json, random, struct, sys
work, rows, dim, more = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def npy(path, descr, shape, values, fmt):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%d%s" % (len(values), fmt), *values))
rng = random.Random(13)
base = [rng.uniform(-1, 1) for _ in range(rows * dim)]
npy(f"{work}/base.npy", "<f4", (rows, dim), base, "f")
ids = [1000 + 3 * r for r in range(rows)]
npy(f"{work}/ids.npy", "<i8", (rows,), ids, "q")
langs = ["en", "de", "fr"]
with open(f"{work}/rows.jsonl", "w") as f:
    for r in range(rows):
        f.write(json.dumps({"id": ids[r], "attributes": {"lang": langs[r % 3], "year": 2000 + r % 25}}) + "\n")
npy(f"{work}/more.npy", "<f4", (more, dim), [rng.uniform(-1, 1) for _ in range(more * dim)], "f")
with open(f"{work}/query.txt", "w") as f:
    f.write(",".join("%.6f" % rng.uniform(-1, 1) for _ in range(dim)))
EOF
QUERY=$(cat "$WORK/query.txt")
FILTER='lang == "en" AND year >= 2010'

step "1. strata-server with --snapshot-dir; ingest $ROWS rows of base.npy with ids and attributes"
start_server "$WORK/data" first --snapshot-dir "$WORK/snapshots"
PORT1=$PORT
cli1() { "$CLI" --port "$PORT1" "$@"; }
cli1 create docs --dim "$DIM" --metric l2 --seal-threshold 200
cli1 upsert docs --vectors "$WORK/base.npy" --ids "$WORK/ids.npy" --attributes "$WORK/rows.jsonl" --batch 100
N0=$(cli1 describe docs --json | json 'j["num_vectors"]')
[[ "$N0" == "$ROWS" ]] || die "after ingest: $N0 vectors, expected $ROWS"
echo "docs: $N0 vectors"
# The ids are the file's (not row numbers), the attributes the JSON Lines rows'.
cli1 get docs 1003 --json | json 'j[0]["attributes"] == {"lang": "de", "year": 2001}' | grep -qx True ||
  die "id 1003 (row 1) does not hold row 1's attributes: $(cli1 get docs 1003 --json)"

step "2. filtered search ($FILTER) with each hit's attributes in the reply"
search() {  # search PORT -> "id distance attributes" lines, exact (scan) so that two servers compare
  "$CLI" --port "$1" search docs --vector="$QUERY" --k 10 --filter "$FILTER" --strategy scan --json \
    --with-attributes |
    json '"\n".join("%d %.5f %s" % (h["id"], h["distance"], json.dumps(h["attributes"], sort_keys=True)) for h in j["results"][0])'
}
HITS1=$(search "$PORT1")
echo "$HITS1"
[[ $(wc -l <<<"$HITS1") -eq 10 ]] || die "expected 10 hits, got: $HITS1"
python3 -c '
import json, sys
for line in sys.stdin:
    hid, dist, attrs = line.split(" ", 2)
    a = json.loads(attrs)
    assert a.get("lang") == "en" and a.get("year", 0) >= 2010, line
    row = (int(hid) - 1000) // 3
    assert a == {"lang": ["en", "de", "fr"][row % 3], "year": 2000 + row % 25}, line
' <<<"$HITS1" || die "a hit's attributes do not match the filter or its row (above)"
# The text form: id, distance, then the attributes as a JSON object.
"$CLI" --port "$PORT1" search docs --vector="$QUERY" --k 3 --filter "$FILTER" --with-attributes 2>/dev/null |
  head -n1 | grep -q $'\t{"lang":"en","year":' || die "the text form shows no attributes"

step "3. a filter on a misspelt attribute (lnag): no answers, and a warning on stderr"
set +e
"$CLI" --port "$PORT1" search docs --vector="$QUERY" --k 5 --filter 'lnag == "en"' \
  >"$WORK/miss.out" 2>"$WORK/miss.err"
MISS_RC=$?
set -e
cat "$WORK/miss.out" "$WORK/miss.err"
((MISS_RC == 0)) || die "the search with a misspelt attribute failed (rc $MISS_RC)"
grep -qx 'no results' "$WORK/miss.out" || die "the misspelt filter matched something: $(cat "$WORK/miss.out")"
grep -q "^strata-cli: warning: .*'lnag'" "$WORK/miss.err" ||
  die "no warning about lnag on stderr: $(cat "$WORK/miss.err")"
# The right name: answers, and no warning.
"$CLI" --port "$PORT1" search docs --vector="$QUERY" --k 5 --filter 'lang == "en"' >/dev/null 2>"$WORK/ok.err"
if grep -q warning "$WORK/ok.err"; then die "a warning for a correct filter: $(cat "$WORK/ok.err")"; fi

step "4. snapshot while strata-cli upserts $MORE more rows in batches of $BATCH"
SEQ0=$(cli1 describe docs --json | json 'j["last_sequence"]')
cli1 upsert docs --vectors "$WORK/more.npy" --id-offset 100000 --batch "$BATCH" >"$WORK/more.log" 2>&1 &
UPSERT_PID=$!
PIDS+=("$UPSERT_PID")
for _ in $(seq 1 600); do  # until the first batch is acknowledged
  [[ $(cli1 describe docs --json | json 'j["last_sequence"]') -gt $SEQ0 ]] && break
  sleep 0.05
done
cli1 snapshot docs snap-1 --json | tee "$WORK/snap.json"
SNAP_PATH=$(json 'j["path"]' <"$WORK/snap.json")
SNAP_SEQ=$(json 'j["sequence"]' <"$WORK/snap.json")
wait "$UPSERT_PID" || { cat "$WORK/more.log" >&2; die "the upserts during the snapshot failed"; }
SEQ_END=$(cli1 describe docs --json | json 'j["last_sequence"]')
echo "snapshot at batch $SNAP_SEQ (batches $SEQ0 before the upserts, $SEQ_END after them)"
[[ -d "$SNAP_PATH" && "$SNAP_PATH" == "$WORK/snapshots/snap-1" ]] || die "snapshot path '$SNAP_PATH'"
((SNAP_SEQ > SEQ0 && SNAP_SEQ <= SEQ_END)) || die "snapshot sequence $SNAP_SEQ is not in ($SEQ0, $SEQ_END]"
if cli1 snapshot docs snap-1 2>"$WORK/again.err"; then die "a second snapshot named snap-1 was not refused"; fi
grep -q AlreadyExists "$WORK/again.err" || die "refusal of an existing name: $(cat "$WORK/again.err")"

step "5. strata restore into a new data directory; a second server on it; the same answers"
"$STRATA" restore "$SNAP_PATH" --into "$WORK/restored"
if "$STRATA" restore "$SNAP_PATH" --into "$WORK/restored" 2>"$WORK/restore-again.err"; then
  die "restoring onto a data directory that is not empty was not refused"
fi
echo "(restoring again onto it is refused: $(cat "$WORK/restore-again.err"))"
start_server "$WORK/restored" second
PORT2=$PORT
INFO2=$("$CLI" --port "$PORT2" describe docs --json)
N2=$(json 'j["num_vectors"]' <<<"$INFO2")
SEQ2=$(json 'j["last_sequence"]' <<<"$INFO2")
echo "restored: $N2 vectors, last batch $SEQ2"
[[ "$SEQ2" == "$SNAP_SEQ" ]] || die "restored copy at batch $SEQ2, the snapshot said $SNAP_SEQ"
EXPECT=$((ROWS + (SNAP_SEQ - SEQ0) * BATCH))
[[ "$N2" == "$EXPECT" ]] || die "restored copy holds $N2 vectors; whole batches up to $SNAP_SEQ make $EXPECT"
# The last batch in the snapshot is there whole, the next one not at all.
LAST=$((100000 + (SNAP_SEQ - SEQ0) * BATCH - 1))
"$CLI" --port "$PORT2" get docs $((LAST - BATCH + 1)) "$LAST" --json |
  json 'all(r["found"] for r in j)' | grep -qx True || die "batch $SNAP_SEQ is not whole in the copy"
if ((SNAP_SEQ < SEQ_END)); then
  "$CLI" --port "$PORT2" get docs $((LAST + 1)) --json | json 'j[0]["found"]' | grep -qx False ||
    die "row $((LAST + 1)), written after the snapshot, is in the copy"
fi
HITS2=$(search "$PORT2")
if [[ "$HITS1" != "$HITS2" ]]; then
  printf 'first server:\n%s\nrestored copy:\n%s\n' "$HITS1" "$HITS2" >&2
  die "the restored copy answers differently"
fi
echo "same 10 answers, with the same attributes, from the restored copy"
printf '\nwalkthrough: OK\n'
