// Parsing of the jail settings. See jail_options.h and docs/CLI.md.
#include "vmm/jail_options.h"

#include <charconv>
#include <filesystem>
#include <vector>

#include "base/key_values.h"
#include "base/units.h"

namespace kite {
namespace {

// The kernel's bounds for cpu.max: a period of 1 ms to 1 s, a quota of at least 1 ms.
constexpr uint64_t kMinCpuPeriod = 1000;
constexpr uint64_t kMaxCpuPeriod = 1000000;
constexpr uint64_t kMinCpuQuota = 1000;
constexpr uint64_t kDefaultCpuPeriod = 100000;
constexpr uint64_t kMaxNofile = 1 << 20;  // the kernel's default fs.nr_open

Result<uint64_t> ParseNumber(std::string_view text) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return Err("'" + std::string(text) + "' is not a number");
  }
  return value;
}

// cpu.max: "max", "max PERIOD", "QUOTA" or "QUOTA PERIOD"; written back as "QUOTA PERIOD".
Result<std::string> ParseCpuMax(std::string_view text) {
  size_t space = text.find(' ');
  std::string_view quota = text.substr(0, space);
  uint64_t period = kDefaultCpuPeriod;
  if (space != std::string_view::npos) {
    period = TRY_CTX(ParseNumber(text.substr(space + 1)), "the period");
    if (period < kMinCpuPeriod || period > kMaxCpuPeriod) {
      return Err("the period must be 1000 to 1000000 microseconds");
    }
  }
  if (quota == "max") return "max " + std::to_string(period);
  uint64_t q = TRY_CTX(ParseNumber(quota), "the quota (or max)");
  if (q < kMinCpuQuota) return Err("the quota must be at least 1000 microseconds");
  return std::to_string(q) + " " + std::to_string(period);
}

Result<std::string> ParseMemoryMax(std::string_view text) {
  if (text == "max") return std::string("max");
  uint64_t bytes = TRY(ParseSize(text));
  if (bytes == 0) return Err("0 bytes leaves kite no memory (max: no limit)");
  return std::to_string(bytes);
}

// The settings of `option` (--cgroup, --rlimit): each KEY=VALUE, neither empty.
Result<std::vector<KeyValue>> Settings(std::string_view text, std::string_view option) {
  std::vector<KeyValue> items = SplitKeyValues(text);
  for (const KeyValue& kv : items) {
    if (!kv.has_value || kv.key.empty() || kv.value.empty()) {
      return Err(std::string(option) + ": '" + kv.text() + "' is not KEY=VALUE");
    }
  }
  return items;
}

}  // namespace

Result<void> ParseCgroupLimits(std::string_view text, JailConfig& jail) {
  for (const auto& [key, value, has_value] : TRY(Settings(text, "--cgroup"))) {
    std::string ctx = "--cgroup " + std::string(key);
    if (key == "cpu.max") {
      jail.cpu_max = TRY_CTX(ParseCpuMax(value), ctx);
    } else if (key == "memory.max") {
      jail.memory_max = TRY_CTX(ParseMemoryMax(value), ctx);
    } else {
      return Err("--cgroup: unknown limit '" + std::string(key) +
                 "' (expected cpu.max or memory.max)");
    }
  }
  return {};
}

Result<void> ParseRlimits(std::string_view text, JailConfig& jail) {
  for (const auto& [key, value, has_value] : TRY(Settings(text, "--rlimit"))) {
    std::string ctx = "--rlimit " + std::string(key);
    if (key == "fsize") {
      jail.fsize = TRY_CTX(ParseSize(value), ctx);
    } else if (key == "nofile") {
      uint64_t n = TRY_CTX(ParseNumber(value), ctx);
      if (n < 1 || n > kMaxNofile)
        return Err(ctx + ": expected 1 to " + std::to_string(kMaxNofile));
      jail.nofile = n;
    } else {
      return Err("--rlimit: unknown limit '" + std::string(key) + "' (expected fsize or nofile)");
    }
  }
  return {};
}

namespace {

// A string, or a number written as one ("uid": 1000, "nofile": 1024).
Result<std::string> JsonText(const nlohmann::json& v, const std::string& key) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_unsigned()) return std::to_string(v.get<uint64_t>());
  return Err("key '" + key + "' must be a string or a positive number");
}

// {"KEY": VALUE, ...} through `parse` as "KEY=VALUE".
Result<void> JsonLimits(const nlohmann::json& v, const std::string& key, JailConfig& jail,
                        Result<void> (*parse)(std::string_view, JailConfig&)) {
  if (!v.is_object()) return Err("key '" + key + "' must be an object");
  for (auto it = v.begin(); it != v.end(); ++it) {
    std::string value = TRY(JsonText(*it, key + "." + it.key()));
    TRY_CTX(parse(it.key() + "=" + value, jail), "key '" + key + "'");
  }
  return {};
}

}  // namespace

Result<JailConfig> JailFromJson(const nlohmann::json& j, const std::string& base_dir) {
  if (!j.is_object()) return Err("key 'jail' must be an object");
  JailConfig jail;
  auto path = [&](const std::string& p) {
    if (base_dir.empty() || p.empty() || p.front() == '/') return p;
    return (std::filesystem::path(base_dir) / p).string();
  };
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string key = "jail." + it.key();
    if (it.key() == "dir") {
      jail.dir = path(TRY(JsonText(*it, key)));
    } else if (it.key() == "uid") {
      jail.uid = TRY(JsonText(*it, key));
    } else if (it.key() == "gid") {
      jail.gid = TRY(JsonText(*it, key));
    } else if (it.key() == "netns") {
      jail.netns = path(TRY(JsonText(*it, key)));
    } else if (it.key() == "cgroup") {
      TRY(JsonLimits(*it, key, jail, ParseCgroupLimits));
    } else if (it.key() == "rlimits") {
      TRY(JsonLimits(*it, key, jail, ParseRlimits));
    } else {
      return Err("unknown key '" + key + "'");
    }
  }
  return jail;
}

Result<void> ValidateJailConfig(const JailConfig& jail) {
  if (jail.dir.empty()) return Err("--jail needs a directory");
  if (jail.uid.empty() || jail.gid.empty()) {
    return Err(
        "--jail needs --jail-uid and --jail-gid: the unprivileged user and group kite "
        "becomes");
  }
  return {};
}

}  // namespace kite
