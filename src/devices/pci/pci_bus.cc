// PciBus: slots, configuration access routing and BAR mapping. See pci_bus.h.
#include "devices/pci/pci_bus.h"

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "base/units.h"

namespace kite::pci {
namespace {

// A BAR on the MMIO bus: accesses go to the device with the BAR's index.
class BarWindow : public BusDevice {
 public:
  BarWindow(std::shared_ptr<PciDevice> device, int bar) : device_(std::move(device)), bar_(bar) {}
  void Read(uint64_t offset, std::span<uint8_t> data) override {
    device_->BarRead(bar_, offset, data);
  }
  void Write(uint64_t offset, std::span<const uint8_t> data) override {
    device_->BarWrite(bar_, offset, data);
  }

 private:
  std::shared_ptr<PciDevice> device_;
  int bar_;
};

}  // namespace

PciBus::PciBus(Bus* mmio, std::vector<AddressWindow> windows)
    : mmio_(mmio), windows_(std::move(windows)) {}

PciBus::~PciBus() {
  std::lock_guard lock(mu_);
  for (Slot& slot : slots_) {
    for (const BarMapping& m : slot.mapped) mmio_->Unregister(m.address);
  }
}

Result<uint8_t> PciBus::AddDevice(std::shared_ptr<PciDevice> device, BarObserver observer,
                                  std::optional<uint8_t> slot) {
  std::lock_guard lock(mu_);
  uint8_t index = 0;
  if (slot) {
    if (*slot >= kSlots) return Err("PCI slot " + std::to_string(*slot) + " does not exist");
    if (slots_[*slot].device) return Err("PCI slot " + std::to_string(*slot) + " is taken");
    index = *slot;
  } else {
    while (index < kSlots && slots_[index].device) ++index;
    if (index == kSlots) return Err("no free PCI slot (32 in all)");
  }
  slots_[index].device = std::move(device);
  slots_[index].observer = std::move(observer);
  RefreshLocked(slots_[index]);
  return index;
}

Result<void> PciBus::RemoveDevice(uint8_t index) {
  std::lock_guard lock(mu_);
  if (index >= kSlots || !slots_[index].device) {
    return Err("PCI slot " + std::to_string(index) + " is empty");
  }
  Slot& slot = slots_[index];
  for (const BarMapping& m : slot.mapped) Unmap(slot, m);
  slot = Slot{};
  return {};
}

void PciBus::Refresh(uint8_t index) {
  std::lock_guard lock(mu_);
  if (index < kSlots && slots_[index].device) RefreshLocked(slots_[index]);
}

std::shared_ptr<PciDevice> PciBus::device(uint8_t index) const {
  std::lock_guard lock(mu_);
  return index < kSlots ? slots_[index].device : nullptr;
}

uint32_t PciBus::occupied_slots() const {
  std::lock_guard lock(mu_);
  uint32_t bits = 0;
  for (uint8_t i = 0; i < kSlots; ++i) {
    if (slots_[i].device) bits |= 1u << i;
  }
  return bits;
}

void PciBus::ConfigRead(uint8_t dev, uint8_t function, uint16_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  ++stats_.config_reads;
  if (dev >= kSlots || function != 0 || !slots_[dev].device) {
    ++stats_.empty_accesses;
    std::memset(data.data(), 0xff, data.size());  // "no device": the vendor id reads 0xffff
    return;
  }
  slots_[dev].device->ConfigRead(offset, data);
}

void PciBus::ConfigWrite(uint8_t dev, uint8_t function, uint16_t offset,
                         std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  ++stats_.config_writes;
  if (dev >= kSlots || function != 0 || !slots_[dev].device) {
    ++stats_.empty_accesses;
    return;
  }
  slots_[dev].device->ConfigWrite(offset, data);
  RefreshLocked(slots_[dev]);
}

// Brings the MMIO bus in line with where the device decodes now: ranges that moved or vanished
// are unmapped first, then the new ones mapped (a BAR moved onto another's old place works).
void PciBus::RefreshLocked(Slot& slot) {
  std::vector<BarMapping> wanted = slot.device->MappedBars();
  std::vector<BarMapping> kept;
  for (const BarMapping& m : slot.mapped) {
    if (std::find(wanted.begin(), wanted.end(), m) != wanted.end()) {
      kept.push_back(m);
    } else {
      Unmap(slot, m);
    }
  }
  slot.mapped = kept;
  for (const BarMapping& m : wanted) {
    if (std::find(kept.begin(), kept.end(), m) != kept.end()) continue;
    if (Map(slot, m)) slot.mapped.push_back(m);
  }
}

void PciBus::Unmap(Slot& slot, const BarMapping& m) {
  mmio_->Unregister(m.address);
  if (slot.observer) slot.observer(m.index, std::nullopt);
}

bool PciBus::Map(Slot& slot, const BarMapping& m) {
  bool in_window = std::any_of(windows_.begin(), windows_.end(), [&](const AddressWindow& w) {
    return w.Contains(m.address, m.size);
  });
  Result<void> registered =
      in_window
          ? mmio_->Register(m.address, m.size, std::make_shared<BarWindow>(slot.device, m.index))
          : Err("outside the host bridge's windows");
  if (!registered) {
    ++stats_.refused_bars;
    KITE_LOG_RATELIMITED(Warn, "%s: BAR %d at 0x%s (0x%s bytes) not mapped: %s",
                         slot.device->pci_name().c_str(), m.index, ToHex(m.address).c_str(),
                         ToHex(m.size).c_str(), registered.error().message().c_str());
    return false;
  }
  if (slot.observer) slot.observer(m.index, m.address);
  return true;
}

PciBusStats PciBus::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace kite::pci
