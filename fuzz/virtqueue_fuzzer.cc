// libFuzzer target: a hostile driver against the device side of a split virtqueue
// (src/virtio/queue.cc). The input is a program of driver and device steps: raw descriptors
// (addresses steered into or near RAM half of the time), avail-ring entries and indices,
// indirect tables in guest memory, event-index fields, pops, reads and writes through the chain
// streams, and out-of-order completions. Nothing may crash, hang or touch memory outside the
// guest's RAM (ASan), and the queue's own promises are checked after every pop
// (BAD_INPUTS G1-G15).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "testing/virtio/fake_driver.h"
#include "virtio/queue.h"

using kite::GuestAddr;
using kite::testing::FakeDriver;
using namespace kite::virtio;

namespace {

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  template <typename T>
  T Take() {
    T v{};
    for (size_t i = 0; i < sizeof(T) && pos_ < size_; ++i) {
      v = static_cast<T>(v | static_cast<T>(static_cast<T>(data_[pos_++]) << (8 * i)));
    }
    return v;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "virtqueue_fuzzer: invariant violated: %s\n", what);
  std::abort();
}

// Every iovec of a popped chain lies inside one region of guest RAM; the totals respect the caps.
void CheckChain(const FakeDriver& driver, const Queue& queue, const DescriptorChain& chain) {
  if (chain.head() >= queue.size()) Fail("head >= size");
  if (chain.readable().size() + chain.writable().size() > kMaxChainSegments) Fail("segments");
  if (uint64_t{chain.readable_bytes()} + chain.writable_bytes() > kMaxChainBytes) Fail("bytes");
  for (auto part : {chain.readable(), chain.writable()}) {
    for (const iovec& v : part) {
      auto* p = static_cast<uint8_t*>(v.iov_base);
      bool inside = false;
      for (const kite::MemoryRegion& r : driver.memory().regions()) {
        if (p >= r.host && v.iov_len <= r.size &&
            p - r.host <= static_cast<ptrdiff_t>(r.size - v.iov_len)) {
          inside = true;
        }
      }
      if (!inside || v.iov_len == 0) Fail("iovec outside RAM or empty");
    }
  }
}

// Reads the readable part (skipping its first byte) and writes a pattern into the writable
// part after taking its first bytes in place; all bounded.
void Consume(const DescriptorChain& chain) {
  static uint8_t scratch[4096];
  static std::vector<iovec> taken;
  ChainReader reader(chain);
  if (reader.remaining() > 0 && !reader.Skip(1)) Fail("Skip(1) failed");
  size_t n = reader.remaining() < sizeof(scratch) ? reader.remaining() : sizeof(scratch);
  if (!reader.Read(scratch, n)) Fail("Read of remaining() bytes failed");
  ChainWriter writer(chain);
  taken.clear();
  n = writer.remaining() < 64 ? writer.remaining() : 64;
  if (!writer.Take(n, &taken)) Fail("Take failed");
  size_t sum = 0;
  for (const iovec& v : taken) sum += v.iov_len;
  if (sum != n || writer.written() != n) Fail("Take covered the wrong length");
  n = writer.remaining() < sizeof(scratch) ? writer.remaining() : sizeof(scratch);
  if (!writer.Write(scratch, n)) Fail("Write of remaining() bytes failed");
  if (writer.Write(scratch, writer.remaining() + 1)) Fail("Write beyond the end succeeded");
}

uint64_t SteerAddr(const FakeDriver& driver, uint64_t raw, uint8_t how) {
  switch (how & 3) {
    case 0:
      return raw;  // anything at all
    case 1:
      return driver.desc_addr() + raw % (1u << 20);  // low region, buffers
    case 2:
      return driver.HoleAddr() - 64 + raw % 128;  // around the hole
    default:
      return driver.EndAddr() - 64 + raw % 128;  // around the end of RAM
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;
  Input in(data, size);
  uint8_t setup = in.Take<uint8_t>();
  uint16_t queue_size = static_cast<uint16_t>(1u << (setup % 9));  // 1..256
  FakeDriver driver({.queue_size = queue_size});
  Queue queue(256);
  driver.Configure(&queue);
  if (!queue.Activate(&driver.memory(), setup & 0x40, setup & 0x80)) Fail("valid rings refused");
  DescriptorChain chain;
  std::vector<uint16_t> popped;
  uint64_t scratch = driver.Alloc(64 * 1024);

  for (int steps = 0; !in.empty() && steps < 512; ++steps) {
    switch (in.Take<uint8_t>() % 9) {
      case 0: {  // raw descriptor
        uint16_t index = in.Take<uint16_t>() % queue_size;
        uint8_t how = in.Take<uint8_t>();
        Descriptor d{SteerAddr(driver, in.Take<uint64_t>(), how), in.Take<uint32_t>(),
                     in.Take<uint16_t>(), in.Take<uint16_t>()};
        if (how & 4) d.len %= 8192;
        driver.SetDescriptor(index, d);
        break;
      }
      case 1:
        driver.AddAvail(in.Take<uint8_t>() & 1 ? in.Take<uint16_t>()
                                               : in.Take<uint8_t>() % queue_size);
        break;
      case 2:
        driver.Publish();
        break;
      case 3:
        driver.SetAvailIdx(in.Take<uint16_t>());
        break;
      case 4: {  // indirect table bytes in the scratch area
        uint16_t off = in.Take<uint16_t>() & ~15u;
        uint8_t count = in.Take<uint8_t>() % 16;
        for (uint8_t i = 0; i < count && off + 16u * (i + 1) <= 64 * 1024; ++i) {
          uint8_t how = in.Take<uint8_t>();
          Descriptor d{SteerAddr(driver, in.Take<uint64_t>(), how), in.Take<uint32_t>() % 8192,
                       in.Take<uint16_t>(), in.Take<uint16_t>()};
          if (how & 4) d.addr = scratch + (d.addr & 0xfff0);  // another table
          driver.WriteObj(scratch + off + 16u * i, d);
        }
        break;
      }
      case 5: {  // device: pop a batch
        for (int i = 0; i < 32; ++i) {
          Queue::PopResult r = queue.Pop(&chain);
          if (r != Queue::PopResult::kChain) break;
          CheckChain(driver, queue, chain);
          Consume(chain);
          popped.push_back(chain.head());
        }
        if (queue.in_flight() > queue.size() || queue.in_flight() != popped.size()) {
          Fail("in-flight accounting");
        }
        break;
      }
      case 6: {  // device: complete one, in any order
        if (popped.empty()) break;
        size_t i = in.Take<uint8_t>() % popped.size();
        queue.PushUsed(popped[i], in.Take<uint32_t>());
        popped.erase(popped.begin() + static_cast<ptrdiff_t>(i));
        (void)queue.NeedsInterrupt();
        break;
      }
      case 7:
        driver.SetUsedEvent(in.Take<uint16_t>());
        driver.SetAvailFlags(in.Take<uint16_t>());
        break;
      default:
        while (driver.PopUsed()) {
        }
        break;
    }
  }
  return 0;
}
