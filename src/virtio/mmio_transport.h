// MmioTransport: the virtio-mmio version 2 ("modern") transport (virtio 1.2 section 4.2) in
// front of one VirtioDevice. It is a BusDevice on the MMIO bus, one page per device.
//
//   * Registers: magic, version, IDs, feature windows, queue selection and setup, status,
//     interrupt status/ack, config generation and the device's config space at 0x100.
//   * The status state machine (section 3.1.1): ACKNOWLEDGE → DRIVER → FEATURES_OK (refused
//     when the driver accepted a feature the device did not offer, or without VERSION_1) →
//     DRIVER_OK (refused without FEATURES_OK: nothing is activated with bad state, G32).
//     Feature writes after FEATURES_OK are ignored. Writing 0 resets the device, which waits
//     for its in-flight I/O first (G33).
//   * Queue setup registers are honoured only while the selected queue is not ready;
//     QueueReady = 1 validates the queue (Queue::Activate) and a bad one stays not ready (G12,
//     G13); an out-of-range QueueSel selects nothing (G14).
//   * Notifications: a QueueNotify write that reaches the transport (no ioeventfd) is posted to
//     the event loop; with an ioeventfd the VMM calls HandleNotify() from the loop directly, so
//     a kick costs no exit to userspace. Out-of-range queue indices are ignored (G14).
//   * Interrupts: InterruptStatus bits (used buffer, config change) are set and the IrqLine is
//     pulsed (an irqfd in the VMM: edge-triggered, no exit); InterruptAck clears bits.
//   * Only 32-bit accesses to registers are valid (4.2.2.2); others read as 0 and writes are
//     dropped. Config space accepts 1-, 2-, 4- and 8-byte accesses.
//
//   * Snapshot (mmio_transport_snapshot.cc): Quiesce() stops notifications and drains the
//     device without resetting it, Resume() undoes that and re-kicks every ready queue;
//     SaveState()/RestoreState() turn the transport, its queues and the device's bytes into a
//     TransportState (virtio_state.h) and back; a restore activates a live device without a
//     guest handshake.
//
// Threads: Read/Write on vCPU threads (serialised by the transport's lock); HandleNotify on
// the event loop; signal_used/mark_broken from any thread. Quiesce, Resume, SaveState and
// RestoreState on a control thread that is NOT the event loop (Quiesce waits for completions
// the loop delivers), with the vCPUs paused (a register access meanwhile waits on the lock).
#pragma once

#include <asio/io_context.hpp>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "devices/bus.h"
#include "devices/irq_line.h"
#include "virtio/queue.h"
#include "virtio/virtio_device.h"
#include "virtio/virtio_state.h"
#include "vmm/guest_memory.h"

namespace kite::virtio {

struct TransportEnv {
  asio::io_context* loop = nullptr;  // ProcessQueue and posted notifications run here
  std::shared_ptr<IrqLine> irq;      // pulsed once per interrupt
  const GuestMemory* memory = nullptr;
};

struct TransportStats {
  uint64_t notifications = 0;  // HandleNotify calls for a live queue
  uint64_t interrupts = 0;     // IrqLine pulses
  uint64_t resets = 0;
  uint64_t protocol_errors = 0;  // refused status/feature/queue writes, bad accesses
  uint64_t deferred_kicks = 0;   // notifications that arrived while quiesced (served by Resume)
};

class MmioTransport : public BusDevice {
 public:
  MmioTransport(std::shared_ptr<VirtioDevice> device, TransportEnv env);
  ~MmioTransport() override;  // resets the device

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  // Queue `index` was kicked. On the event loop. Ignored unless the device is live (DRIVER_OK,
  // not broken) and the queue is ready.
  void HandleNotify(uint16_t index);
  // Teardown: resets the device (waits for in-flight I/O). Idempotent.
  void Shutdown();
  // The device changed its configuration space (capacity, link status, ...): bumps
  // ConfigGeneration and, once the driver is up (DRIVER_OK), raises a configuration-change
  // interrupt. Any thread; takes no lock.
  void NotifyConfigChanged();

  // --- Snapshot and pause (threads: see the header comment) ---
  // Stops serving notifications (kicks that arrive meanwhile are served by Resume) and has the
  // device finish or give back everything in flight (VirtioDevice::Quiesce). The activation
  // stays. On error the transport stays quiesced; call Resume().
  Result<void> Quiesce();
  // Serves notifications again and kicks every ready queue once on the loop (a kick that came
  // while quiesced, or before the snapshot, is not lost); after RestoreState it also raises the
  // used-buffer interrupt once. Does nothing when not quiesced.
  void Resume();
  bool quiesced() const { return quiesced_.load(std::memory_order_acquire); }
  // The transport as data. Refused unless quiesced or never activated (no DRIVER_OK).
  Result<TransportState> SaveState();
  // On a fresh transport (status 0, no queue set up): validates `state` completely (device
  // type, status combination, features offered now, interrupt bits, every queue as
  // Queue::Restore checks it, the device's bytes) and only then applies it; a live device
  // (DRIVER_OK without DEVICE_NEEDS_RESET) is activated without a guest handshake, a broken
  // one stays broken and inactive. The transport is left quiesced: Resume() starts it. On error
  // the transport is still fresh.
  Result<void> RestoreState(const TransportState& state);

  size_t num_queues() const { return queues_.size(); }
  VirtioDevice& device() { return *device_; }
  const VirtioDevice& device() const { return *device_; }
  uint32_t status() const { return status_.load(std::memory_order_acquire); }
  TransportStats stats() const;

 private:
  // See mmio_transport.cc.
  uint32_t ReadRegister(uint64_t offset);
  void WriteRegister(uint64_t offset, uint32_t value);
  void WriteQueueRegister(uint64_t offset, uint32_t value);
  void WriteQueueReady(Queue* queue, uint32_t value);
  void WriteDriverFeatures(uint32_t value);
  void WriteStatus(uint32_t value);
  bool NegotiateFeatures();
  void ActivateDevice();
  Result<void> ActivateLocked();  // hands the queues to the device (DRIVER_OK or a restore)
  void ResetLocked();
  void AssignRegistersLocked(const TransportState& state);
  Result<void> CheckRestore(const TransportState& state);
  Result<std::vector<std::unique_ptr<Queue>>> RestoreQueues(const TransportState& state);
  void PostNotify(uint16_t index);
  void SignalUsed(uint16_t queue, uint64_t epoch);
  void MarkBroken(const std::string& why, uint64_t epoch);
  void RaiseInterrupt(uint32_t bits);
  void ProtocolError();
  Queue* SelectedQueue();  // nullptr when QueueSel is out of range

  std::shared_ptr<VirtioDevice> device_;
  TransportEnv env_;
  uint64_t offered_features_ = 0;  // device_features() minus what this transport cannot do
  std::mutex mu_;                  // registers and queue setup
  // Shared by HandleNotify while it calls the device; taken exclusively by a reset (after
  // live_ is cleared) so that no ProcessQueue runs during or after the device's Reset().
  // Lock order: mu_ before notify_mu_.
  std::shared_mutex notify_mu_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::vector<Queue*> queue_ptrs_;
  uint32_t queue_sel_ = 0;
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  uint64_t driver_features_ = 0;
  bool shut_down_ = false;
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
