// ECAM and configuration mechanism #1: decoding into (device, function, register). See
// pci_config_access.h.
#include "devices/pci/pci_config_access.h"

#include <cstring>

#include "devices/pci/pci_config.h"

namespace kite::pci {
namespace {

bool ValidWidth(uint64_t offset, size_t size) {
  return (size == 1 || size == 2 || size == 4) && offset % size == 0;
}

constexpr uint32_t kConfigEnable = 1u << 31;

}  // namespace

void PciEcam::Read(uint64_t offset, std::span<uint8_t> data) {
  auto reg = static_cast<uint16_t>(offset & 0xfff);
  auto dev = static_cast<uint8_t>((offset >> 15) & 0x1f);
  auto function = static_cast<uint8_t>((offset >> 12) & 0x7);
  if (offset >= kEcamBusSize || !ValidWidth(offset, data.size())) {
    bad_.fetch_add(1, std::memory_order_relaxed);
    std::memset(data.data(), 0xff, data.size());
    return;
  }
  if (reg >= kConfigSize) {
    // Extended space of a conventional function: nothing there. An absent function still
    // reads all ones (bus_ decides that from register 0).
    uint8_t probe[2];
    bus_->ConfigRead(dev, function, kVendorId, probe);
    std::memset(data.data(), probe[0] == 0xff && probe[1] == 0xff ? 0xff : 0, data.size());
    return;
  }
  bus_->ConfigRead(dev, function, reg, data);
}

void PciEcam::Write(uint64_t offset, std::span<const uint8_t> data) {
  auto reg = static_cast<uint16_t>(offset & 0xfff);
  if (offset >= kEcamBusSize || !ValidWidth(offset, data.size()) || reg >= kConfigSize) {
    bad_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  bus_->ConfigWrite(static_cast<uint8_t>((offset >> 15) & 0x1f),
                    static_cast<uint8_t>((offset >> 12) & 0x7), reg, data);
}

bool PciConfigPorts::Target(uint64_t byte, size_t size, uint8_t* dev, uint8_t* function,
                            uint16_t* reg) {
  std::lock_guard lock(mu_);
  if (!(address_ & kConfigEnable) || ((address_ >> 16) & 0xff) != 0 || !ValidWidth(byte, size) ||
      byte + size > 4) {
    return false;
  }
  *dev = static_cast<uint8_t>((address_ >> 11) & 0x1f);
  *function = static_cast<uint8_t>((address_ >> 8) & 0x7);
  *reg = static_cast<uint16_t>((address_ & 0xfc) + byte);
  return true;
}

void PciConfigPorts::Read(uint64_t offset, std::span<uint8_t> data) {
  if (offset == 0) {
    if (data.size() == 4) {
      std::lock_guard lock(mu_);
      std::memcpy(data.data(), &address_, 4);
      return;
    }
  } else if (offset >= 4) {
    uint8_t dev, function;
    uint16_t reg;
    if (Target(offset - 4, data.size(), &dev, &function, &reg)) {
      bus_->ConfigRead(dev, function, reg, data);
      return;
    }
  }
  bad_.fetch_add(1, std::memory_order_relaxed);
  std::memset(data.data(), 0xff, data.size());
}

void PciConfigPorts::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset == 0) {
    // Only a 32-bit write is a configuration address; narrower ones (0xCF9 is a reset
    // control register on chipsets, 0xCFB a mechanism select) do nothing here.
    if (data.size() == 4) {
      std::lock_guard lock(mu_);
      std::memcpy(&address_, data.data(), 4);
      address_ &= 0x80fffffc;  // reserved bits 30:24 and 1:0 read as 0
      return;
    }
  } else if (offset >= 4) {
    uint8_t dev, function;
    uint16_t reg;
    if (Target(offset - 4, data.size(), &dev, &function, &reg)) {
      bus_->ConfigWrite(dev, function, reg, data);
      return;
    }
  }
  bad_.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace kite::pci
