#!/usr/bin/env python3
"""Search load over loopback against two strata-server binaries, alternated (A/B).

For each round and each binary: strata-server on 127.0.0.1 (a port the kernel picks) with a
fresh mktemp data directory; the first VECTORS GloVe-100 rows upserted through the Python
client into a cosine collection (seal threshold above VECTORS: the rows stay in the in-memory
segment); then `strata-cli load` (closed loop, recall target 0.95, k = 10, DURATION seconds
each) at every CONNECTIONSxPIPELINE shape of --shapes. Prints one JSON line per binary and
round with QPS, p50 and p99 per shape, and a last line with the medians.

  PYTHONPATH=build/py/python python3 bench/server_load_ab.py --a OLD/strata-server \\
      --b build/release/server/strata-server [--cli build/release/client/strata-cli] \\
      [--data data] [--vectors 100000] [--rounds 2] [--duration 8] [--shapes 1x1,2x1,2x16,8x1]

Deletes only the temporary directories it made.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import first_search  # noqa: E402  (read_fbin, start_server)
import strata  # noqa: E402


def one_run(args, binary, base, shapes):
    work = tempfile.mkdtemp(prefix="strata-load-ab.")
    proc = None
    out = {}
    try:
        proc, port = first_search.start_server(binary, work)
        with strata.Client("127.0.0.1", port) as c:
            c.create_collection("glove", dim=base.shape[1], metric="cosine", seal_threshold=10 * len(base))
            for start in range(0, len(base), 1000):
                end = min(len(base), start + 1000)
                c.upsert("glove", np.arange(start, end, dtype=np.uint64), base[start:end])
        time.sleep(1)
        for conns, pipe in shapes:
            r = subprocess.run([args.cli, "--port", str(port), "load", "glove", "--queries",
                                os.path.join(args.data, "glove-100", "query.fbin"), "--connections", str(conns),
                                "--pipeline", str(pipe), "--duration", str(args.duration), "--recall", "0.95",
                                "--json"], capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"server_load_ab: strata-cli load failed: {r.stderr.strip()}")
            j = json.loads(r.stdout.strip().splitlines()[-1])
            lat = j["latency_ms"]
            out[f"{conns}x{pipe}"] = {"qps": round(j["qps"], 1), "p50_ms": lat["p50"], "p99_ms": lat["p99"],
                                      "errors": j["errors"]}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
        shutil.rmtree(work)  # made by mkdtemp above: ours alone
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="first strata-server binary")
    ap.add_argument("--b", required=True, help="second strata-server binary")
    ap.add_argument("--cli", default="build/release/client/strata-cli")
    ap.add_argument("--data", default="data", help="data directory holding glove-100/")
    ap.add_argument("--vectors", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--shapes", default="1x1,2x1,2x16,8x1", help="CONNECTIONSxPIPELINE, comma-separated")
    args = ap.parse_args()
    try:
        shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
        if any(len(s) != 2 or min(s) < 1 for s in shapes):
            raise ValueError
    except ValueError:
        ap.error(f"--shapes {args.shapes!r}: expected CONNECTIONSxPIPELINE[,...], e.g. 1x1,2x16")
    if args.vectors < 1 or args.rounds < 1 or args.duration <= 0:
        ap.error("--vectors and --rounds must be at least 1, --duration above 0")
    base = first_search.read_fbin(os.path.join(args.data, "glove-100", "base.fbin"), args.vectors)
    runs = {"a": [], "b": []}
    for rnd in range(args.rounds):
        # Alternate which binary goes first, so neither always meets a warmer host.
        for which in (("a", "b") if rnd % 2 == 0 else ("b", "a")):
            res = one_run(args, getattr(args, which), base, shapes)
            runs[which].append(res)
            print(json.dumps({"binary": which, "path": getattr(args, which), "round": rnd + 1, "shapes": res}),
                  flush=True)
    medians = {which: {shape: {m: statistics.median(r[shape][m] for r in rs) for m in ("qps", "p50_ms", "p99_ms")}
                       for shape in rs[0]} for which, rs in runs.items()}
    print("JSON", json.dumps({"bench": "server_load_ab", "vectors": args.vectors, "rounds": args.rounds,
                              "medians": medians}))


if __name__ == "__main__":
    sys.exit(main())
