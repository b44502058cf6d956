// DeviceRegistry and ResourceAllocator. See device_registry.h.
#include "vmm/device_registry.h"

namespace kite {

ResourceAllocator::ResourceAllocator(uint64_t base, uint64_t window_size, uint32_t windows,
                                     std::vector<uint32_t> gsis)
    : base_(base),
      window_size_(window_size),
      window_used_(windows, false),
      gsis_(std::move(gsis)),
      gsi_used_(gsis_.size(), false) {}

Result<DeviceResources> ResourceAllocator::AllocateVirtio() {
  size_t window = 0;
  while (window < window_used_.size() && window_used_[window]) ++window;
  if (window == window_used_.size()) {
    return Err("no free virtio-mmio window (all " + std::to_string(window_used_.size()) +
               " in use)");
  }
  size_t gsi = 0;
  while (gsi < gsi_used_.size() && gsi_used_[gsi]) ++gsi;
  if (gsi == gsi_used_.size()) {
    return Err("no free interrupt line for a virtio device (all " + std::to_string(gsis_.size()) +
               " in use)");
  }
  window_used_[window] = true;
  gsi_used_[gsi] = true;
  DeviceResources r;
  r.bus = DeviceResources::BusKind::kMmio;
  r.base = base_ + window * window_size_;
  r.size = window_size_;
  r.gsi = gsis_[gsi];
  return r;
}

void ResourceAllocator::Release(const DeviceResources& r) {
  if (r.bus != DeviceResources::BusKind::kMmio || r.base < base_) return;
  uint64_t window = (r.base - base_) / window_size_;
  if (window < window_used_.size()) window_used_[window] = false;
  for (size_t i = 0; i < gsis_.size(); ++i) {
    if (r.gsi && gsis_[i] == *r.gsi) gsi_used_[i] = false;
  }
}

Result<DeviceEntry*> DeviceRegistry::Add(DeviceEntry entry) {
  if (Find(entry.id) != nullptr) return Err("a device with id '" + entry.id + "' already exists");
  entries_.push_back(std::make_unique<DeviceEntry>(std::move(entry)));
  return entries_.back().get();
}

std::unique_ptr<DeviceEntry> DeviceRegistry::Remove(const std::string& id) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if ((*it)->id != id) continue;
    std::unique_ptr<DeviceEntry> entry = std::move(*it);
    entries_.erase(it);
    return entry;
  }
  return nullptr;
}

DeviceEntry* DeviceRegistry::Find(const std::string& id) {
  for (auto& e : entries_) {
    if (e->id == id) return e.get();
  }
  return nullptr;
}

const DeviceEntry* DeviceRegistry::Find(const std::string& id) const {
  return const_cast<DeviceRegistry*>(this)->Find(id);
}

Result<void> DeviceRegistry::QuiesceAll() {
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (auto r = entries_[i]->device->Quiesce(); !r) {
      for (size_t j = 0; j < i; ++j) entries_[j]->device->Resume();
      return std::move(r).error().Context("quiescing " + entries_[i]->id);
    }
  }
  return {};
}

void DeviceRegistry::ResumeAll() {
  for (auto& e : entries_) e->device->Resume();
}

Result<nlohmann::json> DeviceRegistry::SaveAll() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& e : entries_) {
    nlohmann::json state = TRY_CTX(e->device->SaveState(), "saving " + e->id);
    out[e->id] = {{"kind", e->kind}, {"state", std::move(state)}};
  }
  return out;
}

Result<void> DeviceRegistry::RestoreAll(const nlohmann::json& saved) {
  if (!saved.is_object()) return Err("devices: expected an object");
  for (auto it = saved.begin(); it != saved.end(); ++it) {
    if (Find(it.key()) == nullptr) {
      return Err("devices: the snapshot has a device '" + it.key() + "' this VM does not have");
    }
  }
  // Every check first (kinds, presence), then the devices check and take their own state.
  for (const auto& e : entries_) {
    auto found = saved.find(e->id);
    if (found == saved.end()) return Err("devices: no state for device '" + e->id + "'");
    const nlohmann::json& entry = *found;
    if (!entry.is_object() || !entry.contains("kind") || !entry["kind"].is_string() ||
        entry["kind"].get<std::string>() != e->kind || !entry.contains("state")) {
      return Err("devices." + e->id + ": expected {\"kind\": \"" + e->kind + "\", \"state\": ...}");
    }
  }
  for (const auto& e : entries_) {
    TRY_CTX(e->device->RestoreState(saved[e->id]["state"]), "devices." + e->id);
  }
  return {};
}

void DeviceRegistry::ShutdownAll() {
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) (*it)->device->Shutdown();
}

std::string DeviceRegistry::StatsReport() const {
  std::string out;
  for (const auto& e : entries_) out += e->device->StatsLine();
  return out;
}

nlohmann::json DeviceRegistry::Counters() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& e : entries_) out[e->id] = e->device->Counters();
  return out;
}

}  // namespace kite
