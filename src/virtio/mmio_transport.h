// MmioTransport: the virtio-mmio version 2 ("modern") transport (virtio 1.2 section 4.2) in
// front of one VirtioDevice. It is a BusDevice on the MMIO bus, one page per device. The
// transport-independent part — status state machine, feature negotiation, queue setup and
// activation, reset, notifications, quiesce and snapshot state — is TransportCore
// (transport_core.h); this class is the register file of 4.2.2 on top of it.
//
//   * Registers: magic, version, IDs, feature windows, queue selection and setup, status,
//     interrupt status/ack, config generation and the device's config space at 0x100.
//   * Notifications: a QueueNotify write that reaches the transport (no ioeventfd) is posted to
//     the event loop; with an ioeventfd the VMM calls HandleNotify() from the loop directly, so
//     a kick costs no exit to userspace. Out-of-range queue indices are ignored (G14).
//   * Interrupts: InterruptStatus bits (used buffer, config change) are set and the IrqLine is
//     pulsed (an irqfd in the VMM: edge-triggered, no exit); InterruptAck clears bits.
//   * Only 32-bit accesses to registers are valid (4.2.2.2); others read as 0 and writes are
//     dropped. Config space accepts 1-, 2-, 4- and 8-byte accesses.
//
// Threads: Read/Write on vCPU threads (serialised by the core's lock); the rest as
// TransportCore says.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "devices/bus.h"
#include "virtio/transport_core.h"

namespace kite::virtio {

class MmioTransport : public BusDevice, public TransportCore {
 public:
  MmioTransport(std::shared_ptr<VirtioDevice> device, TransportEnv env);
  ~MmioTransport() override;  // resets the device

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  void DeliverInterrupt(uint32_t bits, uint16_t queue) override;
  uint32_t ReadRegister(uint64_t offset);
  void WriteRegister(uint64_t offset, uint32_t value);
  void WriteQueueRegister(uint64_t offset, uint32_t value);
};

}  // namespace kite::virtio
