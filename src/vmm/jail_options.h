// The settings of `kite run --jail DIR` (docs/SECURITY.md "The jail"): where the jail is, whom
// kite becomes in it, and the limits it runs under. Pure parsing; vmm/jail.h does the work.
//
//   JailConfig jail;
//   jail.dir = "/srv/vm1";
//   TRY(ParseCgroupLimits("cpu.max=50000 100000,memory.max=1G", jail));
//   TRY(ParseRlimits("fsize=8G,nofile=1024", jail));
//   TRY(ValidateJailConfig(jail));
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace kite {

struct JailConfig {
  std::string dir;  // --jail DIR: the jail's writable directory, visible at its own path inside
  // --jail-uid / --jail-gid: a number or a name (resolved when the jail is built); never 0.
  std::string uid;
  std::string gid;
  std::string netns;  // --netns PATH: join this network namespace; empty: keep the host's
  // --cgroup: the limits written into kite's own cgroup v2 group (/sys/fs/cgroup/kite/PID);
  // empty: not set (no cgroup at all when both are empty).
  std::string cpu_max;     // "max" or "QUOTA PERIOD" (microseconds), as cpu.max takes it
  std::string memory_max;  // "max" or a number of bytes, as memory.max takes it
  // --rlimit: RLIMIT_FSIZE and RLIMIT_NOFILE (soft and hard); nullopt: inherited.
  std::optional<uint64_t> fsize;
  std::optional<uint64_t> nofile;

  bool has_cgroup() const { return !cpu_max.empty() || !memory_max.empty(); }
};

// "cpu.max=QUOTA [PERIOD]|max,memory.max=SIZE|max": one or more KEY=VALUE, comma-separated.
Result<void> ParseCgroupLimits(std::string_view text, JailConfig& jail);

// "fsize=SIZE,nofile=N": one or more KEY=VALUE, comma-separated.
Result<void> ParseRlimits(std::string_view text, JailConfig& jail);

// The --config file's "jail" object: {"dir", "uid", "gid", "netns", "cgroup": {"cpu.max",
// "memory.max"}, "rlimits": {"fsize", "nofile"}}; ids and limits as strings or numbers.
// Relative paths are taken relative to `base_dir`. Errors name the key.
Result<JailConfig> JailFromJson(const nlohmann::json& j, const std::string& base_dir);

// A jail needs its directory and both ids.
Result<void> ValidateJailConfig(const JailConfig& jail);

}  // namespace kite
