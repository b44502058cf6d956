// The QMP disk and NIC commands over kite::Machine: see qmp_disk_commands.h. Argument types are
// checked by the table (qmp_commands.cc) before a handler runs; values are checked here.
#include "vmm/control/qmp_disk_commands.h"

#include <string>

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

}  // namespace

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
