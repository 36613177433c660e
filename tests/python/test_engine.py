"""strata.Engine on a Fashion-MNIST slice: collections, writes, recall against exact search,
recall targets, filters, attributes, EXPLAIN, errors, and searches from 4 Python threads
while another thread upserts."""

import os
import threading
import time

import numpy as np
import pytest

import strata
from conftest import K, exact_knn, recall

DIM = 784


def tags(n):
    return [{"label": int(i % 10), "parity": "even" if i % 2 == 0 else "odd", "tags": [f"t{i % 3}"]}
            for i in range(n)]


@pytest.fixture(scope="module")
def engine(tmp_path_factory, fmnist):
    base, _, _ = fmnist
    e = strata.Engine(str(tmp_path_factory.mktemp("engine") / "data"))
    e.create_collection("fm", dim=DIM, metric="l2")
    n = base.shape[0]
    # Upserts in batches (through the log into the in-memory segment), then a flush: a
    # sealed segment; the last batch stays in memory, so searches span both.
    for start in range(0, n - 1000, 2500):
        end = min(start + 2500, n - 1000)
        e.upsert("fm", np.arange(start, end), base[start:end], attributes=tags(end)[start:end])
    e.flush("fm")
    e.upsert("fm", np.arange(n - 1000, n), base[n - 1000:], attributes=tags(n)[n - 1000:])
    yield e
    e.close()


def test_collections(engine, fmnist):
    base, _, _ = fmnist
    info = engine.describe_collection("fm")
    assert info["dim"] == DIM and info["metric"] == "l2" and info["num_vectors"] == base.shape[0]
    assert info["sealed_segments"] >= 1
    assert [c["name"] for c in engine.list_collections()] == ["fm"]
    engine.create_collection("tmp", dim=3, metric="cosine", M=8, ef_construction=64)
    assert {c["name"] for c in engine.list_collections()} == {"fm", "tmp"}
    with pytest.raises(strata.AlreadyExistsError):
        engine.create_collection("tmp", dim=3)
    engine.drop_collection("tmp")
    with pytest.raises(strata.NotFoundError):
        engine.drop_collection("tmp")
    with pytest.raises(strata.NotFoundError):
        engine.describe_collection("tmp")


def test_recall_against_exact(engine, fmnist):
    _, queries, truth = fmnist
    ids, dists = engine.search("fm", queries, k=K, ef=64)
    assert ids.shape == (queries.shape[0], K) and ids.dtype == np.uint64
    assert recall(ids, truth) >= 0.97
    assert np.all(np.diff(dists, axis=1) >= 0)


def test_recall_targets(engine, fmnist):
    _, queries, truth = fmnist
    low, _ = engine.search("fm", queries, k=K, recall=0.8)
    high, _ = engine.search("fm", queries, k=K, recall=0.99)
    assert recall(high, truth) >= 0.97
    assert recall(high, truth) >= recall(low, truth) - 0.01


def test_single_query_matches_batch(engine, fmnist):
    _, queries, _ = fmnist
    ids, dists = engine.search("fm", queries[5], k=K, ef=64)
    assert ids.shape == (K,)
    bids, _ = engine.search("fm", queries[:8], k=K, ef=64, num_threads=2)
    np.testing.assert_array_equal(ids, bids[5])


def test_filters_and_attributes(engine, fmnist):
    base, queries, _ = fmnist
    allowed = np.array([i for i in range(base.shape[0]) if i % 10 == 3])
    truth = exact_knn(base, queries[:40], K, allowed=allowed)
    ids, _, attrs = engine.search("fm", queries[:40], k=K, filter="label == 3", recall=0.95,
                                  with_attributes=True)
    assert np.all(ids % 10 == 3)
    assert recall(ids, truth) >= 0.9
    assert len(attrs) == 40 and len(attrs[0]) == K
    assert all(a["label"] == 3 and a["tags"] == [f"t{i % 3}"] for row, r in zip(attrs, ids)
               for a, i in zip(row, r.tolist()))
    ids, _ = engine.search("fm", queries[0], k=K, filter='parity == "odd" AND label IN (1, 5)')
    assert all(int(i) % 10 in (1, 5) for i in ids)


def test_bad_filter_gives_position(engine, fmnist):
    _, queries, _ = fmnist
    with pytest.raises(ValueError, match="position"):
        engine.search("fm", queries[0], filter="label == ")
    with pytest.raises(strata.InvalidArgumentError, match="position"):
        engine.search("fm", queries[:3], filter="label === 3")


def test_explain(engine, fmnist):
    _, queries, _ = fmnist
    ids, dists, plans = engine.search("fm", queries[:2], k=K, recall=0.9, explain=True)
    assert len(plans) == 2 and plans[0]["segments"]
    ids, dists, attrs, plan = engine.search("fm", queries[0], k=3, explain=True, with_attributes=True)
    assert ids.shape == (3,) and len(attrs) == 3 and isinstance(plan, dict)


def test_get_delete_and_reopen(tmp_path, fmnist):
    base, queries, _ = fmnist
    path = str(tmp_path / "data")
    with strata.Engine(path) as e:
        e.create_collection("c", dim=DIM)
        e.upsert("c", [10, 11, 12], base[:3].astype(np.float64), attributes=[{"a": 1}, None, {"s": "x"}])
        e.upsert("c", 13, base[3])  # one id, one vector
        rec = e.get("c", 10)
        assert rec["id"] == 10 and rec["attributes"] == {"a": 1}
        np.testing.assert_array_equal(rec["vector"], base[0].astype(np.float32))
        assert e.get("c", 99) is None
        assert e.get("c", np.int64(10))["id"] == 10  # a numpy scalar is one id
        assert [r is None for r in e.get("c", [11, 99, 12])] == [False, True, False]
        assert e.delete("c", [11, 99]) == 2
        assert e.get("c", 11) is None
        ids, _ = e.search("c", base[1], k=4)
        assert 11 not in ids.tolist()
        e.compact("c")
    with strata.Engine(path) as e:  # recovery
        assert e.describe_collection("c")["num_vectors"] == 3
        assert e.get("c", 12)["attributes"] == {"s": "x"}
        with pytest.raises(strata.NotFoundError):
            e.get("nope", 1)
    e = strata.Engine(path)
    e.close()
    with pytest.raises(strata.Error, match="closed"):
        e.list_collections()


def test_bulk_load(tmp_path, fmnist):
    base, queries, truth = fmnist
    with strata.Engine(str(tmp_path / "bulk")) as e:
        e.create_collection("b", dim=DIM)
        e.bulk_load("b", base, attributes=tags(base.shape[0]))
        ids, _ = e.search("b", queries, k=K, recall=0.95)
        assert recall(ids, truth) >= 0.9
        with pytest.raises(strata.InvalidArgumentError):
            e.bulk_load("b", base[:10])  # not empty any more


def test_write_errors(engine):
    with pytest.raises(ValueError, match="dimension 3, the collection 784"):
        engine.upsert("fm", [1], np.zeros((1, 3)))
    bad = np.zeros((1, DIM), dtype=np.float32)
    bad[0, 5] = np.nan
    with pytest.raises(strata.InvalidArgumentError, match="NaN|finite"):
        engine.upsert("fm", [999999], bad)
    with pytest.raises(ValueError, match="2 ids for 1 vectors"):
        engine.upsert("fm", [1, 2], np.zeros((1, DIM)))
    with pytest.raises(ValueError, match="attributes: row 0"):
        engine.upsert("fm", [1], np.zeros((1, DIM)), attributes=[{"x": object()}])
    with pytest.raises(ValueError, match="1 entries for 2 vectors"):
        engine.upsert("fm", [1, 2], np.zeros((2, DIM)), attributes=[{}])
    with pytest.raises(ValueError, match="negative"):
        engine.delete("fm", [-3])
    with pytest.raises(strata.NotFoundError):
        engine.upsert("nope", [1], np.zeros((1, DIM)))
    with pytest.raises(ValueError, match="metric"):
        engine.create_collection("m", dim=4, metric="manhattan")
    with pytest.raises(ValueError, match="strategy"):
        engine.search("fm", np.zeros(DIM), strategy="fast")
    with pytest.raises(ValueError, match="dimension"):
        engine.search("fm", np.zeros(5))
    with pytest.raises(ValueError, match="dimension"):
        engine.search("fm", np.zeros((3, 5)))
    with pytest.raises(ValueError):
        engine.search("fm", np.zeros(DIM), recall=1.5)
    with pytest.raises(OSError):  # IoError: the directory cannot be created
        strata.Engine("/proc/definitely/not/here")


def test_background_cpus_confine_the_engine_threads(tmp_path):
    allowed = sorted(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match="not a CPU number"):
        strata.Engine(str(tmp_path / "bad"), background_cpus="one")
    if 1023 not in allowed:
        with pytest.raises(ValueError, match="may not run on CPU 1023"):
            strata.Engine(str(tmp_path / "bad"), background_cpus="1023")
    if len(allowed) < 2:
        pytest.skip("needs a process that may run on two CPUs")

    def confined():
        n = 0
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/status") as f:
                for line in f:
                    if line.startswith("Cpus_allowed_list:"):
                        n += line.split(":", 1)[1].strip() == str(allowed[-1])
        return n

    before = confined()
    with strata.Engine(str(tmp_path / "cpus"), background_cpus=str(allowed[-1])) as e:
        e.create_collection("c", dim=4)
        e.upsert("c", np.arange(10), np.ones((10, 4), dtype=np.float32))
        for _ in range(200):  # the insert, seal and compaction threads confine themselves as they start
            if confined() >= before + 3:
                break
            time.sleep(0.01)
        assert confined() >= before + 3


def test_four_threads_search_while_one_upserts(tmp_path, fmnist):
    base, queries, truth = fmnist
    n = base.shape[0]
    half = n // 2
    with strata.Engine(str(tmp_path / "conc"), durability="none") as e:
        e.create_collection("c", dim=DIM)
        e.upsert("c", np.arange(half), base[:half])
        errors = []
        stop = threading.Event()
        searched = [0] * 4

        def reader(t):
            try:
                while not stop.is_set() or searched[t] == 0:
                    ids, _ = e.search("c", queries[t * 10:(t + 1) * 10], k=K, ef=64, num_threads=1)
                    assert ids.shape == (10, K)
                    assert np.all(ids[ids != strata.NO_ID] < n)
                    searched[t] += 1
            except Exception as ex:  # noqa: BLE001
                errors.append(ex)

        readers = [threading.Thread(target=reader, args=(t,)) for t in range(4)]
        for r in readers:
            r.start()
        for start in range(half, n, 500):
            e.upsert("c", np.arange(start, min(start + 500, n)), base[start:min(start + 500, n)])
        stop.set()
        for r in readers:
            r.join()
        assert not errors, errors
        assert all(s > 0 for s in searched)
        ids, _ = e.search("c", queries, k=K, ef=64)
        assert recall(ids, truth) >= 0.97


def test_codes(tmp_path, fmnist):
    """create_collection(codes="sq8"): describe shows the codes; sealed segments built with them still
    answer with the recall of the float path (rerank on the full vectors)."""
    base, queries, _ = fmnist
    base = base[:2000]
    truth = exact_knn(base, queries, K)
    with strata.Engine(str(tmp_path / "data")) as e:
        e.create_collection("c", dim=DIM, codes="sq8", rerank=40)
        info = e.describe_collection("c")
        assert info["codes"] == "sq8" and info["rerank"] == 40
        e.create_collection("plain", dim=DIM)
        assert e.describe_collection("plain")["codes"] == "none"
        assert e.describe_collection("plain")["rerank"] == 0
        e.bulk_load("c", base)
        ids, _ = e.search("c", queries, k=K, ef=64)
        assert recall(ids, truth) >= 0.95
        with pytest.raises(strata.InvalidArgumentError, match="unknown codes 'pq'"):
            e.create_collection("bad", dim=DIM, codes="pq")
        assert "bad" not in [c["name"] for c in e.list_collections()]
