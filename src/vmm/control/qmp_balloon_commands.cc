// The balloon's QMP commands: see qmp_balloon_commands.h. Argument checks first, with QEMU's
// texts (hw/virtio/virtio-balloon.c, softmmu/balloon.c), then kite::Machine.
#include "vmm/control/qmp_balloon_commands.h"

#include <cstdint>

namespace kite::qmp {
namespace {

using nlohmann::json;

// QEMU's balloon_stat_names, by VIRTIO_BALLOON_S_* tag (the last six since QEMU 9.1).
constexpr const char* kStatNames[] = {
    "stat-swap-in",      "stat-swap-out",     "stat-major-faults",     "stat-minor-faults",
    "stat-free-memory",  "stat-total-memory", "stat-available-memory", "stat-disk-caches",
    "stat-htlb-pgalloc", "stat-htlb-pgfail",  "stat-oom-kills",        "stat-alloc-stalls",
    "stat-async-scans",  "stat-direct-scans", "stat-async-reclaims",   "stat-direct-reclaims"};

constexpr const char* kStats = "guest-stats";
constexpr const char* kInterval = "guest-stats-polling-interval";

// The balloon a QOM path names: /machine/peripheral/<id> (QEMU's -device ...,id=<id>; for a
// virtio-pci balloon the properties are aliased there) or its /virtio-backend child. Returns
// QEMU's type name for error texts.
Result<std::string> BalloonType(Machine& machine, const std::string& path,
                                const BalloonInfo& info) {
  const std::string peripheral = "/machine/peripheral/" + info.id;
  const bool pci = machine.config().transport == VirtioTransportKind::kPci;
  if (path == peripheral) return std::string(pci ? "virtio-balloon-pci" : "virtio-balloon-device");
  if (path == peripheral + "/virtio-backend") return std::string("virtio-balloon-device");
  return Err(ErrorKind::kDeviceNotFound, "Device '" + path + "' not found");
}

Result<BalloonInfo> BalloonAt(Machine& machine, const std::string& path) {
  Result<BalloonInfo> info = machine.Balloon();
  // Without a balloon, every path is one QEMU would not find.
  if (!info) return Err(ErrorKind::kDeviceNotFound, "Device '" + path + "' not found");
  return info;
}

}  // namespace

json GuestStatsJson(const BalloonInfo& info) {
  json stats = json::object();
  for (size_t tag = 0; tag < std::size(kStatNames); ++tag) {
    stats[kStatNames[tag]] = tag < info.stats.size() ? info.stats[tag] : UINT64_MAX;
  }
  return json{{"stats", std::move(stats)}, {"last-update", info.last_update}};
}

Result<json> Balloon(Machine& machine, const json& args) {
  int64_t value = args["value"].get<int64_t>();
  TRY(machine.Balloon());  // QEMU checks for the device first
  if (value <= 0) return Err("Parameter 'target' expects a size");
  TRY(machine.SetBalloon(static_cast<uint64_t>(value)));
  return json::object();
}

Result<json> QueryBalloon(Machine& machine, const json&) {
  BalloonInfo info = TRY(machine.Balloon());
  return json{{"actual", info.actual}};
}

Result<json> QomGet(Machine& machine, const json& args) {
  const std::string path = args["path"].get<std::string>();
  const std::string property = args["property"].get<std::string>();
  BalloonInfo info = TRY(BalloonAt(machine, path));
  std::string type = TRY(BalloonType(machine, path, info));
  if (property == kInterval) return json(info.stats_interval);
  if (property != kStats) return Err("Property '" + type + "." + property + "' not found");
  if (info.last_update == 0) return Err("guest hasn't updated any stats yet");
  return GuestStatsJson(info);
}

Result<json> QomSet(Machine& machine, const json& args) {
  const std::string path = args["path"].get<std::string>();
  const std::string property = args["property"].get<std::string>();
  BalloonInfo info = TRY(BalloonAt(machine, path));
  std::string type = TRY(BalloonType(machine, path, info));
  if (property == kStats) return Err("Property '" + type + "." + property + "' is not writable");
  if (property != kInterval) return Err("Property '" + type + "." + property + "' not found");
  const json& value = args["value"];
  if (!value.is_number_integer()) {
    return Err("Invalid parameter type for '" + property + "', expected: integer");
  }
  if (value.is_number_unsigned() ? value.get<uint64_t>() > UINT32_MAX
                                 : value.get<int64_t>() > int64_t{UINT32_MAX}) {
    return Err("timer value is too big");
  }
  if (!value.is_number_unsigned() && value.get<int64_t>() < 0) {
    return Err("timer value must be greater than zero");
  }
  TRY(machine.SetBalloonStatsInterval(static_cast<uint32_t>(value.get<uint64_t>())));
  return json::object();
}

}  // namespace kite::qmp
