// Buses: an address space (I/O ports or MMIO) divided into ranges, each served by a device.
// A device sees offsets into its own range only. Reads from unclaimed addresses return
// all-ones and writes to them are dropped; both are counted (BAD_INPUTS.md G31).
//
// Devices are registered before the vCPUs start; the vCPU threads then dispatch concurrently,
// so a device must guard its own state. Registration after start (hotplug) takes the bus's
// writer lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace kite {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // `data.size()` is the access width (1, 2, 4 or 8 bytes; MMIO may be larger).
  virtual void Read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void Write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

struct BusStats {
  uint64_t unclaimed_reads = 0;
  uint64_t unclaimed_writes = 0;
};

class Bus {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}

  // Claims [base, base + length) for `device`. Refuses empty, wrapping or overlapping ranges.
  Result<void> Register(uint64_t base, uint64_t length, std::shared_ptr<BusDevice> device);
  // Releases the range starting at `base`; false when nothing was registered there.
  bool Unregister(uint64_t base);

  // Dispatches an access. Returns false when no device claims the address (the read buffer is
  // then filled with 0xff). An access that straddles a range's end goes to no device.
  bool Read(uint64_t addr, std::span<uint8_t> data);
  bool Write(uint64_t addr, std::span<const uint8_t> data);

  BusStats stats() const {
    return {unclaimed_reads_.load(std::memory_order_relaxed),
            unclaimed_writes_.load(std::memory_order_relaxed)};
  }
  const std::string& name() const { return name_; }

 private:
  struct Range {
    uint64_t base;
    uint64_t length;
    std::shared_ptr<BusDevice> device;
  };
  // The device whose range holds the whole access, with the offset into that range.
  std::shared_ptr<BusDevice> Find(uint64_t addr, uint64_t len, uint64_t* offset) const;

  const std::string name_;
  mutable std::shared_mutex mutex_;
  std::vector<Range> ranges_;  // sorted by base, non-overlapping
  std::atomic<uint64_t> unclaimed_reads_{0};
  std::atomic<uint64_t> unclaimed_writes_{0};
};

}  // namespace kite
