#!/usr/bin/env python3
"""What memory left untouched for a while costs on the next touch, on this host (issue 15).

The first search after a large write (bench/first_search.py) and searches after an idle
pause cost several times a back-to-back search. This bench separates the engine from the
machine it runs on, in one process, with no server and no network:

  1. plain memory: a 100 MiB numpy array, every 4 KiB page touched, then -- after a pause of
     PAUSE seconds -- every page touched again (one byte each), timed; then once more at once.
     No Strata code runs: what this shows is the host's;
  2. the engine embedded (strata.Engine in a mkdtemp directory): a few searches of a small
     collection first (the Python binding's own first calls are not what is measured), then
     the first VECTORS rows of GloVe-100 upserted into a cosine collection in batches of
     1,000 (they stay in the in-memory segment), a pause of PAUSE seconds, ONE search
     (query 0, recall target 0.95) and the guest's page faults during it, then SEARCHES
     searches one at a time for the steady p50.

  PYTHONPATH=build/py/python python3 bench/idle_memory.py [--data data] [--pauses 0,1,5] [--rounds 2]

Deletes only the temporary directory it made.
"""
import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np
import strata

from first_search import read_fbin  # bench/ is the script's own folder, first on sys.path


def touch_after(pause_s):
    """Milliseconds to touch every page of 100 MiB after `pause_s` idle, and at once again."""
    a = np.ones(100 * 2**20 // 8)
    pages = a.view(np.uint8)[::4096]
    pages.sum()
    time.sleep(pause_s)
    t = time.perf_counter()
    pages.sum()
    cold = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    pages.sum()
    return cold, (time.perf_counter() - t) * 1e3, len(pages)


def first_search_after(pause_s, base, queries, searches):
    work = tempfile.mkdtemp(prefix="strata-idle-memory.")
    try:
        with strata.Engine(os.path.join(work, "db")) as e:
            e.create_collection("warm", dim=base.shape[1], metric="cosine")
            e.upsert("warm", np.arange(0, 100, dtype=np.uint64), base[:100])
            for i in range(20):
                e.search("warm", queries[i:i + 1], k=10, recall=0.95, num_threads=1)
            e.create_collection("glove", dim=base.shape[1], metric="cosine", seal_threshold=10 * len(base))
            for s in range(0, len(base), 1000):
                end = min(len(base), s + 1000)
                e.upsert("glove", np.arange(s, end, dtype=np.uint64), base[s:end])
            time.sleep(pause_s)
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t = time.perf_counter()
            e.search("glove", queries[0:1], k=10, recall=0.95, num_threads=1)
            first = (time.perf_counter() - t) * 1e3
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            lat = []
            for i in range(1, searches + 1):
                q = queries[i % len(queries)][None, :]
                t = time.perf_counter()
                e.search("glove", q, k=10, recall=0.95, num_threads=1)
                lat.append((time.perf_counter() - t) * 1e3)
        lat.sort()
        return first, lat[len(lat) // 2], r1.ru_minflt - r0.ru_minflt, r1.ru_majflt - r0.ru_majflt
    finally:
        shutil.rmtree(work)  # made by mkdtemp above: ours alone


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data", help="data directory holding glove-100/")
    ap.add_argument("--vectors", type=int, default=100000)
    ap.add_argument("--searches", type=int, default=1000)
    ap.add_argument("--pauses", default="0,1,5", help="seconds of idle before the timed touch / search")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    try:
        pauses = [float(p) for p in args.pauses.split(",")]
    except ValueError:
        ap.error(f"--pauses: not a list of numbers: {args.pauses!r}")
    if args.vectors < 1 or args.searches < 1 or args.rounds < 1 or any(p < 0 for p in pauses):
        ap.error("--vectors, --searches and --rounds must be at least 1, --pauses at least 0")
    base = read_fbin(os.path.join(args.data, "glove-100", "base.fbin"), args.vectors)
    queries = read_fbin(os.path.join(args.data, "glove-100", "query.fbin"))
    print(f"idle_memory.py: {os.cpu_count()} cores; GloVe-100, {len(base)} vectors, embedded engine")
    rows = []
    for r in range(args.rounds):
        for pause in pauses:
            cold, warm, pages = touch_after(pause)
            first, p50, minflt, majflt = first_search_after(pause, base, queries, args.searches)
            row = {"round": r + 1, "pause_s": pause, "touch_ms": round(cold, 3), "touch_again_ms": round(warm, 3),
                   "pages": pages, "first_search_ms": round(first, 3), "steady_p50_ms": round(p50, 4),
                   "ratio": round(first / p50, 2), "first_search_minflt": minflt, "first_search_majflt": majflt}
            rows.append(row)
            print(f"round {r + 1}, pause {pause:g} s: {pages} pages touched in {cold:.3f} ms (again at once "
                  f"{warm:.3f} ms); first search {first:.3f} ms ({minflt} minor / {majflt} major faults), steady "
                  f"p50 {p50:.4f} ms, first / p50 {first / p50:.1f}x", flush=True)
    print("JSON " + json.dumps({"bench": "idle_memory", "vectors": len(base), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
