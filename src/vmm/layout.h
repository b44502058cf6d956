// The x86_64 guest-physical memory map kite builds. One table, so that the loader, the ACPI
// and MP tables, the devices and the e820 map agree.
//
//   0x0000_0000  real-mode IVT and BIOS data area (left zero)
//   0x0000_0500  GDT                       (kGdtAddr)
//   0x0000_0520  IDT (empty, limit 0)       (kIdtAddr)
//   0x0000_7000  boot_params "zero page"   (kZeroPageAddr)
//   0x0000_9000  PML4, PDPT, PDs           (kPml4Addr ..) identity map of the first 4 GiB
//   0x0002_0000  kernel command line       (kCmdlineAddr, up to kCmdlineMax bytes)
//   0x0009_fc00  MP floating pointer + table (kMpTableAddr, top of base memory)
//   0x000a_0000  legacy VGA / option ROM hole, reported reserved
//   0x000e_0000  ACPI tables, RSDP at kRsdpAddr (found by the BIOS-area scan)
//   0x000f_f000  VMGenID page: the 16-byte generation id (kVmGenIdAddr, vmm/vmgenid.h)
//   0x0010_0000  kernel (1 MiB; bzImage protected-mode part, or the ELF's own addresses)
//   ...          initrd, placed high below min(RAM end, kMmioHoleStart)
//   0xd000_0000  32-bit MMIO hole: virtio-mmio slots, GED, then IOAPIC/LAPIC at 0xfec0/0xfee0
//   0xe000_0000  PCI ECAM, bus 0 (1 MiB; MCFG)          (--transport pci only)
//   0xe800_0000  PCI 32-bit BAR window (256 MiB)        (--transport pci only)
//   0x1_0000_0000 RAM above 4 GiB when memory does not fit below the hole
//   after RAM    PCI 64-bit BAR window (64 GiB, 1 GiB aligned; Pci64Window)
#pragma once

#include <cstdint>

namespace kite::layout {

inline constexpr uint64_t kGdtAddr = 0x500;
inline constexpr uint64_t kIdtAddr = 0x520;
inline constexpr uint64_t kZeroPageAddr = 0x7000;
inline constexpr uint64_t kPml4Addr = 0x9000;
inline constexpr uint64_t kPdptAddr = 0xa000;
inline constexpr uint64_t kPdAddr = 0xb000;            // 4 pages: 4 x 1 GiB of 2 MiB pages
inline constexpr uint64_t kPvhStartInfoAddr = 0x6000;  // hvm_start_info + memmap for PVH boots
inline constexpr uint64_t kCmdlineAddr = 0x20000;
inline constexpr uint64_t kCmdlineMax =
    0x10000;  // 64 KiB, bounded further by the kernel's cmdline_size
inline constexpr uint64_t kEbdaStart = 0x9fc00;
inline constexpr uint64_t kMpTableAddr = 0x9fc00;
inline constexpr uint64_t kLowMemEnd = 0xa0000;  // end of conventional memory in e820
inline constexpr uint64_t kBiosAreaStart = 0xe0000;
inline constexpr uint64_t kAcpiTablesAddr = 0xe0000;
inline constexpr uint64_t kRsdpAddr = 0xe0000;
inline constexpr uint64_t kAcpiTablesMax = 0x1f000;  // up to kVmGenIdAddr
// The Virtual Machine Generation ID (vmm/vmgenid.h, docs/ACPI.md "VMGenID"): the last page
// below 1 MiB, used for nothing else. The e820 map reports [kEbdaStart, kHighMemStart) as
// reserved (boot/boot_params.cc), so the guest never takes this page for RAM; the ACPI tables
// end before it (kAcpiTablesMax). The DSDT's \_SB.VGEN.ADDR returns this address.
inline constexpr uint64_t kVmGenIdAddr = 0xff000;
inline constexpr uint64_t kVmGenIdSize = 16;
inline constexpr uint64_t kHighMemStart = 0x100000;  // 1 MiB: kernel load address
inline constexpr uint64_t kKernelAddr = 0x100000;
static_assert(kAcpiTablesAddr + kAcpiTablesMax <= kVmGenIdAddr, "ACPI tables overlap VMGenID");
static_assert(kVmGenIdAddr >= kEbdaStart && kVmGenIdAddr + 0x1000 <= kHighMemStart,
              "the VMGenID page must lie in the e820-reserved window below 1 MiB");

inline constexpr uint64_t kMmioHoleStart = 0xd0000000;  // 3.25 GiB
inline constexpr uint64_t kMmioHoleEnd = 0x100000000;   // 4 GiB
inline constexpr uint64_t kHighRamStart = 0x100000000;

// Devices in the MMIO hole.
inline constexpr uint64_t kVirtioMmioBase = 0xd0000000;
inline constexpr uint64_t kVirtioMmioSize = 0x1000;  // one page per device slot
inline constexpr uint32_t kVirtioMmioSlots = 32;
inline constexpr uint64_t kGedBase = 0xd0100000;  // ACPI Generic Event Device registers
inline constexpr uint64_t kGedSize = 0x100;
// PCI (--transport pci, docs/PCI.md): the ECAM window of bus 0 and the windows BARs are
// placed in, all in the DSDT's PCI0 _CRS (and ECAM in MCFG). kite assigns BARs from the
// 32-bit window itself; the 64-bit window is there for the guest (and large BARs later).
inline constexpr uint64_t kPciEcamBase = 0xe0000000;
inline constexpr uint64_t kPciEcamSize = 0x100000;  // bus 0 only: 32 devices × 8 functions × 4 KiB
inline constexpr uint64_t kPciMmio32Base = 0xe8000000;
inline constexpr uint64_t kPciMmio32Size = 0x10000000;
inline constexpr uint64_t kPciMmio64Size = 64ull << 30;
inline constexpr uint16_t kPciConfigPorts = 0xcf8;  // 0xCF8-0xCFF, configuration mechanism #1
static_assert(kVirtioMmioBase + kVirtioMmioSize * kVirtioMmioSlots <= kGedBase);
static_assert(kGedBase + kGedSize <= kPciEcamBase && kPciEcamBase + kPciEcamSize <= kPciMmio32Base);
static_assert(kPciMmio32Base + kPciMmio32Size <= 0xfec00000,
              "the 32-bit window ends below the IOAPIC");
// The 64-bit window: the first 1 GiB boundary at or above the end of RAM (and 4 GiB).
inline constexpr uint64_t Pci64WindowBase(uint64_t ram_end) {
  uint64_t start = ram_end > kHighRamStart ? ram_end : kHighRamStart;
  return (start + (1ull << 30) - 1) & ~((1ull << 30) - 1);
}
inline constexpr uint64_t kIoapicAddr = 0xfec00000;
inline constexpr uint64_t kLapicAddr = 0xfee00000;

// Legacy I/O ports.
inline constexpr uint16_t kCom1Port = 0x3f8;
inline constexpr uint32_t kCom1Irq = 4;
inline constexpr uint16_t kI8042DataPort = 0x60;
inline constexpr uint16_t kI8042CommandPort = 0x64;
inline constexpr uint16_t kRtcPort = 0x70;
// The boot-time marker port (Firecracker's "boot timer" convention): a guest write logs the
// time since process start. The same port with a magic value is the test-guest exit device.
inline constexpr uint16_t kBootMarkerPort = 0x3f0;
// ACPI hardware-reduced sleep/reset registers (FADT SLEEP_CONTROL_REG / SLEEP_STATUS_REG /
// RESET_REG), as I/O ports.
inline constexpr uint16_t kAcpiSleepControlPort = 0x600;
inline constexpr uint16_t kAcpiSleepStatusPort = 0x601;
inline constexpr uint16_t kAcpiResetPort = 0x602;
inline constexpr uint8_t kAcpiResetValue = 0x1;

// The GED's interrupt line; virtio devices take theirs from kVirtioGsis (vm_virtio.h).
inline constexpr uint32_t kGedIrq = 9;

}  // namespace kite::layout
