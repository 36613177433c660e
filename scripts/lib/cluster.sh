# Sourced by the scripts that start a cluster on loopback (cluster_demo.sh, cluster_bench.sh):
# a fresh temporary directory, a real etcd and strata-server processes in it, all stopped and
# the directory removed (that directory only) on any exit.
#
#   cluster_scratch NAME          T: a fresh /tmp/strata_NAME_XXXXXX; PIDS: what was started;
#                                 the EXIT trap stops every pid in PIDS and removes $T
#   free_port                     prints a port the kernel had free on 127.0.0.1
#   start_etcd MEMBER             etcd on free ports, data in $T/etcd; sets ETCD (its URL) and
#                                 waits (10 s at most) until it answers
#   start_server NAME METRICS [FLAGS...]
#                                 $SERVER (strata-server) with data in $T/NAME, port 0 (read back from
#                                 $T/NAME.port), metrics on port METRICS (0: ephemeral), then
#                                 FLAGS; sets PORT once it listens (60 s at most: a node started
#                                 again replays its log first), else prints its log and exits 1;
#                                 its log level is $LOG_LEVEL (default warn)
#
#   cluster_tools NAME            checks that $SERVER and $CLI are built and etcd installed; exits 2
#                                 naming what is missing (NAME: the calling script, in messages)
#   cluster_data_set NAME SET DATA
#                                 BASE, QUERIES, GT, DIM, METRIC of data set SET (fashion-mnist or
#                                 glove-100) under DATA; exits 2 for another set or a missing file
#
# start_etcd and start_server must not be called in $(...): the pid must reach PIDS in this
# shell, for the cleanup.

cluster_scratch() {
  T=$(mktemp -d "/tmp/strata_$1_XXXXXX")
  PIDS=()
  trap cluster_cleanup EXIT
}

cluster_cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$T"
}

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_etcd() {
  local member=$1 ep pp
  ep=$(free_port); pp=$(free_port)
  ETCD=http://127.0.0.1:$ep
  etcd --name "$member" --data-dir "$T/etcd" --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "$member=http://127.0.0.1:$pp" --logger zap --log-level warn >"$T/etcd.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do
    curl -sf -X POST "$ETCD/v3/kv/range" -d '{"key":"AA=="}' >/dev/null 2>&1 && break
    sleep 0.1
  done
}

start_server() {
  local name=$1 metrics=$2; shift 2
  "$SERVER" --data-dir "$T/$name" --port 0 --port-file "$T/$name.port" --metrics-port "$metrics" \
    --log-level "${LOG_LEVEL:-warn}" "$@" >"$T/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1200); do
    [[ -s $T/$name.port ]] && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.05
  done
  [[ -s $T/$name.port ]] || { cat "$T/$name.log" >&2; echo "$(basename "$0" .sh): node $name did not start" >&2; exit 1; }
  PORT=$(cat "$T/$name.port")
}

cluster_tools() {
  local f
  for f in "$SERVER" "$CLI"; do
    [[ -x $f ]] || { echo "$1: $f not built (cmake --build $(dirname "$(dirname "$f")") --target strata-server strata-cli)" >&2; exit 2; }
  done
  command -v etcd >/dev/null || { echo "$1: etcd not installed (scripts/setup.sh)" >&2; exit 2; }
}

cluster_data_set() {
  local name=$1 set=$2 data=$3 f
  case "$set" in
    fashion-mnist) BASE=$data/$set/base.u8bin; QUERIES=$data/$set/query.u8bin; GT=$data/$set/gt_l2_k100.ibin; DIM=784; METRIC=l2 ;;
    glove-100) BASE=$data/$set/base.fbin; QUERIES=$data/$set/query.fbin; GT=$data/$set/gt_cosine_k100.ibin; DIM=100; METRIC=cosine ;;
    *) echo "$name: --set fashion-mnist or glove-100" >&2; exit 2 ;;
  esac
  for f in "$BASE" "$QUERIES" "$GT"; do
    [[ -f $f ]] || { echo "$name: $f missing (tools/fetch_dataset.sh $set $data)" >&2; exit 2; }
  done
}
