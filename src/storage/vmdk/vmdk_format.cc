// VMDK header, marker and descriptor parsing (see vmdk_format.h). Field offsets are those of
// the packed little-endian SparseExtentHeader in VMware's "Virtual Disk Format 5.0", 4.1.
#include "storage/vmdk/vmdk_format.h"

#include <cstring>
#include <vector>

namespace kite::storage {
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

Error BadLine(std::string_view where, std::string_view line, const std::string& what) {
  return Err(std::string(where) + ": VMDK extent line '" + std::string(line) + "': " + what);
}

// Takes the next blank-separated word off `line`.
std::string_view NextWord(std::string_view& line) {
  line = Trim(line);
  size_t end = line.find_first_of(" \t");
  std::string_view word = line.substr(0, end);
  line = end == std::string_view::npos ? std::string_view() : line.substr(end);
  return word;
}

Result<uint64_t> ParseSectors(std::string_view word, std::string_view where, std::string_view line,
                              const char* field) {
  if (word.empty()) return BadLine(where, line, std::string("no ") + field);
  uint64_t v = 0;
  for (char c : word) {
    if (c < '0' || c > '9' || v > kVmdkMaxCapacitySectors) {
      return BadLine(where, line, std::string("bad ") + field + " '" + std::string(word) + "'");
    }
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > kVmdkMaxCapacitySectors) return BadLine(where, line, std::string(field) + " too large");
  return v;
}

// RW 20480 FLAT "name-flat.vmdk" 0 | RW 20480 VMFS "name.vmdk" | RW 20480 SPARSE "name.vmdk"
Result<VmdkExtentLine> ParseExtentLine(std::string_view line, std::string_view where) {
  std::string_view rest = line;
  std::string_view access = NextWord(rest);
  if (access == "NOACCESS") return BadLine(where, line, "NOACCESS extents cannot be read");
  VmdkExtentLine e;
  e.sectors = TRY(ParseSectors(NextWord(rest), where, line, "extent size"));
  if (e.sectors == 0) return BadLine(where, line, "extent size 0");
  std::string_view type = NextWord(rest);
  rest = Trim(rest);
  if (rest.size() < 2 || rest.front() != '"') return BadLine(where, line, "no quoted file name");
  size_t close = rest.find('"', 1);
  if (close == std::string_view::npos || close == 1) {
    return BadLine(where, line, "file name empty or not closed by a quote");
  }
  e.file = std::string(rest.substr(1, close - 1));
  std::string_view offset = Trim(rest.substr(close + 1));
  if (type == "FLAT") {
    e.kind = VmdkExtentKind::kFlat;
    e.flat_offset = TRY(ParseSectors(offset, where, line, "FLAT offset"));
  } else if (type == "VMFS" || type == "SPARSE") {
    e.kind = type == "VMFS" ? VmdkExtentKind::kFlat : VmdkExtentKind::kSparse;
    if (!offset.empty()) return BadLine(where, line, "no offset expected after the file name");
  } else {
    return BadLine(where, line,
                   "extent type '" + std::string(type) +
                       "' is not supported (kite reads FLAT, VMFS and SPARSE extents)");
  }
  return e;
}

// Every line of a descriptor: createType, the extents, parentCID checked.
Result<VmdkDescriptor> ParseDescriptorLines(std::string_view text, std::string_view where) {
  text = text.substr(0, text.find('\0'));
  VmdkDescriptor d;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = Trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    if (line.starts_with("RW ") || line.starts_with("RDONLY ") || line.starts_with("NOACCESS ")) {
      if (d.extents.size() >= kVmdkMaxExtents) {
        return Err(std::string(where) + ": VMDK descriptor lists more than " +
                   std::to_string(kVmdkMaxExtents) + " extents");
      }
      d.extents.push_back(TRY(ParseExtentLine(line, where)));
      if (d.total_sectors() > kVmdkMaxCapacitySectors) {
        return Err(std::string(where) + ": VMDK extents add up to more than 64 TiB");
      }
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
  return d;
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
  VmdkDescriptor d = TRY(ParseDescriptorLines(text, where));
  if (d.create_type != "monolithicSparse" && d.create_type != "streamOptimized") {
    return Err(std::string(where) + ": VMDK createType '" + d.create_type +
               "' is not supported (expected monolithicSparse or streamOptimized)");
  }
  if (d.extents.size() != 1 || d.extents[0].kind != VmdkExtentKind::kSparse) {
    return Err(std::string(where) + ": VMDK descriptor lists " + std::to_string(d.extents.size()) +
               " extents (expected exactly one SPARSE extent)");
  }
  return d;
}

Result<VmdkDescriptor> ParseVmdkDescriptorFile(std::string_view text, std::string_view where) {
  VmdkDescriptor d = TRY(ParseDescriptorLines(text, where));
  if (d.create_type != "monolithicFlat" && d.create_type != "vmfs" &&
      d.create_type != "twoGbMaxExtentSparse" && d.create_type != "twoGbMaxExtentFlat") {
    return Err(std::string(where) + ": VMDK descriptor file createType '" + d.create_type +
               "' is not supported (expected monolithicFlat, vmfs, twoGbMaxExtentSparse or "
               "twoGbMaxExtentFlat)");
  }
  if (d.extents.empty()) return Err(std::string(where) + ": VMDK descriptor lists no extents");
  return d;
}

bool LooksLikeVmdkDescriptor(std::string_view head) {
  while (!head.empty()) {
    size_t nl = head.find('\n');
    std::string_view line = Trim(head.substr(0, nl));
    if (nl == std::string_view::npos) return false;  // a line cut off by the probe's size
    head = nl == std::string_view::npos ? std::string_view() : head.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    return line == "version=1" || line == "version=2" || line == "version=3";
  }
  return false;
}

}  // namespace kite::storage
