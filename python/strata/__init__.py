"""Strata from Python: the embedded engine, the indexes and the network client.

    import strata
    with strata.Engine("./data") as engine:
        engine.create_collection("docs", dim=100, metric="cosine")
        engine.upsert("docs", ids, vectors, attributes=[{"lang": "en"}, ...])
        ids, distances = engine.search("docs", queries, k=10, recall=0.95)

    index = strata.HnswIndex(dim=100, metric="cosine")   # hnswlib-like, no engine
    index.add(vectors)
    ids, distances = index.search(queries, k=10, ef=64)

    client = strata.Client("127.0.0.1", 7420)             # a strata-server

Vectors are numpy arrays (float32; other real dtypes are converted). Errors are
subclasses of strata.Error and of the matching builtin: InvalidArgumentError is
a ValueError, IoError and CorruptionError are OSErrors, NoSuchFileError is a
FileNotFoundError, NotFoundError is a LookupError.
"""

from ._strata import (  # noqa: F401
    NO_ID,
    AlreadyExistsError,
    CancelledError,
    Client,
    CorruptionError,
    Engine,
    Error,
    HnswIndex,
    InternalError,
    InvalidArgumentError,
    IoError,
    NoSuchFileError,
    NotFoundError,
    OutOfRangeError,
    ResourceExhaustedError,
    SpannIndex,
    UnimplementedError,
    __version__,
)

__all__ = [
    "NO_ID",
    "AlreadyExistsError",
    "CancelledError",
    "Client",
    "CorruptionError",
    "Engine",
    "Error",
    "HnswIndex",
    "InternalError",
    "InvalidArgumentError",
    "IoError",
    "NoSuchFileError",
    "NotFoundError",
    "OutOfRangeError",
    "ResourceExhaustedError",
    "SpannIndex",
    "UnimplementedError",
    "__version__",
]
