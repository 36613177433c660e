#!/usr/bin/env bash
# redis-cli (Debian's redis-tools) against a live strata-server's RESP listener
# (docs/RESP.md): every command, its exact reply, the errors (wrong arity, wrong dimension,
# a bad FILTER with its position, unknown commands), AUTH, RESP3, pipelining, a malformed
# request; then SIGKILL during a stream of VADDs and a restart: every acknowledged element
# is there with its vector and attributes.
#
#   tests/server/resp_cli_test.sh STRATA_SERVER_BINARY
set -euo pipefail
SERVER=${1:?usage: resp_cli_test.sh STRATA_SERVER_BINARY}
command -v redis-cli >/dev/null || { echo "redis-cli not installed (redis-tools)"; exit 1; }
TMP=$(mktemp -d)
PID=
cleanup() {
  if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
TOKEN=resp-cli-test-token-0123456789

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {  # start [extra flags...]
  PORT=$(free_port)
  rm -f "$TMP/port"
  "$SERVER" --data-dir "$TMP/data" --listen 127.0.0.1 --port 0 --metrics-port 0 \
    --resp-port "$PORT" --workers 2 --token "$TOKEN" --port-file "$TMP/port" \
    --log-level warn "$@" >>"$TMP/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 600); do
    [[ -f "$TMP/port" ]] && return 0
    kill -0 "$PID" 2>/dev/null || { cat "$TMP/server.log"; echo "server exited"; exit 1; }
    sleep 0.1
  done
  echo "server did not start"; exit 1
}

FAILS=0
CHECKS=0
# check WANT CMD... : the command's output (redis-cli, authenticated, RESP2) must be WANT.
cli() { redis-cli -p "$PORT" --no-auth-warning -a "$TOKEN" "$@" 2>&1; }
check_out() {  # check_out NAME WANT GOT
  CHECKS=$((CHECKS + 1))
  if [[ "$2" != "$3" ]]; then
    FAILS=$((FAILS + 1))
    printf 'FAIL %s\n  want: %q\n  got:  %q\n' "$1" "$2" "$3"
  fi
}
check() {
  local want=$1
  shift
  check_out "$*" "$want" "$(cli "$@")"
}

start

# --- Before AUTH: only AUTH, HELLO, PING, QUIT.
check_out "PING before AUTH" "PONG" "$(redis-cli -p "$PORT" PING 2>&1)"
check_out "VCARD before AUTH" "NOAUTH Authentication required." "$(redis-cli -p "$PORT" VCARD k 2>&1)"
check_out "AUTH wrong" "WRONGPASS invalid username-password pair or user is disabled." \
  "$(redis-cli -p "$PORT" AUTH wrong-token 2>&1)"
check_out "AUTH default token" $'OK\n0' "$(printf 'AUTH default %s\nDBSIZE\n' "$TOKEN" | redis-cli -p "$PORT" 2>&1)"
check_out "HELLO 3 AUTH" "proto 3" \
  "$(redis-cli -p "$PORT" HELLO 3 AUTH default "$TOKEN" 2>&1 | grep '^proto ')"

# --- Connection commands.
check "PONG" PING
check "hi there" PING "hi there"
check "hello" ECHO hello
check "OK" SELECT 0
check "ERR DB index is out of range" SELECT 1
check_out "CLIENT SETNAME/GETNAME" $'OK\nstrata-test' \
  "$(printf 'CLIENT SETNAME strata-test\nCLIENT GETNAME\n' | cli)"
check "OK" CLIENT SETINFO LIB-NAME strata-test
check "ERR unknown subcommand 'NOPE'. Try CLIENT HELP." CLIENT NOPE
check "28" COMMAND COUNT
check_out "COMMAND DOCS vsim" "summary" "$(cli COMMAND DOCS vsim | sed -n 2p)"
# QUIT: +OK, then the connection closes (redis-cli handles QUIT itself: a raw socket here).
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'AUTH %s\r\nQUIT\r\nPING\r\n' "$TOKEN" >&3
check_out "QUIT" $'+OK\r\n+OK\r' "$(timeout 10 cat <&3 || true)"
exec 3<&- 3>&-
check "ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' " FOO bar baz
check "ERR wrong number of arguments for 'vcard' command" VCARD
check "ERR wrong number of arguments for 'echo' command" ECHO a b
check "ERR wrong number of arguments for 'vadd' command" VADD k VALUES 2

# --- Vector sets. A key is a collection: created by its first VADD (cosine, that dimension).
check "0" DBSIZE
check "1" VADD movies VALUES 3 1 0 0 m1 SETATTR '{"year": 1980, "rating": 8.5, "genre": "action", "tags": ["classic", "space"]}'
check "1" VADD movies VALUES 3 0.9 0.1 0 m2 SETATTR '{"year": 1995, "rating": 6.5, "genre": "drama"}'
check "1" VADD movies VALUES 3 0 1 0 m3 SETATTR '{"year": 2005, "rating": 9, "genre": "action"}'
check "1" VADD movies VALUES 3 0 0 1 m4
check "0" VADD movies VALUES 3 0.8 0.2 0 m2   # an update keeps the attributes
check "3" VDIM movies
check "4" VCARD movies
check "0" VCARD nosuchkey
check "ERR key does not exist" VDIM nosuchkey
check "ERR Vector dimension mismatch - got 2 but set has 3" VADD movies VALUES 2 1 0 m5
check "ERR Vector dimension mismatch - got 4 but set has 3" VSIM movies VALUES 4 1 0 0 0
check "ERR invalid vector specification" VADD movies VALUES x 1 0 0 m5
check "ERR invalid vector specification" VSIM movies VECTOR 1 2 3
check "ERR invalid option after element" VADD movies VALUES 3 1 0 0 m5 NOPE
check "ERR BIN quantization is not supported by Strata: vectors are stored as f32 (use NOQUANT or Q8, or leave it out)" \
  VADD movies VALUES 3 1 0 0 m5 BIN
check "ERR asked M value mismatch with existing vector set" VADD movies VALUES 3 1 0 0 m5 M 32
check "ERR REDUCE is not supported by Strata: vectors are stored at their full dimension (reduce them before VADD)" \
  VADD movies REDUCE 2 VALUES 3 1 0 0 m5
check "ERR invalid key 'a:b': a key is a Strata collection, named by 1..64 characters of [A-Za-z0-9_-]" \
  VADD a:b VALUES 1 1 x

# Scores: (1 + cos) / 2, from the engine's f32 distance (Redis computes them in f32 too).
check $'m1\n1\nm2\n0.9850712418556213\nm3\n0.5' VSIM movies VALUES 3 1 0 0 WITHSCORES COUNT 3
check $'m1\nm2' VSIM movies ELE m1 COUNT 2
# FP32: little-endian floats (bytes chosen without a NUL, which a shell argument cannot hold):
# (1.00889, 0.00787, 0.00787) is nearest m1.
check $'m1' VSIM movies FP32 "$(printf '\x45\x23\x81\x3f\x01\x01\x01\x3c\x01\x01\x01\x3c')" COUNT 1
check "ERR invalid vector specification" VSIM movies FP32 abcde
check $'m1\nm2\nm3\nm4' VSIM movies VALUES 3 1 0 0 TRUTH
check $'m1\nm2' VSIM movies VALUES 3 1 0 0 EPSILON 0.2
check $'m1\nm3' VSIM movies VALUES 3 1 0 0 FILTER '.genre == "action"'
check $'m1' VSIM movies VALUES 3 1 0 0 FILTER '.year >= 1980 and .rating > 7 and .year < 2000'
check $'m1\nm3' VSIM movies VALUES 3 1 0 0 FILTER '.year - 1900 > 50 && !(.genre == "drama")'
check $'m1\nm2' VSIM movies VALUES 3 1 0 0 FILTER '.year in [1980, 1995]'
check $'m1' VSIM movies VALUES 3 1 0 0 FILTER '"space" in .tags'
check $'m3\n1\n{"year": 2005, "rating": 9, "genre": "action"}' \
  VSIM movies VALUES 3 0 1 0 WITHSCORES WITHATTRIBS COUNT 1 FILTER '.rating >= 9'
check "ERR syntax error in FILTER expression at position 10 (near ''): expected a value, found the end of the expression" \
  VSIM movies VALUES 3 1 0 0 FILTER '.year >= '
check "ERR syntax error in FILTER expression at position 7 (near '** 2 > 4'): '**' on a field is not supported by Strata's filters (only +, -, * and / by numbers)" \
  VSIM movies VALUES 3 1 0 0 FILTER '.year ** 2 > 4'
check "ERR syntax error in VSIM command" VSIM movies VALUES 3 1 0 0 SIDEWAYS
check "ERR invalid COUNT" VSIM movies VALUES 3 1 0 0 COUNT 0
check "ERR invalid EF" VSIM movies VALUES 3 1 0 0 EF -1
check "ERR element not found in set" VSIM movies ELE nobody
check "" VSIM nosuchkey VALUES 3 1 0 0

check '{"year": 1995, "rating": 6.5, "genre": "drama"}' VGETATTR movies m2
check "" VGETATTR movies m4
check "1" VSETATTR movies m4 '{"year": 2020}'
check '{"year": 2020}' VGETATTR movies m4
check "0" VSETATTR movies nobody '{"year": 2020}'
check "1" VSETATTR movies m4 ''
check "" VGETATTR movies m4
check $'0.800000011920929\n0.20000000298023224\n0' VEMB movies m2
check "" VEMB movies nobody
check_out "VEMB RAW" $'f32\n1' "$(cli VEMB movies m1 RAW | tr -d '\000' | sed -n '1p;$p')"
check_out "VEMB RAW blob" "12" "$(redis-cli -p "$PORT" --no-auth-warning -a "$TOKEN" --raw VEMB movies m1 RAW | sed -n 2p | head -c 12 | wc -c)"
check "1" VISMEMBER movies m1
check "0" VISMEMBER movies nobody
check "0" VISMEMBER nosuchkey m1
check_out "VINFO" $'quant-type\nf32\nhnsw-m\n16\nvector-dim\n3\nprojection-input-dim\n0\nsize\n4' \
  "$(cli VINFO movies | head -10)"
check "" VINFO nosuchkey
check_out "VRANDMEMBER 10" $'m1\nm2\nm3\nm4' "$(cli VRANDMEMBER movies 10 | sort)"
check_out "VRANDMEMBER -6" "6" "$(cli VRANDMEMBER movies -6 | wc -l)"
check_out "VRANDMEMBER" "1" "$(cli VRANDMEMBER movies | grep -c '^m[1-4]$')"
check "" VRANDMEMBER nosuchkey
check $'m2\nm3\nm4' VLINKS movies m1
check_out "VLINKS WITHSCORES" $'m1\n0.9850712418556213\nm3\n0.6212678104639053' \
  "$(cli VLINKS movies m2 WITHSCORES | head -4)"
check "1" VREM movies m4
check "0" VREM movies m4
check "3" VCARD movies

# --- Generic keys (a key is a collection).
check "1" VADD other VALUES 2 1 1 x METRIC l2
check $'x\n1' VSIM other VALUES 2 1 1 WITHSCORES
check_out "VINFO metric" "l2" "$(cli VINFO other | sed -n 14p)"
check "vectorset" TYPE movies
check "none" TYPE nosuchkey
check "2" EXISTS movies other
check "1" EXISTS movies nosuchkey
check $'movies\nother' KEYS '*'
check "movies" KEYS 'mov*'
check $'0\nmovies\nother' SCAN 0
check $'1\nmovies' SCAN 0 COUNT 1
check $'0\nother' SCAN 1 COUNT 5
check "2" DBSIZE
check "ERR FLUSHALL is disabled on this server: it drops every collection; set server.resp_allow_flushall = true to allow it" FLUSHALL
check "1" DEL other nosuchkey
check "1" DBSIZE
check_out "INFO keyspace" "db0:keys=1,expires=0,avg_ttl=0" "$(cli INFO keyspace | grep db0 | tr -d '\r')"

# --- RESP3: scores as doubles, WITHSCORES as a map.
check_out "RESP3 VSIM" '1# "m1" => (double) 1' \
  "$(redis-cli -3 -p "$PORT" --no-auth-warning -a "$TOKEN" --no-raw VSIM movies VALUES 3 1 0 0 WITHSCORES COUNT 1 2>&1)"

# --- Pipelining: many commands in one write, replies in order.
{
  printf 'AUTH %s\r\n' "$TOKEN"
  for i in $(seq 1 200); do printf 'VADD pipe VALUES 2 %d 1 e%d\r\nVCARD pipe\r\n' "$i" "$i"; done
} >"$TMP/pipe.in"
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
cat "$TMP/pipe.in" >&3
want_pipe=$(printf '+OK\r\n'; for i in $(seq 1 200); do printf ':1\r\n:%d\r\n' "$i"; done)
got_pipe=$(timeout 10 head -c "${#want_pipe}" <&3 || true)
exec 3<&- 3>&-
check_out "pipelined VADD/VCARD in order" "$want_pipe" "$got_pipe"

# --- A malformed request: an error, then the connection closes.
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'PING\r\n*1\r\n$x\r\n' >&3
got_bad=$(timeout 10 cat <&3 || true)
exec 3<&- 3>&-
check_out "malformed request" $'+PONG\r\n-ERR Protocol error: invalid bulk length\r' "$got_bad"

# --- SIGKILL during a VADD stream; every acknowledged element survives the restart.
for i in $(seq 1 20000); do
  printf 'VADD crash VALUES 3 %d 1 2 el%d SETATTR "{\\"i\\": %d}"\n' "$i" "$i" "$i"
done >"$TMP/crash.in"
cli <"$TMP/crash.in" >"$TMP/crash.out" 2>/dev/null &
CLI_PID=$!
for _ in $(seq 200); do
  [[ -s "$TMP/crash.out" && $(wc -l <"$TMP/crash.out") -ge 300 ]] && break
  sleep 0.05
done
kill -KILL "$PID"
wait "$PID" 2>/dev/null || true
wait "$CLI_PID" 2>/dev/null || true
acked=$(grep -c '^1$' "$TMP/crash.out" || true)
PID=
start
check_out "SIGKILL: some VADDs acknowledged" "yes" "$([[ $acked -ge 300 ]] && echo yes || echo no)"
card=$(cli VCARD crash)
check_out "SIGKILL: every acknowledged element is there (acked $acked, found $card)" "yes" \
  "$([[ $card -ge $acked ]] && echo yes || echo no)"
for i in 1 $((acked / 2)) "$acked"; do
  check "1" VISMEMBER crash "el$i"
  check_out "VEMB el$i" "$(printf '%d\n1\n2' "$i")" "$(cli VEMB crash "el$i")"
  check_out "VGETATTR el$i" "{\"i\": $i}" "$(cli VGETATTR crash "el$i")"
done

echo "resp_cli_test: $CHECKS checks, $FAILS failed"
[[ $FAILS -eq 0 ]]
