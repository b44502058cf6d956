// ParseBlockRequest (src/virtio/block_request.cc) called directly on host iovecs: the limits
// that need chains the fake driver cannot build (more data segments than seg_max), and the
// exact request each well-formed chain turns into.
#include "virtio/block_request.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace kite::virtio {
namespace {

BlockLimits Limits() {
  BlockLimits l;
  l.capacity_sectors = 2048;
  l.seg_max = 4;
  l.max_discard_sectors = 64;
  l.max_write_zeroes_sectors = 64;
  l.max_discard_seg = 1;
  l.discard = true;
  l.write_zeroes = true;
  return l;
}

struct Chain {
  blk::RequestHeader header{};
  std::vector<std::vector<uint8_t>> out_bufs;
  std::vector<std::vector<uint8_t>> in_bufs;
  uint8_t status = 0xff;
  std::vector<iovec> readable, writable;

  void Build() {
    readable = {{&header, sizeof(header)}};
    for (auto& b : out_bufs) readable.push_back({b.data(), b.size()});
    writable.clear();
    for (auto& b : in_bufs) writable.push_back({b.data(), b.size()});
    writable.push_back({&status, 1});
  }
  BlockRequest Parse(const BlockLimits& limits) {
    Build();
    BlockRequest out;
    ParseBlockRequest(readable, writable, limits, &out);
    return out;
  }
};

TEST(BlockRequestTest, Read_BecomesDiskReadIntoGuestBuffers) {
  Chain c;
  c.header = {blk::kTypeIn, 0, 10};
  c.in_bufs = {std::vector<uint8_t>(512), std::vector<uint8_t>(1024)};
  BlockRequest r = c.Parse(Limits());
  ASSERT_EQ(r.action, BlockAction::kDisk);
  EXPECT_EQ(r.disk.op, storage::DiskOp::kRead);
  EXPECT_EQ(r.disk.offset, 10u * 512);
  ASSERT_EQ(r.disk.iov.size(), 2u);
  EXPECT_EQ(r.disk.iov[0].iov_base, c.in_bufs[0].data());  // zero copy
  EXPECT_EQ(r.disk.iov[1].iov_len, 1024u);
  EXPECT_EQ(r.status_byte, &c.status);
  EXPECT_EQ(r.used_len_ok, 1537u);
}

TEST(BlockRequestTest, StatusSharesDescriptorWithData_LastByteIsStatus) {
  Chain c;
  c.header = {blk::kTypeIn, 0, 0};
  c.in_bufs = {std::vector<uint8_t>(513)};
  c.Build();
  c.writable.pop_back();  // no separate status descriptor
  BlockRequest r;
  ParseBlockRequest(c.readable, c.writable, Limits(), &r);
  ASSERT_EQ(r.action, BlockAction::kDisk);
  EXPECT_EQ(r.status_byte, c.in_bufs[0].data() + 512);
  EXPECT_EQ(r.disk.iov[0].iov_len, 512u);
}

TEST(BlockRequestTest, TooManyDataSegments_IoErr) {
  Chain c;
  c.header = {blk::kTypeOut, 0, 0};
  c.out_bufs.assign(5, std::vector<uint8_t>(512));  // seg_max is 4
  BlockRequest r = c.Parse(Limits());
  EXPECT_EQ(r.action, BlockAction::kComplete);
  EXPECT_EQ(r.status, blk::kStatusIoErr);
  EXPECT_TRUE(r.disk.iov.empty());
}

TEST(BlockRequestTest, SegMaxDataSegments_Accepted) {
  Chain c;
  c.header = {blk::kTypeOut, 0, 0};
  c.out_bufs.assign(4, std::vector<uint8_t>(512));
  BlockRequest r = c.Parse(Limits());
  EXPECT_EQ(r.action, BlockAction::kDisk);
  EXPECT_EQ(r.disk.op, storage::DiskOp::kWrite);
}

TEST(BlockRequestTest, DiscardMoreThanMaxSectors_IoErr) {
  Chain c;
  c.header = {blk::kTypeDiscard, 0, 0};
  blk::DiscardWriteZeroes seg{0, 65, 0};
  c.out_bufs = {std::vector<uint8_t>(sizeof(seg))};
  std::memcpy(c.out_bufs[0].data(), &seg, sizeof(seg));
  BlockRequest r = c.Parse(Limits());
  EXPECT_EQ(r.action, BlockAction::kComplete);
  EXPECT_EQ(r.status, blk::kStatusIoErr);
}

TEST(BlockRequestTest, DiscardSegmentNotMultipleOf16_IoErr) {
  Chain c;
  c.header = {blk::kTypeDiscard, 0, 0};
  c.out_bufs = {std::vector<uint8_t>(15)};
  BlockRequest r = c.Parse(Limits());
  EXPECT_EQ(r.status, blk::kStatusIoErr);
}

TEST(BlockRequestTest, DiscardNotNegotiated_Unsupp) {
  Chain c;
  c.header = {blk::kTypeDiscard, 0, 0};
  blk::DiscardWriteZeroes seg{0, 8, 0};
  c.out_bufs = {std::vector<uint8_t>(sizeof(seg))};
  std::memcpy(c.out_bufs[0].data(), &seg, sizeof(seg));
  BlockLimits l = Limits();
  l.discard = false;
  BlockRequest r = c.Parse(l);
  EXPECT_EQ(r.status, blk::kStatusUnsupp);
}

TEST(BlockRequestTest, WriteZeroesSegment_CopiedOnce) {
  Chain c;
  c.header = {blk::kTypeWriteZeroes, 0, 0};
  blk::DiscardWriteZeroes seg{100, 8, blk::kWriteZeroesFlagUnmap};
  c.out_bufs = {std::vector<uint8_t>(sizeof(seg))};
  std::memcpy(c.out_bufs[0].data(), &seg, sizeof(seg));
  BlockRequest r = c.Parse(Limits());
  std::memset(c.out_bufs[0].data(), 0xff, sizeof(seg));  // the guest rewrites it (G15)
  ASSERT_EQ(r.action, BlockAction::kDisk);
  EXPECT_EQ(r.disk.op, storage::DiskOp::kWriteZeroes);
  EXPECT_EQ(r.disk.offset, 100u * 512);
  EXPECT_EQ(r.disk.length, 8u * 512);
  EXPECT_TRUE(r.disk.may_unmap);
}

TEST(BlockRequestTest, FlushUnsafe_CompletesWithoutDisk) {
  Chain c;
  c.header = {blk::kTypeFlush, 0, 0};
  BlockLimits l = Limits();
  l.flush_is_noop = true;
  BlockRequest r = c.Parse(l);
  EXPECT_EQ(r.action, BlockAction::kComplete);
  EXPECT_EQ(r.status, blk::kStatusOk);
  l.flush_is_noop = false;
  r = c.Parse(l);
  EXPECT_EQ(r.action, BlockAction::kDisk);
  EXPECT_EQ(r.disk.op, storage::DiskOp::kFlush);
}

TEST(BlockRequestTest, ReusedOutput_ClearedBetweenParses) {
  Chain read;
  read.header = {blk::kTypeIn, 0, 0};
  read.in_bufs = {std::vector<uint8_t>(512)};
  BlockRequest r;
  read.Build();
  ParseBlockRequest(read.readable, read.writable, Limits(), &r);
  ASSERT_EQ(r.disk.iov.size(), 1u);
  Chain bad;  // header only: rejected
  bad.readable = {{&bad.header, sizeof(bad.header)}};
  ParseBlockRequest(bad.readable, {}, Limits(), &r);
  EXPECT_EQ(r.action, BlockAction::kReject);
  EXPECT_TRUE(r.disk.iov.empty());
  EXPECT_EQ(r.status_byte, nullptr);
}

}  // namespace
}  // namespace kite::virtio
