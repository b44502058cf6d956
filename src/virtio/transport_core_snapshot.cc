// TransportCore: pause and snapshot, for every transport. Quiesce/Resume keep the activation
// (unlike a reset); SaveState/RestoreState convert the transport to and from a TransportState
// (virtio_state.h).
//
// Order for a snapshot:  Quiesce() → SaveState() → Resume() (or the VM is torn down).
// Order for a restore:   fresh device + transport, guest memory already restored →
//                        RestoreState() → (vCPUs restored) → Resume().
//
// Resume kicks every ready queue once and, after a restore, raises the used-buffer interrupt
// (of every ready queue): a driver that published requests and kicked before the snapshot will
// not kick again, and one that was waiting for an interrupt already missed it (Cloud
// Hypervisor PR #8004, Firecracker PR #5958). Both are harmless when there was nothing to do.
// A restore never touches the rings of a queue that was not ready (Cloud Hypervisor #8693).
//
// Threads: see transport_core.h. All four take mu_; Quiesce also takes notify_mu_ exclusively
// once, so that no HandleNotify is inside the device when the device is asked to quiesce.
#include <string>
#include <utility>

#include "base/units.h"
#include "virtio/transport_core.h"
#include "virtio/virtio_spec.h"

namespace kite::virtio {
namespace {

constexpr uint32_t kKnownStatus = kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk |
                                  kStatusDriverOk | kStatusFailed | kStatusDeviceNeedsReset;
constexpr uint32_t kKnownInterrupts =
    TransportCore::kUsedBufferBit | TransportCore::kConfigChangeBit;

std::string Hex(uint64_t v) {
  return "0x" + ToHex(v);
}

// The combinations WriteStatus can produce: each of DRIVER, FEATURES_OK, DRIVER_OK needs the
// one before it; DEVICE_NEEDS_RESET is only set once the device was activated; FAILED anywhere.
Result<void> CheckStatus(uint32_t status) {
  auto needs = [status](uint32_t bit, uint32_t required) {
    return (status & bit) == 0 || (status & required) != 0;
  };
  if ((status & ~kKnownStatus) != 0 || !needs(kStatusDriver, kStatusAcknowledge) ||
      !needs(kStatusFeaturesOk, kStatusDriver) || !needs(kStatusDriverOk, kStatusFeaturesOk) ||
      !needs(kStatusDeviceNeedsReset, kStatusDriverOk)) {
    return Err("status " + Hex(status) + " is not a combination the driver can reach");
  }
  return {};
}

}  // namespace

Result<void> TransportCore::Quiesce() {
  std::lock_guard lock(mu_);
  if (shut_down_) return Err(device_->name() + ": quiesce after shutdown");
  quiesced_.store(true, std::memory_order_release);
  // Wait for a HandleNotify that saw quiesced_ == false; later ones only count their kick.
  { std::unique_lock barrier(notify_mu_); }
  return device_->Quiesce();
}

void TransportCore::Resume() {
  bool restored;
  {
    std::lock_guard lock(mu_);
    if (!quiesced_.load(std::memory_order_acquire)) return;
    device_->Unquiesce();
    quiesced_.store(false, std::memory_order_release);
    restored = std::exchange(restored_, false);
  }
  if (!live_.load(std::memory_order_acquire)) return;
  for (size_t q = 0; q < queues_.size(); ++q) PostNotify(static_cast<uint16_t>(q));
  if (restored) RaiseInterrupt(kUsedBufferBit, kAllQueues);
}

Result<TransportState> TransportCore::SaveState() {
  std::lock_guard lock(mu_);
  uint32_t status = status_.load(std::memory_order_acquire);
  if (!quiesced_.load(std::memory_order_acquire) && (status & kStatusDriverOk)) {
    return Err(device_->name() + ": save of an activated device that is not quiesced");
  }
  TransportState s;
  s.device_id = device_->device_id();
  s.offered_features = offered_features_;
  s.status = status;
  s.queue_sel = queue_sel_;
  s.device_features_sel = device_features_sel_;
  s.driver_features_sel = driver_features_sel_;
  s.driver_features = driver_features_;
  s.interrupt_status = interrupt_status_.load(std::memory_order_acquire);
  s.config_generation = config_generation_.load(std::memory_order_acquire);
  for (size_t q = 0; q < queues_.size(); ++q) {
    s.queues.push_back(
        TRY_CTX(queues_[q]->Save(), device_->name() + ": saving queue " + std::to_string(q)));
  }
  s.device = device_->SaveDeviceState();
  return s;
}

// Everything in `state` except the queues and the device bytes, against this device as it is
// now. Under mu_.
Result<void> TransportCore::CheckRestore(const TransportState& s) {
  if (s.device_id != device_->device_id()) {
    return Err("saved device type " + std::to_string(s.device_id) + ", this is " +
               std::to_string(device_->device_id()));
  }
  if (s.queues.size() != queues_.size()) {
    return Err("saved " + std::to_string(s.queues.size()) + " queues, the device has " +
               std::to_string(queues_.size()));
  }
  TRY(CheckStatus(s.status));
  if ((s.interrupt_status & ~kKnownInterrupts) != 0) {
    return Err("interrupt status " + Hex(s.interrupt_status) + " has unknown bits");
  }
  if (s.status & kStatusFeaturesOk) {
    // The driver relies on what it negotiated: the device must still offer all of it.
    if (s.driver_features & ~offered_features_) {
      return Err("the driver accepted features " + Hex(s.driver_features & ~offered_features_) +
                 " that this device does not offer");
    }
    if (!(s.driver_features & FeatureBit(kFeatureVersion1))) {
      return Err("negotiated features without VERSION_1");
    }
    TRY_CTX(device_->AcceptFeatures(s.driver_features), "negotiated features");
  } else {
    for (const QueueState& q : s.queues) {
      if (q.ready) return Err("a queue is ready before FEATURES_OK");
    }
  }
  return {};
}

// Every queue restored into a new Queue (the transport's own stay untouched until commit).
Result<std::vector<std::unique_ptr<Queue>>> TransportCore::RestoreQueues(const TransportState& s) {
  bool event_idx = s.driver_features & FeatureBit(kFeatureEventIdx);
  bool indirect = s.driver_features & FeatureBit(kFeatureIndirectDesc);
  std::vector<std::unique_ptr<Queue>> queues;
  for (size_t q = 0; q < queues_.size(); ++q) {
    queues.push_back(std::make_unique<Queue>(queues_[q]->max_size()));
    TRY_CTX(queues.back()->Restore(s.queues[q], env_.memory, event_idx, indirect),
            "queue " + std::to_string(q));
  }
  return queues;
}

Result<void> TransportCore::RestoreState(const TransportState& s) {
  std::lock_guard lock(mu_);
  std::string what = device_->name() + ": restore";
  bool fresh = status_.load(std::memory_order_acquire) == 0 && !live_.load() && !shut_down_;
  for (const auto& queue : queues_) fresh = fresh && !queue->ready();
  if (!fresh) return Err(what + ": the transport is not fresh");
  TRY_CTX(CheckRestore(s), what);
  std::vector<std::unique_ptr<Queue>> queues = TRY_CTX(RestoreQueues(s), what);
  // Quiesced before it has state, so nothing (a backend's frames) runs before Resume().
  TRY_CTX(device_->Quiesce(), what);
  if (Result<void> r = device_->RestoreDeviceState(s.device); !r) {
    device_->Unquiesce();
    return std::move(r).error().Context(what + ": device state");
  }
  {
    std::unique_lock barrier(notify_mu_);  // no HandleNotify looks at queues_ meanwhile
    queues_ = std::move(queues);
    for (size_t q = 0; q < queues_.size(); ++q) queue_ptrs_[q] = queues_[q].get();
  }
  AssignRegistersLocked(s);
  quiesced_.store(true, std::memory_order_release);
  restored_ = true;
  bool live = (s.status & kStatusDriverOk) && !(s.status & kStatusDeviceNeedsReset);
  if (!live) return {};  // not activated yet, or broken: stays so until the guest resets it
  if (Result<void> activated = ActivateLocked(); !activated) {
    ResetLocked();
    quiesced_.store(false, std::memory_order_release);
    restored_ = false;
    device_->Unquiesce();
    return std::move(activated).error().Context(what + ": activation");
  }
  // The device may have broken itself inside Activate (MarkBroken set DEVICE_NEEDS_RESET).
  if (!(status_.load(std::memory_order_acquire) & kStatusDeviceNeedsReset)) {
    live_.store(true, std::memory_order_release);
  }
  return {};
}

}  // namespace kite::virtio
