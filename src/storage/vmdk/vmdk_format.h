// VMDK on-disk structures for the read-only reader (VMware "Virtual Disk Format 5.0"):
// the hosted sparse extent header, text descriptors (embedded or a file of their own) and
// stream-optimized markers.
// Pure parsing and validation, no I/O: every field comes from an untrusted file, and every
// refusal names the field and what was expected.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace kite::storage {

inline constexpr uint32_t kVmdkMagic = 0x564d444b;  // "KDMV" on disk
inline constexpr uint64_t kVmdkGdAtEnd = ~0ull;     // stream-optimized: GD is in the footer
inline constexpr uint32_t kVmdkFlagNewlineTest = 1u << 0;
inline constexpr uint32_t kVmdkFlagRedundantGt = 1u << 1;
inline constexpr uint32_t kVmdkFlagZeroedGte = 1u << 2;
inline constexpr uint32_t kVmdkFlagCompressed = 1u << 16;
inline constexpr uint32_t kVmdkFlagMarkers = 1u << 17;
inline constexpr uint16_t kVmdkCompressDeflate = 1;
inline constexpr uint32_t kVmdkMarkerEos = 0;
inline constexpr uint32_t kVmdkMarkerGt = 1;
inline constexpr uint32_t kVmdkMarkerGd = 2;
inline constexpr uint32_t kVmdkMarkerFooter = 3;

// Limits kite applies (an import tool, not a VMware clone).
inline constexpr uint64_t kVmdkMaxGrainSectors = 32768;          // 16 MiB grains
inline constexpr uint32_t kVmdkMaxGtesPerGt = 512;               // as VMware and QEMU
inline constexpr uint64_t kVmdkMaxCapacitySectors = 1ull << 37;  // 64 TiB
inline constexpr uint64_t kVmdkMaxDescriptorSectors = 2048;      // 1 MiB of text
inline constexpr uint64_t kVmdkMaxGdBytes = 32ull << 20;         // grain directory in RAM

// The 512-byte SparseExtentHeader, validated.
struct VmdkHeader {
  uint32_t version = 0;
  uint32_t flags = 0;
  uint64_t capacity_sectors = 0;
  uint64_t grain_sectors = 0;
  uint64_t descriptor_offset = 0;  // sectors
  uint64_t descriptor_size = 0;    // sectors
  uint32_t gtes_per_gt = 0;
  uint64_t gd_offset = 0;  // sectors, or kVmdkGdAtEnd
  uint16_t compress_algorithm = 0;

  bool compressed() const { return flags & kVmdkFlagCompressed; }
  bool markers() const { return flags & kVmdkFlagMarkers; }
  bool zeroed_gte() const { return flags & kVmdkFlagZeroedGte; }
  uint64_t grain_bytes() const { return grain_sectors * 512; }
  uint64_t capacity_bytes() const { return capacity_sectors * 512; }
  uint64_t gd_entries() const {
    uint64_t per_gt = grain_sectors * gtes_per_gt;
    return (capacity_sectors + per_gt - 1) / per_gt;
  }
};

// Parses and checks one header sector. `where` names the file (and "footer" when it is one).
Result<VmdkHeader> ParseVmdkHeader(std::span<const uint8_t> sector, std::string_view where);

// A stream-optimized marker: {u64 value, u32 size, u32 type} at the start of a sector.
// For a grain, value = its first LBA and size = compressed bytes following; for metadata
// (size 0), value = sectors of the following table and type says which.
struct VmdkMarker {
  uint64_t value = 0;
  uint32_t size = 0;
  uint32_t type = 0;
};
VmdkMarker ParseVmdkMarker(std::span<const uint8_t, 16> bytes);

// One extent line of a descriptor: ACCESS SECTORS TYPE "FILE" [OFFSET]. FLAT and VMFS
// extents are plain bytes (FLAT at OFFSET sectors into the file); SPARSE ones are hosted
// sparse extent files with their own header.
enum class VmdkExtentKind { kSparse, kFlat };
struct VmdkExtentLine {
  VmdkExtentKind kind = VmdkExtentKind::kSparse;
  uint64_t sectors = 0;
  std::string file;          // as written: relative to the descriptor's directory, or absolute
  uint64_t flat_offset = 0;  // sectors into a flat extent's file
};

inline constexpr size_t kVmdkMaxExtents = 1024;  // open files per image

// What kite needs from a descriptor.
struct VmdkDescriptor {
  std::string create_type;
  std::vector<VmdkExtentLine> extents;
  uint64_t total_sectors() const {
    uint64_t total = 0;
    for (const VmdkExtentLine& e : extents) total += e.sectors;
    return total;
  }
};

// The descriptor embedded in a monolithicSparse or streamOptimized file: exactly one SPARSE
// extent. Refuses parents (parentCID other than ffffffff) and other create types.
Result<VmdkDescriptor> ParseVmdkDescriptor(std::string_view text, std::string_view where);

// A descriptor file (monolithicFlat, vmfs, twoGbMaxExtentSparse, twoGbMaxExtentFlat): 1 to
// kVmdkMaxExtents RW or RDONLY extents of type FLAT (with an offset), VMFS or SPARSE, each of
// at least one sector, together at most kVmdkMaxCapacitySectors. No parents.
Result<VmdkDescriptor> ParseVmdkDescriptorFile(std::string_view text, std::string_view where);

// Whether `head` (the first bytes of a file) reads as a descriptor file: comment and blank
// lines, then version=1, 2 or 3, as qemu-img probes one.
bool LooksLikeVmdkDescriptor(std::string_view head);

}  // namespace kite::storage
