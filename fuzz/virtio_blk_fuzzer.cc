// libFuzzer target for virtio-blk (src/virtio/block.cc, block_request.cc) behind a real split
// virtqueue (queue.cc), driven by the fake driver: the input describes a few chains (header
// fields, buffer sizes, which buffers are device-writable, direct or indirect) that go through
// the device onto a small in-memory disk. Checks: no crash, hang or sanitizer report, every
// chain comes back unless the ring broke, and a read-only disk is never written (G19).
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "base/log.h"
#include "fuzz_ram_disk.h"
#include "testing/virtio/fake_driver.h"
#include "virtio/block.h"
#include "virtio/queue.h"

namespace {

using namespace kite;

constexpr uint64_t kDiskSize = 64 * 1024;
constexpr uint16_t kQueueSize = 16;

// Consumes bytes from the input; zeros when it runs out.
struct Input {
  const uint8_t* p;
  size_t n;
  uint8_t U8() { return n ? (--n, *p++) : 0; }
  uint16_t U16() { return static_cast<uint16_t>(U8() | (U8() << 8)); }
  uint64_t U64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{U8()} << (8 * i);
    return v;
  }
};

constexpr uint32_t kTypes[] = {0, 1, 4, 8, 10, 11, 13, 14, 3};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kite::SetLogLevel(kite::LogLevel::Off);  // malformed chains are the point: no log lines
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  uint8_t mode = in.U8();
  asio::io_context loop;
  virtio::BlockOptions options;
  options.queue_size = kQueueSize;
  options.io_workers = 1;
  options.cache = (mode & 4) ? storage::CacheMode::kUnsafe : storage::CacheMode::kWriteback;
  auto dev = virtio::CreateVirtioBlock(std::make_shared<fuzz::FuzzRamDisk>(kDiskSize, mode & 2),
                                       options, &loop);
  if (!dev) std::abort();
  testing::FakeDriver driver({.queue_size = kQueueSize});
  virtio::Queue queue(kQueueSize);
  driver.Configure(&queue);
  if (!queue.Activate(&driver.memory(), mode & 1, true)) std::abort();
  std::vector<virtio::Queue*> queues{&queue};
  virtio::ActiveQueues active;
  active.memory = &driver.memory();
  active.features = (*dev)->device_features();
  active.queues = queues;
  active.signal_used = [](uint16_t) {};
  active.mark_broken = [](const std::string&) {};
  if (!(*dev)->Activate(std::move(active))) std::abort();

  std::vector<uint64_t> status_addrs;  // one per chain (counts the chains)
  int descs = 0;
  while (in.n > 0 && status_addrs.size() < 8) {
    uint8_t shape = in.U8();
    size_t nbufs = 1 + (shape & 3) + ((shape >> 2) & 1);
    bool indirect = shape & 0x80;
    if (descs + (indirect ? 1 : static_cast<int>(nbufs)) > kQueueSize) break;
    std::vector<testing::FakeBuffer> bufs;
    uint64_t hdr = driver.Alloc(16);
    uint64_t sector = in.U64();
    if (shape & 0x40) sector %= kDiskSize / 512 + 4;
    virtio::blk::RequestHeader h{kTypes[in.U8() % 9], 0, sector};
    driver.WriteObj(hdr, h);
    bufs.push_back({hdr, static_cast<uint32_t>(16 - ((shape >> 3) & 1) * 8), (shape & 0x20) != 0});
    uint64_t last = hdr;
    for (size_t i = 1; i < nbufs; ++i) {
      uint32_t len = in.U16() % 4200;
      bool writable = i == nbufs - 1 ? !(shape & 0x10) : (in.U8() & 1);
      uint64_t addr = driver.Alloc(len ? len : 1);
      std::vector<uint8_t> fill(len);
      for (auto& b : fill) b = writable ? 0xee : in.U8();
      if (len) driver.WriteBytes(addr, fill.data(), len);
      bufs.push_back({addr, len, writable});
      last = addr + (len ? len - 1 : 0);
    }
    status_addrs.push_back(last);
    if (indirect) {
      driver.AddIndirectChain(bufs);
      descs += 1;
    } else {
      driver.AddChain(bufs);
      descs += static_cast<int>(nbufs);
    }
  }
  driver.Publish();
  (*dev)->ProcessQueue(0);
  size_t used = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (used < status_addrs.size()) {
    while (driver.PopUsed()) ++used;
    if (std::chrono::steady_clock::now() > deadline) break;
    loop.restart();
    loop.poll();
  }
  // Chains the queue itself rejects (bad layouts) also come back; only a broken ring may not.
  if (used < status_addrs.size() && !queue.broken()) std::abort();
  (*dev)->Reset();
  return 0;
}
