// VirtioBlock's class declaration, private to src/virtio: block.cc holds the device
// (configuration, activation, reset, the request path), block_quiesce.cc the quiesce for
// snapshots. Public entry point: CreateVirtioBlock() in block.h; the threads and locks are
// described at the top of block.cc.
#pragma once

#include <array>
#include <asio/io_context.hpp>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "storage/async_disk.h"
#include "storage/disk_image.h"
#include "virtio/block.h"
#include "virtio/block_request.h"
#include "virtio/virtio_device.h"

namespace kite::virtio {

class VirtioBlock final : public BlockDevice, public std::enable_shared_from_this<VirtioBlock> {
 public:
  VirtioBlock(std::shared_ptr<storage::DiskImage> image, const BlockOptions& options,
              asio::io_context* loop);
  // Creates the AsyncDisk; its executor needs weak_from_this(), so not in the constructor.
  void StartDisk();

  uint32_t device_id() const override { return kDeviceIdBlock; }
  uint64_t device_features() const override { return features_; }
  std::vector<uint16_t> queue_max_sizes() const override {
    return std::vector<uint16_t>(options_.num_queues, options_.queue_size);
  }
  void ReadConfig(uint64_t offset, std::span<uint8_t> data) override;
  Result<void> Activate(ActiveQueues queues) override;
  void ProcessQueue(uint16_t index) override;
  void Reset() override;
  // Snapshot (block_quiesce.cc): wait for every request in flight, then flush the image.
  Result<void> Quiesce() override;
  void Unquiesce() override;
  std::string name() const override { return "virtio-blk"; }
  // Live changes (block_live.cc).
  std::shared_ptr<storage::DiskImage> image() const override;
  Result<void> ReplaceImage(const ImageChange& change) override;
  std::string description() const override;
  DeviceCounters counters() const override;
  // Rate limit (block.cc).
  void SetThrottle(const ThrottleLimits& limits) override;
  void SetThrottleGroup(std::shared_ptr<ThrottleBuckets> group) override;
  ThrottleLimits throttle() const override;

 private:
  // A request handed to the AsyncDisk, indexed by head: where its status goes.
  struct Slot {
    uint8_t* status_byte = nullptr;
    uint32_t used_len_ok = 1;
    uint64_t bytes = 0;
    storage::DiskOp op = storage::DiskOp::kRead;
  };
  struct QueueState {
    Queue* queue = nullptr;
    bool stopped = false;         // the ring broke: pop nothing more until reset
    bool signal_pending = false;  // a FlushSignal is posted
    bool throttled = false;       // a chain went back to the ring: retry on the limiter's wake
    std::vector<Slot> slots;
  };
  enum class RunResult { kIdle, kMore, kBroken };

  void Run(uint16_t index, uint32_t generation);
  RunResult RunLocked(uint16_t index, uint32_t generation);
  // Starts the request in chain_; true when it was completed at once (used entry pushed).
  bool StartRequestLocked(uint16_t index, uint32_t generation);
  void OnDiskDone(uint16_t index, uint16_t head, uint32_t generation, Result<void> result);
  void FlushSignal(uint16_t index, uint32_t generation);
  // The rate limiter: may the request in request_ go now? Its bytes: the data of a read or a
  // write; flush, discard, write-zeroes, GET_ID and bad requests are operations of 0 bytes.
  bool AdmitLocked();
  // The limiter's timer fired (or its settings changed): the waiting queues pop again.
  // Changes the gate on the loop, then runs the queues that waited.
  void PostThrottleChange(std::function<void(ThrottleGate&)> change);
  void OnThrottleWake(uint64_t epoch);
  // The queues that wait for the limiter, their flags cleared; none while quiesced (Unquiesce
  // retries them).
  std::vector<uint16_t> TakeThrottledLocked();
  void RunQueues(const std::vector<uint16_t>& queues);
  // While quiesced: true when no request of the activation is waiting for the disk.
  bool DrainedLocked() const;
  // Posts `fn` to the loop; it runs only while the device is alive.
  void Post(std::function<void(VirtioBlock&)> fn);
  // The AsyncDisk for `image`, completing onto the loop.
  std::shared_ptr<storage::AsyncDisk> MakeDisk(std::shared_ptr<storage::DiskImage> image);
  // The capacity from image_'s size, in the configuration space and the request limits. mu_.
  void SetCapacityLocked();
  // image_'s path, for log lines on any thread.
  std::string ImagePath() const;

  // Replaced only while quiesced (ReplaceImage), under mu_; null during the replacement.
  std::shared_ptr<storage::DiskImage> image_;
  const BlockOptions options_;
  asio::io_context* const loop_;
  uint64_t features_ = 0;
  blk::Config config_{};
  BlockLimits limits_;  // as offered; narrowed to the negotiated features at Activate
  uint8_t serial_[blk::kIdBytes] = {};

  mutable std::mutex mu_;
  uint32_t generation_ = 0;  // bumped by Activate and Reset: stale work stops
  bool live_ = false;
  // Quiesce(): pop nothing (Run and its continuations return), signal completions at the end.
  bool quiesced_ = false;
  std::condition_variable drained_;  // notified by OnDiskDone while quiesced
  ActiveQueues active_;
  BlockLimits active_limits_;
  std::vector<QueueState> queues_;
  DescriptorChain chain_;  // reused between pops
  BlockRequest request_;   // reused between parses
  ThrottleGate throttle_;  // the disk's rate limit, on the loop
  // The limits as last set (SetThrottle stores them at once, the gate gets them on the loop):
  // what throttle() reports, so a query right after a change sees it.
  ThrottleLimits throttle_limits_;                   // its own limits, reported
  std::shared_ptr<ThrottleBuckets> throttle_group_;  // its group, when in one
  std::function<void(uint64_t)> throttle_wake_;      // OnThrottleWake through a weak pointer

  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_read_{0};
  std::atomic<uint64_t> bytes_written_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> drops_{0};
  std::atomic<uint64_t> throttled_{0};          // requests the rate limit held back (counted once)
  std::array<std::atomic<uint64_t>, 5> ops_{};  // completed disk requests, by DiskOp
  // Last member: destroyed first, so its drain runs while everything above is intact.
  // Replaced with image_ (under mu_); Reset() drains a copy of the pointer.
  std::shared_ptr<storage::AsyncDisk> disk_;
};

}  // namespace kite::virtio
