// The parts of the jail (vmm/jail.h) shared by the outer process (jail.cc) and the confined
// child (jail_confine.cc).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "vmm/jail_options.h"

namespace kite::jail {

// One file (or DIR) that appears in the jail, at `target` (a host path, the same inside).
struct Bind {
  std::string target;
  std::string source_path;  // the real path, checked by the outer process
  UniqueFd source;          // O_PATH, opened by the child in its own mount namespace
  bool writable = false;
  bool device = false;     // a character or block device: no nodev on its mount
  bool directory = false;  // DIR itself
};

// A device node made in the jail's own /dev, owned by the jail's user (mode 0600): the host's
// node stays as it is.
struct DeviceNode {
  std::string path;  // "/dev/kvm"
  dev_t rdev = 0;
};

// Everything the child needs, prepared (and checked) before the fork.
struct Plan {
  std::string dir;  // realpath of DIR: the jail's writable directory and its working directory
  std::string cwd;  // the working directory inside the jail
  std::vector<Bind> binds;
  std::vector<DeviceNode> devices;
  uid_t uid = 0;
  gid_t gid = 0;
  UniqueFd netns;         // --netns, opened; invalid: keep the host's network
  std::string cgroup;     // the group's directory; empty: no cgroup
  JailConfig limits;      // fsize, nofile
  UniqueFd parent_alive;  // read end of a pipe only the outer process can write
};

// In the child: every step of the confinement, in order. The first failure is returned, named.
Result<void> Confine(Plan& plan);

}  // namespace kite::jail
