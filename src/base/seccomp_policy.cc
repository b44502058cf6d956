// The allow-lists. Each kind of thread gets the calls its work needs and nothing more; the
// lists were taken from what the threads do (strace, per thread, of kite running every control
// command; docs/SECURITY.md) and every kvm/e2e/fault test runs with them in force.
//
// Arguments are checked where they decide what a call can reach:
//  - ioctl: the request number, per kind (a vCPU thread cannot create a VM or a tap);
//  - socket: the family (AF_UNIX everywhere a socket is made; AF_INET/AF_INET6 only in the
//    threads that set up or run a network backend; never AF_PACKET or AF_NETLINK);
//  - mmap/mprotect: no PROT_EXEC outside the two threads that may load libslirp (dlopen);
//  - clone: threads only (CLONE_THREAD), never a new process; clone3 answers ENOSYS, so glibc
//    falls back to clone, whose flags a filter can read;
//  - tgkill: only to threads of this process; prctl: only the thread name;
//  - openat (the event loop of a user network): read-only, no O_CREAT (slirp's resolv.conf).
// execve, fork, ptrace, mount, bpf, module loading, kill of other processes and everything
// else not listed fall to the default action (SIGSYS, or a log line in log mode).
#include "base/seccomp_policy.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <linux/sockios.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <string>

#include "base/kvm_ioctls.h"

namespace kite::seccomp {
namespace {

// Adds rules to one filter; the first failure is kept and reported.
class Rules {
 public:
  explicit Rules(scmp_filter_ctx ctx) : ctx_(ctx) {}

  // Unconditional calls, by name.
  void Allow(std::initializer_list<const char*> names) {
    for (const char* name : names) Add(SCMP_ACT_ALLOW, name, {});
  }
  // A call allowed when argument `arg` equals one of `values` (compared on the low 32 bits:
  // ioctl requests, socket families and prctl options are ints to the kernel).
  void AllowArg(const char* name, unsigned arg, std::initializer_list<unsigned long> values) {
    for (unsigned long value : values) {
      Add(SCMP_ACT_ALLOW, name, {SCMP_CMP64(arg, SCMP_CMP_MASKED_EQ, 0xffffffffUL, value)});
    }
  }
  // A call allowed when (argument `arg` & mask) == value.
  void AllowMasked(const char* name, unsigned arg, unsigned long mask, unsigned long value) {
    Add(SCMP_ACT_ALLOW, name, {SCMP_CMP64(arg, SCMP_CMP_MASKED_EQ, mask, value)});
  }
  void Errno(const char* name, int error) { Add(SCMP_ACT_ERRNO(error), name, {}); }

  Result<void> result() const { return error_.empty() ? Result<void>{} : Err(error_); }

 private:
  void Add(uint32_t action, const char* name, std::initializer_list<scmp_arg_cmp> args) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) {
      if (error_.empty()) error_ = std::string("seccomp: no system call named ") + name;
      return;
    }
    int rc = seccomp_rule_add_array(ctx_, action, nr, static_cast<unsigned>(args.size()),
                                    args.size() == 0 ? nullptr : args.begin());
    if (rc < 0 && error_.empty()) {
      error_ = std::string("seccomp: rule for ") + name + ": " + std::strerror(-rc);
    }
  }

  scmp_filter_ctx ctx_;
  std::string error_;
};

// --- ioctl requests, grouped by what they touch ---
// A vCPU's own state and KVM_RUN.
constexpr std::initializer_list<unsigned long> kVcpuIoctls = {
    KVM_RUN,           KVM_GET_REGS,        KVM_SET_REGS,
    KVM_GET_SREGS,     KVM_SET_SREGS,       KVM_GET_FPU,
    KVM_SET_FPU,       kKvmGetXsave,        kKvmSetXsave,
    kKvmGetXsave2,     KVM_GET_XCRS,        KVM_SET_XCRS,
    kKvmGetMsrs,       kKvmSetMsrs,         KVM_GET_LAPIC,
    KVM_SET_LAPIC,     KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS,
    KVM_GET_MP_STATE,  KVM_SET_MP_STATE,    KVM_GET_DEBUGREGS,
    KVM_SET_DEBUGREGS, kKvmGetCpuid2,       kKvmSetCpuid2,
    KVM_KVMCLOCK_CTRL, KVM_TRANSLATE,       KVM_GET_TSC_KHZ,
    KVM_SET_TSC_KHZ,
};
// Interrupt delivery and notification plumbing on the VM fd, which device register writes
// change at run time (MSI-X table, PCI BARs, virtio-mmio queue setup).
constexpr std::initializer_list<unsigned long> kIrqIoctls = {
    KVM_IRQ_LINE, KVM_IRQ_LINE_STATUS, KVM_SIGNAL_MSI, KVM_IRQFD, KVM_IOEVENTFD, kKvmSetGsiRouting,
};
// Building a VM, saving and restoring its machine-wide state.
constexpr std::initializer_list<unsigned long> kVmIoctls = {
    KVM_GET_API_VERSION,   KVM_CREATE_VM,
    KVM_CHECK_EXTENSION,   KVM_GET_VCPU_MMAP_SIZE,
    kKvmGetSupportedCpuid, kKvmGetMsrIndexList,
    KVM_CREATE_VCPU,       KVM_CREATE_IRQCHIP,
    KVM_CREATE_PIT2,       KVM_SET_USER_MEMORY_REGION,
    KVM_SET_TSS_ADDR,      KVM_SET_IDENTITY_MAP_ADDR,
    KVM_GET_IRQCHIP,       KVM_SET_IRQCHIP,
    KVM_GET_PIT2,          KVM_SET_PIT2,
    KVM_GET_CLOCK,         KVM_SET_CLOCK,
    KVM_ENABLE_CAP,
};
// A tap's offloads follow the features the guest accepts (a vCPU's register write).
constexpr std::initializer_list<unsigned long> kTapRunIoctls = {TUNSETOFFLOAD};
// Opening a tap and bringing it up; a block device's size; discard and write-zeroes.
// TUNSETQUEUE: the event loop's (a filter allows only what its creator's allowed too).
constexpr std::initializer_list<unsigned long> kHostDeviceIoctls = {
    TUNSETIFF,    TUNSETVNETHDRSZ, TUNSETOFFLOAD, SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCGIFINDEX,
    BLKGETSIZE64, BLKDISCARD,      BLKZEROOUT,    BLKSSZGET,    SIOCBRADDIF,  TUNSETQUEUE,
};
// Sockets and terminals: asio's non-blocking switch, the raw console.
constexpr std::initializer_list<unsigned long> kFdIoctls = {FIONBIO, FIONREAD, FIOCLEX};
constexpr std::initializer_list<unsigned long> kTerminalIoctls = {TCGETS, TCSETS, TCSETSW, TCSETSF,
                                                                  TIOCGWINSZ};

void AllowIoctls(Rules& r, std::initializer_list<unsigned long> requests) {
  r.AllowArg("ioctl", 1, requests);
}

// Every thread: memory, locks, time, exiting, logging, its name, the SIGSYS reporter's own
// calls, and handing work to an asio loop (asio::post re-arms the loop's eventfd in its epoll
// set: epoll_ctl, then write).
void Base(Rules& r, uint32_t pid) {
  r.Allow({"epoll_ctl",
           "futex",
           "restart_syscall",
           "rt_sigreturn",
           "rt_sigprocmask",
           "exit",
           "exit_group",
           "gettid",
           "getpid",
           "clock_gettime",
           "clock_nanosleep",
           "nanosleep",
           "gettimeofday",
           "sched_yield",
           "munmap",
           "madvise",
           "brk",
           "mremap",
           "write",
           "writev",
           "close",
           "getrandom"});
  r.AllowMasked("mmap", 2, PROT_EXEC, 0);
  r.AllowMasked("mprotect", 2, PROT_EXEC, 0);
  r.AllowArg("tgkill", 0, {pid});
  r.AllowArg("prctl", 0, {PR_SET_NAME, PR_GET_NAME});
}

// Starting threads (never processes). A new thread runs under this filter until it adds its
// own: it sets its robust futex list and rseq area, then installs that filter (seccomp,
// after PR_SET_NO_NEW_PRIVS, which only ever takes privileges away).
void Spawn(Rules& r) {
  r.AllowMasked("clone", 0, CLONE_THREAD, CLONE_THREAD);
  r.Errno("clone3", ENOSYS);
  r.Allow({"set_robust_list", "rseq"});
  r.AllowArg("seccomp", 0, {SECCOMP_SET_MODE_FILTER});
  r.AllowArg("prctl", 0, {PR_SET_NO_NEW_PRIVS});
}

// Reading and writing open files (disk images).
void FileIo(Rules& r) {
  r.Allow({"read", "readv", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
           "lseek", "fsync", "fdatasync", "fallocate", "ftruncate", "fstat", "newfstatat"});
}

// Waiting on fds: epoll (asio), eventfds, timerfds.
void Events(Rules& r) {
  r.Allow({"epoll_wait", "epoll_pwait", "epoll_ctl", "read", "readv", "timerfd_settime", "poll",
           "ppoll"});
}

// Talking over connected sockets.
void SocketIo(Rules& r) {
  r.Allow({"sendto", "recvfrom", "sendmsg", "recvmsg", "shutdown", "getsockopt", "setsockopt",
           "getsockname", "getpeername"});
}

// What libslirp does for the guest's connections.
void InetSockets(Rules& r) {
  r.AllowArg("socket", 0, {AF_INET, AF_INET6});
  r.Allow({"connect", "bind", "listen", "accept", "accept4", "fcntl"});
  SocketIo(r);
  // /etc/resolv.conf for the DNS forwarder: read-only, never created or truncated.
  r.AllowMasked("openat", 2, O_ACCMODE | O_CREAT | O_TRUNC, O_RDONLY);
  r.Allow({"newfstatat", "fstat", "read", "lseek"});
}

// The threads that build, change and take apart VMs and their files: the main thread and
// the control socket's command thread (and, inherited, everything they start).
void Control(Rules& r) {
  Spawn(r);
  FileIo(r);
  Events(r);
  SocketIo(r);
  r.Allow({"openat",
           "open",
           "statx",
           "fstatfs",
           "statfs",
           "access",
           "faccessat",
           "faccessat2",
           "readlink",
           "readlinkat",
           "getdents64",
           "unlink",
           "unlinkat",
           "rename",
           "renameat",
           "renameat2",
           "mkdir",
           "mkdirat",
           "flock",
           "fcntl",
           "dup",
           "dup2",
           "dup3",
           "pipe2",
           "fchmod",
           "fchmodat",
           "chmod",
           "umask",
           "getcwd",
           "copy_file_range",
           "sync_file_range",
           "getuid",
           "geteuid",
           "getgid",
           "getegid",
           "uname",
           "sysinfo",
           "prlimit64",
           "getrlimit",
           "sched_getaffinity",
           "getrusage",
           "eventfd2",
           "epoll_create1",
           "timerfd_create",
           "timerfd_gettime",
           "io_uring_setup",
           "io_uring_enter",
           "io_uring_register",
           "rt_sigaction",
           "rt_sigtimedwait",
           "sigaltstack",
           "mlock",
           "munlock"});
  r.AllowArg("socket", 0, {AF_UNIX, AF_INET, AF_INET6});
  r.AllowArg("socketpair", 0, {AF_UNIX});
  r.Allow({"connect", "bind", "listen", "accept", "accept4"});
  // Guest RAM made when a machine is built (a memfd when shared), and --emulator-pin: the
  // building thread pins itself only (pid 0).
  r.Allow({"memfd_create"});
  r.AllowArg("sched_setaffinity", 0, {0});
  // dlopen of libslirp maps code.
  r.AllowMasked("mmap", 2, PROT_EXEC, PROT_EXEC);
  r.AllowMasked("mprotect", 2, PROT_EXEC, PROT_EXEC);
  AllowIoctls(r, kVcpuIoctls);
  AllowIoctls(r, kIrqIoctls);
  AllowIoctls(r, kVmIoctls);
  AllowIoctls(r, kHostDeviceIoctls);
  AllowIoctls(r, kFdIoctls);
  AllowIoctls(r, kTerminalIoctls);
}

}  // namespace

Result<void> AddAllowRules(scmp_filter_ctx ctx, ThreadKind kind, ThreadNeeds needs, uint32_t pid) {
  Rules r(ctx);
  Base(r, pid);
  switch (kind) {
    case ThreadKind::kMain:
    case ThreadKind::kApiCommand:
      Control(r);
      break;
    case ThreadKind::kSignal:
      r.Allow({"rt_sigtimedwait"});
      break;
    case ThreadKind::kVcpu:
      r.Allow({"read"});
      AllowIoctls(r, kVcpuIoctls);
      AllowIoctls(r, kIrqIoctls);
      AllowIoctls(r, kTapRunIoctls);
      break;
    case ThreadKind::kEventLoop:
      Events(r);
      FileIo(r);
      // dgram and stream networks (socket_backend.cc): frames on Unix sockets; a stream
      // server accepts its peer. The sockets themselves are made where the device is.
      SocketIo(r);
      r.Allow({"accept4"});
      r.Allow({"io_uring_enter"});
      AllowIoctls(r, kIrqIoctls);
      AllowIoctls(r, kFdIoctls);
      // virtio-net multiqueue: the queues of the pairs the guest uses attached, the others
      // detached (the control queue's VQ_PAIRS_SET, device reset).
      AllowIoctls(r, {TUNSETQUEUE});
      if (needs.inet_sockets) InetSockets(r);
      // virtio-vsock: a guest connecting to the host's port P connects to <uds_path>_P.
      if (needs.unix_connect) {
        r.AllowArg("socket", 0, {AF_UNIX});
        r.Allow({"connect"});
      }
      break;
    case ThreadKind::kDiskWorker:
      FileIo(r);
      AllowIoctls(r, {BLKDISCARD, BLKZEROOUT});
      break;
    case ThreadKind::kUringCompletion:
      r.Allow({"io_uring_enter", "read"});
      break;
    case ThreadKind::kConsoleInput:
      r.Allow({"read", "poll", "ppoll"});
      AllowIoctls(r, kTerminalIoctls);
      // Input queued into the UART raises its receive interrupt (IER's RDA bit set: every
      // Linux getty) from this thread.
      AllowIoctls(r, {KVM_IRQ_LINE});
      break;
    case ThreadKind::kConsoleOutput:
      r.Allow({"poll", "ppoll"});
      break;
    case ThreadKind::kApiServer:
      Events(r);
      SocketIo(r);
      // SO_PEERCRED's uid against kite's own; query-block's image sizes.
      r.Allow({"accept", "accept4", "fcntl", "geteuid", "fstat", "newfstatat"});
      AllowIoctls(r, kFdIoctls);
      break;
    case ThreadKind::kHotplug:
      FileIo(r);
      r.Allow({"io_uring_enter"});
      AllowIoctls(r, kIrqIoctls);
      break;
    case ThreadKind::kBlockJob:
      FileIo(r);
      Spawn(r);
      // The pivot and the stream's end reopen the chain: backing names are resolved
      // (readlink, getcwd) and new images get their workers and io_uring.
      r.Allow({"openat", "statx", "fstatfs", "unlinkat", "fcntl", "flock", "readlink", "getcwd",
               "io_uring_enter", "io_uring_setup", "io_uring_register", "eventfd2"});
      AllowIoctls(r, {BLKGETSIZE64, BLKDISCARD, BLKZEROOUT, BLKSSZGET});
      break;
  }
  return r.result();
}

}  // namespace kite::seccomp
