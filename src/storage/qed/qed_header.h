// QED (QEMU Enhanced Disk) on-disk header, as QEMU's docs/interop/qed_spec.txt describes it:
// a 64-byte little-endian header at offset 0 of the first of `header_size` header clusters,
// then a fixed L1 table of `table_size` clusters whose entries point at L2 tables of the same
// size, whose entries point at data clusters (0: unallocated, 1: zero cluster).
// Pure parsing and validation, no I/O: every field comes from an untrusted file
// (BAD_INPUTS.md section I) and every refusal names the file and the field.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"

namespace kite::storage::qed {

inline constexpr uint32_t kMagic = 0x00444551;  // "QED\0"
inline constexpr size_t kHeaderBytes = 64;

// features: an image with a bit kite does not know is refused (the spec's rule).
inline constexpr uint64_t kFeatureBackingFile = 1u << 0;
inline constexpr uint64_t kFeatureNeedCheck = 1u << 1;             // not closed cleanly
inline constexpr uint64_t kFeatureBackingFormatNoProbe = 1u << 2;  // the backing file is raw
inline constexpr uint64_t kKnownFeatures =
    kFeatureBackingFile | kFeatureNeedCheck | kFeatureBackingFormatNoProbe;

inline constexpr uint32_t kMinClusterSize = 4096;
inline constexpr uint32_t kMaxClusterSize = 64u << 20;
inline constexpr uint32_t kMinTableSize = 1;  // clusters per L1 or L2 table
inline constexpr uint32_t kMaxTableSize = 16;
inline constexpr uint32_t kMaxBackingNameBytes = 1023;  // as qcow2 (BAD_INPUTS I13)
inline constexpr uint64_t kMaxL1Bytes = 32u << 20;      // the L1 entries kite keeps in RAM

// Table entries: 0 = unallocated (backing file or zeros), 1 = a zero cluster (data only).
inline constexpr uint64_t kUnallocated = 0;
inline constexpr uint64_t kZeroCluster = 1;

struct Header {
  uint32_t cluster_size = 0;
  uint32_t table_size = 0;   // clusters per table
  uint32_t header_size = 0;  // clusters of header (backing file name included)
  uint64_t features = 0;
  uint64_t compat_features = 0;
  uint64_t autoclear_features = 0;
  uint64_t l1_table_offset = 0;
  uint64_t image_size = 0;
  uint32_t backing_filename_offset = 0;  // bytes from the start of the file
  uint32_t backing_filename_size = 0;

  bool has_backing() const { return features & kFeatureBackingFile; }
  bool backing_is_raw() const { return features & kFeatureBackingFormatNoProbe; }
  bool need_check() const { return features & kFeatureNeedCheck; }
  uint64_t table_bytes() const { return uint64_t{table_size} * cluster_size; }
  uint64_t table_entries() const { return table_bytes() / 8; }
  uint64_t header_bytes() const { return uint64_t{header_size} * cluster_size; }
  // Guest bytes one L2 table maps, and the L1 entries the image size needs.
  uint64_t l2_coverage() const { return table_entries() * cluster_size; }
  uint64_t l1_entries_used() const {
    return image_size / l2_coverage() + (image_size % l2_coverage() != 0);
  }
};

// Parses and checks the header against the file's size: magic, features, cluster_size (power
// of two, 4 KiB..64 MiB), table_size (power of two, 1..16), header_size, image_size (a
// multiple of 512 the tables can map), l1_table_offset (cluster-aligned, after the header,
// the whole table inside the file) and, with a backing file, the name's offset and size
// (inside the header clusters and the file). `path` names the file in errors.
Result<Header> ParseHeader(std::span<const uint8_t> bytes, uint64_t file_size,
                           std::string_view path);

// Whether a table (L2) or data cluster offset is usable: cluster-aligned, after the header
// clusters, and `clusters` whole clusters inside the file.
bool ValidClusterOffset(const Header& h, uint64_t offset, uint64_t clusters, uint64_t file_size);

}  // namespace kite::storage::qed
