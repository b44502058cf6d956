// The QMP command table: every command kite answers, with its arguments, the run states that
// allow it, whether it is "fast" (a query: runs on the socket thread) or "slow" (changes the
// VM: runs on the command thread, one at a time), and its handler over kite::Machine. Argument
// and state checks happen before any side effect, with QEMU's error texts. Result shapes are
// QEMU's (research/CONTROL-PLANE.md §1.3; docs/CONTROL.md lists them all).
//
// Threads: the table is immutable. Handlers call only Machine's thread-safe control plane.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"
#include "kite/kite.h"

namespace kite::qmp {

enum class ArgType { kString, kInteger, kBoolean, kArray, kObject, kAny };

struct ArgSpec {
  const char* name;
  ArgType type;
  bool required;
};

enum class Speed { kFast, kSlow };

// A set of RunStates, one bit per enumerator.
using StateSet = uint32_t;
constexpr StateSet StateBit(RunState state) {
  return 1u << static_cast<uint32_t>(state);
}
constexpr StateSet kAnyState = ~0u;

using Handler = Result<nlohmann::json> (*)(Machine& machine, const nlohmann::json& args);

struct CommandSpec {
  const char* name;
  std::span<const ArgSpec> args;
  Speed speed;
  StateSet allowed;         // run states in which the command may run
  const char* state_error;  // the error outside them
  Handler handler;
};

// The whole table, in query-commands order.
std::span<const CommandSpec> Commands();
// nullptr when there is no such command.
const CommandSpec* FindCommand(std::string_view name);

// "Parameter 'x' is unexpected", "Parameter 'x' is missing",
// "Invalid parameter type for 'x', expected: string".
Result<void> CheckArguments(const CommandSpec& spec, const nlohmann::json& args);
// The command's state_error when `state` is not in spec.allowed.
Result<void> CheckState(const CommandSpec& spec, RunState state);
// Every check, then the handler.
Result<nlohmann::json> RunCommand(const CommandSpec& spec, Machine& machine,
                                  const nlohmann::json& args);

// x-vm-snapshot-save's path policy (BAD_INPUTS.md C12): absolute; not under /proc, /sys or
// /dev, even through symbolic links in its parents; when it exists, a real directory (not a
// symbolic link, FIFO, device or file). Returns the path to use (normalised, no trailing /).
Result<std::string> CheckSnapshotPath(const std::string& path);

// The result shapes, from the Machine's plain structs.
nlohmann::json CpuJson(const CpuInfo& cpu);
nlohmann::json BlockJson(const BlockInfo& block);
nlohmann::json BlockStatsJson(const BlockStats& stats);
// human-monitor-command "info status": "VM status: running\r\n", "VM status: paused\r\n",
// "VM status: paused (prelaunch)\r\n", ...
std::string InfoStatusText(RunState state);

}  // namespace kite::qmp
