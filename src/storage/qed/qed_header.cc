// QED header parsing (see qed_header.h). Field offsets are those of QEMU's QEDHeader.
#include "storage/qed/qed_header.h"

#include <bit>
#include <cstring>

#include "base/units.h"

namespace kite::storage::qed {
namespace {

template <typename T>
T LoadLe(std::span<const uint8_t> bytes, size_t offset) {
  T v;
  std::memcpy(&v, bytes.data() + offset, sizeof(T));  // x86_64 is little-endian
  return v;
}

Error Bad(std::string_view path, const std::string& what) {
  return Err(std::string(path) + ": invalid QED header: " + what);
}

Result<void> CheckGeometry(const Header& h, std::string_view path) {
  if (!std::has_single_bit(h.cluster_size) || h.cluster_size < kMinClusterSize ||
      h.cluster_size > kMaxClusterSize) {
    return Bad(path, "cluster_size " + std::to_string(h.cluster_size) +
                         " (expected a power of two from 4096 to 67108864)");
  }
  if (!std::has_single_bit(h.table_size) || h.table_size < kMinTableSize ||
      h.table_size > kMaxTableSize) {
    return Bad(path, "table_size " + std::to_string(h.table_size) +
                         " (expected a power of two from 1 to 16 clusters)");
  }
  if (h.header_size == 0 || h.header_size > UINT32_MAX / h.cluster_size) {
    return Bad(path, "header_size " + std::to_string(h.header_size) +
                         " clusters (expected at least 1, at most 4 GiB of header)");
  }
  if (h.image_size % 512 != 0) {
    return Bad(path, "image_size " + std::to_string(h.image_size) + " is not a multiple of 512");
  }
  if (h.l1_entries_used() > h.table_entries()) {
    return Bad(path, "image_size " + std::to_string(h.image_size) +
                         " is larger than the tables can map (" +
                         std::to_string(h.table_entries()) + " L1 entries of " +
                         std::to_string(h.l2_coverage()) + " bytes each)");
  }
  if (h.l1_entries_used() * 8 > kMaxL1Bytes) {
    return Bad(path, "image_size " + std::to_string(h.image_size) +
                         " needs an L1 table larger than 32 MiB");
  }
  return {};
}

Result<void> CheckBackingName(const Header& h, uint64_t file_size, std::string_view path) {
  if (!h.has_backing()) return {};
  uint64_t end = uint64_t{h.backing_filename_offset} + h.backing_filename_size;
  if (h.backing_filename_size == 0 || h.backing_filename_size > kMaxBackingNameBytes) {
    return Bad(path, "backing_filename_size " + std::to_string(h.backing_filename_size) +
                         " (expected 1 to 1023 bytes)");
  }
  if (h.backing_filename_offset < kHeaderBytes || end > h.header_bytes() || end > file_size) {
    return Bad(path, "backing_filename_offset " + std::to_string(h.backing_filename_offset) +
                         " with size " + std::to_string(h.backing_filename_size) +
                         " is not inside the header cluster(s) after the 64-byte header");
  }
  return {};
}

}  // namespace

bool ValidClusterOffset(const Header& h, uint64_t offset, uint64_t clusters, uint64_t file_size) {
  if (offset % h.cluster_size != 0 || offset < h.header_bytes() || offset > file_size) return false;
  return clusters <= (file_size - offset) / h.cluster_size;
}

Result<Header> ParseHeader(std::span<const uint8_t> b, uint64_t file_size, std::string_view path) {
  if (b.size() < kHeaderBytes || file_size < kHeaderBytes) {
    return Bad(path, "the file is shorter than the 64-byte header");
  }
  if (LoadLe<uint32_t>(b, 0) != kMagic) return Bad(path, "magic is not QED\\0");
  Header h;
  h.cluster_size = LoadLe<uint32_t>(b, 4);
  h.table_size = LoadLe<uint32_t>(b, 8);
  h.header_size = LoadLe<uint32_t>(b, 12);
  h.features = LoadLe<uint64_t>(b, 16);
  h.compat_features = LoadLe<uint64_t>(b, 24);
  h.autoclear_features = LoadLe<uint64_t>(b, 32);
  h.l1_table_offset = LoadLe<uint64_t>(b, 40);
  h.image_size = LoadLe<uint64_t>(b, 48);
  h.backing_filename_offset = LoadLe<uint32_t>(b, 56);
  h.backing_filename_size = LoadLe<uint32_t>(b, 60);
  if (h.features & ~kKnownFeatures) {
    return Bad(path, "unknown features 0x" + ToHex(h.features & ~kKnownFeatures) +
                         " (known: backing file, need check, raw backing)");
  }
  TRY(CheckGeometry(h, path));
  if (!ValidClusterOffset(h, h.l1_table_offset, h.table_size, file_size)) {
    return Bad(path, "l1_table_offset " + std::to_string(h.l1_table_offset) +
                         " (expected cluster-aligned, after the header, the whole table of " +
                         std::to_string(h.table_bytes()) + " bytes inside the file of " +
                         std::to_string(file_size) + " bytes)");
  }
  TRY(CheckBackingName(h, file_size, path));
  return h;
}

}  // namespace kite::storage::qed
