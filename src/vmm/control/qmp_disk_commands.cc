// The QMP disk and NIC commands over kite::Machine: see qmp_disk_commands.h. Argument types are
// checked by the table (qmp_commands.cc) before a handler runs; values are checked here.
#include "vmm/control/qmp_disk_commands.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <string>

#include "vmm/device_options.h"

namespace kite::qmp {
namespace {

using nlohmann::json;

std::string Str(const json& args, const char* name, std::string fallback = "") {
  return args.contains(name) ? args[name].get<std::string>() : fallback;
}

// A non-negative integer argument (speed, size); QEMU's text for a negative one.
Result<uint64_t> Unsigned(const json& args, const char* name, uint64_t fallback = 0) {
  if (!args.contains(name)) return fallback;
  if (args[name].is_number_unsigned()) return args[name].get<uint64_t>();
  return Err(std::string("Parameter '") + name + "' expects a non-negative value");
}

// mode "absolute-paths" (create) or "existing"; QEMU's NewImageMode.
Result<bool> ExistingMode(const json& args) {
  std::string mode = Str(args, "mode", "absolute-paths");
  if (mode == "existing") return true;
  if (mode == "absolute-paths") return false;
  return Err("Parameter 'mode' does not accept value '" + mode + "'");
}

// The members every job command has: job-id, device, speed.
Result<BlockJobRequest> JobRequest(BlockJobType type, const json& args) {
  BlockJobRequest request;
  request.type = type;
  request.job_id = Str(args, "job-id");
  request.device = args["device"].get<std::string>();
  request.speed = TRY(Unsigned(args, "speed"));
  return request;
}

Result<json> Action(Machine& machine, const json& args, BlockJobAction action) {
  TRY(machine.ControlBlockJob(args["device"].get<std::string>(), action));
  return json::object();
}

// device_add's "addr": QEMU's PCI address property, "SLOT" or "SLOT.0" in hexadecimal
// ("0x" optional). Function 0 only: each device is a single-function slot.
Result<uint32_t> PciAddr(const std::string& text) {
  std::string_view v = text;
  if (v.rfind("0x", 0) == 0 || v.rfind("0X", 0) == 0) v.remove_prefix(2);
  if (v.size() > 2 && v.substr(v.size() - 2) == ".0") v.remove_suffix(2);
  uint32_t slot = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), slot, 16);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size() || slot < 1 || slot > 31) {
    return Err("Property 'addr': '" + text +
               "' is not a PCI slot kite can fill (1-31 in hexadecimal, function 0)");
  }
  return slot;
}

// A disk path from a control client (BAD_INPUTS.md C12): absolute, not a symbolic link, not
// under /proc or /sys. The image opener then refuses anything but a regular file or a block
// device (I32).
Result<void> CheckDiskPath(const std::string& path) {
  if (path.empty() || path.front() != '/') {
    return Err("Property 'path': '" + path + "' must be an absolute path");
  }
  for (const char* dir : {"/proc/", "/sys/"}) {
    if (path.rfind(dir, 0) == 0) return Err("Property 'path': '" + path + "' is refused");
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    return Err("Property 'path': '" + path + "' is a symbolic link (give its target)");
  }
  return {};
}

}  // namespace

Result<json> DeviceAdd(Machine& machine, const json& args) {
  const std::string driver = args["driver"].get<std::string>();
  DeviceAddRequest request;
  bool (*takes)(const std::string& key) = nullptr;  // the settings this driver takes
  if (driver == "virtio-blk-pci") {
    request.driver = HotplugDriver::kVirtioBlk;
    takes = cli::IsDiskSetting;
  } else if (driver == "virtio-net-pci") {
    request.driver = HotplugDriver::kVirtioNet;
    takes = cli::IsNetSetting;
  } else {
    return Err("'" + driver +
               "' is not a valid device model name (kite hot-adds virtio-blk-pci and "
               "virtio-net-pci)");
  }
  json settings = json::object();
  for (const auto& [key, value] : args.items()) {
    if (key == "driver" || key == "id" || key == "bus" || key == "addr") continue;
    if (!takes(key)) {
      return Err("Property '" + driver + "." + key + "' not found");
    }
    settings[key] = value;
  }
  if (args.contains("bus") && args["bus"] != "pci.0") {
    return Err("Bus '" + args["bus"].get<std::string>() + "' not found (kite has pci.0)");
  }
  if (args.contains("addr")) request.slot = TRY(PciAddr(args["addr"].get<std::string>()));
  const std::string id = Str(args, "id");
  if (id.empty()) return Err("device_add: Parameter 'id' is missing (device_del needs it)");
  if (request.driver == HotplugDriver::kVirtioBlk) {
    TRY(CheckDiskPath(Str(settings, "path")));
    request.disk = TRY_CTX(cli::DiskFromJson(settings, ""), "device_add " + id);
    request.disk.id = id;
  } else {
    if (!settings.contains("backend")) settings["backend"] = "user";
    request.net = TRY_CTX(cli::NetFromJson(settings), "device_add " + id);
    request.net.id = id;
  }
  TRY(machine.AddDevice(request));
  return json::object();
}

Result<json> DeviceDel(Machine& machine, const json& args) {
  TRY(machine.RemoveDevice(args["id"].get<std::string>()));
  return json::object();
}

Result<json> BlockdevSnapshotSync(Machine& machine, const json& args) {
  DiskSnapshotOptions options;
  options.device = args["device"].get<std::string>();
  options.file = args["snapshot-file"].get<std::string>();
  options.format = Str(args, "format", "qcow2");
  options.existing = TRY(ExistingMode(args));
  TRY(machine.SnapshotDisk(options));
  return json::object();
}

Result<json> BlockResize(Machine& machine, const json& args) {
  uint64_t size = TRY(Unsigned(args, "size"));
  TRY(machine.ResizeDisk(args["device"].get<std::string>(), size));
  return json::object();
}

Result<json> SetLink(Machine& machine, const json& args) {
  TRY(machine.SetLink(args["name"].get<std::string>(), args["up"].get<bool>()));
  return json::object();
}

Result<json> AnnounceSelf(Machine& machine, const json& args) {
  AnnounceRequest request;
  auto field = [&](const char* name, uint32_t* out) -> Result<void> {
    uint64_t value = TRY(Unsigned(args, name, *out));
    *out = static_cast<uint32_t>(std::min<uint64_t>(value, UINT32_MAX));
    return {};
  };
  TRY(field("initial", &request.initial));
  TRY(field("max", &request.max));
  TRY(field("rounds", &request.rounds));
  TRY(field("step", &request.step));
  if (args.contains("interfaces")) {
    for (const json& id : args["interfaces"]) {
      if (!id.is_string()) return Err("Parameter 'interfaces' expects a list of strings");
      request.interfaces.push_back(id.get<std::string>());
    }
  }
  TRY(machine.AnnounceSelf(request));
  return json::object();
}

namespace {

// A Throttle from the six arguments named (bytes and ops rate, bucket size, burst), each
// optional and unsigned.
struct ThrottleNames {
  const char *bps, *ops, *bps_max, *ops_max, *bps_burst, *ops_burst;
};
Result<Throttle> ThrottleArgs(const json& args, const ThrottleNames& n) {
  Throttle limit;
  limit.bps = TRY(Unsigned(args, n.bps));
  limit.ops = TRY(Unsigned(args, n.ops));
  limit.bps_max = TRY(Unsigned(args, n.bps_max));
  limit.ops_max = TRY(Unsigned(args, n.ops_max));
  limit.bps_burst = TRY(Unsigned(args, n.bps_burst));
  limit.ops_burst = TRY(Unsigned(args, n.ops_burst));
  return limit;
}

}  // namespace

Result<json> BlockSetIoThrottle(Machine& machine, const json& args) {
  if (args.contains("device") == args.contains("id")) {
    return Err("Need exactly one of 'device' and 'id'");
  }
  DiskThrottle limit;
  limit.total = TRY(ThrottleArgs(
      args, {"bps", "iops", "bps_max", "iops_max", "x-kite-bps-burst", "x-kite-iops-burst"}));
  limit.read = TRY(ThrottleArgs(args, {"bps_rd", "iops_rd", "bps_rd_max", "iops_rd_max",
                                       "x-kite-bps-rd-burst", "x-kite-iops-rd-burst"}));
  limit.write = TRY(ThrottleArgs(args, {"bps_wr", "iops_wr", "bps_wr_max", "iops_wr_max",
                                        "x-kite-bps-wr-burst", "x-kite-iops-wr-burst"}));
  std::string device = args.contains("id") ? Str(args, "id") : Str(args, "device");
  std::optional<std::string> group;
  if (args.contains("group")) group = Str(args, "group");
  TRY(machine.SetDiskThrottle(device, limit, group));
  return json::object();
}

Result<json> SetNetThrottle(Machine& machine, const json& args) {
  Throttle limit =
      TRY(ThrottleArgs(args, {"bps", "pps", "bps_max", "pps_max", "bps_burst", "pps_burst"}));
  TRY(machine.SetNetThrottle(Str(args, "id"), limit));
  return json::object();
}

Result<json> QueryNetThrottle(Machine& machine, const json& args) {
  const std::string id = Str(args, "id");
  json list = json::array();
  for (const NetThrottleInfo& nic : machine.NetThrottles()) {
    if (!id.empty() && nic.id != id) continue;
    const Throttle& t = nic.throttle;
    list.push_back({{"id", nic.id},
                    {"bps", t.bps},
                    {"bps_max", t.bps_max},
                    {"bps_burst", t.bps_burst},
                    {"pps", t.ops},
                    {"pps_max", t.ops_max},
                    {"pps_burst", t.ops_burst}});
  }
  if (!id.empty() && list.empty()) {
    return Err(ErrorKind::kDeviceNotFound, "Device '" + id + "' not found");
  }
  return list;
}

Result<json> BlockCommit(Machine& machine, const json& args) {
  BlockJobRequest request = TRY(JobRequest(BlockJobType::kCommit, args));
  request.base = Str(args, "base");
  request.top = Str(args, "top");
  TRY(machine.StartBlockJob(request));
  return json::object();
}

Result<json> BlockStream(Machine& machine, const json& args) {
  BlockJobRequest request = TRY(JobRequest(BlockJobType::kStream, args));
  request.base = Str(args, "base");
  TRY(machine.StartBlockJob(request));
  return json::object();
}

Result<json> DriveBackup(Machine& machine, const json& args) {
  std::string sync = args["sync"].get<std::string>();
  if (sync != "full") {
    return Err("drive-backup: sync mode '" + sync + "' is not supported (kite copies \"full\")");
  }
  BlockJobRequest request = TRY(JobRequest(BlockJobType::kBackup, args));
  request.target = args["target"].get<std::string>();
  request.format = Str(args, "format", "qcow2");
  request.existing = TRY(ExistingMode(args));
  TRY(machine.StartBlockJob(request));
  return json::object();
}

Result<json> QueryBlockJobs(Machine& machine, const json&) {
  json list = json::array();
  for (const BlockJobInfo& job : machine.BlockJobs()) {
    list.push_back({{"type", job.type},
                    {"device", job.device},
                    {"len", job.len},
                    {"offset", job.offset},
                    {"busy", job.busy},
                    {"paused", job.paused},
                    {"speed", job.speed},
                    {"io-status", "ok"},
                    {"ready", job.ready},
                    {"status", job.status},
                    {"auto-finalize", true},
                    {"auto-dismiss", true}});
  }
  return list;
}

Result<json> BlockJobCancel(Machine& machine, const json& args) {
  bool force = args.contains("force") && args["force"].get<bool>();
  return Action(machine, args, force ? BlockJobAction::kForceCancel : BlockJobAction::kCancel);
}

Result<json> BlockJobPause(Machine& machine, const json& args) {
  return Action(machine, args, BlockJobAction::kPause);
}

Result<json> BlockJobResume(Machine& machine, const json& args) {
  return Action(machine, args, BlockJobAction::kResume);
}

Result<json> BlockJobComplete(Machine& machine, const json& args) {
  return Action(machine, args, BlockJobAction::kComplete);
}

Result<json> BlockJobSetSpeed(Machine& machine, const json& args) {
  uint64_t speed = TRY(Unsigned(args, "speed"));
  TRY(machine.SetBlockJobSpeed(args["device"].get<std::string>(), speed));
  return json::object();
}

}  // namespace kite::qmp
