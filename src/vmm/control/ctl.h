// `kite ctl`: a small QMP client for kite's control socket (docs/CONTROL.md).
//
//   kite ctl [--json] [--events] SOCKET COMMAND [key=value ...]
//   kite ctl vm.sock query-status
//   kite ctl vm.sock x-vm-snapshot-save path=/abs/snap
//   kite ctl vm.sock snapshot snap/     # stop (if running), x-vm-snapshot-save, cont
//
// Values are JSON when they parse as a number, a boolean, an object or an array, strings
// otherwise (qmp-shell's rule). Exit status: 0 the command returned, 1 it failed (the QMP
// error class and text on stderr) or the socket failed, 2 usage error.
//
// Threads: the calling thread only; blocking socket I/O.
#pragma once

#include <nlohmann/json.hpp>
#include <span>
#include <string>

namespace kite::ctl {

// `args` are the words after "ctl".
int RunCtl(std::span<const std::string> args);

// A key=value value: JSON when it parses as a number, boolean, object or array; else a string.
nlohmann::json ParseValue(const std::string& text);

// The usage text (printed for usage errors and --help).
std::string CtlUsage();

}  // namespace kite::ctl
