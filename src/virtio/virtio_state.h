// Snapshot state of the virtio layer as plain data: one QueueState per virtqueue and one
// TransportState per virtio-mmio device (registers, queues and the device's own bytes). No
// JSON here; the snapshot code converts these structs. See docs/VIRTIO.md, "Snapshot state and
// quiesce", for what is saved, how a restore is validated (BAD_INPUTS F13) and the order of
// calls (Quiesce → SaveState; RestoreState on a fresh transport → Resume).
//
// Nothing in flight is ever saved: a device is quiesced first, which completes or gives back
// (Queue::Unpop) every chain it popped, so a queue is fully described by its ring addresses
// and its indices.
#pragma once

#include <cstdint>
#include <vector>

namespace kite::virtio {

// One split virtqueue (Queue::Save / Queue::Restore).
struct QueueState {
  uint16_t max_size = 0;    // QueueNumMax of the saving device; must equal the restoring one's
  uint16_t size = 0;        // QueueNum as last written by the driver (validated only when ready)
  bool ready = false;       // QueueReady: activated by the driver (rings checked)
  uint64_t desc_addr = 0;   // QueueDesc: descriptor table, guest-physical
  uint64_t avail_addr = 0;  // QueueDriver: available ring
  uint64_t used_addr = 0;   // QueueDevice: used ring
  // Free-running 16-bit ring indices. With nothing in flight every chain taken from the
  // available ring has been returned, so next_avail == next_used, and used->idx in guest
  // memory equals next_used (the device is the only writer of used->idx).
  uint16_t next_avail = 0;  // avail index the device consumed up to
  uint16_t next_used = 0;   // used index the device published up to
  // Event index bookkeeping (virtio 1.2 section 2.7.7): the used index at the last interrupt
  // decision; not valid before the first decision (which then always interrupts).
  uint16_t signalled_used = 0;
  bool signalled_used_valid = false;

  bool operator==(const QueueState&) const = default;
};

// One virtio-mmio transport and its device (MmioTransport::SaveState / RestoreState).
struct TransportState {
  uint32_t device_id = 0;         // DeviceID: a restore into another device type is refused
  uint64_t offered_features = 0;  // DeviceFeatures at save time (informational: a restore
                                  // checks driver_features against what is offered *now*)
  // Registers (virtio 1.2 section 4.2.2), as the driver last wrote or read them.
  uint32_t status = 0;               // Status, DEVICE_NEEDS_RESET included
  uint32_t queue_sel = 0;            // QueueSel (any value: out of range selects nothing)
  uint32_t device_features_sel = 0;  // DeviceFeaturesSel
  uint32_t driver_features_sel = 0;  // DriverFeaturesSel
  uint64_t driver_features = 0;      // DriverFeatures, both words (negotiated once FEATURES_OK)
  uint32_t interrupt_status = 0;     // InterruptStatus bits not yet acknowledged
  uint32_t config_generation = 0;    // ConfigGeneration
  std::vector<QueueState> queues;    // one per queue the device declares
  // VirtioDevice::SaveDeviceState(): device-specific bytes (empty for blk and rng; net: a
  // version byte and the link status). Only the device interprets them.
  std::vector<uint8_t> device;

  bool operator==(const TransportState&) const = default;
};

}  // namespace kite::virtio
