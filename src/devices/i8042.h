// An i8042 keyboard controller, just enough for Linux: its probe with `i8042.noaux
// i8042.nomux i8042.nopnp i8042.dumbkbd` (flush, self-test 0xAA, read/write the command byte
// 0x20/0x60, port tests, enable/disable) and its `reboot=k` path (command 0xFE pulses the CPU
// reset line, which becomes VmRequest::kReset). There is no keyboard: no scan codes are ever
// produced, no interrupt is raised, and bytes written to the data port for the keyboard itself
// are ignored (Linux with i8042.dumbkbd sends none).
//
// Ports: 0x60 data, 0x64 status (read) / command (write). The device is registered over
// 0x60-0x64 (kI8042RangeLength) and sees offsets 0 and 4; offsets 1-3 (port 0x61, the PC
// speaker / NMI status port, normally handled by KVM's in-kernel PIT) read 0xff.
//
// Threads: vCPU threads only; a mutex keeps concurrent accesses consistent.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <vector>

#include "devices/bus.h"
#include "devices/vm_events.h"

namespace kite {

inline constexpr uint64_t kI8042RangeLength = 5;  // ports 0x60..0x64

struct I8042Stats {
  uint64_t reset_requests = 0;
  uint64_t ignored_commands = 0;  // unknown controller commands
  uint64_t ignored_data = 0;      // data-port writes with no command waiting for them
};

class I8042 : public BusDevice {
 public:
  // What a snapshot needs.
  struct State {
    uint8_t command_byte = 0x05;
    uint8_t output_port = 0xcf;
    uint8_t pending_command = 0;
    std::vector<uint8_t> output;  // responses not yet read (at most 16)
  };

  explicit I8042(VmRequestFn request);

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  I8042Stats stats() const;
  State GetState() const;
  void SetState(const State& state);

 private:
  uint8_t ReadStatusLocked() const;
  uint8_t ReadDataLocked();
  // Returns true when the command asked for a reset.
  bool CommandLocked(uint8_t command);
  bool DataLocked(uint8_t value);
  void OutputLocked(uint8_t value);

  const VmRequestFn request_;
  mutable std::mutex mutex_;
  uint8_t command_byte_ = State{}.command_byte;
  uint8_t output_port_ = State{}.output_port;  // reset line high, A20 on, lines idle
  uint8_t pending_command_ = 0;                // a command waiting for its data byte, or 0
  bool last_write_was_command_ = false;
  std::deque<uint8_t> output_;  // bytes for the data port, bounded
  I8042Stats stats_;
};

}  // namespace kite
