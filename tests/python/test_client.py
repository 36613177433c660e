"""strata.Client against a live strata-server started by the test (127.0.0.1, port 0).

scripts/test.sh runs the ASan (Debug) server, so the collection is kept small: 2,000 rows."""

import os

import numpy as np
import pytest

import strata
from conftest import K, exact_knn, recall

DIM = 784
ROWS = 2000


@pytest.fixture(scope="module")
def client(server):
    with strata.Client("127.0.0.1", server) as c:
        yield c


def test_round_trip(client, fmnist):
    base, queries, _ = fmnist
    base = base[:ROWS]
    truth = exact_knn(base, queries, K)
    client.ping()
    assert client.server_version
    client.create_collection("fm", dim=DIM, metric="l2")
    n = base.shape[0]
    attrs = [{"label": int(i % 10)} for i in range(n)]
    assert client.upsert("fm", np.arange(n), base, attributes=attrs) == n  # split under the limits
    info = client.describe_collection("fm")
    assert info["num_vectors"] == n and info["metric"] == "l2"
    assert [c["name"] for c in client.list_collections()] == ["fm"]
    ids, dists = client.search("fm", queries, k=K, ef=64, pipeline=16)
    assert ids.shape == (queries.shape[0], K)
    assert recall(ids, truth) >= 0.97
    one, _ = client.search("fm", queries[0], k=K, ef=64)
    np.testing.assert_array_equal(one, ids[0])
    ids, _, hit_attrs = client.search("fm", queries[:5], k=K, filter="label == 4", with_attributes=True)
    assert np.all(ids % 10 == 4)
    assert all(a["label"] == 4 for row in hit_attrs for a in row)
    _, _, plan = client.search("fm", queries[0], k=K, explain=True)
    assert isinstance(plan, dict) and plan["segments"]
    rec = client.get("fm", 7)
    assert rec["attributes"] == {"label": 7}
    np.testing.assert_array_equal(rec["vector"], base[7].astype(np.float32))
    assert client.get("fm", [7, 10**12])[1] is None
    assert client.delete("fm", [7]) == 1
    assert client.get("fm", 7) is None
    client.flush("fm")
    client.compact("fm")
    assert client.describe_collection("fm")["num_vectors"] == n - 1


def test_errors(client, server):
    with pytest.raises(strata.NotFoundError):
        client.describe_collection("missing")
    with pytest.raises(strata.AlreadyExistsError):
        client.create_collection("dup", dim=2)
        client.create_collection("dup", dim=2)
    with pytest.raises(ValueError, match="position"):
        client.search("dup", np.zeros(2), filter="a ==")
    with pytest.raises(ValueError):
        client.upsert("dup", [1], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="metric"):
        client.create_collection("m", dim=2, metric="nope")
    client.drop_collection("dup")
    client.ping()  # still usable after error frames
    with pytest.raises(OSError) as e:
        strata.Client("127.0.0.1", 1)  # nothing listens on port 1
    assert isinstance(e.value, strata.IoError)
    other = strata.Client("127.0.0.1", server)
    other.close()
    with pytest.raises(strata.Error, match="closed"):
        other.ping()


def test_snapshot(client):
    client.create_collection("snap", dim=2)
    client.upsert("snap", [1, 2], np.array([[1, 0], [0, 1]], dtype=np.float32))
    s = client.snapshot("snap", "py-snap")
    assert s["path"].endswith("/py-snap") and os.path.isdir(s["path"])  # the server runs on this host
    assert s["sequence"] == 1 and os.path.isfile(os.path.join(s["path"], "MANIFEST"))
    with pytest.raises(strata.AlreadyExistsError):
        client.snapshot("snap", "py-snap")
    with pytest.raises(ValueError, match="name"):
        client.snapshot("snap", "../out")
    client.drop_collection("snap")


def test_codes(client):
    """create_collection(codes=...) crosses the wire (create_collection_with); describe and
    list_collections (list_collections_with) show it."""
    client.create_collection("coded", dim=8, codes="sq8", rerank=32)
    info = client.describe_collection("coded")
    assert info["codes"] == "sq8" and info["rerank"] == 32
    listed = {c["name"]: c for c in client.list_collections()}
    assert listed["coded"]["codes"] == "sq8" and listed["coded"]["rerank"] == 32
    with pytest.raises(strata.InvalidArgumentError, match="unknown codes"):
        client.create_collection("coded2", dim=8, codes="bogus")
    client.drop_collection("coded")
