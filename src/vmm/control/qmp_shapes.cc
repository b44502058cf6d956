// The result shapes of query-cpus-fast, query-block and query-blockstats (QEMU's, from
// qapi/machine.json and qapi/block-core.json), "info status", and x-vm-snapshot-save's path
// policy. Declared in qmp_commands.h. Pure functions.
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "vmm/control/qmp_commands.h"

namespace kite::qmp {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// The first component of an absolute, normalised path must not be a kernel file system.
Result<void> CheckNotSystemPath(const fs::path& p, const std::string& given) {
  auto it = p.begin();
  if (it == p.end() || ++it == p.end() || it->empty()) {
    return Err("snapshot path '" + given + "' names no directory");
  }
  for (const char* system : {"proc", "sys", "dev"}) {
    if (*it == system) {
      return Err("snapshot path '" + given + "' is under /" + system + ": refused");
    }
  }
  return {};
}

json ImageJson(const ImageInfo& image) {
  json j = {{"filename", image.filename},
            {"format", image.format},
            {"virtual-size", image.virtual_size},
            {"actual-size", image.actual_size}};
  if (image.cluster_size != 0) j["cluster-size"] = image.cluster_size;
  if (image.format == "qcow2") j["dirty-flag"] = image.dirty;
  if (!image.backing_filename.empty()) {
    j["backing-filename"] = image.backing_filename;
    j["full-backing-filename"] = image.backing_filename;
  }
  return j;
}

// QEMU's BlockDeviceInfo for the disk's top image, with its chain nested in "backing-image".
json InsertedJson(const BlockInfo& block) {
  json image;  // built from the last backing file upwards: no recursion
  for (auto it = block.chain.rbegin(); it != block.chain.rend(); ++it) {
    json level = ImageJson(*it);
    if (!image.is_null()) level["backing-image"] = std::move(image);
    image = std::move(level);
  }
  const ImageInfo& top = block.chain.front();
  json inserted = {
      {"node-name", block.id},
      {"file", top.filename},
      {"ro", block.read_only},
      {"drv", top.format},
      {"backing_file_depth", block.chain.size() - 1},
      {"encrypted", false},
      {"detect_zeroes", "off"},
      {"write_threshold", 0},
      {"image", std::move(image)},
      {"cache",
       {{"writeback", block.cache != "writethrough"},
        {"direct", block.cache == "none"},
        {"no-flush", block.cache == "unsafe"}}},
  };
  // QEMU's throttle values: the six rates always, the bucket sizes (*_max) only when set, as
  // QEMU; the one-time bursts are kite's.
  struct Part {
    const char* qemu;  // bps<qemu>, iops<qemu>_max, ...
    const char* kite;  // x-kite-bps<kite>-burst
    const Throttle& limit;
  };
  for (const Part& p : {Part{"", "", block.throttle.total}, Part{"_rd", "-rd", block.throttle.read},
                        Part{"_wr", "-wr", block.throttle.write}}) {
    const std::string bps = std::string("bps") + p.qemu, iops = std::string("iops") + p.qemu;
    inserted[bps] = p.limit.bps;
    inserted[iops] = p.limit.ops;
    if (p.limit.bps_max != 0) inserted[bps + "_max"] = p.limit.bps_max;
    if (p.limit.ops_max != 0) inserted[iops + "_max"] = p.limit.ops_max;
    if (p.limit.bps_burst != 0) {
      inserted[std::string("x-kite-bps") + p.kite + "-burst"] = p.limit.bps_burst;
    }
    if (p.limit.ops_burst != 0) {
      inserted[std::string("x-kite-iops") + p.kite + "-burst"] = p.limit.ops_burst;
    }
  }
  if (!block.throttle_group.empty()) inserted["group"] = block.throttle_group;  // as QEMU's
  if (!top.backing_filename.empty()) inserted["backing_file"] = top.backing_filename;
  return inserted;
}

}  // namespace

Result<std::string> CheckSnapshotPath(const std::string& path) {
  if (path.empty()) return Err("snapshot path must not be empty");
  if (path.find('\0') != std::string::npos) return Err("snapshot path contains a NUL byte");
  if (path[0] != '/') return Err("snapshot path '" + path + "' must be absolute");
  fs::path normal = fs::path(path).lexically_normal();
  std::string use = normal.string();
  while (use.size() > 1 && use.back() == '/') use.pop_back();
  TRY(CheckNotSystemPath(fs::path(use), path));
  // Symbolic links among the parents resolved: /tmp/link -> /proc is refused as /proc.
  std::error_code ec;
  fs::path real = fs::weakly_canonical(fs::path(use), ec);
  if (!ec) TRY(CheckNotSystemPath(real, path));
  struct stat st {};
  if (::lstat(use.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) {
      return Err("snapshot path '" + path + "' is a symbolic link: give the directory itself");
    }
    if (!S_ISDIR(st.st_mode)) {
      return Err("snapshot path '" + path + "' exists and is not a directory");
    }
  } else if (errno != ENOENT) {
    return SysErr("snapshot path '" + path + "'");
  }
  return use;
}

json CpuJson(const CpuInfo& cpu) {
  // kite presents one package with one core per vCPU (src/vmm/cpuid.cc).
  return {{"cpu-index", cpu.index},
          {"qom-path", "/machine/unattached/device[" + std::to_string(cpu.index) + "]"},
          {"thread-id", cpu.thread_id},
          {"props", {{"core-id", cpu.index}, {"thread-id", 0}, {"socket-id", 0}}},
          {"target", "x86_64"}};
}

json BlockJson(const BlockInfo& block) {
  json j = {{"device", ""},      {"qdev", block.id},
            {"type", "unknown"}, {"removable", false},
            {"locked", false},   {"io-status", block.io_error ? "failed" : "ok"}};
  if (!block.chain.empty()) j["inserted"] = InsertedJson(block);
  return j;
}

json BlockStatsJson(const BlockStats& s) {
  json stats = {
      {"rd_bytes", s.rd_bytes},
      {"wr_bytes", s.wr_bytes},
      {"unmap_bytes", 0},
      {"rd_operations", s.rd_operations},
      {"wr_operations", s.wr_operations},
      {"flush_operations", s.flush_operations},
      {"unmap_operations", s.discard_operations},
      // kite counts failed requests without splitting them by kind (docs/CONTROL.md).
      {"failed_rd_operations", s.failed_operations},
      {"x-kite-failed-operations", s.failed_operations},
      {"wr_highest_offset", 0},
      {"account_invalid", true},
      {"account_failed", true},
      {"timed_stats", json::array()},
  };
  for (const char* zero :
       {"rd_total_time_ns", "wr_total_time_ns", "flush_total_time_ns", "unmap_total_time_ns",
        "rd_merged", "wr_merged", "unmap_merged", "failed_wr_operations", "failed_flush_operations",
        "failed_unmap_operations", "invalid_rd_operations", "invalid_wr_operations",
        "invalid_flush_operations", "invalid_unmap_operations"}) {
    stats[zero] = 0;
  }
  return {{"device", ""}, {"qdev", s.id}, {"stats", std::move(stats)}};
}

std::string InfoStatusText(RunState state) {
  // QEMU's hmp_info_status: running or paused, and the run state when it says more.
  if (state == RunState::kRunning) return "VM status: running\r\n";
  if (state == RunState::kPaused) return "VM status: paused\r\n";
  return std::string("VM status: paused (") + RunStateName(state) + ")\r\n";
}

}  // namespace kite::qmp
