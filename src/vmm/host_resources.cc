// Host resources: memory backing and thread placement options. See host_resources.h.
#include "vmm/host_resources.h"

#include <sched.h>

#include <algorithm>
#include <charconv>

#include "base/key_values.h"
#include "base/units.h"

namespace kite {
namespace {

constexpr uint64_t k2M = 2ull << 20;
constexpr uint64_t k1G = 1ull << 30;

Result<uint32_t> ParseCpuNumber(std::string_view text) {
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return Err("'" + std::string(text) + "' is not a CPU number");
  }
  if (value >= kMaxHostCpu) {
    return Err("CPU " + std::string(text) + " is out of range (0 to " +
               std::to_string(kMaxHostCpu - 1) + ")");
  }
  return value;
}

Result<bool> ParseOnOff(const KeyValue& kv) {
  if (kv.value == "on") return true;
  if (kv.value == "off") return false;
  return Err(kv.key + "=" + kv.value + ": expected on or off");
}

}  // namespace

Result<std::vector<uint32_t>> ParseCpuList(std::string_view text) {
  std::vector<uint32_t> cpus;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string_view item =
        text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
    size_t dash = item.find('-');
    uint32_t first = TRY(ParseCpuNumber(item.substr(0, dash)));
    uint32_t last = first;
    if (dash != std::string_view::npos) last = TRY(ParseCpuNumber(item.substr(dash + 1)));
    if (last < first) return Err("'" + std::string(item) + "' is a descending range");
    for (uint32_t cpu = first; cpu <= last; ++cpu) cpus.push_back(cpu);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  std::sort(cpus.begin(), cpus.end());
  if (std::adjacent_find(cpus.begin(), cpus.end()) != cpus.end()) {
    return Err("'" + std::string(text) + "' names a CPU twice");
  }
  return cpus;
}

std::string FormatCpuList(const std::vector<uint32_t>& cpus) {
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(cpus[i]);
    if (j > i) out += "-" + std::to_string(cpus[j]);
    i = j + 1;
  }
  return out;
}

Result<void> ParseMemoryOption(std::string_view text, VmConfig& config) {
  std::vector<KeyValue> items = SplitKeyValues(text);
  config.memory = TRY(ParseSize(items[0].text()));
  MemoryBacking backing;
  for (size_t i = 1; i < items.size(); ++i) {
    const KeyValue& kv = items[i];
    if (!kv.has_value) return Err("'" + kv.text() + "': expected key=value");
    if (kv.key == "hugepages") {
      backing.hugepage_size = kv.value == "off" ? 0 : TRY_CTX(ParseSize(kv.value), "hugepages");
      if (backing.hugepage_size != 0 && backing.hugepage_size != k2M &&
          backing.hugepage_size != k1G) {
        return Err("hugepages=" + kv.value + ": expected 2M, 1G or off");
      }
    } else if (kv.key == "prealloc") {
      backing.prealloc = TRY(ParseOnOff(kv));
    } else if (kv.key == "shared") {
      backing.shared = TRY(ParseOnOff(kv));
    } else {
      return Err("unknown setting '" + kv.key + "' (expected hugepages, prealloc or shared)");
    }
  }
  config.memory_backing = backing;
  return {};
}

std::string FormatMemoryOption(const VmConfig& config) {
  std::string out = std::to_string(config.memory);
  const MemoryBacking& b = config.memory_backing;
  if (b.hugepage_size == k2M) out += ",hugepages=2M";
  if (b.hugepage_size == k1G) out += ",hugepages=1G";
  if (b.prealloc) out += ",prealloc=on";
  if (b.shared) out += ",shared=on";
  return out;
}

Result<void> ParseCpusOption(std::string_view text, VmConfig& config) {
  std::vector<KeyValue> items = SplitKeyValues(text);
  std::string count = items[0].text();
  uint64_t cpus = 0;
  auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), cpus);
  if (count.empty() || ec != std::errc() || end != count.data() + count.size()) {
    return Err("'" + count + "' is not a number of vCPUs");
  }
  if (cpus < 1 || cpus > kMaxCpus) {
    return Err(count + " is out of range (expected 1 to " + std::to_string(kMaxCpus) + ")");
  }
  config.cpus = static_cast<uint32_t>(cpus);
  config.cpu_affinity.clear();
  for (size_t i = 1; i < items.size(); ++i) {
    const KeyValue& kv = items[i];
    if (kv.key != "pin" || !kv.has_value) {
      return Err("unknown setting '" + kv.text() + "' (expected pin=LIST)");
    }
    std::vector<uint32_t> host = TRY_CTX(ParseCpuList(kv.value), "pin");
    if (host.size() != cpus) {
      return Err("pin=" + kv.value + ": " + std::to_string(host.size()) + " host CPUs for " +
                 count + " vCPUs (give one per vCPU, or per-vCPU lists as cpu_affinity in a " +
                 "--config file)");
    }
    for (uint32_t cpu : host) config.cpu_affinity.push_back({cpu});
  }
  return {};
}

Result<void> ValidateHostResources(const VmConfig& c) {
  uint64_t page = c.memory_backing.hugepage_size;
  if (page != 0 && page != k2M && page != k1G) {
    return Err("memory: hugepages: " + std::to_string(page) + " bytes (expected 2M or 1G)");
  }
  if (page != 0 && c.memory % page != 0) {
    return Err("memory: " + FormatSize(c.memory) + " is not a multiple of the huge page size (" +
               FormatSize(page) + ")");
  }
  if (!c.cpu_affinity.empty() && c.cpu_affinity.size() != c.cpus) {
    return Err("cpu_affinity: " + std::to_string(c.cpu_affinity.size()) + " lists for " +
               std::to_string(c.cpus) + " vCPUs (expected one per vCPU)");
  }
  auto check = [](const std::vector<uint32_t>& cpus, const std::string& where) -> Result<void> {
    if (cpus.empty()) return Err(where + ": an empty CPU list");
    for (uint32_t cpu : cpus) {
      if (cpu >= kMaxHostCpu) return Err(where + ": CPU " + std::to_string(cpu) + " out of range");
    }
    return {};
  };
  for (size_t i = 0; i < c.cpu_affinity.size(); ++i) {
    TRY(check(c.cpu_affinity[i], "cpu_affinity[" + std::to_string(i) + "]"));
  }
  if (!c.emulator_affinity.empty()) TRY(check(c.emulator_affinity, "emulator_affinity"));
  return {};
}

Result<std::vector<uint32_t>> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) < 0) return SysErr("sched_getaffinity");
  std::vector<uint32_t> cpus;
  for (uint32_t cpu = 0; cpu < kMaxHostCpu; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

Result<void> PinThisThread(const std::vector<uint32_t>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (uint32_t cpu : cpus) {
    if (cpu < kMaxHostCpu) CPU_SET(cpu, &set);
  }
  if (::sched_setaffinity(0, sizeof(set), &set) < 0) {
    return SysErr("pinning a thread to host CPUs " + FormatCpuList(cpus));
  }
  return {};
}

Result<ThreadPlacement> PlaceThreads(const VmConfig& config) {
  ThreadPlacement placement;
  if (config.cpu_affinity.empty() && config.emulator_affinity.empty()) return placement;
  std::vector<uint32_t> allowed = TRY(AllowedCpus());
  auto check = [&](const std::vector<uint32_t>& cpus, const std::string& what) -> Result<void> {
    for (uint32_t cpu : cpus) {
      if (!std::binary_search(allowed.begin(), allowed.end(), cpu)) {
        return Err(what + ": host CPU " + std::to_string(cpu) +
                   " is not one this process may run on (" + FormatCpuList(allowed) + ")");
      }
    }
    return {};
  };
  for (size_t i = 0; i < config.cpu_affinity.size(); ++i) {
    TRY(check(config.cpu_affinity[i], "vCPU " + std::to_string(i) + " pin"));
  }
  TRY(check(config.emulator_affinity, "emulator pin"));
  if (!config.emulator_affinity.empty()) TRY(PinThisThread(config.emulator_affinity));
  for (uint32_t i = 0; i < config.cpus; ++i) {
    if (i < config.cpu_affinity.size()) {
      placement.vcpus.push_back(config.cpu_affinity[i]);
    } else if (!config.emulator_affinity.empty()) {
      placement.vcpus.push_back(allowed);
    } else {
      placement.vcpus.emplace_back();
    }
  }
  return placement;
}

}  // namespace kite
