// VMDK header, marker and descriptor parsing (see vmdk_format.h). Field offsets are those of
// the packed little-endian SparseExtentHeader in VMware's "Virtual Disk Format 5.0", 4.1.
#include "storage/img/vmdk_format.h"

#include <cstring>
#include <vector>

namespace kite::img {
namespace {

template <typename T>
T LoadLe(std::span<const uint8_t> bytes, size_t offset) {
  T v;
  std::memcpy(&v, bytes.data() + offset, sizeof(T));  // x86_64 is little-endian
  return v;
}

bool IsPowerOfTwo(uint64_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}

Error Bad(std::string_view where, const std::string& what) {
  return Err(std::string(where) + ": invalid VMDK header: " + what);
}

constexpr uint32_t kKnownFlags = kVmdkFlagNewlineTest | kVmdkFlagRedundantGt | kVmdkFlagZeroedGte |
                                 kVmdkFlagCompressed | kVmdkFlagMarkers;

Result<void> CheckFlags(const VmdkHeader& h, std::span<const uint8_t> s, std::string_view where) {
  if (h.flags & ~kKnownFlags) {
    return Bad(where, "unknown flags 0x" + std::to_string(h.flags & ~kKnownFlags) +
                          " (known: newline test, redundant GT, zeroed GTE, compressed, markers)");
  }
  if (h.flags & kVmdkFlagNewlineTest) {
    if (s[73] != '\n' || s[74] != ' ' || s[75] != '\r' || s[76] != '\n') {
      return Bad(where, "newline detection characters damaged (file transferred as text?)");
    }
  }
  if (h.compressed() && h.compress_algorithm != kVmdkCompressDeflate) {
    return Bad(where, "compressAlgorithm " + std::to_string(h.compress_algorithm) +
                          " unsupported (expected 1, deflate)");
  }
  if (!h.compressed() && h.compress_algorithm != 0) {
    return Bad(where, "compressAlgorithm set but the compressed-grains flag is clear");
  }
  if (h.markers() && !h.compressed()) {
    return Bad(where, "markers flag without compressed grains is not supported");
  }
  if (h.compressed() && !h.markers()) {
    return Bad(where, "compressed grains without markers are not supported");
  }
  return {};
}

Result<void> CheckGeometry(const VmdkHeader& h, std::string_view where) {
  if (h.capacity_sectors == 0 || h.capacity_sectors > kVmdkMaxCapacitySectors) {
    return Bad(where, "capacity " + std::to_string(h.capacity_sectors) + " sectors (expected 1.." +
                          std::to_string(kVmdkMaxCapacitySectors) + ")");
  }
  if (!IsPowerOfTwo(h.grain_sectors) || h.grain_sectors > kVmdkMaxGrainSectors) {
    return Bad(where, "grainSize " + std::to_string(h.grain_sectors) +
                          " sectors (expected a power of two up to " +
                          std::to_string(kVmdkMaxGrainSectors) + ")");
  }
  if (h.gtes_per_gt == 0 || h.gtes_per_gt > kVmdkMaxGtesPerGt) {
    return Bad(where, "numGTEsPerGT " + std::to_string(h.gtes_per_gt) + " (expected 1..512)");
  }
  if (h.gd_entries() * 4 > kVmdkMaxGdBytes) {
    return Bad(where,
               "grain directory of " + std::to_string(h.gd_entries()) + " entries is too large");
  }
  if (h.gd_offset == 0) return Bad(where, "gdOffset 0 overlaps the header");
  if (h.descriptor_size > kVmdkMaxDescriptorSectors) {
    return Bad(where, "descriptorSize " + std::to_string(h.descriptor_size) +
                          " sectors is too large (at most 2048)");
  }
  if ((h.descriptor_offset == 0) != (h.descriptor_size == 0)) {
    return Bad(where, "descriptorOffset and descriptorSize must both be zero or both be set");
  }
  return {};
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string_view Unquote(std::string_view s) {
  s = Trim(s);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

// "RW 20480 SPARSE "name.vmdk"" -> sectors; refuses other access modes and extent types.
Result<uint64_t> ParseExtentLine(std::string_view line, std::string_view where) {
  std::vector<std::string_view> words;
  while (!(line = Trim(line)).empty() && words.size() < 3) {
    size_t end = line.find_first_of(" \t");
    words.push_back(line.substr(0, end));
    line = end == std::string_view::npos ? std::string_view() : line.substr(end);
  }
  if (words.size() < 3) return Err(std::string(where) + ": malformed VMDK extent line");
  uint64_t sectors = 0;
  for (char c : words[1]) {
    if (c < '0' || c > '9' || sectors > kVmdkMaxCapacitySectors) {
      return Err(std::string(where) + ": bad extent size '" + std::string(words[1]) + "'");
    }
    sectors = sectors * 10 + static_cast<uint64_t>(c - '0');
  }
  if (words[2] != "SPARSE") {
    return Err(std::string(where) + ": VMDK extent type '" + std::string(words[2]) +
               "' is not supported (only one embedded SPARSE extent)");
  }
  return sectors;
}

}  // namespace

Result<VmdkHeader> ParseVmdkHeader(std::span<const uint8_t> s, std::string_view where) {
  if (s.size() < 512) return Bad(where, "shorter than one sector");
  if (LoadLe<uint32_t>(s, 0) != kVmdkMagic) return Bad(where, "magic is not KDMV");
  VmdkHeader h;
  h.version = LoadLe<uint32_t>(s, 4);
  h.flags = LoadLe<uint32_t>(s, 8);
  h.capacity_sectors = LoadLe<uint64_t>(s, 12);
  h.grain_sectors = LoadLe<uint64_t>(s, 20);
  h.descriptor_offset = LoadLe<uint64_t>(s, 28);
  h.descriptor_size = LoadLe<uint64_t>(s, 36);
  h.gtes_per_gt = LoadLe<uint32_t>(s, 44);
  h.gd_offset = LoadLe<uint64_t>(s, 56);
  h.compress_algorithm = LoadLe<uint16_t>(s, 77);
  if (h.version < 1 || h.version > 3) {
    return Bad(where, "version " + std::to_string(h.version) + " unsupported (expected 1..3)");
  }
  TRY(CheckFlags(h, s, where));
  TRY(CheckGeometry(h, where));
  return h;
}

VmdkMarker ParseVmdkMarker(std::span<const uint8_t, 16> b) {
  VmdkMarker m;
  m.value = LoadLe<uint64_t>(b, 0);
  m.size = LoadLe<uint32_t>(b, 8);
  m.type = LoadLe<uint32_t>(b, 12);
  return m;
}

Result<VmdkDescriptor> ParseVmdkDescriptor(std::string_view text, std::string_view where) {
  text = text.substr(0, text.find('\0'));
  VmdkDescriptor d;
  int extents = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = Trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    if (line.starts_with("RW ") || line.starts_with("RDONLY ") || line.starts_with("NOACCESS ")) {
      d.extent_sectors = TRY(ParseExtentLine(line, where));
      ++extents;
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view key = Trim(line.substr(0, eq));
    std::string_view value = Unquote(line.substr(eq + 1));
    if (key == "createType") d.create_type = value;
    if (key == "parentCID" && value != "ffffffff") {
      return Err(std::string(where) + ": VMDK has a parent (parentCID " + std::string(value) +
                 "): delta links are not supported");
    }
  }
  if (d.create_type != "monolithicSparse" && d.create_type != "streamOptimized") {
    return Err(std::string(where) + ": VMDK createType '" + d.create_type +
               "' is not supported (expected monolithicSparse or streamOptimized)");
  }
  if (extents != 1) {
    return Err(std::string(where) + ": VMDK descriptor lists " + std::to_string(extents) +
               " extents (expected exactly one)");
  }
  return d;
}

}  // namespace kite::img
