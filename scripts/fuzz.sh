#!/usr/bin/env bash
# Fuzzes a parser with libFuzzer: the wire protocol's decoders (tests/fuzz/protocol_fuzz.cc,
# the default) or the RESP request parser (tests/fuzz/resp_fuzz.cc).
#   scripts/fuzz.sh [TARGET] [SECONDS]   TARGET protocol (default) or resp, or STRATA_FUZZ_TARGET;
#                                        fuzz for SECONDS (default 600)
# Installs clang 16 if missing, builds build/fuzz with it (STRATA_FUZZ=ON: ASan + UBSan +
# coverage), copies the committed seeds (tests/fuzz/corpus/TARGET) into
# build/fuzz/corpus-TARGET (build/fuzz/corpus for protocol), where the inputs libFuzzer finds
# interesting accumulate across runs, and fuzzes. Exits non-zero on a finding and says where
# the input that caused it was written; once fixed, copy that file into tests/fuzz/corpus/TARGET
# so that TARGET_fuzz_corpus_test (default build) replays it from then on. STRATA_JOBS sets the
# build's parallelism (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${STRATA_FUZZ_TARGET:-protocol}
if [[ "${1:-}" == protocol || "${1:-}" == resp ]]; then
  TARGET=$1
  shift
fi
RUN_SECONDS=${1:-600}
if ! [[ "$RUN_SECONDS" =~ ^[0-9]+$ ]] || ((RUN_SECONDS == 0)) || [[ "$TARGET" != protocol && "$TARGET" != resp ]]; then
  echo "usage: scripts/fuzz.sh [protocol|resp] [SECONDS]" >&2
  exit 2
fi
bash scripts/setup.sh --fuzz
JOBS=${STRATA_JOBS:-$(nproc)}

# The fuzz target uses no OpenMP, but the top-level CMakeLists requires it and Debian's clang 16
# has no OpenMP runtime of its own (that would be libomp-16-dev): let FindOpenMP settle for
# gcc's libgomp, which clang can drive with -fopenmp=libgomp.
GOMP=$(g++ -print-file-name=libgomp.so)
cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++-16 -DSTRATA_FUZZ=ON -DSTRATA_BUILD_BENCH=OFF \
  -DOpenMP_CXX_FLAGS=-fopenmp=libgomp -DOpenMP_CXX_LIB_NAMES=gomp \
  -DOpenMP_gomp_LIBRARY="$GOMP" >/dev/null
cmake --build build/fuzz --target "${TARGET}_fuzz" -j"$JOBS"

if [[ "$TARGET" == protocol ]]; then
  CORPUS=build/fuzz/corpus
  ARTIFACTS=build/fuzz/artifacts
  LOG=build/fuzz/fuzz.log
else
  CORPUS=build/fuzz/corpus-$TARGET
  ARTIFACTS=build/fuzz/artifacts-$TARGET
  LOG=build/fuzz/fuzz-$TARGET.log
fi
mkdir -p "$CORPUS" "$ARTIFACTS"
cp tests/fuzz/corpus/"$TARGET"/* "$CORPUS"/

# -max_len: the seeds are under 300 bytes; 4 KiB leaves room for many records and attributes.
# -timeout: any single input taking 10 s is a hang. -malloc_limit_mb: far above what 4 KiB can
# legitimately cost (the target itself aborts past 512 bytes allocated per input byte).
# Readable stacks in a finding's report (clang 16's own symbolizer is not packaged with it).
SYMBOLIZER=$(command -v llvm-symbolizer-16 || command -v llvm-symbolizer || true)
if [[ -n "$SYMBOLIZER" ]]; then export ASAN_SYMBOLIZER_PATH="$SYMBOLIZER"; fi
set +e
UBSAN_OPTIONS=print_stacktrace=1 \
build/fuzz/tests/"${TARGET}_fuzz" "$CORPUS" -max_total_time="$RUN_SECONDS" -max_len=4096 \
  -rss_limit_mb=2048 -malloc_limit_mb=256 -timeout=10 -artifact_prefix="$ARTIFACTS"/ \
  -print_final_stats=1 >"$LOG" 2>&1
rc=$?
set -e

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOG" | tail -1)
speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$LOG" | tail -1)
status_line=$(grep -E '^#[0-9]+' "$LOG" | tail -1)
cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status_line")
ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status_line")
corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$status_line")
if ((rc != 0)); then
  tail -n 60 "$LOG" >&2
  crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$LOG" | tail -1)
  echo "fuzz: FINDING after ${runs:-?} runs (exit $rc); input: ${crash:-none written}; log: $LOG" >&2
  exit 1
fi
echo "fuzz ($TARGET): ${runs:-?} runs in ${RUN_SECONDS} s, ${speed:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?} inputs, no findings (log: $LOG)"
