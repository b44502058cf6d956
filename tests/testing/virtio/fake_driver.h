// FakeDriver: the driver side of a split virtqueue, for unit tests, fuzzers and benchmarks of
// src/virtio. It owns a GuestMemory (two regions with a hole between them, like a VM's RAM
// around the 32-bit MMIO hole, so tests can place buffers across regions), lays out a
// descriptor table and rings in it, and builds chains — well formed or deliberately broken —
// exactly as a guest driver would, including indirect tables and event-index fields.
//
//   FakeDriver driver({.queue_size = 16});
//   virtio::Queue queue(16);
//   driver.Configure(&queue);                 // sets size and ring addresses on the device side
//   ASSERT_TRUE(queue.Activate(&driver.memory(), /*event_idx=*/true, /*indirect=*/true));
//   uint64_t buf = driver.Alloc(512);
//   uint16_t head = driver.AddChain({{hdr_addr, 16, false}, {buf, 512, true}});
//   driver.Publish();                         // avail->idx += chains added since last Publish
//   ... device pops, pushes used ...
//   auto used = driver.PopUsed();             // std::optional<virtio::UsedElement>
//
// A device with several queues behind one transport needs them in one guest memory:
// FakeDriver(&first, size) is the driver of another queue sharing `first`'s memory and
// allocator (its rings come after whatever `first` allocated so far).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "virtio/queue.h"
#include "virtio/virtio_spec.h"
#include "vmm/guest_memory.h"

namespace kite::testing {

struct FakeDriverOptions {
  uint16_t queue_size = 16;
  uint64_t low_size = 4ull << 20;   // first region: guest [0, low_size)
  uint64_t hole_size = 1ull << 20;  // gap after it (not RAM)
  uint64_t high_size = 4ull << 20;  // second region right after the hole
};

// One buffer of a chain as the driver describes it.
struct FakeBuffer {
  uint64_t addr = 0;
  uint32_t len = 0;
  bool device_writable = false;
};

class FakeDriver {
 public:
  explicit FakeDriver(FakeDriverOptions options = {});
  // Another queue in `owner`'s memory; `owner` must outlive it.
  FakeDriver(FakeDriver* owner, uint16_t queue_size);
  ~FakeDriver();
  FakeDriver(const FakeDriver&) = delete;
  FakeDriver& operator=(const FakeDriver&) = delete;

  const GuestMemory& memory() const { return owner_ != nullptr ? owner_->memory() : memory_; }
  uint16_t queue_size() const { return options_.queue_size; }
  // Guest addresses of the rings, 4 KiB-aligned, at the start of the low region (after the
  // owner's allocations for a driver made with an owner).
  uint64_t desc_addr() const;
  uint64_t avail_addr() const;
  uint64_t used_addr() const;
  // Sets size and ring addresses of the device-side queue (what the transport would do).
  void Configure(virtio::Queue* queue) const;

  // Bump allocator for buffers in the low region (after the rings), 16-byte aligned.
  uint64_t Alloc(uint32_t len);
  // Guest address `offset` bytes into the high region (after the hole), and the hole's start.
  uint64_t HighAddr(uint64_t offset = 0) const;
  uint64_t HoleAddr() const;
  // The first guest address past the end of RAM.
  uint64_t EndAddr() const;

  void WriteBytes(uint64_t addr, const void* data, size_t len);
  void ReadBytes(uint64_t addr, void* data, size_t len) const;
  template <typename T>
  void WriteObj(uint64_t addr, const T& v) {
    WriteBytes(addr, &v, sizeof(T));
  }
  template <typename T>
  T ReadObj(uint64_t addr) const {
    T v;
    ReadBytes(addr, &v, sizeof(T));
    return v;
  }

  // Writes a chain into free descriptors (linked with NEXT) and puts its head in the avail
  // ring (not yet published). Returns the head index.
  uint16_t AddChain(const std::vector<FakeBuffer>& buffers);
  // Writes `buffers` as an indirect table in guest memory and adds a one-descriptor chain
  // pointing at it (flags INDIRECT). Returns the head.
  uint16_t AddIndirectChain(const std::vector<FakeBuffer>& buffers);
  // Raw access for malformed chains: write descriptor `index` as given, and put `head` in the
  // next avail slot (any value, even >= size).
  void SetDescriptor(uint16_t index, const virtio::Descriptor& desc);
  virtio::Descriptor GetDescriptor(uint16_t index) const;
  void AddAvail(uint16_t head);
  // Makes the added heads visible: avail->idx = number of heads added so far (mod 2^16).
  void Publish();
  // Sets avail->idx directly (G3) and the other avail-ring fields.
  void SetAvailIdx(uint16_t idx);
  void SetAvailFlags(uint16_t flags);
  void SetUsedEvent(uint16_t value);  // used_event (avail->ring[size])
  uint16_t avail_event() const;       // used->ring[size], written by the device
  uint16_t used_flags() const;

  // Next used element the device returned (in order), or nullopt when none is new. Frees the
  // descriptors of chains added with AddChain/AddIndirectChain.
  std::optional<virtio::UsedElement> PopUsed();
  uint16_t used_idx() const;

 private:
  void InitRings();

  FakeDriverOptions options_;
  FakeDriver* owner_ = nullptr;  // memory and allocator are the owner's
  uint64_t ring_base_ = 0;
  GuestMemory memory_;
  std::vector<uint8_t*> mappings_;
  std::vector<size_t> mapping_sizes_;
  uint64_t next_alloc_ = 0;
  std::vector<uint16_t> free_desc_;
  std::vector<std::vector<uint16_t>> chain_descs_;  // per head: descriptors to free
  uint16_t avail_added_ = 0;
  uint16_t last_used_ = 0;
};

}  // namespace kite::testing
