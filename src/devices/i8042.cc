// i8042 controller commands (IBM PS/2 Technical Reference, "Keyboard/Auxiliary Device
// Controller"); see i8042.h for what is and is not emulated.
#include "devices/i8042.h"

#include <algorithm>

#include "base/log.h"

namespace kite {
namespace {

constexpr uint64_t kDataOffset = 0;
constexpr uint64_t kStatusCommandOffset = 4;

// Status register bits.
constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusSystemFlag = 0x04;
constexpr uint8_t kStatusCommand = 0x08;   // the last write went to the command port
constexpr uint8_t kStatusUnlocked = 0x10;  // keyboard not inhibited

// Command byte ("CTR") bits.
constexpr uint8_t kCtrKbdInt = 0x01;
constexpr uint8_t kCtrSystemFlag = 0x04;
constexpr uint8_t kCtrKbdDisable = 0x10;
constexpr uint8_t kCtrAuxDisable = 0x20;

// Controller commands.
constexpr uint8_t kCmdReadCtr = 0x20;
constexpr uint8_t kCmdWriteCtr = 0x60;
constexpr uint8_t kCmdAuxDisable = 0xa7;
constexpr uint8_t kCmdAuxEnable = 0xa8;
constexpr uint8_t kCmdAuxTest = 0xa9;
constexpr uint8_t kCmdSelfTest = 0xaa;
constexpr uint8_t kCmdKbdTest = 0xab;
constexpr uint8_t kCmdKbdDisable = 0xad;
constexpr uint8_t kCmdKbdEnable = 0xae;
constexpr uint8_t kCmdReadOutputPort = 0xd0;
constexpr uint8_t kCmdWriteOutputPort = 0xd1;
constexpr uint8_t kCmdPulseFirst = 0xf0;  // 0xf0-0xff: pulse output-port bits 0-3 low where
                                          // the command's bit is 0; bit 0 is CPU reset

constexpr uint8_t kSelfTestPassed = 0x55;
constexpr uint8_t kPortTestPassed = 0x00;
constexpr uint8_t kOutputPortReset = 0x01;  // output port bit 0: 0 holds the CPU in reset
constexpr size_t kOutputLimit = 16;

}  // namespace

static_assert(I8042::State{}.command_byte == (kCtrKbdInt | kCtrSystemFlag));

I8042::I8042(VmRequestFn request) : request_(std::move(request)) {}

void I8042::Read(uint64_t offset, std::span<uint8_t> data) {
  if (data.empty()) return;
  std::fill(data.begin(), data.end(), 0);
  std::lock_guard lock(mutex_);
  switch (offset) {
    case kDataOffset:
      data[0] = ReadDataLocked();
      break;
    case kStatusCommandOffset:
      data[0] = ReadStatusLocked();
      break;
    default:
      std::fill(data.begin(), data.end(), 0xff);
      break;
  }
}

void I8042::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  bool reset = false;
  {
    std::lock_guard lock(mutex_);
    if (offset == kStatusCommandOffset) {
      reset = CommandLocked(data[0]);
    } else if (offset == kDataOffset) {
      reset = DataLocked(data[0]);
    }
    if (reset) ++stats_.reset_requests;
  }
  // Outside the lock: the VMM may stop vCPUs in response.
  if (reset && request_) request_(VmRequest::kReset);
}

uint8_t I8042::ReadStatusLocked() const {
  uint8_t status = kStatusUnlocked;
  if (!output_.empty()) status |= kStatusOutputFull;
  if (command_byte_ & kCtrSystemFlag) status |= kStatusSystemFlag;
  if (last_write_was_command_) status |= kStatusCommand;
  return status;  // the input buffer is never full: commands complete at once
}

uint8_t I8042::ReadDataLocked() {
  if (output_.empty()) return 0;
  uint8_t value = output_.front();
  output_.pop_front();
  return value;
}

void I8042::OutputLocked(uint8_t value) {
  if (output_.size() < kOutputLimit) output_.push_back(value);
}

bool I8042::CommandLocked(uint8_t command) {
  last_write_was_command_ = true;
  pending_command_ = 0;
  switch (command) {
    case kCmdReadCtr:
      OutputLocked(command_byte_);
      return false;
    case kCmdWriteCtr:
    case kCmdWriteOutputPort:
      pending_command_ = command;
      return false;
    case kCmdAuxDisable:
      command_byte_ |= kCtrAuxDisable;
      return false;
    case kCmdAuxEnable:
      command_byte_ &= static_cast<uint8_t>(~kCtrAuxDisable);
      return false;
    case kCmdAuxTest:
    case kCmdKbdTest:
      OutputLocked(kPortTestPassed);
      return false;
    case kCmdSelfTest:
      command_byte_ |= kCtrSystemFlag;
      OutputLocked(kSelfTestPassed);
      return false;
    case kCmdKbdDisable:
      command_byte_ |= kCtrKbdDisable;
      return false;
    case kCmdKbdEnable:
      command_byte_ &= static_cast<uint8_t>(~kCtrKbdDisable);
      return false;
    case kCmdReadOutputPort:
      OutputLocked(output_port_);
      return false;
    default:
      break;
  }
  if (command >= kCmdPulseFirst) return !(command & kOutputPortReset);
  ++stats_.ignored_commands;
  KITE_LOG_RATELIMITED(Debug, "i8042: ignored command 0x%02x", command);
  return false;
}

bool I8042::DataLocked(uint8_t value) {
  last_write_was_command_ = false;
  uint8_t command = pending_command_;
  pending_command_ = 0;
  switch (command) {
    case kCmdWriteCtr:
      command_byte_ = value;
      return false;
    case kCmdWriteOutputPort:
      output_port_ = value;
      return !(value & kOutputPortReset);  // bit 0 low holds the CPU in reset
    default:
      ++stats_.ignored_data;
      return false;
  }
}

I8042::State I8042::GetState() const {
  std::lock_guard lock(mutex_);
  return {command_byte_, output_port_, pending_command_, {output_.begin(), output_.end()}};
}

void I8042::SetState(const State& state) {
  std::lock_guard lock(mutex_);
  command_byte_ = state.command_byte;
  output_port_ = state.output_port;
  pending_command_ = state.pending_command;
  size_t keep = std::min(state.output.size(), kOutputLimit);
  output_.assign(state.output.begin(), state.output.begin() + static_cast<ptrdiff_t>(keep));
}

I8042Stats I8042::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace kite
