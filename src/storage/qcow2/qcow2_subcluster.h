// Extended L2 entries (incompatible bit 4, QEMU docs/interop/qcow2.txt "Extended L2 Entries"):
// each L2 entry is 128 bits, the usual descriptor then a subcluster bitmap. A normal cluster is
// divided into 32 subclusters of cluster_size / 32 bytes; bit x of the bitmap says subcluster x
// is allocated (reads from the host cluster), bit 32 + x that it reads as zeros; a subcluster
// with neither reads from the backing file (or zeros). The descriptor's zero flag is not used;
// a compressed cluster has no subclusters (bitmap 0).
//
// Meta decodes an entry into a Mapping whose kind is uniform when every subcluster has the
// same status (kNormal, kZero, kUnallocated), else kMixed with the bitmap kept: readers cut
// their requests at subcluster runs (SubclusterRun). Writers keep writing classic 64-bit
// entries (ExtendedBitmapFor turns one into descriptor and bitmap), so kite allocates whole
// clusters: a write into a kMixed cluster fills its unallocated and zero subclusters and marks
// all 32 allocated.
#pragma once

#include <cstdint>
#include <string>

#include "storage/qcow2/qcow2_meta.h"

namespace kite::storage::qcow2 {

constexpr uint32_t kSubclusters = 32;
constexpr uint64_t kSubAllocAll = 0x00000000ffffffffull;
constexpr uint64_t kSubZeroAll = 0xffffffff00000000ull;

// The descriptor and bitmap an extended image stores for classic entry `entry`: the zero flag
// becomes 32 zero bits (the host offset kept), a normal cluster 32 allocated bits, anything
// else (unallocated, compressed) bitmap 0.
struct ExtendedEntry {
  uint64_t descriptor = 0;
  uint64_t bitmap = 0;
};
ExtendedEntry ExtendedBitmapFor(uint64_t entry);

// Validates `bitmap` against the decoded descriptor `m` and sets m.kind (and m.bitmap).
// Returns an empty string, or why the entry is corrupt.
std::string ApplyBitmap(Mapping& m, uint64_t bitmap);

// The status of the bytes from `in_cluster` (an offset inside the cluster of `m`): a copy of
// `m` with the kind of that subcluster (host still the cluster's), and how many bytes from
// `in_cluster` to the end of the run of subclusters with that kind (at most the cluster's end).
struct SubRun {
  Mapping m;
  uint64_t length = 0;
};
SubRun SubclusterRun(const Mapping& m, uint64_t in_cluster, uint64_t cluster_size);

// Whether [in_cluster, in_cluster + len) of the cluster of `m` lies in allocated subclusters
// of a cluster the image owns (COPIED): a write there goes to the host cluster in place.
bool WritableInPlace(const Mapping& m, uint64_t in_cluster, uint64_t len, uint64_t cluster_size);

// The allocation bits of the subclusters [in_cluster, in_cluster + len) touches.
uint64_t SubclusterMask(uint64_t in_cluster, uint64_t len, uint64_t cluster_size);

}  // namespace kite::storage::qcow2
