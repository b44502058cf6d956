// Meta: cluster allocation and freeing, and the overlap checks that keep data writes and new
// allocations away from metadata even when refcounts lie (BAD_INPUTS I27, I29).
#include "storage/qcow2/qcow2_meta.h"

namespace kite::storage::qcow2 {

void Meta::AddMetadata(uint64_t offset, uint64_t bytes) {
  uint64_t cs = cluster_size();
  if (bytes == 0) return;
  for (uint64_t c = offset / cs; c <= (offset + bytes - 1) / cs; ++c) metadata_.insert(c);
}

void Meta::RemoveMetadata(uint64_t offset, uint64_t bytes) {
  uint64_t cs = cluster_size();
  if (bytes == 0) return;
  for (uint64_t c = offset / cs; c <= (offset + bytes - 1) / cs; ++c) metadata_.erase(c);
}

void Meta::NoteUse(uint64_t cluster_end) {
  alloc_end_ = std::max(alloc_end_, cluster_end);
}

Result<uint64_t> Meta::FindFree(uint64_t n, uint64_t start) {
  uint64_t run = 0;
  bool seen_free = false;
  for (uint64_t c = start;; ++c) {
    bool free = c >= alloc_end_;
    if (!free) {
      uint64_t rc = TRY(GetRefcount(c));
      if (rc == 0 && metadata_.count(c)) {
        return MarkCorrupt("Preventing invalid allocation: cluster " + std::to_string(c) +
                           " holds metadata but its refcount is 0");
      }
      free = rc == 0;
    }
    // Nothing below the first free cluster is free: later scans start there, not at the old
    // hint (below a hole too small for this run every allocation rescanned all that followed).
    if (free && !seen_free && start == free_hint_) free_hint_ = c;
    seen_free = seen_free || free;
    run = free ? run + 1 : 0;
    if (run == n) return c + 1 - n;
  }
}

Result<uint64_t> Meta::Allocate(uint64_t n) {
  if (!writable_) return Err(path_ + ": image is read-only");
  if (corrupt()) return Err(path_ + ": image is marked corrupt; refusing to allocate");
  uint64_t epb = header_.refblock_entries();
  while (true) {
    uint64_t start = TRY(FindFree(n, free_hint_));
    bool placed_block = false;
    for (uint64_t b = start / epb; b <= (start + n - 1) / epb; ++b) {
      if (b >= reftable_.size() || reftable_[b] == 0) {
        TRY(EnsureRefblock(b, 0));
        placed_block = true;
      }
    }
    if (placed_block) continue;  // the new refblock may sit inside [start, start + n)
    TRY(SetRefcounts(start, n, 1));
    if (start == free_hint_) free_hint_ = start + n;
    NoteUse(start + n);
    return start * cluster_size();
  }
}

Result<uint64_t> Meta::AllocateBytes(uint64_t bytes) {
  uint64_t cs = cluster_size();
  if (bytes == 0 || bytes > cs) return Err(path_ + ": bad compressed allocation size");
  uint64_t off = free_byte_offset_;
  uint64_t used = off & (cs - 1);  // never 0 when off != 0
  if (off != 0 && used + bytes <= cs) {
    TRY(UpdateRefcounts(off - used, cs, 1));  // one more user of the partly filled cluster
  } else {
    uint64_t fresh = TRY(Allocate(1));  // refcount 1: this stream's
    if (off != 0 && fresh == off - used + cs) {
      TRY(UpdateRefcounts(off - used, cs, 1));  // the stream starts in the previous cluster
    } else {
      off = fresh;
    }
  }
  free_byte_offset_ = (off + bytes) & (cs - 1) ? off + bytes : 0;
  return off;
}

Result<void> Meta::Free(uint64_t offset, uint64_t bytes) {
  return UpdateRefcounts(offset, bytes, -1);
}

Result<void> Meta::FreeMapping(const Mapping& m) {
  uint64_t cs = cluster_size();
  if (header_.external_data()) return {};  // data file clusters are not refcounted
  switch (m.kind) {
    case Mapping::kNormal:
      return Free(m.host, cs);
    case Mapping::kZero:
    case Mapping::kMixed:
      return m.host != 0 ? Free(m.host, cs) : Result<void>{};
    case Mapping::kCompressed: {
      uint64_t first = m.host & ~(cs - 1);
      // The stream's sectors: [host & ~511, host + comp_len), as QEMU counts them.
      uint64_t last = (m.host + m.comp_len - 1) & ~(cs - 1);
      return Free(first, last - first + cs);
    }
    case Mapping::kUnallocated:
      return {};
  }
  return {};
}

Result<void> Meta::CheckDataWrite(uint64_t host_offset) {
  if (header_.external_data()) return {};  // data goes to the other file
  if (metadata_.count(host_offset / cluster_size())) {
    return MarkCorrupt("Preventing invalid write on metadata (host offset " +
                       std::to_string(host_offset) + ")");
  }
  return {};
}

}  // namespace kite::storage::qcow2
