// Writing VMDK images: the streamOptimized subformat VMware and OVA import expect, made by
// `kite-img convert -O vmdk -o subformat=streamOptimized` and `kite-img create -f vmdk`.
//
// The file is one sequential stream, never rewritten (VMware "Virtual Disk Format 5.0",
// stream-optimized compressed sparse extents): the header (gdOffset = GD_AT_END), the embedded
// descriptor, then from sector 128 each grain holding data as a grain marker (LBA, size) and
// its deflate (zlib) stream, each grain table behind a GT marker once the stream has passed its
// grains, the grain directory behind a GD marker, the footer marker and footer (the header with
// gdOffset set) and the end-of-stream marker. Grains reading as zeros are not written, nor are
// grain tables with no grain.
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
  std::string subformat = "monolithicSparse";  // qemu-img's default; kite writes streamOptimized
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
std::string VmdkStreamDescriptor(const VmdkCreateOptions& options, uint64_t capacity_sectors,
                                 const std::string& basename, uint32_t cid);

// An output stream: a DiskImage that takes writes in disk order only (each at or after the end
// of the previous one; what is skipped reads as zeros), buffers the current grain and appends
// it once a write moves past it. Reads, block status and discards are refused. Finish() writes
// the last grain and the metadata; without it the file is not a valid VMDK.
class VmdkStreamWriter : public storage::DiskImage {
 public:
  // Creates (truncates) `path` and writes the header and descriptor.
  static Result<std::unique_ptr<VmdkStreamWriter>> Create(const std::string& path, uint64_t size,
                                                          const VmdkCreateOptions& options);
  // Writes what is buffered, the grain tables, the grain directory, the footer and the
  // end-of-stream marker; `sync`: fdatasync the file. Writes fail afterwards.
  virtual Result<void> Finish(bool sync) = 0;
};

}  // namespace kite::img
