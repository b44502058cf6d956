// The QMP commands on a running VM's disks and NICs (qmp_disk_commands.cc): live snapshots,
// block jobs, block_resize and set_link, hotplug (device_add, device_del), with QEMU's names,
// arguments and result shapes.
// Declared here for the table in qmp_commands.cc.
#pragma once

#include <array>
#include <nlohmann/json.hpp>

#include "base/result.h"
#include "kite/kite.h"
#include "vmm/control/qmp_commands.h"

namespace kite::qmp {

Result<nlohmann::json> BlockdevSnapshotSync(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> BlockResize(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> SetLink(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> AnnounceSelf(Machine& machine, const nlohmann::json& args);
// Rate limits: QEMU's block_set_io_throttle, and kite's NIC equivalent.
Result<nlohmann::json> BlockSetIoThrottle(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> SetNetThrottle(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> QueryNetThrottle(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> BlockCommit(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> BlockStream(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> DriveBackup(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> QueryBlockJobs(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> BlockJobCancel(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> BlockJobPause(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> BlockJobResume(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> BlockJobComplete(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> BlockJobSetSpeed(Machine& machine, const nlohmann::json& args);
// Hotplug (--transport pci): device_add takes the settings of --disk or --net inline.
Result<nlohmann::json> DeviceAdd(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> DeviceDel(Machine& machine, const nlohmann::json& args);

// The settings of --disk or --net, inline; their rate limits too (bps, iops, bps_rd, ...; pps
// for a NIC).
inline constexpr std::array<ArgSpec, 36> kDeviceAddArgs = {
    {{"driver", ArgType::kString, true},         {"id", ArgType::kString, false},
     {"bus", ArgType::kString, false},           {"addr", ArgType::kString, false},
     {"path", ArgType::kString, false},          {"format", ArgType::kString, false},
     {"readonly", ArgType::kBoolean, false},     {"cache", ArgType::kString, false},
     {"serial", ArgType::kString, false},        {"queues", ArgType::kInteger, false},
     {"backend", ArgType::kString, false},       {"tap", ArgType::kString, false},
     {"mac", ArgType::kString, false},           {"hostfwd", ArgType::kArray, false},
     {"bps", ArgType::kInteger, false},          {"bps_max", ArgType::kInteger, false},
     {"bps_burst", ArgType::kInteger, false},    {"iops", ArgType::kInteger, false},
     {"iops_max", ArgType::kInteger, false},     {"iops_burst", ArgType::kInteger, false},
     {"bps_rd", ArgType::kInteger, false},       {"bps_rd_max", ArgType::kInteger, false},
     {"bps_rd_burst", ArgType::kInteger, false}, {"iops_rd", ArgType::kInteger, false},
     {"iops_rd_max", ArgType::kInteger, false},  {"iops_rd_burst", ArgType::kInteger, false},
     {"bps_wr", ArgType::kInteger, false},       {"bps_wr_max", ArgType::kInteger, false},
     {"bps_wr_burst", ArgType::kInteger, false}, {"iops_wr", ArgType::kInteger, false},
     {"iops_wr_max", ArgType::kInteger, false},  {"iops_wr_burst", ArgType::kInteger, false},
     {"pps", ArgType::kInteger, false},          {"pps_max", ArgType::kInteger, false},
     {"pps_burst", ArgType::kInteger, false},    {"mac_pinning", ArgType::kBoolean, false}}};
inline constexpr std::array<ArgSpec, 1> kDeviceDelArgs = {{{"id", ArgType::kString, true}}};

inline constexpr std::array<ArgSpec, 4> kSnapshotSyncArgs = {
    {{"device", ArgType::kString, true},
     {"snapshot-file", ArgType::kString, true},
     {"format", ArgType::kString, false},
     {"mode", ArgType::kString, false}}};
inline constexpr std::array<ArgSpec, 2> kResizeArgs = {
    {{"device", ArgType::kString, true}, {"size", ArgType::kInteger, true}}};
inline constexpr std::array<ArgSpec, 2> kSetLinkArgs = {
    {{"name", ArgType::kString, true}, {"up", ArgType::kBoolean, true}}};
// QEMU's AnnounceParameters (milliseconds); its "id" (a timer name) is not taken.
inline constexpr std::array<ArgSpec, 5> kAnnounceArgs = {{{"initial", ArgType::kInteger, false},
                                                          {"max", ArgType::kInteger, false},
                                                          {"rounds", ArgType::kInteger, false},
                                                          {"step", ArgType::kInteger, false},
                                                          {"interfaces", ArgType::kArray, false}}};
// QEMU's BlockIOThrottle: the six base values are required, the bucket sizes (*_max) not.
// kite has no *_length or iops_size; "group" is a throttle group (docs/CLI.md); the one-time
// bursts are kite's (x-kite-*).
inline constexpr std::array<ArgSpec, 21> kBlockThrottleArgs = {
    {{"device", ArgType::kString, false},
     {"id", ArgType::kString, false},
     {"group", ArgType::kString, false},
     {"bps", ArgType::kInteger, true},
     {"bps_rd", ArgType::kInteger, true},
     {"bps_wr", ArgType::kInteger, true},
     {"iops", ArgType::kInteger, true},
     {"iops_rd", ArgType::kInteger, true},
     {"iops_wr", ArgType::kInteger, true},
     {"bps_max", ArgType::kInteger, false},
     {"bps_rd_max", ArgType::kInteger, false},
     {"bps_wr_max", ArgType::kInteger, false},
     {"iops_max", ArgType::kInteger, false},
     {"iops_rd_max", ArgType::kInteger, false},
     {"iops_wr_max", ArgType::kInteger, false},
     {"x-kite-bps-burst", ArgType::kInteger, false},
     {"x-kite-bps-rd-burst", ArgType::kInteger, false},
     {"x-kite-bps-wr-burst", ArgType::kInteger, false},
     {"x-kite-iops-burst", ArgType::kInteger, false},
     {"x-kite-iops-rd-burst", ArgType::kInteger, false},
     {"x-kite-iops-wr-burst", ArgType::kInteger, false}}};
inline constexpr std::array<ArgSpec, 7> kNetThrottleArgs = {
    {{"id", ArgType::kString, true},
     {"bps", ArgType::kInteger, true},
     {"pps", ArgType::kInteger, true},
     {"bps_max", ArgType::kInteger, false},
     {"pps_max", ArgType::kInteger, false},
     {"bps_burst", ArgType::kInteger, false},
     {"pps_burst", ArgType::kInteger, false}}};
inline constexpr std::array<ArgSpec, 1> kNetThrottleQueryArgs = {{{"id", ArgType::kString, false}}};
inline constexpr std::array<ArgSpec, 5> kCommitArgs = {{{"job-id", ArgType::kString, false},
                                                        {"device", ArgType::kString, true},
                                                        {"base", ArgType::kString, false},
                                                        {"top", ArgType::kString, false},
                                                        {"speed", ArgType::kInteger, false}}};
inline constexpr std::array<ArgSpec, 4> kStreamArgs = {{{"job-id", ArgType::kString, false},
                                                        {"device", ArgType::kString, true},
                                                        {"base", ArgType::kString, false},
                                                        {"speed", ArgType::kInteger, false}}};
inline constexpr std::array<ArgSpec, 7> kBackupArgs = {{{"job-id", ArgType::kString, false},
                                                        {"device", ArgType::kString, true},
                                                        {"target", ArgType::kString, true},
                                                        {"format", ArgType::kString, false},
                                                        {"sync", ArgType::kString, true},
                                                        {"mode", ArgType::kString, false},
                                                        {"speed", ArgType::kInteger, false}}};
inline constexpr std::array<ArgSpec, 2> kJobCancelArgs = {
    {{"device", ArgType::kString, true}, {"force", ArgType::kBoolean, false}}};
inline constexpr std::array<ArgSpec, 1> kJobArgs = {{{"device", ArgType::kString, true}}};
inline constexpr std::array<ArgSpec, 2> kJobSpeedArgs = {
    {{"device", ArgType::kString, true}, {"speed", ArgType::kInteger, true}}};

}  // namespace kite::qmp
