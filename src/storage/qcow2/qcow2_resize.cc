// ResizeMeta / Qcow2Image::Resize: grow (a larger L1 table when needed) or shrink (only when
// allowed, and refusing to drop allocated data unless forced).
#include <unistd.h>

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

Result<void> ResizeMeta(Meta& meta, uint64_t new_size, const ResizeOptions& options) {
  const std::string& path = meta.path();
  uint64_t size = meta.header().size;
  uint64_t cs = meta.cluster_size();
  if (new_size > kMaxVirtualSize) return Err(path + ": Image size too big");
  if (new_size < size) {
    if (!options.shrink) return Err(path + ": shrinking needs --shrink");
    // Version 3 snapshots keep their own size (and L1 table): only the active layer shrinks,
    // dropping its references. Version 2 snapshots do not record a size (qemu refuses too).
    if (meta.header().nb_snapshots > 0 && meta.header().version < 3) {
      return Err(path + ": Can't resize a v2 image which has snapshots");
    }
    for (uint64_t c = (new_size + cs - 1) / cs * cs; c < size; c += cs) {
      Mapping m = TRY(meta.Lookup(c));
      if (m.kind == Mapping::kUnallocated) continue;
      if (!options.force && m.kind != Mapping::kZero) {
        return Err(path + ": shrinking would discard allocated data (use --force)");
      }
      TRY(meta.SetL2Entry(c, 0));
      TRY(meta.FreeMapping(m));
    }
  }
  uint64_t need = L1EntriesFor(new_size, meta.header().cluster_bits, meta.header().extended_l2());
  if (need > meta.l1().size()) TRY(GrowL1(meta, need));
  uint8_t be[8];
  PutBe64(be, new_size);
  TRY(meta.WriteHeaderBytes(kOffSize, be, 8));
  meta.mutable_header().size = new_size;
  return meta.Sync();
}

Result<void> Qcow2Image::Resize(uint64_t new_size, const ResizeOptions& options) {
  if (options_.read_only) return Err(path_ + ": image is read-only");
  if (options.preallocation != Preallocation::kOff) {
    return Err(path_ + ": preallocation on resize is not supported for qcow2");
  }
  new_size = (new_size + 511) & ~511ull;
  std::unique_lock lock(meta_mu_);
  if (new_size > size_) TRY(ResizeDataFile(new_size));  // the data file first when growing
  TRY(ResizeMeta(*meta_, new_size, options));
  if (new_size < size_) TRY(ResizeDataFile(new_size));  // and last when shrinking
  size_ = new_size;
  return {};
}

// The external data file follows the virtual size, as qemu keeps it (a block device must
// already be large enough).
Result<void> Qcow2Image::ResizeDataFile(uint64_t new_size) {
  if (!data_) return {};
  TRY(ResizeExternalDataFile(data_->file, data_->path, new_size));
  if (!data_->file.block_device) data_->file.size = new_size;
  return {};
}

Result<void> ResizeExternalDataFile(const OpenedFile& file, const std::string& path,
                                    uint64_t new_size) {
  if (file.block_device) {
    if (new_size <= file.size) return {};
    return Err(path + ": the data file (a block device of " + std::to_string(file.size) +
               " bytes) is smaller than the new size");
  }
  if (::ftruncate(file.fd.get(), static_cast<off_t>(new_size)) != 0) {
    return SysErr(path + ": resizing the data file");
  }
  return {};
}

}  // namespace kite::storage::qcow2
