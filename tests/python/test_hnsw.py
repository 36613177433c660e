"""strata.HnswIndex and strata.SpannIndex on a Fashion-MNIST slice: recall against exact
search, filters, save/load/mmap, dtype conversions, errors."""

import threading

import numpy as np
import pytest

import strata
from conftest import K, exact_knn, recall


@pytest.fixture(scope="module")
def hnsw(fmnist):
    base, _, _ = fmnist
    index = strata.HnswIndex(dim=base.shape[1], metric="l2", M=16, ef_construction=200)
    index.add(base)  # uint8, converted
    return index


def test_version():
    assert isinstance(strata.__version__, str) and strata.__version__.count(".") == 2


def test_recall_against_exact(hnsw, fmnist):
    base, queries, truth = fmnist
    assert len(hnsw) == base.shape[0] and hnsw.dim == 784 and hnsw.metric == "l2"
    ids, dists = hnsw.search(queries, k=K, ef=64)
    assert ids.shape == (queries.shape[0], K) and ids.dtype == np.uint64
    assert dists.dtype == np.float32
    assert np.all(np.diff(dists, axis=1) >= 0)
    assert recall(ids, truth) >= 0.97
    # Distances are squared L2 of the stored vectors.
    q0 = queries[0].astype(np.float64)
    expect = ((base[ids[0].astype(np.int64)].astype(np.float64) - q0) ** 2).sum(1)
    np.testing.assert_allclose(dists[0], expect, rtol=1e-4)


def test_one_vector_gives_one_row(hnsw, fmnist):
    _, queries, _ = fmnist
    ids, dists = hnsw.search(queries[3], k=5)
    assert ids.shape == (5,) and dists.shape == (5,)
    ids2, _ = hnsw.search(queries[3:4], k=5)
    assert ids2.shape == (1, 5)
    np.testing.assert_array_equal(ids, ids2[0])


def test_threads_give_the_same_results(hnsw, fmnist):
    _, queries, _ = fmnist
    a, _ = hnsw.search(queries, k=K, ef=64, num_threads=1)
    b, _ = hnsw.search(queries, k=K, ef=64, num_threads=-1)
    np.testing.assert_array_equal(a, b)


def test_dtype_conversions_agree(hnsw, fmnist):
    _, queries, _ = fmnist
    q = queries[:20]
    ref, _ = hnsw.search(q.astype(np.float32), k=K)
    for dtype in (np.float64, np.float16, np.uint8, np.int16):
        ids, _ = hnsw.search(q.astype(dtype), k=K)  # Fashion-MNIST values are exact in each
        np.testing.assert_array_equal(ids, ref, err_msg=str(dtype))
    ids, _ = hnsw.search((q.astype(np.int16) - 128).astype(np.int8).astype(np.int16) + 128, k=K)
    np.testing.assert_array_equal(ids, ref)
    # Non-contiguous: every other column of a wider array, and a transposed copy.
    wide = np.zeros((20, 784 * 2), dtype=np.float32)
    wide[:, ::2] = q
    ids, _ = hnsw.search(wide[:, ::2], k=K)
    np.testing.assert_array_equal(ids, ref)
    ids, _ = hnsw.search(np.asfortranarray(q.astype(np.float32)), k=K)
    np.testing.assert_array_equal(ids, ref)
    ids, _ = hnsw.search(q.tolist(), k=K)  # a list of lists
    np.testing.assert_array_equal(ids, ref)


def test_filter_ids_and_callable(hnsw, fmnist):
    base, queries, _ = fmnist
    allowed = np.arange(0, base.shape[0], 7)
    truth = exact_knn(base, queries[:50], K, allowed=allowed)
    ids, _ = hnsw.search(queries[:50], k=K, ef=128, filter=allowed)
    assert set(ids.ravel().tolist()) <= set(allowed.tolist())
    assert recall(ids, truth) >= 0.9
    ids2, _ = hnsw.search(queries[:50], k=K, ef=128, filter=lambda i: i % 7 == 0, num_threads=2)
    np.testing.assert_array_equal(ids, ids2)
    # Fewer matches than k: padded.
    ids, dists = hnsw.search(queries[0], k=K, filter=[5, 9])
    assert sorted(ids[:2].tolist()) == [5, 9]
    assert np.all(ids[2:] == strata.NO_ID) and np.all(np.isinf(dists[2:]))


def test_filter_callable_exception_is_raised(hnsw, fmnist):
    _, queries, _ = fmnist

    def bad(i):
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        hnsw.search(queries[:4], k=K, filter=bad)


def test_bad_filter_names_position(hnsw, fmnist):
    _, queries, _ = fmnist
    with pytest.raises(ValueError, match="position 2: id -4 is negative"):
        hnsw.search(queries[0], filter=np.array([1, 2, -4]))
    with pytest.raises(strata.InvalidArgumentError, match="integers"):
        hnsw.search(queries[0], filter=np.array([1.5]))


def test_save_load_mmap(hnsw, fmnist, tmp_path):
    _, queries, _ = fmnist
    path = str(tmp_path / "fm.hnsw")
    hnsw.save(path)
    ref, refd = hnsw.search(queries, k=K, ef=64)
    for mmap in (False, True):
        loaded = strata.HnswIndex.load(path, mmap=mmap)
        assert len(loaded) == len(hnsw) and loaded.mmap == mmap
        ids, dists = loaded.search(queries, k=K, ef=64)
        np.testing.assert_array_equal(ids, ref)
        np.testing.assert_array_equal(dists, refd)
    with pytest.raises(strata.InvalidArgumentError, match="read-only"):
        loaded.add(queries[0])


def test_corrupt_and_missing_files(hnsw, tmp_path):
    with pytest.raises(FileNotFoundError):
        strata.HnswIndex.load(str(tmp_path / "nope.hnsw"))
    with pytest.raises(strata.NotFoundError):
        strata.HnswIndex.load(str(tmp_path / "nope.hnsw"))
    small = strata.HnswIndex(dim=4)
    small.add(np.eye(4, dtype=np.float32))
    path = tmp_path / "x.hnsw"
    small.save(str(path))
    data = bytearray(path.read_bytes())
    last = max(i for i, b in enumerate(data) if b != 0)  # inside the last section, not padding
    data[last] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(OSError) as e:
        strata.HnswIndex.load(str(path))
    assert isinstance(e.value, strata.CorruptionError) and isinstance(e.value, strata.Error)
    with pytest.raises(OSError):
        small.save(str(tmp_path / "no" / "such" / "dir" / "x.hnsw"))


def test_add_remove_get_and_ids():
    index = strata.HnswIndex(dim=3, metric="cosine", M=8, ef_construction=50)
    rng = np.random.default_rng(1)
    v = rng.standard_normal((100, 3)).astype(np.float32)
    index.add(v[:50])                      # ids 0..49
    index.add(v[50:], ids=np.arange(1000, 1050))
    index.add(v[0] * 2)                    # next id: 1050
    assert len(index) == 101 and 1050 in index and 49 in index and 50 not in index
    got = index.get([1000, 1001])
    np.testing.assert_allclose(got[0], v[50] / np.linalg.norm(v[50]), rtol=1e-5)
    ids, dists = index.search(v[7], k=1)
    assert ids[0] == 7 and dists[0] == pytest.approx(-1.0, abs=1e-5)
    index.remove([7, 1000])
    assert len(index) == 99 and 7 not in index
    ids, _ = index.search(v[7], k=5)
    assert 7 not in ids.tolist()
    with pytest.raises(strata.NotFoundError):
        index.remove(7)


def test_argument_errors():
    with pytest.raises(ValueError, match="metric"):
        strata.HnswIndex(dim=4, metric="hamming")
    index = strata.HnswIndex(dim=4)
    with pytest.raises(ValueError, match="dimension 3, expected 4"):
        index.add(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.array([[0, 1, np.nan, 0]], dtype=np.float32))
    index.add(np.eye(4))
    with pytest.raises(ValueError, match="NaN|finite"):
        index.search(np.array([np.nan, 0, 0, 0]))
    with pytest.raises(ValueError, match="dtype"):
        index.search(np.array(["a", "b", "c", "d"]))
    with pytest.raises(ValueError, match="dtype"):
        index.search(np.ones(4, dtype=np.complex64))
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.zeros((1, 1, 4)))
    with pytest.raises(ValueError, match="k must be"):
        index.search(np.zeros(4), k=0)
    with pytest.raises(ValueError, match="ids: 1 ids for 2 vectors"):
        index.add(np.zeros((2, 4)), ids=[1])
    with pytest.raises(ValueError, match="negative"):
        index.add(np.zeros((1, 4)), ids=[-1])


def test_searches_in_threads_while_adding(fmnist):
    base, queries, truth = fmnist
    index = strata.HnswIndex(dim=784)
    index.add(base[:3000])
    errors = []

    def reader():
        try:
            for _ in range(5):
                ids, _ = index.search(queries[:50], k=K, num_threads=1)
                assert ids.shape == (50, K)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    index.add(base[3000:], ids=np.arange(3000, base.shape[0]), num_threads=1)
    for t in threads:
        t.join()
    assert not errors
    ids, _ = index.search(queries, k=K, ef=64)
    assert recall(ids, truth) >= 0.97


def test_gil_released_during_search(hnsw, fmnist):
    _, queries, _ = fmnist
    big = np.repeat(queries, 10, axis=0)
    done = threading.Event()
    ticks = 0

    def run():
        hnsw.search(big, k=K, ef=200, num_threads=1)
        done.set()

    t = threading.Thread(target=run)
    t.start()
    while not done.is_set():
        ticks += 1
    t.join()
    # With the GIL held for the whole call the loop would barely run (it gets the GIL
    # only every switch interval); released, it spins freely meanwhile.
    assert ticks > 10000


def test_spann_build_open_search(fmnist, tmp_path):
    base, queries, truth = fmnist
    path = str(tmp_path / "fm.spann")
    index = strata.SpannIndex.build(base, path, metric="l2", memory_budget=0.2, half_lists=False)
    assert len(index) == base.shape[0] and index.dim == 784 and index.metric == "l2"
    ids, _ = index.search(queries, k=K, max_lists=64)
    assert recall(ids, truth) >= 0.9
    reopened = strata.SpannIndex.open(path)
    ids2, _ = reopened.search(queries, k=K, max_lists=64, num_threads=1)
    np.testing.assert_array_equal(ids, ids2)
    allowed = np.arange(0, base.shape[0], 3)
    ids, _ = reopened.search(queries[:20], k=K, max_lists=128, filter=allowed)
    got = ids[ids != strata.NO_ID]
    assert got.size > 0 and np.all(got % 3 == 0)
    with pytest.raises(strata.AlreadyExistsError):
        strata.SpannIndex.build(base[:100], path)
    with pytest.raises(FileNotFoundError):
        strata.SpannIndex.open(str(tmp_path / "missing.spann"))
    with pytest.raises(ValueError, match="dimension"):
        reopened.search(np.zeros(10))


def test_hnsw_with_codes(fmnist, tmp_path):
    # Fashion-MNIST pixels are integers: SQ8 codes are exactly the vectors, so the rerank
    # decodes them and the distances are the exact squared L2.
    base, queries, truth = fmnist
    index = strata.HnswIndex(dim=base.shape[1], metric="l2", codes="sq8", rerank=20)
    index.add(base)
    stats = index.stats()
    assert stats["codes"] == "sq8" and stats["exact_codes"] is True
    ids, dists = index.search(queries, k=K, ef=64)
    assert recall(ids, truth) >= 0.97
    q0 = queries[0].astype(np.float64)
    expect = ((base[ids[0].astype(np.int64)].astype(np.float64) - q0) ** 2).sum(1)
    np.testing.assert_allclose(dists[0], expect, rtol=1e-6)
    short, _ = index.search(queries, k=K, ef=64, rerank=K)
    assert recall(short, truth) >= 0.9
    path = str(tmp_path / "codes.hnsw")
    index.save(path)
    loaded = strata.HnswIndex.load(path, mmap=True)
    assert loaded.stats()["codes"] == "sq8"
    np.testing.assert_array_equal(loaded.search(queries[:50], k=K, ef=64)[0], index.search(queries[:50], k=K, ef=64)[0])
    with pytest.raises(ValueError, match="codes"):
        strata.HnswIndex(dim=8, codes="pq")
    with pytest.raises(ValueError, match="no codes"):
        strata.HnswIndex(dim=8).search(np.zeros(8), rerank=5)


def test_spann_with_codes_and_head_codes(fmnist, tmp_path):
    base, queries, truth = fmnist
    plain = strata.SpannIndex.build(base, str(tmp_path / "plain.spann"), metric="l2")
    coded = strata.SpannIndex.build(base, str(tmp_path / "codes.spann"), metric="l2", codes="sq8")
    st = coded.stats()
    # With codes the heads are codes too by default.
    assert st["codes"] == "sq8" and st["exact_codes"] is True and st["head_codes"] is True
    f16 = strata.SpannIndex.build(base, str(tmp_path / "f16.spann"), metric="l2", codes="sq8", head_codes=False)
    assert f16.stats()["head_codes"] is False and f16.stats()["half_heads"] is True
    assert plain.stats()["codes"] == "none" and plain.stats()["head_codes"] is False
    # The codes index's default budget is 10% of the raw vectors, the plain one's 20%.
    assert st["memory_bytes"] < plain.stats()["memory_bytes"]
    ids, dists = coded.search(queries, k=K, max_lists=64, head_ef=128, rerank=30)
    assert recall(ids, truth) >= 0.9
    q0 = queries[0].astype(np.float64)
    expect = ((base[ids[0].astype(np.int64)].astype(np.float64) - q0) ** 2).sum(1)
    np.testing.assert_allclose(dists[0], expect, rtol=1e-6)
    with pytest.raises(ValueError, match="no codes"):
        plain.search(queries[:2], rerank=5)
