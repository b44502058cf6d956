// RtcCmos: time registers in BCD and binary, 12/24-hour, status registers.
#include "devices/rtc_cmos.h"

#include <gtest/gtest.h>

#include <vector>

namespace kite {
namespace {

// 2024-02-29 13:05:09 UTC, a Thursday.
constexpr std::time_t kTime = 1709211909;

class RtcTest : public ::testing::Test {
 protected:
  uint8_t Reg(uint8_t index) {
    rtc_.Write(0, std::span<const uint8_t>(&index, 1));
    uint8_t v = 0xaa;
    rtc_.Read(1, std::span(&v, 1));
    return v;
  }
  void SetReg(uint8_t index, uint8_t value) {
    rtc_.Write(0, std::span<const uint8_t>(&index, 1));
    rtc_.Write(1, std::span<const uint8_t>(&value, 1));
  }
  RtcCmos rtc_{[] { return kTime; }};
};

TEST_F(RtcTest, Default_BcdTwentyFourHour) {
  EXPECT_EQ(Reg(0x00), 0x09);
  EXPECT_EQ(Reg(0x02), 0x05);
  EXPECT_EQ(Reg(0x04), 0x13);
  EXPECT_EQ(Reg(0x06), 0x05);  // Thursday: 1 = Sunday
  EXPECT_EQ(Reg(0x07), 0x29);
  EXPECT_EQ(Reg(0x08), 0x02);
  EXPECT_EQ(Reg(0x09), 0x24);
  EXPECT_EQ(Reg(0x32), 0x20);
}

TEST_F(RtcTest, RegisterBBinary_BinaryValues) {
  SetReg(0x0b, 0x06);
  EXPECT_EQ(Reg(0x0b), 0x06);
  EXPECT_EQ(Reg(0x00), 9);
  EXPECT_EQ(Reg(0x04), 13);
  EXPECT_EQ(Reg(0x07), 29);
  EXPECT_EQ(Reg(0x09), 24);
  EXPECT_EQ(Reg(0x32), 20);
}

TEST_F(RtcTest, TwelveHourMode_PmBit) {
  SetReg(0x0b, 0x00);          // BCD, 12-hour
  EXPECT_EQ(Reg(0x04), 0x81);  // 1 PM
}

TEST(RtcTimeRegisterTest, Midnight_TwelveAm) {
  std::tm t{};
  t.tm_hour = 0;
  EXPECT_EQ(RtcTimeRegister(0x04, t, 0x00), 0x12);
  EXPECT_EQ(RtcTimeRegister(0x04, t, 0x04), 12);
  t.tm_hour = 12;
  EXPECT_EQ(RtcTimeRegister(0x04, t, 0x00), 0x92);
}

TEST_F(RtcTest, StatusRegisters_Sane) {
  EXPECT_EQ(Reg(0x0a) & 0x80, 0x00);  // update never in progress
  EXPECT_EQ(Reg(0x0d), 0x80);         // valid RAM and time
  EXPECT_EQ(Reg(0x0c), 0x00);
}

TEST_F(RtcTest, NmiBitInIndex_Ignored) {
  EXPECT_EQ(Reg(0x80 | 0x04), 0x13);
}

TEST_F(RtcTest, OtherCmosBytes_ZeroAndWritesIgnored) {
  EXPECT_EQ(Reg(0x10), 0x00);
  SetReg(0x10, 0x55);
  EXPECT_EQ(Reg(0x10), 0x00);
  EXPECT_EQ(Reg(0x7f), 0x00);
  SetReg(0x00, 0x42);  // the time follows the host, not the guest
  EXPECT_EQ(Reg(0x00), 0x09);
}

TEST_F(RtcTest, WideAccess_LowByteOnly) {
  uint8_t index[4] = {0x04, 0xff, 0xff, 0xff};
  rtc_.Write(0, std::span<const uint8_t>(index, 2));  // 2-byte write at 0x70
  uint8_t v = 0;
  rtc_.Read(1, std::span(&v, 1));
  EXPECT_EQ(v, 0x13);
}

TEST_F(RtcTest, State_RoundTripKeepsFormatAndIndex) {
  SetReg(0x0b, 0x06);
  uint8_t index = 0x04;
  rtc_.Write(0, std::span<const uint8_t>(&index, 1));
  RtcCmos restored([] { return kTime; });
  restored.SetState(rtc_.GetState());
  uint8_t v = 0;
  restored.Read(1, std::span(&v, 1));  // index 0x04 still selected, binary format
  EXPECT_EQ(v, 13);
}

TEST(RtcHostClockTest, DefaultClock_MatchesHostYear) {
  RtcCmos rtc;
  uint8_t index = 0x0b, binary = 0x06;
  rtc.Write(0, std::span<const uint8_t>(&index, 1));
  rtc.Write(1, std::span<const uint8_t>(&binary, 1));
  index = 0x09;
  rtc.Write(0, std::span<const uint8_t>(&index, 1));
  uint8_t year = 0;
  rtc.Read(1, std::span(&year, 1));
  std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  EXPECT_EQ(year, utc.tm_year % 100);
}

}  // namespace
}  // namespace kite

namespace kite {
namespace {

// UtcFromUnix against the C library's gmtime_r, from 1970 to 2200 (leap years, the century
// rules of 2100 and 2000, every weekday), one sample about every 9 days and a few edges.
TEST(RtcCalendar, UtcFromUnix_MatchesGmtime) {
  std::vector<std::time_t> samples = {
      0, 59, 86399, 86400, 951782400 /* 2000-02-29 */, 4107542400 /* 2100-03-01 */, 1796591281};
  for (std::time_t t = 0; t < 7258118400; t += 777777) samples.push_back(t);
  for (std::time_t t : samples) {
    std::tm want{};
    ASSERT_NE(::gmtime_r(&t, &want), nullptr);
    std::tm got = UtcFromUnix(t);
    ASSERT_EQ(got.tm_year, want.tm_year) << t;
    ASSERT_EQ(got.tm_mon, want.tm_mon) << t;
    ASSERT_EQ(got.tm_mday, want.tm_mday) << t;
    ASSERT_EQ(got.tm_wday, want.tm_wday) << t;
    ASSERT_EQ(got.tm_hour, want.tm_hour) << t;
    ASSERT_EQ(got.tm_min, want.tm_min) << t;
    ASSERT_EQ(got.tm_sec, want.tm_sec) << t;
  }
}

}  // namespace
}  // namespace kite
