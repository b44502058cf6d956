// Buffer scanning for convert/rebase/commit: which parts of a buffer hold data worth writing,
// and which parts of an image read as zeros without reading them.
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"
#include "storage/disk_image.h"

namespace kite::img {

inline constexpr uint64_t kSector = 512;
inline constexpr uint64_t kCompareBlock = 64 * 1024;  // write granularity against a backing

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool operator==(const ByteRange&) const = default;
};

bool IsZero(const uint8_t* data, uint64_t len);

// The ranges of `data` to write when zero runs of at least `min_zero_run` bytes (checked per
// 512-byte sector) are left as holes; shorter zero runs are written with their neighbours.
std::vector<ByteRange> NonZeroRanges(const uint8_t* data, uint64_t len, uint64_t min_zero_run);

// True when block status says `image` reads as zeros all over [offset, offset + len): no data
// is read.
Result<bool> ReadsAsZeros(storage::DiskImage& image, uint64_t offset, uint64_t len);

// The `block`-sized pieces where `a` and `b` differ, neighbours merged.
std::vector<ByteRange> DifferingRanges(const uint8_t* a, const uint8_t* b, uint64_t len,
                                       uint64_t block);

}  // namespace kite::img
