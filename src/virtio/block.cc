// VirtioBlock: the virtio block device (virtio 1.2 section 5.2) on kite's storage library.
// See block.h for the feature set and the cache modes, block_request.{h,cc} for how a chain
// becomes a request and which faults get which status (BAD_INPUTS G15-G21).
//
// Limits in the configuration space (5.2.4), and why:
//   * seg_max = queue_size - 2 (at most kMaxChainSegments - 2): a chain may be as long as the
//     queue (2.7.4.2), minus the header and the status. More data segments: IOERR.
//   * size_max: the largest 4 KiB multiple such that seg_max segments of it plus header and
//     status stay under the queue's kMaxChainBytes (64 MiB), capped at 1 MiB. A longer chain
//     would be refused by the queue itself (used length 0), which a driver cannot tell from
//     success, so the driver is told never to build one.
//   * blk_size = 512; capacity = image size / 512 (a partial last sector is not visible).
//   * Discard and write-zeroes: one segment per request (as QEMU; Linux then sends one range
//     per request), at most 1 GiB (kMaxDiscardSectors) per segment so a worker is not held for
//     long; alignment 4 KiB; write_zeroes_may_unmap = 1. Beyond: UNSUPP for segments, IOERR
//     for sectors (as QEMU).
//
// Threads: ProcessQueue and everything it posts run on the event loop; disk I/O runs on the
// AsyncDisk workers, which post each completion back to the loop (through a weak pointer, so a
// completion that outlives the device is dropped). Activate/Reset run on a vCPU thread under
// the transport's lock. `mu_` guards the activation (queues, slots, generation) and is held
// while the device writes a status byte or pushes a used entry. Reset() bumps the generation
// under `mu_`, then drains the AsyncDisk: when it returns no worker touches guest memory and
// every late completion sees a stale generation and writes nothing (G33). Reset waits for at
// most one run of the loop (one queue's worth of pops) and for the I/O in flight.
// Rate limit (throttle.h, BlockOptions::throttle): one ThrottleGate for the disk, under mu_. A
// popped chain is parsed, then admitted (bytes: the data of a read or write; every request is
// one operation; a read also takes from the read limit and a write from the write one, as QEMU's
// bps_rd / bps_wr) or put back with Queue::Unpop — the queue is flagged and pops again when the
// gate's timer fires, when the limit changes (SetThrottle, posted to the loop) or at Unquiesce.
// A held-back chain is not in flight, so a quiesce does not wait for it and the snapshot saves
// it as available.
// Snapshot state: none beyond the queues. Quiesce (block_quiesce.cc) stops popping, waits until
// every request in flight completed and its used entry is pushed (completions still arrive on
// the loop), then flushes the image, so guest memory and the disk form a consistent pair.
#include "virtio/block.h"

#include <algorithm>
#include <asio/post.hpp>
#include <atomic>
#include <cstring>
#include <mutex>

#include "base/log.h"
#include "virtio/block_device.h"
#include "virtio/block_request.h"

namespace kite::virtio {
namespace {

using storage::DiskOp;

constexpr uint16_t kMaxQueues = 16;
constexpr uint16_t kMinQueueSize = 4;
constexpr uint32_t kMaxDiscardSectors = 1u << 21;  // 1 GiB
constexpr uint32_t kMaxWriteZeroesSectors = 1u << 21;
constexpr uint32_t kDiscardSectorAlignment = 8;  // 4 KiB
constexpr uint32_t kMaxSizeMax = 1u << 20;

uint32_t SegMax(uint16_t queue_size) {
  return std::min<uint32_t>(queue_size - 2u, kMaxChainSegments - 2u);
}

uint32_t SizeMax(uint32_t seg_max) {
  uint32_t per_seg = (kMaxChainBytes - 4096) / seg_max;
  return std::min(kMaxSizeMax, per_seg / 4096 * 4096);
}

const char* CacheName(storage::CacheMode cache) {
  switch (cache) {
    case storage::CacheMode::kWriteback:
      return "writeback";
    case storage::CacheMode::kWritethrough:
      return "writethrough";
    case storage::CacheMode::kNone:
      return "none";
    case storage::CacheMode::kUnsafe:
      return "unsafe";
  }
  return "?";
}

}  // namespace

VirtioBlock::VirtioBlock(std::shared_ptr<storage::DiskImage> image, const BlockOptions& options,
                         asio::io_context* loop)
    : image_(std::move(image)),
      options_(options),
      loop_(loop),
      throttle_(options.throttle_time ? options.throttle_time() : LoopThrottleTime(loop),
                options.throttle),
      throttle_limits_(options.throttle),
      throttle_group_(options.throttle_group) {
  if (throttle_group_) throttle_.Use(throttle_group_);
  bool ro = image_->read_only();
  uint32_t seg_max = SegMax(options_.queue_size);
  features_ = FeatureBit(kFeatureVersion1) | FeatureBit(kFeatureIndirectDesc) |
              FeatureBit(kFeatureEventIdx) | FeatureBit(blk::kFeatureSizeMax) |
              FeatureBit(blk::kFeatureSegMax) | FeatureBit(blk::kFeatureBlkSize);
  if (options_.cache != storage::CacheMode::kWritethrough) {
    features_ |= FeatureBit(blk::kFeatureFlush);
  }
  features_ |= ro ? FeatureBit(blk::kFeatureRo)
                  : FeatureBit(blk::kFeatureDiscard) | FeatureBit(blk::kFeatureWriteZeroes);
  if (options_.num_queues > 1) features_ |= FeatureBit(blk::kFeatureMq);

  config_.size_max = SizeMax(seg_max);
  config_.seg_max = seg_max;
  config_.blk_size = blk::kSectorSize;
  config_.num_queues = options_.num_queues;
  config_.max_discard_sectors = kMaxDiscardSectors;
  config_.max_discard_seg = 1;
  config_.discard_sector_alignment = kDiscardSectorAlignment;
  config_.max_write_zeroes_sectors = kMaxWriteZeroesSectors;
  config_.max_write_zeroes_seg = 1;
  config_.write_zeroes_may_unmap = 1;

  limits_.read_only = ro;
  limits_.seg_max = seg_max;
  limits_.max_discard_sectors = kMaxDiscardSectors;
  limits_.max_write_zeroes_sectors = kMaxWriteZeroesSectors;
  limits_.max_discard_seg = 1;
  limits_.flush_is_noop = options_.cache == storage::CacheMode::kUnsafe;
  std::memcpy(serial_, options_.serial.data(), std::min<size_t>(options_.serial.size(), 20));
  SetCapacityLocked();  // no other thread knows the device yet
}

void VirtioBlock::StartDisk() {
  disk_ = MakeDisk(image_);
  std::weak_ptr<VirtioBlock> weak = weak_from_this();
  throttle_wake_ = [weak](uint64_t epoch) {
    if (auto self = weak.lock()) self->OnThrottleWake(epoch);
  };
}

std::shared_ptr<storage::AsyncDisk> VirtioBlock::MakeDisk(
    std::shared_ptr<storage::DiskImage> image) {
  storage::AsyncDiskOptions disk;
  disk.workers = options_.io_workers;
  disk.backend = options_.backend;
  // Never refuse what the queues can legitimately hold in flight.
  disk.max_queued = std::max<size_t>(1024, size_t{options_.num_queues} * options_.queue_size);
  std::weak_ptr<VirtioBlock> weak = weak_from_this();
  asio::io_context* loop = loop_;
  disk.executor = [weak, loop](std::function<void()> fn) {
    asio::post(*loop, [weak, fn = std::move(fn)] {
      if (auto self = weak.lock()) fn();
    });
  };
  return std::make_shared<storage::AsyncDisk>(std::move(image), std::move(disk));
}

void VirtioBlock::SetCapacityLocked() {
  config_.capacity = image_->size() / blk::kSectorSize;
  limits_.capacity_sectors = config_.capacity;
  active_limits_.capacity_sectors = config_.capacity;
}

std::string VirtioBlock::ImagePath() const {
  std::lock_guard lock(mu_);
  return image_ ? image_->path() : "(no image)";
}

void VirtioBlock::ReadConfig(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  std::lock_guard lock(mu_);  // the capacity changes at run time (ReplaceImage)
  if (offset >= sizeof(config_)) return;
  size_t n = std::min<size_t>(data.size(), sizeof(config_) - offset);
  std::memcpy(data.data(), reinterpret_cast<const uint8_t*>(&config_) + offset, n);
}

Result<void> VirtioBlock::Activate(ActiveQueues queues) {
  if (queues.memory == nullptr || queues.queues.size() != options_.num_queues) {
    return Err("virtio-blk: expected " + std::to_string(options_.num_queues) +
               " queues and guest memory");
  }
  std::lock_guard lock(mu_);
  ++generation_;
  active_ = std::move(queues);
  active_limits_ = limits_;
  active_limits_.discard = (active_.features & FeatureBit(blk::kFeatureDiscard)) != 0;
  active_limits_.write_zeroes = (active_.features & FeatureBit(blk::kFeatureWriteZeroes)) != 0;
  queues_.assign(active_.queues.size(), QueueState{});
  for (size_t i = 0; i < queues_.size(); ++i) {
    queues_[i].queue = active_.queues[i];
    queues_[i].slots.resize(active_.queues[i]->max_size());
  }
  live_ = true;
  return {};
}

void VirtioBlock::Reset() {
  std::shared_ptr<storage::AsyncDisk> disk;
  {
    std::lock_guard lock(mu_);
    ++generation_;
    live_ = false;
    queues_.clear();
    active_ = ActiveQueues{};
    disk = disk_;  // null while ReplaceImage runs: its drain already happened
  }
  // Waits for the workers; their completions are posted with the old generation and dropped.
  if (disk) disk->Drain();
}

void VirtioBlock::ProcessQueue(uint16_t index) {
  uint32_t generation;
  {
    std::lock_guard lock(mu_);
    generation = generation_;
  }
  Run(index, generation);
}

void VirtioBlock::Post(std::function<void(VirtioBlock&)> fn) {
  std::weak_ptr<VirtioBlock> weak = weak_from_this();
  asio::post(*loop_, [weak, fn = std::move(fn)] {
    if (auto self = weak.lock()) fn(*self);
  });
}

void VirtioBlock::Run(uint16_t index, uint32_t generation) {
  RunResult result;
  std::function<void(const std::string&)> mark_broken;
  {
    std::lock_guard lock(mu_);
    if (generation != generation_ || !live_ || index >= queues_.size() || quiesced_) return;
    if (queues_[index].stopped || !queues_[index].queue->ready()) return;
    // The requests of one run go to the kernel together (one io_uring_enter for raw images).
    if (disk_) disk_->Plug();
    result = RunLocked(index, generation);
    if (disk_) disk_->Unplug();
    if (result == RunResult::kBroken) {
      queues_[index].stopped = true;
      mark_broken = active_.mark_broken;
    }
  }
  if (result == RunResult::kBroken) {
    KITE_LOG_RATELIMITED(Warn, "virtio-blk %s: the guest broke queue %u; device needs reset",
                         ImagePath().c_str(), index);
    if (mark_broken) mark_broken("virtio-blk: malformed available ring");
  } else if (result == RunResult::kMore) {
    Post([index, generation](VirtioBlock& self) { self.Run(index, generation); });
  }
}

VirtioBlock::RunResult VirtioBlock::RunLocked(uint16_t index, uint32_t generation) {
  Queue* queue = queues_[index].queue;
  bool pushed = false;
  RunResult result = RunResult::kIdle;
  // At most one queue's worth of chains per run (G34): the rest is posted back to the loop.
  for (uint32_t budget = queue->size(); result == RunResult::kIdle; --budget) {
    if (budget == 0) {
      result = RunResult::kMore;
      break;
    }
    Queue::PopResult pop = queue->Pop(&chain_);
    if (pop == Queue::PopResult::kEmpty) break;
    if (pop == Queue::PopResult::kBroken) result = RunResult::kBroken;
    if (pop != Queue::PopResult::kChain) continue;
    ParseBlockRequest(chain_.readable(), chain_.writable(), active_limits_, &request_);
    // Over the rate limit: the chain goes back to the ring (it was the last one popped, so
    // Unpop cannot fail) and the queue waits for the limiter's wake; nothing is dropped.
    if (!AdmitLocked() && queue->Unpop(1)) {
      queues_[index].throttled = true;
      throttled_.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    pushed |= StartRequestLocked(index, generation);
  }
  if (pushed && active_.signal_used) active_.signal_used(index);
  return result;
}

bool VirtioBlock::StartRequestLocked(uint16_t index, uint32_t generation) {
  QueueState& qs = queues_[index];
  uint16_t head = chain_.head();
  requests_.fetch_add(1, std::memory_order_relaxed);
  switch (request_.action) {
    case BlockAction::kReject:
      drops_.fetch_add(1, std::memory_order_relaxed);
      KITE_LOG_RATELIMITED(Debug, "virtio-blk: malformed request (chain %u): no header or status",
                           head);
      qs.queue->PushUsed(head, 0);
      return true;
    case BlockAction::kComplete:
      if (request_.status != blk::kStatusOk) errors_.fetch_add(1, std::memory_order_relaxed);
      *request_.status_byte = request_.status;
      qs.queue->PushUsed(head, request_.status == blk::kStatusOk ? request_.used_len_ok : 1);
      return true;
    case BlockAction::kGetId: {
      ChainWriter writer(request_.id_iov);
      (void)writer.Write(serial_, sizeof(serial_));  // id_iov holds exactly kIdBytes
      *request_.status_byte = blk::kStatusOk;
      qs.queue->PushUsed(head, request_.used_len_ok);
      return true;
    }
    case BlockAction::kDisk:
      break;
  }
  if (!disk_) {  // a failed ReplaceImage left no image: the request fails, the device goes on
    errors_.fetch_add(1, std::memory_order_relaxed);
    *request_.status_byte = blk::kStatusIoErr;
    qs.queue->PushUsed(head, 1);
    return true;
  }
  Slot& slot = qs.slots[head];
  slot.status_byte = request_.status_byte;
  slot.used_len_ok = request_.used_len_ok;
  slot.op = request_.disk.op;
  slot.bytes = 0;
  for (const iovec& v : request_.disk.iov) slot.bytes += v.iov_len;
  disk_->Submit(std::move(request_.disk), [this, index, head, generation](Result<void> r) {
    OnDiskDone(index, head, generation, std::move(r));
  });
  return false;
}

void VirtioBlock::OnDiskDone(uint16_t index, uint16_t head, uint32_t generation,
                             Result<void> result) {
  std::lock_guard lock(mu_);
  if (generation != generation_ || !live_) return;  // reset since: write nothing (G33)
  QueueState& qs = queues_[index];
  Slot& slot = qs.slots[head];
  ops_[static_cast<size_t>(slot.op)].fetch_add(1, std::memory_order_relaxed);
  if (!result) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    KITE_LOG_RATELIMITED(Warn, "virtio-blk %s: request failed: %s",
                         image_ ? image_->path().c_str() : "", result.error().message().c_str());
  } else if (slot.op == DiskOp::kRead) {
    bytes_read_.fetch_add(slot.bytes, std::memory_order_relaxed);
  } else if (slot.op == DiskOp::kWrite) {
    bytes_written_.fetch_add(slot.bytes, std::memory_order_relaxed);
  }
  *slot.status_byte = result ? blk::kStatusOk : blk::kStatusIoErr;
  qs.queue->PushUsed(head, result ? slot.used_len_ok : 1);
  if (quiesced_) drained_.notify_all();  // Quiesce() waits for the last one
  // One interrupt for all the completions the loop has queued up to now: FlushSignal runs
  // after them (asio runs posted handlers in order).
  if (!qs.signal_pending) {
    qs.signal_pending = true;
    Post([index, generation](VirtioBlock& self) { self.FlushSignal(index, generation); });
  }
}

void VirtioBlock::FlushSignal(uint16_t index, uint32_t generation) {
  std::lock_guard lock(mu_);
  if (generation != generation_ || !live_) return;
  queues_[index].signal_pending = false;
  // While quiesced, Quiesce() signals every queue itself once the last request completed.
  if (!quiesced_ && active_.signal_used) active_.signal_used(index);
}

bool VirtioBlock::AdmitLocked() {
  uint64_t bytes = 0;
  ThrottleDir dir = ThrottleDir::kOther;
  if (request_.action == BlockAction::kDisk &&
      (request_.disk.op == DiskOp::kRead || request_.disk.op == DiskOp::kWrite)) {
    for (const iovec& v : request_.disk.iov) bytes += v.iov_len;
    dir = request_.disk.op == DiskOp::kRead ? ThrottleDir::kRead : ThrottleDir::kWrite;
  }
  return throttle_.Admit(bytes, dir, throttle_wake_);
}

std::vector<uint16_t> VirtioBlock::TakeThrottledLocked() {
  std::vector<uint16_t> out;
  if (quiesced_) return out;
  for (size_t q = 0; q < queues_.size(); ++q) {
    if (queues_[q].throttled) out.push_back(static_cast<uint16_t>(q));
    queues_[q].throttled = false;
  }
  return out;
}

void VirtioBlock::RunQueues(const std::vector<uint16_t>& queues) {
  uint32_t generation;
  {
    std::lock_guard lock(mu_);
    generation = generation_;
  }
  for (uint16_t q : queues) Run(q, generation);
}

void VirtioBlock::OnThrottleWake(uint64_t epoch) {
  std::vector<uint16_t> queues;
  {
    std::lock_guard lock(mu_);
    if (!throttle_.Woken(epoch)) return;
    queues = TakeThrottledLocked();
  }
  RunQueues(queues);
}

void VirtioBlock::SetThrottle(const ThrottleLimits& limits) {
  {
    std::lock_guard lock(mu_);
    if (throttle_group_) {
      throttle_group_->Set(limits, throttle_.NowNs());  // reported at once, like our own
    } else {
      throttle_limits_ = limits;
    }
  }
  PostThrottleChange([limits](ThrottleGate& gate) { gate.Set(limits); });
}

void VirtioBlock::SetThrottleGroup(std::shared_ptr<ThrottleBuckets> group) {
  std::shared_ptr<ThrottleBuckets> use;
  {
    std::lock_guard lock(mu_);
    throttle_group_ = group;
    use = group ? group : std::make_shared<ThrottleBuckets>(throttle_limits_, throttle_.NowNs());
  }
  PostThrottleChange([use](ThrottleGate& gate) { gate.Use(use); });
}

void VirtioBlock::PostThrottleChange(std::function<void(ThrottleGate&)> change) {
  Post([change = std::move(change)](VirtioBlock& self) {
    std::vector<uint16_t> queues;
    {
      std::lock_guard lock(self.mu_);
      change(self.throttle_);
      queues = self.TakeThrottledLocked();  // what waited tries again at once
    }
    self.RunQueues(queues);
  });
}

ThrottleLimits VirtioBlock::throttle() const {
  std::lock_guard lock(mu_);
  return throttle_group_ ? throttle_group_->limits() : throttle_limits_;
}

std::string VirtioBlock::description() const {
  std::lock_guard lock(mu_);
  if (!image_) return "virtio-blk: (image being replaced)";
  return "virtio-blk: " + image_->path() + " (" + storage::ImageFormatName(image_->format()) +
         (limits_.read_only ? ", read-only" : "") + ", cache=" + CacheName(options_.cache) + ")";
}

DeviceCounters VirtioBlock::counters() const {
  DeviceCounters c;
  c.requests = requests_.load(std::memory_order_relaxed);
  c.reads = ops_[static_cast<size_t>(DiskOp::kRead)].load(std::memory_order_relaxed);
  c.writes = ops_[static_cast<size_t>(DiskOp::kWrite)].load(std::memory_order_relaxed);
  c.flushes = ops_[static_cast<size_t>(DiskOp::kFlush)].load(std::memory_order_relaxed);
  c.discards = ops_[static_cast<size_t>(DiskOp::kDiscard)].load(std::memory_order_relaxed) +
               ops_[static_cast<size_t>(DiskOp::kWriteZeroes)].load(std::memory_order_relaxed);
  c.bytes_read = bytes_read_.load(std::memory_order_relaxed);
  c.bytes_written = bytes_written_.load(std::memory_order_relaxed);
  c.errors = errors_.load(std::memory_order_relaxed);
  c.drops = drops_.load(std::memory_order_relaxed);
  c.throttled = throttled_.load(std::memory_order_relaxed);
  return c;
}

Result<std::shared_ptr<BlockDevice>> CreateVirtioBlock(std::shared_ptr<storage::DiskImage> image,
                                                       const BlockOptions& options,
                                                       asio::io_context* loop) {
  if (image == nullptr) return Err("virtio-blk: no disk image");
  if (loop == nullptr) return Err("virtio-blk: no event loop");
  if (options.serial.size() > blk::kIdBytes) {
    return Err("virtio-blk: serial '" + options.serial + "' is longer than 20 bytes");
  }
  if (options.num_queues < 1 || options.num_queues > kMaxQueues) {
    return Err("virtio-blk: queues must be 1.." + std::to_string(kMaxQueues));
  }
  uint16_t qs = options.queue_size;
  if (qs < kMinQueueSize || qs > kMaxQueueSize || (qs & (qs - 1)) != 0) {
    return Err("virtio-blk: queue size must be a power of two, 4..32768");
  }
  if (options.io_workers < 1) return Err("virtio-blk: io_workers must be at least 1");
  auto device = std::make_shared<VirtioBlock>(std::move(image), options, loop);
  device->StartDisk();
  return std::shared_ptr<BlockDevice>(std::move(device));
}

}  // namespace kite::virtio
