// What the transport fuzzers (virtio_mmio_fuzzer, virtio_pci_fuzzer) share: the device behind
// the transport, chosen by a byte (virtio-rng, virtio-blk over a 1 MiB RAM disk, read-only or
// not, or virtio-net over an in-memory backend), and the guest driver's side of guest RAM:
// addresses, pokes and a descriptor chain written into a split queue's rings.
//
// Threads: everything on the fuzzer's thread.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <vector>

#include "fuzz_net_backend.h"
#include "fuzz_ram_disk.h"
#include "testing/virtio/fake_driver.h"
#include "virtio/block.h"
#include "virtio/net.h"
#include "virtio/rng.h"
#include "virtio/virtio_spec.h"

namespace kite::fuzz {

// Where chains point most of the time: guest RAM above the rings.
inline constexpr uint64_t kBufferBase = 0x100000;
inline constexpr uint64_t kBufferSpan = 0x300000;

// kind % 4: 0 virtio-rng, 1 virtio-blk, 2 read-only virtio-blk, 3 virtio-net.
inline Result<std::shared_ptr<virtio::VirtioDevice>> MakeVirtioDevice(uint8_t kind,
                                                                      asio::io_context* loop) {
  switch (kind % 4) {
    case 0:
      return virtio::CreateVirtioRng(loop);
    case 1:
    case 2: {
      virtio::BlockOptions options;
      options.queue_size = 64;
      options.io_workers = 1;
      auto disk = std::make_shared<FuzzRamDisk>(1 << 20, kind % 4 == 2);
      return std::shared_ptr<virtio::VirtioDevice>(
          TRY(virtio::CreateVirtioBlock(disk, options, loop)));
    }
    default: {
      virtio::NetOptions options{.mac = {0x52, 0x54, 0, 1, 2, 3}, .queue_size = 64};
      auto backend = std::make_unique<FuzzNetBackend>(std::make_shared<FuzzNetState>());
      return std::shared_ptr<virtio::VirtioDevice>(
          TRY(virtio::CreateVirtioNet(std::move(backend), options, loop)));
    }
  }
}

// Mostly inside the buffer area; sometimes anywhere, or around the end of RAM and the hole.
inline uint64_t GuestAddress(FuzzedDataProvider& in, const testing::FakeDriver& mem) {
  switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0:
      return in.ConsumeIntegral<uint64_t>();
    case 1:
      return mem.HoleAddr() - 64 + in.ConsumeIntegralInRange(0, 127);
    default:
      return kBufferBase + in.ConsumeIntegralInRange<uint64_t>(0, kBufferSpan - 1);
  }
}

// Up to 32 bytes of the input written into guest RAM.
inline void PokeRam(FuzzedDataProvider& in, testing::FakeDriver& mem) {
  uint64_t addr = GuestAddress(in, mem);
  std::vector<uint8_t> bytes = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange(1, 32));
  if (bytes.empty() || !mem.memory().IsValidRange(GuestAddr(addr), bytes.size())) return;
  mem.WriteBytes(addr, bytes.data(), bytes.size());
}

// A chain of up to four descriptors in the queue of `size` entries whose rings start at
// `ring` (descriptors +0, available ring +0x1000), published in the available ring.
inline void WriteChain(FuzzedDataProvider& in, testing::FakeDriver& mem, uint64_t ring,
                       uint16_t size, uint16_t* avail_idx) {
  uint16_t head = in.ConsumeIntegral<uint16_t>() % size;
  int n = in.ConsumeIntegralInRange(1, 4);
  for (int i = 0; i < n; ++i) {
    auto index = static_cast<uint16_t>((head + i) % size);
    uint64_t addr = GuestAddress(in, mem);
    uint32_t len = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint32_t>(0, 4096)
                                    : in.ConsumeIntegral<uint32_t>();
    uint16_t flags =
        in.ConsumeIntegral<uint8_t>() & (virtio::kDescFlagWrite | virtio::kDescFlagIndirect);
    if (i + 1 < n) flags |= virtio::kDescFlagNext;
    mem.WriteObj(ring + 16 * index,
                 virtio::Descriptor{addr, len, flags, static_cast<uint16_t>((index + 1) % size)});
    if (i == 0 && addr >= kBufferBase && addr <= kBufferBase + kBufferSpan - 16) {
      uint8_t first[16];  // the request header or frame header, if this is one
      in.ConsumeData(first, sizeof(first));
      mem.WriteBytes(addr, first, sizeof(first));
    }
  }
  uint64_t avail = ring + 0x1000;
  mem.WriteObj<uint16_t>(avail + 4 + 2 * (*avail_idx % size), head);
  mem.WriteObj<uint16_t>(avail + 2, ++*avail_idx);
}

}  // namespace kite::fuzz
