// The ACPI tables kite gives a guest (ACPI 6.5 chapter 5): RSDP (v2) -> XSDT -> FADT
// (hardware-reduced, revision 6) -> DSDT, and the MADT. They are placed one after another at
// layout::kAcpiTablesAddr, the RSDP first, so a kernel finds the RSDP by scanning the BIOS
// area (and a loader can also pass the returned address in boot_params.acpi_rsdp_addr).
//
// The platform is ACPI "hardware-reduced" (§4.1): no PM1/GPE blocks, no SCI, no FACS. Power
// off is the FADT's SLEEP_CONTROL_REG (I/O port layout::kAcpiSleepControlPort, served by
// devices/acpi_pm.h) with the DSDT's \_S5 = 5; reset is RESET_REG (layout::kAcpiResetPort).
// The DSDT describes COM1, the RTC, the GED (devices/acpi_ged.h) with a power button, one
// ACPI0007 processor device per vCPU, the virtio-mmio devices as "LNRO0005" and, when
// configured, the VM generation id device (VMGENCTR).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "vmm/guest_memory.h"

namespace kite::acpi {

// Limits the builders enforce (Errors, not aborts).
inline constexpr uint32_t kMaxCpus = 254;  // xAPIC ids 0..253; the IOAPIC takes the next id
inline constexpr size_t kMaxVirtioDevices = 256;

struct VirtioMmioDevice {
  uint64_t base;  // must lie below 4 GiB (Memory32Fixed)
  uint64_t size;
  uint32_t irq;  // GSI
};

// The PCI host bridge (--transport pci, docs/PCI.md): \_SB.PCI0 (PNP0A08/PNP0A03) with bus 0,
// the configuration ports 0xCF8-0xCFF and the two BAR windows in _CRS; \_SB.PRES (PNP0C02)
// reserving the ECAM window, which the MCFG table describes.
struct PciHostConfig {
  uint64_t ecam_base = 0;  // bus 0's ECAM window (1 MiB), below 4 GiB
  uint64_t mmio32_base = 0;
  uint64_t mmio32_size = 0;  // below 4 GiB
  uint64_t mmio64_base = 0;
  uint64_t mmio64_size = 0;  // 0: none
  // ACPI PCI hotplug (docs/PCI.md "Hotplug"): PCI0 gets a slot object Snn (_ADR nn << 16,
  // _SUN nn, _EJ0 writing nn to the GED's SLOT_EJECT) for every slot 1..31, and the GED's
  // _EVT notifies them: Device Check for SLOT_CHECK bit nn, Eject Request for SLOT_EJECT_REQ
  // bit nn. Linux's acpiphp then scans or removes the slot by itself.
  bool hotplug = false;
};

struct AcpiConfig {
  uint32_t num_cpus = 1;
  std::optional<PciHostConfig> pci;  // set: PCI0, PRES and an MCFG table
  std::vector<VirtioMmioDevice> virtio_devices;
  // Reserved hotplug slots (at most kGedMaxSlots, devices/acpi_ged.h): each one a container
  // \_SB.Hnnn holding an LNRO0005 device whose _STA follows the GED's SLOT_PRESENT bit n.
  std::vector<VirtioMmioDevice> hotplug_slots;
  bool serial_com1 = true;
  // Whether the VM has the CMOS RTC at layout::kRtcPort (devices/rtc_cmos.h). true: the DSDT
  // describes it (PNP0B00, no IRQ: kite's RTC raises none); false: the FADT says "CMOS RTC not
  // present", so Linux does not probe it.
  bool cmos_rtc = false;
  // Guest-physical address of the 16-byte VM generation id (layout::kVmGenIdAddr,
  // vmm/vmgenid.h), 8-byte aligned, not crossing a page. Set: the DSDT has \_SB.VGEN
  // ("VMGENCTR") whose ADDR returns it, and the GED's _EVT sends Notify (VGEN, 0x80) for
  // kGedEventVmGenId. Unset: no VGEN, and that event bit does nothing.
  std::optional<uint64_t> vmgenid_addr;
};

// One built table: its signature ("RSDP" for the root pointer, "FACP" for the FADT, "APIC"
// for the MADT) and its bytes, checksums included.
using AcpiTable = std::pair<std::string, std::vector<uint8_t>>;

// The tables as they are placed from `base_addr`: in this order, each at the next 16-byte
// aligned address after the previous one (RSDP, XSDT, FACP, APIC, DSDT, and MCFG with PCI).
Result<std::vector<AcpiTable>> BuildAcpiTables(const AcpiConfig& config, uint64_t base_addr);

// Builds all tables and writes them at layout::kAcpiTablesAddr; returns the RSDP address.
// Refuses a config beyond the limits above, or tables larger than layout::kAcpiTablesMax.
Result<GuestAddr> WriteAcpiTables(const GuestMemory& memory, const AcpiConfig& config);

// The DSDT's AML body alone (no table header), for tests and tools.
Result<std::vector<uint8_t>> BuildDsdtAml(const AcpiConfig& config);

}  // namespace kite::acpi
