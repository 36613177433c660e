#!/usr/bin/env bash
# The README's test command: installs what is missing, builds the test suites
# with AddressSanitizer + UndefinedBehaviorSanitizer, and runs ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS=$(nproc)
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSTRATA_ASAN=ON \
  -DSTRATA_BUILD_BENCH=OFF >/dev/null
cmake --build build/asan -j"$JOBS"
ctest --test-dir build/asan --output-on-failure -j"$JOBS" "$@"
