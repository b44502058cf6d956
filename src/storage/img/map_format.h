// kite-img map: the allocation map of an image and its backing chain as qemu-img map prints
// it. Entries with equal status (and, for mapped data, contiguous host offsets) are merged.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "storage/disk_image.h"

namespace kite::img {

struct MapEntry {
  uint64_t start = 0;
  uint64_t length = 0;
  int depth = 0;
  bool present = false;
  bool zero = false;
  bool data = false;
  std::optional<uint64_t> offset;  // host offset in `filename`
  std::string filename;            // the chain member holding the range
};

// Walks the whole disk with BlockStatus and merges neighbours as qemu-img does.
Result<std::vector<MapEntry>> BuildMap(storage::DiskImage& image);
bool CanMerge(const MapEntry& a, const MapEntry& b);

// "[{ "start": 0, "length": 4096, "depth": 0, "present": true, ... },\n...]"
std::string MapJson(const std::vector<MapEntry>& entries);
// "Offset Length Mapped to File" table of the mapped data ranges.
std::string MapText(const std::vector<MapEntry>& entries);

}  // namespace kite::img
