// The two ways a guest reaches the PCI bus's configuration space, both BusDevices:
//
//   * PciEcam: the PCI Express Enhanced Configuration Access Mechanism (PCIe Base 4.0, 7.2.2),
//     an MMIO window on the MMIO bus described by the ACPI MCFG table. Offset =
//     bus << 20 | device << 15 | function << 12 | register. kite has bus 0 only (a 1 MiB
//     window); offsets 256..4095 of a function (PCIe extended space) read 0 for a present
//     function, as a conventional PCI device's would not exist there.
//   * PciConfigPorts: configuration mechanism #1 (PCI 3.0, 3.2.2.3.2): the 32-bit address
//     register at port 0xCF8 (enable bit 31, bus 23:16, device 15:11, function 10:8, register
//     7:2) and the data window at 0xCFC-0xCFF, on the PIO bus at 0xCF8 (8 ports). Linux probes
//     it before it trusts MCFG, and uses it when the ECAM window is not reserved.
//
// Bad accesses (a width that is not 1, 2 or 4 bytes, a misaligned register, another bus, the
// enable bit clear) read all ones and are dropped on write, and counted.
//
// Threads: vCPU threads. The CF8 address register is shared by all vCPUs (as on real
// hardware: the OS serialises config cycles with its own lock), guarded by a mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <span>

#include "devices/bus.h"
#include "devices/pci/pci_bus.h"

namespace kite::pci {

inline constexpr uint64_t kEcamBusSize = 1ull << 20;  // 32 devices × 8 functions × 4 KiB
inline constexpr uint16_t kConfigAddressPort = 0xcf8;
inline constexpr uint16_t kConfigPortsSize = 8;  // 0xCF8-0xCFF

class PciEcam : public BusDevice {
 public:
  explicit PciEcam(PciBus* bus) : bus_(bus) {}
  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;
  uint64_t bad_accesses() const { return bad_.load(std::memory_order_relaxed); }

 private:
  PciBus* bus_;
  std::atomic<uint64_t> bad_{0};
};

class PciConfigPorts : public BusDevice {
 public:
  explicit PciConfigPorts(PciBus* bus) : bus_(bus) {}
  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;
  uint64_t bad_accesses() const { return bad_.load(std::memory_order_relaxed); }

 private:
  // The (device, function, register) the address register selects, for a data access of
  // `size` bytes at data port byte `byte`; false when it selects nothing.
  bool Target(uint64_t byte, size_t size, uint8_t* dev, uint8_t* function, uint16_t* reg);

  PciBus* bus_;
  std::mutex mu_;
  uint32_t address_ = 0;
  std::atomic<uint64_t> bad_{0};
};

}  // namespace kite::pci
