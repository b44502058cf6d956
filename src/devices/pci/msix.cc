// Msix: the MSI-X table, pending bits and masking. See msix.h.
#include "devices/pci/msix.h"

#include <cstring>
#include <string>

#include "devices/pci/pci_config.h"

namespace kite::pci {

Msix::Msix(uint16_t vectors, std::shared_ptr<MsiSink> sink)
    : sink_(std::move(sink)), entries_(vectors), pending_(vectors, false) {}

// 6.8.2: ID, next, Message Control (table size - 1), Table Offset/BIR, PBA Offset/BIR.
std::vector<uint8_t> Msix::Capability(uint8_t table_bar, uint32_t table_offset, uint8_t pba_bar,
                                      uint32_t pba_offset) const {
  uint16_t control = static_cast<uint16_t>(entries_.size() - 1);
  uint32_t table = (table_offset & ~7u) | (table_bar & 7u);
  uint32_t pba = (pba_offset & ~7u) | (pba_bar & 7u);
  std::vector<uint8_t> cap(12, 0);
  cap[0] = kCapIdMsix;
  std::memcpy(&cap[2], &control, 2);
  std::memcpy(&cap[4], &table, 4);
  std::memcpy(&cap[8], &pba, 4);
  return cap;
}

std::vector<uint8_t> Msix::CapabilityWriteMask() {
  return {0, 0, 0, static_cast<uint8_t>((kMsixControlEnable | kMsixControlFunctionMask) >> 8)};
}

bool Msix::enabled() const {
  std::lock_guard lock(mu_);
  return enabled_;
}

bool Msix::DeliverableLocked(uint16_t vector) const {
  return enabled_ && !function_masked_ && !(entries_[vector].control & kMsixVectorMasked);
}

MsiMessage Msix::MessageLocked(uint16_t vector) const {
  const MsixEntry& e = entries_[vector];
  return {uint64_t{e.address_high} << 32 | e.address_low, e.data};
}

void Msix::UpdateLocked(uint16_t vector, bool was_deliverable) {
  if (!DeliverableLocked(vector) || was_deliverable) return;
  if (sink_) sink_->Route(vector, MessageLocked(vector));
  if (pending_[vector]) {
    pending_[vector] = false;
    ++stats_.messages;
    if (sink_) sink_->Signal(vector);
  }
}

void Msix::WriteControl(uint16_t control) {
  std::lock_guard lock(mu_);
  std::vector<bool> before(entries_.size());
  for (uint16_t v = 0; v < entries_.size(); ++v) before[v] = DeliverableLocked(v);
  enabled_ = control & kMsixControlEnable;
  function_masked_ = control & kMsixControlFunctionMask;
  for (uint16_t v = 0; v < entries_.size(); ++v) UpdateLocked(v, before[v]);
}

void Msix::TableRead(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  size_t n = data.size();
  if ((n != 4 && n != 8) || offset % n != 0 || offset + n > table_size()) {
    std::memset(data.data(), 0, n);
    ++stats_.bad_accesses;
    return;
  }
  for (size_t done = 0; done < n; done += 4) {
    const MsixEntry& e = entries_[(offset + done) / kMsixEntrySize];
    uint32_t fields[4] = {e.address_low, e.address_high, e.data, e.control};
    std::memcpy(data.data() + done, &fields[(offset + done) % kMsixEntrySize / 4], 4);
  }
}

void Msix::TableWrite(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  size_t n = data.size();
  if ((n != 4 && n != 8) || offset % n != 0 || offset + n > table_size()) {
    ++stats_.bad_accesses;
    return;
  }
  for (size_t done = 0; done < n; done += 4) {
    auto vector = static_cast<uint16_t>((offset + done) / kMsixEntrySize);
    MsixEntry& e = entries_[vector];
    bool was_deliverable = DeliverableLocked(vector);
    MsiMessage before = MessageLocked(vector);
    uint32_t value;
    std::memcpy(&value, data.data() + done, 4);
    switch ((offset + done) % kMsixEntrySize) {
      case 0:
        e.address_low = value & ~3u;  // dword aligned (6.8.2.7)
        break;
      case 4:
        e.address_high = value;
        break;
      case 8:
        e.data = value;
        break;
      default:
        e.control = value & kMsixVectorMasked;
        break;
    }
    if (was_deliverable && DeliverableLocked(vector) && sink_ &&
        !(MessageLocked(vector) == before)) {
      sink_->Route(vector, MessageLocked(vector));  // rewritten while unmasked
    }
    UpdateLocked(vector, was_deliverable);
  }
}

void Msix::PbaRead(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  size_t n = data.size();
  std::memset(data.data(), 0, n);
  if ((n != 4 && n != 8) || offset % n != 0 || offset + n > pba_size()) {
    ++stats_.bad_accesses;
    return;
  }
  for (size_t byte = 0; byte < n; ++byte) {
    for (size_t bit = 0; bit < 8; ++bit) {
      size_t vector = (offset + byte) * 8 + bit;
      if (vector < pending_.size() && pending_[vector]) data[byte] |= uint8_t(1u << bit);
    }
  }
}

void Msix::Notify(uint16_t vector) {
  std::lock_guard lock(mu_);
  if (vector >= entries_.size() || !enabled_) {
    ++stats_.dropped;  // no such vector (NO_VECTOR included), or INTx mode (not implemented)
    return;
  }
  if (!DeliverableLocked(vector)) {
    pending_[vector] = true;
    ++stats_.masked;
    return;
  }
  ++stats_.messages;
  if (sink_) sink_->Signal(vector);
}

MsixState Msix::Save() const {
  std::lock_guard lock(mu_);
  return {entries_, pending_};
}

Result<void> Msix::Restore(const MsixState& state, uint16_t control) {
  std::lock_guard lock(mu_);
  if (state.entries.size() != entries_.size() || state.pending.size() != entries_.size()) {
    return Err("MSI-X: saved " + std::to_string(state.entries.size()) +
               " vectors, the device has " + std::to_string(entries_.size()));
  }
  for (size_t v = 0; v < state.entries.size(); ++v) {
    if (state.entries[v].control & ~kMsixVectorMasked || state.entries[v].address_low & 3) {
      return Err("MSI-X: vector " + std::to_string(v) + " has bits no driver can set");
    }
  }
  entries_ = state.entries;
  pending_ = state.pending;
  enabled_ = control & kMsixControlEnable;
  function_masked_ = control & kMsixControlFunctionMask;
  for (uint16_t v = 0; v < entries_.size(); ++v) UpdateLocked(v, false);
  return {};
}

MsixStats Msix::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace kite::pci
