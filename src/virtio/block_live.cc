// VirtioBlock's live changes: the image swap behind live snapshots, block-job pivots and
// block_resize (see BlockDevice in block.h).
//
// The device is quiesced (block_quiesce.cc): nothing is popped and nothing is in flight, so
// the request path does not touch image_ or disk_. ReplaceImage drains and drops the AsyncDisk
// (its workers hold the image), hands the image to the caller's change with no reference left
// in the device, then builds a new AsyncDisk for whatever image comes back. A guest reset in
// between finds no AsyncDisk and has nothing to drain. Should the change leave no usable image,
// the device stays without one and fails every request with IOERR (never a crash).
#include <mutex>

#include "virtio/block_device.h"

namespace kite::virtio {

std::shared_ptr<storage::DiskImage> VirtioBlock::image() const {
  std::lock_guard lock(mu_);
  return image_;
}

Result<void> VirtioBlock::ReplaceImage(const ImageChange& change) {
  std::shared_ptr<storage::DiskImage> image;
  std::shared_ptr<storage::AsyncDisk> disk;
  {
    std::lock_guard lock(mu_);
    if (!quiesced_) return Err("virtio-blk: the image is replaced only while quiesced");
    if (!image_) return Err("virtio-blk: an image replacement is already running");
    image = std::move(image_);
    disk = std::move(disk_);
  }
  disk->Drain();
  disk.reset();  // the workers' references go with it
  bool read_only = image->read_only();
  Result<void> changed = change(image);  // `image` is the only reference the device had
  Result<void> accepted{};
  if (!image) {
    accepted = Err("virtio-blk: the change left no image");
  } else if (image->read_only() != read_only) {
    accepted = Err("virtio-blk: " + image->path() + " is " +
                  (image->read_only() ? "read-only" : "writable") + ", the disk is not");
  }
  if (accepted) {
    auto fresh = MakeDisk(image);
    std::lock_guard lock(mu_);
    image_ = std::move(image);
    disk_ = std::move(fresh);
    SetCapacityLocked();
  }
  if (!changed) return changed;
  return accepted;
}

}  // namespace kite::virtio
