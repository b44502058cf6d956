// The snapshot's memory file: guest RAM regions one after another in one raw file, written
// sparsely (all-zero 4 KiB pages stay holes) and mapped back lazily with MAP_PRIVATE (reads
// fault in from the page cache, writes copy on write). docs/SNAPSHOTS.md "Memory file and
// lazy restore".
//
//   // save (the VM paused; `fd` a fresh empty file):
//   MemoryFileLayout layout = TRY(WriteMemoryFile(fd, memory.regions()));
//   body["memory"] = MemoryLayoutToJson(layout);
//   // restore:
//   MemoryFileLayout layout = TRY(MemoryLayoutFromJson(body["memory"]));
//   GuestMemory memory = TRY(MapMemoryFile(dir + "/memory", layout));
//
// Every page is written as it reads now, whatever backs it: after a MAP_PRIVATE restore the
// pages the guest never wrote are file-backed, and a writer that skipped them would lose them
// (Cloud Hypervisor PR #1890).
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "vmm/guest_memory.h"

namespace kite::snapshot {

inline constexpr uint64_t kMemoryPageSize = 4096;

// One guest RAM region stored at `offset` in the memory file.
struct MemoryFileRegion {
  uint64_t gpa = 0;
  uint64_t size = 0;
  uint64_t offset = 0;
  bool operator==(const MemoryFileRegion&) const = default;
};

struct MemoryFileLayout {
  std::vector<MemoryFileRegion> regions;  // by gpa, offsets contiguous from 0
  uint64_t file_size = 0;                 // the sum of the region sizes
  bool operator==(const MemoryFileLayout&) const = default;
};

struct MemoryWriteStats {
  uint64_t data_bytes = 0;  // bytes written (non-zero pages)
  uint64_t zero_pages = 0;  // pages left as holes
  uint64_t writes = 0;      // pwrite calls
};

// Writes `regions` (each a multiple of 4 KiB) to `fd`, which must be an empty regular file:
// ftruncate to the full size, then only runs of non-zero pages; fsyncs. `stats` may be null.
Result<MemoryFileLayout> WriteMemoryFile(int fd, std::span<const MemoryRegion> regions,
                                         MemoryWriteStats* stats = nullptr);

// The state's "memory" member: {"size": N, "regions": [{"gpa", "size", "offset"}, ...]}.
nlohmann::json MemoryLayoutToJson(const MemoryFileLayout& layout);
// Checks everything: page-aligned, sorted, non-overlapping, contiguous offsets, sizes add up.
// Errors name the member ("memory.regions[1].offset: ...").
Result<MemoryFileLayout> MemoryLayoutFromJson(const nlohmann::json& value);

// Maps `layout` from the file at `path`, each region PROT_READ|PROT_WRITE,
// MAP_PRIVATE|MAP_NORESERVE. The file's size must equal layout.file_size (checked with fstat
// before any mmap: a short file would SIGBUS later, F12); the file is never read here. The
// result owns the mappings and remembers `path` (GuestMemory::backing_path(), for C13).
// The file must stay unchanged while the memory lives.
Result<GuestMemory> MapMemoryFile(const std::string& path, const MemoryFileLayout& layout);

// Copies the file into `memory` (RAM made as at boot: huge pages, preallocated or shared),
// whose regions must be the layout's (same addresses and sizes).
Result<void> LoadMemoryFile(const std::string& path, const MemoryFileLayout& layout,
                            const GuestMemory& memory);

// True when the 4 KiB page at `page` holds only zeros.
bool IsZeroPage(const uint8_t* page);

}  // namespace kite::snapshot
