#!/bin/bash
# Issue 14, D1: memory and disk of a 10,000 x 256-d collection written once against the same
# collection rewritten 40 times (batches of 1,000), after a flush and after a restart.
#   bench/reupsert_memory.sh BUILD_DIR [WORK_DIR]
# Prints the JSON lines of each run and the ratios (rewritten / written once).
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR [WORK_DIR]}
made_work=0
if [[ -n "${2:-}" ]]; then
  work=$2
  for d in once many; do  # never cleared: this script removes only what it created
    [[ -e "$work/$d" ]] && { echo "$work/$d exists; give a WORK_DIR without once/ and many/" >&2; exit 2; }
  done
else
  work=$(mktemp -d /tmp/strata_reupsert.XXXXXX)
  made_work=1
fi
tool=$build/bench/reupsert_memory
rows=${ROWS:-10000} dim=${DIM:-256} batch=${BATCH:-1000} rewrites=${REWRITES:-40}
mkdir -p "$work"
run() {  # NAME REWRITES (log lines on stdout are left out)
  "$tool" write "$work/$1" --rows "$rows" --dim "$dim" --batch "$batch" --rewrites "$2" 2>/dev/null \
    | grep '^{' | sed "s/^{/{\"run\": \"$1\", /"
  "$tool" open "$work/$1" 2>/dev/null | grep '^{' | sed "s/^{/{\"run\": \"$1\", /"
}
{ run once 0; run many "$rewrites"; } | tee "$work/results.jsonl"
python3 - "$work/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["run"], r["phase"]): r for r in rows}
print(f"{'phase':22} {'metric':20} {'once':>12} {'40 rewrites':>12} {'ratio':>6}")
for phase in ("after_writes", "after_flush", "after_flush_settled", "after_restart", "after_restart_settled"):
    for m in ("engine_memory_bytes", "rss_bytes", "disk_bytes"):
        a, b = by[("once", phase)][m], by[("many", phase)][m]
        print(f"{phase:22} {m:20} {a/2**20:10.1f}Mi {b/2**20:10.1f}Mi {b/a:6.2f}")
PY
rm -rf "$work/once" "$work/many"
if ((made_work)); then rm -rf "$work"; fi
