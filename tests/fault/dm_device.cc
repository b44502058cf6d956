// DmDevice: loop + device-mapper devices for the fault tests. See dm_device.h.
#include "fault/dm_device.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>

#include "base/unique_fd.h"
#include "testing/kite_process.h"

namespace kite::testing {
namespace {

constexpr uint64_t kSector = 512;

// Runs a tool to completion; its stdout, or an error with everything it printed.
Result<std::string> Run(const std::string& tool, std::vector<std::string> args) {
  ProcessOptions options;
  options.argv = {FindSystemTool(tool)};
  if (options.argv[0].empty()) return Err(tool + " not found");
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.timeout = std::chrono::milliseconds(30000);
  Result<ProcessResult> r = RunProcess(options);
  if (!r) return std::move(r).error().Context(tool);
  if (!r->exited || r->exit_status != 0) return Err(tool + " failed: " + r->Describe());
  return r->out;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  while (!s.empty() && s.front() == ' ') s.erase(0, 1);
  return s;
}

}  // namespace

std::string FindSystemTool(const std::string& name) {
  for (const char* dir : {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"}) {
    std::string path = dir + name;
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  return {};
}

std::string DeviceMapperUnavailableReason() {
  if (::geteuid() != 0) return "not root (device-mapper and loop devices need root)";
  for (const char* tool : {"dmsetup", "losetup"}) {
    if (FindSystemTool(tool).empty()) return std::string("no ") + tool + " (dmsetup/losetup)";
  }
  struct Need {
    const char* node;
    const char* module;
  };
  for (Need need : {Need{"/dev/mapper/control", "dm_mod"}, Need{"/dev/loop-control", "loop"}}) {
    if (Exists(need.node)) continue;
    (void)Run("modprobe", {need.module});  // the check below says whether it worked
    if (!Exists(need.node)) {
      return std::string("no ") + need.node + " (modprobe " + need.module + " did not help)";
    }
  }
  return {};
}

Result<std::unique_ptr<DmDevice>> DmDevice::Create(const std::string& backing_file,
                                                   std::vector<ByteRange> errors) {
  static std::atomic<int> counter{0};
  struct stat st {};
  if (::stat(backing_file.c_str(), &st) != 0) return SysErr(backing_file);
  if (st.st_size <= 0 || st.st_size % kSector != 0) {
    return Err(backing_file + ": size is not a positive multiple of 512");
  }
  std::unique_ptr<DmDevice> dev(new DmDevice());
  dev->bytes_ = static_cast<uint64_t>(st.st_size);
  dev->name_ = "kite-fault-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  dev->table_file_ = backing_file + ".dmtable";
  dev->loop_ = Trim(TRY(Run("losetup", {"--find", "--show", backing_file})));
  std::string table = TRY(dev->TableFile(errors));
  TRY(Run("dmsetup", {"create", dev->name_, table}));
  dev->created_ = true;
  dev->path_ = "/dev/mapper/" + dev->name_;
  if (!Exists(dev->path_)) {  // no udev and no node from libdevmapper: the kernel's dm-N
    std::string minor =
        Trim(TRY(Run("dmsetup", {"info", "-c", "--noheadings", "-o", "minor", dev->name_})));
    dev->path_ = "/dev/dm-" + minor;
    if (!Exists(dev->path_)) return Err("no device node for dm device " + dev->name_);
  }
  return dev;
}

DmDevice::~DmDevice() {
  if (created_) {
    Result<std::string> r = Run("dmsetup", {"remove", "--retry", name_});
    EXPECT_TRUE(r.has_value()) << "cleanup: " << r.error().message();
  }
  if (!loop_.empty()) {
    Result<std::string> r = Run("losetup", {"-d", loop_});
    EXPECT_TRUE(r.has_value()) << "cleanup: " << r.error().message();
  }
  ::unlink(table_file_.c_str());
}

Result<std::string> DmDevice::TableFile(const std::vector<ByteRange>& errors) const {
  std::string table;
  uint64_t at = 0;  // bytes mapped so far
  auto linear = [&](uint64_t end) {
    if (end <= at) return;
    table += std::to_string(at / kSector) + " " + std::to_string((end - at) / kSector) +
             " linear " + loop_ + " " + std::to_string(at / kSector) + "\n";
    at = end;
  };
  for (const ByteRange& e : errors) {
    if (e.offset % kSector != 0 || e.length % kSector != 0 || e.offset < at ||
        e.length > bytes_ - e.offset || e.length == 0) {
      return Err("error ranges must be sorted, 512-byte aligned and inside the device");
    }
    linear(e.offset);
    table +=
        std::to_string(e.offset / kSector) + " " + std::to_string(e.length / kSector) + " error\n";
    at = e.offset + e.length;
  }
  linear(bytes_);
  std::ofstream out(table_file_, std::ios::trunc);
  out << table;
  out.close();
  if (!out) return Err("cannot write " + table_file_);
  return table_file_;
}

Result<void> DmDevice::SetErrors(std::vector<ByteRange> errors) {
  std::string table = TRY(TableFile(errors));
  // --nolockfs: no freeze_bdev, so dirty pages are not written back here; they meet the new
  // table at the next writeback (the test's flush).
  TRY(Run("dmsetup", {"suspend", "--nolockfs", name_}));
  Result<std::string> loaded = Run("dmsetup", {"reload", name_, table});
  TRY(Run("dmsetup", {"resume", name_}));
  if (!loaded) return std::move(loaded).error();
  return {};
}

Result<void> DmDevice::DropCache() {
  UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return SysErr(path_);
  if (::ioctl(fd.get(), BLKFLSBUF, 0) != 0) return SysErr(path_ + ": BLKFLSBUF");
  return {};
}

}  // namespace kite::testing
