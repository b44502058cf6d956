// VirtioBlock's quiesce for snapshots and pauses (see block.cc for the device, and
// docs/VIRTIO.md "Snapshot state and quiesce").
//
// Quiesce() sets `quiesced_` (Run and its posted continuations pop nothing more), then waits
// on `drained_` until no request of the activation is waiting for the disk: the completions
// still run on the event loop (OnDiskDone pushes the used entry and notifies), so Quiesce must
// run on another thread while the loop runs; on the loop thread it is refused rather than
// deadlocking. Then it raises the completions' interrupt itself (FlushSignal stays silent
// while quiesced) and flushes the image — also with cache=unsafe, whose FLUSH requests are
// no-ops, because a qcow2 image keeps metadata in memory — so that guest memory and the disk
// form a consistent pair. The device state is nothing beyond the queues.
//
// Threads: Quiesce/Unquiesce on a control thread under the transport's lock; mu_ as in
// block.cc. The flush runs without mu_ (the loop may still take it: a stale FlushSignal, a
// continuation that finds the device quiesced).
#include <chrono>
#include <string>

#include "virtio/block_device.h"

namespace kite::virtio {
namespace {

// A request the disk has not answered in this long is taken as stuck: the quiesce fails (the
// snapshot is refused) instead of hanging the control thread.
constexpr std::chrono::seconds kQuiesceTimeout{30};

}  // namespace

bool VirtioBlock::DrainedLocked() const {
  if (!live_) return true;  // reset: Reset() drained the disk, nothing is pushed any more
  for (const QueueState& qs : queues_) {
    if (qs.queue->in_flight() != 0) return false;
  }
  return true;
}

Result<void> VirtioBlock::Quiesce() {
  if (loop_->get_executor().running_in_this_thread()) {
    return Err("virtio-blk: Quiesce on the event loop thread (it waits for the loop)");
  }
  std::shared_ptr<storage::DiskImage> image;
  {
    std::unique_lock lock(mu_);
    image = image_;
    quiesced_ = true;
    uint32_t generation = generation_;
    bool drained = drained_.wait_for(lock, kQuiesceTimeout, [this, generation] {
      return generation != generation_ || DrainedLocked();
    });
    if (!drained) {
      return Err("virtio-blk " + image->path() + ": requests still in flight after " +
                 std::to_string(kQuiesceTimeout.count()) + " s");
    }
    // The used entries pushed meanwhile: one interrupt per queue, if the driver wants it.
    if (live_ && active_.signal_used) {
      for (size_t q = 0; q < queues_.size(); ++q) active_.signal_used(static_cast<uint16_t>(q));
    }
  }
  if (image && !image->read_only()) TRY_CTX(image->Flush(), "virtio-blk: flush at quiesce");
  return {};
}

void VirtioBlock::Unquiesce() {
  std::lock_guard lock(mu_);
  quiesced_ = false;
  // Queues the rate limit held back (their chains are in the ring, not in flight) pop again,
  // on the loop.
  if (live_) {
    Post([](VirtioBlock& self) {
      std::vector<uint16_t> queues;
      {
        std::lock_guard lock(self.mu_);
        queues = self.TakeThrottledLocked();
      }
      self.RunQueues(queues);
    });
  }
  // Completions of a quiesce that failed were not signalled (FlushSignal stays silent while
  // quiesced); NeedsInterrupt() is false where nothing is new.
  if (live_ && active_.signal_used) {
    for (size_t q = 0; q < queues_.size(); ++q) active_.signal_used(static_cast<uint16_t>(q));
  }
}

}  // namespace kite::virtio
