// virtio-blk: the catalogue of malformed requests (BAD_INPUTS.md G15-G22, G33, G34), through the
// device with real queues and the fake driver. Each test names its case.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "block_test_util.h"
#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "testing/temp_dir.h"

namespace kite::virtio {
namespace {

using testing::BlkReq;
using testing::BlockHarness;
using testing::MemDisk;

constexpr uint64_t kDiskSize = 1 << 20;
constexpr uint64_t kSectors = kDiskSize / 512;

std::vector<uint8_t> Fill(size_t len, uint8_t v) {
  return std::vector<uint8_t>(len, v);
}

class BlockBadInputTest : public ::testing::Test {
 protected:
  std::shared_ptr<MemDisk> disk_ = std::make_shared<MemDisk>(kDiskSize);
  BlockHarness h_{disk_};

  // Submits one chain and returns its used length (after checking it came back).
  uint32_t RunOne(uint16_t head) {
    std::vector<UsedElement> used = h_.Complete(1);
    EXPECT_EQ(used.size(), 1u);
    if (used.empty()) return ~0u;
    EXPECT_EQ(used[0].id, head);
    return used[0].len;
  }
};

TEST_F(BlockBadInputTest, G15_HeaderRewrittenAfterPop_CopiedHeaderUsed) {
  disk_->HoldAt(0);
  BlkReq w = h_.Write(0, Fill(512, 0x11));
  h_.Kick();
  ASSERT_TRUE(disk_->WaitHeld(1));
  // A racing vCPU turns the request into a read of sector 7 while it is in flight.
  h_.driver().WriteObj(w.header, blk::RequestHeader{blk::kTypeIn, 0, 7});
  disk_->Release();
  std::vector<UsedElement> used;
  ASSERT_TRUE(h_.RunUntil([&] {
    while (auto u = h_.driver().PopUsed()) used.push_back(*u);
    return !used.empty();
  }));
  EXPECT_EQ(h_.Status(w), blk::kStatusOk);
  EXPECT_EQ(disk_->Bytes(0, 512), Fill(512, 0x11));
  EXPECT_EQ(disk_->Bytes(7 * 512, 512), Fill(512, 0));
}

TEST_F(BlockBadInputTest, G16_SectorPlusLenBeyondCapacity_IoErr) {
  BlkReq r = h_.Read(kSectors - 1, 1024);
  BlkReq w = h_.Write(kSectors - 1, Fill(1024, 0x22));
  ASSERT_EQ(h_.Complete(2).size(), 2u);
  EXPECT_EQ(h_.Status(r), blk::kStatusIoErr);
  EXPECT_EQ(h_.Data(r), Fill(1024, 0xee));  // no data written to the guest
  EXPECT_EQ(h_.Status(w), blk::kStatusIoErr);
  EXPECT_EQ(disk_->reads.load() + disk_->writes.load(), 0);
}

TEST_F(BlockBadInputTest, G16_SectorMaxU64_IoErr) {
  BlkReq r = h_.Read(~uint64_t{0}, 512);
  EXPECT_EQ(RunOne(r.head), 1u);
  EXPECT_EQ(h_.Status(r), blk::kStatusIoErr);
  EXPECT_EQ(disk_->reads.load(), 0);
}

TEST_F(BlockBadInputTest, G16_LastSectorExactly_Ok) {
  BlkReq r = h_.Read(kSectors - 1, 512);
  RunOne(r.head);
  EXPECT_EQ(h_.Status(r), blk::kStatusOk);
}

TEST_F(BlockBadInputTest, G17_ReadLengthNotMultipleOf512_IoErr) {
  BlkReq r = h_.Read(0, 1000);
  RunOne(r.head);
  EXPECT_EQ(h_.Status(r), blk::kStatusIoErr);
  EXPECT_EQ(h_.Data(r), Fill(1000, 0xee));
}

TEST_F(BlockBadInputTest, G17_WriteLengthNotMultipleOf512_IoErrNothingWritten) {
  BlkReq w = h_.Write(0, Fill(513, 0x33));
  RunOne(w.head);
  EXPECT_EQ(h_.Status(w), blk::kStatusIoErr);
  EXPECT_EQ(disk_->writes.load(), 0);
}

TEST_F(BlockBadInputTest, G18_HeaderInWriteOnlyDescriptor_RejectedLen0) {
  uint64_t hdr = h_.driver().Alloc(16);
  uint64_t status = h_.driver().Alloc(1);
  h_.driver().WriteObj(hdr, blk::RequestHeader{blk::kTypeIn, 0, 0});
  h_.driver().WriteObj<uint8_t>(status, 0xff);
  uint16_t head = h_.driver().AddChain({{hdr, 16, true}, {status, 1, true}});
  EXPECT_EQ(RunOne(head), 0u);
  EXPECT_EQ(h_.driver().ReadObj<uint8_t>(status), 0xff);
  EXPECT_EQ(h_.device().counters().drops, 1u);
}

TEST_F(BlockBadInputTest, G18_StatusInReadOnlyDescriptor_RejectedNothingWritten) {
  uint64_t hdr = h_.driver().Alloc(16);
  uint64_t data = h_.driver().Alloc(512);
  uint64_t status = h_.driver().Alloc(1);
  h_.driver().WriteObj(hdr, blk::RequestHeader{blk::kTypeOut, 0, 0});
  h_.driver().WriteObj<uint8_t>(status, 0xff);
  uint16_t head = h_.driver().AddChain({{hdr, 16, false}, {data, 512, false}, {status, 1, false}});
  EXPECT_EQ(RunOne(head), 0u);
  EXPECT_EQ(h_.driver().ReadObj<uint8_t>(status), 0xff);  // read-only buffer untouched
  EXPECT_EQ(disk_->writes.load(), 0);
}

TEST_F(BlockBadInputTest, G18_StatusLength0_Rejected) {
  uint64_t hdr = h_.driver().Alloc(16);
  uint64_t status = h_.driver().Alloc(16);
  h_.driver().WriteObj(hdr, blk::RequestHeader{blk::kTypeFlush, 0, 0});
  h_.driver().WriteObj<uint8_t>(status, 0xff);
  uint16_t head = h_.driver().AddChain({{hdr, 16, false}, {status, 0, true}});
  EXPECT_EQ(RunOne(head), 0u);
  EXPECT_EQ(h_.driver().ReadObj<uint8_t>(status), 0xff);
  EXPECT_EQ(disk_->flushes.load(), 0);
}

TEST_F(BlockBadInputTest, G18_HeaderOnlyChain_Rejected) {
  uint64_t hdr = h_.driver().Alloc(16);
  h_.driver().WriteObj(hdr, blk::RequestHeader{blk::kTypeOut, 0, 0});
  uint16_t head = h_.driver().AddChain({{hdr, 16, false}});
  EXPECT_EQ(RunOne(head), 0u);
  EXPECT_EQ(disk_->writes.load(), 0);
}

TEST_F(BlockBadInputTest, G18_ShortHeader_Rejected) {
  uint64_t hdr = h_.driver().Alloc(16);
  uint64_t status = h_.driver().Alloc(1);
  h_.driver().WriteObj<uint8_t>(status, 0xff);
  uint16_t head = h_.driver().AddChain({{hdr, 8, false}, {status, 1, true}});
  EXPECT_EQ(RunOne(head), 0u);
  EXPECT_EQ(h_.driver().ReadObj<uint8_t>(status), 0xff);
}

class BlockReadOnlyTest : public ::testing::Test {
 protected:
  std::shared_ptr<MemDisk> disk_ = std::make_shared<MemDisk>(kDiskSize, /*read_only=*/true);
  BlockHarness h_{disk_};
};

TEST_F(BlockReadOnlyTest, G19_WriteToReadOnlyDisk_IoErrNoByteWritten) {
  BlkReq w = h_.Write(0, Fill(4096, 0x44));
  ASSERT_EQ(h_.Complete(1).size(), 1u);
  EXPECT_EQ(h_.Status(w), blk::kStatusIoErr);
  EXPECT_EQ(disk_->writes.load(), 0);
  EXPECT_EQ(disk_->Bytes(0, 4096), Fill(4096, 0));
}

TEST_F(BlockReadOnlyTest, G19_DiscardAndWriteZeroesOnReadOnlyDisk_NoImageCall) {
  // DISCARD/WRITE_ZEROES are not offered on a read-only disk: a driver that sends them anyway
  // gets UNSUPP (not negotiated) and the image is never asked.
  BlkReq d = h_.DiscardWz(blk::kTypeDiscard, {{0, 8, 0}});
  BlkReq z = h_.DiscardWz(blk::kTypeWriteZeroes, {{0, 8, 0}});
  ASSERT_EQ(h_.Complete(2).size(), 2u);
  EXPECT_NE(h_.Status(d), blk::kStatusOk);
  EXPECT_NE(h_.Status(z), blk::kStatusOk);
  EXPECT_EQ(disk_->discards.load() + disk_->write_zeroes.load(), 0);
}

TEST(BlockReadOnlyFileTest, G19_AllWritesToReadOnlyRawFile_IoErrFileUnchanged) {
  kite::testing::TempDir dir;
  std::string path = dir.File("ro.raw");
  std::string content(kDiskSize, 'k');
  kite::testing::WriteFile(path, content);
  storage::OpenOptions ro;
  ro.read_only = true;
  auto image = storage::OpenImage(path, storage::ImageFormat::kRaw, ro);
  ASSERT_TRUE(image.has_value());
  // Even with DISCARD/WRITE_ZEROES accepted by the driver (as if negotiated), IOERR.
  testing::HarnessOptions o;
  o.features = ~uint64_t{0} & ~FeatureBit(kFeatureRingPacked) & ~FeatureBit(kFeatureAccessPlatform);
  BlockHarness h(std::shared_ptr<storage::DiskImage>(std::move(*image)), o);
  BlkReq w = h.Write(0, Fill(512, 0));
  BlkReq d = h.DiscardWz(blk::kTypeDiscard, {{0, 8, 0}});
  BlkReq z = h.DiscardWz(blk::kTypeWriteZeroes, {{0, 8, blk::kWriteZeroesFlagUnmap}});
  ASSERT_EQ(h.Complete(3).size(), 3u);
  EXPECT_EQ(h.Status(w), blk::kStatusIoErr);
  EXPECT_EQ(h.Status(d), blk::kStatusIoErr);
  EXPECT_EQ(h.Status(z), blk::kStatusIoErr);
  EXPECT_EQ(kite::testing::ReadFile(path), content);
}

TEST_F(BlockBadInputTest, G20_UnknownType_Unsupp) {
  BlkReq r = h_.Raw(0x7777, 0, {}, 512);
  BlkReq lifetime = h_.Raw(blk::kTypeGetLifetime, 0, {}, 16);
  ASSERT_EQ(h_.Complete(2).size(), 2u);
  EXPECT_EQ(h_.Status(r), blk::kStatusUnsupp);
  EXPECT_EQ(h_.Status(lifetime), blk::kStatusUnsupp);
  EXPECT_EQ(h_.Data(r), Fill(512, 0xee));
}

TEST_F(BlockBadInputTest, G20_DiscardWithUnmapFlag_Unsupp) {
  BlkReq d = h_.DiscardWz(blk::kTypeDiscard, {{0, 8, blk::kWriteZeroesFlagUnmap}});
  RunOne(d.head);
  EXPECT_EQ(h_.Status(d), blk::kStatusUnsupp);
  EXPECT_EQ(disk_->discards.load(), 0);
}

TEST_F(BlockBadInputTest, G20_UnknownSegmentFlags_Unsupp) {
  BlkReq z = h_.DiscardWz(blk::kTypeWriteZeroes, {{0, 8, 0x80}});
  RunOne(z.head);
  EXPECT_EQ(h_.Status(z), blk::kStatusUnsupp);
  EXPECT_EQ(disk_->write_zeroes.load(), 0);
}

TEST_F(BlockBadInputTest, G20_TooManySegments_Unsupp) {
  BlkReq d = h_.DiscardWz(blk::kTypeDiscard, {{0, 8, 0}, {16, 8, 0}});
  RunOne(d.head);
  EXPECT_EQ(h_.Status(d), blk::kStatusUnsupp);
  EXPECT_EQ(disk_->discards.load(), 0);
}

TEST_F(BlockBadInputTest, DiscardBeyondCapacity_IoErr) {
  BlkReq d = h_.DiscardWz(blk::kTypeDiscard, {{kSectors - 4, 8, 0}});
  BlkReq z = h_.DiscardWz(blk::kTypeWriteZeroes, {{~uint64_t{0}, 1, 0}});
  ASSERT_EQ(h_.Complete(2).size(), 2u);
  EXPECT_EQ(h_.Status(d), blk::kStatusIoErr);
  EXPECT_EQ(h_.Status(z), blk::kStatusIoErr);
  EXPECT_EQ(disk_->discards.load() + disk_->write_zeroes.load(), 0);
}

TEST_F(BlockBadInputTest, G21_GetIdBufferTooSmall_IoErrNoOverflow) {
  // 19-byte buffer followed by guard bytes (the status byte is allocated right after).
  BlkReq r = h_.GetId(19);
  RunOne(r.head);
  EXPECT_EQ(h_.Status(r), blk::kStatusIoErr);
  EXPECT_EQ(h_.Data(r), Fill(19, 0xee));
}

TEST(BlockQcow2HeaderTest, G22_Qcow2HeaderInRawSector0_StaysPlainData) {
  kite::testing::TempDir dir;
  std::string qcow2 = dir.File("real.qcow2");
  storage::Qcow2CreateOptions create;
  create.size = 64 << 20;
  ASSERT_TRUE(storage::CreateQcow2(qcow2, create));
  std::string q = kite::testing::ReadFile(qcow2).substr(0, 512);
  std::vector<uint8_t> header(q.begin(), q.end());
  ASSERT_EQ(std::memcmp(header.data(), "QFI\xfb", 4), 0);

  std::string path = dir.File("disk.raw");
  ASSERT_TRUE(storage::CreateRaw(path, kDiskSize, storage::Preallocation::kOff));
  {
    auto image = storage::OpenImage(path, storage::ImageFormat::kRaw, {});
    ASSERT_TRUE(image.has_value());
    BlockHarness h(std::shared_ptr<storage::DiskImage>(std::move(*image)));
    BlkReq w = h.Write(0, header);
    ASSERT_EQ(h.Complete(1).size(), 1u);
    ASSERT_EQ(h.Status(w), blk::kStatusOk);
  }
  auto reopened = storage::OpenImage(path, storage::ImageFormat::kRaw, {});
  ASSERT_TRUE(reopened.has_value());
  EXPECT_EQ((*reopened)->format(), storage::ImageFormat::kRaw);
  EXPECT_EQ((*reopened)->size(), kDiskSize);  // not the qcow2 header's 64 MiB
  BlockHarness h(std::shared_ptr<storage::DiskImage>(std::move(*reopened)));
  BlkReq r = h.Read(0, 512);
  ASSERT_EQ(h.Complete(1).size(), 1u);
  EXPECT_EQ(h.Data(r), header);
}

TEST(BlockResetTest, G33_ResetWithRequestsInFlight_WaitsAndWritesNothingAfter) {
  auto disk = std::make_shared<MemDisk>(kDiskSize);
  disk->Fill(0, Fill(4096, 0x66));
  disk->HoldAt(0);
  BlockHarness h(disk);
  BlkReq held = h.Read(0, 4096);
  BlkReq other = h.Read(8, 512);
  h.Kick();
  ASSERT_TRUE(disk->WaitHeld(1));

  std::atomic<bool> reset_done{false};
  std::thread resetter([&] {
    h.device().Reset();
    reset_done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(reset_done.load());  // Reset waits for the request in flight
  disk->Release();
  resetter.join();
  EXPECT_TRUE(reset_done.load());

  uint16_t used_before = h.driver().used_idx();
  uint8_t status_before = h.Status(held);
  h.RunUntil([] { return false; }, 100);  // run every posted completion
  EXPECT_EQ(h.driver().used_idx(), used_before);
  EXPECT_EQ(h.Status(held), status_before);
  EXPECT_EQ(status_before, 0xff);  // completion dropped: no status written
  EXPECT_EQ(h.Status(other), 0xff);
}

TEST(BlockResetTest, ProcessQueueAfterReset_DoesNothing) {
  auto disk = std::make_shared<MemDisk>(kDiskSize);
  BlockHarness h(disk);
  h.device().Reset();
  BlkReq r = h.Read(0, 512);
  h.Kick();
  h.RunUntil([] { return false; }, 50);
  EXPECT_EQ(h.driver().used_idx(), 0);
  EXPECT_EQ(h.Status(r), 0xff);
  EXPECT_EQ(disk->reads.load(), 0);
}

// G34: a guest that keeps the queue full cannot hold the event loop: one run pops at most one
// queue's worth of chains, then posts the rest of the work back to the loop.
TEST(BlockStormTest, G34_OneRunPopsAtMostOneQueueOfChains_RestContinuesOnTheLoop) {
  BlockHarness h(std::make_shared<MemDisk>(kDiskSize));
  const uint16_t size = h.queue().size();
  auto add_unsupp = [&h] {  // one descriptor each (indirect): a full queue of requests
    uint64_t header = h.driver().Alloc(16);
    h.driver().WriteObj(header, blk::RequestHeader{99, 0, 0});  // UNSUPP: answered in the run
    h.driver().AddIndirectChain({{header, 16, false}, {h.driver().Alloc(1), 1, true}});
  };
  for (uint16_t i = 0; i < size; ++i) add_unsupp();
  h.Kick();
  ASSERT_EQ(h.driver().used_idx(), size);  // the whole queue, in this run
  while (h.driver().PopUsed()) {
  }
  // The guest refills the queue without kicking: only the run the device posted (its budget
  // ran out) picks the chains up, from the loop.
  for (uint16_t i = 0; i < size; ++i) add_unsupp();
  h.driver().Publish();
  EXPECT_EQ(h.driver().used_idx(), size);
  h.PollOnce();
  EXPECT_EQ(h.driver().used_idx(), static_cast<uint16_t>(2 * size));
  EXPECT_TRUE(h.broken().empty());
}

// G34: a storm of kicks with nothing available costs no work: nothing counted, signalled or
// posted to the loop.
TEST(BlockStormTest, G34_KickStormOnEmptyQueue_NoWorkNoInterrupt) {
  auto disk = std::make_shared<MemDisk>(kDiskSize);
  BlockHarness h(disk);
  for (int i = 0; i < 100000; ++i) h.device().ProcessQueue(0);
  h.loop().restart();
  EXPECT_EQ(h.loop().poll(), 0u);
  EXPECT_EQ(h.device().counters().requests, 0u);
  EXPECT_EQ(h.signals(), 0);
  EXPECT_EQ(disk->reads.load(), 0);
}

// G34: EVENT_IDX with a bogus used_event (far from the used index): every request still
// completes and the device stays healthy; the guest only loses its own interrupts.
TEST(BlockStormTest, G34_BogusUsedEvent_RequestsCompleteDeviceHealthy) {
  BlockHarness h(std::make_shared<MemDisk>(kDiskSize));
  h.driver().SetUsedEvent(0x8000);
  h.Read(0, 512);
  ASSERT_EQ(h.Complete(1).size(), 1u);
  EXPECT_TRUE(h.queue().NeedsInterrupt());  // the first decision always interrupts
  for (int i = 0; i < 8; ++i) h.Read(static_cast<uint64_t>(i) * 8, 4096);
  ASSERT_EQ(h.Complete(8).size(), 8u);
  EXPECT_FALSE(h.queue().NeedsInterrupt());  // used_event 0x8000 is not crossed by 9 entries
  EXPECT_TRUE(h.broken().empty());
  BlkReq r = h.Read(0, 512);
  ASSERT_EQ(h.Complete(1).size(), 1u);
  EXPECT_EQ(h.Status(r), blk::kStatusOk);
}

}  // namespace
}  // namespace kite::virtio
