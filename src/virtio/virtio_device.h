// VirtioDevice: what a virtio device type (block, net, rng) implements; the transport
// (mmio_transport.h) does the rest — registers, feature negotiation, status, queue setup,
// notifications and interrupts.
//
// Threads and lifetime:
//   * Construction, then the transport calls device_id(), device_features(), queue_max_sizes()
//     and ReadConfig/WriteConfig on vCPU threads, under the transport's lock.
//   * Activate() runs on a vCPU thread (the driver's DRIVER_OK write), under the transport's
//     lock, once the driver accepted features and set up at least the queues it enabled.
//   * ProcessQueue() runs on the event loop (asio io_context thread) when a queue is
//     notified, and only between Activate() and Reset().
//   * Reset() runs on a vCPU thread (status = 0) or at VM teardown, under the transport's
//     lock; when it returns, no request is in flight and nothing will be written to guest
//     memory on the old queues any more (BAD_INPUTS G33). It must not wait for the event loop
//     thread to run anything (the loop may be stopped already at teardown); device code that
//     runs on the loop checks an activation generation instead.
//   * Quiesce() / Unquiesce() and the device state calls: see "Snapshot" below.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "virtio/queue.h"
#include "vmm/guest_memory.h"

namespace kite::virtio {

// What a device is given when the driver sets DRIVER_OK.
struct ActiveQueues {
  const GuestMemory* memory = nullptr;
  uint64_t features = 0;           // negotiated (driver-accepted) features
  std::span<Queue* const> queues;  // one per queue the device declared; ready() tells which
                                   // the driver enabled
  // Raises the used-buffer interrupt for `queue` if Queue::NeedsInterrupt() says so. Call
  // after a batch of PushUsed. Any thread.
  std::function<void(uint16_t queue)> signal_used;
  // Marks the device DEVICE_NEEDS_RESET and raises a configuration-change interrupt: the guest
  // broke the protocol (a broken queue, a malformed request the spec calls fatal). The device
  // stops processing until reset. Any thread.
  std::function<void(const std::string& why)> mark_broken;
};

struct DeviceCounters {
  uint64_t requests = 0;
  uint64_t bytes_read = 0;     // guest reads (blk), frames received by the guest (net rx)
  uint64_t bytes_written = 0;  // guest writes (blk), frames sent by the guest (net tx)
  uint64_t errors = 0;         // requests completed with an error status
  uint64_t drops = 0;          // frames or requests dropped (net), malformed requests
  // virtio-blk, per operation (completed, successfully or not): query-blockstats.
  uint64_t reads = 0;
  uint64_t writes = 0;
  uint64_t flushes = 0;
  uint64_t discards = 0;   // DISCARD and WRITE_ZEROES
  uint64_t throttled = 0;  // times the rate limit made a request wait (blk chains, net frames)
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  virtual uint32_t device_id() const = 0;
  // Offered features, including the transport bits the device supports
  // (VERSION_1 always; INDIRECT_DESC and EVENT_IDX normally).
  virtual uint64_t device_features() const = 0;
  // One entry per virtqueue: its maximum size (a power of two).
  virtual std::vector<uint16_t> queue_max_sizes() const = 0;

  // Device-specific configuration space, little-endian. Out-of-range reads return zeros,
  // out-of-range or read-only writes are ignored.
  virtual void ReadConfig(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void WriteConfig(uint64_t offset, std::span<const uint8_t> data) {
    (void)offset, (void)data;
  }

  // FEATURES_OK: the driver accepted `features` (a subset of device_features(), checked by
  // the transport). A device may still refuse a combination (error = FEATURES_OK not set).
  virtual Result<void> AcceptFeatures(uint64_t features) {
    (void)features;
    return {};
  }
  // DRIVER_OK. An error leaves the device not live (the transport sets DEVICE_NEEDS_RESET).
  virtual Result<void> Activate(ActiveQueues queues) = 0;
  // A queue was notified (kick). On the event loop.
  virtual void ProcessQueue(uint16_t index) = 0;
  // Status = 0 or teardown; see the header comment.
  virtual void Reset() = 0;

  // --- Snapshot and pause (called by MmioTransport::Quiesce/Resume/SaveState/RestoreState,
  // under the transport's lock, on a thread that is NOT the event loop while the loop runs;
  // see docs/VIRTIO.md "Snapshot state and quiesce"). ---
  // Stops the device from starting new work (no Pop, no frames taken from a backend; queue
  // continuations it posted to the loop do nothing) and waits until nothing is in flight:
  // every request completed and its used entry pushed, or its chain given back with
  // Queue::Unpop. The activation stays; the device is not reset. Also called on a device that
  // is not activated (then it only stops). Holds until Unquiesce(), across Activate/Reset.
  // An error (e.g. I/O still pending after a timeout) leaves the device quiesced but with work
  // in flight: the caller must not save, and Unquiesce()s it.
  virtual Result<void> Quiesce() { return {}; }
  // Lets the device work again. The transport then kicks every ready queue once.
  virtual void Unquiesce() {}
  // Device-specific state beyond the queues and the transport (while quiesced). Empty: none.
  virtual std::vector<uint8_t> SaveDeviceState() const { return {}; }
  // Validates `bytes` (as SaveDeviceState made them) completely, then applies them; on error
  // nothing changed. Called on a fresh device before Activate. Default: only "no state".
  virtual Result<void> RestoreDeviceState(std::span<const uint8_t> bytes) {
    if (!bytes.empty()) return Err(name() + ": unexpected device state bytes");
    return {};
  }

  // "virtio-blk", "virtio-net", ... and a one-line identification ("vda: disk.qcow2 (qcow2)").
  virtual std::string name() const = 0;
  virtual std::string description() const { return name(); }
  virtual DeviceCounters counters() const = 0;
};

}  // namespace kite::virtio
