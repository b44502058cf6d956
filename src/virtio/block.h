// VirtioBlock: virtio-blk (virtio 1.2 section 5.2) on kite's storage library.
//
// Requests: IN (read), OUT (write), FLUSH, GET_ID, DISCARD, WRITE_ZEROES; anything else is
// UNSUPP. The header is copied out of the chain once (G15); data buffers go to AsyncDisk as
// iovecs into guest memory (zero copy). Every request is checked against capacity, sector
// alignment, segment limits and read-only (G16-G22); an I/O error on the host becomes
// VIRTIO_BLK_S_IOERR for that request only.
//
// Features offered: VERSION_1, INDIRECT_DESC, EVENT_IDX, SEG_MAX, BLK_SIZE, FLUSH (per cache
// mode, below), DISCARD and WRITE_ZEROES (not when read-only), RO (read-only), MQ (queues > 1).
// Cache modes (storage::CacheMode): writeback and none offer FLUSH, which becomes fdatasync;
// writethrough does not offer it (each write is durable before it completes); unsafe offers it
// and ignores it.
//
// Threads: requests are parsed on the event loop; disk I/O runs on AsyncDisk's workers; the
// completions are posted back to the loop, which writes the status byte, returns the chain
// and signals the interrupt. Reset() drains the AsyncDisk so nothing touches guest memory
// afterwards (G33); completions of an old activation are dropped.
#pragma once

#include <asio/io_context.hpp>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "storage/async_disk.h"
#include "storage/disk_image.h"
#include "virtio/throttle.h"
#include "virtio/virtio_device.h"

namespace kite::virtio {

struct BlockOptions {
  std::string serial;  // GET_ID answer, at most 20 bytes
  storage::CacheMode cache = storage::CacheMode::kWriteback;
  uint16_t num_queues = 1;  // 1..16 (MQ when > 1)
  uint16_t queue_size = 256;
  int io_workers = 8;                                            // AsyncDisk workers
  storage::AsyncBackend backend = storage::AsyncBackend::kAuto;  // io_uring for raw images
  // The disk's rate limits (all queues together): `total` for every request (bytes are the data
  // of reads and writes, an operation is any request), `read` and `write` for reads and writes
  // on their own. Unlimited by default.
  ThrottleLimits throttle{};
  // Non-null: a throttle group the disk shares with others; its limits replace `throttle`.
  std::shared_ptr<ThrottleBuckets> throttle_group{};
  // The limiter's clock and timer; null: the loop's (std::chrono::steady_clock). For tests.
  std::function<std::unique_ptr<ThrottleTime>()> throttle_time{};
};

// What the VMM does to a running disk besides I/O: live snapshots, block jobs and
// block_resize swap or grow its image (block_live.cc).
class BlockDevice : public VirtioDevice {
 public:
  // The image requests go to now.
  virtual std::shared_ptr<storage::DiskImage> image() const = 0;
  // Only while quiesced (VirtioDevice::Quiesce). The device lets go of its image (nothing of
  // the device refers to it during the call, so the caller may close and reopen the chain),
  // hands it to `change`, and takes whatever `change` leaves in its argument: the same image,
  // a new one, or — when `change` fails — whatever it restored. The capacity follows the new
  // image's size (the caller raises the configuration-change interrupt when it changed). A
  // null image, or one whose read-only flag differs, is refused: the device is then without
  // an image and fails every request with IOERR until the next replacement (never a crash).
  using ImageChange = std::function<Result<void>(std::shared_ptr<storage::DiskImage>& image)>;
  virtual Result<void> ReplaceImage(const ImageChange& change) = 0;
  // block_set_io_throttle: new limits from now on (the buckets start full). Any thread: the
  // change is posted to the event loop, so it applies to the requests popped after it.
  // In a throttle group, the group's limits change (for every member).
  virtual void SetThrottle(const ThrottleLimits& limits) = 0;
  // Joins a throttle group: the disk takes its tokens from `group` from now on (null: from
  // buckets of its own again, with the limits it had before). Any thread, like SetThrottle.
  virtual void SetThrottleGroup(std::shared_ptr<ThrottleBuckets> group) = 0;
  // Its limits: its group's, when it is in one.
  virtual ThrottleLimits throttle() const = 0;
};

// Creates the device for an image opened by the caller (read-only when image->read_only()).
Result<std::shared_ptr<BlockDevice>> CreateVirtioBlock(std::shared_ptr<storage::DiskImage> image,
                                                       const BlockOptions& options,
                                                       asio::io_context* loop);

}  // namespace kite::virtio
