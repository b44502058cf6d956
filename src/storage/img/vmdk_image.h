// VmdkImage: a read-only DiskImage over a VMware hosted sparse VMDK, for `kite-img convert
// -f vmdk` and `info`/`map`/`compare`. Two variants, as VMware and qemu-img write them:
//   monolithicSparse  header, embedded descriptor, grain directory and tables, raw grains;
//   streamOptimized   deflate-compressed grains behind markers; the grain directory may be
//                     in a footer at the end of the file (gdOffset = GD_AT_END).
// No parents (delta links), no split or flat extents, no writes.
//
// Threads: ReadV/BlockStatus may run concurrently; the grain-table cache has its own lock.
// Every table entry is checked before use: a grain outside the file, a marker for the wrong
// LBA or a deflate stream that is truncated or longer than a grain fails that read (IOERR)
// with a message naming the file and the grain.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "storage/disk_image.h"

namespace kite::img {

// Opens `path` as a VMDK; options.read_only is implied, other options are ignored.
Result<std::unique_ptr<storage::DiskImage>> OpenVmdk(const std::string& path);

}  // namespace kite::img
