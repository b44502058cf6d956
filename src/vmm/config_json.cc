// VmConfig to the --config JSON schema. See config_json.h; the reader is vmm/cli.cc and
// vmm/device_options.cc, and every key here must be one they accept.
#include "vmm/config_json.h"

#include "vmm/balloon_options.h"
#include "vmm/host_resources.h"
#include "vmm/vsock_options.h"

namespace kite {
namespace {

using json = nlohmann::json;

std::string SerialText(const VmConfig& c) {
  switch (c.serial) {
    case SerialMode::kStdio:
      return "stdio";
    case SerialMode::kFile:
      return "file:" + c.serial_path;
    case SerialMode::kNone:
      return "none";
  }
  return "none";
}

// The rate limit's keys that are set (none: an unlimited device looks as before).
void ThrottleToJson(const Throttle& r, const std::string& bytes, const std::string& ops,
                    json& out) {
  for (auto [key, value] : {std::pair<std::string, uint64_t>{bytes, r.bps},
                            {bytes + "_max", r.bps_max},
                            {bytes + "_burst", r.bps_burst},
                            {ops, r.ops},
                            {ops + "_max", r.ops_max},
                            {ops + "_burst", r.ops_burst}}) {
    if (value != 0) out[key] = value;
  }
}

json DiskToJson(const DiskConfig& d) {
  json out = {
      {"path", d.path}, {"readonly", d.read_only}, {"cache", d.cache}, {"queues", d.queues}};
  // An empty format means "probe" (read-only disks only); the reader takes it as absent.
  if (!d.format.empty()) out["format"] = d.format;
  if (!d.serial.empty()) out["serial"] = d.serial;
  if (!d.id.empty()) out["id"] = d.id;  // empty: the default name (vda, vdb, ...)
  if (!d.throttle_group.empty()) out["group"] = d.throttle_group;
  if (!d.data_file.empty()) out["data_file"] = d.data_file;
  ThrottleToJson(d.throttle.total, "bps", "iops", out);
  ThrottleToJson(d.throttle.read, "bps_rd", "iops_rd", out);
  ThrottleToJson(d.throttle.write, "bps_wr", "iops_wr", out);
  return out;
}

json NetToJson(const NetConfig& n) {
  const char* backend = n.backend == NetBackendKind::kTap      ? "tap"
                        : n.backend == NetBackendKind::kDgram  ? "dgram"
                        : n.backend == NetBackendKind::kStream ? "stream"
                                                               : "user";
  json out = {{"backend", backend}};
  if (!n.socket_path.empty()) out["path"] = n.socket_path;
  if (!n.remote.empty()) out["remote"] = n.remote;
  if (n.server) out["server"] = true;
  if (n.mtu != 0) out["mtu"] = n.mtu;
  if (!n.tap.empty()) out["tap"] = n.tap;
  if (!n.bridge.empty()) out["bridge"] = n.bridge;
  if (!n.mac.empty()) out["mac"] = n.mac;
  if (!n.hostfwd.empty()) out["hostfwd"] = n.hostfwd;
  if (!n.id.empty()) out["id"] = n.id;  // empty: the default name (net0, net1, ...)
  if (n.queues != 1) out["queues"] = n.queues;
  if (n.mac_pinning) out["mac_pinning"] = true;
  ThrottleToJson(n.throttle, "bps", "pps", out);
  return out;
}

}  // namespace

json ConfigToJson(const VmConfig& c) {
  json disks = json::array();
  for (const DiskConfig& d : c.disks) disks.push_back(DiskToJson(d));
  json nets = json::array();
  for (const NetConfig& n : c.nets) nets.push_back(NetToJson(n));
  json out = {{"kernel", c.kernel},
              {"initrd", c.initrd},
              {"cmdline", c.cmdline},
              {"cpus", c.cpus},
              {"memory",
               c.memory_backing == MemoryBacking{} ? json(c.memory) : json(FormatMemoryOption(c))},
              {"serial", SerialText(c)},
              {"acpi", c.acpi},
              {"on_reboot", c.on_reboot == OnReboot::kRestart ? "restart" : "exit"},
              {"stats", c.stats},
              {"host_quirks", c.host_quirks},
              {"cpu_template", c.cpu_template},
              {"disks", std::move(disks)},
              {"nets", std::move(nets)},
              {"rng", c.rng},
              {"transport", c.transport == VirtioTransportKind::kPci ? "pci" : "mmio"},
              {"paused", c.start_paused}};
  if (c.balloon) out["balloon"] = cli::BalloonToJson(*c.balloon);
  if (!c.pci_slots.empty()) out["pci_slots"] = c.pci_slots;
  if (c.vsock) out["vsock"] = cli::VsockToJson(*c.vsock);
  if (!c.cpu_affinity.empty()) out["cpu_affinity"] = c.cpu_affinity;
  if (!c.emulator_affinity.empty()) out["emulator_affinity"] = c.emulator_affinity;
  if (c.unplug_timeout_ms != VmConfig{}.unplug_timeout_ms) {
    out["unplug_timeout_ms"] = c.unplug_timeout_ms;
  }
  if (!c.name.empty()) out["name"] = c.name;
  if (!c.api_sock.empty()) out["api_sock"] = c.api_sock;
  return out;
}

}  // namespace kite
