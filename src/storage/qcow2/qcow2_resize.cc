// Qcow2Image::Resize: grow (a larger L1 table when needed) or shrink (only when allowed, and
// refusing to drop allocated data unless forced).
#include "storage/qcow2/qcow2_image.h"

namespace kite::storage::qcow2 {
namespace {

// Moves the active L1 table to new clusters of `entries` entries.
Result<void> GrowL1(Meta& meta, uint64_t entries) {
  uint64_t cs = meta.cluster_size();
  if (entries * 8 > kMaxL1Bytes) return Err(meta.path() + ": Active L1 table too large");
  std::vector<uint8_t> raw(entries * 8, 0);
  for (size_t i = 0; i < meta.l1().size(); ++i) PutBe64(&raw[i * 8], meta.l1()[i]);
  uint64_t off = TRY(meta.Allocate((raw.size() + cs - 1) / cs));
  meta.AddMetadata(off, raw.size());
  TRY(meta.io().Write(raw.data(), raw.size(), off));
  TRY(meta.Sync());
  uint8_t hdr[12];
  PutBe32(hdr, static_cast<uint32_t>(entries));
  PutBe64(hdr + 4, off);
  TRY(meta.WriteHeaderBytes(kOffL1Size, hdr, 12));
  TRY(meta.Sync());
  Header& h = meta.mutable_header();
  uint64_t old_off = h.l1_table_offset, old_bytes = uint64_t{h.l1_size} * 8;
  h.l1_table_offset = off;
  h.l1_size = static_cast<uint32_t>(entries);
  meta.l1().resize(entries, 0);
  if (old_bytes > 0) {
    meta.RemoveMetadata(old_off, old_bytes);
    TRY(meta.Free(old_off, old_bytes));
  }
  return {};
}

}  // namespace

Result<void> Qcow2Image::Resize(uint64_t new_size, const ResizeOptions& options) {
  if (options_.read_only) return Err(path_ + ": image is read-only");
  if (options.preallocation != Preallocation::kOff) {
    return Err(path_ + ": preallocation on resize is not supported for qcow2");
  }
  new_size = (new_size + 511) & ~511ull;
  if (new_size > kMaxVirtualSize) return Err(path_ + ": Image size too big");
  std::unique_lock lock(meta_mu_);
  uint64_t cs = meta_->cluster_size();
  if (new_size < size_) {
    if (!options.shrink) return Err(path_ + ": shrinking needs --shrink");
    if (meta_->header().nb_snapshots > 0) {
      return Err(path_ + ": Can't shrink an image with internal snapshots");
    }
    for (uint64_t c = (new_size + cs - 1) / cs * cs; c < size_; c += cs) {
      Mapping m = TRY(meta_->Lookup(c));
      if (m.kind == Mapping::kUnallocated) continue;
      if (!options.force && m.kind != Mapping::kZero) {
        return Err(path_ + ": shrinking would discard allocated data (use --force)");
      }
      TRY(meta_->SetL2Entry(c, 0));
      TRY(meta_->FreeMapping(m));
    }
  }
  uint64_t need = L1EntriesFor(new_size, meta_->header().cluster_bits);
  if (need > meta_->l1().size()) TRY(GrowL1(*meta_, need));
  uint8_t be[8];
  PutBe64(be, new_size);
  TRY(meta_->WriteHeaderBytes(kOffSize, be, 8));
  meta_->mutable_header().size = new_size;
  size_ = new_size;
  return meta_->Sync();
}

}  // namespace kite::storage::qcow2
