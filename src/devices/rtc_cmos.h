// An MC146818 CMOS real-time clock at ports 0x70 (index) / 0x71 (data), as Linux reads it at
// boot for the wall clock: the host's current UTC time, in BCD or binary and 24- or 12-hour
// form as register B says. Status registers: A = 0x26 (32.768 kHz divider, 1024 Hz rate, UIP
// never set, so a read never waits), B = 0x02 (24-hour, BCD) and guest-writable, C = 0 (no
// interrupts: periodic/alarm/update interrupts are not emulated), D = 0x80 (valid RAM and time).
// The century is at index 0x32 as on PCs. Writes to the time registers are ignored (the clock
// always shows host time); every other CMOS byte reads 0 and ignores writes.
//
// Bit 7 of the index write (NMI disable on PCs) is ignored.
//
// Threads: vCPU threads; a mutex keeps the index/data pair consistent.
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <mutex>
#include <span>

#include "devices/bus.h"

namespace kite {

inline constexpr uint64_t kRtcRangeLength = 2;  // ports 0x70, 0x71

// The value of CMOS register `index` at UTC time `utc` with register B = `reg_b`, for the
// time and date registers (0x00-0x09, 0x32); 0 for any other index. Pure.
uint8_t RtcTimeRegister(uint8_t index, const std::tm& utc, uint8_t reg_b);

// UTC calendar time of a Unix time (gmtime_r's fields year, mon, mday, wday, hour, min, sec),
// without touching the C library's time zone state. Pure.
std::tm UtcFromUnix(std::time_t now);

class RtcCmos : public BusDevice {
 public:
  using Clock = std::function<std::time_t()>;
  // What a snapshot needs (the time itself always comes from the host).
  struct State {
    uint8_t index = 0;
    uint8_t reg_a = 0x26;
    uint8_t reg_b = 0x02;
  };
  // `clock` returns seconds since the epoch (tests pass a fixed time); default: the host's.
  explicit RtcCmos(Clock clock = nullptr);

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  State GetState() const;
  void SetState(const State& state);

 private:
  uint8_t ReadRegisterLocked(uint8_t index) const;

  const Clock clock_;
  mutable std::mutex mutex_;
  State state_;
};

}  // namespace kite
