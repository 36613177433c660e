#!/usr/bin/env bash
# Installs, from Debian 12 packages, whatever Strata needs and is missing.
#   scripts/setup.sh           build, test and run dependencies
#   scripts/setup.sh --peers   also hnswlib (C++ and Python) and FAISS, for the peer benchmarks
#   scripts/setup.sh --fuzz    also clang 16 and its sanitizer/libFuzzer runtimes (scripts/fuzz.sh)
# Runs apt-get only when something is missing. Needs root (or sudo) in that case.
set -euo pipefail

PKGS=(build-essential g++ cmake ninja-build git ca-certificates curl tar gzip
      libboost-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev liburing-dev
      libcli11-dev libxxhash-dev libbenchmark-dev nlohmann-json3-dev libtomlplusplus-dev ccache
      # The Python module (python/) and its tests (tests/python, on Debian's Fashion-MNIST).
      python3-dev pybind11-dev python3-pybind11 python3-numpy python3-pytest python3-venv
      python3-setuptools python3-wheel dataset-fashion-mnist
      # `strata plot` draws with matplotlib (tools/cmd_plot.cc).
      python3-matplotlib
      # Real Redis clients for the RESP listener's tests (redis-cli, redis-benchmark, redis-py).
      redis-tools python3-redis
      # etcd for the cluster layer (cluster/, issue 19) and its tests (a real etcd on loopback).
      etcd-server etcd-client)
if [[ "${1:-}" == "--peers" ]]; then
  PKGS+=(libhnswlib-dev libfaiss-dev libopenblas-dev python3-hnswlib)
fi
if [[ "${1:-}" == "--fuzz" ]]; then
  PKGS+=(clang-16 libclang-rt-16-dev)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup: missing packages (${missing[*]}) and not root; run as root" >&2
    exit 1
  fi
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
