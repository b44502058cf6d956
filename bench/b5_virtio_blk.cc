// B5 (shared/BENCHMARKS.md): the virtio-blk device path's host cost per request. A fake
// driver keeps DEPTH 4 KiB requests in flight on one split virtqueue; the device parses them
// and runs them through AsyncDisk on an in-memory disk (no file system, no page cache), and
// the completions come back through an asio loop on this thread, as in the VMM. Random
// 4 KiB-aligned offsets. Measured: wall time and the process's CPU time (getrusage: this
// thread + the device's workers), so "requests per CPU-second" is the figure per host core.
//
//   b5_virtio_blk [--mode read|write] [--count N] [--depth D] [--workers W] [--size-mb S]
//                 [--disk mem|PATH] [--backend auto|threads]
//
// --disk mem (default): the in-memory disk above, through AsyncDisk's worker pool.
// --disk PATH: a raw image file (e.g. on /dev/shm) opened as the VMM opens one: AsyncDisk
// then uses io_uring for its reads and writes (--backend threads: the worker pool instead).
//
// Prints one line: "mode=read count=N depth=D wall_s=.. cpu_s=.. rps=.. rps_per_core=..".
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "storage/disk_image.h"
#include "testing/virtio/fake_driver.h"
#include "virtio/block.h"
#include "virtio/queue.h"

namespace {

using namespace kite;

// A disk in host memory, locked in 64 KiB stripes (a request spanning stripes takes them in
// order): the bench measures the device path, not contention on the disk.
class MemDisk final : public storage::DiskImage {
 public:
  explicit MemDisk(uint64_t size) : data_(size, 0x5a) {}
  storage::ImageFormat format() const override { return storage::ImageFormat::kRaw; }
  const std::string& path() const override { return path_; }
  uint64_t size() const override { return data_.size(); }
  bool read_only() const override { return false; }
  uint64_t allocated_bytes() const override { return data_.size(); }
  Result<void> ReadV(uint64_t off, std::span<const iovec> iov) override {
    return Copy(off, iov, false);
  }
  Result<void> WriteV(uint64_t off, std::span<const iovec> iov) override {
    return Copy(off, iov, true);
  }
  Result<void> Flush() override { return {}; }
  Result<void> Discard(uint64_t, uint64_t) override { return {}; }
  Result<void> WriteZeroes(uint64_t, uint64_t, bool) override { return {}; }
  Result<storage::Extent> BlockStatus(uint64_t, uint64_t) override { return Err("unsupported"); }

 private:
  static constexpr unsigned kStripeShift = 16;
  Result<void> Copy(uint64_t off, std::span<const iovec> iov, bool write) {
    uint64_t len = 0;
    for (const iovec& v : iov) len += v.iov_len;
    if (off > data_.size() || len > data_.size() - off) return Err("range");
    if (len == 0) return {};
    // The stripes a request covers, locked in index order (no deadlock between requests).
    uint64_t first = off >> kStripeShift, last = (off + len - 1) >> kStripeShift;
    std::vector<size_t> locked;
    for (uint64_t s = first; s <= last && locked.size() < stripes_.size(); ++s) {
      locked.push_back(s % stripes_.size());
    }
    std::sort(locked.begin(), locked.end());
    for (size_t s : locked) stripes_[s].lock();
    for (const iovec& v : iov) {
      uint8_t* disk = data_.data() + off;
      write ? std::memcpy(disk, v.iov_base, v.iov_len) : std::memcpy(v.iov_base, disk, v.iov_len);
      off += v.iov_len;
    }
    for (size_t s : locked) stripes_[s].unlock();
    return {};
  }

  std::string path_ = "mem";
  std::vector<uint8_t> data_;
  std::array<std::mutex, 256> stripes_;
};

struct Args {
  bool write = false;
  uint64_t count = 200000;
  int depth = 32;
  int workers = 8;
  uint64_t size_mb = 256;
  std::string disk = "mem";
  bool threads = false;  // --backend threads: the worker pool even for a raw file
};

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--mode")
      a.write = v == "write";
    else if (k == "--count")
      a.count = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--depth")
      a.depth = std::atoi(v.c_str());
    else if (k == "--workers")
      a.workers = std::atoi(v.c_str());
    else if (k == "--size-mb")
      a.size_mb = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--disk")
      a.disk = v;
    else if (k == "--backend")
      a.threads = v == "threads";
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  if (a.depth < 1 || a.depth > 128 || a.workers < 1 || a.count == 0 || a.size_mb == 0) {
    std::fprintf(stderr, "bad options\n");
    std::exit(2);
  }
  return a;
}

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

// One in-flight slot: its buffers in guest memory.
struct Slot {
  uint64_t header, data, status;
};

}  // namespace

int main(int argc, char** argv) {
  Args args = ParseArgs(argc, argv);
  constexpr uint16_t kQueueSize = 256;
  asio::io_context loop;
  virtio::BlockOptions options;
  options.queue_size = kQueueSize;
  options.io_workers = args.workers;
  if (args.threads) options.backend = storage::AsyncBackend::kThreads;
  std::shared_ptr<storage::DiskImage> image;
  if (args.disk == "mem") {
    image = std::make_shared<MemDisk>(args.size_mb << 20);
  } else {
    auto opened = storage::OpenImage(args.disk, storage::ImageFormat::kRaw, {});
    if (!opened) {
      std::fprintf(stderr, "%s\n", opened.error().message().c_str());
      return 1;
    }
    image = std::move(*opened);
    if (image->size() < (args.size_mb << 20)) {
      std::fprintf(stderr, "%s is smaller than --size-mb\n", args.disk.c_str());
      return 1;
    }
  }
  auto dev = virtio::CreateVirtioBlock(image, options, &loop);
  if (!dev) {
    std::fprintf(stderr, "%s\n", dev.error().message().c_str());
    return 1;
  }
  testing::FakeDriver driver({.queue_size = kQueueSize});
  virtio::Queue queue(kQueueSize);
  driver.Configure(&queue);
  if (!queue.Activate(&driver.memory(), true, true)) return 1;
  std::vector<virtio::Queue*> queues{&queue};
  uint64_t interrupts = 0;
  virtio::ActiveQueues active;
  active.memory = &driver.memory();
  active.features = (*dev)->device_features();
  active.queues = queues;
  active.signal_used = [&](uint16_t) { ++interrupts; };
  active.mark_broken = [](const std::string& why) {
    std::fprintf(stderr, "broken: %s\n", why.c_str());
  };
  if (!(*dev)->Activate(std::move(active))) return 1;

  std::vector<Slot> slots(static_cast<size_t>(args.depth));
  for (Slot& s : slots) s = {driver.Alloc(16), driver.Alloc(4096), driver.Alloc(1)};
  std::vector<int> slot_of_head(kQueueSize, -1);
  std::mt19937_64 rng(42);
  uint64_t blocks = (args.size_mb << 20) / 4096;
  uint32_t type = args.write ? virtio::blk::kTypeOut : virtio::blk::kTypeIn;
  auto submit = [&](int slot) {
    const Slot& s = slots[static_cast<size_t>(slot)];
    driver.WriteObj(s.header, virtio::blk::RequestHeader{type, 0, (rng() % blocks) * 8});
    uint16_t head =
        driver.AddChain({{s.header, 16, false}, {s.data, 4096, !args.write}, {s.status, 1, true}});
    slot_of_head[head] = slot;
  };

  auto guard = asio::make_work_guard(loop);
  auto t0 = std::chrono::steady_clock::now();
  double cpu0 = CpuSeconds();
  uint64_t submitted = 0, completed = 0, errors = 0;
  for (int i = 0; i < args.depth && submitted < args.count; ++i, ++submitted) submit(i);
  driver.Publish();
  (*dev)->ProcessQueue(0);
  while (completed < args.count) {
    loop.run_one();
    loop.poll();
    bool added = false;
    while (auto used = driver.PopUsed()) {
      ++completed;
      int slot = slot_of_head[used->id];
      if (driver.ReadObj<uint8_t>(slots[static_cast<size_t>(slot)].status) != 0) ++errors;
      if (submitted < args.count) {
        submit(slot);
        ++submitted;
        added = true;
      }
    }
    if (added) {
      driver.Publish();
      (*dev)->ProcessQueue(0);
    }
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double cpu = CpuSeconds() - cpu0;
  (*dev)->Reset();
  std::printf(
      "disk=%s mode=%s count=%llu depth=%d workers=%d wall_s=%.3f cpu_s=%.3f rps=%.0f "
      "rps_per_core=%.0f interrupts=%llu errors=%llu\n",
      args.disk == "mem" ? "mem" : "raw", args.write ? "write" : "read",
      static_cast<unsigned long long>(completed), args.depth, args.workers, wall, cpu,
      completed / wall, completed / cpu, static_cast<unsigned long long>(interrupts),
      static_cast<unsigned long long>(errors));
  return errors == 0 ? 0 : 1;
}
