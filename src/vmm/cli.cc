// Command line and JSON config parsing for `kite`. See cli.h and docs/CLI.md.
#include "vmm/cli.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "base/unique_fd.h"
#include "base/units.h"
#include "vmm/balloon_options.h"
#include "vmm/device_options.h"
#include "vmm/host_resources.h"
#include "vmm/vsock_options.h"

namespace kite::cli {
namespace {

constexpr uint64_t kMaxConfigFileSize = 1 << 20;

// Options that take a value; the rest are flags.
struct OptionSpec {
  std::string_view name;
  bool takes_value;
};
// One option per line.
// clang-format off
constexpr OptionSpec kRunOptions[] = {
    {"--kernel", true},
    {"--initrd", true},
    {"--cmdline", true},
    {"--cpus", true},
    {"--memory", true},
    {"--emulator-pin", true},
    {"--serial", true},
    {"--no-acpi", false},
    {"--on-reboot", true},
    {"--config", true},
    {"--stats", false},
    {"--no-host-quirks", false},
    {"--disk", true},
    {"--net", true},
    {"--rng", false},
    {"--no-rng", false},
    {"--vsock", true},
    {"--balloon", true},
    {"--name", true},
    {"--api-sock", true},
    {"--paused", false},
    {"--transport", true},
    {"--unplug-timeout", true},
    {"--seccomp", true},
    {"--jail", true},
    {"--jail-uid", true},
    {"--jail-gid", true},
    {"--netns", true},
    {"--cgroup", true},
    {"--rlimit", true},
};
// clang-format on

bool IsJailOption(std::string_view name) {
  return name == "--jail" || name == "--jail-uid" || name == "--jail-gid" || name == "--netns" ||
         name == "--cgroup" || name == "--rlimit";
}

Result<void> ApplyJailOption(std::string_view name, std::string_view value, JailConfig& jail) {
  if (value.empty()) return Err("option " + std::string(name) + " needs a value");
  if (name == "--jail") {
    jail.dir = value;
  } else if (name == "--jail-uid") {
    jail.uid = value;
  } else if (name == "--jail-gid") {
    jail.gid = value;
  } else if (name == "--netns") {
    jail.netns = value;
  } else if (name == "--cgroup") {
    TRY(ParseCgroupLimits(value, jail));
  } else {
    TRY(ParseRlimits(value, jail));
  }
  return {};
}

// Takes the "jail" object out of a config file's text (it is not a VmConfig setting: the
// snapshot's config.json never has one); nullopt when there is none.
Result<std::optional<JailConfig>> TakeJailJson(std::string& text, const std::string& base_dir) {
  nlohmann::json root = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!root.is_object() || !root.contains("jail")) return std::optional<JailConfig>();
  JailConfig jail = TRY(JailFromJson(root["jail"], base_dir));
  root.erase("jail");
  text = root.dump();
  return std::optional<JailConfig>(std::move(jail));
}

Result<VirtioTransportKind> ParseTransport(std::string_view value) {
  if (value == "mmio") return VirtioTransportKind::kMmio;
  if (value == "pci") return VirtioTransportKind::kPci;
  return Err("'" + std::string(value) + "': expected mmio or pci");
}

// --unplug-timeout SECONDS: a decimal number of seconds, 0.001 to 3600.
Result<uint32_t> ParseUnplugTimeout(std::string_view value) {
  std::string text(value);
  char* end = nullptr;
  errno = 0;
  double seconds = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno != 0 || !(seconds >= 0.001) ||
      seconds > 3600) {
    return Err("'" + text + "': expected seconds, 0.001 to 3600");
  }
  return static_cast<uint32_t>(seconds * 1000 + 0.5);
}

const OptionSpec* FindOption(std::string_view name) {
  for (const OptionSpec& o : kRunOptions) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

Result<uint32_t> ParseCpus(std::string_view text) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    return Err("'" + std::string(text) + "' is not a number of vCPUs");
  }
  if (value < 1 || value > kMaxCpus) {
    return Err(std::string(text) + " is out of range (expected 1 to " + std::to_string(kMaxCpus) +
               ")");
  }
  return static_cast<uint32_t>(value);
}

Result<void> ParseSerial(std::string_view text, VmConfig& config) {
  if (text == "stdio") {
    config.serial = SerialMode::kStdio;
  } else if (text == "none") {
    config.serial = SerialMode::kNone;
  } else if (text.substr(0, 5) == "file:" && text.size() > 5) {
    config.serial = SerialMode::kFile;
    config.serial_path = std::string(text.substr(5));
  } else {
    return Err("'" + std::string(text) +
               "' is not a serial mode (expected stdio, file:PATH or none)");
  }
  return {};
}

Result<OnReboot> ParseOnReboot(std::string_view text) {
  if (text == "exit") return OnReboot::kExit;
  if (text == "restart") return OnReboot::kRestart;
  return Err("'" + std::string(text) + "' is not an on-reboot action (expected exit or restart)");
}

std::string ResolvePath(const std::string& path, const std::string& base_dir) {
  if (base_dir.empty() || path.empty() || path.front() == '/') return path;
  return (std::filesystem::path(base_dir) / path).string();
}

using json = nlohmann::json;

// Typed accessors that name the key in their errors.
Result<std::string> JsonString(const json& v, const std::string& key) {
  if (!v.is_string()) return Err("key '" + key + "' must be a string");
  return v.get<std::string>();
}
Result<bool> JsonBool(const json& v, const std::string& key) {
  if (!v.is_boolean()) return Err("key '" + key + "' must be true or false");
  return v.get<bool>();
}

// [2, 3] (numbers) or "2-3" (a list as --emulator-pin takes it).
Result<std::vector<uint32_t>> JsonCpuList(const json& v, const std::string& key) {
  if (v.is_string()) return TRY_CTX(ParseCpuList(v.get<std::string>()), "key '" + key + "'");
  if (!v.is_array()) return Err("key '" + key + "' must be a list of host CPUs");
  std::string text;
  for (const json& cpu : v) {
    if (!cpu.is_number_unsigned()) return Err("key '" + key + "': CPUs are numbers from 0");
    if (!text.empty()) text += ',';
    text += std::to_string(cpu.get<uint64_t>());
  }
  if (text.empty()) return Err("key '" + key + "': an empty CPU list");
  return TRY_CTX(ParseCpuList(text), "key '" + key + "'");
}
Result<std::vector<std::vector<uint32_t>>> JsonCpuLists(const json& v, const std::string& key) {
  if (!v.is_array()) return Err("key '" + key + "' must be a list of CPU lists, one per vCPU");
  std::vector<std::vector<uint32_t>> lists;
  for (size_t i = 0; i < v.size(); ++i) {
    lists.push_back(TRY(JsonCpuList(v[i], key + "[" + std::to_string(i) + "]")));
  }
  return lists;
}

Result<void> ApplyJsonKey(const std::string& key, const json& v, const std::string& base_dir,
                          VmConfig& c) {
  if (key == "kernel") {
    c.kernel = ResolvePath(TRY(JsonString(v, key)), base_dir);
  } else if (key == "initrd") {
    c.initrd = ResolvePath(TRY(JsonString(v, key)), base_dir);
  } else if (key == "cmdline") {
    c.cmdline = TRY(JsonString(v, key));
  } else if (key == "cpus") {
    if (!v.is_number_unsigned()) return Err("key 'cpus' must be a positive integer");
    c.cpus = TRY_CTX(ParseCpus(std::to_string(v.get<uint64_t>())), "key 'cpus'");
  } else if (key == "memory") {
    if (v.is_number_unsigned()) {
      c.memory = v.get<uint64_t>();
    } else if (v.is_string()) {
      TRY_CTX(ParseMemoryOption(v.get<std::string>(), c), "key 'memory'");
    } else {
      return Err("key 'memory' must be a size string (\"512M\", \"2G,hugepages=2M\") or a " +
                 std::string("number of bytes"));
    }
  } else if (key == "cpu_affinity") {
    c.cpu_affinity = TRY(JsonCpuLists(v, key));
  } else if (key == "emulator_affinity") {
    c.emulator_affinity = TRY(JsonCpuList(v, key));
  } else if (key == "serial") {
    std::string s = TRY(JsonString(v, key));
    if (s.substr(0, 5) == "file:") s = "file:" + ResolvePath(s.substr(5), base_dir);
    TRY_CTX(ParseSerial(s, c), "key 'serial'");
  } else if (key == "acpi") {
    c.acpi = TRY(JsonBool(v, key));
  } else if (key == "on_reboot") {
    c.on_reboot = TRY_CTX(ParseOnReboot(TRY(JsonString(v, key))), "key 'on_reboot'");
  } else if (key == "stats") {
    c.stats = TRY(JsonBool(v, key));
  } else if (key == "host_quirks") {
    c.host_quirks = TRY(JsonBool(v, key));
  } else if (key == "cpu_template") {
    c.cpu_template = TRY(JsonString(v, key));
  } else if (key == "disks" || key == "nets") {
    if (!v.is_array()) return Err("key '" + key + "' must be an array of objects");
    for (size_t i = 0; i < v.size(); ++i) {
      std::string ctx = "key '" + key + "'[" + std::to_string(i) + "]";
      if (key == "disks") {
        c.disks.push_back(TRY_CTX(DiskFromJson(v[i], base_dir), ctx));
      } else {
        c.nets.push_back(TRY_CTX(NetFromJson(v[i]), ctx));
      }
    }
  } else if (key == "rng") {
    c.rng = TRY(JsonBool(v, key));
  } else if (key == "vsock") {
    c.vsock = TRY_CTX(VsockFromJson(v), "key 'vsock'");
  } else if (key == "balloon") {
    c.balloon = TRY_CTX(BalloonFromJson(v), "key 'balloon'");
  } else if (key == "transport") {
    c.transport = TRY_CTX(ParseTransport(TRY(JsonString(v, key))), "key 'transport'");
  } else if (key == "pci_slots") {
    if (!v.is_object()) return Err("key 'pci_slots' must be an object of device id: slot");
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!it->is_number_unsigned()) {
        return Err("key 'pci_slots': '" + it.key() + "' must be a slot number 1-31");
      }
      c.pci_slots[it.key()] =
          static_cast<uint32_t>(std::min<uint64_t>(it->get<uint64_t>(), 1u << 31));
    }
  } else if (key == "unplug_timeout_ms") {
    if (!v.is_number_unsigned() || v.get<uint64_t>() == 0 || v.get<uint64_t>() > 3600000) {
      return Err("key 'unplug_timeout_ms' must be 1 to 3600000 (milliseconds)");
    }
    c.unplug_timeout_ms = static_cast<uint32_t>(v.get<uint64_t>());
  } else if (key == "name") {
    c.name = TRY(JsonString(v, key));
  } else if (key == "api_sock") {
    c.api_sock = ResolvePath(TRY(JsonString(v, key)), base_dir);
  } else if (key == "paused") {
    c.start_paused = TRY(JsonBool(v, key));
  } else {
    return Err("unknown key '" + key + "'");
  }
  return {};
}

}  // namespace

Result<std::string> ReadConfigFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return SysErr("opening " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return SysErr("stat " + path);
  if (!S_ISREG(st.st_mode)) return Err(path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxConfigFileSize) {
    return Err(path + ": larger than " + FormatSize(kMaxConfigFileSize));
  }
  std::string text(st.st_size, '\0');
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::read(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysErr("reading " + path);
    if (n == 0) break;
    done += n;
  }
  text.resize(done);
  return text;
}

Result<void> ApplyConfigJson(std::string_view json_text, const std::string& base_dir,
                             VmConfig& config) {
  json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Err("not valid JSON");
  if (!root.is_object()) return Err("the top level must be a JSON object");
  for (auto it = root.begin(); it != root.end(); ++it) {
    TRY(ApplyJsonKey(it.key(), it.value(), base_dir, config));
  }
  return {};
}

Result<void> ApplyOption(std::string_view name, std::string_view value, VmConfig& c) {
  std::string ctx(name);
  if (name == "--kernel") {
    c.kernel = value;
  } else if (name == "--initrd") {
    c.initrd = value;
  } else if (name == "--cmdline") {
    c.cmdline = value;
  } else if (name == "--cpus") {
    TRY_CTX(ParseCpusOption(value, c), ctx);
  } else if (name == "--memory") {
    TRY_CTX(ParseMemoryOption(value, c), ctx);
  } else if (name == "--emulator-pin") {
    c.emulator_affinity = TRY_CTX(ParseCpuList(value), ctx);
  } else if (name == "--serial") {
    TRY_CTX(ParseSerial(value, c), ctx);
  } else if (name == "--no-acpi") {
    c.acpi = false;
  } else if (name == "--on-reboot") {
    c.on_reboot = TRY_CTX(ParseOnReboot(value), ctx);
  } else if (name == "--stats") {
    c.stats = true;
  } else if (name == "--no-host-quirks") {
    c.host_quirks = false;
  } else if (name == "--disk") {
    c.disks.push_back(TRY_CTX(ParseDiskOption(value), ctx));
  } else if (name == "--net") {
    c.nets.push_back(TRY_CTX(ParseNetOption(value), ctx));
  } else if (name == "--rng") {
    c.rng = true;
  } else if (name == "--no-rng") {
    c.rng = false;
  } else if (name == "--vsock") {
    c.vsock = TRY_CTX(ParseVsockOption(value), ctx);
  } else if (name == "--balloon") {
    c.balloon = TRY_CTX(ParseBalloonOption(value), ctx);
  } else if (name == "--name") {
    c.name = value;
  } else if (name == "--api-sock") {
    c.api_sock = value;
  } else if (name == "--paused") {
    c.start_paused = true;
  } else if (name == "--transport") {
    c.transport = TRY_CTX(ParseTransport(value), ctx);
  } else if (name == "--unplug-timeout") {
    c.unplug_timeout_ms = TRY_CTX(ParseUnplugTimeout(value), ctx);
  } else {
    return Err("unknown option " + ctx);
  }
  return {};
}

// kite restore DIR [--api-sock PATH] [--paused] [--disk-overlays] [--serial MODE]
Result<Command> ParseRestore(std::span<const std::string> args) {
  Restore restore;
  JailConfig jail;
  std::string jail_option;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> Result<std::string> {
      if (i + 1 >= args.size()) return Err("option " + a + " needs a value");
      return args[++i];
    };
    if (a == "--help" || a == "-h") return Command(Help{});
    if (a == "--paused") {
      restore.options.paused = true;
    } else if (a == "--disk-overlays") {
      restore.options.disk_overlays = true;
    } else if (a == "--seccomp") {
      restore.seccomp = TRY_CTX(seccomp::ParseMode(TRY(value())), "--seccomp");
    } else if (a.rfind("--seccomp=", 0) == 0) {
      restore.seccomp = TRY_CTX(seccomp::ParseMode(a.substr(10)), "--seccomp");
    } else if (a == "--api-sock") {
      restore.options.api_sock = TRY(value());
    } else if (a == "--serial") {
      VmConfig serial;
      TRY_CTX(ParseSerial(TRY(value()), serial), "--serial");
      restore.options.override_serial = true;
      restore.options.serial = serial.serial;
      restore.options.serial_path = serial.serial_path;
    } else if (std::string name = a.substr(0, a.find('=')); IsJailOption(name)) {
      std::string v = name.size() < a.size() ? a.substr(name.size() + 1) : TRY(value());
      TRY(ApplyJailOption(name, v, jail));
      if (jail_option.empty()) jail_option = name;
    } else if (a.rfind("--", 0) == 0) {
      return Err("unknown option " + a + " of kite restore (try kite --help)");
    } else if (restore.options.path.empty()) {
      restore.options.path = a;
    } else {
      return Err("kite restore takes one snapshot directory ('" + a + "' is a second)");
    }
  }
  if (restore.options.path.empty()) return Err("kite restore needs a snapshot directory");
  if (!jail_option.empty()) {
    if (jail.dir.empty()) return Err(jail_option + " needs --jail DIR");
    // The clones' overlays go into the jail's directory, where the jailed kite may write.
    if (restore.options.disk_overlays) restore.options.overlay_parent = jail.dir;
    TRY(ValidateJailConfig(jail));
    restore.jail = std::move(jail);
  }
  return Command(std::move(restore));
}

Result<Command> ParseCommandLine(std::span<const std::string> args, const FileReader& read_file) {
  if (args.empty()) return Err("no command given (try kite --help)");
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") return Command(Help{});
  if (args[0] == "--version" || args[0] == "-V") return Command(ShowVersion{});
  if (args[0] == "restore") return ParseRestore(args);
  if (args[0] == "ctl") return Command(Ctl{{args.begin() + 1, args.end()}});
  if (args[0] != "run") return Err("unknown command '" + args[0] + "' (try kite --help)");

  std::vector<std::pair<std::string, std::string>> options;
  std::optional<std::string> config_path;
  seccomp::Mode seccomp_mode = kDefaultSeccomp;
  std::vector<std::pair<std::string, std::string>> jail_options;
  std::string jail_option;  // the first jail option given, for the error without --jail
  for (size_t i = 1; i < args.size(); ++i) {
    std::string name = args[i], value;
    if (name == "--help" || name == "-h") return Command(Help{});
    size_t eq = name.find('=');
    bool inline_value = name.rfind("--", 0) == 0 && eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const OptionSpec* spec = FindOption(name);
    if (spec == nullptr) return Err("unknown option " + name + " (try kite --help)");
    if (spec->takes_value && !inline_value) {
      if (i + 1 >= args.size()) return Err("option " + name + " needs a value");
      value = args[++i];
    } else if (!spec->takes_value && inline_value) {
      return Err("option " + name + " takes no value");
    }
    if (name == "--config") {
      config_path = value;
    } else if (name == "--seccomp") {
      seccomp_mode = TRY_CTX(seccomp::ParseMode(value), "--seccomp");
    } else if (IsJailOption(name)) {
      jail_options.emplace_back(name, value);
      if (jail_option.empty()) jail_option = name;
    } else {
      options.emplace_back(name, value);
    }
  }

  Run run;
  run.seccomp = seccomp_mode;
  std::optional<JailConfig> file_jail;
  if (config_path) {
    std::string text = TRY_CTX(read_file(*config_path), "config " + *config_path);
    std::string base_dir = std::filesystem::path(*config_path).parent_path().string();
    file_jail = TRY_CTX(TakeJailJson(text, base_dir), "config " + *config_path);
    TRY_CTX(ApplyConfigJson(text, base_dir, run.config), "config " + *config_path);
  }
  if (file_jail || !jail_option.empty()) {
    // The command line's jail settings win over the file's, one by one.
    JailConfig merged = file_jail.value_or(JailConfig{});
    for (const auto& [name, value] : jail_options) TRY(ApplyJailOption(name, value, merged));
    if (merged.dir.empty()) {
      return Err((jail_option.empty() ? "config key 'jail'" : jail_option) + " needs --jail DIR");
    }
    TRY(ValidateJailConfig(merged));
    run.jail = std::move(merged);
  }
  // Devices given on the command line replace the config file's list of that kind.
  auto given = [&](std::string_view n) {
    for (const auto& o : options) {
      if (o.first == n) return true;
    }
    return false;
  };
  if (given("--disk")) run.config.disks.clear();
  if (given("--net")) run.config.nets.clear();
  for (const auto& [name, value] : options) TRY(ApplyOption(name, value, run.config));
  TRY(ValidateVmConfig(run.config));
  return Command(std::move(run));
}

std::string UsageText() {
  return R"(kite: a small virtual machine monitor on Linux KVM

Usage:
  kite run --kernel PATH [options]    boot a kernel
  kite restore DIR [options]          bring a snapshot back to life (docs/SNAPSHOTS.md)
  kite ctl [--json] SOCKET COMMAND [key=value ...]
                                      send a QMP command to a running kite (docs/CONTROL.md)
  kite --help                         this text
  kite --version                      the version

Options of kite run:
  --kernel PATH          ELF vmlinux (64-bit or PVH entry) or bzImage
  --initrd PATH          initial ramdisk
  --cmdline STR          kernel command line (default "console=ttyS0 reboot=k panic=1")
  --cpus N               vCPUs, 1 to 254 (default 1)
  --cpus N,pin=LIST      ... each vCPU on one host CPU of LIST (e.g. 4,pin=2-5)
  --memory SIZE          guest RAM, e.g. 512M, 2G (default 512M)
  --memory SIZE,hugepages=2M|1G,prealloc=on,shared=on
                         ... from the huge page pool, faulted in at start, a shared memfd
  --emulator-pin LIST    run kite's threads other than the vCPUs on these host CPUs
  --serial MODE          stdio (default), file:PATH or none; Ctrl-A x quits on stdio
  --no-acpi              describe the machine with an MP table instead of ACPI
  --on-reboot ACTION     exit (default, status 2) or restart when the guest resets
  --config FILE.json     settings from a JSON file; command-line options win
  --stats                print VM exit and device counters at the end
  --no-host-quirks       do not adapt the kernel command line to an emulated KVM host
  --disk SPEC            a virtio-blk disk (repeatable):
                           path=FILE,format=raw|qcow2|qed|vmdk[,readonly=on][,cache=MODE]
                           [,serial=ID][,queues=N][,id=ID]; MODE: writeback (default),
                           writethrough, none, unsafe.
                           format may be left out only with readonly=on; qed and vmdk need
                           readonly=on (to let the guest write over a VMDK, give it a qcow2
                           overlay: kite-img create -f qcow2 -b D.vmdk -F vmdk O.qcow2)
  --net SPEC             a virtio-net interface (repeatable): user[,hostfwd=tcp::2222-:22]
                           [,mac=MAC][,id=ID] (rootless NAT) or tap=NAME[,mac=MAC][,id=ID]
  --no-rng               no virtio-rng entropy device (on by default)
  --vsock cid=N,uds=PATH a virtio-vsock device (guest CID N >= 3); host programs connect to
                           PATH and send "CONNECT <port>\n", the guest's connections to host
                           port P reach PATH_P (docs/VSOCK.md)
  --balloon SPEC         a virtio-balloon: size=SIZE (taken from the guest at start)
                           [,deflate_on_oom=on][,free_page_reporting=on]
                           [,statistics_interval=SECONDS][,id=ID]; QMP `balloon` resizes it
  --transport KIND       how virtio devices attach: mmio (default) or pci (virtio-pci with
                           MSI-X behind a PCI host bridge; needs ACPI)
  --unplug-timeout SECS  device_del: how long the guest has to release a device before
                           DEVICE_UNPLUG_GUEST_ERROR (default 10; up to 3600, e.g. 0.5)
  --name NAME            the VM's name (query-name)
  --api-sock PATH        serve the QMP control socket at PATH (mode 0600)
  --paused               build and load the VM, then wait for `cont` (QMP status prelaunch)
  --seccomp MODE         system-call filters on kite's threads: on (default; a call outside
                           a thread's list ends kite with SIGSYS), log (the kernel logs it and
                           lets it run), off. See docs/SECURITY.md
  --jail DIR             (as root) confine kite before it builds the VM: own mount, PID, IPC
                           and UTS namespaces, a root holding only the VM's files, /dev/kvm,
                           /dev/net/tun and DIR (read-write, at its own path), no
                           capabilities, no_new_privs. See docs/SECURITY.md "The jail"
  --jail-uid U, --jail-gid G
                         the user and group kite becomes in the jail (number or name; not 0)
  --netns PATH           in the jail: join this network namespace (/var/run/netns/NAME)
  --cgroup LIMITS        in the jail: cpu.max=QUOTA [PERIOD]|max,memory.max=SIZE|max, set in
                           a cgroup v2 group of its own (/sys/fs/cgroup/kite/PID)
  --rlimit LIMITS        in the jail: fsize=SIZE,nofile=N

Options of kite restore:
  --paused               leave the restored VM paused until `cont`
  --disk-overlays        give each writable disk a fresh qcow2 overlay (clones)
  --api-sock PATH        the control socket (the snapshot's is not reused)
  --serial MODE          the console, as for kite run (default: the snapshot's)
  --seccomp MODE         as for kite run (default on)
  --jail DIR ...         as for kite run, with --jail-uid, --jail-gid, --netns, --cgroup and
                           --rlimit; the snapshot directory is bound read-only (not with
                           --disk-overlays)

Exit status: 0 guest powered off, 1 kite failed, 2 guest reset, 3 guest crashed,
130 stopped by the user (Ctrl-A x, SIGINT, SIGTERM). See docs/CLI.md.
)";
}

}  // namespace kite::cli
