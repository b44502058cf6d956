// kite's embedding API: configure a VM in code, run it, stop it, learn how it ended.
//
//   kite::VmConfig config;
//   config.kernel = "vmlinux";
//   config.cmdline = "console=ttyS0";
//   auto machine = kite::Machine::Create(config);       // validates the configuration
//   if (!machine) { /* (*machine).error().message() */ }
//   if (auto started = (*machine)->Start(); !started) { ... }
//   kite::VmOutcome outcome = (*machine)->Wait();       // blocks until the guest ends
//
// One Machine runs one VM at a time. RequestStop() may be called from any thread (not from a
// signal handler). The `kite` executable is a thin CLI over this API (src/vmm/main.cc).
// Link the CMake target `kite_vmm`.
//
// The control plane is this API too: Pause/Resume, PowerButton, SaveSnapshot, Machine::Restore,
// the queries and the event callbacks are what the QMP control socket (--api-sock, docs/CONTROL.md)
// calls, so an embedder gets all of it without a socket (examples/embed).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace kite {

enum class SerialMode { kStdio, kFile, kNone };
enum class OnReboot { kExit, kRestart };
// How the virtio devices are attached: virtio-mmio windows, or virtio-pci functions on a PCI
// host bridge with MSI-X (docs/PCI.md; needs ACPI).
enum class VirtioTransportKind { kMmio, kPci };

// A virtio-blk disk (--disk path=FILE,format=raw|qcow2|qed|vmdk,readonly=on,cache=MODE,serial=ID).
// A device's rate limit (docs/CLI.md "Rate limits"): two token buckets, bytes and operations
// (a disk's requests, a NIC's frames). A rate of 0 is no limit. `*_max` is the bucket's size —
// what may go at once after an idle spell — (0: a tenth of a second's worth) and `*_burst` an
// extra allowance spent once, at the start (Firecracker's one_time_burst).
struct Throttle {
  uint64_t bps = 0;  // bytes per second
  uint64_t bps_max = 0;
  uint64_t bps_burst = 0;
  uint64_t ops = 0;  // operations per second: iops (disk), pps (NIC)
  uint64_t ops_max = 0;
  uint64_t ops_burst = 0;
  bool operator==(const Throttle&) const = default;
};

// A disk's rate limits, QEMU's block I/O throttling: reads and writes together (`total`: bps=,
// iops=, ...) and each on their own (`read`: bps_rd=, iops_rd=, ...; `write`: bps_wr=, ...). A
// request goes when `total` and its own direction's limit both let it (flushes and other
// requests count against `total` only). As in QEMU, a total and a per-direction value of the
// same kind (bytes, operations) are never set together.
struct DiskThrottle {
  Throttle total;
  Throttle read;
  Throttle write;
  bool operator==(const DiskThrottle&) const = default;
};

struct DiskConfig {
  std::string path;
  // "raw" or "qcow2". Required for a writable disk: kite never guesses the format of an image
  // the guest can write (BAD_INPUTS.md I1, G22). A read-only disk without one is probed.
  std::string format;
  bool read_only = false;
  std::string cache = "writeback";  // writeback | writethrough | none (O_DIRECT) | unsafe
  std::string serial;               // VIRTIO_BLK_T_GET_ID answer, at most 20 bytes
  uint32_t queues = 1;              // 1..16 virtqueues (multi-queue when > 1)
  std::string id;                   // the device id (query-block, snapshots); empty: vda, vdb, ...
  DiskThrottle throttle{};          // bps=, iops=, bps_rd=, ...; block_set_io_throttle changes it
  // group=NAME (QEMU's throttling.group): disks of one group share its limits, together.
  std::string throttle_group{};
  // data_file=PATH: the external data file of a qcow2 image that keeps its data in one (qemu's
  // data-file=). kite never follows the name stored in the image itself (BAD_INPUTS I7).
  std::string data_file{};
};

// A virtio-net interface: a tap device (--net tap=NAME[,mac=..]) or the user-mode NAT
// (--net user[,hostfwd=tcp::2222-:22][,mac=..]).
// A link to other VMs over a Unix socket, QEMU's -netdev dgram and stream: --net
// dgram=LOCAL,remote=REMOTE or --net stream=PATH[,server=on].
enum class NetBackendKind { kTap, kUser, kDgram, kStream };
struct NetConfig {
  NetBackendKind backend = NetBackendKind::kUser;
  std::string tap;  // interface name (kTap); created when missing and allowed
  // kTap: an existing bridge the tap joins (--net tap[=NAME],bridge=BR). kite then makes the
  // tap itself (the kernel names it when NAME is not given) and it is gone when kite ends.
  std::string bridge;
  std::string mac;                   // "52:54:00:12:34:56"; empty: generated
  std::vector<std::string> hostfwd;  // kUser: QEMU hostfwd rules, "tcp::2222-:22"
  std::string socket_path;           // kDgram: the local socket; kStream: the socket listened on
  std::string remote;                // kDgram: the peer's socket
  bool server = false;               // kStream: listen on socket_path (else connect to it)
  // The guest's MTU (mtu=, QEMU's host_mtu): VIRTIO_NET_F_MTU offered with it; 0: not offered.
  uint32_t mtu = 0;
  std::string id;       // the device id; empty: net0, net1, ...
  Throttle throttle{};  // bps=, pps=, ...: each direction (RX, TX) on its own
  // kTap: queue pairs (1..16, QEMU's queues=): a multiqueue tap when more than one.
  uint32_t queues = 1;
  // mac_pinning=on: frames the guest sends from another source MAC are dropped (G25).
  bool mac_pinning = false;
};

// A virtio-vsock device with Firecracker's hybrid host side (--vsock cid=N,uds=PATH;
// docs/VSOCK.md): host programs connect to `uds_path` and send "CONNECT <port>\n"; the guest's
// connections to the host's port P reach the Unix socket "<uds_path>_P". Its device id is "vsock0".
struct VsockConfig {
  uint64_t cid = 0;      // the guest's CID: 3 .. 4294967294
  std::string uds_path;  // where kite listens
};

// How guest RAM is backed (--memory SIZE,hugepages=2M,prealloc=on,shared=on).
struct MemoryBacking {
  uint64_t hugepage_size = 0;  // 0: the host's normal pages; 2 MiB or 1 GiB (the hugetlb pool)
  bool prealloc = false;       // every page faulted in at start: a short host fails there
  bool shared = false;         // a memfd mapped shared (for another process, vhost-user)
  bool operator==(const MemoryBacking&) const = default;
};

// The memory balloon (--balloon size=SIZE,deflate_on_oom=on,free_page_reporting=on,
// statistics_interval=SECONDS,id=ID; "balloon" in the JSON config): virtio-balloon,
// docs/VIRTIO.md "The memory balloon". QMP `balloon` changes the size.
struct BalloonConfig {
  uint64_t size = 0;  // bytes the guest is asked to give up (a multiple of 4 KiB, <= memory)
  bool deflate_on_oom = false;
  bool free_page_reporting = false;
  uint32_t statistics_interval = 0;  // seconds between statistics requests; 0: none
  std::string id;                    // empty: "balloon0"
  bool operator==(const BalloonConfig&) const = default;
};

struct VmConfig {
  std::string kernel;  // ELF vmlinux (64-bit or PVH entry) or bzImage
  std::string initrd;  // empty: none
  std::string cmdline = "console=ttyS0 reboot=k panic=1";
  uint32_t cpus = 1;               // 1 .. kMaxCpus
  uint64_t memory = 512ull << 20;  // bytes, a multiple of 4 KiB (of the huge page size)
  MemoryBacking memory_backing{};
  // Host CPUs per vCPU (--cpus N,pin=LIST; "cpu_affinity" in the JSON config): empty, or one
  // non-empty list per vCPU. A vCPU thread runs only on its list.
  std::vector<std::vector<uint32_t>> cpu_affinity;
  // Host CPUs for kite's other threads (--emulator-pin LIST, libvirt's emulatorpin): the
  // thread that builds the machine and every thread it starts; vCPUs without a list of their
  // own keep the CPUs the process had. Empty: not pinned.
  std::vector<uint32_t> emulator_affinity;
  SerialMode serial = SerialMode::kStdio;
  std::string serial_path;  // for SerialMode::kFile
  bool acpi = true;         // ACPI tables; false: MP table, no ACPI
  OnReboot on_reboot = OnReboot::kExit;
  bool stats = false;                 // print exit and device counters at the end (stderr)
  bool host_quirks = true;            // adapt the kernel command line to an emulated KVM host
  std::string cpu_template = "host";  // "host" or "minimal" (see src/vmm/cpuid.h)
  // virtio devices, in this order: disks (vda, vdb, ...), network interfaces, entropy, vsock.
  std::vector<DiskConfig> disks;
  std::vector<NetConfig> nets;
  bool rng = true;                   // virtio-rng fed from getrandom(2) (--no-rng turns it off)
  std::optional<VsockConfig> vsock;  // --vsock: after the entropy device
  // A virtio-balloon after the entropy device (--balloon); none by default.
  std::optional<BalloonConfig> balloon;
  VirtioTransportKind transport = VirtioTransportKind::kMmio;  // --transport mmio|pci
  // pci: the slot of each virtio device by id ("pci_slots" in the JSON config). A snapshot
  // records every device's slot here, so a restore puts each where the guest had it; devices
  // not named take the lowest free slots, in the order above.
  std::map<std::string, uint32_t> pci_slots;
  // device_del: how long the guest has to release a device (--unplug-timeout SECONDS).
  uint32_t unplug_timeout_ms = 10000;
  std::string name;           // the VM's name (query-name); empty: none
  std::string api_sock;       // the QMP control socket's path (--api-sock); empty: none
  bool start_paused = false;  // --paused: build and load, then wait in "prelaunch" for Resume()
};

inline constexpr uint32_t kMaxCpus = 254;
inline constexpr uint64_t kMinMemory = 16ull << 20;
inline constexpr uint64_t kMaxMemory = 1ull << 40;
// virtio-mmio devices (disks + nets + rng + vsock); each takes one interrupt line of the IOAPIC.
inline constexpr uint32_t kMaxVirtioDevices = 16;
// virtio-pci devices: one per slot of bus 0 but the host bridge's (slots 1-31); MSI-X takes
// no IOAPIC line.
inline constexpr uint32_t kMaxPciVirtioDevices = 31;

// Checks ranges and combinations; the message names the setting and what was expected.
Result<void> ValidateVmConfig(const VmConfig& config);

// How a VM ended, and the `kite run` exit status for it.
enum class VmEnd {
  kPowerOff,  // the guest powered off (ACPI S5)            → 0
  kError,     // kite itself failed                          → 1
  kReset,     // the guest reset, with OnReboot::kExit       → 2
  kCrash,     // triple fault, unhandled emulation failure, failed entry, unknown exit → 3
  kStopped,   // RequestStop(): user quit, SIGINT or SIGTERM → 130
};

struct VmOutcome {
  VmEnd end = VmEnd::kError;
  std::string detail;  // for kCrash/kError: reason, RIP and instruction bytes
  int ExitStatus() const;
};

const char* VmEndName(VmEnd end);

// The VM's run state, with QMP's names (qapi/run-state.json RunState): RunStateName() gives
// "prelaunch", "running", "paused", "save-vm", "restore-vm", "inmigrate", "shutdown",
// "internal-error", "guest-panicked".
enum class RunState {
  kPrelaunch,  // built, never run (start_paused, or not started yet)
  kRunning,
  kPaused,         // Pause(): every vCPU out of KVM_RUN and parked, the guest clock held
  kSaveVm,         // SaveSnapshot() in progress (the VM is paused)
  kRestoreVm,      // Machine::Restore() in progress
  kInMigrate,      // restored and waiting for Resume() (RestoreOptions::paused)
  kShutdown,       // the VM ended (Wait() returns or returned)
  kInternalError,  // kite failed (VmEnd::kError)
  kGuestPanicked,  // the guest crashed (VmEnd::kCrash)
};
const char* RunStateName(RunState state);

// An asynchronous event, as QMP sends it: {"event": name, "data": data, "timestamp": ...}.
//   STOP, RESUME                                     no data
//   SHUTDOWN {"guest": bool, "reason": ShutdownCause} the VM ended ("guest-shutdown",
//                                                    "guest-reset", "guest-panic", "host-qmp-quit",
//                                                    "host-signal", "host-error")
//   POWERDOWN                                        the ACPI power button was pressed
//   RESET {"guest": bool, "reason": ...}             the VM resets ("guest-reset",
//                                                    "host-qmp-system-reset")
struct Event {
  std::string name;
  nlohmann::json data;  // an object, or null: no "data" member
  int64_t seconds = 0;  // host wall-clock time of the event (QMP "timestamp")
  int64_t microseconds = 0;
};
using EventFn = std::function<void(const Event&)>;

// query-cpus-fast: one entry per vCPU.
struct CpuInfo {
  uint32_t index = 0;
  int64_t thread_id = 0;  // the host thread running it (0 before the VM runs)
};

// One image of a disk's backing chain (query-block "image", "backing-image", ...).
struct ImageInfo {
  std::string filename;
  std::string format;  // "raw", "qcow2", ...
  uint64_t virtual_size = 0;
  uint64_t actual_size = 0;      // bytes allocated on the host
  uint32_t cluster_size = 0;     // qcow2; 0 otherwise
  bool dirty = false;            // qcow2 lazy-refcount dirty bit
  std::string backing_filename;  // as the image names it; empty: none
};

// query-block: one entry per disk.
struct BlockInfo {
  std::string id;  // "vda" or DiskConfig::id
  bool read_only = false;
  std::string cache;             // DiskConfig::cache
  std::vector<ImageInfo> chain;  // the disk's image first, then its backing files
  bool io_error = false;         // the device reported an I/O error to the guest
  DiskThrottle throttle{};       // the disk's rate limits now (block_set_io_throttle)
  std::string throttle_group;    // its throttle group, "" for none
};

// x-kite-query-net-throttle: one entry per NIC.
struct NetThrottleInfo {
  std::string id;     // "net0" or NetConfig::id
  Throttle throttle;  // the limit of each direction now (x-kite-set-net-throttle)
};

// query-blockstats: one entry per disk.
struct BlockStats {
  std::string id;
  uint64_t rd_bytes = 0, wr_bytes = 0;
  uint64_t rd_operations = 0, wr_operations = 0, flush_operations = 0;
  uint64_t discard_operations = 0;
  uint64_t failed_operations = 0;  // completed with an error status
};

// query-balloon and qom-get guest-stats: the balloon as the guest reports it.
struct BalloonInfo {
  std::string id;
  uint64_t actual = 0;  // guest RAM outside the balloon, bytes (QMP "actual")
  uint64_t target = 0;  // guest RAM `balloon` asked for, bytes
  uint32_t stats_interval = 0;
  std::vector<uint64_t> stats;  // by VIRTIO_BALLOON_S_* tag; UINT64_MAX: not reported
  int64_t last_update = 0;      // host seconds of the last statistics; 0: none yet
};

// x-vm-snapshot-save: a paused VM's state, memory and configuration written to `path` (a
// directory, created or atomically replaced; docs/SNAPSHOTS.md).
struct SnapshotOptions {
  std::string path;
};

// `kite restore`: a snapshot directory brought back to life in this process.
struct RestoreOptions {
  std::string path;
  bool paused = false;         // leave it in "inmigrate" until Resume(); default: resume at once
  bool disk_overlays = false;  // each writable disk gets a fresh qcow2 overlay (clones)
  // Where the overlays go: a new kite-clone-XXXXXX directory in it (empty: $TMPDIR, else
  // /var/tmp). A jailed restore puts them in the jail's directory.
  std::string overlay_parent;
  std::string api_sock;  // override the snapshot's (empty: none)
  // The console: the snapshot's setting unless overridden.
  bool override_serial = false;
  SerialMode serial = SerialMode::kStdio;
  std::string serial_path;
};

// A live snapshot of one disk (blockdev-snapshot-sync): a new qcow2 overlay on top of the
// running disk; the guest's writes go to it from then on, the old image is never written again.
struct DiskSnapshotOptions {
  std::string device;  // the disk's id
  std::string file;    // the new overlay
  std::string format = "qcow2";
  bool existing = false;  // QMP mode "existing": the overlay exists and names the disk's image
};

// Block jobs (QEMU's block-commit, block-stream, drive-backup).
enum class BlockJobType { kCommit, kStream, kBackup };
struct BlockJobRequest {
  BlockJobType type = BlockJobType::kCommit;
  std::string job_id;  // empty: the disk's id, as QEMU
  std::string device;  // the disk's id
  std::string base;    // commit/stream: the base layer's file name; empty: the bottom (commit),
                       // the whole chain (stream)
  std::string top;     // commit: the top layer's file name; empty: the active layer
  std::string target;  // backup: the new image
  std::string format = "qcow2";  // backup: "qcow2" or "raw"
  bool existing = false;         // backup: mode "existing" (the target exists, its size fits)
  uint64_t speed = 0;            // bytes per second; 0: unlimited
};
// One job, as query-block-jobs shows it.
struct BlockJobInfo {
  std::string type;  // "commit", "stream", "backup"
  std::string id;
  std::string device;
  uint64_t len = 0, offset = 0, speed = 0;
  bool busy = false, paused = false, ready = false;
  std::string status;  // QEMU's JobStatus: "running", "paused", "ready", "standby", ...
};
enum class BlockJobAction { kCancel, kForceCancel, kPause, kResume, kComplete };

// announce-self (QEMU's arguments): rounds of announcements, the first at once, then after
// initial, initial + step, ... milliseconds (each gap at most max), by the NICs named in
// `interfaces` (empty: every NIC).
struct AnnounceRequest {
  uint32_t initial = 50;
  uint32_t max = 550;
  uint32_t rounds = 5;
  uint32_t step = 100;
  std::vector<std::string> interfaces;
};

// device_add: a virtio-blk or virtio-net PCI function added to a running VM (--transport pci;
// docs/CONTROL.md "Hotplug"). The guest finds it by itself (ACPI PCI hotplug).
enum class HotplugDriver { kVirtioBlk, kVirtioNet };
struct DeviceAddRequest {
  HotplugDriver driver = HotplugDriver::kVirtioBlk;
  DiskConfig disk;    // kVirtioBlk; disk.id is the device id (required)
  NetConfig net;      // kVirtioNet; net.id is the device id (required)
  uint32_t slot = 0;  // QEMU's "addr": the PCI slot (1-31); 0: the lowest free one
};

class Machine {
 public:
  static Result<std::unique_ptr<Machine>> Create(const VmConfig& config);
  // Builds a machine from a snapshot (RestoreOptions) and starts it, running or paused. Every
  // check (checksums, versions, sizes, CPU features, disks) happens before any state is set;
  // a failure leaves nothing running.
  static Result<std::unique_ptr<Machine>> Restore(const RestoreOptions& options);
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  // Builds the VM (memory, devices, tables, kernel) and starts its vCPUs (or, with
  // start_paused, leaves it in prelaunch). Errors: bad kernel file, no /dev/kvm, ... The guest
  // runs until Wait() reports its end.
  Result<void> Start();
  // Blocks until the VM ends. With OnReboot::kRestart a guest reset rebuilds the VM and keeps
  // waiting. The Machine may be started again afterwards.
  VmOutcome Wait();
  // Stops the VM (outcome kStopped, SHUTDOWN reason "host-signal"). Thread-safe; idempotent.
  void RequestStop();

  // --- The control plane. Every call is thread-safe; none may be made from an EventFn. ---
  // QMP `stop`: returns once every vCPU is out of KVM_RUN and parked; the guest's kvmclock
  // stands still until Resume(). Event STOP. A no-op when already paused or in prelaunch.
  Result<void> Pause();
  // QMP `cont`: lets the vCPUs run again (from prelaunch or inmigrate: for the first time).
  // Event RESUME. A no-op when running.
  Result<void> Resume();
  // QMP `system_powerdown`: presses the ACPI power button (the guest shuts down cleanly).
  // Event POWERDOWN. DeviceNotActive without ACPI (--no-acpi).
  Result<void> PowerButton();
  // QMP `system_reset`: resets the VM as a guest reset does (with OnReboot::kExit it ends,
  // VmEnd::kReset). Event RESET {"guest": false, "reason": "host-qmp-system-reset"}.
  Result<void> Reset();
  // QMP `quit`: ends the VM (VmEnd::kStopped). Event SHUTDOWN {"guest": false,
  // "reason": "host-qmp-quit"}.
  void Quit();
  // x-vm-snapshot-save: the VM must be paused. No side effect on failure (the previous
  // snapshot at `path`, if any, stays intact).
  Result<void> SaveSnapshot(const SnapshotOptions& options);

  // Live disk operations (machine_disks.cc; docs/CONTROL.md "Disks"). Errors name the disk.
  Result<void> SnapshotDisk(const DiskSnapshotOptions& options);
  // block_resize: grows the disk's image; the guest gets a configuration-change interrupt.
  Result<void> ResizeDisk(const std::string& device, uint64_t size);
  // set_link: the NIC's link status as the guest sees it.
  Result<void> SetLink(const std::string& nic, bool up);
  // announce-self: the NICs tell the network where they are (gratuitous ARPs from a guest that
  // negotiated VIRTIO_NET_F_GUEST_ANNOUNCE, else a RARP). Also done on the first run after a
  // restore, with the default parameters.
  Result<void> AnnounceSelf(const AnnounceRequest& request);
  // block_set_io_throttle / x-kite-set-net-throttle: a disk's or NIC's rate limit from now on
  // (checked as --disk/--net's; kept in the configuration, so snapshots and restarts keep it).
  // A disk in a throttle group sets the group's limits (all its disks'); `group` given: the
  // disk moves to that group (made when new) first, as QEMU's block_set_io_throttle "group".
  Result<void> SetDiskThrottle(const std::string& device, const DiskThrottle& limit,
                               const std::optional<std::string>& group = std::nullopt);
  Result<void> SetNetThrottle(const std::string& nic, const Throttle& limit);
  Result<void> StartBlockJob(const BlockJobRequest& request);
  Result<void> ControlBlockJob(const std::string& id, BlockJobAction action);
  Result<void> SetBlockJobSpeed(const std::string& id, uint64_t speed);
  std::vector<BlockJobInfo> BlockJobs() const;
  // device_add: the device is on the bus and the guest told when this returns. Errors (C10):
  // duplicate id, image missing or locked, tap busy, duplicate MAC, no free slot, the device
  // limit, not a pci machine. Nothing is left attached on error. The device stays across a
  // guest reset and is in later snapshots (VmConfig::disks/nets, pci_slots).
  Result<void> AddDevice(const DeviceAddRequest& request);
  // device_del: asks the guest to release device `id` (a disk other than the root disk, or a
  // NIC) and returns. Event DEVICE_DELETED {"device", "path"} once the guest has let go, the
  // device's I/O is drained and its backend closed; DEVICE_UNPLUG_GUEST_ERROR {"device",
  // "path"} if it has not within VmConfig::unplug_timeout_ms — the device then stays, fully
  // working (a later release by the guest still removes it).
  Result<void> RemoveDevice(const std::string& id);

  // The memory balloon (machine_balloon.cc). Without one: DeviceNotActive "No balloon device
  // has been activated". SetBalloon is QMP `balloon`: asks the guest to leave itself `bytes` of
  // RAM (clamped to the RAM size); event BALLOON_CHANGE {"actual": bytes} when the guest's
  // balloon changed (at most once a second). Target and polling interval are kept in the
  // configuration (restarts and snapshots keep them).
  Result<void> SetBalloon(uint64_t bytes);
  Result<BalloonInfo> Balloon() const;
  Result<void> SetBalloonStatsInterval(uint32_t seconds);

  RunState state() const;
  const VmConfig& config() const;
  std::vector<CpuInfo> Cpus() const;
  std::vector<BlockInfo> Blocks() const;
  std::vector<BlockStats> BlockStatistics() const;
  std::vector<NetThrottleInfo> NetThrottles() const;
  // kite's own counters (VM exits, buses, devices) as a JSON object (x-query-kite-stats).
  nlohmann::json Counters() const;

  // Events go to every subscriber, on the thread where they happen; a subscriber must not
  // block and must not call back into the Machine. Returns a token for Unsubscribe().
  uint64_t Subscribe(EventFn fn);
  void Unsubscribe(uint64_t token);

 private:
  struct Impl;
  explicit Machine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Create + Start + Wait. Setup errors come back as VmEnd::kError with the message.
VmOutcome RunVm(const VmConfig& config);

// "0.1.0"
const char* Version();

}  // namespace kite
