// Invariants shared by the fuzzers of read-only formats (vmdk_fuzzer, qed_fuzzer): every kind of
// write is refused, and BlockStatus walks the first 64 MiB (at most 16 extents) in non-empty
// extents that start where asked and stay inside the disk.
#pragma once

#include <algorithm>
#include <cstdint>

#include "storage/disk_image.h"

namespace kite::fuzz {

// The invariant `image` violates, or nullptr.
inline const char* CheckReadOnlyImage(storage::DiskImage& image) {
  uint8_t zero = 0;
  if (image.Write(0, &zero, 1)) return "a write to a read-only image succeeded";
  if (image.WriteZeroes(0, 512, false)) return "write-zeroes on a read-only image succeeded";
  if (image.Discard(0, 512)) return "discard on a read-only image succeeded";
  if (!image.read_only()) return "a read-only format opened writable";
  const uint64_t map_end = std::min<uint64_t>(image.size(), 64 << 20);
  uint64_t offset = 0;
  for (int i = 0; i < 16 && offset < map_end; ++i) {
    auto extent = image.BlockStatus(offset, map_end - offset);
    if (!extent) break;
    if (extent->offset != offset || extent->length == 0 || extent->length > map_end - offset) {
      return "BlockStatus extent outside the disk or empty";
    }
    offset += extent->length;
  }
  return nullptr;
}

}  // namespace kite::fuzz
