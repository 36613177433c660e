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
