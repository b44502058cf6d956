// The DSDT's AML: what a kernel learns about kite's devices through ACPI (ACPI 6.5 §5.2.11.1).
// In ASL terms:
//
//   Scope (\_SB) {
//     Device (COM1) { _HID PNP0501, _CRS { IO 0x3f8-0x3ff, IRQNoFlags {4} } }  // optional
//     Device (RTC_) { _HID PNP0B00, _CRS { IO 0x70-0x71 } }         // optional, no IRQ
//     Device (PWRB) { _HID PNP0C0C }                        // control-method power button
//     Device (VGEN) { _HID "VMGENCTR", _CID "VM_GEN_COUNTER", _DDN "VM_Gen_Counter", _STA 0x0f,
//       Method (ADDR) { Return (Package { addr & 0xffffffff, addr >> 32 }) }  // vmgenid_addr only
//     }
//     Device (GED_) { _HID ACPI0013, _CRS { Interrupt {kGedIrq} }   // interrupts only: Linux's
//                                               // evged treats every _CRS entry as one
//       OperationRegion (GDST, SystemMemory, kGedBase, 0x14)
//       Field { GDAT, 32, GSLP, 32, GSCK, 32, GSER, 32, GEJ0, 32 }  // devices/acpi_ged.h
//       Method (_EVT, 1, Serialized) { Local0 = GDAT
//         If (Local0 & kGedEventPowerButton) { Notify (PWRB, 0x80) }
//         If (Local0 & kGedEventVmGenId) { Notify (VGEN, 0x80) }            // with VGEN only
//         If (Local0 & kGedEventSlots) { Local1 = GSCK; Local2 = GSER     // with slots only
//           If (Local1 & (1 << n)) { Notify (slot n, 1) }  If (Local2 & (1 << n)) { Notify (slot n,
//           3) }   // slot n: \_SB.Hnnn (virtio-mmio slots) or \_SB.PCI0.Snnn (PCI hotplug)
//     } } }
//     Device (Cnnn) { _HID ACPI0007, _UID n }               // one per vCPU, MADT UID n
//     Device (Vnnn) { _HID LNRO0005, _UID n, _CRS { Memory32Fixed base, Interrupt {irq} } }
//     Device (Hnnn) { _HID ACPI0004, _UID n, _STA (GSLP bit n ? 0x0f : 0), _EJ0 { GEJ0 = n }
//       Device (VIRT) { _HID LNRO0005, _UID <after the static ones>, _CRS {...}, _STA as above }
//     }
//     Device (PCI0) { _HID PNP0A08, _CID PNP0A03, _SEG 0, _BBN 0, _UID 0,  // PciHostConfig only
//       _CRS { WordBusNumber 0-0, IO 0xcf8-0xcff, DWordMemory mmio32, QWordMemory mmio64 }
//       Device (Snnn) { _ADR n << 16, _SUN n, _EJ0 { \_SB.GED_.GEJ0 = n } }  // hotplug: n = 1..31
//     }
//     Device (PRES) { _HID PNP0C02, _UID 0, _CRS { Memory32Fixed ecam_base, 1 MiB } }
//   }
//   Name (\_S5, Package { 5, 5 })                          // SLP_TYP for soft-off
#include "base/units.h"
#include "devices/acpi_ged.h"
#include "devices/acpi_pm.h"
#include "vmm/acpi/acpi_tables.h"
#include "vmm/acpi/aml.h"
#include "vmm/acpi/aml_resource.h"
#include "vmm/layout.h"

namespace kite::acpi {
namespace {

using aml::Bytes;

// Throughout: TRY results are taken into locals before the braced term lists, never inside
// them (no early return from the middle of an initializer list).

// Notify values (ACPI 6.5 §5.6.6).
constexpr uint64_t kNotifyDeviceCheck = 0x01;
constexpr uint64_t kNotifyEjectRequest = 0x03;
constexpr uint64_t kNotifyButtonPressed = 0x80;   // device-specific: for a button, "pressed"
constexpr uint64_t kNotifyVmGenIdChanged = 0x80;  // the VMGenID spec's one notification

// The first and last PCI slot with a hotplug slot object (slot 0 is the host bridge).
constexpr uint32_t kFirstPciHotplugSlot = 1;
constexpr uint32_t kLastPciHotplugSlot = 31;

// `scope`.Xnnn: hotplug slot n's device (Hnnn under \_SB_ for virtio-mmio, Snnn under PCI0).
Result<aml::NameString> SlotPath(const char* scope, char prefix, uint32_t slot) {
  aml::NameString name = TRY(aml::IndexedName(prefix, slot));
  std::span<const uint8_t> seg = name.bytes();
  return aml::NameString::Parse(std::string(scope) + "." + std::string(seg.begin(), seg.end()));
}

// The devices the GED notifies, by slot bit: the virtio-mmio containers or the PCI slots.
struct SlotTargets {
  const char* scope;
  char prefix;
  uint32_t first;
  uint32_t count;
};

Bytes Com1Device() {
  return aml::Device(
      "COM1", {aml::Name("_HID", aml::EisaId(aml::EisaIdValue("PNP0501"))),
               aml::Name("_UID", aml::Integer(0)),
               aml::Name("_CRS", aml::ResourceTemplate(
                                     {aml::IoPort(layout::kCom1Port, layout::kCom1Port, 0, 8),
                                      aml::IrqNoFlags(layout::kCom1Irq)}))});
}

Bytes RtcDevice() {
  return aml::Device("RTC_", {aml::Name("_HID", aml::EisaId(aml::EisaIdValue("PNP0B00"))),
                              aml::Name("_CRS", aml::ResourceTemplate({aml::IoPort(
                                                    layout::kRtcPort, layout::kRtcPort, 1, 2)}))});
}

Bytes PowerButtonDevice() {
  return aml::Device("PWRB", {aml::Name("_HID", aml::EisaId(aml::EisaIdValue("PNP0C0C"))),
                              aml::Name("_UID", aml::Integer(0))});
}

// The VM generation id device (Microsoft's "Virtual Machine Generation ID"; Linux 6.1
// drivers/virt/vmgenid.c binds either id and evaluates ADDR: a package of two integers, the
// low and high 32 bits of the id's guest-physical address). ACPICA upper-cases _CID strings,
// so "VM_GEN_COUNTER" is also what the spec's "VM_Gen_Counter" becomes in Linux.
Result<Bytes> VmGenIdDevice(uint64_t addr) {
  Bytes hid = TRY(aml::String("VMGENCTR"));
  Bytes cid = TRY(aml::String("VM_GEN_COUNTER"));
  Bytes ddn = TRY(aml::String("VM_Gen_Counter"));
  return aml::Device(
      "VGEN", {aml::Name("_HID", hid), aml::Name("_CID", cid), aml::Name("_DDN", ddn),
               aml::Name("_STA", aml::Integer(0x0f)),
               aml::Method("ADDR", 0, aml::MethodSync::kNotSerialized,
                           {aml::Return(aml::Package(
                               {aml::Integer(addr & 0xffffffff), aml::Integer(addr >> 32)}))})});
}

Result<void> CheckVmGenIdAddr(uint64_t addr) {
  constexpr uint64_t kPage = 0x1000;
  if (addr % 8 != 0 || addr % kPage + layout::kVmGenIdSize > kPage) {
    return Err("ACPI: the VM generation id at 0x" + ToHex(addr) +
               " must be 8-byte aligned and within one page");
  }
  return {};
}

Bytes BitSet(const Bytes& value, uint32_t bit) {
  return aml::LEqual(aml::And(value, aml::Integer(bit)), aml::Integer(bit));
}

// _EVT: Local0 = events; power button -> Notify (PWRB, 0x80); a new VM generation id ->
// Notify (VGEN, 0x80); slot events -> Notify each changed slot with Device Check (1) and each
// slot to release with Eject Request (3).
Result<Bytes> GedEventMethod(const SlotTargets& targets, bool vmgenid) {
  std::vector<Bytes> body = {
      aml::Store(aml::NameRef("GDAT"), aml::Local(0)),
      aml::If(BitSet(aml::Local(0), kGedEventPowerButton),
              {aml::Notify(aml::NameRef("\\_SB_.PWRB"), aml::Integer(kNotifyButtonPressed))})};
  if (vmgenid) {
    body.push_back(
        aml::If(BitSet(aml::Local(0), kGedEventVmGenId),
                {aml::Notify(aml::NameRef("\\_SB_.VGEN"), aml::Integer(kNotifyVmGenIdChanged))}));
  }
  if (targets.count > 0) {
    std::vector<Bytes> slots = {aml::Store(aml::NameRef("GSCK"), aml::Local(1)),
                                aml::Store(aml::NameRef("GSER"), aml::Local(2))};
    for (uint32_t i = targets.first; i < targets.first + targets.count; ++i) {
      aml::NameString slot = TRY(SlotPath(targets.scope, targets.prefix, i));
      slots.push_back(aml::If(BitSet(aml::Local(1), 1u << i),
                              {aml::Notify(aml::NameRef(slot), aml::Integer(kNotifyDeviceCheck))}));
      slots.push_back(
          aml::If(BitSet(aml::Local(2), 1u << i),
                  {aml::Notify(aml::NameRef(slot), aml::Integer(kNotifyEjectRequest))}));
    }
    body.push_back(aml::If(BitSet(aml::Local(0), kGedEventSlots), slots));
  }
  return aml::Method("_EVT", 1, aml::MethodSync::kSerialized, body);
}

Result<Bytes> GedDevice(const SlotTargets& targets, bool vmgenid) {
  Bytes hid = TRY(aml::String("ACPI0013"));
  Bytes event_method = TRY(GedEventMethod(targets, vmgenid));
  return aml::Device(
      "GED_",
      {aml::Name("_HID", hid), aml::Name("_UID", aml::Integer(0)),
       // Interrupts only: Linux's GED driver (drivers/acpi/evged.c) requests every _CRS
       // resource as an interrupt and fails the probe on anything else ("unable to
       // parse IRQ resource"). The register block is reached through GDST below.
       aml::Name("_CRS", aml::ResourceTemplate({aml::Interrupt({.edge = true}, layout::kGedIrq)})),
       aml::OperationRegion("GDST", aml::RegionSpace::kSystemMemory, layout::kGedBase,
                            kGedRegistersSize),
       aml::Field("GDST", aml::FieldAccess::kDWord, aml::FieldUpdate::kWriteAsZeros,
                  {aml::FieldUnit::Named("GDAT", 32), aml::FieldUnit::Named("GSLP", 32),
                   aml::FieldUnit::Named("GSCK", 32), aml::FieldUnit::Named("GSER", 32),
                   aml::FieldUnit::Named("GEJ0", 32)}),
       event_method});
}

Result<Bytes> ProcessorDevice(uint32_t index) {
  aml::NameString name = TRY(aml::IndexedName('C', index));
  Bytes hid = TRY(aml::String("ACPI0007"));
  return aml::Device(name, {aml::Name("_HID", hid), aml::Name("_UID", aml::Integer(index))});
}

// The LNRO0005 device for one virtio-mmio window. `extra` adds methods (a hotplug slot's _STA).
Result<Bytes> VirtioDevice(const aml::NameString& name, uint32_t uid, const VirtioMmioDevice& dev,
                           std::vector<Bytes> extra = {}) {
  Bytes hid = TRY(aml::String("LNRO0005"));
  std::vector<Bytes> terms = {
      aml::Name("_HID", hid), aml::Name("_UID", aml::Integer(uid)),
      aml::Name("_CRS",
                aml::ResourceTemplate({aml::Memory32Fixed(true, static_cast<uint32_t>(dev.base),
                                                          static_cast<uint32_t>(dev.size)),
                                       aml::Interrupt({.edge = true}, dev.irq)}))};
  for (Bytes& e : extra) terms.push_back(std::move(e));
  return aml::Device(name, terms);
}

// _STA of a hotplug slot: present, enabled, shown and functioning (0x0f) while the GED's
// SLOT_PRESENT bit is set, else absent (0).
Bytes SlotStatusMethod(uint32_t slot) {
  return aml::Method("_STA", 0, aml::MethodSync::kNotSerialized,
                     {aml::If(BitSet(aml::NameRef("\\_SB_.GED_.GSLP"), 1u << slot),
                              {aml::Return(aml::Integer(0x0f))}),
                      aml::Return(aml::Integer(0))});
}

// Hotplug slot n: a container (ACPI0004, so that Linux's container scan handler takes Device
// Check and Eject Request notifications) holding the virtio-mmio device, both with the slot's
// _STA; _EJ0 reports the eject to the GED.
Result<Bytes> HotplugSlot(uint32_t slot, uint32_t uid, const VirtioMmioDevice& dev) {
  aml::NameString name = TRY(aml::IndexedName('H', slot));
  Bytes hid = TRY(aml::String("ACPI0004"));
  std::vector<Bytes> child_sta;
  child_sta.push_back(SlotStatusMethod(slot));
  Bytes child = TRY(VirtioDevice("VIRT", uid, dev, std::move(child_sta)));
  return aml::Device(
      name, {aml::Name("_HID", hid), aml::Name("_UID", aml::Integer(slot)), SlotStatusMethod(slot),
             aml::Method("_EJ0", 1, aml::MethodSync::kNotSerialized,
                         {aml::Store(aml::Integer(slot), aml::NameRef("\\_SB_.GED_.GEJ0"))}),
             child});
}

// PCI hotplug slot n under PCI0: _ADR (device n, function 0) ties it to the slot, _SUN names
// it (/sys/bus/pci/slots/n), and _EJ0 tells the GED that the guest let go of the device.
// No _STA: Linux's acpiphp then reads the slot's vendor id to see whether it holds a device
// (as with QEMU's and Cloud Hypervisor's slots).
Result<Bytes> PciSlot(uint32_t slot) {
  aml::NameString name = TRY(aml::IndexedName('S', slot));
  return aml::Device(
      name,
      {aml::Name("_ADR", aml::Integer(uint64_t{slot} << 16)), aml::Name("_SUN", aml::Integer(slot)),
       aml::Method("_EJ0", 1, aml::MethodSync::kNotSerialized,
                   {aml::Store(aml::Integer(slot), aml::NameRef("\\_SB_.GED_.GEJ0"))})});
}

// The PCI host bridge (docs/PCI.md), with its hotplug slots when `pci.hotplug`.
// Linux's pci_root takes the bus range and windows from _CRS; the 0xCF8 ports are listed as
// QEMU does (x86 Linux drops them from the root bus's resources).
Result<Bytes> PciHostBridge(const PciHostConfig& pci) {
  std::vector<Bytes> crs = {aml::WordBusNumber(0, 0),
                            aml::IoPort(layout::kPciConfigPorts, layout::kPciConfigPorts, 1, 8),
                            aml::DWordMemory(static_cast<uint32_t>(pci.mmio32_base),
                                             static_cast<uint32_t>(pci.mmio32_size))};
  if (pci.mmio64_size > 0) crs.push_back(aml::QWordMemory(pci.mmio64_base, pci.mmio64_size));
  std::vector<Bytes> terms = {aml::Name("_HID", aml::EisaId(aml::EisaIdValue("PNP0A08"))),
                              aml::Name("_CID", aml::EisaId(aml::EisaIdValue("PNP0A03"))),
                              aml::Name("_SEG", aml::Integer(0)),
                              aml::Name("_BBN", aml::Integer(0)),
                              aml::Name("_UID", aml::Integer(0)),
                              aml::Name("_CRS", aml::ResourceTemplate(crs))};
  if (pci.hotplug) {
    for (uint32_t slot = kFirstPciHotplugSlot; slot <= kLastPciHotplugSlot; ++slot) {
      terms.push_back(TRY(PciSlot(slot)));
    }
  }
  return aml::Device("PCI0", terms);
}

// Motherboard resources: the ECAM window. Linux uses MCFG only when the window is reserved
// here (or in e820); otherwise it falls back to the 0xCF8 ports.
Bytes PciEcamReservation(const PciHostConfig& pci) {
  return aml::Device("PRES",
                     {aml::Name("_HID", aml::EisaId(aml::EisaIdValue("PNP0C02"))),
                      aml::Name("_UID", aml::Integer(0)),
                      aml::Name("_CRS", aml::ResourceTemplate({aml::Memory32Fixed(
                                            true, static_cast<uint32_t>(pci.ecam_base),
                                            static_cast<uint32_t>(layout::kPciEcamSize))}))});
}

Result<void> CheckPci(const PciHostConfig& pci) {
  auto below_4g = [](uint64_t base, uint64_t size) {
    return size > 0 && base < 0x100000000 && size <= 0x100000000 - base;
  };
  if (!below_4g(pci.ecam_base, layout::kPciEcamSize) ||
      !below_4g(pci.mmio32_base, pci.mmio32_size)) {
    return Err("ACPI: the PCI ECAM and 32-bit windows must be non-empty and below 4 GiB");
  }
  if (pci.mmio64_size > 0 && pci.mmio64_base + pci.mmio64_size < pci.mmio64_base) {
    return Err("ACPI: the PCI 64-bit window wraps");
  }
  return {};
}

Result<void> CheckVirtioDevice(const char* kind, size_t index, const VirtioMmioDevice& dev,
                               bool serial_com1) {
  std::string what = std::string(kind) + " " + std::to_string(index) + ": ";
  if (dev.size == 0 || dev.size > 0xffffffff || dev.base > 0xffffffff ||
      dev.base + dev.size > 0x100000000) {
    return Err(what + "window [" + std::to_string(dev.base) + ", +" + std::to_string(dev.size) +
               ") must be non-empty and below 4 GiB");
  }
  if (dev.irq >= 24) return Err(what + "irq " + std::to_string(dev.irq) + " is not an IOAPIC pin");
  if (dev.irq == layout::kGedIrq || (serial_com1 && dev.irq == layout::kCom1Irq) || dev.irq == 0 ||
      dev.irq == 2) {
    return Err(what + "irq " + std::to_string(dev.irq) + " is taken by the platform");
  }
  return {};
}

}  // namespace

Result<std::vector<uint8_t>> BuildDsdtAml(const AcpiConfig& config) {
  if (config.num_cpus == 0 || config.num_cpus > kMaxCpus) {
    return Err("ACPI: " + std::to_string(config.num_cpus) + " vCPUs; expected 1 to " +
               std::to_string(kMaxCpus));
  }
  if (config.virtio_devices.size() > kMaxVirtioDevices) {
    return Err("ACPI: more than " + std::to_string(kMaxVirtioDevices) + " virtio-mmio devices");
  }
  if (config.hotplug_slots.size() > kGedMaxSlots) {
    return Err("ACPI: more than " + std::to_string(kGedMaxSlots) + " hotplug slots");
  }
  if (config.vmgenid_addr) TRY(CheckVmGenIdAddr(*config.vmgenid_addr));
  const bool pci_hotplug = config.pci && config.pci->hotplug;
  if (pci_hotplug && !config.hotplug_slots.empty()) {
    return Err("ACPI: PCI hotplug and virtio-mmio hotplug slots share the GED's slot bits");
  }
  const SlotTargets slot_targets =
      pci_hotplug
          ? SlotTargets{"\\_SB_.PCI0", 'S', kFirstPciHotplugSlot,
                        kLastPciHotplugSlot - kFirstPciHotplugSlot + 1}
          : SlotTargets{"\\_SB_", 'H', 0, static_cast<uint32_t>(config.hotplug_slots.size())};
  std::vector<Bytes> sb;
  if (config.serial_com1) sb.push_back(Com1Device());
  if (config.cmos_rtc) sb.push_back(RtcDevice());
  sb.push_back(PowerButtonDevice());
  if (config.vmgenid_addr) sb.push_back(TRY(VmGenIdDevice(*config.vmgenid_addr)));
  sb.push_back(TRY(GedDevice(slot_targets, config.vmgenid_addr.has_value())));
  for (uint32_t i = 0; i < config.num_cpus; ++i) sb.push_back(TRY(ProcessorDevice(i)));
  const uint32_t num_static = static_cast<uint32_t>(config.virtio_devices.size());
  for (uint32_t i = 0; i < num_static; ++i) {
    TRY(CheckVirtioDevice("virtio-mmio device", i, config.virtio_devices[i], config.serial_com1));
    aml::NameString name = TRY(aml::IndexedName('V', i));
    sb.push_back(TRY(VirtioDevice(name, i, config.virtio_devices[i])));
  }
  for (uint32_t i = 0; i < config.hotplug_slots.size(); ++i) {
    TRY(CheckVirtioDevice("hotplug slot", i, config.hotplug_slots[i], config.serial_com1));
    // _UIDs continue after the static devices: Linux names LNRO0005 devices by _UID.
    sb.push_back(TRY(HotplugSlot(i, num_static + i, config.hotplug_slots[i])));
  }
  if (config.pci) {
    TRY(CheckPci(*config.pci));
    sb.push_back(TRY(PciHostBridge(*config.pci)));
    sb.push_back(PciEcamReservation(*config.pci));
  }
  Bytes out = aml::Scope("\\_SB_", sb);
  aml::Append(
      out,
      aml::Name("_S5_", aml::Package({aml::Integer(kAcpiSlpTypS5), aml::Integer(kAcpiSlpTypS5)})));
  return out;
}

}  // namespace kite::acpi
