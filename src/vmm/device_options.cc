// Parsing and checking of the virtio device options. See device_options.h.
#include "vmm/device_options.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/key_values.h"

namespace kite::cli {
namespace {

using json = nlohmann::json;

constexpr uint32_t kMaxDiskQueues = 16;
constexpr uint32_t kMaxNetQueues = 16;  // virtio::kMaxNetQueuePairs
constexpr size_t kMaxSerialBytes = 20;  // VIRTIO_BLK_ID_BYTES
constexpr size_t kMaxIfNameBytes = 15;  // IFNAMSIZ - 1

Result<bool> ParseOnOff(const std::string& key, const std::string& value) {
  if (value == "on" || value == "true" || value == "yes") return true;
  if (value == "off" || value == "false" || value == "no") return false;
  return Err(key + "=" + value + ": expected on or off");
}

Result<uint32_t> ParseQueues(const std::string& value) {
  uint32_t n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || end != value.data() + value.size() || value.empty()) {
    return Err("queues=" + value + ": not a number");
  }
  return n;
}

// A rate limit's keys: BYTES (bps, bps_rd, ...), OPS (iops, pps, iops_rd, ...), each with _max
// and _burst. Returns the field `key` sets, or nullptr.
uint64_t* ThrottleField(const std::string& key, const std::string& bytes, const std::string& ops,
                        Throttle& r) {
  if (key == bytes) return &r.bps;
  if (key == bytes + "_max") return &r.bps_max;
  if (key == bytes + "_burst") return &r.bps_burst;
  if (key == ops) return &r.ops;
  if (key == ops + "_max") return &r.ops_max;
  if (key == ops + "_burst") return &r.ops_burst;
  return nullptr;
}

// A disk's rate limit keys: kite's names (QEMU's block_set_io_throttle names: bps, bps_rd,
// bps_wr, iops, ..., each with _max; kite's _burst), and QEMU's -drive throttling.* aliases.
uint64_t* DiskThrottleField(const std::string& key, DiskThrottle& t) {
  struct Part {
    const char* qemu;  // throttling.bps-QEMU, throttling.iops-QEMU
    const char* kite;  // bpsKITE, iopsKITE
    Throttle& limit;
  };
  for (const Part& p :
       {Part{"total", "", t.total}, Part{"read", "_rd", t.read}, Part{"write", "_wr", t.write}}) {
    const std::string bps = std::string("bps") + p.kite, iops = std::string("iops") + p.kite;
    if (uint64_t* field = ThrottleField(key, bps, iops, p.limit)) return field;
    const std::string alias = std::string("-") + p.qemu;
    if (key == "throttling.bps" + alias) return &p.limit.bps;
    if (key == "throttling.bps" + alias + "-max") return &p.limit.bps_max;
    if (key == "throttling.iops" + alias) return &p.limit.ops;
    if (key == "throttling.iops" + alias + "-max") return &p.limit.ops_max;
  }
  return nullptr;
}

uint64_t* NetThrottleField(const std::string& key, Throttle& r) {
  return ThrottleField(key, "bps", "pps", r);
}

Result<uint64_t> ParseCount(const std::string& key, const std::string& value) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec == std::errc::result_out_of_range) return Err(key + "=" + value + ": out of range");
  if (ec != std::errc() || end != value.data() + value.size() || value.empty()) {
    return Err(key + "=" + value + ": not a non-negative integer");
  }
  return n;
}

// A JSON config's rate limit value: a non-negative integer.
Result<uint64_t> JsonCount(const json& v, const std::string& key) {
  if (!v.is_number_unsigned()) return Err("'" + key + "' must be a non-negative integer");
  return v.get<uint64_t>();
}

Result<void> ApplyDiskKey(const KeyValue& kv, DiskConfig& disk) {
  if (!kv.has_value) return Err("'" + kv.key + "' needs a value (" + kv.key + "=...)");
  if (uint64_t* field = DiskThrottleField(kv.key, disk.throttle)) {
    *field = TRY(ParseCount(kv.key, kv.value));
    return {};
  }
  if (kv.key == "path") {
    disk.path = kv.value;
  } else if (kv.key == "format") {
    disk.format = kv.value;
  } else if (kv.key == "readonly") {
    disk.read_only = TRY(ParseOnOff(kv.key, kv.value));
  } else if (kv.key == "cache") {
    disk.cache = kv.value;
  } else if (kv.key == "serial") {
    disk.serial = kv.value;
  } else if (kv.key == "queues") {
    disk.queues = TRY(ParseQueues(kv.value));
  } else if (kv.key == "id") {
    disk.id = kv.value;
  } else if (kv.key == "group" || kv.key == "throttling.group") {
    disk.throttle_group = kv.value;
  } else if (kv.key == "data_file" || kv.key == "data-file") {
    disk.data_file = kv.value;
  } else {
    return Err("unknown disk setting '" + kv.key +
               "' (expected path, format, readonly, cache, serial, queues, id, group, data_file, "
               "bps, "
               "iops, bps_rd, iops_rd, bps_wr, iops_wr, each also with _max and _burst)");
  }
  return {};
}

Result<void> ApplyNetKey(const KeyValue& kv, bool first, NetConfig& net) {
  if (first && kv.key == "user" && !kv.has_value) {
    net.backend = NetBackendKind::kUser;
  } else if (first && kv.key == "tap") {
    net.backend = NetBackendKind::kTap;
    net.tap = kv.value;  // "tap" alone: a tap the kernel names (with bridge=)
  } else if (first && (kv.key == "dgram" || kv.key == "stream") && kv.has_value) {
    net.backend = kv.key == "dgram" ? NetBackendKind::kDgram : NetBackendKind::kStream;
    net.socket_path = kv.value;
  } else if (kv.key == "bridge" && kv.has_value) {
    net.bridge = kv.value;
  } else if (first) {
    return Err("'" + kv.key +
               "': a network starts with user, tap=NAME, tap (with bridge=), dgram=PATH or "
               "stream=PATH");
  } else if ((kv.key == "mtu" || kv.key == "host_mtu") && kv.has_value) {
    net.mtu =
        static_cast<uint32_t>(std::min<uint64_t>(TRY(ParseCount(kv.key, kv.value)), 1u << 20));
  } else if (kv.key == "remote" && kv.has_value) {
    net.remote = kv.value;
  } else if (kv.key == "server") {
    net.server = TRY(ParseOnOff(kv.key, kv.value));
  } else if (kv.key == "mac" && kv.has_value) {
    net.mac = kv.value;
  } else if (kv.key == "hostfwd" && kv.has_value) {
    net.hostfwd.push_back(kv.value);
  } else if (kv.key == "id" && kv.has_value) {
    net.id = kv.value;
  } else if (kv.key == "queues" && kv.has_value) {
    net.queues = TRY(ParseQueues(kv.value));
  } else if (kv.key == "mac_pinning") {
    net.mac_pinning = TRY(ParseOnOff(kv.key, kv.value));
  } else if (uint64_t* field = NetThrottleField(kv.key, net.throttle)) {
    if (!kv.has_value) return Err("'" + kv.key + "' needs a value (" + kv.key + "=...)");
    *field = TRY(ParseCount(kv.key, kv.value));
  } else {
    return Err("unknown network setting '" + kv.key +
               "' (expected mac=, mtu=, hostfwd=, bridge=, remote=, server=, id=, queues=, "
               "mac_pinning=, bps=, bps_max=, bps_burst=, pps=, pps_max=, pps_burst=)");
  }
  return {};
}

Result<std::string> JsonText(const json& v, const std::string& key) {
  if (!v.is_string()) return Err("'" + key + "' must be a string");
  return v.get<std::string>();
}

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

Result<DiskConfig> ParseDiskOption(std::string_view text) {
  DiskConfig disk;
  for (const KeyValue& kv : SplitKeyValues(text)) TRY(ApplyDiskKey(kv, disk));
  TRY(ValidateDisk(disk));
  return disk;
}

Result<NetConfig> ParseNetOption(std::string_view text) {
  NetConfig net;
  std::vector<KeyValue> items = SplitKeyValues(text);
  for (size_t i = 0; i < items.size(); ++i) TRY(ApplyNetKey(items[i], i == 0, net));
  TRY(ValidateNet(net));
  return net;
}

bool IsDiskSetting(const std::string& key) {
  DiskThrottle scratch;
  return key == "path" || key == "format" || key == "readonly" || key == "cache" ||
         key == "serial" || key == "queues" || key == "group" || key == "data_file" ||
         key == "data-file" || DiskThrottleField(key, scratch) != nullptr;
}

bool IsNetSetting(const std::string& key) {
  Throttle scratch;
  return key == "backend" || key == "tap" || key == "bridge" || key == "path" || key == "remote" ||
         key == "server" || key == "mac" || key == "hostfwd" || key == "mtu" || key == "host_mtu" ||
         key == "queues" || key == "mac_pinning" || NetThrottleField(key, scratch) != nullptr;
}

Result<DiskConfig> DiskFromJson(const json& v, const std::string& base_dir) {
  if (!v.is_object()) return Err("each disk must be an object");
  DiskConfig disk;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& key = it.key();
    if (key == "readonly") {
      if (!it->is_boolean()) return Err("'readonly' must be true or false");
      disk.read_only = it->get<bool>();
    } else if (key == "queues") {
      if (!it->is_number_unsigned()) return Err("'queues' must be a positive integer");
      disk.queues = static_cast<uint32_t>(std::min<uint64_t>(it->get<uint64_t>(), UINT32_MAX));
    } else if (uint64_t* field = DiskThrottleField(key, disk.throttle)) {
      *field = TRY(JsonCount(*it, key));
    } else {
      // Not TRY inside the braces: returning from there would skip the destructor of the
      // key already copied into the half-built KeyValue (a leak, found by config_json_fuzzer).
      std::string value = TRY(JsonText(*it, key));
      TRY(ApplyDiskKey({key, std::move(value), true}, disk));
    }
  }
  for (std::string* file : {&disk.path, &disk.data_file}) {  // relative to the config file
    if (!base_dir.empty() && !file->empty() && file->front() != '/') {
      *file = (std::filesystem::path(base_dir) / *file).string();
    }
  }
  TRY(ValidateDisk(disk));
  return disk;
}

Result<NetConfig> NetFromJson(const json& v) {
  if (!v.is_object()) return Err("each network must be an object");
  NetConfig net;
  bool have_backend = false;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& key = it.key();
    if (key == "backend") {
      std::string b = TRY(JsonText(*it, key));
      if (b == "user") {
        net.backend = NetBackendKind::kUser;
      } else if (b == "tap") {
        net.backend = NetBackendKind::kTap;
      } else if (b == "dgram") {
        net.backend = NetBackendKind::kDgram;
      } else if (b == "stream") {
        net.backend = NetBackendKind::kStream;
      } else {
        return Err("'backend' must be \"user\", \"tap\", \"dgram\" or \"stream\"");
      }
      have_backend = true;
    } else if (key == "tap") {
      net.tap = TRY(JsonText(*it, key));
    } else if (key == "bridge") {
      net.bridge = TRY(JsonText(*it, key));
    } else if (key == "mtu") {
      net.mtu = static_cast<uint32_t>(std::min<uint64_t>(TRY(JsonCount(*it, key)), 1u << 20));
    } else if (key == "path") {
      net.socket_path = TRY(JsonText(*it, key));
    } else if (key == "remote") {
      net.remote = TRY(JsonText(*it, key));
    } else if (key == "server") {
      if (!it->is_boolean()) return Err("'server' must be true or false");
      net.server = it->get<bool>();
    } else if (key == "mac") {
      net.mac = TRY(JsonText(*it, key));
    } else if (key == "id") {
      net.id = TRY(JsonText(*it, key));
    } else if (key == "queues") {
      net.queues = static_cast<uint32_t>(std::min<uint64_t>(TRY(JsonCount(*it, key)), UINT32_MAX));
    } else if (key == "mac_pinning") {
      if (!it->is_boolean()) return Err("'mac_pinning' must be true or false");
      net.mac_pinning = it->get<bool>();
    } else if (key == "hostfwd") {
      if (!it->is_array()) return Err("'hostfwd' must be an array of strings");
      for (const json& rule : *it) net.hostfwd.push_back(TRY(JsonText(rule, "hostfwd")));
    } else if (uint64_t* field = NetThrottleField(key, net.throttle)) {
      *field = TRY(JsonCount(*it, key));
    } else {
      return Err(
          "unknown network key '" + key +
          "' (expected backend, tap, bridge, path, remote, server, mac, mtu, hostfwd, id, queues, "
          "mac_pinning, bps, "
          "bps_max, bps_burst, pps, "
          "pps_max, pps_burst)");
    }
  }
  if (!have_backend) return Err("a network needs \"backend\": \"user\" or \"tap\"");
  TRY(ValidateNet(net));
  return net;
}

Result<void> ValidateDeviceId(const std::string& id) {
  if (id.empty() || id.size() > kMaxDeviceIdBytes) {
    return Err("device id '" + id + "' must be 1 to " + std::to_string(kMaxDeviceIdBytes) +
               " characters");
  }
  // QEMU's rule for ids (qemu/id.c): a letter, then letters, digits, '-', '.', '_'.
  auto ok = [](char c, bool first) {
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    return alpha || (!first && ((c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'));
  };
  for (size_t i = 0; i < id.size(); ++i) {
    if (!ok(id[i], i == 0)) {
      return Err("device id '" + id +
                 "' must start with a letter and contain only letters, digits, '-', '.', '_'");
    }
  }
  return {};
}

std::string DiskId(const VmConfig& config, size_t index) {
  if (!config.disks[index].id.empty()) return config.disks[index].id;
  std::string id = "vd";
  // vda .. vdz, then vdaa, vdab, ... as Linux names them.
  if (index >= 26) id += static_cast<char>('a' + index / 26 - 1);
  return id + static_cast<char>('a' + index % 26);
}

std::string NetId(const VmConfig& config, size_t index) {
  if (!config.nets[index].id.empty()) return config.nets[index].id;
  return "net" + std::to_string(index);
}

Result<void> ValidateDeviceIds(const VmConfig& config) {
  std::vector<std::string> ids = {"com1", "i8042", "rtc", "boot-marker", "acpi-pm", "ged"};
  if (config.rng) ids.push_back("rng0");
  if (config.vsock) ids.push_back("vsock0");
  if (config.balloon) ids.push_back(config.balloon->id.empty() ? "balloon0" : config.balloon->id);
  auto add = [&](const std::string& id, bool user_given) -> Result<void> {
    if (user_given) TRY(ValidateDeviceId(id));
    for (const std::string& other : ids) {
      if (other == id) return Err("device id '" + id + "' is used twice");
    }
    ids.push_back(id);
    return {};
  };
  for (size_t i = 0; i < config.disks.size(); ++i) {
    TRY(add(DiskId(config, i), !config.disks[i].id.empty()));
  }
  for (size_t i = 0; i < config.nets.size(); ++i) {
    TRY(add(NetId(config, i), !config.nets[i].id.empty()));
  }
  // One MAC per NIC (C10): compared case-insensitively (ValidateNet fixed the form).
  std::vector<std::string> macs;
  for (size_t i = 0; i < config.nets.size(); ++i) {
    std::string mac = config.nets[i].mac;
    if (mac.empty()) continue;
    std::transform(mac.begin(), mac.end(), mac.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (std::find(macs.begin(), macs.end(), mac) != macs.end()) {
      return Err("net " + NetId(config, i) + ": MAC address " + config.nets[i].mac +
                 " is already used by another network device of this VM");
    }
    macs.push_back(mac);
  }
  return {};
}

Result<void> ValidateDisk(const DiskConfig& disk) {
  if (disk.path.empty()) return Err("disk: no path given (path=FILE)");
  const std::string who = "disk " + disk.path + ": ";
  if (!disk.format.empty() && disk.format != "raw" && disk.format != "qcow2" &&
      disk.format != "qed" && disk.format != "vmdk") {
    return Err(who + "format '" + disk.format + "' is not raw, qcow2, qed or vmdk");
  }
  if (disk.format == "qed" && !disk.read_only) {
    return Err(who +
               "QED disks are read-only in kite: add readonly=on (or convert the image "
               "to qcow2 with kite-img convert -O qcow2)");
  }
  if (disk.format == "vmdk" && !disk.read_only) {
    return Err(who +
               "VMDK disks are read-only in kite: add readonly=on, or put a qcow2 overlay "
               "over it (kite-img create -f qcow2 -b " +
               disk.path + " -F vmdk OVERLAY.qcow2) and use that");
  }
  if (disk.format.empty() && !disk.read_only) {
    return Err(who +
               "a writable disk needs format=raw or format=qcow2 (kite never guesses the "
               "format of an image the guest can write)");
  }
  if (disk.cache != "writeback" && disk.cache != "writethrough" && disk.cache != "none" &&
      disk.cache != "unsafe") {
    return Err(who + "cache '" + disk.cache +
               "' is not one of writeback, writethrough, none, unsafe");
  }
  if (disk.serial.size() > kMaxSerialBytes) {
    return Err(who + "serial '" + disk.serial + "' is longer than 20 bytes");
  }
  if (disk.queues < 1 || disk.queues > kMaxDiskQueues) {
    return Err(who + "queues=" + std::to_string(disk.queues) + " is out of range (1 to 16)");
  }
  TRY_CTX(ValidateDiskThrottle(disk.throttle), "disk " + disk.path);
  TRY_CTX(ValidateThrottleGroupName(disk.throttle_group, /*may_be_empty=*/true),
          "disk " + disk.path);
  return {};
}

Result<void> ValidateThrottleGroupName(const std::string& name, bool may_be_empty) {
  if (name.empty() && may_be_empty) return {};
  bool ok = !name.empty() && name.size() <= 64;
  for (char c : name) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.');
  }
  if (!ok) {
    return Err("throttle group '" + name +
               "' is not a name (1 to 64 letters, digits, '-', '_' or '.')");
  }
  return {};
}

Result<void> ValidateRateLimit(const Throttle& r, const std::string& bytes,
                               const std::string& ops) {
  struct Bucket {
    std::string name;
    uint64_t rate, max, burst;
  };
  for (const Bucket& b :
       {Bucket{bytes, r.bps, r.bps_max, r.bps_burst}, Bucket{ops, r.ops, r.ops_max, r.ops_burst}}) {
    for (auto [suffix, value] :
         {std::pair<const char*, uint64_t>{"", b.rate}, {"_max", b.max}, {"_burst", b.burst}}) {
      if (value > kMaxRateLimitValue) {
        return Err(b.name + suffix + "=" + std::to_string(value) + " is out of range (0 to " +
                   std::to_string(kMaxRateLimitValue) + ")");
      }
    }
    if ((b.max != 0 || b.burst != 0) && b.rate == 0) {
      return Err(b.name + (b.max != 0 ? "_max" : "_burst") + " needs " + b.name +
                 " (a rate to refill at)");
    }
    if (b.max != 0 && b.max < b.rate) {
      return Err(b.name + "_max=" + std::to_string(b.max) + " is lower than " + b.name + "=" +
                 std::to_string(b.rate) + " (the bucket holds at least one second's worth)");
    }
  }
  return {};
}

Result<void> ValidateDiskThrottle(const DiskThrottle& t) {
  TRY(ValidateRateLimit(t.total, "bps", "iops"));
  TRY(ValidateRateLimit(t.read, "bps_rd", "iops_rd"));
  TRY(ValidateRateLimit(t.write, "bps_wr", "iops_wr"));
  // QEMU's rule: one kind (bytes, operations) is limited either in total or per direction.
  if (t.total.bps != 0 && (t.read.bps != 0 || t.write.bps != 0)) {
    return Err("bps and bps_rd/bps_wr cannot be used at the same time");
  }
  if (t.total.ops != 0 && (t.read.ops != 0 || t.write.ops != 0)) {
    return Err("iops and iops_rd/iops_wr cannot be used at the same time");
  }
  return {};
}

bool IsValidMac(std::string_view text) {
  if (text.size() != 17) return false;
  bool all_zero = true;
  for (size_t i = 0; i < 17; ++i) {
    if (i % 3 == 2) {
      if (text[i] != ':') return false;
    } else {
      if (!IsHex(text[i])) return false;
      if (text[i] != '0') all_zero = false;
    }
  }
  int first = std::stoi(std::string(text.substr(0, 2)), nullptr, 16);
  return !all_zero && (first & 1) == 0;  // bit 0 of the first byte: multicast
}

Result<void> ValidateNet(const NetConfig& net) {
  auto bad_name = [](const std::string& name) {
    return name.size() > kMaxIfNameBytes || name.find('/') != std::string::npos || name == "." ||
           name == "..";
  };
  if (net.backend == NetBackendKind::kTap) {
    if ((net.tap.empty() && net.bridge.empty()) || net.tap.size() > kMaxIfNameBytes) {
      return Err("net: tap interface name '" + net.tap +
                 "' must be 1 to 15 bytes (only with bridge= may it be left out)");
    }
    if (bad_name(net.tap)) return Err("net: '" + net.tap + "' is not a valid interface name");
    if (!net.bridge.empty() && bad_name(net.bridge)) {
      return Err("net: bridge '" + net.bridge + "' is not a valid interface name");
    }
    if (!net.hostfwd.empty()) return Err("net: hostfwd applies to user networking only");
  } else if (!net.bridge.empty()) {
    return Err("net: bridge= applies to tap networking only (--net tap,bridge=BR)");
  }
  const bool socket =
      net.backend == NetBackendKind::kDgram || net.backend == NetBackendKind::kStream;
  if (socket) {
    constexpr size_t kMaxSocketPath = 107;  // sockaddr_un.sun_path, NUL included
    for (const std::string* path : {&net.socket_path, &net.remote}) {
      if (path->size() > kMaxSocketPath) {
        return Err("net: socket path '" + *path + "' is longer than 107 bytes");
      }
    }
    if (net.socket_path.empty()) return Err("net: dgram= and stream= need a socket path");
    if (net.backend == NetBackendKind::kDgram && net.remote.empty()) {
      return Err("net: dgram=" + net.socket_path + " needs remote=PATH (the peer's socket)");
    }
    if (net.backend == NetBackendKind::kStream && !net.remote.empty()) {
      return Err("net: remote= applies to dgram only (stream=PATH connects to PATH)");
    }
    if (!net.hostfwd.empty()) return Err("net: hostfwd applies to user networking only");
  } else if (!net.remote.empty() || net.server || !net.socket_path.empty()) {
    return Err("net: remote=, server= and a socket path apply to dgram= and stream= only");
  }
  if (net.queues < 1 || net.queues > kMaxNetQueues) {
    return Err("net: queues=" + std::to_string(net.queues) + " is out of range (1 to 16)");
  }
  if (net.queues > 1 && net.backend != NetBackendKind::kTap) {
    return Err("net: queues=" + std::to_string(net.queues) +
               " needs a tap (user, dgram and stream networks have one queue pair)");
  }
  if (net.mtu != 0 && (net.mtu < 68 || net.mtu > 65535)) {
    return Err("net: mtu=" + std::to_string(net.mtu) + " (expected 68 to 65535)");
  }
  if (!net.mac.empty() && !IsValidMac(net.mac)) {
    return Err("net: mac '" + net.mac +
               "' is not a unicast address like 52:54:00:12:34:56 (six hex bytes)");
  }
  TRY_CTX(ValidateRateLimit(net.throttle, "bps", "pps"), "net");
  return {};
}

}  // namespace kite::cli
