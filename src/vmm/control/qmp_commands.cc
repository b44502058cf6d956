// The QMP command table: see qmp_commands.h.
#include "vmm/control/qmp_commands.h"

#include <array>
#include <sstream>
#include <vector>

#include "vmm/control/qmp_balloon_commands.h"
#include "vmm/control/qmp_disk_commands.h"
#include "vmm/control/qmp_protocol.h"

namespace kite::qmp {
namespace {

using nlohmann::json;

constexpr StateSet kLive = StateBit(RunState::kPrelaunch) | StateBit(RunState::kRunning) |
                           StateBit(RunState::kPaused) | StateBit(RunState::kInMigrate);
constexpr const char* kNotLive =
    "The VM is not running or paused (it ended, or a snapshot "
    "is being saved or restored)";

const char* TypeName(ArgType type) {
  switch (type) {
    case ArgType::kString:
      return "string";
    case ArgType::kInteger:
      return "integer";
    case ArgType::kBoolean:
      return "boolean";
    case ArgType::kArray:
      return "array";
    case ArgType::kObject:
      return "object";
    case ArgType::kAny:
      return "any";
  }
  return "?";
}

bool HasType(const json& value, ArgType type) {
  switch (type) {
    case ArgType::kString:
      return value.is_string();
    case ArgType::kInteger:
      return value.is_number_integer();
    case ArgType::kBoolean:
      return value.is_boolean();
    case ArgType::kArray:
      return value.is_array();
    case ArgType::kObject:
      return value.is_object();
    case ArgType::kAny:
      return true;
  }
  return false;
}

// ---- handlers ----

Result<json> QmpCapabilities(Machine&, const json& args) {
  if (!args.contains("enable")) return json::object();
  for (const json& capability : args["enable"]) {
    if (!capability.is_string()) {
      return Err("Invalid parameter type for 'enable', expected: string");
    }
    std::string name = capability.get<std::string>();
    // QMP's only capability; kite's greeting does not offer it (no out-of-band execution).
    if (name == "oob") return Err("Capability oob not available");
    return Err("Parameter 'enable' does not accept value '" + name + "'");
  }
  return json::object();
}

Result<json> QueryVersion(Machine&, const json&) {
  return VersionJson();
}

Result<json> QueryCommands(Machine&, const json&) {
  json list = json::array();
  for (const CommandSpec& spec : Commands()) list.push_back({{"name", spec.name}});
  return list;
}

Result<json> QueryStatus(Machine& machine, const json&) {
  RunState state = machine.state();
  return json{{"running", state == RunState::kRunning},
              {"singlestep", false},
              {"status", RunStateName(state)}};
}

Result<json> QueryName(Machine& machine, const json&) {
  json result = json::object();
  if (!machine.config().name.empty()) result["name"] = machine.config().name;
  return result;
}

Result<json> QueryKvm(Machine&, const json&) {
  return json{{"enabled", true}, {"present", true}};
}

Result<json> QueryCpusFast(Machine& machine, const json&) {
  json list = json::array();
  for (const CpuInfo& cpu : machine.Cpus()) list.push_back(CpuJson(cpu));
  return list;
}

Result<json> QueryMemorySizeSummary(Machine& machine, const json&) {
  return json{{"base-memory", machine.config().memory}, {"plugged-memory", 0}};
}

// QEMU's Memdev (qapi/machine.json) for the one RAM backend, plus memory-backend-memfd's
// "hugetlb" and "hugetlbsize". kite never asks for KSM merging nor excludes RAM from dumps;
// "reserve": the RAM is reserved when made (huge pages), not MAP_NORESERVE.
Result<json> QueryMemdev(Machine& machine, const json&) {
  const VmConfig& c = machine.config();
  const MemoryBacking& b = c.memory_backing;
  return json::array({json{{"id", "ram"},
                           {"size", c.memory},
                           {"merge", false},
                           {"dump", true},
                           {"prealloc", b.prealloc},
                           {"share", b.shared},
                           {"reserve", b.hugepage_size != 0},
                           {"host-nodes", json::array()},
                           {"policy", "default"},
                           {"hugetlb", b.hugepage_size != 0},
                           {"hugetlbsize", b.hugepage_size}}});
}

Result<json> QueryBlock(Machine& machine, const json&) {
  json list = json::array();
  for (const BlockInfo& block : machine.Blocks()) list.push_back(BlockJson(block));
  return list;
}

Result<json> QueryBlockstats(Machine& machine, const json&) {
  json list = json::array();
  for (const BlockStats& stats : machine.BlockStatistics()) list.push_back(BlockStatsJson(stats));
  return list;
}

Result<json> QueryKiteStats(Machine& machine, const json&) {
  return machine.Counters();
}

Result<json> Stop(Machine& machine, const json&) {
  RunState state = machine.state();
  // Idempotent as in QEMU: already stopped (or never started) gives {} and no STOP event.
  if (state != RunState::kRunning) return json::object();
  TRY(machine.Pause());
  return json::object();
}

Result<json> Cont(Machine& machine, const json&) {
  if (machine.state() == RunState::kRunning) return json::object();
  TRY(machine.Resume());
  return json::object();
}

Result<json> SystemPowerdown(Machine& machine, const json&) {
  TRY(machine.PowerButton());
  return json::object();
}

Result<json> SystemReset(Machine& machine, const json&) {
  TRY(machine.Reset());
  return json::object();
}

Result<json> Quit(Machine& machine, const json&) {
  machine.Quit();
  return json::object();
}

Result<json> SnapshotSave(Machine& machine, const json& args) {
  std::string path = TRY(CheckSnapshotPath(args["path"].get<std::string>()));
  TRY(machine.SaveSnapshot({path}));
  return json::object();
}

Result<json> HumanMonitorCommand(Machine& machine, const json& args) {
  std::istringstream words(args["command-line"].get<std::string>());
  std::vector<std::string> command;
  for (std::string word; words >> word;) command.push_back(word);
  if (command == std::vector<std::string>{"info", "status"}) {
    return json(InfoStatusText(machine.state()));
  }
  return Err("human-monitor-command: kite supports only 'info status' (got '" +
             args["command-line"].get<std::string>() + "'); use the QMP commands instead");
}

// ---- the table ----

constexpr std::array<ArgSpec, 1> kCapabilitiesArgs = {{{"enable", ArgType::kArray, false}}};
constexpr std::array<ArgSpec, 1> kBlockstatsArgs = {{{"query-nodes", ArgType::kBoolean, false}}};
constexpr std::array<ArgSpec, 1> kSnapshotArgs = {{{"path", ArgType::kString, true}}};
constexpr std::array<ArgSpec, 2> kHmpArgs = {
    {{"command-line", ArgType::kString, true}, {"cpu-index", ArgType::kInteger, false}}};

constexpr Speed kFast = Speed::kFast;
constexpr Speed kSlow = Speed::kSlow;

const CommandSpec kCommands[] = {
    {"qmp_capabilities", kCapabilitiesArgs, kFast, kAnyState, "", QmpCapabilities},
    {"query-version", {}, kFast, kAnyState, "", QueryVersion},
    {"query-commands", {}, kFast, kAnyState, "", QueryCommands},
    {"query-status", {}, kFast, kAnyState, "", QueryStatus},
    {"query-name", {}, kFast, kAnyState, "", QueryName},
    {"query-kvm", {}, kFast, kAnyState, "", QueryKvm},
    {"query-cpus-fast", {}, kFast, kAnyState, "", QueryCpusFast},
    {"query-memory-size-summary", {}, kFast, kAnyState, "", QueryMemorySizeSummary},
    {"query-memdev", {}, kFast, kAnyState, "", QueryMemdev},
    {"query-block", {}, kFast, kAnyState, "", QueryBlock},
    {"query-blockstats", kBlockstatsArgs, kFast, kAnyState, "", QueryBlockstats},
    {"x-query-kite-stats", {}, kFast, kAnyState, "", QueryKiteStats},
    {"human-monitor-command", kHmpArgs, kFast, kAnyState, "", HumanMonitorCommand},
    {"stop", {}, kSlow, kLive, kNotLive, Stop},
    {"cont", {}, kSlow, kLive, kNotLive, Cont},
    {"system_powerdown", {}, kSlow, kLive, kNotLive, SystemPowerdown},
    {"system_reset", {}, kSlow, kLive, kNotLive, SystemReset},
    {"quit", {}, kSlow, kAnyState, "", Quit},
    {"x-vm-snapshot-save", kSnapshotArgs, kSlow, StateBit(RunState::kPaused), "VM must be paused",
     SnapshotSave},
    // Disks and NICs of a running (or paused) VM: qmp_disk_commands.cc.
    {"blockdev-snapshot-sync", kSnapshotSyncArgs, kSlow, kLive, kNotLive, BlockdevSnapshotSync},
    {"block_resize", kResizeArgs, kSlow, kLive, kNotLive, BlockResize},
    {"set_link", kSetLinkArgs, kSlow, kLive, kNotLive, SetLink},
    {"announce-self", kAnnounceArgs, kSlow, kLive, kNotLive, AnnounceSelf},
    {"block_set_io_throttle", kBlockThrottleArgs, kSlow, kLive, kNotLive, BlockSetIoThrottle},
    {"x-kite-set-net-throttle", kNetThrottleArgs, kSlow, kLive, kNotLive, SetNetThrottle},
    {"x-kite-query-net-throttle", kNetThrottleQueryArgs, kFast, kAnyState, "", QueryNetThrottle},
    {"device_add", kDeviceAddArgs, kSlow, kLive, kNotLive, DeviceAdd},
    {"device_del", kDeviceDelArgs, kSlow, kLive, kNotLive, DeviceDel},
    {"block-commit", kCommitArgs, kSlow, kLive, kNotLive, BlockCommit},
    {"block-stream", kStreamArgs, kSlow, kLive, kNotLive, BlockStream},
    {"drive-backup", kBackupArgs, kSlow, kLive, kNotLive, DriveBackup},
    {"query-block-jobs", {}, kFast, kAnyState, "", QueryBlockJobs},
    {"block-job-cancel", kJobCancelArgs, kSlow, kAnyState, "", BlockJobCancel},
    {"block-job-pause", kJobArgs, kSlow, kAnyState, "", BlockJobPause},
    {"block-job-resume", kJobArgs, kSlow, kAnyState, "", BlockJobResume},
    {"block-job-complete", kJobArgs, kSlow, kAnyState, "", BlockJobComplete},
    {"block-job-set-speed", kJobSpeedArgs, kSlow, kAnyState, "", BlockJobSetSpeed},
    // The memory balloon: qmp_balloon_commands.cc.
    {"balloon", kBalloonArgs, kSlow, kLive, kNotLive, Balloon},
    {"query-balloon", {}, kFast, kAnyState, "", QueryBalloon},
    {"qom-get", kQomGetArgs, kFast, kAnyState, "", QomGet},
    {"qom-set", kQomSetArgs, kSlow, kLive, kNotLive, QomSet},
};

}  // namespace

std::span<const CommandSpec> Commands() {
  return kCommands;
}

const CommandSpec* FindCommand(std::string_view name) {
  for (const CommandSpec& spec : Commands()) {
    if (name == spec.name) return &spec;
  }
  return nullptr;
}

Result<void> CheckArguments(const CommandSpec& spec, const json& args) {
  // QEMU's order: each declared parameter (missing, wrong type), then unexpected ones.
  for (const ArgSpec& arg : spec.args) {
    auto it = args.find(arg.name);
    if (it == args.end()) {
      if (arg.required) return Err(std::string("Parameter '") + arg.name + "' is missing");
      continue;
    }
    if (!HasType(*it, arg.type)) {
      return Err(std::string("Invalid parameter type for '") + arg.name +
                 "', expected: " + TypeName(arg.type));
    }
  }
  for (const auto& [key, value] : args.items()) {
    bool known = false;
    for (const ArgSpec& arg : spec.args) known = known || key == arg.name;
    if (!known) return Err("Parameter '" + key + "' is unexpected");
  }
  return {};
}

Result<void> CheckState(const CommandSpec& spec, RunState state) {
  if ((spec.allowed & StateBit(state)) == 0) return Err(spec.state_error);
  return {};
}

Result<json> RunCommand(const CommandSpec& spec, Machine& machine, const json& args) {
  TRY(CheckArguments(spec, args));
  TRY(CheckState(spec, machine.state()));
  return spec.handler(machine, args);
}

}  // namespace kite::qmp
