// --stats: VM exits counted by kind, and port I/O and MMIO exits by address, per vCPU thread
// (no locking on the hot path), merged and printed when the VM ends.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "vmm/vcpu_exit.h"

namespace kite {

class ExitStats {
 public:
  void Count(const VcpuExit& exit);
  void CountFallback() { ++fallbacks_; }
  void Merge(const ExitStats& other);

  uint64_t total() const;
  uint64_t count(size_t kind_index) const { return by_kind_[kind_index]; }
  uint64_t port_count(uint16_t port) const;
  uint64_t mmio_count(uint64_t addr) const;
  uint64_t fallbacks() const { return fallbacks_; }

  // "VM exits: 1234\n  io-out 1000\n ...\n  top ports: 0x3f8 900, ...\n  top MMIO: ...".
  std::string Format(size_t top_n = 8) const;

 private:
  std::array<uint64_t, std::variant_size_v<VcpuExit>> by_kind_{};
  std::unordered_map<uint16_t, uint64_t> ports_;
  std::unordered_map<uint64_t, uint64_t> mmio_;
  uint64_t fallbacks_ = 0;
};

// The `top_n` (key, count) pairs with the highest counts, highest first, ties by key.
std::vector<std::pair<uint64_t, uint64_t>> TopN(
    const std::vector<std::pair<uint64_t, uint64_t>>& all, size_t top_n);

}  // namespace kite
