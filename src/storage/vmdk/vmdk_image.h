// VmdkImage: a read-only DiskImage over a VMware hosted sparse VMDK, for `kite run` (a
// read-only disk, or the backing file of a qcow2 overlay: disk_image.cc) and for kite-img's
// `convert -f vmdk`, `info`, `map` and `compare`. Two variants, as VMware and qemu-img write them:
//   monolithicSparse  header, embedded descriptor, grain directory and tables, raw grains;
//   streamOptimized   deflate-compressed grains behind markers; the grain directory may be
//                     in a footer at the end of the file (gdOffset = GD_AT_END).
// Descriptor files with separate extents (monolithicFlat, vmfs, twoGbMaxExtentSparse,
// twoGbMaxExtentFlat) open through vmdk_extents.h. No parents (delta links), no writes.
//
// Threads: ReadV/BlockStatus may run concurrently; the grain-table cache has its own lock.
// Every table entry is checked before use: a grain outside the file, a marker for the wrong
// LBA or a deflate stream that is truncated or longer than a grain fails that read (IOERR)
// with a message naming the file and the grain.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "storage/disk_image.h"

namespace kite::storage {

// Opens `path` as a VMDK: a sparse file (KDMV header) or a descriptor file naming extents.
// Read-only.
Result<std::unique_ptr<DiskImage>> OpenVmdk(const std::string& path);

// The same over a file already opened, checked and locked (OpenImageFile: the VMM's
// OpenImage), `file_size` bytes long; the image keeps `fd`, so its lock lasts as long.
Result<std::unique_ptr<DiskImage>> OpenVmdk(const std::string& path, UniqueFd fd,
                                            uint64_t file_size);

}  // namespace kite::storage
