// The `kite` command line and the --config JSON file, parsed into a VmConfig. Pure: file
// reading is a parameter, so tests pass an in-memory reader. docs/CLI.md is the user reference.
//
//   kite run --kernel PATH [--initrd PATH] [--cmdline STR] [--cpus N] [--memory SIZE]
//            [--serial stdio|file:PATH|none] [--no-acpi] [--on-reboot exit|restart]
//            [--config FILE.json] [--stats] [--no-host-quirks] [--disk SPEC]...
//            [--net SPEC]... [--no-rng] [--vsock cid=N,uds=PATH] [--balloon SPEC]
//            [--name NAME] [--api-sock PATH] [--paused]
//            [--transport mmio|pci] [--seccomp on|log|off]
//            [--jail DIR --jail-uid U --jail-gid G [--netns PATH] [--cgroup LIMITS]
//             [--rlimit LIMITS]]
//            (device specs: vmm/device_options.h, vmm/balloon_options.h)
//   kite restore DIR [--api-sock PATH] [--paused] [--disk-overlays] [--serial MODE]
//                    [--seccomp on|log|off] [--jail DIR ... as for run]
//   kite ctl [--json] SOCKET COMMAND [key=value ...]   (vmm/control/ctl.h)
//   kite --help | kite --version
//
// Settings from --config are applied first; options on the command line win.
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/result.h"
#include "base/seccomp.h"
#include "kite/kite.h"
#include "vmm/jail_options.h"

namespace kite::cli {

struct Help {};
struct ShowVersion {};
// --seccomp: the system-call filters of kite's threads (a property of the process, not of
// the VM: neither the JSON config nor a snapshot carries it).
inline constexpr seccomp::Mode kDefaultSeccomp = seccomp::Mode::kKill;
struct Run {
  VmConfig config;
  seccomp::Mode seccomp = kDefaultSeccomp;
  // --jail and its settings: like --seccomp, a property of the process (vmm/jail.h).
  std::optional<JailConfig> jail;
};
struct Restore {
  RestoreOptions options;
  seccomp::Mode seccomp = kDefaultSeccomp;
  std::optional<JailConfig> jail;  // as for Run
};
struct Ctl {
  std::vector<std::string> args;  // after "ctl"
};
using Command = std::variant<Help, ShowVersion, Run, Restore, Ctl>;

using FileReader = std::function<Result<std::string>(const std::string& path)>;

// Reads a whole regular file of at most 1 MiB.
Result<std::string> ReadConfigFile(const std::string& path);

// `args` excludes argv[0]. The resulting config is validated.
Result<Command> ParseCommandLine(std::span<const std::string> args,
                                 const FileReader& read_file = ReadConfigFile);

// Applies a JSON config object to `config`. Relative paths in it are taken relative to
// `base_dir` (the config file's folder; empty: unchanged). Unknown keys and wrong types are
// errors naming the key.
Result<void> ApplyConfigJson(std::string_view json_text, const std::string& base_dir,
                             VmConfig& config);

// One command-line option ("--cpus", "4") applied to `config`.
Result<void> ApplyOption(std::string_view name, std::string_view value, VmConfig& config);

std::string UsageText();

}  // namespace kite::cli
