// MC146818 CMOS RTC (Motorola MC146818A datasheet, "Address Map" and "Register B"); see
// rtc_cmos.h.
#include "devices/rtc_cmos.h"

#include <algorithm>
#include <chrono>

namespace kite {
namespace {

constexpr uint64_t kIndexOffset = 0;
constexpr uint64_t kDataOffset = 1;
constexpr uint8_t kIndexMask = 0x7f;  // bit 7 is the PC's NMI-disable bit

// Register indices.
constexpr uint8_t kSeconds = 0x00;
constexpr uint8_t kMinutes = 0x02;
constexpr uint8_t kHours = 0x04;
constexpr uint8_t kDayOfWeek = 0x06;
constexpr uint8_t kDayOfMonth = 0x07;
constexpr uint8_t kMonth = 0x08;
constexpr uint8_t kYear = 0x09;
constexpr uint8_t kRegA = 0x0a;
constexpr uint8_t kRegB = 0x0b;
constexpr uint8_t kRegC = 0x0c;
constexpr uint8_t kRegD = 0x0d;
constexpr uint8_t kCentury = 0x32;

constexpr uint8_t kRegAUip = 0x80;  // update in progress: read-only, never set here
constexpr uint8_t kRegB24Hour = 0x02;
constexpr uint8_t kRegBBinary = 0x04;
constexpr uint8_t kRegDValid = 0x80;
constexpr uint8_t kHourPm = 0x80;  // in 12-hour mode

uint8_t Encode(int value, bool binary) {
  auto v = static_cast<uint8_t>(value);
  return binary ? v : static_cast<uint8_t>(((v / 10) << 4) | (v % 10));
}

uint8_t EncodeHour(int hour, uint8_t reg_b) {
  bool binary = reg_b & kRegBBinary;
  if (reg_b & kRegB24Hour) return Encode(hour, binary);
  int hour12 = hour % 12 == 0 ? 12 : hour % 12;
  return static_cast<uint8_t>(Encode(hour12, binary) | (hour >= 12 ? kHourPm : 0));
}

}  // namespace

// Calendar arithmetic only: glibc's gmtime_r reads /etc/localtime the first time it runs,
// which a vCPU thread (where the guest reads the RTC) may not do (docs/SECURITY.md).
std::tm UtcFromUnix(std::time_t now) {
  using namespace std::chrono;
  sys_seconds t{seconds{now}};
  sys_days day = floor<days>(t);
  year_month_day ymd{day};
  hh_mm_ss hms{t - day};
  std::tm utc{};
  utc.tm_year = static_cast<int>(ymd.year()) - 1900;
  utc.tm_mon = static_cast<int>(static_cast<unsigned>(ymd.month())) - 1;
  utc.tm_mday = static_cast<int>(static_cast<unsigned>(ymd.day()));
  utc.tm_wday = static_cast<int>(weekday{day}.c_encoding());  // 0 = Sunday
  utc.tm_hour = static_cast<int>(hms.hours().count());
  utc.tm_min = static_cast<int>(hms.minutes().count());
  utc.tm_sec = static_cast<int>(hms.seconds().count());
  return utc;
}

uint8_t RtcTimeRegister(uint8_t index, const std::tm& utc, uint8_t reg_b) {
  bool binary = reg_b & kRegBBinary;
  int year = utc.tm_year + 1900;
  switch (index) {
    case kSeconds:
      return Encode(std::min(utc.tm_sec, 59), binary);  // a leap second shows as :59
    case kMinutes:
      return Encode(utc.tm_min, binary);
    case kHours:
      return EncodeHour(utc.tm_hour, reg_b);
    case kDayOfWeek:
      return Encode(utc.tm_wday + 1, binary);  // 1 = Sunday
    case kDayOfMonth:
      return Encode(utc.tm_mday, binary);
    case kMonth:
      return Encode(utc.tm_mon + 1, binary);
    case kYear:
      return Encode(year % 100, binary);
    case kCentury:
      return Encode(year / 100 % 100, binary);
    default:
      return 0;
  }
}

RtcCmos::RtcCmos(Clock clock)
    : clock_(clock ? std::move(clock) : [] { return std::time(nullptr); }) {}

void RtcCmos::Read(uint64_t offset, std::span<uint8_t> data) {
  if (data.empty()) return;
  std::fill(data.begin(), data.end(), 0);
  std::lock_guard lock(mutex_);
  // The index port is write-only on PCs; reading it returns all-ones like an open bus.
  data[0] = offset == kDataOffset ? ReadRegisterLocked(state_.index) : 0xff;
}

void RtcCmos::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  std::lock_guard lock(mutex_);
  uint8_t value = data[0];
  if (offset == kIndexOffset) {
    state_.index = value & kIndexMask;
    return;
  }
  if (offset != kDataOffset) return;
  if (state_.index == kRegA) {
    state_.reg_a = value & static_cast<uint8_t>(~kRegAUip);
  } else if (state_.index == kRegB) {
    state_.reg_b = value;
  }
  // Everything else (time registers, C, D, CMOS RAM) ignores writes.
}

RtcCmos::State RtcCmos::GetState() const {
  std::lock_guard lock(mutex_);
  return state_;
}

void RtcCmos::SetState(const State& state) {
  std::lock_guard lock(mutex_);
  state_ = state;
  state_.index &= kIndexMask;
  state_.reg_a &= static_cast<uint8_t>(~kRegAUip);
}

uint8_t RtcCmos::ReadRegisterLocked(uint8_t index) const {
  switch (index) {
    case kRegA:
      return state_.reg_a;
    case kRegB:
      return state_.reg_b;
    case kRegC:
      return 0;
    case kRegD:
      return kRegDValid;
    default:
      break;
  }
  if (index > kYear && index != kCentury) return 0;
  if (index == 0x01 || index == 0x03 || index == 0x05) return 0;  // alarms: not emulated
  return RtcTimeRegister(index, UtcFromUnix(clock_()), state_.reg_b);
}

}  // namespace kite
