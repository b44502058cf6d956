// I8042: Linux's probe sequence and the reset paths.
#include "devices/i8042.h"

#include <gtest/gtest.h>

#include <vector>

namespace kite {
namespace {

constexpr uint64_t kData = 0, kStatus = 4, kCommand = 4;

class I8042Test : public ::testing::Test {
 protected:
  uint8_t In(uint64_t offset) {
    uint8_t v = 0xaa;
    dev_.Read(offset, std::span(&v, 1));
    return v;
  }
  void Out(uint64_t offset, uint8_t v) { dev_.Write(offset, std::span(&v, 1)); }

  std::vector<VmRequest> requests_;
  I8042 dev_{[this](VmRequest r) { requests_.push_back(r); }};
};

TEST_F(I8042Test, Idle_OutputBufferEmpty) {
  EXPECT_EQ(In(kStatus) & 0x03, 0x00);  // OBF and IBF clear: Linux's flush ends at once
}

TEST_F(I8042Test, SelfTest_Returns0x55) {
  Out(kCommand, 0xaa);
  EXPECT_EQ(In(kStatus) & 0x01, 0x01);
  EXPECT_EQ(In(kData), 0x55);
  EXPECT_EQ(In(kStatus) & 0x01, 0x00);
  EXPECT_EQ(In(kStatus) & 0x04, 0x04);  // system flag
}

TEST_F(I8042Test, CommandByte_ReadWriteRoundTrip) {
  Out(kCommand, 0x20);
  uint8_t initial = In(kData);
  EXPECT_EQ(initial & 0x04, 0x04);
  Out(kCommand, 0x60);
  Out(kData, 0x47);
  Out(kCommand, 0x20);
  EXPECT_EQ(In(kData), 0x47);
  EXPECT_TRUE(requests_.empty());
}

TEST_F(I8042Test, PortTests_Pass) {
  Out(kCommand, 0xab);
  EXPECT_EQ(In(kData), 0x00);
  Out(kCommand, 0xa9);
  EXPECT_EQ(In(kData), 0x00);
}

TEST_F(I8042Test, EnableDisable_ReflectedInCommandByte) {
  Out(kCommand, 0xad);
  Out(kCommand, 0x20);
  EXPECT_EQ(In(kData) & 0x10, 0x10);
  Out(kCommand, 0xae);
  Out(kCommand, 0x20);
  EXPECT_EQ(In(kData) & 0x10, 0x00);
}

TEST_F(I8042Test, Command0xFE_RequestsReset) {
  Out(kCommand, 0xfe);
  ASSERT_EQ(requests_.size(), 1u);
  EXPECT_EQ(requests_[0], VmRequest::kReset);
  EXPECT_EQ(dev_.stats().reset_requests, 1u);
}

TEST_F(I8042Test, PulseWithoutResetBit_NoReset) {
  Out(kCommand, 0xff);  // pulse nothing
  Out(kCommand, 0xfd);  // pulse bit 1 only
  EXPECT_TRUE(requests_.empty());
}

TEST_F(I8042Test, WriteOutputPortResetBitLow_RequestsReset) {
  Out(kCommand, 0xd1);
  Out(kData, 0xdf);  // A20 on, reset line high: the usual A20 write
  EXPECT_TRUE(requests_.empty());
  Out(kCommand, 0xd1);
  Out(kData, 0xde);
  ASSERT_EQ(requests_.size(), 1u);
}

TEST_F(I8042Test, KeyboardData_IgnoredAndCounted) {
  Out(kData, 0xff);  // "reset keyboard": there is no keyboard
  EXPECT_EQ(In(kStatus) & 0x01, 0x00);
  EXPECT_EQ(dev_.stats().ignored_data, 1u);
}

TEST_F(I8042Test, ResponseFlood_Bounded) {
  for (int i = 0; i < 100000; ++i) Out(kCommand, 0xaa);
  int read = 0;
  while ((In(kStatus) & 0x01) && read < 1000) {
    In(kData);
    ++read;
  }
  EXPECT_LE(read, 16);
  EXPECT_GT(read, 0);
}

TEST_F(I8042Test, Port0x61_ReadsAllOnes) {
  EXPECT_EQ(In(1), 0xff);
  EXPECT_EQ(In(3), 0xff);
}

TEST_F(I8042Test, State_RoundTripKeepsCommandByteAndPendingResponse) {
  Out(kCommand, 0x60);
  Out(kData, 0x45);
  Out(kCommand, 0xaa);  // response 0x55 not yet read
  I8042 restored(nullptr);
  restored.SetState(dev_.GetState());
  uint8_t v = 0;
  restored.Read(kData, std::span(&v, 1));
  EXPECT_EQ(v, 0x55);
  uint8_t cmd = 0x20;
  restored.Write(kCommand, std::span<const uint8_t>(&cmd, 1));
  restored.Read(kData, std::span(&v, 1));
  EXPECT_EQ(v, 0x45);
}

}  // namespace
}  // namespace kite
