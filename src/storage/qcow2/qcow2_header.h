// qcow2 on-disk header: constants, the parsed header with its extensions, and the pure
// functions that parse and validate it (BAD_INPUTS I2-I13, I19-I24) and write it back.
// Format: QEMU docs/interop/qcow2.txt. All integers on disk are big-endian.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace kite::storage::qcow2 {

constexpr uint32_t kMagic = 0x514649fb;  // "QFI\xfb"
constexpr uint32_t kV2HeaderLength = 72;
constexpr uint32_t kV3HeaderLength = 104;
constexpr uint32_t kMinClusterBits = 9;
constexpr uint32_t kMaxClusterBits = 21;
constexpr uint32_t kMaxBackingNameLength = 1023;
constexpr uint64_t kMaxL1Bytes = 32ull << 20;  // "Active L1 table too large"
constexpr uint64_t kMaxRefcountTableBytes = 8ull << 20;
constexpr uint32_t kMaxSnapshots = 65536;
constexpr uint64_t kMaxVirtualSize = 1ull << 61;  // keeps every offset sum in 64 bits

// Incompatible feature bits.
constexpr uint64_t kIncompatDirty = 1ull << 0;
constexpr uint64_t kIncompatCorrupt = 1ull << 1;
constexpr uint64_t kIncompatDataFile = 1ull << 2;
constexpr uint64_t kIncompatCompression = 1ull << 3;
constexpr uint64_t kIncompatExtendedL2 = 1ull << 4;
constexpr uint64_t kIncompatKnown = kIncompatDirty | kIncompatCorrupt | kIncompatDataFile |
                                    kIncompatCompression | kIncompatExtendedL2;
// Autoclear feature bits: the external data file is also a consistent raw image.
constexpr uint64_t kAutoclearDataFileRaw = 1ull << 1;
constexpr uint64_t kAutoclearKnown = kAutoclearDataFileRaw;
// Extended L2 entries (subclusters) need subclusters of at least 512 bytes: 32 of them.
constexpr uint32_t kMinExtendedL2ClusterBits = 14;
// Compatible feature bits.
constexpr uint64_t kCompatLazyRefcounts = 1ull << 0;

// Header extension types.
constexpr uint32_t kExtEnd = 0;
constexpr uint32_t kExtBackingFormat = 0xe2792aca;
constexpr uint32_t kExtFeatureTable = 0x6803f857;
constexpr uint32_t kExtDataFile = 0x44415441;
constexpr uint32_t kExtCrypto = 0x0537be77;

// L1/L2 entry bits.
constexpr uint64_t kOflagCopied = 1ull << 63;
constexpr uint64_t kOflagCompressed = 1ull << 62;
constexpr uint64_t kOflagZero = 1ull << 0;
constexpr uint64_t kL1OffsetMask = 0x00fffffffffffe00ull;
constexpr uint64_t kL2OffsetMask = 0x00fffffffffffe00ull;
constexpr uint64_t kL1Reserved = 0x7f000000000001ffull;
constexpr uint64_t kL2Reserved = 0x3f000000000001feull;

struct HeaderExtension {
  uint32_t type = 0;
  std::vector<uint8_t> data;
};

struct Header {
  uint32_t version = 3;
  uint64_t backing_file_offset = 0;
  uint32_t backing_file_size = 0;
  uint32_t cluster_bits = 16;
  uint64_t size = 0;
  uint32_t crypt_method = 0;
  uint32_t l1_size = 0;
  uint64_t l1_table_offset = 0;
  uint64_t refcount_table_offset = 0;
  uint32_t refcount_table_clusters = 0;
  uint32_t nb_snapshots = 0;
  uint64_t snapshots_offset = 0;
  uint64_t incompatible_features = 0;
  uint64_t compatible_features = 0;
  uint64_t autoclear_features = 0;
  uint32_t refcount_order = 4;
  uint32_t header_length = kV3HeaderLength;
  uint8_t compression_type = 0;  // 0 zlib, 1 zstd

  std::string backing_file;
  std::string backing_format;
  std::string data_file;                    // the external data file extension's name, as stored
  std::vector<HeaderExtension> extensions;  // all others (feature table, unknown), in order

  uint64_t cluster_size() const { return 1ull << cluster_bits; }
  // Guest clusters live in an external data file (at their guest offsets, not refcounted).
  bool external_data() const { return incompatible_features & kIncompatDataFile; }
  // ... and that file is a consistent raw image of the disk.
  bool data_file_raw() const {
    return external_data() && (autoclear_features & kAutoclearDataFileRaw);
  }
  bool extended_l2() const { return incompatible_features & kIncompatExtendedL2; }
  // An L2 entry: 8 bytes, or 16 with extended L2 entries (descriptor, subcluster bitmap).
  uint64_t l2_entry_bytes() const { return extended_l2() ? 16 : 8; }
  uint32_t l2_bits() const { return cluster_bits - (extended_l2() ? 4 : 3); }
  uint64_t l2_entries() const { return cluster_size() / l2_entry_bytes(); }
  uint64_t refcount_bits() const { return 1ull << refcount_order; }
  uint64_t refblock_entries() const { return cluster_size() * 8 / refcount_bits(); }
};

// L1 entries needed to map `size` bytes with `cluster_bits` (and extended L2 entries).
uint64_t L1EntriesFor(uint64_t size, uint32_t cluster_bits, bool extended_l2 = false);

// Parses and validates cluster 0 of `path` (`data` is its first min(cluster, file) bytes;
// `file_size` is the image file's size). Errors name the file and the field.
Result<Header> ParseHeader(std::span<const uint8_t> data, uint64_t file_size,
                           const std::string& path);

// Serializes header, extensions and backing name (cluster 0 contents). Fails if it does not
// fit in one cluster. Updates backing_file_offset/size and header_length in `header`.
Result<std::vector<uint8_t>> SerializeHeader(Header& header);

// Big-endian helpers.
inline uint64_t Be64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}
inline uint32_t Be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
inline uint16_t Be16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
inline void PutBe64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
inline void PutBe32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
inline void PutBe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

// Byte offsets of header fields that are rewritten in place.
constexpr uint64_t kOffL1Size = 36;         // l1_size (4) + l1_table_offset (8)
constexpr uint64_t kOffRefcountTable = 48;  // offset (8) + clusters (4)
constexpr uint64_t kOffSnapshots = 60;      // nb_snapshots (4) + snapshots_offset (8)
constexpr uint64_t kOffIncompat = 72;
constexpr uint64_t kOffAutoclear = 88;
constexpr uint64_t kOffSize = 24;

}  // namespace kite::storage::qcow2
