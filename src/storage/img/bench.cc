// kite-img bench: drives kite's asynchronous disk layer (storage/async_disk.h) the way the VMM
// does, with DEPTH requests in flight, and times COUNT requests (qemu-img bench's options and
// output). Requests walk the disk from -o in steps of -S bytes, wrapping modulo
// (size - buffer size) exactly as qemu-img bench does, so both tools see the same offsets.
// Completions only record the result; this thread submits the next requests, as the VMM's event
// loop does. `-i threads|io_uring` picks AsyncDisk's mechanism (qemu-img bench's -i aio); without
// it, AsyncDisk's default (io_uring for raw images, threads for qcow2).
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "storage/async_disk.h"
#include "storage/img/commands.h"
#include "storage/img/image_open.h"

namespace kite::img {
namespace {

using storage::DiskOp;

// Worker threads of the async layer: one per request in flight, up to this many.
constexpr uint32_t kBenchMaxWorkers = 16;

struct AlignedBuffer {
  explicit AlignedBuffer(size_t len) {
    if (::posix_memalign(&ptr, 4096, len) != 0) ptr = nullptr;
  }
  ~AlignedBuffer() { std::free(ptr); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  void* ptr = nullptr;
};

class BenchRun {
 public:
  BenchRun(const BenchArgs& args, storage::AsyncDisk& disk, uint64_t image_size)
      : args_(args), disk_(disk), image_size_(image_size), offset_(args.offset) {}

  // Allocates and fills the buffers; untimed, as in qemu-img bench.
  Result<void> Prepare() {
    for (uint32_t i = 0; i < args_.depth; ++i) {
      buffers_.push_back(std::make_unique<AlignedBuffer>(args_.buffer_size));
      if (buffers_.back()->ptr == nullptr) return Err("out of memory for bench buffers");
      std::memset(buffers_.back()->ptr, args_.pattern, args_.buffer_size);
      free_.push_back(i);
    }
    return {};
  }

  Result<void> Run() {
    uint64_t issued = 0;
    std::unique_lock lock(mu_);
    while (completed_ < args_.count && !error_) {
      while (!free_.empty() && issued < args_.count) {
        if (args_.flush_interval && issued == next_flush_) {
          next_flush_ += args_.flush_interval;
          lock.unlock();
          TRY(FlushNow());
          lock.lock();
        }
        uint32_t slot = free_.back();
        free_.pop_back();
        storage::DiskRequest request;
        request.op = args_.write ? DiskOp::kWrite : DiskOp::kRead;
        request.offset = offset_;
        request.iov.push_back({buffers_[slot]->ptr, args_.buffer_size});
        Advance();
        ++issued;
        lock.unlock();
        disk_.Submit(std::move(request),
                     [this, slot](Result<void> r) { Done(slot, std::move(r)); });
        lock.lock();
      }
      cv_.wait(lock, [&] {
        return (!free_.empty() && issued < args_.count) || completed_ >= args_.count || error_;
      });
    }
    lock.unlock();
    disk_.Drain();
    if (error_) return *error_;
    return {};
  }

 private:
  void Advance() {
    offset_ += args_.step.value_or(args_.buffer_size);
    offset_ = image_size_ <= args_.buffer_size ? 0 : offset_ % (image_size_ - args_.buffer_size);
  }

  void Done(uint32_t slot, Result<void> r) {
    std::lock_guard lock(mu_);
    if (!r && !error_) error_ = std::move(r).error();
    ++completed_;
    free_.push_back(slot);
    cv_.notify_one();
  }

  Result<void> FlushNow() {
    if (!args_.no_drain) disk_.Drain();
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    Result<void> result;
    storage::DiskRequest flush;
    flush.op = DiskOp::kFlush;
    disk_.Submit(std::move(flush), [&](Result<void> r) {
      std::lock_guard lock(m);
      result = std::move(r);
      done = true;
      cv.notify_one();
    });
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return done; });
    return result;
  }

  const BenchArgs& args_;
  storage::AsyncDisk& disk_;
  const uint64_t image_size_;
  uint64_t offset_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<AlignedBuffer>> buffers_;
  std::vector<uint32_t> free_;
  uint64_t completed_ = 0;
  std::optional<Error> error_;
  uint64_t next_flush_ = args_.flush_interval;
};

Result<double> Bench(const BenchArgs& args, Console& console) {
  storage::ImageFormat format = TRY(ResolveFormat(args.filename, args.format));
  storage::CacheMode cache = TRY(storage::ParseCacheMode(args.cache));
  storage::OpenOptions o;
  o.read_only = !args.write;
  o.cache = cache;
  o.force_share = args.force_share;
  o.allow_unformatted_backing_as_raw = true;
  o.follow_data_file = true;  // as every kite-img command (image_open.cc)
  std::shared_ptr<storage::DiskImage> image;
  if (format == storage::ImageFormat::kVmdk) {
    if (args.write) return Err("VMDK images are read-only");
    image = TRY(OpenForTool(args.filename, format, {}));
  } else {
    image = TRY_CTX(storage::OpenImage(args.filename, format, o),
                    "Could not open '" + args.filename + "'");
  }
  if (args.buffer_size > image->size() || args.offset > image->size() - args.buffer_size) {
    return Err("Offset and buffer size exceed the image size");
  }
  if (!args.quiet) {
    char line[256];
    std::snprintf(line, sizeof(line),
                  "Sending %llu %s requests, %llu bytes each, %u in parallel (starting at "
                  "offset %llu, step size %llu)\n",
                  static_cast<unsigned long long>(args.count), args.write ? "write" : "read",
                  static_cast<unsigned long long>(args.buffer_size), args.depth,
                  static_cast<unsigned long long>(args.offset),
                  static_cast<unsigned long long>(args.step.value_or(args.buffer_size)));
    console.out << line;
    if (args.flush_interval) {
      console.out << "Sending flush every " << args.flush_interval << " requests\n";
    }
    console.out << std::flush;
  }
  storage::AsyncDiskOptions disk_options;
  disk_options.workers = static_cast<int>(std::min<uint32_t>(args.depth, kBenchMaxWorkers));
  disk_options.max_queued = args.depth + 1;
  if (args.aio == "threads") disk_options.backend = storage::AsyncBackend::kThreads;
  if (args.aio == "io_uring") disk_options.backend = storage::AsyncBackend::kIoUring;
  disk_options.uring_entries = std::max<uint32_t>(args.depth, 1);
  storage::AsyncDisk disk(image, disk_options);
  BenchRun run(args, disk, image->size());
  TRY(run.Prepare());
  auto start = std::chrono::steady_clock::now();
  TRY(run.Run());
  std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  return elapsed.count();
}

}  // namespace

int RunBench(const BenchArgs& args, Console& console) {
  auto seconds = Bench(args, console);
  if (!seconds) return Fail(console, seconds.error());
  char line[64];
  std::snprintf(line, sizeof(line), "Run completed in %3.3f seconds.\n", *seconds);
  console.out << line;
  return 0;
}

}  // namespace kite::img
