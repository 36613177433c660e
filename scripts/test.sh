#!/usr/bin/env bash
# The README's test command: installs what is missing, builds the test suites
# with AddressSanitizer + UndefinedBehaviorSanitizer, and runs ctest; then builds
# the concurrency suites with ThreadSanitizer and runs the tests labelled "concurrent".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# ccache (installed by setup.sh) keyed on paths relative to the checkout, so that a fresh clone
# reuses what an earlier build of the same sources compiled.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
JOBS=$(nproc)
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSTRATA_ASAN=ON \
  -DSTRATA_BUILD_BENCH=OFF >/dev/null
cmake --build build/asan -j"$JOBS"
# The tests labelled "concurrent" run under ThreadSanitizer below instead (the suite stays
# within about 15 minutes on 2 cores).
ctest --test-dir build/asan --output-on-failure -j"$JOBS" -LE concurrent "$@"

# The Python module (python/, pybind11) in its own Release build with position-independent
# static libraries, and its pytest suites (tests/python: Fashion-MNIST from Debian's
# dataset-fashion-mnist, and a live strata-server -- the ASan build's).
cmake -S . -B build/py -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_PYTHON=ON \
  -DSTRATA_BUILD_TESTS=OFF -DSTRATA_BUILD_BENCH=OFF -DPython_EXECUTABLE=/usr/bin/python3 >/dev/null
cmake --build build/py -j"$JOBS" --target _strata
PYTHONPATH="$PWD/build/py/python" PYTHONDONTWRITEBYTECODE=1 \
STRATA_SERVER="$PWD/build/asan/server/strata-server" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python
# Issue 13's walkthrough with the ASan build's binaries: ingest, filtered search, a snapshot while
# strata-cli upserts, strata restore, the same answers from a second server (under a minute).
bash scripts/walkthrough.sh --build-dir build/asan
# The README's install steps, into a throwaway virtual environment (Debian's packages only, no
# network; pip reuses build/py, so this only links).
rm -rf build/py-venv
/usr/bin/python3 -m venv --system-site-packages build/py-venv
build/py-venv/bin/pip install -q --no-build-isolation --no-deps ./python
(cd build && py-venv/bin/python -c "import strata; print('strata', strata.__version__, strata.__file__)")

# ThreadSanitizer. libgomp's barriers are not instrumented, so work handed between
# OpenMP regions looks like a race: OMP_NUM_THREADS=1 keeps the default-sized
# regions (Consolidate) on the calling thread; the tests use std::thread for
# concurrency, and AddBatch's explicit two-thread region is checked as well.
cmake -S . -B build/tsan -G Ninja -DSTRATA_TSAN=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSTRATA_BUILD_BENCH=OFF >/dev/null
cmake --build build/tsan -j"$JOBS" --target hnsw_concurrency_test engine_concurrency_test wal_test \
  server_test resp_server_test cluster_node_test strata-server cluster_router_test cluster_shard_gate_test
# The concurrent suites (HNSW inserts and searches; the engine's 60-second mixed
# load of two writers and two readers with seals and compactions; a cluster node's lease,
# election and registry threads against a real etcd), and the WAL's group commit and its
# races with Sync/Close.
OMP_NUM_THREADS=1 \
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir build/tsan -L concurrent --output-on-failure
OMP_NUM_THREADS=1 \
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  build/tsan/tests/wal_test --gtest_filter='Wal.GroupCommit*:Wal.SyncAndCloseRace*:*WalDurability*'
# The server's threads: I/O threads, worker pool, pipelined and concurrent clients, busy
# refusals, graceful shutdown. (Eight concurrent clients through the client library,
# ClientIntegration.ConcurrentClientsReadTheirOwnWrites, runs under ASan above.)
OMP_NUM_THREADS=1 \
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  build/tsan/tests/server_test --gtest_filter='ServerTest.Hundred*:ServerTest.Busy*:ServerTest.Graceful*:ServerTest.SeveralIo*:ServerTest.Pipeline*:ServerTest.EveryOp*:ServerTest.MaintenanceAndWrites*:ServerTest.ConnectionsWithoutAHello*'
# The RESP listener's connections on the same threads: concurrent pipelined clients, timeouts,
# AUTH, graceful shutdown.
OMP_NUM_THREADS=1 \
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  build/tsan/tests/resp_server_test --gtest_filter='RespListenerTest.*'
# The cluster's routing inside real nodes (strata-server built with ThreadSanitizer, three of them
# beside a real etcd): a race in a node stops it (halt_on_error), which fails the test (about a
# minute).
OMP_NUM_THREADS=1 \
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  build/tsan/tests/cluster_router_test
# A catch-up by files against a peer served by a real server (its worker threads read the
# copy while the test's live writes go through both gates).
OMP_NUM_THREADS=1 \
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  build/tsan/tests/cluster_shard_gate_test
