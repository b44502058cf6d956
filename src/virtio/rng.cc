// VirtioRng: the virtio entropy device (virtio 1.2 section 5.4). One virtqueue ("requestq");
// every chain the driver makes available is a set of device-writable buffers that the device
// fills with random bytes from the host's getrandom(2) and returns with the number of bytes
// written (5.4.6: "The device MUST place one or more random bytes into the buffer, but it MAY
// use less than the entire buffer length").
//
// Policy:
//   * At most kMaxBytesPerChain (64 KiB) per chain; the rest of a larger chain is left as it
//     was and the used length says how much was filled.
//   * A chain with a driver-readable buffer (5.4.6.1: "The driver MUST NOT place
//     driver-readable buffers into the queue") or with no writable byte is returned with used
//     length 0, nothing written, and counted in `drops`.
//   * getrandom runs with GRND_NONBLOCK so the event loop never blocks; if it fails the chain
//     returns with what was filled so far (maybe 0) and counts in `errors`. The driver retries.
//   * One kick processes at most kBudgetPerRun bytes, then posts the rest of the work back to
//     the event loop, so a queue full of large chains cannot hold the loop for long (G10, G34).
//   * A broken ring (Queue::Pop returns kBroken, G3-G5) marks the device DEVICE_NEEDS_RESET.
//
// Threads: ProcessQueue and its continuations run on the event loop; Activate and Reset on a
// vCPU thread under the transport's lock. `mu_` guards the activation (queue pointer,
// generation) and is held while guest memory is written, so when Reset() returns nothing more
// is written (G33); Reset waits at most for one run (<= kBudgetPerRun bytes of getrandom).
// The device has no state worth a snapshot beyond the queue itself; Quiesce() waits for a run
// in progress (taking mu_) and stops further runs; the transport re-kicks the queue on Resume.
#include "virtio/rng.h"

#include <sys/random.h>

#include <algorithm>
#include <asio/post.hpp>
#include <atomic>
#include <cerrno>
#include <functional>
#include <mutex>

#include "base/log.h"

namespace kite::virtio {
namespace {

constexpr uint16_t kQueueSize = 256;
constexpr uint32_t kMaxBytesPerChain = 64 * 1024;
constexpr uint32_t kBudgetPerRun = 1024 * 1024;

// Fills [data, data + len) from getrandom without blocking. Returns the bytes filled; sets
// *failed when getrandom reported an error before the buffer was full.
size_t FillRandom(uint8_t* data, size_t len, bool* failed) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = getrandom(data + done, len - done, GRND_NONBLOCK);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      *failed = true;
      break;
    }
  }
  return done;
}

class VirtioRng final : public VirtioDevice, public std::enable_shared_from_this<VirtioRng> {
 public:
  explicit VirtioRng(asio::io_context* loop) : loop_(loop) {}

  uint32_t device_id() const override { return kDeviceIdRng; }
  uint64_t device_features() const override {
    return FeatureBit(kFeatureVersion1) | FeatureBit(kFeatureIndirectDesc) |
           FeatureBit(kFeatureEventIdx);
  }
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize}; }
  // 5.4.4: the entropy device has no configuration space.
  void ReadConfig(uint64_t, std::span<uint8_t> data) override {
    std::fill(data.begin(), data.end(), 0);
  }

  Result<void> Activate(ActiveQueues queues) override;
  void ProcessQueue(uint16_t index) override;
  void Reset() override;
  // Quiesce: a run holds mu_ while it pops, fills and pushes, so once mu_ is ours nothing is in
  // flight; afterwards Run (and its continuations) pops nothing until Unquiesce().
  Result<void> Quiesce() override {
    std::lock_guard lock(mu_);
    quiesced_ = true;
    return {};
  }
  void Unquiesce() override {
    std::lock_guard lock(mu_);
    quiesced_ = false;
  }

  std::string name() const override { return "virtio-rng"; }
  std::string description() const override { return "rng: host getrandom"; }
  DeviceCounters counters() const override;

 private:
  enum class RunResult { kIdle, kMore, kBroken };
  // Processes chains of the activation `generation` until the queue is empty or the budget
  // is spent; posts itself again in the latter case.
  void Run(uint64_t generation);
  RunResult RunLocked();
  // Fills the writable part of `chain` (capped); returns the used length.
  uint32_t FillChain(const DescriptorChain& chain);

  asio::io_context* const loop_;
  std::mutex mu_;
  uint64_t generation_ = 0;  // bumped by Activate and Reset: stale continuations stop
  bool quiesced_ = false;    // Quiesce() until Unquiesce(): Run pops nothing
  ActiveQueues active_;      // valid while queue_ != nullptr
  Queue* queue_ = nullptr;   // the requestq while live and not broken
  DescriptorChain chain_;    // reused between pops
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> drops_{0};
};

Result<void> VirtioRng::Activate(ActiveQueues queues) {
  if (queues.queues.size() != 1 || queues.memory == nullptr) {
    return Err("virtio-rng: expected one queue and guest memory");
  }
  std::lock_guard lock(mu_);
  ++generation_;
  active_ = std::move(queues);
  queue_ = active_.queues[0];
  return {};
}

void VirtioRng::Reset() {
  std::lock_guard lock(mu_);
  ++generation_;
  queue_ = nullptr;
  active_ = ActiveQueues{};
}

void VirtioRng::ProcessQueue(uint16_t index) {
  if (index != 0) return;
  uint64_t generation;
  {
    std::lock_guard lock(mu_);
    generation = generation_;
  }
  Run(generation);
}

void VirtioRng::Run(uint64_t generation) {
  RunResult result;
  std::function<void(const std::string&)> mark_broken;
  {
    std::lock_guard lock(mu_);
    if (generation != generation_ || queue_ == nullptr || !queue_->ready() || quiesced_) return;
    result = RunLocked();
    if (result == RunResult::kBroken) {
      mark_broken = active_.mark_broken;
      queue_ = nullptr;  // nothing more until the driver resets the device
    }
  }
  if (result == RunResult::kBroken) {
    // The queue and the transport log this (rate-limited).
    if (mark_broken) mark_broken("malformed available ring");
  } else if (result == RunResult::kMore) {
    std::weak_ptr<VirtioRng> weak = weak_from_this();
    asio::post(*loop_, [weak, generation] {
      if (auto self = weak.lock()) self->Run(generation);
    });
  }
}

VirtioRng::RunResult VirtioRng::RunLocked() {
  uint64_t spent = 0;
  bool pushed = false;
  RunResult result = RunResult::kIdle;
  while (result == RunResult::kIdle) {
    if (spent >= kBudgetPerRun) {
      result = RunResult::kMore;
      break;
    }
    Queue::PopResult pop = queue_->Pop(&chain_);
    if (pop == Queue::PopResult::kEmpty) break;
    if (pop == Queue::PopResult::kBroken) {
      result = RunResult::kBroken;
      break;
    }
    uint32_t used = FillChain(chain_);
    queue_->PushUsed(chain_.head(), used);
    spent += std::max<uint32_t>(used, 1);
    pushed = true;
  }
  // Also after a broken ring: the chains already completed are the guest's.
  if (pushed && active_.signal_used) active_.signal_used(0);
  return result;
}

uint32_t VirtioRng::FillChain(const DescriptorChain& chain) {
  requests_.fetch_add(1, std::memory_order_relaxed);
  if (chain.readable_bytes() != 0 || chain.writable_bytes() == 0) {
    drops_.fetch_add(1, std::memory_order_relaxed);
    KITE_LOG_RATELIMITED(Debug, "virtio-rng: chain %u has readable buffers or no room",
                         chain.head());
    return 0;
  }
  uint32_t filled = 0;
  bool failed = false;
  for (const iovec& iov : chain.writable()) {
    size_t want = std::min<size_t>(iov.iov_len, kMaxBytesPerChain - filled);
    size_t got = FillRandom(static_cast<uint8_t*>(iov.iov_base), want, &failed);
    filled += static_cast<uint32_t>(got);
    if (failed || filled == kMaxBytesPerChain) break;
  }
  if (failed) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    KITE_LOG_RATELIMITED(Warn, "virtio-rng: getrandom failed after %u bytes", filled);
  }
  bytes_.fetch_add(filled, std::memory_order_relaxed);
  return filled;
}

DeviceCounters VirtioRng::counters() const {
  DeviceCounters c;
  c.requests = requests_.load(std::memory_order_relaxed);
  c.bytes_read = bytes_.load(std::memory_order_relaxed);
  c.errors = errors_.load(std::memory_order_relaxed);
  c.drops = drops_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace

Result<std::shared_ptr<VirtioDevice>> CreateVirtioRng(asio::io_context* loop) {
  if (loop == nullptr) return Err("virtio-rng: no event loop");
  uint8_t probe;
  bool failed = false;
  if (FillRandom(&probe, 1, &failed) != 1) {
    return SysErr("virtio-rng: getrandom");
  }
  return std::shared_ptr<VirtioDevice>(std::make_shared<VirtioRng>(loop));
}

}  // namespace kite::virtio
