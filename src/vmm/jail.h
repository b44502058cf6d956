// The jail of `kite run --jail DIR` (docs/SECURITY.md "The jail"): kite, started as root,
// confines itself before it builds the VM and ends as an unprivileged process that can still
// run the VM, write snapshots into DIR and hot-add devices whose files are in DIR.
//
//   Result<jail::Entered> entered = jail::Enter(jail_config, vm_config);
//   if (!entered) return Fail(entered.error().message());   // nothing was started
//   if (!entered->jailed) return entered->exit_status;       // the outer process, after the end
//   ... seccomp, build and run the VM as usual (this is the jailed process) ...
//
// Order, each step's failure naming the step and errno (nothing half-jailed ever runs a VM):
// in the outer process, as root: every file the VM needs is found and opened (O_PATH),
// the cgroup v2 group /sys/fs/cgroup/kite/PID is made with its limits, then a fork into new
// PID namespace. The child (PID 1 there, this kite) joins the group, unshares its mount, IPC
// and UTS namespaces, joins --netns, builds a read-only tmpfs root holding only bind mounts of
// those files (read-only unless the VM writes them), /dev/kvm, /dev/net/tun and DIR
// (read-write), each at its own host path, pivot_roots into it, detaches the old root, sets
// the rlimits, becomes the target uid/gid with no supplementary groups, drops every
// capability (bounding and ambient sets too) and sets no_new_privs. The outer process keeps
// nothing but the child's pid: it forwards SIGINT/SIGTERM (SIGHUP, SIGQUIT as SIGTERM),
// waits, removes the cgroup group and ends as the child ended.
#pragma once

#include "base/result.h"
#include "kite/kite.h"
#include "vmm/jail_options.h"

namespace kite::jail {

struct Entered {
  bool jailed = false;  // true: this is the confined kite; build and run the VM
  int exit_status = 0;  // the outer process: the jailed kite's exit status
};

// Makes `config`'s paths absolute (the jail's working directory is DIR) and enters the jail.
// Errors before the fork are returned; the outer process returns once the child has ended
// (re-raising the signal that killed it, if one did); the child returns once confined.
// `snapshot_dir` (kite restore): a directory the jail also holds, read-only, at its path.
Result<Entered> Enter(const JailConfig& jail, VmConfig& config,
                      const std::string& snapshot_dir = "");

// Test hook: with KITE_TEST_JAIL_PROBE=file=PATH,pid=N,connect=IP:PORT in the environment, the
// jailed kite reports on stderr, one line "kite: jail probe: KEY: VALUE" each, what it can
// reach: its ids, capabilities, no_new_privs, rlimits, hostname, the jail's root, whether it
// can open PATH, signal pid N or any process, connect to IP:PORT, become root again, mount,
// or write outside DIR. Called by Enter in the confined child.
void ProbeIfAsked();

}  // namespace kite::jail
