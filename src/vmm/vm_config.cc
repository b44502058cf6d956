// VmConfig validation and the VM outcome → exit status mapping (include/kite/kite.h).
#include <map>
#include <string>

#include "base/units.h"
#include "kite/kite.h"
#include "vmm/balloon_options.h"
#include "vmm/cpuid.h"
#include "vmm/device_options.h"
#include "vmm/host_resources.h"
#include "vmm/vsock_options.h"

#ifndef KITE_VERSION
#define KITE_VERSION "unknown"
#endif

namespace kite {

Result<void> ValidateVmConfig(const VmConfig& c) {
  if (c.kernel.empty()) return Err("no kernel given (--kernel PATH)");
  if (c.cpus < 1 || c.cpus > kMaxCpus) {
    return Err("cpus: " + std::to_string(c.cpus) + " is out of range (expected 1 to " +
               std::to_string(kMaxCpus) + ")");
  }
  if (c.memory < kMinMemory) {
    return Err("memory: " + FormatSize(c.memory) + " is too small (at least " +
               FormatSize(kMinMemory) + ")");
  }
  if (c.memory > kMaxMemory) {
    return Err("memory: " + FormatSize(c.memory) + " is too large (at most " +
               FormatSize(kMaxMemory) + ")");
  }
  if (c.memory % 4096 != 0) {
    return Err("memory: " + std::to_string(c.memory) + " bytes is not a multiple of 4 KiB");
  }
  TRY(ValidateHostResources(c));
  if (c.serial == SerialMode::kFile && c.serial_path.empty()) {
    return Err("serial: file mode needs a path (file:PATH)");
  }
  if (c.cmdline.find('\0') != std::string::npos) return Err("cmdline: contains a NUL byte");
  TRY_CTX(ParseCpuTemplate(c.cpu_template), "cpu_template");
  for (const DiskConfig& disk : c.disks) TRY(cli::ValidateDisk(disk));
  for (const NetConfig& net : c.nets) TRY(cli::ValidateNet(net));
  if (c.vsock) TRY(cli::ValidateVsock(*c.vsock));
  if (c.balloon) TRY(cli::ValidateBalloon(*c.balloon, c.memory));
  TRY(cli::ValidateDeviceIds(c));
  if (c.transport == VirtioTransportKind::kPci && !c.acpi) {
    return Err(
        "transport: pci needs ACPI (the guest finds the PCI host bridge and its MSI-X "
        "through the DSDT and MCFG); use --transport mmio with --no-acpi");
  }
  if (!c.pci_slots.empty() && c.transport != VirtioTransportKind::kPci) {
    return Err("pci_slots: only with transport pci");
  }
  std::map<uint32_t, std::string> taken;
  for (const auto& [id, slot] : c.pci_slots) {
    if (slot < 1 || slot > 31) {
      return Err("pci_slots: '" + id + "': slot " + std::to_string(slot) + " (expected 1-31)");
    }
    if (auto [it, fresh] = taken.emplace(slot, id); !fresh) {
      return Err("pci_slots: '" + id + "' and '" + it->second + "' both in slot " +
                 std::to_string(slot));
    }
  }
  if (c.unplug_timeout_ms == 0 || c.unplug_timeout_ms > 3600000) {
    return Err("unplug_timeout_ms: " + std::to_string(c.unplug_timeout_ms) +
               " (expected 1 to 3600000)");
  }
  size_t devices = c.disks.size() + c.nets.size() + (c.rng ? 1 : 0) + (c.vsock ? 1 : 0) +
                   (c.balloon ? 1 : 0);
  const bool pci = c.transport == VirtioTransportKind::kPci;
  size_t limit = pci ? kMaxPciVirtioDevices : kMaxVirtioDevices;
  if (devices > limit) {
    return Err("too many virtio devices: " + std::to_string(devices) +
               " (disks + nets + rng + vsock + balloon; at most " + std::to_string(limit) +
               (pci ? ", one per PCI slot)" : " on virtio-mmio; --transport pci takes 31)"));
  }
  return {};
}

int VmOutcome::ExitStatus() const {
  switch (end) {
    case VmEnd::kPowerOff:
      return 0;
    case VmEnd::kError:
      return 1;
    case VmEnd::kReset:
      return 2;
    case VmEnd::kCrash:
      return 3;
    case VmEnd::kStopped:
      return 130;
  }
  return 1;
}

const char* VmEndName(VmEnd end) {
  switch (end) {
    case VmEnd::kPowerOff:
      return "power off";
    case VmEnd::kError:
      return "error";
    case VmEnd::kReset:
      return "reset";
    case VmEnd::kCrash:
      return "crash";
    case VmEnd::kStopped:
      return "stopped";
  }
  return "?";
}

const char* Version() {
  return KITE_VERSION;
}

}  // namespace kite
