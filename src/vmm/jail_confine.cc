// The confined child's half of the jail (vmm/jail.h): namespaces, the jail's root, the
// pivot, the limits and the privileges, in that order. Runs single-threaded, as root, in the
// new PID namespace (it is PID 1 there); every failure names its step and errno.
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "vmm/jail_internal.h"

namespace kite::jail {
namespace {

constexpr const char kHostname[] = "kite";

Result<void> Check(int rc, const std::string& step) {
  if (rc != 0) return SysErr("jail: " + step);
  return {};
}

std::string FdPath(const UniqueFd& fd) {
  return "/proc/self/fd/" + std::to_string(fd.get());
}

// Creates the directories above `path` and an empty file or directory at it (a mount point
// inside the jail's tmpfs root).
Result<void> MakeMountPoint(const std::string& path, bool directory) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return Err("jail: creating the directories of " + path + ": " + ec.message());
  if (directory) {
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return SysErr("jail: mkdir " + path);
    return {};
  }
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return SysErr("jail: creating the mount point " + path);
  return {};
}

// Bind-mounts one file at its place under `root`, then makes the mount read-only (unless the
// VM writes it), nosuid, noexec and (except for devices) nodev.
Result<void> MountBind(const std::string& root, const Bind& bind) {
  std::string target = root + bind.target;
  TRY(MakeMountPoint(target, bind.directory));
  TRY(Check(::mount(FdPath(bind.source).c_str(), target.c_str(), nullptr, MS_BIND, nullptr),
            "bind-mounting " + bind.target));
  unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC;
  if (!bind.device) flags |= MS_NODEV;
  if (!bind.writable) flags |= MS_RDONLY;
  return Check(::mount(nullptr, target.c_str(), nullptr, flags, nullptr),
               "restricting the mount of " + bind.target);
}

// The jail's /dev: a tmpfs of its own (the root's is nodev) with the VM's device nodes, owned
// by the jail's user (made read-only once the binds are in).
Result<void> MakeDevices(const std::string& root, const Plan& plan) {
  std::string dev = root + "/dev";
  TRY(MakeMountPoint(dev, true));
  TRY(Check(::mount("kite-jail-dev", dev.c_str(), "tmpfs", MS_NOSUID | MS_NOEXEC,
                    "mode=0755,size=16k,nr_inodes=16"),
            "mounting the jail's /dev"));
  for (const DeviceNode& node : plan.devices) {
    std::string path = root + node.path;
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    if (ec) return Err("jail: creating the directories of " + path + ": " + ec.message());
    TRY(Check(::mknod(path.c_str(), S_IFCHR | 0600, node.rdev), "mknod " + node.path));
    TRY(Check(::chown(path.c_str(), plan.uid, plan.gid), "chown " + node.path));
  }
  return {};
}

// A tmpfs over DIR (this mount namespace only) becomes the jail's root: the binds go in, then
// it turns read-only, kite pivots into it and lets go of the host's root.
Result<void> BuildRootAndPivot(Plan& plan) {
  TRY(Check(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr),
            "making every mount private (mount --make-rprivate /)"));
  // The sources are opened here, in this mount namespace (a bind from a mount of another
  // namespace is refused), and before the tmpfs hides DIR.
  for (Bind& bind : plan.binds) {
    bind.source = UniqueFd(::open(bind.source_path.c_str(), O_PATH | O_CLOEXEC));
    if (!bind.source) return SysErr("jail: opening " + bind.source_path);
  }
  const std::string& root = plan.dir;  // staged over DIR, which is among the binds
  TRY(Check(::mount("kite-jail", root.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    "mode=0755,size=1m,nr_inodes=4096"),
            "mounting the tmpfs root over " + root));
  TRY(MakeDevices(root, plan));  // first: a host block device as a disk is bound into it
  for (const Bind& bind : plan.binds) TRY(MountBind(root, bind));
  TRY(Check(::mount(nullptr, (root + "/dev").c_str(), nullptr,
                    MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, nullptr),
            "making the jail's /dev read-only"));
  TRY(Check(::mount(nullptr, root.c_str(), nullptr,
                    MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr),
            "making the jail's root read-only"));
  TRY(Check(::chdir(root.c_str()), "chdir " + root));
  // pivot_root(".", "."): the old root ends up mounted on top of the new one, and the detach
  // below takes it away; no directory for it is needed in the (read-only) new root.
  TRY(Check(static_cast<int>(::syscall(SYS_pivot_root, ".", ".")), "pivot_root"));
  TRY(Check(::umount2(".", MNT_DETACH), "detaching the host's root"));
  TRY(Check(::chdir("/"), "chdir /"));
  for (Bind& bind : plan.binds) bind.source.Reset();
  return Check(::chdir(plan.cwd.c_str()), "chdir " + plan.cwd + " in the jail");
}

Result<void> SetLimit(int resource, uint64_t value, const char* name) {
  rlimit limit{value, value};
  return Check(::setrlimit(resource, &limit), std::string("setrlimit ") + name);
}

// Every capability out of the bounding and ambient sets (needs CAP_SETPCAP: before setuid),
// the target ids with no supplementary groups, then the remaining sets cleared and checked.
Result<void> DropPrivileges(const Plan& plan) {
  for (int cap = 0;; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0) continue;
    if (errno == EINVAL) break;  // past the kernel's last capability
    return SysErr("jail: dropping capability " + std::to_string(cap) + " from the bounding set");
  }
  TRY(Check(::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
            "clearing the ambient capabilities"));
  TRY(Check(::setgroups(0, nullptr), "setgroups (no supplementary groups)"));
  TRY(Check(::setresgid(plan.gid, plan.gid, plan.gid), "setresgid " + std::to_string(plan.gid)));
  TRY(Check(::setresuid(plan.uid, plan.uid, plan.uid), "setresuid " + std::to_string(plan.uid)));
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  TRY(Check(static_cast<int>(::syscall(SYS_capset, &header, data)), "capset (all cleared)"));
  TRY(Check(static_cast<int>(::syscall(SYS_capget, &header, data)), "capget"));
  for (const auto& d : data) {
    if (d.effective != 0 || d.permitted != 0 || d.inheritable != 0) {
      return Err("jail: capabilities left after dropping them all");
    }
  }
  return Check(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl PR_SET_NO_NEW_PRIVS");
}

// Dies with the outer process: PR_SET_PDEATHSIG (cleared by a change of ids, so set last),
// and the pipe only the outer process holds open tells whether it is already gone.
Result<void> TieToParent(const Plan& plan) {
  TRY(Check(::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "prctl PR_SET_PDEATHSIG"));
  pollfd p{plan.parent_alive.get(), POLLIN, 0};
  if (::poll(&p, 1, 0) != 0) return Err("jail: the outer kite is gone");
  return {};
}

}  // namespace

Result<void> Confine(Plan& plan) {
  TRY(TieToParent(plan));
  if (!plan.cgroup.empty()) {
    std::string procs = plan.cgroup + "/cgroup.procs";
    UniqueFd fd(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd || ::write(fd.get(), "0", 1) != 1) return SysErr("jail: joining " + procs);
  }
  TRY(Check(::unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS),
            "unshare (mount, IPC and UTS namespaces)"));
  if (plan.netns) TRY(Check(::setns(plan.netns.get(), CLONE_NEWNET), "setns (--netns)"));
  plan.netns.Reset();
  TRY(Check(::sethostname(kHostname, sizeof kHostname - 1), "sethostname"));
  TRY(BuildRootAndPivot(plan));
  if (plan.limits.fsize) TRY(SetLimit(RLIMIT_FSIZE, *plan.limits.fsize, "fsize"));
  if (plan.limits.nofile) TRY(SetLimit(RLIMIT_NOFILE, *plan.limits.nofile, "nofile"));
  TRY(DropPrivileges(plan));
  TRY(TieToParent(plan));
  plan.parent_alive.Reset();
  return {};
}

}  // namespace kite::jail
