// virtio-blk well-formed paths (src/virtio/block.cc): features and config space, read/write on
// a real raw file and a qcow2 image, multi-segment I/O, flush per cache mode, discard,
// write-zeroes, GET_ID, many requests in flight completing out of order, interrupts, counters,
// host I/O errors, multi-queue. Driven by the fake driver through real queues; no KVM.
#include <gtest/gtest.h>

#include <cstring>

#include "block_test_util.h"
#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "testing/temp_dir.h"

namespace kite::virtio {
namespace {

using testing::BlkReq;
using testing::BlockHarness;
using testing::HarnessOptions;
using testing::MemDisk;

constexpr uint64_t kDiskSize = 1 << 20;

std::vector<uint8_t> Pattern(size_t len, uint8_t seed) {
  std::vector<uint8_t> v(len);
  for (size_t i = 0; i < len; ++i) v[i] = static_cast<uint8_t>(i * 7 + seed + i / 512);
  return v;
}

uint32_t ConfigU32(VirtioDevice& dev, size_t offset) {
  uint32_t v = 0;
  dev.ReadConfig(offset, {reinterpret_cast<uint8_t*>(&v), sizeof(v)});
  return v;
}

bool Has(uint64_t features, int bit) {
  return (features & FeatureBit(bit)) != 0;
}

TEST(VirtioBlockTest, Config_CapacityAndLimits) {
  BlockHarness h(std::make_shared<MemDisk>(kDiskSize + 100));  // partial last sector hidden
  uint64_t capacity = 0;
  h.device().ReadConfig(0, {reinterpret_cast<uint8_t*>(&capacity), 8});
  EXPECT_EQ(capacity, kDiskSize / 512);
  EXPECT_EQ(ConfigU32(h.device(), offsetof(blk::Config, seg_max)), 256u - 2);
  uint32_t size_max = ConfigU32(h.device(), offsetof(blk::Config, size_max));
  EXPECT_EQ(size_max % 4096, 0u);
  EXPECT_LE(uint64_t{size_max} * 254 + 17, kMaxChainBytes);
  EXPECT_EQ(ConfigU32(h.device(), offsetof(blk::Config, blk_size)), 512u);
  EXPECT_EQ(ConfigU32(h.device(), offsetof(blk::Config, max_discard_seg)), 1u);
  EXPECT_GT(ConfigU32(h.device(), offsetof(blk::Config, max_discard_sectors)), 0u);
  EXPECT_EQ(ConfigU32(h.device(), 200), 0u);  // past the end: zeros
}

TEST(VirtioBlockTest, Features_Writeback_FlushDiscardWriteZeroes) {
  BlockHarness h(std::make_shared<MemDisk>(kDiskSize));
  uint64_t f = h.device().device_features();
  EXPECT_TRUE(Has(f, kFeatureVersion1));
  EXPECT_TRUE(Has(f, blk::kFeatureFlush));
  EXPECT_TRUE(Has(f, blk::kFeatureDiscard));
  EXPECT_TRUE(Has(f, blk::kFeatureWriteZeroes));
  EXPECT_TRUE(Has(f, blk::kFeatureSegMax));
  EXPECT_FALSE(Has(f, blk::kFeatureRo));
  EXPECT_FALSE(Has(f, blk::kFeatureMq));
}

TEST(VirtioBlockTest, Features_Writethrough_NoFlush) {
  HarnessOptions o;
  o.block.cache = storage::CacheMode::kWritethrough;
  BlockHarness h(std::make_shared<MemDisk>(kDiskSize), o);
  EXPECT_FALSE(Has(h.device().device_features(), blk::kFeatureFlush));
}

TEST(VirtioBlockTest, Features_ReadOnly_RoWithoutDiscard) {
  BlockHarness h(std::make_shared<MemDisk>(kDiskSize, /*read_only=*/true));
  uint64_t f = h.device().device_features();
  EXPECT_TRUE(Has(f, blk::kFeatureRo));
  EXPECT_FALSE(Has(f, blk::kFeatureDiscard));
  EXPECT_FALSE(Has(f, blk::kFeatureWriteZeroes));
}

TEST(VirtioBlockTest, Create_BadOptions_Refused) {
  asio::io_context loop;
  auto disk = std::make_shared<MemDisk>(kDiskSize);
  BlockOptions o;
  o.serial = std::string(21, 'x');
  EXPECT_FALSE(CreateVirtioBlock(disk, o, &loop).has_value());
  o = {};
  o.num_queues = 0;
  EXPECT_FALSE(CreateVirtioBlock(disk, o, &loop).has_value());
  o = {};
  o.queue_size = 100;
  EXPECT_FALSE(CreateVirtioBlock(disk, o, &loop).has_value());
  EXPECT_FALSE(CreateVirtioBlock(disk, {}, nullptr).has_value());
}

TEST(VirtioBlockTest, Read_RawFile_ReturnsFileContents) {
  kite::testing::TempDir dir;
  std::string path = dir.File("disk.raw");
  std::vector<uint8_t> content = Pattern(kDiskSize, 3);
  kite::testing::WriteFile(path, std::string(content.begin(), content.end()));
  auto image = storage::OpenImage(path, storage::ImageFormat::kRaw, {});
  ASSERT_TRUE(image.has_value()) << image.error().message();
  BlockHarness h(std::shared_ptr<storage::DiskImage>(std::move(*image)));
  BlkReq r = h.Read(8, 4096);
  std::vector<UsedElement> used = h.Complete(1);
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, r.head);
  EXPECT_EQ(used[0].len, 4097u);
  EXPECT_EQ(h.Status(r), blk::kStatusOk);
  EXPECT_EQ(h.Data(r), std::vector<uint8_t>(content.begin() + 4096, content.begin() + 8192));
}

TEST(VirtioBlockTest, Write_RawFile_ReachesFile) {
  kite::testing::TempDir dir;
  std::string path = dir.File("disk.raw");
  ASSERT_TRUE(storage::CreateRaw(path, kDiskSize, storage::Preallocation::kOff));
  auto image = storage::OpenImage(path, storage::ImageFormat::kRaw, {});
  ASSERT_TRUE(image.has_value());
  std::vector<uint8_t> data = Pattern(8192, 9);
  {
    BlockHarness h(std::shared_ptr<storage::DiskImage>(std::move(*image)));
    BlkReq r = h.Write(16, data);
    ASSERT_EQ(h.Complete(1).size(), 1u);
    EXPECT_EQ(h.Status(r), blk::kStatusOk);
  }
  std::string file = kite::testing::ReadFile(path);
  EXPECT_EQ(std::vector<uint8_t>(file.begin() + 16 * 512, file.begin() + 16 * 512 + 8192), data);
}

TEST(VirtioBlockTest, WriteThenRead_Qcow2_RoundTrip) {
  kite::testing::TempDir dir;
  std::string path = dir.File("disk.qcow2");
  storage::Qcow2CreateOptions create;
  create.size = 4 * kDiskSize;
  ASSERT_TRUE(storage::CreateQcow2(path, create));
  auto image = storage::OpenImage(path, storage::ImageFormat::kQcow2, {});
  ASSERT_TRUE(image.has_value()) << image.error().message();
  std::shared_ptr<storage::DiskImage> shared(std::move(*image));
  BlockHarness h(shared);
  std::vector<uint8_t> data = Pattern(3 * 65536 + 4096, 1);  // crosses cluster boundaries
  BlkReq w = h.Write(100, data, 4);
  ASSERT_EQ(h.Complete(1).size(), 1u);
  EXPECT_EQ(h.Status(w), blk::kStatusOk);
  BlkReq r = h.Read(100, static_cast<uint32_t>(data.size()));
  BlkReq unwritten = h.Read(4000, 4096);
  ASSERT_EQ(h.Complete(2).size(), 2u);
  EXPECT_EQ(h.Status(r), blk::kStatusOk);
  EXPECT_EQ(h.Data(r), data);
  EXPECT_EQ(h.Data(unwritten), std::vector<uint8_t>(4096, 0));
  std::vector<uint8_t> direct(data.size());
  ASSERT_TRUE(shared->Read(100 * 512, direct.data(), direct.size()));
  EXPECT_EQ(direct, data);
}

TEST(VirtioBlockTest, MultiSegment_WriteAndReadAcrossRegions) {
  auto disk = std::make_shared<MemDisk>(kDiskSize);
  BlockHarness h(disk);
  std::vector<uint8_t> data = Pattern(6 * 512, 5);
  BlkReq w = h.Write(2, data, 3);
  ASSERT_EQ(h.Complete(1).size(), 1u);
  EXPECT_EQ(h.Status(w), blk::kStatusOk);
  EXPECT_EQ(disk->Bytes(1024, data.size()), data);
  // Read back into three segments, the last in the high region (after the hole).
  BlkReq r = h.Read(2, 6 * 512, 3, 0, /*high=*/true);
  ASSERT_EQ(h.Complete(1).size(), 1u);
  EXPECT_EQ(h.Status(r), blk::kStatusOk);
  std::vector<uint8_t> first(4 * 512), last(2 * 512);
  h.driver().ReadBytes(r.data, first.data(), first.size());
  h.driver().ReadBytes(h.driver().HighAddr(0), last.data(), last.size());
  EXPECT_EQ(first, std::vector<uint8_t>(data.begin(), data.begin() + 4 * 512));
  EXPECT_EQ(last, std::vector<uint8_t>(data.begin() + 4 * 512, data.end()));
}

TEST(VirtioBlockTest, Flush_Writeback_ReachesImage) {
  auto disk = std::make_shared<MemDisk>(kDiskSize);
  BlockHarness h(disk);
  BlkReq f = h.Flush();
  ASSERT_EQ(h.Complete(1).size(), 1u);
  EXPECT_EQ(h.Status(f), blk::kStatusOk);
  EXPECT_EQ(disk->flushes.load(), 1);
}

TEST(VirtioBlockTest, Flush_Unsafe_AnsweredWithoutImage) {
  auto disk = std::make_shared<MemDisk>(kDiskSize);
  HarnessOptions o;
  o.block.cache = storage::CacheMode::kUnsafe;
  BlockHarness h(disk, o);
  EXPECT_TRUE(Has(h.device().device_features(), blk::kFeatureFlush));
  BlkReq f = h.Flush();
  ASSERT_EQ(h.Complete(1).size(), 1u);
  EXPECT_EQ(h.Status(f), blk::kStatusOk);
  EXPECT_EQ(disk->flushes.load(), 0);
}

TEST(VirtioBlockTest, WriteZeroes_WithUnmap_PassesUnmap) {
  auto disk = std::make_shared<MemDisk>(kDiskSize);
  disk->Fill(4096, std::vector<uint8_t>(8192, 0x55));
  BlockHarness h(disk);
  BlkReq r = h.DiscardWz(blk::kTypeWriteZeroes, {{8, 16, blk::kWriteZeroesFlagUnmap}});
  ASSERT_EQ(h.Complete(1).size(), 1u);
  EXPECT_EQ(h.Status(r), blk::kStatusOk);
  EXPECT_EQ(disk->write_zeroes.load(), 1);
  EXPECT_TRUE(disk->last_may_unmap.load());
  EXPECT_EQ(disk->last_offset.load(), 4096u);
  EXPECT_EQ(disk->last_length.load(), 8192u);
  EXPECT_EQ(disk->Bytes(4096, 8192), std::vector<uint8_t>(8192, 0));
}

TEST(VirtioBlockTest, WriteZeroes_WithoutUnmap_NoUnmap) {
  auto disk = std::make_shared<MemDisk>(kDiskSize);
  disk->Fill(0, std::vector<uint8_t>(1024, 0x55));
  BlockHarness h(disk);
  BlkReq r = h.DiscardWz(blk::kTypeWriteZeroes, {{0, 1, 0}});
  ASSERT_EQ(h.Complete(1).size(), 1u);
  EXPECT_EQ(h.Status(r), blk::kStatusOk);
  EXPECT_FALSE(disk->last_may_unmap.load());
  EXPECT_EQ(disk->Bytes(0, 512), std::vector<uint8_t>(512, 0));
  EXPECT_EQ(disk->Bytes(512, 512), std::vector<uint8_t>(512, 0x55));
}

TEST(VirtioBlockTest, Discard_ReachesImage) {
  auto disk = std::make_shared<MemDisk>(kDiskSize);
  BlockHarness h(disk);
  BlkReq r = h.DiscardWz(blk::kTypeDiscard, {{64, 128, 0}});
  ASSERT_EQ(h.Complete(1).size(), 1u);
  EXPECT_EQ(h.Status(r), blk::kStatusOk);
  EXPECT_EQ(disk->discards.load(), 1);
  EXPECT_EQ(disk->last_offset.load(), 64u * 512);
  EXPECT_EQ(disk->last_length.load(), 128u * 512);
}

TEST(VirtioBlockTest, GetId_ReturnsSerialPadded) {
  HarnessOptions o;
  o.block.serial = "kite-disk-1";
  BlockHarness h(std::make_shared<MemDisk>(kDiskSize), o);
  BlkReq r = h.GetId(20);
  std::vector<UsedElement> used = h.Complete(1);
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].len, 21u);
  EXPECT_EQ(h.Status(r), blk::kStatusOk);
  std::vector<uint8_t> want(20, 0);
  std::memcpy(want.data(), "kite-disk-1", 11);
  EXPECT_EQ(h.Data(r), want);
}

TEST(VirtioBlockTest, ManyInFlight_CompleteOutOfOrder) {
  auto disk = std::make_shared<MemDisk>(kDiskSize);
  disk->Fill(0, Pattern(kDiskSize, 7));
  disk->HoldAt(0);  // the first request waits until all others are done
  BlockHarness h(disk);
  std::vector<BlkReq> reqs;
  for (int i = 0; i < 12; ++i) reqs.push_back(h.Read(static_cast<uint64_t>(i) * 8, 4096));
  h.Kick();
  ASSERT_TRUE(disk->WaitHeld(1));
  std::vector<UsedElement> used;
  auto drain = [&] {
    while (auto u = h.driver().PopUsed()) used.push_back(*u);
    return used.size() >= 11;
  };
  ASSERT_TRUE(h.RunUntil(drain));
  for (const UsedElement& u : used) EXPECT_NE(u.id, reqs[0].head);
  disk->Release();
  ASSERT_TRUE(h.RunUntil([&] { return drain() && used.size() == 12; }));
  EXPECT_EQ(used.back().id, reqs[0].head);
  std::vector<uint8_t> all = disk->Bytes(0, kDiskSize);
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(h.Status(reqs[i]), blk::kStatusOk);
    EXPECT_EQ(h.Data(reqs[i]),
              std::vector<uint8_t>(all.begin() + i * 4096, all.begin() + (i + 1) * 4096));
  }
}

TEST(VirtioBlockTest, Interrupt_SignalledAfterCompletions) {
  BlockHarness h(std::make_shared<MemDisk>(kDiskSize));
  for (int i = 0; i < 8; ++i) h.Read(static_cast<uint64_t>(i), 512);
  ASSERT_EQ(h.Complete(8).size(), 8u);
  EXPECT_GE(h.signals(), 1);
  EXPECT_LE(h.signals(), 8);  // batched: never more than one per completion
}

TEST(VirtioBlockTest, Interrupt_ImmediateAnswerSignalledInSameRun) {
  BlockHarness h(std::make_shared<MemDisk>(kDiskSize));
  h.Raw(99, 0, {}, 0);  // UNSUPP, answered without the disk
  h.Kick();
  EXPECT_EQ(h.signals(), 1);
}

TEST(VirtioBlockTest, Counters_CountRequestsBytesErrorsDrops) {
  BlockHarness h(std::make_shared<MemDisk>(kDiskSize));
  h.Write(0, Pattern(1024, 1));
  h.Read(0, 2048);
  h.Raw(99, 0, {}, 0);  // error (UNSUPP)
  ASSERT_EQ(h.Complete(3).size(), 3u);
  uint64_t hdr = h.driver().Alloc(16);
  h.driver().AddChain({{hdr, 16, false}});  // header only: dropped
  ASSERT_EQ(h.Complete(1).size(), 1u);
  DeviceCounters c = h.device().counters();
  EXPECT_EQ(c.requests, 4u);
  EXPECT_EQ(c.bytes_written, 1024u);
  EXPECT_EQ(c.bytes_read, 2048u);
  EXPECT_EQ(c.errors, 1u);
  EXPECT_EQ(c.drops, 1u);
}

TEST(VirtioBlockTest, HostIoError_IoErrForThatRequestOnly) {
  auto disk = std::make_shared<MemDisk>(kDiskSize);
  disk->FailAt(8 * 512);
  BlockHarness h(disk);
  BlkReq bad = h.Read(8, 512);
  BlkReq good = h.Read(16, 512);
  BlkReq bad_write = h.Write(8, Pattern(512, 2));
  ASSERT_EQ(h.Complete(3).size(), 3u);
  EXPECT_EQ(h.Status(bad), blk::kStatusIoErr);
  EXPECT_EQ(h.Status(good), blk::kStatusOk);
  EXPECT_EQ(h.Status(bad_write), blk::kStatusIoErr);
  BlkReq after = h.Read(8 * 2, 512);  // the device keeps working
  ASSERT_EQ(h.Complete(1).size(), 1u);
  EXPECT_EQ(h.Status(after), blk::kStatusOk);
  EXPECT_TRUE(h.broken().empty());
}

TEST(VirtioBlockTest, MultiQueue_EachQueueServed) {
  auto disk = std::make_shared<MemDisk>(kDiskSize);
  HarnessOptions o;
  o.queues = 2;
  BlockHarness h(disk, o);
  EXPECT_TRUE(Has(h.device().device_features(), blk::kFeatureMq));
  uint16_t nq = 0;
  h.device().ReadConfig(offsetof(blk::Config, num_queues), {reinterpret_cast<uint8_t*>(&nq), 2});
  EXPECT_EQ(nq, 2);
  BlkReq w = h.Write(0, Pattern(512, 4), 1, /*q=*/1);
  ASSERT_EQ(h.Complete(1, 1).size(), 1u);
  EXPECT_EQ(h.Status(w, 1), blk::kStatusOk);
  BlkReq r = h.Read(0, 512, 1, /*q=*/0);
  ASSERT_EQ(h.Complete(1, 0).size(), 1u);
  EXPECT_EQ(h.Data(r), Pattern(512, 4));
  EXPECT_GE(h.signals(1), 1);
}

}  // namespace
}  // namespace kite::virtio
