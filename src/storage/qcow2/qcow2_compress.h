// Compressed clusters: deflate (raw deflate, windowBits -12, as QEMU writes it) and zstd.
// Decompression is bounded by the cluster size (I30: a bomb stops there and fails).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "storage/qcow2/qcow2.h"

namespace kite::storage::qcow2 {

// Decompresses `in` into exactly `out.size()` bytes (one cluster). A stream that ends early,
// is corrupt or would produce more than out.size() bytes is an error.
Result<void> DecompressCluster(CompressionType type, std::span<const uint8_t> in,
                               std::span<uint8_t> out);

// Compresses one cluster. Returns an empty vector when compression would not save space.
Result<std::vector<uint8_t>> CompressCluster(CompressionType type, std::span<const uint8_t> in);

}  // namespace kite::storage::qcow2
