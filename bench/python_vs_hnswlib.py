#!/usr/bin/python3
"""strata.HnswIndex against Debian's python3-hnswlib in the same Python process, and the
Python overhead of strata.Engine.search against the C++ Engine::SearchBatch.

    PYTHONPATH=build/py/python /usr/bin/python3 bench/python_vs_hnswlib.py \
        --data data --datasets fashion-mnist,glove-100 --strata-bin build/py/tools/strata

Per data set (all 10,000 queries, recall@10 against the reference ground truth), M=16,
ef_construction=200 for both libraries:
  - build: both build on all threads, interleaved A B B A over --build-rounds rounds; the
    median build time of each, and their ratio (Strata / hnswlib);
  - search, two modes: "single" (one query per call, num_threads=1, the loop in Python) and
    "batch" (the whole query matrix in one call, all threads); an ef sweep, each point timed
    over --rounds interleaved rounds (the library order alternates every round) and the median
    QPS kept; QPS at recall@10 0.95 interpolated on each library's curve (log QPS linear in
    recall between the two ef points around 0.95).
Prints one JSON line per (data set, mode) with qps_ratio_at_0.95 and build_ratio.

With --strata-bin (the `strata` command), also the Python overhead: a collection bulk-loaded
with strata.Engine, then, interleaved over --rounds rounds, `strata search --engine-dir ...
--threads 0` (its Engine::SearchBatch QPS, timed inside C++) and Engine.search over the same
float32 query matrix with the same k and ef (timed in Python around the call); one JSON line
with the median time ratio Python / C++.

The host is shared and noisy: interleaving and medians are what make the ratios usable.
"""

import argparse
import contextlib
import json
import math
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import hnswlib
import strata

DATASETS = {
    # name: (base file, query file, metric, reference ground truth, default ef sweep)
    "fashion-mnist": ("base.u8bin", "query.u8bin", "l2", "groundtruth_l2_k100.ivecs", [10, 12, 14, 16, 20, 24]),
    "glove-100": ("base.fbin", "query.fbin", "cosine", "groundtruth_angular_k100.ivecs", [96, 128, 160, 192, 224, 256]),
}
K = 10


def read_bin(path):
    with open(path, "rb") as f:
        n, d = np.frombuffer(f.read(8), dtype=np.uint32)
        dtype = np.uint8 if str(path).endswith(".u8bin") else np.float32
        return np.frombuffer(f.read(), dtype=dtype).reshape(int(n), int(d))


def read_ivecs(path):
    a = np.fromfile(path, dtype=np.int32)
    k = a[0]
    return a.reshape(-1, k + 1)[:, 1:]


def read_gt(name, data_dir, ref_dir, metric):
    ref = pathlib.Path(ref_dir) / name / DATASETS[name][3]
    if ref.is_file():
        return read_ivecs(ref), str(ref)
    ibin = pathlib.Path(data_dir) / name / f"gt_{metric}_k100.ibin"
    with open(ibin, "rb") as f:
        n, k = np.frombuffer(f.read(8), dtype=np.uint32)
        return np.frombuffer(f.read(int(n) * int(k) * 4), dtype=np.int32).reshape(int(n), int(k)), str(ibin)


def recall_at(ids, gt, k=K):
    ids = np.asarray(ids, dtype=np.int64)[:, :k]
    truth = gt[:, :k]
    hits = 0
    for a, b in zip(ids, truth):
        hits += len(np.intersect1d(a, b, assume_unique=False))
    return hits / truth.size


def at_target(points, target=0.95):
    """QPS at recall `target` on a curve [(recall, qps)] sorted by ef: log-linear interpolation."""
    pts = sorted(points)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1:
            if r1 == r0:
                return max(q0, q1)
            t = (target - r0) / (r1 - r0)
            return math.exp(math.log(q0) + t * (math.log(q1) - math.log(q0)))
    if pts and pts[0][0] >= target:
        return None  # every point is above the target: sweep lower
    return None


class Hnswlib:
    name = "hnswlib"

    def __init__(self, dim, metric):
        self.dim, self.space = dim, {"l2": "l2", "cosine": "cosine", "ip": "ip"}[metric]
        self.index = None

    def build(self, base):
        self.index = hnswlib.Index(space=self.space, dim=self.dim)
        self.index.init_index(max_elements=base.shape[0], ef_construction=200, M=16, random_seed=100)
        self.index.add_items(base, np.arange(base.shape[0]), num_threads=-1)

    def search_single(self, queries, ef):
        self.index.set_ef(ef)
        out = np.empty((queries.shape[0], K), dtype=np.uint64)
        for i, q in enumerate(queries):
            out[i] = self.index.knn_query(q, k=K, num_threads=1)[0][0]
        return out

    def search_batch(self, queries, ef):
        self.index.set_ef(ef)
        return self.index.knn_query(queries, k=K, num_threads=-1)[0]


class Strata:
    name = "strata"

    def __init__(self, dim, metric):
        self.dim, self.metric = dim, metric
        self.index = None

    def build(self, base):
        self.index = strata.HnswIndex(self.dim, metric=self.metric, M=16, ef_construction=200)
        self.index.add(base, num_threads=-1)

    def search_single(self, queries, ef):
        out = np.empty((queries.shape[0], K), dtype=np.uint64)
        search = self.index.search
        for i, q in enumerate(queries):
            out[i] = search(q, k=K, ef=ef, num_threads=1)[0]
        return out

    def search_batch(self, queries, ef):
        return self.index.search(queries, k=K, ef=ef, num_threads=-1)[0]


def bench_dataset(name, args):
    base_file, query_file, metric, _, efs = DATASETS[name]
    d = pathlib.Path(args.data) / name
    base = np.ascontiguousarray(read_bin(d / base_file), dtype=np.float32)
    queries = np.ascontiguousarray(read_bin(d / query_file), dtype=np.float32)
    gt, gt_path = read_gt(name, args.data, args.reference, metric)
    if args.ef.get(name):
        efs = args.ef[name]
    print(f"# {name}: base {base.shape}, {queries.shape[0]} queries, metric {metric}, gt {gt_path}",
          file=sys.stderr)
    libs = [Hnswlib(base.shape[1], metric), Strata(base.shape[1], metric)]
    build_times = {lib.name: [] for lib in libs}
    # A B B A ...: each library goes first as often as second.
    order = []
    for r in range(args.build_rounds):
        order += libs if r % 2 == 0 else libs[::-1]
    for lib in order:
        lib.index = None
        t = time.perf_counter()
        lib.build(base)
        build_times[lib.name].append(time.perf_counter() - t)
        print(f"#   build {lib.name}: {build_times[lib.name][-1]:.1f} s", file=sys.stderr)
    build = {n: statistics.median(v) for n, v in build_times.items()}
    lines = []
    for mode in ("single", "batch"):
        curves = {lib.name: [] for lib in libs}
        table = []
        for ef in efs:
            qps = {lib.name: [] for lib in libs}
            rec = {}
            for r in range(args.rounds):
                for lib in (libs if r % 2 == 0 else libs[::-1]):
                    fn = lib.search_single if mode == "single" else lib.search_batch
                    t = time.perf_counter()
                    ids = fn(queries, ef)
                    qps[lib.name].append(queries.shape[0] / (time.perf_counter() - t))
                    if lib.name not in rec:
                        rec[lib.name] = recall_at(ids, gt)
            row = {"ef": ef}
            for lib in libs:
                med = statistics.median(qps[lib.name])
                curves[lib.name].append((rec[lib.name], med))
                row[lib.name] = (rec[lib.name], med)
            table.append(row)
            print(f"#   {mode:6s} ef {ef:4d}: " + "  ".join(
                f"{lib.name} recall {rec[lib.name]:.4f} QPS {statistics.median(qps[lib.name]):9.1f}"
                for lib in libs), file=sys.stderr)
        at = {lib.name: at_target(curves[lib.name]) for lib in libs}
        line = {
            "bench": "python_vs_hnswlib", "dataset": name, "mode": mode, "metric": metric,
            "queries": int(queries.shape[0]), "k": K, "M": 16, "ef_construction": 200,
            "threads": os.cpu_count() if mode == "batch" else 1, "rounds": args.rounds,
            "qps_at_0.95": {n: (round(v, 1) if v else None) for n, v in at.items()},
            "qps_ratio_at_0.95": (round(at["strata"] / at["hnswlib"], 3)
                                  if at["strata"] and at["hnswlib"] else None),
            "build_seconds": {n: round(v, 2) for n, v in build.items()},
            "build_ratio": round(build["strata"] / build["hnswlib"], 3),
            "curve": [{"ef": r["ef"], **{n: {"recall": round(r[n][0], 4), "qps": round(r[n][1], 1)}
                                          for n in ("strata", "hnswlib")}} for r in table],
            "hnswlib_version": getattr(hnswlib, "__version__", "0.6.2 (Debian)"),
            "strata_version": strata.__version__,
        }
        print(json.dumps(line), flush=True)
        lines.append(line)
    return lines


@contextlib.contextmanager
def stdout_to_stderr():
    """The engine logs (spdlog) to the process's stdout; keep it off the JSON lines."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def bench_overhead(name, args):
    """Engine.search over the whole query matrix against the C++ Engine::SearchBatch."""
    base_file, query_file, metric, _, _ = DATASETS[name]
    d = pathlib.Path(args.data) / name
    base = read_bin(d / base_file)
    query_path = d / query_file
    queries = np.ascontiguousarray(read_bin(query_path), dtype=np.float32)
    ef = args.overhead_ef
    with tempfile.TemporaryDirectory(prefix="strata-pyoverhead-") as tmp:
        path = os.path.join(tmp, "engine")
        with strata.Engine(path) as e:
            e.create_collection("c", dim=base.shape[1], metric=metric)
            t = time.perf_counter()
            with stdout_to_stderr():
                e.bulk_load("c", base)
            print(f"# overhead {name}: bulk load {time.perf_counter() - t:.1f} s", file=sys.stderr)
        py_s, cpp_s = [], []
        for r in range(args.rounds):
            for side in (("cpp", "py") if r % 2 == 0 else ("py", "cpp")):
                if side == "cpp":
                    out = subprocess.run(
                        [args.strata_bin, "--quiet", "search", "--engine-dir", path, "--collection", "c",
                         "--queries", str(query_path), "--k", str(K), "--ef", str(ef), "--threads", "0",
                         "--show", "0"], check=True, capture_output=True, text=True).stdout
                    m = re.search(r"^JSON (\{.*\})$", out, re.M)
                    qps = json.loads(m.group(1))["qps"]
                    cpp_s.append(queries.shape[0] / qps)
                else:
                    with strata.Engine(path) as e:
                        # Warm-up over every query, as the C++ run's one-thread pass before its
                        # timed SearchBatch (it faults the mapped segment in).
                        e.search("c", queries, k=K, ef=ef, num_threads=-1)
                        t = time.perf_counter()
                        e.search("c", queries, k=K, ef=ef, num_threads=-1)
                        py_s.append(time.perf_counter() - t)
                print(f"#   round {r} {side}: {(py_s if side == 'py' else cpp_s)[-1]:.3f} s", file=sys.stderr)
    ratios = [p / c for p, c in zip(py_s, cpp_s)]
    line = {
        "bench": "python_overhead", "dataset": name, "queries": int(queries.shape[0]), "k": K, "ef": ef,
        "threads": os.cpu_count(), "rounds": args.rounds,
        "python_engine_search_s": round(statistics.median(py_s), 4),
        "cpp_search_batch_s": round(statistics.median(cpp_s), 4),
        "time_ratio_median": round(statistics.median(ratios), 3),
        "time_ratio_of_medians": round(statistics.median(py_s) / statistics.median(cpp_s), 3),
    }
    print(json.dumps(line), flush=True)
    return line


def main():
    root = pathlib.Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(root / "data"))
    p.add_argument("--reference", default=os.environ.get("STRATA_REFERENCE_DATA", str(root.parent / "shared" / "data")))
    p.add_argument("--datasets", default="fashion-mnist,glove-100")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per point (median)")
    p.add_argument("--build-rounds", type=int, default=2, help="builds per library, interleaved A B B A")
    p.add_argument("--ef", action="append", default=[], metavar="NAME=EF,EF,...", help="ef sweep of a data set")
    p.add_argument("--strata-bin", help="the strata command: also measure the Python overhead")
    p.add_argument("--overhead-datasets", default="fashion-mnist")
    p.add_argument("--overhead-ef", type=int, default=32)
    p.add_argument("--skip-peers", action="store_true", help="only the Python overhead")
    args = p.parse_args()
    args.ef = {k: [int(x) for x in v.split(",")] for k, v in (e.split("=", 1) for e in args.ef)}
    print(f"# {platform.node()} {os.cpu_count()} cores; strata {strata.__version__}", file=sys.stderr)
    if not args.skip_peers:
        for name in args.datasets.split(","):
            bench_dataset(name, args)
    if args.strata_bin:
        for name in args.overhead_datasets.split(","):
            bench_overhead(name, args)


if __name__ == "__main__":
    main()
