// libFuzzer target for the virtio-mmio register interface (src/virtio/mmio_transport.cc,
// transport_core.cc) as a guest drives it: a sequence of register reads and writes of any
// width at any offset, configuration-space accesses, pokes into guest RAM, and two shortcuts
// a random program rarely finds by itself — the Linux driver's handshake (reset, ACKNOWLEDGE,
// DRIVER, features, FEATURES_OK, queue setup, DRIVER_OK) and a descriptor chain written into a
// set-up queue followed by a QueueNotify. Behind the transport: virtio-rng, virtio-blk over a
// 1 MiB RAM disk (read-only or not), or virtio-net over an in-memory backend. Notifications
// run on an asio loop the program polls. Nothing may crash, hang or touch memory outside guest
// RAM; checks beyond the sanitizers: the magic, version and vendor read back right, and the
// status never shows DRIVER_OK without FEATURES_OK (G32).
#include <fuzzer/FuzzedDataProvider.h>

#include <asio/io_context.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "base/log.h"
#include "fuzz_guest.h"
#include "testing/fake_irq_line.h"
#include "virtio/mmio_transport.h"
#include "virtio/virtio_spec.h"

namespace {

using namespace kite;
using namespace kite::virtio;
using namespace kite::virtio::mmio;

constexpr uint64_t kRingBase = 0x10000;   // queue q's rings at kRingBase + q * kRingStride
constexpr uint64_t kRingStride = 0x4000;  // desc +0, avail +0x1000, used +0x2000

constexpr uint64_t kRegisters[] = {
    kMagicValue,     kVersion,           kDeviceId,       kVendorId,
    kDeviceFeatures, kDeviceFeaturesSel, kDriverFeatures, kDriverFeaturesSel,
    kQueueSel,       kQueueNumMax,       kQueueNum,       kQueueReady,
    kQueueNotify,    kInterruptStatus,   kInterruptAck,   kStatus,
    kQueueDescLow,   kQueueDescHigh,     kQueueDriverLow, kQueueDriverHigh,
    kQueueDeviceLow, kQueueDeviceHigh,   kShmSel,         kShmLenLow,
    kQueueReset,     kConfigGeneration};

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "virtio_mmio_fuzzer: invariant violated: %s\n", what);
  std::abort();
}

class Guest {
 public:
  Guest(MmioTransport* t, testing::FakeDriver* mem, asio::io_context* loop)
      : t_(t), mem_(mem), loop_(loop) {}

  uint32_t Read32(uint64_t off) {
    uint32_t v = 0;
    t_->Read(off, {reinterpret_cast<uint8_t*>(&v), 4});
    if (off == kMagicValue && v != kMagic) Fail("magic");
    if (off == kVersion && v != kVersion2) Fail("version");
    if (off == kVendorId && v != kVendor) Fail("vendor");
    if (off == kStatus && (v & kStatusDriverOk) && !(v & kStatusFeaturesOk)) {
      Fail("DRIVER_OK without FEATURES_OK");
    }
    return v;
  }
  void Write32(uint64_t off, uint32_t v) {
    t_->Write(off, {reinterpret_cast<const uint8_t*>(&v), 4});
  }
  void Access(uint64_t off, size_t width, bool write, uint64_t value) {
    uint8_t bytes[8];
    std::memcpy(bytes, &value, 8);
    if (write) {
      t_->Write(off, {bytes, width});
    } else {
      t_->Read(off, {bytes, width});
    }
  }
  void Poll() {
    loop_->restart();
    loop_->poll();
  }

  // Linux's virtio_mmio probe: reset, ACK, DRIVER, features, FEATURES_OK, every queue, DRIVER_OK.
  void Handshake(FuzzedDataProvider& in) {
    Write32(kStatus, 0);
    Write32(kStatus, kStatusAcknowledge);
    Write32(kStatus, kStatusAcknowledge | kStatusDriver);
    uint64_t offered = 0;
    for (uint32_t word = 0; word < 2; ++word) {
      Write32(kDeviceFeaturesSel, word);
      offered |= uint64_t{Read32(kDeviceFeatures)} << (32 * word);
    }
    uint64_t accept = (offered & in.ConsumeIntegral<uint64_t>()) | FeatureBit(kFeatureVersion1);
    for (uint32_t word = 0; word < 2; ++word) {
      Write32(kDriverFeaturesSel, word);
      Write32(kDriverFeatures, static_cast<uint32_t>(accept >> (32 * word)));
    }
    Write32(kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    for (uint32_t q = 0; q < 2; ++q) {
      Write32(kQueueSel, q);
      uint32_t max = Read32(kQueueNumMax);
      if (max == 0) break;
      uint32_t size = std::min<uint32_t>(max, 1u << in.ConsumeIntegralInRange(0, 8));
      sizes_[q] = static_cast<uint16_t>(size);
      avail_idx_[q] = 0;
      uint64_t base = kRingBase + q * kRingStride;
      Write32(kQueueNum, size);
      Write64(kQueueDescLow, base);
      Write64(kQueueDriverLow, base + 0x1000);
      Write64(kQueueDeviceLow, base + 0x2000);
      Write32(kQueueReady, 1);
    }
    Write32(kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }

  // A chain of up to four descriptors in queue q (as set up by Handshake), then a kick.
  void Chain(FuzzedDataProvider& in) {
    uint32_t q = in.ConsumeIntegralInRange(0, 1);
    if (sizes_[q] == 0) return;
    fuzz::WriteChain(in, *mem_, kRingBase + q * kRingStride, sizes_[q], &avail_idx_[q]);
    Write32(kQueueNotify, q);
    Poll();
  }

 private:
  void Write64(uint64_t low, uint64_t v) {
    Write32(low, static_cast<uint32_t>(v));
    Write32(low + 4, static_cast<uint32_t>(v >> 32));
  }
  MmioTransport* t_;
  testing::FakeDriver* mem_;
  asio::io_context* loop_;
  uint16_t sizes_[2] = {0, 0};
  uint16_t avail_idx_[2] = {0, 0};
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kite::SetLogLevel(kite::LogLevel::Off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  asio::io_context loop;
  auto device = fuzz::MakeVirtioDevice(in.ConsumeIntegral<uint8_t>(), &loop);
  if (!device) std::abort();
  testing::FakeDriver memory;  // only its guest RAM: 4 MiB, a 1 MiB hole, 4 MiB
  auto irq = std::make_shared<testing::FakeIrqLine>();
  auto transport =
      std::make_unique<MmioTransport>(*device, TransportEnv{&loop, irq, &memory.memory()});
  Guest guest(transport.get(), &memory, &loop);

  for (int steps = 0; in.remaining_bytes() > 0 && steps < 256; ++steps) {
    switch (in.ConsumeIntegralInRange(0, 8)) {
      case 0: {
        uint64_t reg = kRegisters[in.ConsumeIntegralInRange<size_t>(0, std::size(kRegisters) - 1)];
        guest.Write32(reg, in.ConsumeBool() ? in.ConsumeIntegralInRange<uint32_t>(0, 16)
                                            : in.ConsumeIntegral<uint32_t>());
        break;
      }
      case 1:
        (void)guest.Read32(
            kRegisters[in.ConsumeIntegralInRange<size_t>(0, std::size(kRegisters) - 1)]);
        break;
      case 2: {  // configuration space, 1, 2, 4 or 8 bytes
        size_t width = size_t{1} << in.ConsumeIntegralInRange(0, 3);
        bool write = in.ConsumeBool();
        guest.Access(kConfig + in.ConsumeIntegral<uint8_t>(), width, write,
                     in.ConsumeIntegral<uint64_t>());
        break;
      }
      case 3: {  // any offset in the page, any width
        uint64_t off = in.ConsumeIntegralInRange<uint64_t>(0, 0xfff);
        size_t width = in.ConsumeIntegralInRange<size_t>(1, 8);
        bool write = in.ConsumeBool();
        guest.Access(off, width, write, in.ConsumeIntegral<uint64_t>());
        break;
      }
      case 4:
        guest.Handshake(in);
        break;
      case 5:
        guest.Chain(in);
        break;
      case 6:
        fuzz::PokeRam(in, memory);
        break;
      case 7:
        guest.Write32(kQueueNotify, in.ConsumeIntegralInRange<uint32_t>(0, 2));
        guest.Poll();
        break;
      default:
        guest.Write32(kInterruptAck, guest.Read32(kInterruptStatus));
        guest.Poll();
        break;
    }
  }
  guest.Poll();
  transport.reset();  // resets the device: waits for its in-flight I/O
  loop.restart();
  loop.poll();
  return 0;
}
