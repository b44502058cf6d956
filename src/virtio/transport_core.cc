// TransportCore: the device status state machine of 3.1.1, feature negotiation, queue setup
// and activation, notifications, interrupts and reset, shared by virtio-mmio and virtio-pci.
//
// Threads (see transport_core.h): register helpers run under mu_ on vCPU threads, so the
// device's configuration calls, Activate() and Reset() run under it too. HandleNotify runs on
// the event loop and never takes mu_: it holds notify_mu_ shared while it calls the device, and
// a reset clears live_ and then takes notify_mu_ exclusively, so that no ProcessQueue runs
// during or after the device's Reset(). The callbacks given to the device (signal_used,
// mark_broken) and NotifyConfigChanged use atomics only.
//
// Policy for a driver that breaks the protocol: the access is ignored, counted in
// protocol_errors and, where it says something useful, logged rate-limited.
#include "virtio/transport_core.h"

#include <asio/post.hpp>

#include "base/log.h"
#include "virtio/virtio_spec.h"

namespace kite::virtio {
namespace {

// Status bits the driver may set; DEVICE_NEEDS_RESET belongs to the device.
constexpr uint32_t kDriverStatusBits =
    kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk | kStatusFailed;

// Transport features kite does not implement, removed from whatever the device offers:
// packed rings, an IOMMU (ACCESS_PLATFORM), SR_IOV (37), NOTIFICATION_DATA (38),
// NOTIF_CONFIG_DATA (39) and per-queue reset (RING_RESET, 40).
constexpr uint64_t kUnsupportedFeatures = FeatureBit(kFeatureRingPacked) |
                                          FeatureBit(kFeatureAccessPlatform) | FeatureBit(37) |
                                          FeatureBit(38) | FeatureBit(39) | FeatureBit(40);

uint32_t Low(uint64_t v) {
  return static_cast<uint32_t>(v);
}
uint32_t High(uint64_t v) {
  return static_cast<uint32_t>(v >> 32);
}

}  // namespace

TransportCore::TransportCore(std::shared_ptr<VirtioDevice> device, TransportEnv env)
    : device_(std::move(device)), env_(std::move(env)) {
  // Modern transports have no legacy interface: VERSION_1 is always offered (Linux refuses a
  // modern device without it).
  offered_features_ =
      (device_->device_features() & ~kUnsupportedFeatures) | FeatureBit(kFeatureVersion1);
  for (uint16_t max_size : device_->queue_max_sizes()) {
    queues_.push_back(std::make_unique<Queue>(max_size));
    queue_ptrs_.push_back(queues_.back().get());
  }
}

TransportCore::~TransportCore() = default;

uint32_t TransportCore::DeviceFeatureWordLocked() const {
  // Selections past the second word read 0 (no features beyond bit 63).
  if (device_features_sel_ == 0) return Low(offered_features_);
  if (device_features_sel_ == 1) return High(offered_features_);
  return 0;
}

uint32_t TransportCore::DriverFeatureWordLocked() const {
  if (driver_features_sel_ == 0) return Low(driver_features_);
  if (driver_features_sel_ == 1) return High(driver_features_);
  return 0;
}

void TransportCore::WriteDriverFeatureWordLocked(uint32_t value) {
  // 3.1.1: the feature set is fixed once FEATURES_OK is set (G32).
  if (status_.load(std::memory_order_acquire) & kStatusFeaturesOk) {
    ProtocolError();
    return;
  }
  if (driver_features_sel_ == 0) {
    driver_features_ = (driver_features_ & ~uint64_t{0xffffffff}) | value;
  } else if (driver_features_sel_ == 1) {
    driver_features_ = Low(driver_features_) | (uint64_t{value} << 32);
  } else if (value != 0) {
    ProtocolError();  // a feature beyond bit 63: never offered
  }
}

Queue* TransportCore::SelectedQueueLocked() {
  return queue_sel_ < queues_.size() ? queues_[queue_sel_].get() : nullptr;
}

// Queue setup is honoured only before DRIVER_OK and while the selected queue is not ready;
// the queue validates everything when it is enabled (Queue::Activate).
Queue* TransportCore::QueueForSetupLocked() {
  Queue* queue = SelectedQueueLocked();
  if (queue == nullptr || queue->ready() ||
      (status_.load(std::memory_order_acquire) & kStatusDriverOk)) {
    ProtocolError();  // G14, or a change under a live device or an enabled queue
    return nullptr;
  }
  return queue;
}

void TransportCore::WriteQueueEnableLocked(uint32_t value) {
  Queue* queue = SelectedQueueLocked();
  if (queue == nullptr || (status_.load(std::memory_order_acquire) & kStatusDriverOk)) {
    ProtocolError();
    return;
  }
  if (value == 0) {
    // Linux's virtio-mmio del_vq writes 0 (before DRIVER_OK or after a reset) and expects to
    // read 0 back.
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
    // G12, G13: the queue stays not ready; the driver reads 0 back.
    ProtocolError();
    KITE_LOG_RATELIMITED(Warn, "%s: queue %u refused: %s", device_->name().c_str(), queue_sel_,
                         activated.error().message().c_str());
  }
}

// 3.1.1 and 2.1: the driver sets ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK in that order and
// never clears a bit (except by writing 0, a reset). A FEATURES_OK the device cannot accept is
// left unset, so the driver's read-back sees the refusal; DRIVER_OK without FEATURES_OK is
// ignored and nothing is activated (G32).
void TransportCore::WriteStatusLocked(uint32_t value) {
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

// FEATURES_OK: the driver may accept only what was offered, must accept VERSION_1 (a modern
// transport has no legacy interface), and the device may refuse a combination.
bool TransportCore::NegotiateFeatures() {
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
void TransportCore::ActivateDevice() {
  Result<void> activated = ActivateLocked();
  uint32_t status = status_.fetch_or(kStatusDriverOk, std::memory_order_acq_rel);
  if (!activated) {
    // 2.1.2: DEVICE_NEEDS_RESET, and a configuration-change notification since DRIVER_OK is set.
    KITE_LOG_RATELIMITED(Warn, "%s: activation failed: %s", device_->name().c_str(),
                         activated.error().message().c_str());
    status_.fetch_or(kStatusDeviceNeedsReset, std::memory_order_acq_rel);
    RaiseInterrupt(kConfigChangeBit, 0);
    return;
  }
  // The device may have broken itself inside Activate already.
  if (!(status & kStatusDeviceNeedsReset)) live_.store(true, std::memory_order_release);
}

// The callbacks carry this activation's epoch, so a late call after a reset does nothing.
Result<void> TransportCore::ActivateLocked() {
  uint64_t epoch = epoch_.load(std::memory_order_acquire);
  ActiveQueues active;
  active.memory = env_.memory;
  active.features = driver_features_;
  active.queues = queue_ptrs_;
  active.signal_used = [this, epoch](uint16_t queue) { SignalUsed(queue, epoch); };
  active.mark_broken = [this, epoch](const std::string& why) { MarkBroken(why, epoch); };
  return device_->Activate(std::move(active));
}

// Status 0 ("writing 0 ... triggers a device reset") or teardown. Under mu_.
void TransportCore::ResetLocked() {
  epoch_.fetch_add(1, std::memory_order_acq_rel);
  live_.store(false, std::memory_order_release);
  // Wait for a HandleNotify that saw live_ == true; later ones see false.
  { std::unique_lock barrier(notify_mu_); }
  device_->Reset();  // waits for in-flight I/O (G33)
  for (auto& queue : queues_) queue->Reset();
  TransportState fresh;  // every register back to its reset value; the generation moves on
  fresh.config_generation = config_generation_.load(std::memory_order_acquire) + 1;
  AssignRegistersLocked(fresh);
  ResetTransportLocked();
  resets_.fetch_add(1, std::memory_order_relaxed);
}

// The registers of `state` (not its queues or device bytes). Under mu_.
void TransportCore::AssignRegistersLocked(const TransportState& state) {
  queue_sel_ = state.queue_sel;
  device_features_sel_ = state.device_features_sel;
  driver_features_sel_ = state.driver_features_sel;
  driver_features_ = state.driver_features;
  interrupt_status_.store(state.interrupt_status, std::memory_order_release);
  status_.store(state.status, std::memory_order_release);
  config_generation_.store(state.config_generation, std::memory_order_release);
}

void TransportCore::Shutdown() {
  std::lock_guard lock(mu_);
  if (shut_down_) return;
  ResetLocked();
  shut_down_ = true;  // later register writes are dropped: nothing can activate it again
}

void TransportCore::HandleNotify(uint16_t index) {
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

// Used buffer notification. Called by the device on the thread that owns the queue.
void TransportCore::SignalUsed(uint16_t queue, uint64_t epoch) {
  if (epoch != epoch_.load(std::memory_order_acquire) || queue >= queues_.size()) return;
  if (queues_[queue]->NeedsInterrupt()) RaiseInterrupt(kUsedBufferBit, queue);
}

void TransportCore::MarkBroken(const std::string& why, uint64_t epoch) {
  if (epoch != epoch_.load(std::memory_order_acquire)) return;
  live_.store(false, std::memory_order_release);
  uint32_t old = status_.fetch_or(kStatusDeviceNeedsReset, std::memory_order_acq_rel);
  if (old & kStatusDeviceNeedsReset) return;  // already broken: one interrupt, one line
  KITE_LOG_RATELIMITED(Warn, "%s: device needs reset: %s", device_->name().c_str(), why.c_str());
  RaiseInterrupt(kConfigChangeBit, 0);
}

void TransportCore::NotifyConfigChanged() {
  config_generation_.fetch_add(1, std::memory_order_acq_rel);
  if (status_.load(std::memory_order_acquire) & kStatusDriverOk) {
    RaiseInterrupt(kConfigChangeBit, 0);
  }
}

void TransportCore::RaiseInterrupt(uint32_t bits, uint16_t queue) {
  // Every raise is delivered (as Firecracker and kvmtool do): an edge the guest missed would
  // otherwise leave a set bit nobody is told about.
  interrupt_status_.fetch_or(bits, std::memory_order_acq_rel);
  interrupts_.fetch_add(1, std::memory_order_relaxed);
  DeliverInterrupt(bits, queue);
}

// Serves a kick of queue `index` on the loop (directly when there is no loop: tests).
void TransportCore::PostNotify(uint16_t index) {
  if (env_.loop == nullptr) return HandleNotify(index);
  asio::post(*env_.loop, [this, alive = std::weak_ptr<int>(alive_), index] {
    if (alive.lock()) HandleNotify(index);
  });
}

void TransportCore::ProtocolError() {
  protocol_errors_.fetch_add(1, std::memory_order_relaxed);
}

TransportStats TransportCore::stats() const {
  return {notifications_.load(std::memory_order_relaxed),
          interrupts_.load(std::memory_order_relaxed), resets_.load(std::memory_order_relaxed),
          protocol_errors_.load(std::memory_order_relaxed),
          deferred_kicks_.load(std::memory_order_relaxed)};
}

}  // namespace kite::virtio
