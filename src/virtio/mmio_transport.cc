// The virtio-mmio version 2 transport (virtio 1.2 section 4.2): the register file of 4.2.2,
// the device status state machine of 3.1.1 / 4.2.3.1, queue setup (4.2.3.2), notifications
// and interrupts (4.2.3.3, 4.2.3.4).
//
// Threads (see mmio_transport.h): Read/Write run on vCPU threads and take mu_ for the whole
// access, so the device's configuration calls, Activate() and Reset() run under it too.
// HandleNotify runs on the event loop and never takes mu_: it holds notify_mu_ shared while it
// calls the device, and a reset clears live_ and then takes notify_mu_ exclusively, so that no
// ProcessQueue runs during or after the device's Reset(). The callbacks given to the device
// (signal_used, mark_broken) and NotifyConfigChanged use atomics only, so a device may call
// them from ProcessQueue, from Activate/Reset (under mu_) or from any other thread.
//
// Policy for a driver that breaks the protocol: the access is ignored (reads give 0), counted
// in protocol_errors and, where it says something useful, logged rate-limited.
#include "virtio/mmio_transport.h"

#include <asio/post.hpp>
#include <cstring>

#include "base/log.h"

namespace kite::virtio {
namespace {

using namespace mmio;

// Status bits the driver may set; DEVICE_NEEDS_RESET belongs to the device.
constexpr uint32_t kDriverStatusBits =
    kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk | kStatusFailed;

// Transport features kite does not implement, removed from whatever the device offers:
// packed rings, an IOMMU (ACCESS_PLATFORM), NOTIFICATION_DATA (38), NOTIF_CONFIG_DATA (39) and
// per-queue reset (RING_RESET, 40; the QueueReset register is not implemented).
constexpr uint64_t kUnsupportedFeatures = FeatureBit(kFeatureRingPacked) |
                                          FeatureBit(kFeatureAccessPlatform) | FeatureBit(38) |
                                          FeatureBit(39) | FeatureBit(40);

uint32_t Low(uint64_t v) {
  return static_cast<uint32_t>(v);
}
uint32_t High(uint64_t v) {
  return static_cast<uint32_t>(v >> 32);
}
uint64_t SetLow(uint64_t v, uint32_t low) {
  return (v & ~uint64_t{0xffffffff}) | low;
}
uint64_t SetHigh(uint64_t v, uint32_t high) {
  return Low(v) | (uint64_t{high} << 32);
}

bool IsConfigWidth(size_t n) {
  return n == 1 || n == 2 || n == 4 || n == 8;
}

}  // namespace

MmioTransport::MmioTransport(std::shared_ptr<VirtioDevice> device, TransportEnv env)
    : device_(std::move(device)), env_(std::move(env)) {
  // A version 2 device has no legacy interface: VERSION_1 is always offered (Linux refuses a
  // version 2 device without it).
  offered_features_ =
      (device_->device_features() & ~kUnsupportedFeatures) | FeatureBit(kFeatureVersion1);
  for (uint16_t max_size : device_->queue_max_sizes()) {
    queues_.push_back(std::make_unique<Queue>(max_size));
    queue_ptrs_.push_back(queues_.back().get());
  }
}

MmioTransport::~MmioTransport() {
  Shutdown();
}

void MmioTransport::Read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  if (offset >= kConfig) {
    if (IsConfigWidth(data.size())) {
      device_->ReadConfig(offset - kConfig, data);
      return;
    }
  } else if (data.size() == 4 && offset % 4 == 0) {
    uint32_t value = ReadRegister(offset);
    std::memcpy(data.data(), &value, 4);
    return;
  }
  // 4.2.2.2: control registers take 32-bit aligned accesses only.
  std::memset(data.data(), 0, data.size());
  ProtocolError();
}

void MmioTransport::Write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  if (shut_down_) return;
  if (offset >= kConfig) {
    if (IsConfigWidth(data.size())) {
      device_->WriteConfig(offset - kConfig, data);
      return;
    }
  } else if (data.size() == 4 && offset % 4 == 0) {
    uint32_t value;
    std::memcpy(&value, data.data(), 4);
    WriteRegister(offset, value);
    return;
  }
  ProtocolError();
}

// 4.2.2: the readable registers. Write-only and reserved ones read as 0.
uint32_t MmioTransport::ReadRegister(uint64_t offset) {
  Queue* queue = SelectedQueue();
  switch (offset) {
    case kMagicValue:
      return kMagic;
    case kVersion:
      return kVersion2;
    case kDeviceId:
      return device_->device_id();
    case kVendorId:
      return kVendor;
    case kDeviceFeatures:
      // Selections past the second word read 0 (no features beyond bit 63).
      if (device_features_sel_ == 0) return Low(offered_features_);
      if (device_features_sel_ == 1) return High(offered_features_);
      return 0;
    case kQueueNumMax:
      return queue ? queue->max_size() : 0;  // "0x0 if the queue is not available" (G14)
    case kQueueReady:
      return queue && queue->ready() ? 1 : 0;
    case kInterruptStatus:
      return interrupt_status_.load(std::memory_order_acquire);
    case kStatus:
      return status_.load(std::memory_order_acquire);
    case kShmLenLow:
    case kShmLenHigh:
      return 0xffffffff;  // "a length of -1": no shared memory region, whatever ShmSel says
    case kConfigGeneration:
      return config_generation_.load(std::memory_order_acquire);
    default:
      return 0;
  }
}

void MmioTransport::WriteRegister(uint64_t offset, uint32_t value) {
  switch (offset) {
    case kDeviceFeaturesSel:
      device_features_sel_ = value;
      return;
    case kDriverFeatures:
      WriteDriverFeatures(value);
      return;
    case kDriverFeaturesSel:
      driver_features_sel_ = value;
      return;
    case kQueueSel:
      queue_sel_ = value;  // out of range selects nothing (G14)
      return;
    case kQueueNotify:
      // Without an ioeventfd the kick lands here; serve it on the loop, never on a vCPU.
      if (value >= queues_.size() || env_.loop == nullptr) {
        ProtocolError();  // G14
        return;
      }
      PostNotify(static_cast<uint16_t>(value));
      return;
    case kInterruptAck:
      interrupt_status_.fetch_and(~value, std::memory_order_acq_rel);
      return;
    case kStatus:
      WriteStatus(value);
      return;
    case kQueueNum:
    case kQueueReady:
    case kQueueDescLow:
    case kQueueDescHigh:
    case kQueueDriverLow:
    case kQueueDriverHigh:
    case kQueueDeviceLow:
    case kQueueDeviceHigh:
      WriteQueueRegister(offset, value);
      return;
    case kShmSel:
      return;  // no shared memory regions: every selection reads a length of -1
    default:
      ProtocolError();  // read-only, reserved, or QueueReset (VIRTIO_F_RING_RESET not offered)
      return;
  }
}

void MmioTransport::WriteDriverFeatures(uint32_t value) {
  // 3.1.1: the feature set is fixed once FEATURES_OK is set (G32).
  if (status_.load(std::memory_order_acquire) & kStatusFeaturesOk) {
    ProtocolError();
    return;
  }
  if (driver_features_sel_ == 0) {
    driver_features_ = SetLow(driver_features_, value);
  } else if (driver_features_sel_ == 1) {
    driver_features_ = SetHigh(driver_features_, value);
  } else if (value != 0) {
    ProtocolError();  // a feature beyond bit 63: never offered
  }
}

// 4.2.3.2: queue setup. Honoured only before DRIVER_OK and while the selected queue is not
// ready; the queue validates everything at QueueReady = 1 (Queue::Activate).
void MmioTransport::WriteQueueRegister(uint64_t offset, uint32_t value) {
  Queue* queue = SelectedQueue();
  if (queue == nullptr || (status_.load(std::memory_order_acquire) & kStatusDriverOk)) {
    ProtocolError();  // G14, or a change under a live device
    return;
  }
  if (offset == kQueueReady) {
    WriteQueueReady(queue, value);
    return;
  }
  if (queue->ready()) {
    ProtocolError();
    return;
  }
  switch (offset) {
    case kQueueNum:
      // A size that does not fit 16 bits must not wrap into a valid one: 0 is refused (G13).
      queue->set_size(value <= 0xffff ? static_cast<uint16_t>(value) : 0);
      return;
    case kQueueDescLow:
      return queue->set_desc_addr(SetLow(queue->desc_addr(), value));
    case kQueueDescHigh:
      return queue->set_desc_addr(SetHigh(queue->desc_addr(), value));
    case kQueueDriverLow:
      return queue->set_avail_addr(SetLow(queue->avail_addr(), value));
    case kQueueDriverHigh:
      return queue->set_avail_addr(SetHigh(queue->avail_addr(), value));
    case kQueueDeviceLow:
      return queue->set_used_addr(SetLow(queue->used_addr(), value));
    case kQueueDeviceHigh:
      return queue->set_used_addr(SetHigh(queue->used_addr(), value));
  }
}

void MmioTransport::WriteQueueReady(Queue* queue, uint32_t value) {
  if (value == 0) {
    // Linux's del_vq writes 0 (before DRIVER_OK or after a reset) and expects to read 0 back.
    if (queue->ready()) queue->Reset();
    return;
  }
  if (value != 1 || !(status_.load(std::memory_order_acquire) & kStatusFeaturesOk)) {
    ProtocolError();  // the ring format depends on the negotiated features
    return;
  }
  if (queue->ready()) return;
  bool event_idx = driver_features_ & FeatureBit(kFeatureEventIdx);
  bool indirect = driver_features_ & FeatureBit(kFeatureIndirectDesc);
  Result<void> activated = queue->Activate(env_.memory, event_idx, indirect);
  if (!activated) {
    // G12, G13: the queue stays not ready; the driver reads QueueReady = 0.
    ProtocolError();
    KITE_LOG_RATELIMITED(Warn, "%s: queue %u refused: %s", device_->name().c_str(), queue_sel_,
                         activated.error().message().c_str());
  }
}

// 3.1.1 and 2.1: the driver sets ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK in that order and
// never clears a bit (except by writing 0, a reset). A FEATURES_OK the device cannot accept is
// left unset, so the driver's read-back sees the refusal; DRIVER_OK without FEATURES_OK is
// ignored and nothing is activated (G32).
void MmioTransport::WriteStatus(uint32_t value) {
  if (value == 0) {
    ResetLocked();
    return;
  }
  uint32_t current = status_.load(std::memory_order_acquire);
  uint32_t requested = value & kDriverStatusBits;  // DEVICE_NEEDS_RESET is not the driver's
  uint32_t added = requested & ~current;
  uint32_t next = current | added;
  bool clears_a_bit = (current & kDriverStatusBits & ~requested) != 0;
  bool out_of_order = ((added & kStatusDriver) && !(next & kStatusAcknowledge)) ||
                      ((added & kStatusFeaturesOk) && !(next & kStatusDriver));
  if (clears_a_bit || out_of_order) {
    ProtocolError();
    return;
  }
  if ((added & kStatusFeaturesOk) && !NegotiateFeatures()) {
    added &= ~kStatusFeaturesOk;
    next &= ~kStatusFeaturesOk;
  }
  if ((added & kStatusDriverOk) && !(next & kStatusFeaturesOk)) {
    added &= ~kStatusDriverOk;
    ProtocolError();
  }
  status_.fetch_or(added & ~kStatusDriverOk, std::memory_order_acq_rel);
  if (added & kStatusDriverOk) ActivateDevice();
}

// FEATURES_OK: the driver may accept only what was offered, must accept VERSION_1 (a
// version 2 transport has no legacy interface), and the device may refuse a combination.
bool MmioTransport::NegotiateFeatures() {
  const char* why = nullptr;
  Result<void> accepted;
  if (driver_features_ & ~offered_features_) {
    why = "features that were not offered";
  } else if (!(driver_features_ & FeatureBit(kFeatureVersion1))) {
    why = "no VERSION_1";
  } else if (accepted = device_->AcceptFeatures(driver_features_); !accepted) {
    why = accepted.error().message().c_str();
  }
  if (why == nullptr) return true;
  ProtocolError();
  KITE_LOG_RATELIMITED(Warn, "%s: FEATURES_OK refused (features 0x%llx): %s",
                       device_->name().c_str(), static_cast<unsigned long long>(driver_features_),
                       why);
  return false;
}

// DRIVER_OK: hand the device its queues.
void MmioTransport::ActivateDevice() {
  Result<void> activated = ActivateLocked();
  uint32_t status = status_.fetch_or(kStatusDriverOk, std::memory_order_acq_rel);
  if (!activated) {
    // 2.1.2: DEVICE_NEEDS_RESET, and a configuration-change notification since DRIVER_OK is set.
    KITE_LOG_RATELIMITED(Warn, "%s: activation failed: %s", device_->name().c_str(),
                         activated.error().message().c_str());
    status_.fetch_or(kStatusDeviceNeedsReset, std::memory_order_acq_rel);
    RaiseInterrupt(kInterruptConfigChange);
    return;
  }
  // The device may have broken itself inside Activate already.
  if (!(status & kStatusDeviceNeedsReset)) live_.store(true, std::memory_order_release);
}

// The callbacks carry this activation's epoch, so a late call after a reset does nothing.
Result<void> MmioTransport::ActivateLocked() {
  uint64_t epoch = epoch_.load(std::memory_order_acquire);
  ActiveQueues active;
  active.memory = env_.memory;
  active.features = driver_features_;
  active.queues = queue_ptrs_;
  active.signal_used = [this, epoch](uint16_t queue) { SignalUsed(queue, epoch); };
  active.mark_broken = [this, epoch](const std::string& why) { MarkBroken(why, epoch); };
  return device_->Activate(std::move(active));
}

// Status 0 (4.2.3.1: "writing 0 ... triggers a device reset") or teardown. Under mu_.
void MmioTransport::ResetLocked() {
  epoch_.fetch_add(1, std::memory_order_acq_rel);
  live_.store(false, std::memory_order_release);
  // Wait for a HandleNotify that saw live_ == true; later ones see false.
  { std::unique_lock barrier(notify_mu_); }
  device_->Reset();  // waits for in-flight I/O (G33)
  for (auto& queue : queues_) queue->Reset();
  TransportState fresh;  // every register back to its reset value; the generation moves on
  fresh.config_generation = config_generation_.load(std::memory_order_acquire) + 1;
  AssignRegistersLocked(fresh);
  resets_.fetch_add(1, std::memory_order_relaxed);
}

// The registers of `state` (not its queues or device bytes). Under mu_.
void MmioTransport::AssignRegistersLocked(const TransportState& state) {
  queue_sel_ = state.queue_sel;
  device_features_sel_ = state.device_features_sel;
  driver_features_sel_ = state.driver_features_sel;
  driver_features_ = state.driver_features;
  interrupt_status_.store(state.interrupt_status, std::memory_order_release);
  status_.store(state.status, std::memory_order_release);
  config_generation_.store(state.config_generation, std::memory_order_release);
}

void MmioTransport::Shutdown() {
  std::lock_guard lock(mu_);
  if (shut_down_) return;
  ResetLocked();
  shut_down_ = true;  // later register writes are dropped: nothing can activate it again
}

void MmioTransport::HandleNotify(uint16_t index) {
  std::shared_lock lock(notify_mu_);
  if (index >= queues_.size()) {
    ProtocolError();  // G14
    return;
  }
  // Queue setup does not change while live_ is set (queue registers are refused after
  // DRIVER_OK, and a reset clears live_ and waits for us before touching the queues).
  if (!live_.load(std::memory_order_acquire) || !queues_[index]->ready()) return;
  if (quiesced_.load(std::memory_order_acquire)) {
    deferred_kicks_.fetch_add(1, std::memory_order_relaxed);  // Resume kicks every queue
    return;
  }
  notifications_.fetch_add(1, std::memory_order_relaxed);
  device_->ProcessQueue(index);
}

// 4.2.3.4: used buffer notification. Called by the device on the thread that owns the queue.
void MmioTransport::SignalUsed(uint16_t queue, uint64_t epoch) {
  if (epoch != epoch_.load(std::memory_order_acquire) || queue >= queues_.size()) return;
  if (queues_[queue]->NeedsInterrupt()) RaiseInterrupt(kInterruptUsedBuffer);
}

void MmioTransport::MarkBroken(const std::string& why, uint64_t epoch) {
  if (epoch != epoch_.load(std::memory_order_acquire)) return;
  live_.store(false, std::memory_order_release);
  uint32_t old = status_.fetch_or(kStatusDeviceNeedsReset, std::memory_order_acq_rel);
  if (old & kStatusDeviceNeedsReset) return;  // already broken: one interrupt, one line
  KITE_LOG_RATELIMITED(Warn, "%s: device needs reset: %s", device_->name().c_str(), why.c_str());
  RaiseInterrupt(kInterruptConfigChange);
}

void MmioTransport::NotifyConfigChanged() {
  config_generation_.fetch_add(1, std::memory_order_acq_rel);
  if (status_.load(std::memory_order_acquire) & kStatusDriverOk) {
    RaiseInterrupt(kInterruptConfigChange);
  }
}

void MmioTransport::RaiseInterrupt(uint32_t bits) {
  // Every raise pulses the line (as Firecracker and kvmtool do): an edge the guest missed
  // would otherwise leave a set bit nobody is told about.
  interrupt_status_.fetch_or(bits, std::memory_order_acq_rel);
  interrupts_.fetch_add(1, std::memory_order_relaxed);
  if (env_.irq) env_.irq->Pulse();
}

// Serves a kick of queue `index` on the loop (directly when there is no loop: tests).
void MmioTransport::PostNotify(uint16_t index) {
  if (env_.loop == nullptr) return HandleNotify(index);
  asio::post(*env_.loop, [this, alive = std::weak_ptr<int>(alive_), index] {
    if (alive.lock()) HandleNotify(index);
  });
}

Queue* MmioTransport::SelectedQueue() {
  return queue_sel_ < queues_.size() ? queues_[queue_sel_].get() : nullptr;
}

void MmioTransport::ProtocolError() {
  protocol_errors_.fetch_add(1, std::memory_order_relaxed);
}

TransportStats MmioTransport::stats() const {
  return {notifications_.load(std::memory_order_relaxed),
          interrupts_.load(std::memory_order_relaxed), resets_.load(std::memory_order_relaxed),
          protocol_errors_.load(std::memory_order_relaxed),
          deferred_kicks_.load(std::memory_order_relaxed)};
}

}  // namespace kite::virtio
