#!/usr/bin/env bash
# Issue 14 R1: do searches keep their latency while another collection is maintained?
#
# A strata-server (Release, default worker count) serves two collections:
#   b: 50,000 x 100 (synthetic Gaussian mixture), searched open loop by `strata-cli load`
#      at RATE queries/s from one connection (recall target 0.95);
#   a: 1470-d, three sealed segments of 3,000; during the whole "busy" phase it gets, pass
#      after pass, a 56 MiB upsert (one request of 10,000 x 1470 floats), a flush and a
#      compaction sent at once.
# Each round measures b's latency idle, then busy (the load runs while a's jobs run);
# ROUNDS rounds. With several builds (STRATA_BIN_DIRS="DIR1 DIR2", each holding strata,
# strata-server and strata-cli), one server per build runs side by side and the rounds
# alternate between them. Last, one JSON line per build with the medians.
# Goal: busy p99 <= 3x idle p99.
#
#   bash scripts/maintenance_bench.sh                      # this checkout's Release build
#   STRATA_BIN_DIRS="/tmp/before /tmp/after" bash scripts/maintenance_bench.sh
#   ROUNDS=3 RATE=50 DURATION=20 (defaults); STRATA_SERVER_FLAGS: more strata-server flags;
#   A_CLIENT_NICE=N or A_CLIENT_SCHED=idle: a's clients at lower CPU priority (see below);
#   A_JOBS="upsert flush compact" (default): which of a's jobs each pass sends (a subset tells
#   which of them b's tail comes from; without upsert, flush and compact have nothing to do after
#   the first pass, so the "busy" phase is then mostly idle);
#   A_SERVER=own: a lives in a strata-server process of its own (same build, same flags), so
#   that a's work shares the cores and the kernel with b's searches but not the address space
#   (tells a tail caused by one process's memory map -- page faults, munmap -- from one caused by
#   the shared cores); a's server then runs at a's clients' priority (A_CLIENT_NICE /
#   A_CLIENT_SCHED) too; default: one server holds both;
#   A_CPUS=LIST: a's clients (and a's server with A_SERVER=own) run on those CPUs only
#   (taskset -c LIST), e.g. A_CPUS=1: a's whole side confined to one of the two cores;
#   STRATA_SERVER_CONFIGS="F1 F2": one server per config file (--config), side by side, all of
#   one build (or of the builds in turn), to compare settings in one run the way builds are;
#   SERVER_LOGS=DIR: each server's log is copied to DIR/server<i>.log (a's own: server<i>a.log) at the end (with a config
#   setting [server] slow_request_ms, it names where each slow request's time went)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-50}
DURATION=${DURATION:-20}
if [[ -z "${STRATA_BIN_DIRS:-}" ]]; then
  bash scripts/setup.sh
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
  cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build/release --target strata strata-server strata-cli >/dev/null
  mkdir -p build/release/bin-maintenance
  cp build/release/tools/strata build/release/server/strata-server build/release/client/strata-cli \
    build/release/bin-maintenance/
  STRATA_BIN_DIRS="$ROOT/build/release/bin-maintenance"
fi
read -r -a BIN_LIST <<<"$STRATA_BIN_DIRS"
read -r -a CONFIGS <<<"${STRATA_SERVER_CONFIGS:-}"
# One server per variant: a build, or a config file of one build.
BINS=()
VARIANT_CONFIGS=()  # each variant's --config file ("" : none)
NVAR=${#BIN_LIST[@]}
(( ${#CONFIGS[@]} > NVAR )) && NVAR=${#CONFIGS[@]}
for ((v = 0; v < NVAR; v++)); do
  BINS+=("${BIN_LIST[$((v % ${#BIN_LIST[@]}))]}")
  if (( ${#CONFIGS[@]} > 0 )); then
    cfg=${CONFIGS[$((v % ${#CONFIGS[@]}))]}
    [[ -f "$cfg" ]] || { echo "maintenance_bench: config file '$cfg' not found" >&2; exit 2; }
    VARIANT_CONFIGS+=("$(realpath "$cfg")")
  else
    VARIANT_CONFIGS+=("")
  fi
done
# The clients that send a's upsert, flush and compaction run on this machine's cores too (reading
# and encoding the 56 MiB file); A_CLIENT_NICE=10 runs them at lower priority, standing in for
# clients on other machines. Default: 0 (same priority as everything else).
# A_CLIENT_SCHED=idle runs them under SCHED_IDLE instead (chrt --idle 0): they then take a core
# only when nothing else wants it, as clients on other machines would.
A_JOBS=${A_JOBS:-upsert flush compact}
for job in $A_JOBS; do
  case "$job" in
    upsert | flush | compact) ;;
    *) echo "maintenance_bench: A_JOBS takes upsert, flush and compact, not '$job'" >&2; exit 2 ;;
  esac
done
[[ -n "${A_JOBS// /}" ]] || { echo "maintenance_bench: A_JOBS names no job" >&2; exit 2; }
A_SERVER=${A_SERVER:-shared}
case "$A_SERVER" in
  shared | own) ;;
  *) echo "maintenance_bench: A_SERVER must be 'shared' or 'own', not '$A_SERVER'" >&2; exit 2 ;;
esac
A_NICE=""
if [[ "${A_CLIENT_NICE:-0}" != 0 ]]; then A_NICE="nice -n ${A_CLIENT_NICE}"; fi
if [[ "${A_CLIENT_SCHED:-}" == idle ]]; then
  A_NICE="chrt --idle 0"
elif [[ -n "${A_CLIENT_SCHED:-}" ]]; then
  echo "maintenance_bench: A_CLIENT_SCHED must be 'idle' or empty, not '${A_CLIENT_SCHED}'" >&2
  exit 2
fi

if [[ -n "${A_CPUS:-}" ]]; then
  taskset -c "$A_CPUS" true || { echo "maintenance_bench: A_CPUS='$A_CPUS' is not a CPU list taskset takes" >&2; exit 2; }
  A_NICE="taskset -c $A_CPUS $A_NICE"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-maintenance-bench-XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n "${SERVER_LOGS:-}" ]]; then
    mkdir -p "$SERVER_LOGS"
    for d in "$WORK"/server*; do
      dest="$SERVER_LOGS/$(basename "$d").log"
      if [[ -e "$dest" ]]; then
        echo "maintenance_bench: $dest exists; not overwritten (the log is lost with $WORK)" >&2
      elif [[ -f "$d/server.log" ]]; then
        cp "$d/server.log" "$dest"
      fi
    done
  fi
  rm -rf "$WORK"  # made by mktemp above: ours
}
trap cleanup EXIT

STRATA="${BINS[0]}/strata"
"$STRATA" --quiet dataset synth --n 50000 --queries 1000 --dim 100 --out-dir "$WORK/b" >/dev/null
"$STRATA" --quiet dataset synth --n 3000 --queries 10 --dim 1470 --clusters 100 --out-dir "$WORK/a" >/dev/null
# The 56 MiB request: 10,000 x 1470 floats, sent as one batch.
"$STRATA" --quiet dataset synth --n 10000 --queries 10 --dim 1470 --clusters 100 --seed 7 \
  --out-dir "$WORK/a-big" >/dev/null

start_server() {  # build index, directory[, priority prefix]; writes DIR/port
  local d=$2
  mkdir -p "$d"
  # shellcheck disable=SC2086
  ${3:-} "${BINS[$1]}/strata-server" --data-dir "$d/data" --port 0 --metrics-port 0 --port-file "$d/port" \
    --log-level warn ${STRATA_SERVER_FLAGS:-} ${VARIANT_CONFIGS[$1]:+--config "${VARIANT_CONFIGS[$1]}"} \
    >"$d/server.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do [[ -s "$d/port" ]] && break; sleep 0.1; done
  if [[ ! -s "$d/port" ]]; then
    echo "maintenance_bench: the server in $d did not start; its log:" >&2
    tail -n 20 "$d/server.log" >&2
    exit 1
  fi
}
PORTS=()
A_PORTS=()
for i in "${!BINS[@]}"; do
  d="$WORK/server$i"
  start_server "$i" "$d"
  PORTS+=("$(cat "$d/port")")
  if [[ "$A_SERVER" == own ]]; then
    start_server "$i" "$WORK/server${i}a" "$A_NICE"
    A_PORTS+=("$(cat "$WORK/server${i}a/port")")
  else
    A_PORTS+=("${PORTS[$i]}")
  fi
  cli=("${BINS[$i]}/strata-cli" --port "${PORTS[$i]}")
  "${cli[@]}" create b --dim 100 >/dev/null
  "${cli[@]}" upsert b --vectors "$WORK/b/base.fbin" --batch 1000 >/dev/null 2>&1
  "${cli[@]}" flush b >/dev/null
done

# Warm-up, not counted: b's first searches after its load fault in the sealed segment's pages
# and meet the tail of its seal (seen as a round-1 idle p99 of 2-3 ms against 0.6-0.8 later).
for i in "${!BINS[@]}"; do
  "${BINS[$i]}/strata-cli" --port "${PORTS[$i]}" load b --queries "$WORK/b/query.fbin" --connections 1 \
    --rate "$RATE" --duration 5 --recall 0.95 --json >/dev/null ||
    { echo "maintenance_bench: the warm-up load of server $i failed" >&2; exit 1; }
done

num() {  # json key -> the first number after "key":
  grep -o "\"$2\": *[-0-9.eE+]*" <<<"$1" | head -n1 | sed 's/.*: *//'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A IP50 IP99 BP50 BP99
for round in $(seq "$ROUNDS"); do
  for i in "${!BINS[@]}"; do
    cli=("${BINS[$i]}/strata-cli" --port "${PORTS[$i]}")
    load_b() {
      "${cli[@]}" load b --queries "$WORK/b/query.fbin" --connections 1 --rate "$RATE" \
        --duration "$DURATION" --recall 0.95 --json 2>/dev/null
    }
    out=$(load_b)
    ip50=$(num "$out" p50) ip99=$(num "$out" p99)
    cli=("${BINS[$i]}/strata-cli" --port "${A_PORTS[$i]}")
    # a: three sealed segments of 3,000, so that the compaction has work.
    "${cli[@]}" drop a >/dev/null 2>&1 || true
    "${cli[@]}" create a --dim 1470 >/dev/null
    for s in 0 1 2; do
      "${cli[@]}" upsert a --vectors "$WORK/a/base.fbin" --id-offset $((s * 3000)) --batch 1000 >/dev/null 2>&1
      "${cli[@]}" flush a >/dev/null
    done
    jobs_log="$WORK/jobs.$round.$i"
    : >"$jobs_log"
    rm -f "$WORK/stop"
    # a's maintenance, repeated until b's load ends: each pass sends the 56 MiB upsert (the
    # same ids every pass: a re-embedding), a flush and a compaction at once, and waits.
    (
      pass=0
      while [[ ! -e "$WORK/stop" ]]; do
        t0=$(date +%s.%N)
        waits=()
        if [[ " $A_JOBS " == *" upsert "* ]]; then
          $A_NICE "${cli[@]}" upsert a --vectors "$WORK/a-big/base.fbin" --id-offset 100000 --batch 10000 \
            >/dev/null 2>&1 &
          waits+=($!)
        fi
        if [[ " $A_JOBS " == *" flush "* ]]; then
          $A_NICE "${cli[@]}" flush a >/dev/null &
          waits+=($!)
        fi
        if [[ " $A_JOBS " == *" compact "* ]]; then
          $A_NICE "${cli[@]}" compact a >/dev/null &
          waits+=($!)
        fi
        wait "${waits[@]}"
        pass=$((pass + 1))
        echo "pass $pass $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }')" >>"$jobs_log"
      done
    ) &
    jobs_pid=$!
    cli=("${BINS[$i]}/strata-cli" --port "${PORTS[$i]}")
    out=$(load_b)
    bp50=$(num "$out" p50) bp99=$(num "$out" p99)
    touch "$WORK/stop"
    wait $jobs_pid
    IP50[$i]+=" $ip50" IP99[$i]+=" $ip99" BP50[$i]+=" $bp50" BP99[$i]+=" $bp99"
    echo "round $round, ${BINS[$i]}${VARIANT_CONFIGS[$i]:+ --config ${VARIANT_CONFIGS[$i]}}: idle p50 $ip50 p99 $ip99 ms; busy p50 $bp50 p99 $bp99 ms;" \
         "a's maintenance passes (${A_JOBS// / + }): $(tr '\n' ' ' <"$jobs_log")"
  done
done
for i in "${!BINS[@]}"; do
  # shellcheck disable=SC2086
  ip50=$(median ${IP50[$i]}) ip99=$(median ${IP99[$i]}) bp50=$(median ${BP50[$i]}) bp99=$(median ${BP99[$i]})
  ratio=$(awk -v a="$bp99" -v b="$ip99" 'BEGIN { printf "%.2f", a / b }')
  echo "{\"bench\":\"maintenance\",\"build\":\"${BINS[$i]}\",\"config\":\"${VARIANT_CONFIGS[$i]}\",\"rounds\":$ROUNDS,\"rate\":$RATE," \
       "\"duration_s\":$DURATION,\"a_server\":\"$A_SERVER\",\"search_p50_idle_ms\":$ip50,\"search_p99_idle_ms\":$ip99," \
       "\"search_p50_busy_ms\":$bp50,\"search_p99_busy_ms\":$bp99,\"p99_ratio\":$ratio}"
done
