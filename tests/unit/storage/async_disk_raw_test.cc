// AsyncDisk on raw images, run once per mechanism (worker pool, io_uring) and, where it matters,
// once per cache mode (page cache, O_DIRECT): data, scatter-gather, flush, discard,
// write-zeroes, many in flight, Drain while in flight (G33), errors, and the fallback paths.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "storage/async_disk.h"
#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "storage_test_util.h"
#include "testing/temp_dir.h"

namespace kite::storage {
namespace {

using kite::testing::TempDir;
using testing::Pattern;

constexpr uint64_t kDiskSize = 8 << 20;

struct Variant {
  AsyncBackend backend;
  CacheMode cache;
};

std::string VariantName(const ::testing::TestParamInfo<Variant>& info) {
  std::string name = info.param.backend == AsyncBackend::kThreads ? "Threads" : "IoUring";
  return name + (info.param.cache == CacheMode::kNone ? "Direct" : "Cached");
}

// 4 KiB-aligned memory, as guest RAM is page-aligned (O_DIRECT needs it for the fast path).
struct AlignedBytes {
  explicit AlignedBytes(size_t len) : len(len) {
    if (::posix_memalign(&ptr, 4096, len) != 0) ptr = nullptr;
    if (ptr != nullptr) std::memset(ptr, 0, len);
  }
  ~AlignedBytes() { std::free(ptr); }
  AlignedBytes(const AlignedBytes&) = delete;
  AlignedBytes& operator=(const AlignedBytes&) = delete;
  uint8_t* data() { return static_cast<uint8_t*>(ptr); }
  void* ptr = nullptr;
  size_t len;
};

class AsyncRaw : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    path_ = dir_.File("disk.raw");
    ASSERT_TRUE(CreateRaw(path_, kDiskSize, Preallocation::kOff));
    OpenOptions o;
    o.cache = GetParam().cache;
    auto image = RawImage::Open(path_, o);
    if (!image && GetParam().cache == CacheMode::kNone) GTEST_SKIP() << "no O_DIRECT here";
    ASSERT_TRUE(image) << image.error().message();
    image_ = std::move(*image);
  }

  AsyncDiskOptions Options() const {
    AsyncDiskOptions o;
    o.backend = GetParam().backend;
    return o;
  }

  // Submits one request and waits for it; returns its result.
  static Result<void> Run(AsyncDisk& disk, DiskRequest r) {
    std::atomic<bool> done{false};
    Result<void> result;
    disk.Submit(std::move(r), [&](Result<void> res) {
      result = std::move(res);
      done = true;
    });
    disk.Drain();
    EXPECT_TRUE(done.load());
    return result;
  }

  static DiskRequest Io(DiskOp op, uint64_t offset, std::vector<iovec> iov) {
    DiskRequest r;
    r.op = op;
    r.offset = offset;
    r.iov = std::move(iov);
    return r;
  }

  std::vector<uint8_t> FileBytes(uint64_t offset, size_t len) const {
    std::vector<uint8_t> out(len);
    int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    EXPECT_TRUE(PreadFull(fd, out.data(), len, offset));
    ::close(fd);
    return out;
  }

  bool ExpectUring() const { return GetParam().backend != AsyncBackend::kThreads; }

  TempDir dir_;
  std::string path_;
  std::shared_ptr<DiskImage> image_;
};

TEST_P(AsyncRaw, Backend_IsTheOneAskedFor) {
  AsyncDisk disk(image_, Options());
  EXPECT_EQ(disk.uses_io_uring(), ExpectUring());
}

TEST_P(AsyncRaw, ManyWritesThenReads_ScatterGather_DataRoundTrips) {
  AsyncDisk disk(image_, Options());
  constexpr int kRequests = 64;
  constexpr size_t kLen = 65536;
  AlignedBytes out(kRequests * kLen), back(kRequests * kLen);
  std::atomic<int> ok{0};
  for (int i = 0; i < kRequests; ++i) {
    std::vector<uint8_t> p = Pattern(i * kLen, kLen, 9);
    std::memcpy(out.data() + i * kLen, p.data(), kLen);
    uint8_t* b = out.data() + i * kLen;
    disk.Submit(Io(DiskOp::kWrite, i * kLen, {{b, 4096}, {b + 4096, 28672}, {b + 32768, 32768}}),
                [&](Result<void> res) { ok += res.has_value(); });
  }
  disk.Drain();
  ASSERT_EQ(ok.load(), kRequests);
  EXPECT_EQ(FileBytes(0, kRequests * kLen),
            std::vector<uint8_t>(out.data(), out.data() + kRequests * kLen));
  for (int i = 0; i < kRequests; ++i) {
    uint8_t* b = back.data() + i * kLen;
    disk.Submit(Io(DiskOp::kRead, i * kLen, {{b, 61440}, {b + 61440, 4096}}),
                [&](Result<void> res) { ok += res.has_value(); });
  }
  disk.Drain();
  EXPECT_EQ(ok.load(), 2 * kRequests);
  EXPECT_EQ(std::memcmp(out.data(), back.data(), kRequests * kLen), 0);
}

TEST_P(AsyncRaw, MoreIovecsThanIovMax_SplitAndComplete) {
  AsyncDisk disk(image_, Options());
  constexpr size_t kVecs = 1500;  // > UIO_MAXIOV (1024): io_uring needs two SQEs
  AlignedBytes out(kVecs * 4096), back(kVecs * 4096);
  std::vector<uint8_t> p = Pattern(4096, kVecs * 4096, 3);
  std::memcpy(out.data(), p.data(), p.size());
  std::vector<iovec> w, r;
  for (size_t i = 0; i < kVecs; ++i) {
    w.push_back({out.data() + i * 4096, 4096});
    r.push_back({back.data() + i * 4096, 4096});
  }
  ASSERT_TRUE(Run(disk, Io(DiskOp::kWrite, 4096, w)));
  ASSERT_TRUE(Run(disk, Io(DiskOp::kRead, 4096, r)));
  EXPECT_EQ(std::memcmp(back.data(), p.data(), p.size()), 0);
  EXPECT_EQ(FileBytes(4096, p.size()), p);
}

TEST_P(AsyncRaw, UnalignedBuffer_RoundTrips) {
  AsyncDisk disk(image_, Options());
  std::vector<uint8_t> out = Pattern(1000, 3000, 4), back(3000);
  ASSERT_TRUE(Run(disk, Io(DiskOp::kWrite, 1000, {{out.data(), out.size()}})));
  ASSERT_TRUE(Run(disk, Io(DiskOp::kRead, 1000, {{back.data(), back.size()}})));
  EXPECT_EQ(back, out);
  EXPECT_EQ(FileBytes(1000, 3000), out);
}

TEST_P(AsyncRaw, Flush_Succeeds) {
  AsyncDisk disk(image_, Options());
  AlignedBytes b(4096);
  std::memset(b.ptr, 0x5a, 4096);
  ASSERT_TRUE(Run(disk, Io(DiskOp::kWrite, 0, {{b.ptr, 4096}})));
  DiskRequest flush;
  flush.op = DiskOp::kFlush;
  EXPECT_TRUE(Run(disk, flush));
  EXPECT_EQ(FileBytes(0, 1)[0], 0x5a);
}

TEST_P(AsyncRaw, DiscardAndWriteZeroes_ReadBackZeros) {
  AsyncDisk disk(image_, Options());
  AlignedBytes b(65536);
  std::memset(b.ptr, 0xee, b.len);
  ASSERT_TRUE(Run(disk, Io(DiskOp::kWrite, 0, {{b.ptr, b.len}})));
  DiskRequest zero;
  zero.op = DiskOp::kWriteZeroes;
  zero.offset = 4096;
  zero.length = 8192;
  ASSERT_TRUE(Run(disk, zero));
  DiskRequest discard;
  discard.op = DiskOp::kDiscard;
  discard.offset = 32768;
  discard.length = 32768;
  ASSERT_TRUE(Run(disk, discard));
  ASSERT_TRUE(Run(disk, Io(DiskOp::kRead, 0, {{b.ptr, b.len}})));
  for (size_t i = 0; i < b.len; ++i) {
    bool zeroed = (i >= 4096 && i < 12288) || i >= 32768;
    ASSERT_EQ(b.data()[i], zeroed ? 0 : 0xee) << i;
  }
}

TEST_P(AsyncRaw, ManyInFlight_SmallRing_AllComplete) {
  AsyncDiskOptions o = Options();
  o.uring_entries = 2;  // the rest wait in userspace
  o.workers = 2;
  AsyncDisk disk(image_, o);
  constexpr int kRequests = 500;
  AlignedBytes b(kRequests * 4096);
  std::atomic<int> ok{0};
  for (int i = 0; i < kRequests; ++i) {
    std::memset(b.data() + i * 4096, i & 0xff, 4096);
    disk.Submit(Io(DiskOp::kWrite, i * 4096ull, {{b.data() + i * 4096, 4096}}),
                [&](Result<void> res) { ok += res.has_value(); });
  }
  disk.Drain();
  EXPECT_EQ(ok.load(), kRequests);
  std::vector<uint8_t> file = FileBytes(0, kRequests * 4096);
  for (int i = 0; i < kRequests; ++i) ASSERT_EQ(file[i * 4096 + 17], i & 0xff) << i;
}

TEST_P(AsyncRaw, QueueFull_RefusedNotLost) {
  AsyncDiskOptions o = Options();
  o.uring_entries = 1;
  o.workers = 1;
  o.max_queued = 2;
  AsyncDisk disk(image_, o);
  AlignedBytes b(4096 * 64);
  std::atomic<int> completions{0}, errors{0};
  for (int i = 0; i < 64; ++i) {
    disk.Submit(Io(DiskOp::kRead, i * 4096ull, {{b.data() + i * 4096, 4096}}),
                [&](Result<void> res) {
                  errors += !res.has_value();
                  ++completions;
                });
  }
  disk.Drain();
  EXPECT_EQ(completions.load(), 64);  // every request completes once, refused or not
  EXPECT_EQ(disk.in_flight(), 0u);
}

// G33: after Drain() returns, every completion has run and nothing is left in flight.
TEST_P(AsyncRaw, G33_DrainWhileInFlight_EveryCompletionBeforeReturn) {
  AsyncDisk disk(image_, Options());
  constexpr int kRequests = 300;
  AlignedBytes b(kRequests * 4096);
  std::atomic<int> done{0};
  for (int i = 0; i < kRequests; ++i) {
    DiskOp op = i % 3 == 0 ? DiskOp::kWrite : DiskOp::kRead;
    disk.Submit(Io(op, i * 4096ull, {{b.data() + i * 4096, 4096}}), [&](Result<void>) { ++done; });
    if (i % 50 == 0) {
      DiskRequest flush;
      flush.op = DiskOp::kFlush;
      disk.Submit(flush, [&](Result<void>) { ++done; });
    }
  }
  disk.Drain();
  EXPECT_EQ(done.load(), kRequests + kRequests / 50);
  EXPECT_EQ(disk.in_flight(), 0u);
}

// Plugged io_uring requests wait in the submission ring: nothing reaches the kernel (so
// nothing completes) before Unplug hands them over together.
TEST_P(AsyncRaw, Plug_HoldsUringRequestsUntilUnplug) {
  AsyncDisk disk(image_, Options());
  constexpr int kRequests = 8;
  AlignedBytes b(kRequests * 4096);
  std::atomic<int> done{0};
  disk.Plug();
  for (int i = 0; i < kRequests; ++i) {
    disk.Submit(Io(DiskOp::kRead, i * 4096ull, {{b.data() + i * 4096, 4096}}), [&](Result<void> r) {
      EXPECT_TRUE(r) << r.error().message();
      ++done;
    });
  }
  if (ExpectUring()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(done.load(), 0) << "a plugged request reached the kernel";
  }
  disk.Unplug();
  disk.Drain();
  EXPECT_EQ(done.load(), kRequests);
}

TEST_P(AsyncRaw, CompletionSubmitsMore_NoDeadlock) {
  AsyncDisk disk(image_, Options());
  AlignedBytes b(4096);
  std::atomic<int> remaining{100};
  std::function<void(Result<void>)> again = [&](Result<void> res) {
    EXPECT_TRUE(res);
    if (--remaining > 0) disk.Submit(Io(DiskOp::kRead, 0, {{b.ptr, 4096}}), again);
  };
  disk.Submit(Io(DiskOp::kRead, 0, {{b.ptr, 4096}}), again);
  disk.Drain();
  EXPECT_EQ(remaining.load(), 0);
}

TEST_P(AsyncRaw, Executor_ReceivesEveryCompletion) {
  std::mutex mu;
  std::vector<std::function<void()>> posted;
  AsyncDiskOptions o = Options();
  o.executor = [&](std::function<void()> fn) {
    std::lock_guard lock(mu);
    posted.push_back(std::move(fn));
  };
  AsyncDisk disk(image_, o);
  AlignedBytes b(10 * 4096);
  int done = 0;
  for (int i = 0; i < 10; ++i) {
    disk.Submit(
        Io(i % 2 ? DiskOp::kRead : DiskOp::kWrite, i * 4096ull, {{b.data() + i * 4096, 4096}}),
        [&](Result<void> res) { done += res.has_value(); });
  }
  disk.Drain();
  EXPECT_EQ(done, 0);  // nothing runs until the "event loop" runs the posted work
  for (auto& fn : posted) fn();
  EXPECT_EQ(done, 10);
}

TEST_P(AsyncRaw, G16_ReadPastEndOfDisk_Error) {
  AsyncDisk disk(image_, Options());
  AlignedBytes b(8192);
  EXPECT_FALSE(Run(disk, Io(DiskOp::kRead, kDiskSize - 4096, {{b.ptr, 8192}})));
  EXPECT_FALSE(Run(disk, Io(DiskOp::kRead, ~0ull - 4095, {{b.ptr, 4096}})));
}

TEST_P(AsyncRaw, G19_WriteToReadOnlyImage_ErrorAndNothingWritten) {
  OpenOptions ro;
  ro.read_only = true;
  ro.cache = GetParam().cache;
  ro.lock = false;
  auto image = RawImage::Open(path_, ro);
  ASSERT_TRUE(image);
  AsyncDisk disk(std::shared_ptr<DiskImage>(std::move(*image)), Options());
  AlignedBytes b(4096);
  std::memset(b.ptr, 0x77, 4096);
  EXPECT_FALSE(Run(disk, Io(DiskOp::kWrite, 0, {{b.ptr, 4096}})));
  EXPECT_EQ(FileBytes(0, 4096), std::vector<uint8_t>(4096, 0));
}

// The raw file shrank under the disk: reads of the missing part return zeros (I31), also
// when the read spans the new end of file (a short read, then end of file).
TEST_P(AsyncRaw, ReadAcrossEndOfShorterFile_RestIsZeros) {
  AsyncDisk disk(image_, Options());
  AlignedBytes b(16384);
  std::memset(b.ptr, 0x11, b.len);
  ASSERT_TRUE(Run(disk, Io(DiskOp::kWrite, 0, {{b.ptr, b.len}})));
  ASSERT_EQ(::truncate(path_.c_str(), 8192), 0);
  std::memset(b.ptr, 0xff, b.len);
  ASSERT_TRUE(Run(disk, Io(DiskOp::kRead, 4096, {{b.ptr, 4096}, {b.data() + 4096, 8192}})));
  for (size_t i = 0; i < 12288; ++i) ASSERT_EQ(b.data()[i], i < 4096 ? 0x11 : 0) << i;
}

// The image's fd is swapped for one opened the other way, so the kernel refuses the I/O:
// the error reaches the completion, for reads and for writes.
TEST_P(AsyncRaw, KernelRefusesIo_ErrorSurfaces) {
  AsyncDisk disk(image_, Options());
  int fd = *image_->raw_fd();
  int wronly = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(wronly, 0);
  ASSERT_GE(::dup2(wronly, fd), 0);
  ::close(wronly);
  AlignedBytes b(4096);
  Result<void> read = Run(disk, Io(DiskOp::kRead, 0, {{b.ptr, 4096}}));
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().sys_errno(), EBADF);
  int rdonly = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(rdonly, 0);
  ASSERT_GE(::dup2(rdonly, fd), 0);
  ::close(rdonly);
  Result<void> write = Run(disk, Io(DiskOp::kWrite, 0, {{b.ptr, 4096}}));
  ASSERT_FALSE(write);
  EXPECT_EQ(write.error().sys_errno(), EBADF);
}

INSTANTIATE_TEST_SUITE_P(Backends, AsyncRaw,
                         ::testing::Values(Variant{AsyncBackend::kThreads, CacheMode::kWriteback},
                                           Variant{AsyncBackend::kIoUring, CacheMode::kWriteback},
                                           Variant{AsyncBackend::kThreads, CacheMode::kNone},
                                           Variant{AsyncBackend::kIoUring, CacheMode::kNone}),
                         VariantName);

// Fallback: when io_uring cannot be set up (here: a ring size the kernel refuses), the disk
// works on the worker pool.
TEST(AsyncRawFallback, RingRefused_UsesWorkerPool) {
  TempDir dir;
  ASSERT_TRUE(CreateRaw(dir.File("d.raw"), 1 << 20, Preallocation::kOff));
  std::shared_ptr<DiskImage> image = testing::OpenForTest(dir.File("d.raw"), ImageFormat::kRaw);
  AsyncDiskOptions o;
  o.uring_entries = 0;
  AsyncDisk disk(image, o);
  EXPECT_FALSE(disk.uses_io_uring());
  std::vector<uint8_t> out = Pattern(0, 4096, 1), back(4096);
  std::atomic<int> ok{0};
  DiskRequest w;
  w.op = DiskOp::kWrite;
  w.iov = {{out.data(), out.size()}};
  disk.Submit(w, [&](Result<void> r) { ok += r.has_value(); });
  disk.Drain();
  DiskRequest r;
  r.iov = {{back.data(), back.size()}};
  disk.Submit(r, [&](Result<void> res) { ok += res.has_value(); });
  disk.Drain();
  EXPECT_EQ(ok.load(), 2);
  EXPECT_EQ(back, out);
}

// Images without a raw fd never use io_uring: qcow2 (synchronous metadata) and raw with
// cache=writethrough (fdatasync after every write).
TEST(AsyncRawFallback, Qcow2AndWritethrough_UseWorkerPool) {
  TempDir dir;
  Qcow2CreateOptions q;
  q.size = 1 << 20;
  ASSERT_TRUE(CreateQcow2(dir.File("a.qcow2"), q));
  AsyncDiskOptions o;
  o.backend = AsyncBackend::kIoUring;
  AsyncDisk qcow2(testing::OpenForTest(dir.File("a.qcow2"), ImageFormat::kQcow2), o);
  EXPECT_FALSE(qcow2.uses_io_uring());
  ASSERT_TRUE(CreateRaw(dir.File("w.raw"), 1 << 20, Preallocation::kOff));
  OpenOptions wt;
  wt.cache = CacheMode::kWritethrough;
  auto raw = RawImage::Open(dir.File("w.raw"), wt);
  ASSERT_TRUE(raw);
  AsyncDisk writethrough(std::shared_ptr<DiskImage>(std::move(*raw)), o);
  EXPECT_FALSE(writethrough.uses_io_uring());
}

}  // namespace
}  // namespace kite::storage
