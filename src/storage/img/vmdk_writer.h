// Writing VMDK images, as qemu-img writes them: the streamOptimized subformat VMware and OVA
// import expect, and monolithicSparse (qemu-img's default), made by `kite-img convert -O vmdk`
// and `kite-img create -f vmdk`.
//
// streamOptimized is one sequential stream, never rewritten (VMware "Virtual Disk Format 5.0",
// stream-optimized compressed sparse extents): the header (gdOffset = GD_AT_END), the embedded
// descriptor, then from sector 128 each grain holding data as a grain marker (LBA, size) and
// its deflate (zlib) stream, each grain table behind a GT marker once the stream has passed its
// grains, the grain directory behind a GD marker, the footer marker and footer (the header with
// gdOffset set) and the end-of-stream marker. Grain tables with no grain are not written.
// monolithicSparse has qemu-img's layout: header, descriptor, redundant and primary grain
// directories with all their tables preallocated, then the grains uncompressed; a table is
// written into its two places once the grains move past it. In both, grains reading as zeros
// are not written.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "storage/disk_image.h"

namespace kite::img {

inline constexpr uint64_t kVmdkWriteGrainSectors = 128;  // 64 KiB grains, as qemu-img

// -o options of a VMDK output, as qemu-img's (`qemu-img create -f vmdk -o help`); parsed and
// checked by BuildCreateSpec (create_spec.h).
struct VmdkCreateOptions {
  std::string subformat = "monolithicSparse";  // qemu-img's default
  bool subformat_given = false;
  std::string adapter_type = "ide";  // ide, lsilogic, buslogic, legacyESX
  bool adapter_type_given = false;
  std::string hwversion;  // empty: "4", or "6" with compat6
  bool compat6 = false;
  std::string toolsversion;  // empty: qemu-img's "2147483647"
  bool zeroed_grain = false;
  bool zeroed_grain_given = false;
};

// The embedded descriptor qemu-img writes for `capacity_sectors` in file `basename`.
std::string VmdkDescriptorText(const VmdkCreateOptions& options, uint64_t capacity_sectors,
                               const std::string& basename, uint32_t cid);

// An output: a DiskImage that takes writes in disk order only (each at or after the end
// of the previous one; what is skipped reads as zeros), buffers the current grain and appends
// it once a write moves past it. Reads, block status and discards are refused. Finish() writes
// the last grain and the metadata; without it the file is not a valid VMDK.
class VmdkWriter : public storage::DiskImage {
 public:
  // Creates (truncates) `path` and writes the header, descriptor and (monolithicSparse) grain
  // directories. options.subformat: streamOptimized or monolithicSparse.
  static Result<std::unique_ptr<VmdkWriter>> Create(const std::string& path, uint64_t size,
                                                    const VmdkCreateOptions& options);
  // Writes what is buffered and the grain tables (a stream: also the grain directory, the
  // footer and the end-of-stream marker); `sync`: fdatasync the file. Writes fail afterwards.
  virtual Result<void> Finish(bool sync) = 0;
};

}  // namespace kite::img
