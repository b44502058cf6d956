// F2 and F4 (BAD_INPUTS 6.6) on real failing devices: raw images on a device-mapper device
// whose table maps some ranges to the `error` target (dm_device.h).
//  F2: a read of an erroring range fails with EIO and an error naming the disk; reads of other
//      ranges, and writes, keep working: the error is that request's only.
//  F4: writes land in the page cache, then the device starts failing: the flush (fdatasync)
//      fails, the image is marked failed, and every later write and flush fails too, even once
//      the device is healthy again (the kernel reports a writeback error once and may have
//      dropped the dirty pages, so a retried fdatasync would report success for lost data).
// Each case runs through RawImage (OpenImage) and through AsyncDisk with io_uring and with the
// worker pool, F2 also with O_DIRECT (cache=none).
//
// Label `fault`: root + device-mapper, which scripts/test.sh has in its nested VM.
//
// Threads: the test thread; AsyncDisk completions run on its workers or io_uring completion
// thread and hand their results back through promises.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "fault/dm_device.h"
#include "storage/async_disk.h"
#include "storage/disk_image.h"
#include "testing/temp_dir.h"

namespace kite::storage {
namespace {

using testing::ByteRange;
using testing::DmDevice;

constexpr uint64_t kDeviceBytes = 4 << 20;
constexpr uint64_t kBlock = 4096;
constexpr ByteRange kBadRange{1 << 20, 64 << 10};  // F2: reads here fail with EIO
constexpr size_t kWriteBytes = 64 << 10;           // F4: what sits in the page cache

// The device's initial contents: every 4 KiB block a different byte pattern.
uint8_t PatternByte(uint64_t offset) {
  return static_cast<uint8_t>((offset / kBlock) * 131 + (offset % kBlock) * 7 + 1);
}

// A 4 KiB-aligned buffer (O_DIRECT needs it), freed with free().
struct Buffer {
  explicit Buffer(size_t n) : len(n), data(static_cast<uint8_t*>(::aligned_alloc(kBlock, n))) {}
  ~Buffer() { ::free(data); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  iovec iov() const { return {data, len}; }
  size_t len;
  uint8_t* data;
};

bool HoldsPattern(const Buffer& buf, uint64_t offset) {
  for (size_t i = 0; i < buf.len; ++i) {
    if (buf.data[i] != PatternByte(offset + i)) return false;
  }
  return true;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class StorageFault : public ::testing::Test {
 protected:
  void SetUp() override {
    KITE_REQUIRE_DEVICE_MAPPER();
    std::string backing = dir_.File("backing.img");
    std::string contents(kDeviceBytes, '\0');
    for (uint64_t i = 0; i < kDeviceBytes; ++i) contents[i] = static_cast<char>(PatternByte(i));
    testing::WriteFile(backing, contents);
  }

  // The dm device over the backing file, with `errors` failing from the start.
  void MakeDevice(std::vector<ByteRange> errors) {
    auto dev = DmDevice::Create(dir_.File("backing.img"), std::move(errors));
    ASSERT_TRUE(dev) << dev.error().message();
    dev_ = std::move(*dev);
  }

  std::shared_ptr<DiskImage> Open(CacheMode cache = CacheMode::kWriteback) {
    OpenOptions options;
    options.cache = cache;
    auto image = OpenImage(dev_->path(), ImageFormat::kRaw, options);
    EXPECT_TRUE(image) << image.error().message();
    return image ? std::shared_ptr<DiskImage>(std::move(*image)) : nullptr;
  }

  // The error of a failed request: EIO, and the message names the disk.
  void ExpectEio(const Result<void>& r, const std::string& what) {
    ASSERT_FALSE(r) << what << " succeeded on an erroring device";
    EXPECT_EQ(r.error().sys_errno(), EIO) << what << ": " << r.error().message();
    EXPECT_TRUE(Contains(r.error().message(), dev_->path())) << r.error().message();
  }

  // A request refused because the image failed earlier (F4): no false OK.
  void ExpectStaysFailed(const Result<void>& r, const std::string& what) {
    ASSERT_FALSE(r) << what << " succeeded on a disk whose flush failed";
    EXPECT_TRUE(Contains(r.error().message(), "failed after a write-back error"))
        << r.error().message();
    EXPECT_TRUE(Contains(r.error().message(), dev_->path())) << r.error().message();
  }

  testing::TempDir dir_;  // holds the backing file: outlives dev_
  std::unique_ptr<DmDevice> dev_;
};

// Runs one request through an AsyncDisk and waits for its result.
Result<void> Do(AsyncDisk& disk, DiskOp op, uint64_t offset, const Buffer* buf = nullptr) {
  DiskRequest request;
  request.op = op;
  request.offset = offset;
  if (buf != nullptr) request.iov = {buf->iov()};
  std::promise<Result<void>> done;
  disk.Submit(std::move(request), [&done](Result<void> r) { done.set_value(std::move(r)); });
  return done.get_future().get();
}

TEST_F(StorageFault, F2_ReadEio_RawImage_ThatReadFails_OtherRangesAndWritesWork) {
  ASSERT_NO_FATAL_FAILURE(MakeDevice({kBadRange}));
  auto image = Open();
  ASSERT_NE(image, nullptr);
  Buffer buf(kBlock);
  ExpectEio(image->Read(kBadRange.offset + kBlock, buf.data, buf.len), "read of the bad range");
  for (uint64_t offset : {uint64_t{0}, kBadRange.offset - kBlock,
                          kBadRange.offset + kBadRange.length, kDeviceBytes - kBlock}) {
    ASSERT_TRUE(image->Read(offset, buf.data, buf.len)) << "read at " << offset;
    EXPECT_TRUE(HoldsPattern(buf, offset)) << "read at " << offset;
  }
  EXPECT_FALSE(image->failed()) << "a read error must not fail the disk";
  std::memset(buf.data, 0x5a, buf.len);
  EXPECT_TRUE(image->Write(2 << 20, buf.data, buf.len));
  EXPECT_TRUE(image->Flush());
}

struct AsyncCase {
  AsyncBackend backend;
  CacheMode cache;
};

std::string CaseName(const AsyncCase& c) {
  return std::string(c.backend == AsyncBackend::kIoUring ? "IoUring" : "Threads") +
         (c.cache == CacheMode::kNone ? "Direct" : "PageCache");
}
void PrintTo(const AsyncCase& c, std::ostream* os) {
  *os << CaseName(c);
}  // ctest names

class StorageFaultAsync : public StorageFault, public ::testing::WithParamInterface<AsyncCase> {
 protected:
  std::unique_ptr<AsyncDisk> MakeDisk(const std::shared_ptr<DiskImage>& image) {
    AsyncDiskOptions options;
    options.backend = GetParam().backend;
    auto disk = std::make_unique<AsyncDisk>(image, options);
    EXPECT_EQ(disk->uses_io_uring(), GetParam().backend == AsyncBackend::kIoUring)
        << "the io_uring case must really use io_uring";
    return disk;
  }
};

// Reads in flight together, one of them into the erroring range: only that one fails.
TEST_P(StorageFaultAsync, F2_ReadEio_ThatRequestOnly_OthersReturnData) {
  ASSERT_NO_FATAL_FAILURE(MakeDevice({kBadRange}));
  auto image = Open(GetParam().cache);
  ASSERT_NE(image, nullptr);
  auto disk = MakeDisk(image);
  const std::vector<uint64_t> offsets = {0, kBadRange.offset - kBlock, kBadRange.offset,
                                         kBadRange.offset + kBadRange.length,
                                         kDeviceBytes - kBlock};
  std::vector<std::unique_ptr<Buffer>> bufs;
  std::vector<std::promise<Result<void>>> done(offsets.size());
  for (size_t i = 0; i < offsets.size(); ++i) {
    bufs.push_back(std::make_unique<Buffer>(kBlock));
    DiskRequest request{DiskOp::kRead, offsets[i], {bufs[i]->iov()}};
    disk->Submit(std::move(request), [&done, i](Result<void> r) { done[i].set_value(r); });
  }
  for (size_t i = 0; i < offsets.size(); ++i) {
    Result<void> r = done[i].get_future().get();
    if (offsets[i] == kBadRange.offset) {
      ExpectEio(r, "read of the bad range");
    } else {
      ASSERT_TRUE(r) << "read at " << offsets[i] << ": " << r.error().message();
      EXPECT_TRUE(HoldsPattern(*bufs[i], offsets[i])) << "read at " << offsets[i];
    }
  }
  EXPECT_FALSE(image->failed()) << "a read error must not fail the disk";
  Buffer data(kBlock);
  std::memset(data.data, 0xa5, data.len);
  EXPECT_TRUE(Do(*disk, DiskOp::kWrite, 2 << 20, &data));
  EXPECT_TRUE(Do(*disk, DiskOp::kFlush, 0));
}

// F4 through RawImage: written into the page cache, then the device fails under the open image.
TEST_F(StorageFault, F4_FlushEio_RawImage_MarkedFailed_NoFalseOkAfterHeal) {
  ASSERT_NO_FATAL_FAILURE(MakeDevice({}));
  auto image = Open();
  ASSERT_NE(image, nullptr);
  Buffer data(kWriteBytes);
  std::memset(data.data, 0x11, data.len);
  ASSERT_TRUE(image->Write(0, data.data, data.len));  // into the page cache: succeeds
  auto failed = dev_->FailAll();
  ASSERT_TRUE(failed) << failed.error().message();
  ExpectEio(image->Flush(), "flush after the device failed");
  EXPECT_TRUE(image->failed());

  auto healed = dev_->Heal();
  ASSERT_TRUE(healed) << healed.error().message();
  ExpectStaysFailed(image->Flush(), "a retried flush");
  ExpectStaysFailed(image->Write(2 << 20, data.data, data.len), "a write after the failed flush");
  Buffer back(kBlock);
  ASSERT_TRUE(image->Read(3 << 20, back.data, back.len)) << "reads still work";
  EXPECT_TRUE(HoldsPattern(back, 3 << 20));
}

class FlushFault : public StorageFault, public ::testing::WithParamInterface<AsyncCase> {};

// F4 through AsyncDisk: the writes go through io_uring (or the pool), the flush through the pool.
TEST_P(FlushFault, F4_FlushEio_AsyncDisk_LaterWritesAndFlushesFail) {
  ASSERT_NO_FATAL_FAILURE(MakeDevice({}));
  auto image = Open();
  ASSERT_NE(image, nullptr);
  AsyncDiskOptions options;
  options.backend = GetParam().backend;
  AsyncDisk disk(image, options);
  ASSERT_EQ(disk.uses_io_uring(), GetParam().backend == AsyncBackend::kIoUring);
  Buffer data(kWriteBytes);
  std::memset(data.data, 0x22, data.len);
  ASSERT_TRUE(Do(disk, DiskOp::kWrite, 0, &data));
  auto failed = dev_->FailAll();
  ASSERT_TRUE(failed) << failed.error().message();
  ExpectEio(Do(disk, DiskOp::kFlush, 0), "flush after the device failed");
  EXPECT_TRUE(image->failed());

  auto healed = dev_->Heal();
  ASSERT_TRUE(healed) << healed.error().message();
  ExpectStaysFailed(Do(disk, DiskOp::kWrite, 2 << 20, &data), "a write after the failed flush");
  ExpectStaysFailed(Do(disk, DiskOp::kFlush, 0), "a retried flush");
  Buffer back(kBlock);
  ASSERT_TRUE(Do(disk, DiskOp::kRead, 3 << 20, &back)) << "reads still work";
  EXPECT_TRUE(HoldsPattern(back, 3 << 20));
}

INSTANTIATE_TEST_SUITE_P(Backends, FlushFault,
                         ::testing::Values(AsyncCase{AsyncBackend::kIoUring, CacheMode::kWriteback},
                                           AsyncCase{AsyncBackend::kThreads,
                                                     CacheMode::kWriteback}),
                         [](const auto& info) { return CaseName(info.param); });

INSTANTIATE_TEST_SUITE_P(Backends, StorageFaultAsync,
                         ::testing::Values(AsyncCase{AsyncBackend::kIoUring, CacheMode::kWriteback},
                                           AsyncCase{AsyncBackend::kThreads, CacheMode::kWriteback},
                                           AsyncCase{AsyncBackend::kIoUring, CacheMode::kNone},
                                           AsyncCase{AsyncBackend::kThreads, CacheMode::kNone}),
                         [](const auto& info) {
                           return std::string(info.param.backend == AsyncBackend::kIoUring
                                                  ? "IoUring"
                                                  : "Threads") +
                                  (info.param.cache == CacheMode::kNone ? "Direct" : "PageCache");
                         });

}  // namespace
}  // namespace kite::storage
