#!/usr/bin/env python3
"""First search after a large write, measured on ONE client connection (issue 15).

bench/first_search.sh times the first search from a fresh strata-cli process, so it also
pays for a new process and connection. This variant keeps everything on one connection of
the Python client (strata.Client), so that the first search and the steady searches differ
only in what the server does:

  1. strata-server on 127.0.0.1 (a port the kernel picks), a fresh mktemp data directory;
  2. a cosine collection (seal threshold above VECTORS: the rows stay in the in-memory
     segment), the first VECTORS rows of GloVe-100 upserted in batches of 1,000 (fsync per
     batch) through the connection;
  3. as soon as the last upsert is acknowledged, ONE search (query 0, recall target 0.95),
     timed around Client.search;
  4. SEARCHES more searches one at a time, the same way: the steady p50 and p99;
  5. ISOLATED searches and pings, each after GAP ms of idle connection: what any search costs
     that finds the server's threads asleep and its caches cold, as the first one does;
  6. prints the first search against both (issue 15's goal: first <= 3 x steady p50), and one
     JSON line.

  PYTHONPATH=build/py/python python3 bench/first_search.py --server build/release/server/strata-server \
      [--data data] [--vectors 100000] [--searches 1000] [--rounds 3]

Deletes only the temporary directory it made.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import strata


def read_fbin(path, limit=None):
    with open(path, "rb") as f:
        n, d = np.fromfile(f, dtype=np.uint32, count=2)
        n = int(n) if limit is None else min(int(n), limit)
        return np.fromfile(f, dtype=np.float32, count=n * int(d)).reshape(n, int(d))


def start_server(binary, work):
    port_file = os.path.join(work, "port")
    log = open(os.path.join(work, "server.log"), "w")
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1", "--port", "0", "--metrics-port", "0",
                             "--data-dir", os.path.join(work, "data"), "--port-file", port_file,
                             "--log-level", "warn"], stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):
        if os.path.exists(port_file) and os.path.getsize(port_file) > 0:
            with open(port_file) as f:
                return proc, int(f.readline())
        if proc.poll() is not None:
            raise SystemExit(f"first_search: the server exited: {open(log.name).read()}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("first_search: the server did not start listening")


def one_round(args, base, queries):
    work = tempfile.mkdtemp(prefix="strata-first-search.")
    proc = None
    try:
        proc, port = start_server(args.server, work)
        with strata.Client("127.0.0.1", port) as c:
            c.create_collection("glove", dim=base.shape[1], metric="cosine", seal_threshold=10 * len(base))
            t = time.perf_counter()
            for start in range(0, len(base), 1000):
                end = min(len(base), start + 1000)
                c.upsert("glove", np.arange(start, end, dtype=np.uint64), base[start:end])
            upsert_s = time.perf_counter() - t
            q = queries[0:1]
            time.sleep(args.pause_ms / 1e3)
            t = time.perf_counter()
            first = c.search("glove", q, k=10, recall=0.95, pipeline=1, explain=args.explain)
            first_ms = (time.perf_counter() - t) * 1e3
            if args.explain:
                print("first search, server side:", first[-1], flush=True)
            lat = []
            for i in range(args.searches):
                q = queries[i % len(queries)][None, :]
                t = time.perf_counter()
                c.search("glove", q, k=10, recall=0.95, pipeline=1)
                lat.append((time.perf_counter() - t) * 1e3)
            # The same searches, each after the connection sat idle for --gap-ms, as the
            # first one did (the client waited for its last upsert's reply): what any
            # search costs that finds the server's threads asleep and its caches cold,
            # and a ping for the round trip alone.
            iso, ping = [], []
            for i in range(args.isolated):
                time.sleep(args.gap_ms / 1e3)
                q = queries[i % len(queries)][None, :]
                t = time.perf_counter()
                c.search("glove", q, k=10, recall=0.95, pipeline=1)
                iso.append((time.perf_counter() - t) * 1e3)
                time.sleep(args.gap_ms / 1e3)
                t = time.perf_counter()
                c.ping()
                ping.append((time.perf_counter() - t) * 1e3)
        lat.sort()
        iso.sort()
        ping.sort()
        return {"upsert_s": round(upsert_s, 2), "first_search_ms": round(first_ms, 4),
                "steady_p50_ms": round(lat[len(lat) // 2], 4),
                "steady_p99_ms": round(lat[min(len(lat) - 1, len(lat) * 99 // 100)], 4),
                "after_idle_p50_ms": round(iso[len(iso) // 2], 4),
                "ping_after_idle_p50_ms": round(ping[len(ping) // 2], 4)}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
        shutil.rmtree(work)  # made by mkdtemp above: ours alone


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True, help="strata-server binary")
    ap.add_argument("--data", default="data", help="data directory holding glove-100/")
    ap.add_argument("--vectors", type=int, default=100000)
    ap.add_argument("--searches", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--isolated", type=int, default=100,
                    help="searches (and pings) each after --gap-ms of idle connection")
    ap.add_argument("--gap-ms", type=float, default=100)
    ap.add_argument("--pause-ms", type=float, default=0,
                    help="wait this long after the last upsert before the first search (diagnosis)")
    ap.add_argument("--explain", action="store_true", help="print the server's EXPLAIN of the first search")
    args = ap.parse_args()
    if args.vectors < 1 or args.searches < 1 or args.rounds < 1:
        ap.error("--vectors, --searches and --rounds must be at least 1")
    base = read_fbin(os.path.join(args.data, "glove-100", "base.fbin"), args.vectors)
    queries = read_fbin(os.path.join(args.data, "glove-100", "query.fbin"))
    print(f"first_search.py: GloVe-100, {len(base)} vectors, one connection, {os.cpu_count()} cores, "
          f"{args.rounds} round(s)")
    rows = []
    for r in range(args.rounds):
        row = one_round(args, base, queries)
        row["ratio"] = round(row["first_search_ms"] / row["steady_p50_ms"], 2)
        row["ratio_after_idle"] = round(row["first_search_ms"] / row["after_idle_p50_ms"], 2)
        rows.append(row)
        print(f"round {r + 1}: upserts {row['upsert_s']} s; first search {row['first_search_ms']:.3f} ms; "
              f"steady p50 {row['steady_p50_ms']:.3f} / p99 {row['steady_p99_ms']:.3f} ms; "
              f"first / p50 {row['ratio']}x; searches after {args.gap_ms:g} ms idle: p50 "
              f"{row['after_idle_p50_ms']:.3f} ms (first / that {row['ratio_after_idle']}x), ping after idle "
              f"{row['ping_after_idle_p50_ms']:.3f} ms", flush=True)
    ratios = sorted(r["ratio"] for r in rows)
    idle_ratios = sorted(r["ratio_after_idle"] for r in rows)
    print("JSON " + json.dumps({"bench": "first_search_one_connection", "vectors": len(base),
                                "rounds": rows, "median_ratio": ratios[len(ratios) // 2],
                                "median_ratio_after_idle": idle_ratios[len(idle_ratios) // 2]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
