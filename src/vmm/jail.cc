// The outer half of the jail (vmm/jail.h): as root, before anything is confined, find and
// open every file the VM needs, make the cgroup group, fork into a new PID namespace; then
// wait for the confined child and end as it ended. The child's half is jail_confine.cc.
#include "vmm/jail.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <thread>

#include "storage/disk_image.h"
#include "vmm/jail_internal.h"

namespace kite::jail {
namespace {

namespace fs = std::filesystem;

constexpr const char kCgroupRoot[] = "/sys/fs/cgroup";

bool IsInside(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

std::string Absolute(const std::string& path) {
  if (path.empty()) return path;
  return fs::absolute(path).lexically_normal().string();
}

// A file kite creates (the control socket, a serial file): its folder's real path and its name,
// so that DIR named through a symbolic link still holds it. Unchanged when the folder is missing.
std::string RealFolder(const std::string& path) {
  if (path.empty()) return path;
  fs::path p(path);
  std::error_code ec;
  fs::path folder = fs::canonical(p.parent_path(), ec);
  return ec ? path : (folder / p.filename()).string();
}

// The files the jail will hold, deduplicated by target.
class BindList {
 public:
  explicit BindList(std::string dir) : dir_(std::move(dir)) {}

  // `path` (absolute) as the VM names it, `what` for errors ("the kernel"). A file whose real
  // path is outside DIR is bound at its real path, and at `path` too when that differs and is
  // outside DIR (a symbolic link in DIR resolves inside the jail to the real path).
  Result<void> AddFile(const std::string& path, bool writable, const std::string& what) {
    char* real_c = ::realpath(path.c_str(), nullptr);
    if (real_c == nullptr) return SysErr("jail: " + what + " " + path);
    std::string real(real_c);
    std::free(real_c);
    if (!IsInside(real, dir_)) TRY(Add(real, real, writable, what));
    if (path != real && !IsInside(path, dir_)) TRY(Add(path, real, writable, what));
    return {};
  }

  Result<void> AddDirectory(const std::string& dir, bool writable) {
    for (Bind& b : binds_) {
      if (b.target == dir && b.directory) {
        b.writable = b.writable || writable;
        return {};
      }
    }
    Bind bind;
    bind.target = dir;
    bind.source_path = dir;
    bind.writable = writable;
    bind.directory = true;
    binds_.push_back(std::move(bind));
    return {};
  }

  std::vector<Bind> Take() { return std::move(binds_); }

 private:
  Result<void> Add(const std::string& target, const std::string& real, bool writable,
                   const std::string& what) {
    for (Bind& b : binds_) {
      if (b.target == target) {
        b.writable = b.writable || writable;
        return {};
      }
    }
    Bind bind;
    bind.target = target;
    bind.source_path = real;
    struct stat st;
    if (::stat(real.c_str(), &st) != 0) return SysErr("jail: " + what + " " + real);
    if (S_ISDIR(st.st_mode)) return Err("jail: " + what + " " + real + " is a directory");
    bind.device = S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode);
    bind.writable = writable;
    binds_.push_back(std::move(bind));
    return {};
  }

  std::string dir_;
  std::vector<Bind> binds_;
};

// A disk's image, its external data file and every backing file of its chain (read-only), as
// kite will open them, with the extent files a VMDK descriptor names.
Result<void> AddDisk(const DiskConfig& disk, BindList& binds) {
  std::string what = "the disk " + disk.path;
  TRY(binds.AddFile(disk.path, !disk.read_only, "the disk"));
  storage::ImageFormat format = disk.format.empty()
                                    ? TRY_CTX(storage::ProbeImageFormat(disk.path), what)
                                    : TRY_CTX(storage::ParseImageFormat(disk.format), what);
  storage::OpenOptions open;
  open.read_only = true;
  open.force_share = true;
  open.lock = false;
  open.data_file = disk.data_file;
  auto image = TRY_CTX(storage::OpenImage(disk.path, format, open), "jail: " + what);
  if (image->data_path() != image->path()) {
    TRY(binds.AddFile(Absolute(image->data_path()), !disk.read_only,
                      "the data file of " + disk.path));
  }
  for (storage::DiskImage* layer = image.get(); layer != nullptr; layer = layer->backing()) {
    if (layer != image.get()) {
      TRY(binds.AddFile(Absolute(layer->path()), false, "the backing file of " + disk.path));
    }
    for (const std::string& file : layer->extra_files()) {  // a VMDK descriptor's extents
      TRY(binds.AddFile(Absolute(file), false, "an extent file of " + layer->path()));
    }
  }
  return {};
}

bool HasNet(const VmConfig& config, NetBackendKind kind) {
  for (const NetConfig& n : config.nets) {
    if (n.backend == kind) return true;
  }
  return false;
}

// The directory holding a socket of a dgram or stream network (made there, or the peer's),
// placed in the jail at the same path unless it lies in the jail's directory already.
Result<void> AddSocketDirectory(const std::string& path, bool writable, const std::string& dir,
                                BindList& binds) {
  if (path.empty() || path.front() != '/') {
    return Err("jail: the network socket '" + path + "' must be an absolute path");
  }
  std::string parent = std::filesystem::path(path).parent_path().string();
  if (parent.empty()) parent = "/";
  struct stat st;
  if (::stat(parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Err("jail: the directory " + parent + " of network socket " + path + " does not exist");
  }
  if (parent == "/")
    return Err("jail: network socket " + path + " directly in / (use a directory)");
  if (IsInside(parent, dir)) return {};
  return binds.AddDirectory(parent, writable);
}

Result<void> AddVmFiles(const VmConfig& config, const std::string& dir, BindList& binds) {
  TRY(binds.AddFile(config.kernel, false, "the kernel"));
  if (!config.initrd.empty()) TRY(binds.AddFile(config.initrd, false, "the initrd"));
  for (const DiskConfig& disk : config.disks) TRY(AddDisk(disk, binds));
  if (config.serial == SerialMode::kFile && !IsInside(config.serial_path, dir)) {
    TRY(binds.AddFile(config.serial_path, true, "the serial output file (--serial file:)"));
  }
  if (!config.api_sock.empty() && !IsInside(config.api_sock, dir)) {
    return Err("jail: the control socket " + config.api_sock + " must be inside the jail's " +
               "directory " + dir + " (the host reaches it there)");
  }
  // The emulated-KVM check reads /proc/cpuinfo; libslirp reads the host's DNS servers, for a
  // user network given now or one device_add may bring later (a pci machine).
  for (const NetConfig& net : config.nets) {
    if (net.backend != NetBackendKind::kDgram && net.backend != NetBackendKind::kStream) continue;
    // Its own socket (bound: the directory writable) or a server's (connected to), and the
    // peer's of a dgram link (sent to).
    bool binds_here = net.backend == NetBackendKind::kDgram || net.server;
    TRY(AddSocketDirectory(net.socket_path, binds_here, dir, binds));
    if (!net.remote.empty()) TRY(AddSocketDirectory(net.remote, false, dir, binds));
  }
  if (config.host_quirks) TRY(binds.AddFile("/proc/cpuinfo", false, "/proc/cpuinfo"));
  bool user_net =
      HasNet(config, NetBackendKind::kUser) || config.transport == VirtioTransportKind::kPci;
  if (user_net && ::access("/etc/resolv.conf", R_OK) == 0) {
    TRY(binds.AddFile("/etc/resolv.conf", false, "/etc/resolv.conf"));
  }
  return binds.AddDirectory(dir, true);
}

// A character device the VM needs, made afresh in the jail's /dev with the host's numbers.
Result<void> AddDevice(const std::string& path, bool required, Plan& plan) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (!required && errno == ENOENT) return {};
    return SysErr("jail: " + path);
  }
  if (!S_ISCHR(st.st_mode)) return Err("jail: " + path + " is not a character device");
  plan.devices.push_back({path, st.st_rdev});
  return {};
}

// A number, or a name looked up in the user or group database; never 0 (root).
Result<uint32_t> ResolveId(const std::string& text, bool user) {
  const char* option = user ? "--jail-uid" : "--jail-gid";
  uint32_t id = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size()) {
    if (user) {
      const passwd* pw = ::getpwnam(text.c_str());
      if (pw == nullptr) return Err(std::string(option) + " '" + text + "': no such user");
      id = pw->pw_uid;
    } else {
      const group* gr = ::getgrnam(text.c_str());
      if (gr == nullptr) return Err(std::string(option) + " '" + text + "': no such group");
      id = gr->gr_gid;
    }
  }
  if (id == 0 || id == static_cast<uint32_t>(-1)) {
    return Err(std::string(option) + " " + text + ": the jail's ids must not be 0 (root) or -1");
  }
  return id;
}

Result<void> WriteFile(const std::string& path, const std::string& text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return SysErr("jail: opening " + path);
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return SysErr("jail: writing '" + text + "' to " + path);
  }
  return {};
}

Result<std::string> ReadSmallFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return SysErr("jail: opening " + path);
  char buf[512];
  ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  if (n < 0) return SysErr("jail: reading " + path);
  return std::string(buf, n);
}

bool HasWord(const std::string& list, const std::string& word) {
  std::istringstream in(list);
  for (std::string w; in >> w;) {
    if (w == word) return true;
  }
  return false;
}

// /sys/fs/cgroup/kite/PID with the limits; the controllers it needs enabled on the way down.
Result<std::string> MakeCgroup(const JailConfig& jail) {
  struct statfs st;
  if (::statfs(kCgroupRoot, &st) != 0 || st.f_type != CGROUP2_SUPER_MAGIC) {
    return Err(std::string("jail: --cgroup needs cgroup v2 at ") + kCgroupRoot +
               ", which is not a cgroup2 file system (mount -t cgroup2 none " + kCgroupRoot + ")");
  }
  std::string root = kCgroupRoot;
  std::string available = TRY(ReadSmallFile(root + "/cgroup.controllers"));
  std::string enable;
  for (auto [name, wanted] :
       {std::pair{"cpu", !jail.cpu_max.empty()}, std::pair{"memory", !jail.memory_max.empty()}}) {
    if (!wanted) continue;
    if (!HasWord(available, name)) {
      return Err(std::string("jail: the cgroup controller '") + name + "' is not available in " +
                 root + " (cgroup.controllers: " + available.substr(0, available.find('\n')) + ")");
    }
    enable += std::string(enable.empty() ? "+" : " +") + name;
  }
  std::string parent = root + "/kite";
  TRY(WriteFile(root + "/cgroup.subtree_control", enable));
  if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) return SysErr("jail: mkdir " + parent);
  TRY(WriteFile(parent + "/cgroup.subtree_control", enable));
  std::string group = parent + "/" + std::to_string(::getpid());
  (void)::rmdir(group.c_str());  // left over by an earlier kite with this pid (empty)
  if (::mkdir(group.c_str(), 0755) != 0) return SysErr("jail: mkdir " + group);
  Result<void> limits = [&]() -> Result<void> {
    if (!jail.cpu_max.empty()) TRY(WriteFile(group + "/cpu.max", jail.cpu_max));
    if (!jail.memory_max.empty()) TRY(WriteFile(group + "/memory.max", jail.memory_max));
    return {};
  }();
  if (!limits) {
    (void)::rmdir(group.c_str());
    return std::move(limits).error();
  }
  return group;
}

void RemoveCgroup(const std::string& group) {
  if (group.empty()) return;
  // The group empties once the reaped child is gone; give the kernel a moment.
  for (int i = 0; i < 100 && ::rmdir(group.c_str()) != 0 && errno == EBUSY; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Result<Plan> Prepare(const JailConfig& jail, VmConfig& config, const std::string& snapshot_dir) {
  if (::geteuid() != 0) {
    return Err("--jail needs root: kite makes namespaces, mounts and changes its user");
  }
  Plan plan;
  char* dir = ::realpath(jail.dir.c_str(), nullptr);
  if (dir == nullptr) return SysErr("jail: the directory " + jail.dir);
  plan.dir = dir;
  std::free(dir);
  struct stat st;
  if (::stat(plan.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Err("jail: " + jail.dir + " is not a directory");
  }
  if (plan.dir == "/") return Err("jail: the directory must not be /");
  plan.uid = TRY(ResolveId(jail.uid, true));
  plan.gid = TRY(ResolveId(jail.gid, false));
  char* cwd = ::getcwd(nullptr, 0);
  plan.cwd = cwd != nullptr && IsInside(cwd, plan.dir) ? cwd : plan.dir;
  std::free(cwd);

  for (std::string* path :
       {&config.kernel, &config.initrd, &config.serial_path, &config.api_sock}) {
    *path = Absolute(*path);
  }
  for (DiskConfig& disk : config.disks) disk.path = Absolute(disk.path);
  config.api_sock = RealFolder(config.api_sock);
  if (config.serial == SerialMode::kFile) config.serial_path = RealFolder(config.serial_path);
  BindList binds(plan.dir);
  TRY(AddVmFiles(config, plan.dir, binds));
  if (!snapshot_dir.empty()) {
    char* real = ::realpath(snapshot_dir.c_str(), nullptr);
    if (real == nullptr) return SysErr("jail: the snapshot " + snapshot_dir);
    std::string snapshot(real);
    std::free(real);
    if (!IsInside(snapshot, plan.dir)) TRY(binds.AddDirectory(snapshot, false));
  }
  plan.binds = binds.Take();
  TRY(AddDevice("/dev/kvm", true, plan));
  TRY(AddDevice("/dev/net/tun", HasNet(config, NetBackendKind::kTap), plan));
  if (!jail.netns.empty()) {
    plan.netns = UniqueFd(::open(jail.netns.c_str(), O_RDONLY | O_CLOEXEC));
    if (!plan.netns) return SysErr("jail: --netns " + jail.netns);
    if (::ioctl(plan.netns.get(), NS_GET_NSTYPE) != CLONE_NEWNET) {
      return Err("jail: --netns " + jail.netns + " is not a network namespace");
    }
  }
  plan.limits = jail;
  return plan;
}

// The outer process: forwards stop signals to the child until it ends, then ends the same way.
int WaitForChild(pid_t child, const sigset_t& signals, const std::string& cgroup) {
  int status = 0;
  while (true) {
    siginfo_t info;
    int sig = ::sigwaitinfo(&signals, &info);
    if (sig == SIGCHLD) {
      pid_t r = ::waitpid(child, &status, WNOHANG);
      if (r == child) break;
    } else if (sig > 0) {
      ::kill(child, sig == SIGINT ? SIGINT : SIGTERM);
    }
  }
  RemoveCgroup(cgroup);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  int sig = WTERMSIG(status);
  // The same death as the child's (no core dump of this process: the child's was its own).
  rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);
  ::signal(sig, SIG_DFL);
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, sig);
  ::pthread_sigmask(SIG_UNBLOCK, &unblock, nullptr);
  ::raise(sig);
  return 128 + sig;
}

}  // namespace

Result<Entered> Enter(const JailConfig& jail, VmConfig& config, const std::string& snapshot_dir) {
  // Nothing the caller of kite left open crosses into the jail.
  ::close_range(3, ~0U, 0);
  Plan plan = TRY(Prepare(jail, config, snapshot_dir));
  int alive[2];
  if (::pipe2(alive, O_CLOEXEC) != 0) return SysErr("jail: pipe");
  plan.parent_alive = UniqueFd(alive[0]);
  UniqueFd parent_end(alive[1]);
  if (jail.has_cgroup()) plan.cgroup = TRY(MakeCgroup(jail));

  sigset_t signals, old_mask;
  sigemptyset(&signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD}) sigaddset(&signals, sig);
  ::pthread_sigmask(SIG_BLOCK, &signals, &old_mask);
  pid_t child = -1;
  if (::unshare(CLONE_NEWPID) != 0) {
    int error = errno;
    RemoveCgroup(plan.cgroup);
    return SysErr("jail: unshare (PID namespace)", error);
  }
  child = ::fork();
  if (child < 0) {
    int error = errno;
    RemoveCgroup(plan.cgroup);
    return SysErr("jail: fork into the new PID namespace", error);
  }
  if (child > 0) {
    plan.binds.clear();
    plan.netns.Reset();
    plan.parent_alive.Reset();
    return Entered{false, WaitForChild(child, signals, plan.cgroup)};
  }
  // The child: SIGINT and SIGTERM stay blocked (kite's signal thread takes them).
  parent_end.Reset();
  sigset_t mask = old_mask;
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);
  if (Result<void> confined = Confine(plan); !confined) {
    std::fprintf(stderr, "kite: error: %s\n", confined.error().message().c_str());
    std::fflush(stderr);
    ::_exit(1);
  }
  ProbeIfAsked();
  return Entered{true, 0};
}

}  // namespace kite::jail
