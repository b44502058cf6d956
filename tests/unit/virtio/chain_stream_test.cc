// ChainReader and ChainWriter: a chain's buffers read and written as one byte stream, across
// iovec boundaries, with all-or-nothing Read/Write/Take/Skip. Plain host buffers stand in for
// guest memory here; queue_test.cc covers the iovecs a popped chain really has.
#include <gtest/gtest.h>
#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "virtio/queue.h"

namespace kite::virtio {
namespace {

// Three segments of 5, 3 and 8 bytes holding 0, 1, 2, ... 15.
class ChainStreamTest : public ::testing::Test {
 protected:
  ChainStreamTest() {
    std::iota(a_.begin(), a_.end(), 0);
    std::iota(b_.begin(), b_.end(), 5);
    std::iota(c_.begin(), c_.end(), 8);
    iov_ = {{{a_.data(), a_.size()}, {b_.data(), b_.size()}, {c_.data(), c_.size()}}};
  }
  std::array<uint8_t, 5> a_;
  std::array<uint8_t, 3> b_;
  std::array<uint8_t, 8> c_;
  std::array<iovec, 3> iov_;
};

TEST_F(ChainStreamTest, Read_AcrossIovecBoundaries_BytesInOrder) {
  ChainReader reader(iov_);
  std::array<uint8_t, 4> first;
  std::array<uint8_t, 10> second;
  ASSERT_TRUE(reader.Read(first.data(), first.size()));    // 0..3
  ASSERT_TRUE(reader.Read(second.data(), second.size()));  // 4..13, spans all three
  EXPECT_EQ(first[3], 3);
  for (size_t i = 0; i < second.size(); ++i) EXPECT_EQ(second[i], 4 + i);
  EXPECT_EQ(reader.remaining(), 2u);
}

TEST_F(ChainStreamTest, Read_MoreThanRemaining_FalseAndNothingConsumed) {
  ChainReader reader(iov_);
  ASSERT_TRUE(reader.Skip(6));
  std::array<uint8_t, 11> too_big;
  EXPECT_FALSE(reader.Read(too_big.data(), too_big.size()));
  EXPECT_EQ(reader.remaining(), 10u);
  uint8_t next;
  ASSERT_TRUE(reader.ReadObj(&next));
  EXPECT_EQ(next, 6);
}

TEST_F(ChainStreamTest, ReadObj_StructSpanningSegments) {
  ChainReader reader(iov_);
  ASSERT_TRUE(reader.Skip(3));
  uint32_t v;
  ASSERT_TRUE(reader.ReadObj(&v));  // bytes 3, 4 | 5, 6
  EXPECT_EQ(v, 0x06050403u);
}

TEST_F(ChainStreamTest, Take_CoversRangeWithoutCopy) {
  ChainReader reader(iov_);
  ASSERT_TRUE(reader.Skip(2));
  std::vector<iovec> out;
  ASSERT_TRUE(reader.Take(8, &out));  // 3 from a, 3 from b, 2 from c
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].iov_base, a_.data() + 2);
  EXPECT_EQ(out[0].iov_len, 3u);
  EXPECT_EQ(out[1].iov_base, b_.data());
  EXPECT_EQ(out[1].iov_len, 3u);
  EXPECT_EQ(out[2].iov_base, c_.data());
  EXPECT_EQ(out[2].iov_len, 2u);
  EXPECT_EQ(reader.remaining(), 6u);
}

TEST_F(ChainStreamTest, Take_MoreThanRemaining_FalseAndOutUnchanged) {
  ChainReader reader(iov_);
  std::vector<iovec> out(1, iovec{nullptr, 7});
  EXPECT_FALSE(reader.Take(17, &out));
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(reader.remaining(), 16u);
}

TEST_F(ChainStreamTest, Skip_ToExactEnd_ThenNothingLeft) {
  ChainReader reader(iov_);
  EXPECT_TRUE(reader.Skip(16));
  EXPECT_EQ(reader.remaining(), 0u);
  uint8_t byte;
  EXPECT_FALSE(reader.ReadObj(&byte));
  EXPECT_TRUE(reader.Skip(0));
}

TEST_F(ChainStreamTest, Reader_EmptySegmentsInBetween_Skipped) {
  uint8_t x = 7, y = 9;
  std::array<iovec, 4> iov = {{{nullptr, 0}, {&x, 1}, {nullptr, 0}, {&y, 1}}};
  ChainReader reader(iov);
  uint16_t v;
  ASSERT_TRUE(reader.ReadObj(&v));
  EXPECT_EQ(v, 0x0907);
}

TEST_F(ChainStreamTest, Write_AcrossIovecBoundaries_LandsInSegments) {
  ChainWriter writer(iov_);
  std::array<uint8_t, 9> data;
  std::iota(data.begin(), data.end(), 100);
  ASSERT_TRUE(writer.Skip(1));
  ASSERT_TRUE(writer.Write(data.data(), data.size()));  // bytes 1..9
  EXPECT_EQ(a_[0], 0);
  EXPECT_EQ(a_[1], 100);
  EXPECT_EQ(a_[4], 103);
  EXPECT_EQ(b_[0], 104);
  EXPECT_EQ(c_[1], 108);
  EXPECT_EQ(c_[2], 10);  // untouched
  EXPECT_EQ(writer.written(), 10u);
  EXPECT_EQ(writer.remaining(), 6u);
}

TEST_F(ChainStreamTest, Write_MoreThanRoom_FalseAndNothingWritten) {
  ChainWriter writer(iov_);
  ASSERT_TRUE(writer.Skip(10));
  std::array<uint8_t, 7> data{};
  EXPECT_FALSE(writer.Write(data.data(), data.size()));
  EXPECT_EQ(c_[2], 10);  // first byte it would have written
  EXPECT_EQ(c_[7], 15);
  EXPECT_EQ(writer.written(), 10u);
  EXPECT_TRUE(writer.WriteObj(uint8_t{0xee}));
  EXPECT_EQ(c_[2], 0xee);
}

TEST_F(ChainStreamTest, WriterTake_CountsAsWritten) {
  ChainWriter writer(iov_);
  std::vector<iovec> out;
  ASSERT_TRUE(writer.Take(12, &out));
  EXPECT_EQ(out.size(), 3u);
  EXPECT_EQ(writer.written(), 12u);
  EXPECT_TRUE(writer.WriteObj(uint32_t{0}));
  EXPECT_FALSE(writer.WriteObj(uint8_t{0}));
}

}  // namespace
}  // namespace kite::virtio
