// Sparse writing and lazy MAP_PRIVATE mapping of the snapshot memory file. See memory_file.h.
#include "vmm/snapshot/memory_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/unique_fd.h"
#include "base/units.h"

namespace kite::snapshot {
namespace {

using json = nlohmann::json;

// Large writes amortise the system call; runs longer than this are split.
constexpr uint64_t kMaxWriteChunk = 8ull << 20;
// A sanity bound on the number of regions a state may describe.
constexpr size_t kMaxRegions = 64;

// A uint64_t that may alias any guest byte.
using WordAlias = uint64_t __attribute__((may_alias, aligned(8)));

Result<void> PwriteAll(int fd, const uint8_t* data, uint64_t len, uint64_t offset,
                       MemoryWriteStats& stats) {
  while (len > 0) {
    size_t chunk = static_cast<size_t>(std::min(len, kMaxWriteChunk));
    ssize_t n = ::pwrite(fd, data, chunk, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysErr("writing guest memory at file offset " + std::to_string(offset));
    if (n == 0) return Err("writing guest memory: no progress at offset " + std::to_string(offset));
    ++stats.writes;
    stats.data_bytes += static_cast<uint64_t>(n);
    data += n;
    len -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return {};
}

// Writes the non-zero pages of one region, in runs.
Result<void> WriteRegion(int fd, const MemoryRegion& region, uint64_t file_offset,
                         MemoryWriteStats& stats) {
  const uint64_t pages = region.size / kMemoryPageSize;
  uint64_t run_start = 0, run_len = 0;  // in pages
  for (uint64_t p = 0; p <= pages; ++p) {
    bool zero = p == pages || IsZeroPage(region.host + p * kMemoryPageSize);
    if (!zero && run_len * kMemoryPageSize < kMaxWriteChunk) {
      if (run_len == 0) run_start = p;
      ++run_len;
      continue;
    }
    if (run_len > 0) {
      TRY(PwriteAll(fd, region.host + run_start * kMemoryPageSize, run_len * kMemoryPageSize,
                    file_offset + run_start * kMemoryPageSize, stats));
    }
    run_len = 0;
    if (zero) {
      if (p < pages) ++stats.zero_pages;
    } else {  // the run was full: this page starts the next one
      run_start = p;
      run_len = 1;
    }
  }
  return {};
}

Result<uint64_t> Member(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) return Err(where + "." + key + ": missing");
  // JSON text parses as unsigned; values built in code may be signed.
  bool ok = it->is_number_unsigned() || (it->is_number_integer() && it->get<int64_t>() >= 0);
  if (!ok) return Err(where + "." + key + ": expected an unsigned integer");
  return it->get<uint64_t>();
}

Result<MemoryFileRegion> RegionFromJson(const json& v, const std::string& where) {
  if (!v.is_object() || v.size() != 3) {
    return Err(where + ": expected an object {\"gpa\", \"size\", \"offset\"}");
  }
  MemoryFileRegion r;
  r.gpa = TRY(Member(v, "gpa", where));
  r.size = TRY(Member(v, "size", where));
  r.offset = TRY(Member(v, "offset", where));
  if (r.gpa % kMemoryPageSize || r.size % kMemoryPageSize || r.offset % kMemoryPageSize) {
    return Err(where + ": gpa, size and offset must be multiples of 4096");
  }
  if (r.size == 0) return Err(where + ".size: must not be zero");
  if (r.gpa + r.size < r.gpa) return Err(where + ": gpa + size wraps around");
  return r;
}

}  // namespace

bool IsZeroPage(const uint8_t* page) {
  const auto* words = reinterpret_cast<const WordAlias*>(page);
  constexpr size_t kWords = kMemoryPageSize / sizeof(uint64_t);
  // 64-byte blocks OR-ed together (vectorises), stopping at the first non-zero block.
  for (size_t i = 0; i < kWords; i += 8) {
    uint64_t acc = words[i] | words[i + 1] | words[i + 2] | words[i + 3] | words[i + 4] |
                   words[i + 5] | words[i + 6] | words[i + 7];
    if (acc != 0) return false;
  }
  return true;
}

Result<MemoryFileLayout> WriteMemoryFile(int fd, std::span<const MemoryRegion> regions,
                                         MemoryWriteStats* stats) {
  MemoryWriteStats local;
  MemoryWriteStats& st = stats != nullptr ? *stats : local;
  MemoryFileLayout layout;
  for (const MemoryRegion& r : regions) {
    if (r.size == 0 || r.size % kMemoryPageSize != 0 || r.host == nullptr) {
      return Err("guest memory region at 0x" + ToHex(r.guest_base.value) +
                 " is not a whole number of 4 KiB pages");
    }
    layout.regions.push_back({r.guest_base.value, r.size, layout.file_size});
    layout.file_size += r.size;
  }
  if (::ftruncate(fd, static_cast<off_t>(layout.file_size)) < 0) {
    return SysErr("sizing the memory file to " + std::to_string(layout.file_size) + " bytes");
  }
  for (size_t i = 0; i < regions.size(); ++i) {
    TRY(WriteRegion(fd, regions[i], layout.regions[i].offset, st));
  }
  if (::fsync(fd) < 0) return SysErr("fsync of the memory file");
  return layout;
}

json MemoryLayoutToJson(const MemoryFileLayout& layout) {
  json regions = json::array();
  for (const MemoryFileRegion& r : layout.regions) {
    regions.push_back({{"gpa", r.gpa}, {"size", r.size}, {"offset", r.offset}});
  }
  return {{"size", layout.file_size}, {"regions", std::move(regions)}};
}

Result<MemoryFileLayout> MemoryLayoutFromJson(const json& value) {
  if (!value.is_object()) return Err("memory: expected an object {\"size\", \"regions\"}");
  for (auto it = value.begin(); it != value.end(); ++it) {
    if (it.key() != "size" && it.key() != "regions") {
      return Err("memory: unknown member '" + it.key() + "'");
    }
  }
  MemoryFileLayout layout;
  layout.file_size = TRY(Member(value, "size", "memory"));
  auto regions = value.find("regions");
  if (regions == value.end() || !regions->is_array() || regions->empty() ||
      regions->size() > kMaxRegions) {
    return Err("memory.regions: expected an array of 1 to " + std::to_string(kMaxRegions) +
               " regions");
  }
  uint64_t next_offset = 0;
  for (size_t i = 0; i < regions->size(); ++i) {
    std::string where = "memory.regions[" + std::to_string(i) + "]";
    MemoryFileRegion r = TRY(RegionFromJson((*regions)[i], where));
    if (r.offset != next_offset) {
      return Err(where + ".offset: expected " + std::to_string(next_offset) +
                 " (regions are stored one after another)");
    }
    if (i > 0 && layout.regions.back().gpa + layout.regions.back().size > r.gpa) {
      return Err(where + ".gpa: regions must be sorted and must not overlap");
    }
    next_offset = r.offset + r.size;
    if (next_offset < r.offset) return Err(where + ": offset + size wraps around");
    layout.regions.push_back(r);
  }
  if (next_offset != layout.file_size) {
    return Err("memory.size: " + std::to_string(layout.file_size) +
               " is not the sum of the region sizes (" + std::to_string(next_offset) + ")");
  }
  return layout;
}

Result<void> LoadMemoryFile(const std::string& path, const MemoryFileLayout& layout,
                            const GuestMemory& memory) {
  std::span<const MemoryRegion> regions = memory.regions();
  bool same = regions.size() == layout.regions.size();
  for (size_t i = 0; same && i < regions.size(); ++i) {
    same = regions[i].guest_base.value == layout.regions[i].gpa &&
           regions[i].size == layout.regions[i].size;
  }
  if (!same) return Err("memory file " + path + ": its regions are not the guest's RAM layout");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return SysErr("opening memory file " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return SysErr("stat of memory file " + path);
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != layout.file_size) {
    return Err("memory file " + path + ": not a regular file of " +
               std::to_string(layout.file_size) + " bytes");
  }
  for (size_t i = 0; i < regions.size(); ++i) {
    uint64_t done = 0;
    while (done < regions[i].size) {
      size_t chunk = static_cast<size_t>(std::min<uint64_t>(regions[i].size - done, 1ull << 30));
      ssize_t got = ::pread(fd.get(), regions[i].host + done, chunk,
                            static_cast<off_t>(layout.regions[i].offset + done));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return SysErr("reading memory file " + path);
      if (got == 0) return Err("memory file " + path + ": shorter than its regions");
      done += static_cast<uint64_t>(got);
    }
  }
  return {};
}

Result<GuestMemory> MapMemoryFile(const std::string& path, const MemoryFileLayout& layout) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return SysErr("opening memory file " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return SysErr("stat of memory file " + path);
  if (!S_ISREG(st.st_mode)) return Err("memory file " + path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) != layout.file_size) {
    return Err("memory file " + path + ": " + std::to_string(st.st_size) +
               " bytes, the snapshot state expects " + std::to_string(layout.file_size) +
               " (truncated or from another snapshot)");
  }
  std::vector<MemoryRegion> mapped;
  for (const MemoryFileRegion& r : layout.regions) {
    if (r.offset + r.size < r.offset || r.offset + r.size > layout.file_size) {
      (void)GuestMemory::FromMappings(std::move(mapped), "");  // unmaps
      return Err("memory file " + path + ": a region lies beyond the end of the file");
    }
    void* host = ::mmap(nullptr, r.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE,
                        fd.get(), static_cast<off_t>(r.offset));
    if (host == MAP_FAILED) {
      Error error = SysErr("mapping " + std::to_string(r.size) + " bytes of " + path);
      (void)GuestMemory::FromMappings(std::move(mapped), "");  // unmaps
      return error;
    }
    mapped.push_back({GuestAddr(r.gpa), r.size, static_cast<uint8_t*>(host)});
  }
  return GuestMemory::FromMappings(std::move(mapped), path);
}

}  // namespace kite::snapshot
