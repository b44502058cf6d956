// Emulated-KVM host detection and kernel command line editing. See host_quirks.h.
#include "vmm/host_quirks.h"

#include <fstream>
#include <sstream>

namespace kite {
namespace {

std::vector<std::string_view> SplitWords(std::string_view text) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    size_t start = i;
    while (i < text.size() && text[i] != ' ' && text[i] != '\t') ++i;
    if (i > start) words.push_back(text.substr(start, i - start));
  }
  return words;
}

// The value part of the first "flags\t\t: ..." line, or nullopt-like empty view + found=false.
bool FindFlagsLine(std::string_view cpuinfo, std::string_view* flags) {
  size_t pos = 0;
  while (pos < cpuinfo.size()) {
    size_t end = cpuinfo.find('\n', pos);
    if (end == std::string_view::npos) end = cpuinfo.size();
    std::string_view line = cpuinfo.substr(pos, end - pos);
    pos = end + 1;
    if (line.substr(0, 5) != "flags") continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.remove_suffix(1);
    if (key != "flags") continue;
    *flags = line.substr(colon + 1);
    return true;
  }
  return false;
}

std::string_view KeyOf(std::string_view item) {
  return item.substr(0, item.find('='));
}

}  // namespace

HostQuirks DetectHostQuirks(std::string_view cpuinfo) {
  std::string_view flags;
  if (!FindFlagsLine(cpuinfo, &flags)) return {};  // not x86 cpuinfo: assume a normal host
  bool vmx = false, svm = false, hypervisor = false;
  for (std::string_view f : SplitWords(flags)) {
    vmx |= f == "vmx";
    svm |= f == "svm";
    hypervisor |= f == "hypervisor";
  }
  if (vmx || svm) return {};
  HostQuirks quirks;
  quirks.emulated_kvm = true;
  quirks.reason = hypervisor ? "the host is itself a VM without nested virtualization (no "
                               "vmx/svm CPU flag): its KVM emulates guest instructions"
                             : "the host CPU shows no vmx/svm flag: its KVM emulates guest "
                               "instructions";
  return quirks;
}

HostQuirks DetectHostQuirksFromProc() {
  std::ifstream in("/proc/cpuinfo");
  if (!in) return {};
  std::stringstream text;
  text << in.rdbuf();
  return DetectHostQuirks(text.str());
}

std::vector<std::string> EmulatedHostCmdlineItems(uint32_t cpus) {
  std::vector<std::string> items = {
      // Instructions the emulator cannot execute (MACHINE.md): keep the guest off them.
      "noxsave",
      "clearcpuid=smap,smep,popcnt,rdrand,rdseed,fsgsbase,clflushopt,clwb,rdpid,bmi1,bmi2,adx,"
      "movbe,abm,pku,umip",
      // Calibration loops that take seconds to minutes at emulation speed.
      "lpj=5000000",
      "tsc=reliable",
      "no_timer_check",
  };
  // The guest sees the host's CPUID (KVM_SET_CPUID2 is ignored), so on a host that is itself a
  // KVM guest it finds the outer hypervisor's paravirtual features. With more than one vCPU,
  // Linux then sends IPIs (and yields and kicks vCPUs) with the vmcall hypercall, which this
  // KVM never completes: the vCPU executes the same vmcall forever, often holding a runqueue
  // lock the other vCPU spins on with interrupts off, and the boot stops silently after
  // "x86: Booting SMP configuration:". nopv makes Linux run as on bare hardware (no kvmclock,
  // no PV IPIs); a single vCPU never makes those hypercalls and keeps kvmclock.
  if (cpus > 1) items.push_back("nopv");
  return items;
}

std::vector<std::string> AppendCmdlineItems(std::string& cmdline,
                                            const std::vector<std::string>& items) {
  std::vector<std::string> added;
  std::vector<std::string_view> existing = SplitWords(cmdline);
  // Items after a bare "--" go to init, not to the kernel: insert before it.
  size_t insert_at = cmdline.size();
  std::string_view view(cmdline);
  for (std::string_view w : existing) {
    if (w == "--") {
      insert_at = static_cast<size_t>(w.data() - view.data());
      break;
    }
  }
  std::string addition;
  for (const std::string& item : items) {
    bool present = false;
    for (std::string_view w : existing) {
      if (w == "--") break;
      present |= KeyOf(w) == KeyOf(item);
    }
    if (present) continue;
    addition += item + " ";
    added.push_back(item);
  }
  if (addition.empty()) return added;
  std::string before = cmdline.substr(0, insert_at);
  while (!before.empty() && before.back() == ' ') before.pop_back();
  std::string after = cmdline.substr(insert_at);
  addition.pop_back();
  cmdline = before + (before.empty() ? "" : " ") + addition + (after.empty() ? "" : " ") + after;
  return added;
}

}  // namespace kite
