// TransportCore: what every virtio transport does the same way, whatever its registers look
// like (virtio 1.2 chapter 3 and sections 2.1-2.7): the device status state machine, feature
// negotiation, queue setup and activation, notifications, device reset with drain, reset
// epochs, quiesce/resume and the snapshot state. MmioTransport (virtio-mmio, 4.2) and
// PciTransport (virtio-pci, 4.1) derive from it and add only their register layout and how an
// interrupt reaches the guest (an IRQ line; MSI-X vectors).
//
//   * Status (3.1.1): ACKNOWLEDGE → DRIVER → FEATURES_OK (refused when the driver accepted a
//     feature the device did not offer, or without VERSION_1, or the device refuses the
//     combination) → DRIVER_OK (refused without FEATURES_OK: nothing is activated with bad
//     state, G32). Feature writes after FEATURES_OK are ignored. Status 0 resets the device,
//     which waits for its in-flight I/O first (G33).
//   * Queue setup is honoured only before DRIVER_OK and while the selected queue is not ready;
//     enabling a queue validates it (Queue::Activate) and a bad one stays disabled (G12, G13);
//     an out-of-range queue selection selects nothing (G14).
//   * Notifications: a kick that reaches a transport's registers is posted to the event loop;
//     with an ioeventfd the VMM calls HandleNotify() from the loop directly.
//   * Interrupts: interrupt_status_ holds the pending bits (used buffer, config change: the
//     virtio-mmio InterruptStatus and the virtio-pci ISR have the same two bits); the derived
//     transport delivers them (DeliverInterrupt).
//   * Snapshot (transport_core_snapshot.cc): Quiesce() stops notifications and drains the
//     device without resetting it, Resume() undoes that and re-kicks every ready queue;
//     SaveState()/RestoreState() turn the transport, its queues and the device's bytes into a
//     TransportState (virtio_state.h) and back.
//
// Threads: register accesses on vCPU threads, serialised by mu_ (a derived transport takes it
// for its whole access); HandleNotify on the event loop (never takes mu_: it holds notify_mu_
// shared while it calls the device, and a reset takes notify_mu_ exclusively after clearing
// live_); the callbacks given to the device and NotifyConfigChanged use atomics only, from any
// thread. Quiesce, Resume, SaveState and RestoreState on a control thread that is NOT the
// event loop, with the vCPUs paused. Lock order: mu_ → notify_mu_ → the device's lock; the
// derived transport's interrupt delivery (DeliverInterrupt) may be called under any of them
// and takes only leaf locks.
#pragma once

#include <asio/io_context.hpp>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "base/result.h"
#include "devices/irq_line.h"
#include "virtio/queue.h"
#include "virtio/virtio_device.h"
#include "virtio/virtio_state.h"
#include "vmm/guest_memory.h"

namespace kite::virtio {

struct TransportEnv {
  asio::io_context* loop = nullptr;  // ProcessQueue and posted notifications run here
  std::shared_ptr<IrqLine> irq;      // virtio-mmio: pulsed once per interrupt (pci: unused)
  const GuestMemory* memory = nullptr;
};

struct TransportStats {
  uint64_t notifications = 0;  // HandleNotify calls for a live queue
  uint64_t interrupts = 0;     // interrupts raised (delivered, or left pending by a mask)
  uint64_t resets = 0;
  uint64_t protocol_errors = 0;  // refused status/feature/queue writes, bad accesses
  uint64_t deferred_kicks = 0;   // notifications that arrived while quiesced (served by Resume)
};

class TransportCore {
 public:
  // Interrupt bits (virtio-mmio InterruptStatus, virtio-pci ISR: the same two bits).
  static constexpr uint32_t kUsedBufferBit = 1;
  static constexpr uint32_t kConfigChangeBit = 2;
  // DeliverInterrupt's `queue` for "every ready queue" (after a restore).
  static constexpr uint16_t kAllQueues = 0xffff;

  virtual ~TransportCore();  // the derived destructor must call Shutdown()
  TransportCore(const TransportCore&) = delete;
  TransportCore& operator=(const TransportCore&) = delete;

  // Queue `index` was kicked. On the event loop. Ignored unless the device is live (DRIVER_OK,
  // not broken) and the queue is ready; out-of-range indices are counted (G14).
  void HandleNotify(uint16_t index);
  // Teardown: resets the device (waits for in-flight I/O); later register writes are dropped.
  // Idempotent.
  void Shutdown();
  // The device changed its configuration space: bumps the config generation and, once the
  // driver is up (DRIVER_OK), raises a configuration-change interrupt. Any thread; no lock.
  void NotifyConfigChanged();

  // --- Snapshot and pause (threads: see the header comment) ---
  // Stops serving notifications (kicks meanwhile are served by Resume) and has the device
  // finish or give back everything in flight. The activation stays. On error the transport
  // stays quiesced; call Resume().
  Result<void> Quiesce();
  // Serves notifications again and kicks every ready queue once on the loop; after
  // RestoreState it also raises the used-buffer interrupt once. Nothing when not quiesced.
  void Resume();
  bool quiesced() const { return quiesced_.load(std::memory_order_acquire); }
  // The transport as data. Refused unless quiesced or never activated (no DRIVER_OK).
  Result<TransportState> SaveState();
  // On a fresh transport (status 0, no queue set up): validates `state` completely (device
  // type, status combination, features offered now, interrupt bits, every queue, the device's
  // bytes) and only then applies it; a live device is activated without a guest handshake, a
  // broken one stays broken. Leaves the transport quiesced: Resume() starts it. On error the
  // transport is still fresh.
  Result<void> RestoreState(const TransportState& state);

  size_t num_queues() const { return queues_.size(); }
  VirtioDevice& device() { return *device_; }
  const VirtioDevice& device() const { return *device_; }
  uint32_t status() const { return status_.load(std::memory_order_acquire); }
  TransportStats stats() const;

 protected:
  TransportCore(std::shared_ptr<VirtioDevice> device, TransportEnv env);

  // Delivers an interrupt whose `bits` were just set in interrupt_status_: used buffer of
  // `queue` (kAllQueues: of every ready queue), or configuration change. Any thread, possibly
  // under mu_ or the device's lock: take leaf locks only.
  virtual void DeliverInterrupt(uint32_t bits, uint16_t queue) = 0;
  // A device reset: the transport's own registers back to their reset values. Under mu_.
  virtual void ResetTransportLocked() {}

  // --- Register helpers for the derived transports; all under mu_. ---
  uint32_t DeviceFeatureWordLocked() const;  // the word device_features_sel_ selects
  uint32_t DriverFeatureWordLocked() const;  // the word driver_features_sel_ selects
  void WriteDriverFeatureWordLocked(uint32_t value);
  void WriteStatusLocked(uint32_t value);
  Queue* SelectedQueueLocked();  // nullptr when queue_sel_ is out of range
  // The selected queue if its setup may change now (before DRIVER_OK, not ready); else counts
  // a protocol error and returns nullptr.
  Queue* QueueForSetupLocked();
  // queue_enable / QueueReady: 1 validates and enables, 0 disables (before DRIVER_OK).
  void WriteQueueEnableLocked(uint32_t value);
  // A kick that reached the registers: served on the loop (never on a vCPU).
  void PostNotify(uint16_t index);
  uint32_t interrupt_status() const { return interrupt_status_.load(std::memory_order_acquire); }
  uint32_t TakeInterruptStatus(uint32_t bits) {
    return interrupt_status_.fetch_and(~bits, std::memory_order_acq_rel);
  }
  uint32_t config_generation() const { return config_generation_.load(std::memory_order_acquire); }
  void RaiseInterrupt(uint32_t bits, uint16_t queue);
  void ProtocolError();

  std::shared_ptr<VirtioDevice> device_;
  TransportEnv env_;
  std::mutex mu_;  // registers and queue setup
  bool shut_down_ = false;
  uint32_t queue_sel_ = 0;
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  std::vector<std::unique_ptr<Queue>> queues_;

 private:
  bool NegotiateFeatures();
  void ActivateDevice();
  Result<void> ActivateLocked();  // hands the queues to the device (DRIVER_OK or a restore)
  void ResetLocked();
  void AssignRegistersLocked(const TransportState& state);
  Result<void> CheckRestore(const TransportState& state);
  Result<std::vector<std::unique_ptr<Queue>>> RestoreQueues(const TransportState& state);
  void SignalUsed(uint16_t queue, uint64_t epoch);
  void MarkBroken(const std::string& why, uint64_t epoch);

  uint64_t offered_features_ = 0;  // device_features() minus what transports cannot do
  // Shared by HandleNotify while it calls the device; taken exclusively by a reset (after
  // live_ is cleared) so that no ProcessQueue runs during or after the device's Reset().
  std::shared_mutex notify_mu_;
  std::vector<Queue*> queue_ptrs_;
  uint64_t driver_features_ = 0;
  std::atomic<uint32_t> status_{0};
  std::atomic<uint32_t> interrupt_status_{0};
  std::atomic<uint32_t> config_generation_{0};
  std::atomic<bool> live_{false};
  // Set by Quiesce/RestoreState, cleared by Resume. HandleNotify then only counts the kick.
  std::atomic<bool> quiesced_{false};
  bool restored_ = false;  // RestoreState since the last Resume: raise an interrupt (under mu_)
  // Bumped by every reset; callbacks handed to the device carry the epoch of their activation
  // and do nothing once it is stale.
  std::atomic<uint64_t> epoch_{0};
  // Posted notifications hold a weak reference: none runs after the transport is destroyed
  // on the loop's thread (teardown on another thread must stop the loop first).
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::atomic<uint64_t> notifications_{0};
  std::atomic<uint64_t> interrupts_{0};
  std::atomic<uint64_t> resets_{0};
  std::atomic<uint64_t> protocol_errors_{0};
  std::atomic<uint64_t> deferred_kicks_{0};
};

}  // namespace kite::virtio
