"""redis-py (Debian's python3-redis) against strata-server's RESP listener (docs/RESP.md).

Fashion-MNIST loaded with pipelined `VADD ... FP32 ... SETATTR` (METRIC l2, Strata's extension),
searched with pipelined `VSIM ... COUNT 10`: recall@10 against the exact answers, and filtered
VSIM against exact filtered search.

scripts/test.sh runs the ASan (Debug) server, so by default the set is a slice (3,000 rows,
200 queries). The full run -- 60,000 rows and the 10,000 queries -- is for a Release server:

    STRATA_SERVER=build/release/server/strata-server STRATA_RESP_ROWS=60000 \\
    STRATA_RESP_QUERIES=10000 PYTHONPATH=build/py/python python3 -m pytest -q tests/python/test_resp.py
"""

import json
import os
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from conftest import K, _server_binary, exact_knn, load_fashion_mnist, recall

redis = pytest.importorskip("redis")

ROWS = int(os.environ.get("STRATA_RESP_ROWS", "3000"))
QUERIES = int(os.environ.get("STRATA_RESP_QUERIES", "200"))
TOKEN = "resp-python-test-token-0123"
KEY = "fmnist"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def resp_port(tmp_path_factory):
    binary = _server_binary()
    if binary is None or not binary.is_file():
        pytest.skip("strata-server not built (set STRATA_SERVER or build the 'strata-server' target)")
    tmp = tmp_path_factory.mktemp("resp")
    port = _free_port()
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(
        [str(binary), "--data-dir", str(tmp / "data"), "--listen", "127.0.0.1", "--port", "0",
         "--metrics-port", "0", "--resp-port", str(port), "--workers", "2", "--token", TOKEN,
         "--port-file", str(tmp / "port"), "--log-level", "warn"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (tmp / "port").is_file():
            if proc.poll() is not None:
                raise RuntimeError(f"strata-server exited: {(tmp / 'server.log').read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError("strata-server did not start within 60 s")
            time.sleep(0.05)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def r(resp_port):
    client = redis.Redis(host="127.0.0.1", port=resp_port, password=TOKEN, socket_timeout=600)
    yield client
    client.close()


@pytest.fixture(scope="module")
def data():
    d = load_fashion_mnist(ROWS, QUERIES)
    if d is None:
        pytest.skip("Fashion-MNIST not found: run scripts/setup.sh (dataset-fashion-mnist)")
    base, queries = d
    return base.astype(np.float32), queries.astype(np.float32)


def test_connection_commands(r, resp_port):
    assert r.ping() is True
    assert r.echo("hi") == b"hi"
    assert r.execute_command("SELECT", 0) in (True, b"OK")
    assert r.client_setname("strata-py") is True
    assert r.client_getname() in ("strata-py", b"strata-py")  # redis-py decodes this one
    with pytest.raises(redis.exceptions.ResponseError, match="unknown command 'NOPE'"):
        r.execute_command("NOPE", "x")
    # redis-py 4 reports WRONGPASS as a ResponseError, newer ones as an AuthenticationError.
    denied = (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)
    with pytest.raises(denied, match="WRONGPASS"):
        redis.Redis(host="127.0.0.1", port=resp_port, password="wrong-token-xxxxxxxx").ping()
    with pytest.raises(denied, match="Authentication required"):
        redis.Redis(host="127.0.0.1", port=resp_port).execute_command("VCARD", "x")
    # HELLO (RESP2 here: Debian's redis-py 4 cannot read RESP3 maps; resp_cli_test covers RESP3).
    c2 = redis.Redis(host="127.0.0.1", port=resp_port)
    reply = c2.execute_command("HELLO", 2, "AUTH", "default", TOKEN)
    hello = dict(zip(reply[::2], reply[1::2]))
    assert hello[b"server"] == b"strata" and hello[b"proto"] == 2
    c2.close()


def test_vector_set_commands(r):
    r.delete("small")
    assert r.execute_command("VADD", "small", "VALUES", 2, 1, 0, "a", "SETATTR", json.dumps({"n": 1})) == 1
    assert r.execute_command("VADD", "small", "VALUES", 2, 0, 1, "b") == 1
    assert r.execute_command("VADD", "small", "VALUES", 2, 0.5, 0.5, "b") == 0
    assert r.execute_command("VCARD", "small") == 2
    assert r.execute_command("VDIM", "small") == 2
    assert r.execute_command("VSIM", "small", "ELE", "a", "WITHSCORES") == [b"a", b"1", b"b", b"0.8535533845424652"]
    assert r.execute_command("VGETATTR", "small", "a") == b'{"n": 1}'
    assert r.execute_command("VSIM", "small", "VALUES", 2, 0, 1, "FILTER", ".n == 1") == [b"a"]
    with pytest.raises(redis.exceptions.ResponseError, match="dimension mismatch - got 3 but set has 2"):
        r.execute_command("VADD", "small", "VALUES", 3, 1, 2, 3, "c")
    with pytest.raises(redis.exceptions.ResponseError, match="at position 5"):
        r.execute_command("VSIM", "small", "ELE", "a", "FILTER", ".n >")
    assert r.execute_command("VREM", "small", "a") == 1
    assert r.execute_command("VISMEMBER", "small", "a") == 0
    assert r.type("small") == b"vectorset"
    assert r.delete("small") == 1


def _load(r, base):
    """Pipelined VADD (FP32, SETATTR); returns the labels (row % 10)."""
    r.delete(KEY)
    labels = np.arange(base.shape[0]) % 10
    chunk = 500
    for start in range(0, base.shape[0], chunk):
        p = r.pipeline(transaction=False)
        for i in range(start, min(start + chunk, base.shape[0])):
            p.execute_command("VADD", KEY, "FP32", base[i].astype("<f4").tobytes(), f"e{i}",
                              "SETATTR", json.dumps({"label": int(labels[i]), "row": i}), "METRIC", "l2")
        assert all(x == 1 for x in p.execute())
    assert r.execute_command("VCARD", KEY) == base.shape[0]
    return labels


def _search(r, queries, *options):
    found = np.full((queries.shape[0], K), -1, dtype=np.int64)
    chunk = 500
    for start in range(0, queries.shape[0], chunk):
        p = r.pipeline(transaction=False)
        for q in queries[start:start + chunk]:
            p.execute_command("VSIM", KEY, "FP32", q.astype("<f4").tobytes(), "COUNT", K, *options)
        for j, names in enumerate(p.execute()):
            ids = [int(n[1:]) for n in names]
            found[start + j, :len(ids)] = ids
    return found


def test_fashion_mnist_recall(r, data):
    base, queries = data
    labels = _load(r, base)
    t0 = time.monotonic()
    found = _search(r, queries)
    elapsed = time.monotonic() - t0
    rec = recall(found, exact_knn(base, queries, K))
    print(f"\nVSIM COUNT {K} over {queries.shape[0]} queries ({base.shape[0]} rows): "
          f"recall@{K} {rec:.4f}, {queries.shape[0] / elapsed:.0f} queries/s (pipelined, one connection)")
    assert rec >= 0.95

    # Filtered: against exact search among the matching rows.
    for expr, allowed in ((".label == 3", labels == 3),
                          (".label >= 2 and .label < 5", (labels >= 2) & (labels < 5))):
        ids = np.flatnonzero(allowed)
        got = _search(r, queries, "FILTER", expr)
        assert np.all(allowed[got[got >= 0]]), expr
        rec = recall(got, exact_knn(base, queries, K, allowed=ids))
        print(f"FILTER '{expr}': recall@{K} {rec:.4f}")
        assert rec >= 0.95, expr

    # WITHATTRIBS returns the JSON as given.
    hit = r.execute_command("VSIM", KEY, "ELE", "e7", "COUNT", 1, "WITHATTRIBS")
    assert hit == [b"e7", json.dumps({"label": 7, "row": 7}).encode()]
