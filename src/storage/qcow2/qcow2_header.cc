// qcow2 header parsing, validation and serialization. Messages follow QEMU's where QEMU has
// one (iotests 080 and friends), prefixed with the file name.
#include "storage/qcow2/qcow2_header.h"

#include <algorithm>
#include <set>

namespace kite::storage::qcow2 {
namespace {

Error Bad(const std::string& path, const std::string& what) {
  return Err(path + ": " + what);
}

bool Aligned(uint64_t v, uint64_t cluster) {
  return (v & (cluster - 1)) == 0;
}

// offset + len <= file_size without overflow.
bool WithinFile(uint64_t offset, uint64_t len, uint64_t file_size) {
  return offset <= file_size && len <= file_size - offset;
}

Result<void> ParseExtensions(std::span<const uint8_t> data, Header& h, const std::string& path) {
  uint64_t cs = h.cluster_size();
  uint64_t end = std::min<uint64_t>(cs, data.size());
  if (h.backing_file_offset != 0) end = std::min(end, h.backing_file_offset);
  uint64_t off = h.header_length;
  std::set<uint32_t> seen;
  while (true) {
    if (off >= end) return {};  // no room left for an end marker: QEMU stops here too
    if (off + 8 > end) return Bad(path, "Header extension too large");
    uint32_t type = Be32(&data[off]);
    uint32_t len = Be32(&data[off + 4]);
    off += 8;
    if (type == kExtEnd) return {};
    if (len > end - off) return Bad(path, "Header extension too large");
    if (!seen.insert(type).second) {
      return Bad(path, "Duplicate header extension 0x" + std::to_string(type));
    }
    std::vector<uint8_t> body(data.begin() + off, data.begin() + off + len);
    switch (type) {
      case kExtBackingFormat:
        if (len > 16) return Bad(path, "Backing format name too long");
        h.backing_format.assign(body.begin(), body.end());
        break;
      case kExtDataFile:
        if (len == 0 || len > kMaxBackingNameLength) {
          return Bad(path, "Invalid external data file name length (data file extension)");
        }
        h.data_file.assign(body.begin(), body.end());
        if (h.data_file.find('\0') != std::string::npos) {
          return Bad(path, "External data file name contains a NUL byte");
        }
        break;
      case kExtCrypto:
        return Bad(path, "Encrypted images are not supported");
      default:
        h.extensions.push_back({type, std::move(body)});
    }
    off += (uint64_t{len} + 7) & ~7ull;
  }
}

Result<void> ValidateTables(const Header& h, uint64_t file_size, const std::string& path) {
  uint64_t cs = h.cluster_size();
  if (h.size > kMaxVirtualSize) return Bad(path, "Image size too big (size field)");
  uint64_t l1_bytes = uint64_t{h.l1_size} * 8;
  if (l1_bytes > kMaxL1Bytes) return Bad(path, "Active L1 table too large (l1_size)");
  if (h.l1_size < L1EntriesFor(h.size, h.cluster_bits, h.extended_l2())) {
    return Bad(path, "L1 table is too small (l1_size)");
  }
  if (h.l1_size > 0 && (!Aligned(h.l1_table_offset, cs) || h.l1_table_offset == 0 ||
                        !WithinFile(h.l1_table_offset, l1_bytes, file_size))) {
    return Bad(path, "Invalid L1 table offset (l1_table_offset)");
  }
  if (h.refcount_table_clusters == 0) {
    return Bad(path, "Image does not contain a reference count table");
  }
  uint64_t rt_bytes = uint64_t{h.refcount_table_clusters} * cs;
  if (rt_bytes > kMaxRefcountTableBytes) {
    return Bad(path, "Reference count table too large (refcount_table_clusters)");
  }
  if (!Aligned(h.refcount_table_offset, cs) || h.refcount_table_offset == 0 ||
      !WithinFile(h.refcount_table_offset, rt_bytes, file_size)) {
    return Bad(path, "Invalid reference count table offset (refcount_table_offset)");
  }
  if (h.nb_snapshots > kMaxSnapshots) return Bad(path, "Too many snapshots (nb_snapshots)");
  if (h.nb_snapshots > 0 &&
      (!Aligned(h.snapshots_offset, cs) || h.snapshots_offset == 0 ||
       !WithinFile(h.snapshots_offset, uint64_t{h.nb_snapshots} * 40, file_size))) {
    return Bad(path, "Invalid snapshot table offset (snapshots_offset)");
  }
  return {};
}

Result<void> ParseV3Fields(std::span<const uint8_t> d, Header& h, const std::string& path) {
  if (d.size() < kV3HeaderLength) return Bad(path, "truncated qcow2 v3 header");
  h.incompatible_features = Be64(&d[72]);
  h.compatible_features = Be64(&d[80]);
  h.autoclear_features = Be64(&d[88]);
  h.refcount_order = Be32(&d[96]);
  h.header_length = Be32(&d[100]);
  if (h.header_length > h.cluster_size()) return Bad(path, "qcow2 header exceeds cluster size");
  if (h.header_length < kV3HeaderLength || h.header_length % 8 != 0) {
    return Bad(path, "qcow2 header too short or misaligned (header_length)");
  }
  if (h.header_length > d.size()) return Bad(path, "truncated qcow2 header (header_length)");
  if (h.header_length > kV3HeaderLength) h.compression_type = d[104];
  uint64_t unknown = h.incompatible_features & ~kIncompatKnown;
  if ((h.incompatible_features & kIncompatDataFile) &&
      (h.incompatible_features & kIncompatExtendedL2)) {
    return Bad(path, "External data files with extended L2 entries are not supported by kite");
  }
  if (unknown)
    return Bad(path,
               "Unsupported qcow2 feature(s): incompatible bits 0x" + std::to_string(unknown));
  bool has_type_bit = h.incompatible_features & kIncompatCompression;
  if (h.compression_type > 1) return Bad(path, "Unknown compression type (compression_type)");
  if (has_type_bit != (h.compression_type != 0)) {
    return Bad(path, "compression_type does not match the compression type feature bit");
  }
  if (h.extended_l2() && h.cluster_bits < kMinExtendedL2ClusterBits) {
    return Bad(path,
               "Extended L2 entries need a cluster size of at least 16384 bytes "
               "(cluster_bits)");
  }
  return {};
}

}  // namespace

uint64_t L1EntriesFor(uint64_t size, uint32_t cluster_bits, bool extended_l2) {
  uint64_t shift = cluster_bits + (cluster_bits - (extended_l2 ? 4 : 3));  // one L2 table maps
  if (shift >= 64) return size > 0 ? 1 : 0;
  uint64_t per = 1ull << shift;
  return size / per + (size % per != 0);
}

Result<Header> ParseHeader(std::span<const uint8_t> d, uint64_t file_size,
                           const std::string& path) {
  Header h;
  if (d.size() < 8 || Be32(&d[0]) != kMagic) return Bad(path, "Image is not in qcow2 format");
  h.version = Be32(&d[4]);
  if (h.version != 2 && h.version != 3) {
    return Bad(path, "Unsupported qcow2 version " + std::to_string(h.version));
  }
  if (d.size() < kV2HeaderLength) return Bad(path, "truncated qcow2 header");
  h.backing_file_offset = Be64(&d[8]);
  h.backing_file_size = Be32(&d[16]);
  h.cluster_bits = Be32(&d[20]);
  h.size = Be64(&d[24]);
  h.crypt_method = Be32(&d[32]);
  h.l1_size = Be32(&d[36]);
  h.l1_table_offset = Be64(&d[40]);
  h.refcount_table_offset = Be64(&d[48]);
  h.refcount_table_clusters = Be32(&d[56]);
  h.nb_snapshots = Be32(&d[60]);
  h.snapshots_offset = Be64(&d[64]);
  if (h.cluster_bits < kMinClusterBits || h.cluster_bits > kMaxClusterBits) {
    return Bad(path,
               "Unsupported cluster size: 2^" + std::to_string(h.cluster_bits) + " (cluster_bits)");
  }
  if (h.version == 2) {
    h.header_length = kV2HeaderLength;
  } else {
    TRY(ParseV3Fields(d, h, path));
  }
  if (h.crypt_method != 0) return Bad(path, "Encrypted images are not supported (crypt_method)");
  if (h.refcount_order > 6) return Bad(path, "Reference count entry width too large");
  if (h.version == 2 && h.refcount_order != 4) return Bad(path, "refcount_order must be 4 in v2");
  TRY(ValidateTables(h, file_size, path));
  if (h.backing_file_offset != 0) {
    if (h.backing_file_size > kMaxBackingNameLength) {
      return Bad(path, "Backing file name too long");
    }
    if (h.backing_file_offset < h.header_length ||
        h.backing_file_offset + h.backing_file_size >
            std::min<uint64_t>(h.cluster_size(), d.size())) {
      return Bad(path, "Invalid backing file offset (overlaps the header or leaves cluster 0)");
    }
    h.backing_file.assign(d.begin() + h.backing_file_offset,
                          d.begin() + h.backing_file_offset + h.backing_file_size);
    if (h.backing_file.find('\0') != std::string::npos) {
      return Bad(path, "Backing file name contains a NUL byte");
    }
  }
  TRY(ParseExtensions(d, h, path));
  return h;
}

Result<std::vector<uint8_t>> SerializeHeader(Header& h) {
  std::vector<uint8_t> out(h.version == 2 ? kV2HeaderLength : 112, 0);
  auto put_ext = [&out](uint32_t type, std::span<const uint8_t> body) {
    size_t at = out.size();
    out.resize(at + 8 + ((body.size() + 7) & ~size_t{7}), 0);
    PutBe32(&out[at], type);
    PutBe32(&out[at + 4], static_cast<uint32_t>(body.size()));
    std::copy(body.begin(), body.end(), out.begin() + at + 8);
  };
  h.header_length = static_cast<uint32_t>(out.size());
  if (!h.backing_format.empty()) {
    put_ext(kExtBackingFormat,
            {reinterpret_cast<const uint8_t*>(h.backing_format.data()), h.backing_format.size()});
  }
  if (!h.data_file.empty()) {
    put_ext(kExtDataFile,
            {reinterpret_cast<const uint8_t*>(h.data_file.data()), h.data_file.size()});
  }
  for (const HeaderExtension& e : h.extensions) put_ext(e.type, e.data);
  put_ext(kExtEnd, {});
  h.backing_file_size = static_cast<uint32_t>(h.backing_file.size());
  h.backing_file_offset = h.backing_file.empty() ? 0 : out.size();
  out.insert(out.end(), h.backing_file.begin(), h.backing_file.end());
  if (out.size() > h.cluster_size()) {
    return Err("qcow2 header, extensions and backing file name do not fit in one cluster");
  }
  PutBe32(&out[0], kMagic);
  PutBe32(&out[4], h.version);
  PutBe64(&out[8], h.backing_file_offset);
  PutBe32(&out[16], h.backing_file_size);
  PutBe32(&out[20], h.cluster_bits);
  PutBe64(&out[24], h.size);
  PutBe32(&out[32], h.crypt_method);
  PutBe32(&out[36], h.l1_size);
  PutBe64(&out[40], h.l1_table_offset);
  PutBe64(&out[48], h.refcount_table_offset);
  PutBe32(&out[56], h.refcount_table_clusters);
  PutBe32(&out[60], h.nb_snapshots);
  PutBe64(&out[64], h.snapshots_offset);
  if (h.version == 3) {
    PutBe64(&out[72], h.incompatible_features);
    PutBe64(&out[80], h.compatible_features);
    PutBe64(&out[88], h.autoclear_features);
    PutBe32(&out[96], h.refcount_order);
    PutBe32(&out[100], h.header_length);
    out[104] = h.compression_type;
  }
  return out;
}

}  // namespace kite::storage::qcow2
