// VM exit counters for --stats. See exit_stats.h.
#include "vmm/exit_stats.h"

#include <algorithm>

#include "base/units.h"

namespace kite {

void ExitStats::Count(const VcpuExit& exit) {
  ++by_kind_[exit.index()];
  if (const auto* in = std::get_if<exit::IoIn>(&exit)) {
    ++ports_[in->port];
  } else if (const auto* out = std::get_if<exit::IoOut>(&exit)) {
    ++ports_[out->port];
  } else if (const auto* read = std::get_if<exit::MmioRead>(&exit)) {
    ++mmio_[read->addr];
  } else if (const auto* write = std::get_if<exit::MmioWrite>(&exit)) {
    ++mmio_[write->addr];
  }
}

void ExitStats::Merge(const ExitStats& other) {
  for (size_t i = 0; i < by_kind_.size(); ++i) by_kind_[i] += other.by_kind_[i];
  for (const auto& [port, n] : other.ports_) ports_[port] += n;
  for (const auto& [addr, n] : other.mmio_) mmio_[addr] += n;
  fallbacks_ += other.fallbacks_;
}

uint64_t ExitStats::total() const {
  uint64_t sum = 0;
  for (uint64_t n : by_kind_) sum += n;
  return sum;
}

uint64_t ExitStats::port_count(uint16_t port) const {
  auto it = ports_.find(port);
  return it == ports_.end() ? 0 : it->second;
}

uint64_t ExitStats::mmio_count(uint64_t addr) const {
  auto it = mmio_.find(addr);
  return it == mmio_.end() ? 0 : it->second;
}

std::vector<std::pair<uint64_t, uint64_t>> TopN(
    const std::vector<std::pair<uint64_t, uint64_t>>& all, size_t top_n) {
  std::vector<std::pair<uint64_t, uint64_t>> sorted = all;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (sorted.size() > top_n) sorted.resize(top_n);
  return sorted;
}

namespace {

template <typename Map>
std::string FormatTop(const char* title, const Map& map, size_t top_n) {
  if (map.empty()) return "";
  std::vector<std::pair<uint64_t, uint64_t>> all(map.begin(), map.end());
  std::string line = std::string("  ") + title + ":";
  for (const auto& [key, n] : TopN(all, top_n)) {
    line += " 0x" + ToHex(key) + "=" + std::to_string(n);
  }
  return line + "\n";
}

}  // namespace

std::string ExitStats::Format(size_t top_n) const {
  std::string out = "VM exits: " + std::to_string(total()) + "\n";
  for (size_t i = 0; i < by_kind_.size(); ++i) {
    if (by_kind_[i] == 0) continue;
    out += std::string("  ") + ExitKindName(i) + ": " + std::to_string(by_kind_[i]) + "\n";
  }
  if (fallbacks_ != 0) {
    out += "  emulation fallbacks applied: " + std::to_string(fallbacks_) + "\n";
  }
  out += FormatTop("top ports", ports_, top_n);
  out += FormatTop("top MMIO addresses", mmio_, top_n);
  return out;
}

}  // namespace kite
