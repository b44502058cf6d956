// PciDevice: what a PCI function on kite's root bus implements. The bus routes configuration
// accesses (ECAM or ports 0xCF8/0xCFC) to ConfigRead/ConfigWrite and the accesses to the
// memory BARs it has mapped to BarRead/BarWrite; after every configuration write it asks
// MappedBars() where the function decodes now and moves the BARs' bus ranges to match.
//
// Threads: ConfigRead/ConfigWrite and MappedBars on vCPU threads (one at a time: the bus
// serialises configuration accesses), BarRead/BarWrite concurrently on vCPU threads. A device
// guards its own state.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kite::pci {

struct BarMapping {
  int index = 0;
  uint64_t address = 0;
  uint64_t size = 0;
  bool operator==(const BarMapping&) const = default;
};

class PciDevice {
 public:
  virtual ~PciDevice() = default;
  // Offsets 0..255; widths and alignment are the device's (PciConfigSpace) to check.
  virtual void ConfigRead(uint16_t offset, std::span<uint8_t> data) = 0;
  virtual void ConfigWrite(uint16_t offset, std::span<const uint8_t> data) = 0;
  // The memory BARs the function decodes now: memory space enabled and an address programmed.
  virtual std::vector<BarMapping> MappedBars() = 0;
  virtual void BarRead(int bar, uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void BarWrite(int bar, uint64_t offset, std::span<const uint8_t> data) = 0;
  virtual std::string pci_name() const = 0;
};

}  // namespace kite::pci
