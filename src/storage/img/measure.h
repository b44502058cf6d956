// kite-img measure: how large a new image will be, computed as qemu-img measure does
// (qcow2: header + L1 + L2 + refcount metadata for the whole disk; "required" counts only
// the clusters the input's data touches).
#pragma once

#include <cstdint>

#include "base/result.h"
#include "storage/disk_image.h"

namespace kite::img {

// Bytes of refcount table and blocks needed to count `clusters` host clusters, including the
// refcount metadata itself (the fixed point of that recursion).
uint64_t Qcow2RefcountMetadataSize(uint64_t clusters, uint64_t cluster_size, int refcount_bits);

// The file size of a fully preallocated qcow2 image of `virtual_size` bytes.
uint64_t Qcow2FullyAllocatedSize(uint64_t virtual_size, uint64_t cluster_size, int refcount_bits,
                                 bool extended_l2 = false);

// Guest clusters of `cluster_size` that hold data (not zero) in `image` and its chain, in bytes.
Result<uint64_t> DataClusterBytes(storage::DiskImage& image, uint64_t cluster_size);

}  // namespace kite::img
