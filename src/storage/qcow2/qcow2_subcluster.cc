// Extended L2 entries: bitmaps, subcluster runs (qcow2_subcluster.h).
#include "storage/qcow2/qcow2_subcluster.h"

#include <algorithm>

#include "storage/qcow2/qcow2_header.h"

namespace kite::storage::qcow2 {
namespace {

uint32_t AllocBits(uint64_t bitmap) {
  return static_cast<uint32_t>(bitmap);
}
uint32_t ZeroBits(uint64_t bitmap) {
  return static_cast<uint32_t>(bitmap >> 32);
}

// The kind of subcluster `i` of a standard (not compressed) cluster.
Mapping::Kind KindOf(const Mapping& m, uint32_t i) {
  if (AllocBits(m.bitmap) & (1u << i)) return Mapping::kNormal;
  if (ZeroBits(m.bitmap) & (1u << i)) return Mapping::kZero;
  return Mapping::kUnallocated;
}

}  // namespace

ExtendedEntry ExtendedBitmapFor(uint64_t entry) {
  if (entry & kOflagCompressed) return {entry, 0};
  if (entry & kOflagZero) return {entry & ~kOflagZero, kSubZeroAll};
  if (entry & kL2OffsetMask) return {entry, kSubAllocAll};
  return {entry, 0};
}

std::string ApplyBitmap(Mapping& m, uint64_t bitmap) {
  m.bitmap = bitmap;
  if (m.kind == Mapping::kCompressed) {
    return bitmap == 0 ? "" : "compressed cluster with a non-zero subcluster bitmap";
  }
  uint32_t alloc = AllocBits(bitmap), zero = ZeroBits(bitmap);
  if (alloc & zero) return "subcluster both allocated and zero in the L2 bitmap";
  if (alloc != 0 && m.host == 0) return "allocated subclusters without a host cluster offset";
  if (alloc == 0xffffffffu) {
    m.kind = Mapping::kNormal;
  } else if (zero == 0xffffffffu) {
    m.kind = Mapping::kZero;
  } else if (bitmap == 0 && m.host == 0) {
    m.kind = Mapping::kUnallocated;
  } else {
    m.kind = Mapping::kMixed;
  }
  return "";
}

SubRun SubclusterRun(const Mapping& m, uint64_t in_cluster, uint64_t cluster_size) {
  if (m.kind != Mapping::kMixed) return {m, cluster_size - in_cluster};
  uint64_t sc = cluster_size / kSubclusters;
  uint32_t i = static_cast<uint32_t>(in_cluster / sc);
  SubRun r{m, 0};
  r.m.kind = KindOf(m, i);
  uint32_t end = i + 1;
  while (end < kSubclusters && KindOf(m, end) == r.m.kind) ++end;
  r.length = end * sc - in_cluster;
  return r;
}

uint64_t SubclusterMask(uint64_t in_cluster, uint64_t len, uint64_t cluster_size) {
  if (len == 0) return 0;
  uint64_t sc = cluster_size / kSubclusters;
  uint64_t first = in_cluster / sc, last = (in_cluster + len - 1) / sc;
  uint64_t bits = last - first + 1;
  return (bits >= 64 ? ~0ull : ((1ull << bits) - 1)) << first & kSubAllocAll;
}

bool WritableInPlace(const Mapping& m, uint64_t in_cluster, uint64_t len, uint64_t cluster_size) {
  if (!m.copied || m.host == 0) return false;
  if (m.kind == Mapping::kNormal) return true;
  if (m.kind != Mapping::kMixed) return false;
  uint64_t want = SubclusterMask(in_cluster, len, cluster_size);
  return (AllocBits(m.bitmap) & want) == want;
}

}  // namespace kite::storage::qcow2
