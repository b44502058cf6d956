// RSDP, XSDT, FADT and MADT (ACPI 6.5 §5.2.5, §5.2.8, §5.2.9, §5.2.12), their placement in
// the BIOS area, and the write into guest memory. The DSDT's AML is built in dsdt.cc.
#include "vmm/acpi/acpi_tables.h"

#include "base/units.h"
#include "vmm/acpi/sdt.h"
#include "vmm/layout.h"

namespace kite::acpi {
namespace {

static_assert(layout::kRsdpAddr == layout::kAcpiTablesAddr, "the RSDP is the first table");

constexpr size_t kRsdpSize = 36;
constexpr size_t kFadtSize = 276;  // revision 6
constexpr uint8_t kFadtRevision = 6;
constexpr uint8_t kFadtMinorRevision = 5;
constexpr size_t kMcfgSize = kSdtHeaderSize + 8 + 16;  // one allocation: segment 0, bus 0
constexpr size_t kTableAlign = 16;

// FADT Flags (§5.2.9, Table 5.10).
constexpr uint32_t kFadtWbinvd = 1u << 0;
constexpr uint32_t kFadtPwrButton = 1u << 4;  // 1: no fixed power button (a PNP0C0C device)
constexpr uint32_t kFadtSlpButton = 1u << 5;  // 1: no fixed sleep button
constexpr uint32_t kFadtResetRegSup = 1u << 10;
constexpr uint32_t kFadtHwReducedAcpi = 1u << 20;
// IA-PC boot architecture flags (§5.2.9.3): no VGA. No LEGACY_DEVICES and no 8042 flag, so
// Linux skips probing the i8042 (kite's has no keyboard; `reboot=k` needs no probe).
constexpr uint16_t kIapcVgaNotPresent = 1u << 2;
constexpr uint16_t kIapcCmosRtcNotPresent = 1u << 5;

// MADT (§5.2.12).
constexpr uint32_t kMadtPcatCompat = 1u << 0;  // KVM's in-kernel irqchip has a dual 8259
constexpr uint8_t kMadtLocalApic = 0;
constexpr uint8_t kMadtIoApic = 1;
constexpr uint8_t kMadtLocalApicNmi = 4;
constexpr uint32_t kLocalApicEnabled = 1u << 0;

size_t AlignUp(size_t v) {
  return (v + kTableAlign - 1) & ~(kTableAlign - 1);
}

struct Placement {
  uint64_t rsdp, xsdt, fadt, madt, dsdt, mcfg, end;  // mcfg 0: none
};

size_t XsdtEntries(bool mcfg) {
  return mcfg ? 3 : 2;  // FADT, MADT (, MCFG)
}

size_t MadtSize(uint32_t num_cpus) {
  return kSdtHeaderSize + 8 + 8 * num_cpus + 12 + 6;
}

Placement Place(uint64_t base, size_t madt_size, size_t dsdt_size, bool mcfg) {
  Placement p;
  p.rsdp = base;
  p.xsdt = p.rsdp + AlignUp(kRsdpSize);
  p.fadt = p.xsdt + AlignUp(kSdtHeaderSize + 8 * XsdtEntries(mcfg));
  p.madt = p.fadt + AlignUp(kFadtSize);
  p.dsdt = p.madt + AlignUp(madt_size);
  p.mcfg = mcfg ? AlignUp(p.dsdt + dsdt_size) : 0;
  p.end = mcfg ? p.mcfg + kMcfgSize : p.dsdt + dsdt_size;
  return p;
}

std::vector<uint8_t> BuildRsdp(uint64_t xsdt_addr) {
  std::vector<uint8_t> t(kRsdpSize, 0);
  PutChars(t, 0, "RSD PTR ");
  PutChars(t, 9, std::string_view(kOemId, 6));
  Put8(t, 15, 2);  // revision 2: ACPI 2.0+ with an XSDT (RsdtAddress left 0)
  Put32(t, 20, kRsdpSize);
  Put64(t, 24, xsdt_addr);
  Put8(t, 8, Checksum(std::span(t).first(20)));  // ACPI 1.0 checksum: first 20 bytes
  Put8(t, 32, Checksum(t));                      // extended checksum: all 36 bytes
  return t;
}

std::vector<uint8_t> BuildXsdt(const Placement& p) {
  bool mcfg = p.mcfg != 0;
  std::vector<uint8_t> t =
      NewSdt("XSDT", static_cast<uint32_t>(kSdtHeaderSize + 8 * XsdtEntries(mcfg)), 1);
  Put64(t, kSdtHeaderSize, p.fadt);
  Put64(t, kSdtHeaderSize + 8, p.madt);
  if (mcfg) Put64(t, kSdtHeaderSize + 16, p.mcfg);
  FinishSdt(t);
  return t;
}

std::vector<uint8_t> BuildFadt(uint64_t dsdt_addr, bool cmos_rtc) {
  auto io_byte = [](uint16_t port) {
    return GenericAddress{
        .space_id = 1, .bit_width = 8, .bit_offset = 0, .access_size = 1, .address = port};
  };
  std::vector<uint8_t> t = NewSdt("FACP", kFadtSize, kFadtRevision);
  Put32(t, 40, static_cast<uint32_t>(dsdt_addr));  // DSDT (below 4 GiB, so both are set)
  Put16(t, 109,
        static_cast<uint16_t>(kIapcVgaNotPresent | (cmos_rtc ? 0 : kIapcCmosRtcNotPresent)));
  Put32(t, 112,
        kFadtWbinvd | kFadtPwrButton | kFadtSlpButton | kFadtResetRegSup | kFadtHwReducedAcpi);
  PutGas(t, 116, io_byte(layout::kAcpiResetPort));
  Put8(t, 128, layout::kAcpiResetValue);
  Put8(t, 131, kFadtMinorRevision);
  Put64(t, 140, dsdt_addr);  // X_DSDT
  PutGas(t, 244, io_byte(layout::kAcpiSleepControlPort));
  PutGas(t, 256, io_byte(layout::kAcpiSleepStatusPort));
  PutChars(t, 268, "KITEVMM ");  // hypervisor vendor identity
  FinishSdt(t);
  return t;
}

std::vector<uint8_t> BuildMadt(uint32_t num_cpus) {
  std::vector<uint8_t> t = NewSdt("APIC", static_cast<uint32_t>(MadtSize(num_cpus)), 5);
  Put32(t, 36, static_cast<uint32_t>(layout::kLapicAddr));
  Put32(t, 40, kMadtPcatCompat);
  size_t off = kSdtHeaderSize + 8;
  for (uint32_t i = 0; i < num_cpus; ++i) {  // Processor Local APIC (§5.2.12.2)
    Put8(t, off, kMadtLocalApic);
    Put8(t, off + 1, 8);
    Put8(t, off + 2, static_cast<uint8_t>(i));  // ACPI processor UID = the DSDT's _UID
    Put8(t, off + 3, static_cast<uint8_t>(i));  // APIC ID = vCPU index
    Put32(t, off + 4, kLocalApicEnabled);
    off += 8;
  }
  Put8(t, off, kMadtIoApic);  // I/O APIC (§5.2.12.3), GSIs from 0
  Put8(t, off + 1, 12);
  Put8(t, off + 2, static_cast<uint8_t>(num_cpus));  // the first APIC ID after the CPUs
  Put32(t, off + 4, static_cast<uint32_t>(layout::kIoapicAddr));
  Put32(t, off + 8, 0);
  off += 12;
  Put8(t, off, kMadtLocalApicNmi);  // NMI on LINT1 of every processor (§5.2.12.7)
  Put8(t, off + 1, 6);
  Put8(t, off + 2, 0xff);  // all processors
  Put16(t, off + 3, 0);    // polarity and trigger: conform to the bus
  Put8(t, off + 5, 1);     // LINT1
  FinishSdt(t);
  return t;
}

// MCFG (PCI Firmware Specification 3.2, 4.1.2): one configuration space base address
// allocation, segment 0, buses 0..0.
std::vector<uint8_t> BuildMcfg(const PciHostConfig& pci) {
  std::vector<uint8_t> t = NewSdt("MCFG", kMcfgSize, 1);
  size_t off = kSdtHeaderSize + 8;  // 8 reserved bytes
  Put64(t, off, pci.ecam_base);
  Put16(t, off + 8, 0);  // PCI segment group
  Put8(t, off + 10, 0);  // start bus
  Put8(t, off + 11, 0);  // end bus
  FinishSdt(t);
  return t;
}

}  // namespace

Result<std::vector<AcpiTable>> BuildAcpiTables(const AcpiConfig& config, uint64_t base_addr) {
  if (base_addr % kTableAlign != 0) return Err("ACPI: table base address must be 16-byte aligned");
  std::vector<uint8_t> dsdt_aml = TRY(BuildDsdtAml(config));  // also checks the config
  std::vector<uint8_t> dsdt = NewSdt("DSDT", static_cast<uint32_t>(kSdtHeaderSize), 2);
  dsdt.insert(dsdt.end(), dsdt_aml.begin(), dsdt_aml.end());
  FinishSdt(dsdt);

  Placement p = Place(base_addr, MadtSize(config.num_cpus), dsdt.size(), config.pci.has_value());
  if (p.end > 0xffffffff) return Err("ACPI: tables must lie below 4 GiB");
  std::vector<AcpiTable> tables;
  tables.emplace_back("RSDP", BuildRsdp(p.xsdt));
  tables.emplace_back("XSDT", BuildXsdt(p));
  tables.emplace_back("FACP", BuildFadt(p.dsdt, config.cmos_rtc));
  tables.emplace_back("APIC", BuildMadt(config.num_cpus));
  tables.emplace_back("DSDT", std::move(dsdt));
  if (config.pci) tables.emplace_back("MCFG", BuildMcfg(*config.pci));
  return tables;
}

Result<GuestAddr> WriteAcpiTables(const GuestMemory& memory, const AcpiConfig& config) {
  std::vector<AcpiTable> tables = TRY(BuildAcpiTables(config, layout::kAcpiTablesAddr));
  // Where each table goes (the placement BuildAcpiTables() linked them for); checked whole
  // before anything is written.
  std::vector<uint64_t> addrs;
  uint64_t addr = layout::kAcpiTablesAddr;
  for (const auto& table : tables) {
    addrs.push_back(addr);
    addr = AlignUp(addr + table.second.size());
  }
  uint64_t end = addrs.back() + tables.back().second.size();
  if (end > layout::kAcpiTablesAddr + layout::kAcpiTablesMax) {
    return Err("ACPI: the tables need " + std::to_string(end - layout::kAcpiTablesAddr) +
               " bytes; at most " + std::to_string(layout::kAcpiTablesMax) + " fit");
  }
  if (!memory.IsValidRange(GuestAddr(layout::kAcpiTablesAddr), end - layout::kAcpiTablesAddr)) {
    return Err("ACPI: guest RAM does not cover the ACPI table area at 0x" +
               ToHex(layout::kAcpiTablesAddr));
  }
  for (size_t i = 0; i < tables.size(); ++i) {
    const auto& [signature, bytes] = tables[i];
    TRY_CTX(memory.Write(GuestAddr(addrs[i]), bytes.data(), bytes.size()),
            "writing the ACPI " + signature + " table");
  }
  return GuestAddr(layout::kRsdpAddr);
}

}  // namespace kite::acpi
