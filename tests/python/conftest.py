"""Fixtures for the Python suites: the strata module, a Fashion-MNIST slice with exact
ground truth, and a live strata-server on a loopback port.

The module is imported from PYTHONPATH (scripts/test.sh puts build/py/python first) or from
an installed package. Fashion-MNIST comes from data/fashion-mnist/{base,query}.u8bin
(tools/fetch_dataset.sh) or from Debian's dataset-fashion-mnist package
(/usr/share/datasets/fashion-mnist, installed by scripts/setup.sh).
"""

import gzip
import os
import pathlib
import signal
import subprocess
import time

import numpy as np
import pytest

import strata  # noqa: F401  (fails loudly here when the module is not built)

ROOT = pathlib.Path(__file__).resolve().parents[2]
BASE_ROWS = 6000   # the slice indexed
QUERY_ROWS = 200   # queries (from the separate test split)
K = 10


def _read_u8bin(path, rows):
    with open(path, "rb") as f:
        n, d = np.frombuffer(f.read(8), dtype=np.uint32)
        rows = min(rows, int(n))
        return np.frombuffer(f.read(rows * int(d)), dtype=np.uint8).reshape(rows, int(d))


def _read_idx_gz(path, rows):
    with gzip.open(path, "rb") as f:
        header = np.frombuffer(f.read(16), dtype=">u4")
        assert header[0] == 0x803, f"{path}: not an IDX image file"
        n, h, w = (int(x) for x in header[1:])
        rows = min(rows, n)
        return np.frombuffer(f.read(rows * h * w), dtype=np.uint8).reshape(rows, h * w)


def load_fashion_mnist(base_rows=BASE_ROWS, query_rows=QUERY_ROWS):
    """(base uint8 (n, 784), queries uint8 (q, 784)), or None when no copy is on this machine."""
    dirs = [pathlib.Path(os.environ["STRATA_DATA"]) / "fashion-mnist"] if "STRATA_DATA" in os.environ else []
    dirs += [ROOT / "data" / "fashion-mnist"]
    for d in dirs:
        if (d / "base.u8bin").is_file() and (d / "query.u8bin").is_file():
            return _read_u8bin(d / "base.u8bin", base_rows), _read_u8bin(d / "query.u8bin", query_rows)
    deb = pathlib.Path("/usr/share/datasets/fashion-mnist")
    if (deb / "train-images-idx3-ubyte.gz").is_file():
        return (_read_idx_gz(deb / "train-images-idx3-ubyte.gz", base_rows),
                _read_idx_gz(deb / "t10k-images-idx3-ubyte.gz", query_rows))
    return None


def exact_knn(base, queries, k, metric="l2", allowed=None):
    """Exact top-k ids (float64), optionally among `allowed` row ids only."""
    b = base.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "cosine":
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-30)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
    if metric == "l2":
        d = (q * q).sum(1)[:, None] - 2 * q @ b.T + (b * b).sum(1)[None, :]
    else:
        d = -(q @ b.T)
    if allowed is not None:
        mask = np.full(b.shape[0], np.inf)
        mask[allowed] = 0
        d = d + mask[None, :]
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def recall(found, truth):
    k = truth.shape[1]
    hits = sum(len(set(f[:k].tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / truth.size


@pytest.fixture(scope="session")
def fmnist():
    data = load_fashion_mnist()
    if data is None:
        pytest.skip("Fashion-MNIST not found: run scripts/setup.sh (dataset-fashion-mnist) "
                    "or tools/fetch_dataset.sh fashion-mnist")
    base, queries = data
    return base, queries, exact_knn(base, queries, K)


def _server_binary():
    env = os.environ.get("STRATA_SERVER")
    if env:
        return pathlib.Path(env)
    for b in ("py", "release", "asan"):
        p = ROOT / "build" / b / "server" / "strata-server"
        if p.is_file():
            return p
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A strata-server on 127.0.0.1, port 0 (the bound port read from --port-file); yields the port."""
    binary = _server_binary()
    if binary is None or not binary.is_file():
        pytest.skip("strata-server not built (set STRATA_SERVER or build the 'strata-server' target)")
    tmp = tmp_path_factory.mktemp("server")
    port_file = tmp / "port"
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(
        [str(binary), "--data-dir", str(tmp / "data"), "--listen", "127.0.0.1", "--port", "0",
         "--metrics-port", "0", "--workers", "2", "--port-file", str(port_file), "--log-level", "warn",
         "--snapshot-dir", str(tmp / "snapshots")],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not port_file.is_file():
            if proc.poll() is not None:
                raise RuntimeError(f"strata-server exited with {proc.returncode}: "
                                   f"{(tmp / 'server.log').read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError("strata-server did not write its port file within 60 s")
            time.sleep(0.05)
        yield int(port_file.read_text().strip())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
