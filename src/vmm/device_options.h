// The virtio device options of `kite run` and the JSON config: --disk, --net and their
// "disks" / "nets" arrays, parsed into DiskConfig / NetConfig (include/kite/kite.h) and
// checked. Pure code. docs/CLI.md is the user reference.
//
//   --disk
//   path=FILE[,format=raw|qcow2|qed|vmdk][,readonly=on|off][,cache=MODE][,serial=ID][,queues=N]
//          [,id=ID]
//   --net user[,hostfwd=tcp::2222-:22][,hostfwd=...][,mac=52:54:00:12:34:56][,id=ID]
//   --net tap=NAME[,mac=...][,id=ID]
//   rate limits: --disk ...,bps=,bps_max=,bps_burst=,iops=,iops_max=,iops_burst= and the same
//   per direction with bps_rd, iops_rd, bps_wr, iops_wr (and QEMU's throttling.bps-total[-max],
//   throttling.bps-read[-max], ..., throttling.iops-write[-max]); --net ...,bps=...,pps=...
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "base/result.h"
#include "kite/kite.h"

namespace kite::cli {

Result<DiskConfig> ParseDiskOption(std::string_view text);
Result<NetConfig> ParseNetOption(std::string_view text);

// One element of the config file's "disks" / "nets" arrays (the same keys as the options;
// "readonly" is a JSON boolean, "hostfwd" an array of strings). Relative disk paths are taken
// relative to `base_dir`.
Result<DiskConfig> DiskFromJson(const nlohmann::json& v, const std::string& base_dir);
Result<NetConfig> NetFromJson(const nlohmann::json& v);

// The keys of a disk's or a NIC's JSON object (DiskFromJson, NetFromJson) other than "id":
// what device_add takes for each driver.
bool IsDiskSetting(const std::string& key);
bool IsNetSetting(const std::string& key);

// The checks ValidateVmConfig applies to each device (the message names the setting).
Result<void> ValidateDisk(const DiskConfig& disk);
Result<void> ValidateNet(const NetConfig& net);
// A rate limit's values (the message names the option: `bytes` — "bps", "bps_rd", ... — and
// `ops` — "iops", "pps", "iops_rd", ...): each at most kMaxRateLimitValue (QEMU's limit), a
// bucket size or burst only with a rate, a bucket size not below the rate (as QEMU's bps_max).
inline constexpr uint64_t kMaxRateLimitValue = 1'000'000'000'000'000;
Result<void> ValidateRateLimit(const Throttle& limit, const std::string& bytes,
                               const std::string& ops);
// A disk's three limits, and QEMU's rule that a kind (bytes, operations) is limited either in
// total or per direction, never both.
Result<void> ValidateDiskThrottle(const DiskThrottle& limit);
// A throttle group's name (group=, block_set_io_throttle's "group"): 1 to 64 letters, digits,
// '-', '_', '.'; empty (no group) where `may_be_empty`.
Result<void> ValidateThrottleGroupName(const std::string& name, bool may_be_empty);
// Device ids: "vda", "vdb", ... and "net0", "net1", ... unless the config names them (id=).
std::string DiskId(const VmConfig& config, size_t index);
std::string NetId(const VmConfig& config, size_t index);
// A user-chosen id follows QEMU's rule (a letter, then letters, digits, '-', '.', '_'; at most
// kMaxDeviceIdBytes); ids are unique among all of the VM's devices.
inline constexpr size_t kMaxDeviceIdBytes = 32;
Result<void> ValidateDeviceId(const std::string& id);
Result<void> ValidateDeviceIds(const VmConfig& config);
// "52:54:00:12:34:56": six hex bytes, unicast, not all zeros.
bool IsValidMac(std::string_view text);

}  // namespace kite::cli
