// ACPI tables: checksums, links between tables, FADT/MADT fields, the DSDT's devices, and the
// write into guest memory.
#include "vmm/acpi/acpi_tables.h"

#include <gtest/gtest.h>

#include <map>

#include "devices/acpi_ged.h"
#include "table_test_util.h"
#include "vmm/layout.h"

namespace kite::acpi {
namespace {

using testing::Count;
using testing::Le;
using testing::Sum;
using testing::Table;

constexpr uint64_t kBase = layout::kAcpiTablesAddr;

AcpiConfig TwoCpusTwoVirtio() {
  AcpiConfig c;
  c.num_cpus = 2;
  c.virtio_devices = {
      {layout::kVirtioMmioBase, layout::kVirtioMmioSize, 5},
      {layout::kVirtioMmioBase + layout::kVirtioMmioSize, layout::kVirtioMmioSize, 6}};
  return c;
}

std::vector<AcpiTable> Build(const AcpiConfig& c) {
  auto tables = BuildAcpiTables(c, kBase);
  EXPECT_TRUE(tables.has_value()) << tables.error().message();
  return tables.has_value() ? *tables : std::vector<AcpiTable>{};
}

TEST(AcpiTables, Build_AllChecksumsZero) {
  for (const auto& [sig, t] : Build(TwoCpusTwoVirtio())) {
    if (sig == "RSDP") {
      EXPECT_EQ(Sum(t, 20), 0) << "RSDP v1 checksum";
      EXPECT_EQ(Sum(t, 36), 0) << "RSDP extended checksum";
    } else {
      EXPECT_EQ(Le(t, 4, 4), t.size()) << sig << " length";
      EXPECT_EQ(Sum(t, t.size()), 0) << sig;
    }
  }
}

TEST(AcpiTables, Build_TablesLinkedAtTheirPlacedAddresses) {
  auto tables = Build(TwoCpusTwoVirtio());
  ASSERT_EQ(tables.size(), 5u);
  std::map<std::string, uint64_t> addr;
  uint64_t next = kBase;
  for (const auto& [sig, t] : tables) {
    addr[sig] = next;
    next = (next + t.size() + 15) & ~uint64_t{15};
  }
  const auto& rsdp = Table(tables, "RSDP");
  EXPECT_EQ(std::string(rsdp.begin(), rsdp.begin() + 8), "RSD PTR ");
  EXPECT_EQ(rsdp[15], 2);
  EXPECT_EQ(Le(rsdp, 24, 8), addr["XSDT"]);
  const auto& xsdt = Table(tables, "XSDT");
  ASSERT_EQ(xsdt.size(), 36u + 16u);
  EXPECT_EQ(Le(xsdt, 36, 8), addr["FACP"]);
  EXPECT_EQ(Le(xsdt, 44, 8), addr["APIC"]);
  const auto& fadt = Table(tables, "FACP");
  EXPECT_EQ(Le(fadt, 140, 8), addr["DSDT"]);
  EXPECT_EQ(Le(fadt, 40, 4), addr["DSDT"]);
}

TEST(AcpiTables, Fadt_HardwareReducedWithSleepAndResetRegisters) {
  auto tables = Build(TwoCpusTwoVirtio());
  const auto& fadt = Table(tables, "FACP");
  ASSERT_EQ(fadt.size(), 276u);
  EXPECT_EQ(fadt[8], 6) << "revision";
  uint32_t flags = static_cast<uint32_t>(Le(fadt, 112, 4));
  EXPECT_TRUE(flags & (1u << 20)) << "HW_REDUCED_ACPI";
  EXPECT_TRUE(flags & (1u << 10)) << "RESET_REG_SUP";
  // Generic addresses: SystemIO, 8 bits, byte access, at the layout's ports.
  auto expect_io_gas = [&](size_t off, uint16_t port) {
    EXPECT_EQ(fadt[off], 1) << off;
    EXPECT_EQ(fadt[off + 1], 8) << off;
    EXPECT_EQ(fadt[off + 3], 1) << off;
    EXPECT_EQ(Le(fadt, off + 4, 8), port) << off;
  };
  expect_io_gas(116, layout::kAcpiResetPort);
  expect_io_gas(244, layout::kAcpiSleepControlPort);
  expect_io_gas(256, layout::kAcpiSleepStatusPort);
  EXPECT_EQ(fadt[128], layout::kAcpiResetValue);
  // No legacy PM blocks: PM1a event/control blocks are zero.
  EXPECT_EQ(Le(fadt, 56, 4), 0u);
  EXPECT_EQ(Le(fadt, 64, 4), 0u);
}

TEST(AcpiTables, Madt_OneLocalApicPerCpuThenIoApic) {
  AcpiConfig c;
  c.num_cpus = 4;
  auto tables = Build(c);
  const auto& madt = Table(tables, "APIC");
  EXPECT_EQ(Le(madt, 36, 4), layout::kLapicAddr);
  size_t off = 44;
  for (uint32_t i = 0; i < 4; ++i, off += 8) {
    EXPECT_EQ(madt.at(off), 0) << "type: processor local APIC";
    EXPECT_EQ(madt.at(off + 1), 8);
    EXPECT_EQ(madt.at(off + 2), i) << "processor UID";
    EXPECT_EQ(madt.at(off + 3), i) << "APIC ID";
    EXPECT_EQ(Le(madt, off + 4, 4), 1u) << "enabled";
  }
  EXPECT_EQ(madt.at(off), 1) << "type: I/O APIC";
  EXPECT_EQ(madt.at(off + 2), 4) << "IOAPIC id after the CPUs";
  EXPECT_EQ(Le(madt, off + 4, 4), layout::kIoapicAddr);
  EXPECT_EQ(Le(madt, off + 8, 4), 0u) << "GSI base";
  off += 12;
  EXPECT_EQ(madt.at(off), 4) << "type: local APIC NMI";
  EXPECT_EQ(madt.at(off + 5), 1) << "LINT1";
  EXPECT_EQ(off + 6, madt.size());
}

TEST(AcpiTables, Dsdt_DescribesEachDeviceOnce) {
  auto tables = Build(TwoCpusTwoVirtio());
  const auto& dsdt = Table(tables, "DSDT");
  EXPECT_EQ(Count(dsdt, "LNRO0005"), 2u);
  EXPECT_EQ(Count(dsdt, "ACPI0007"), 2u);
  EXPECT_EQ(Count(dsdt, "ACPI0013"), 1u);
  EXPECT_EQ(Count(dsdt, "COM1"), 1u);
  EXPECT_EQ(Count(dsdt, "_EVT"), 1u);
  // Name (_S5_, Package (2) { 5, 5 })
  EXPECT_EQ(Count(dsdt, std::string("_S5_\x12\x06\x02\x0a\x05\x0a\x05", 11)), 1u);
}

TEST(AcpiTables, Dsdt_NoSerial_NoCom1) {
  AcpiConfig c;
  c.serial_com1 = false;
  auto tables = Build(c);
  EXPECT_EQ(Count(Table(tables, "DSDT"), "COM1"), 0u);
}

TEST(AcpiTables, CmosRtc_DescribedInDsdtOrFlaggedAbsentInFadt) {
  AcpiConfig c;
  c.cmos_rtc = true;
  auto with_rtc = Build(c);
  const auto& dsdt = Table(with_rtc, "DSDT");
  EXPECT_EQ(Count(dsdt, "RTC_"), 1u);
  EXPECT_EQ(Count(dsdt, std::string("\x0c\x41\xd0\x0b\x00", 5)), 1u) << "EisaId (PNP0B00)";
  // IO (Decode16, 0x70, 0x70, 1, 2); no IRQ in _CRS: kite's RTC raises none.
  EXPECT_EQ(Count(dsdt, std::string("\x47\x01\x70\x00\x70\x00\x01\x02", 8)), 1u);
  EXPECT_EQ(Le(Table(with_rtc, "FACP"), 109, 2) & (1u << 5), 0u);
  c.cmos_rtc = false;
  auto without = Build(c);
  EXPECT_EQ(Count(Table(without, "DSDT"), "RTC_"), 0u);
  EXPECT_NE(Le(Table(without, "FACP"), 109, 2) & (1u << 5), 0u) << "CMOS RTC not present";
}

TEST(AcpiTables, HotplugSlots_OneContainerWithAVirtioDeviceEach) {
  AcpiConfig c = TwoCpusTwoVirtio();
  c.hotplug_slots = {{layout::kVirtioMmioBase + 0x2000, 0x1000, 7},
                     {layout::kVirtioMmioBase + 0x3000, 0x1000, 10},
                     {layout::kVirtioMmioBase + 0x4000, 0x1000, 11}};
  auto tables = Build(c);
  const auto& dsdt = Table(tables, "DSDT");
  EXPECT_EQ(Count(dsdt, "ACPI0004"), 3u);
  EXPECT_EQ(Count(dsdt, "LNRO0005"), 5u);
  EXPECT_EQ(Count(dsdt, "_EJ0"), 3u);
  EXPECT_EQ(Count(dsdt, "H002"), 3u) << "the device, its Device Check and Eject Request notifies";
}

TEST(AcpiTables, VmGenId_DeviceWithAddrPackageAndGedNotify) {
  AcpiConfig c;
  c.vmgenid_addr = layout::kVmGenIdAddr;
  auto tables = Build(c);  // (a reference into a temporary's table dangled: ASan)
  const auto& dsdt = Table(tables, "DSDT");
  EXPECT_EQ(Count(dsdt, "VMGENCTR"), 1u);
  EXPECT_EQ(Count(dsdt, "VM_GEN_COUNTER"), 1u);
  EXPECT_EQ(Count(dsdt, "VGEN"), 2u) << "the device and the GED's Notify";
  // Return (Package (2) { 0x000ff000, Zero })
  EXPECT_EQ(Count(dsdt, std::string("\xa4\x12\x08\x02\x0c\x00\xf0\x0f\x00\x00", 10)), 1u);
}

TEST(AcpiTables, VmGenId_Unset_NoDevice) {
  auto tables = Build(TwoCpusTwoVirtio());
  const auto& dsdt = Table(tables, "DSDT");
  EXPECT_EQ(Count(dsdt, "VGEN"), 0u);
  EXPECT_EQ(Count(dsdt, "VMGENCTR"), 0u);
}

TEST(AcpiTables, VmGenId_UnalignedOrAcrossAPage_Refused) {
  for (uint64_t addr : {layout::kVmGenIdAddr + 4, layout::kVmGenIdAddr + 0xff8}) {
    AcpiConfig c;
    c.vmgenid_addr = addr;
    auto r = BuildAcpiTables(c, kBase);
    ASSERT_FALSE(r.has_value()) << std::hex << addr;
    EXPECT_NE(r.error().message().find("VM generation id"), std::string::npos);
  }
}

// The largest DSDT still ends below the VMGenID page, which the table write leaves alone.
TEST(AcpiTables, Write_MaxConfigWithVmGenId_StopsBelowVmGenIdPage) {
  AcpiConfig c;
  c.num_cpus = kMaxCpus;
  c.vmgenid_addr = layout::kVmGenIdAddr;
  for (uint64_t i = 0; i < kMaxVirtioDevices; ++i) {
    c.virtio_devices.push_back({layout::kVirtioMmioBase + 0x1000 * i, 0x1000, 5});
  }
  for (uint64_t i = 0; i < kGedMaxSlots; ++i) {
    c.hotplug_slots.push_back({0xd0200000 + 0x1000 * i, 0x1000, 6});
  }
  std::vector<uint8_t> ram(2 << 20, 0xee);
  auto memory = GuestMemory::FromRegions({{GuestAddr(0), ram.size(), ram.data()}});
  ASSERT_TRUE(memory.has_value());
  auto rsdp = WriteAcpiTables(*memory, c);
  ASSERT_TRUE(rsdp.has_value()) << rsdp.error().message();
  for (uint64_t a = layout::kVmGenIdAddr; a < layout::kHighMemStart; ++a) {
    ASSERT_EQ(ram[a], 0xee) << "byte at 0x" << std::hex << a;
  }
}

TEST(AcpiTables, HotplugSlots_MoreThanGedBits_Refused) {
  AcpiConfig c;
  c.hotplug_slots.assign(33, {layout::kVirtioMmioBase, 0x1000, 5});
  EXPECT_FALSE(BuildAcpiTables(c, kBase).has_value());
  c.hotplug_slots.resize(32);
  EXPECT_TRUE(BuildAcpiTables(c, kBase).has_value());
}

TEST(AcpiTables, HotplugSlot_BadWindow_Refused) {
  AcpiConfig c;
  c.hotplug_slots = {{layout::kVirtioMmioBase, 0, 5}};
  auto r = BuildAcpiTables(c, kBase);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("hotplug slot 0"), std::string::npos);
}

TEST(AcpiTables, Config_CpuCountOutOfRange_Refused) {
  AcpiConfig c;
  c.num_cpus = 0;
  EXPECT_FALSE(BuildAcpiTables(c, kBase).has_value());
  c.num_cpus = kMaxCpus + 1;
  EXPECT_FALSE(BuildAcpiTables(c, kBase).has_value());
  c.num_cpus = kMaxCpus;
  EXPECT_TRUE(BuildAcpiTables(c, kBase).has_value());
}

TEST(AcpiTables, Config_VirtioWindowAbove4GiB_Refused) {
  AcpiConfig c;
  c.virtio_devices = {{0xfffff000, 0x2000, 5}};
  auto r = BuildAcpiTables(c, kBase);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("virtio-mmio device 0"), std::string::npos);
}

TEST(AcpiTables, Config_VirtioIrqTakenByPlatform_Refused) {
  for (uint32_t irq : {0u, 2u, layout::kCom1Irq, layout::kGedIrq, 24u}) {
    AcpiConfig c;
    c.virtio_devices = {{layout::kVirtioMmioBase, layout::kVirtioMmioSize, irq}};
    EXPECT_FALSE(BuildAcpiTables(c, kBase).has_value()) << "irq " << irq;
  }
}

TEST(AcpiTables, Build_UnalignedBase_Refused) {
  EXPECT_FALSE(BuildAcpiTables(AcpiConfig{}, kBase + 4).has_value());
}

TEST(AcpiTables, Write_TablesReadableThroughThePointers) {
  std::vector<uint8_t> ram(2 << 20);
  auto memory = GuestMemory::FromRegions({{GuestAddr(0), ram.size(), ram.data()}});
  ASSERT_TRUE(memory.has_value());
  auto rsdp = WriteAcpiTables(*memory, TwoCpusTwoVirtio());
  ASSERT_TRUE(rsdp.has_value()) << rsdp.error().message();
  EXPECT_EQ(rsdp->value, layout::kRsdpAddr);
  auto read = [&](uint64_t addr, size_t len) {
    return std::vector<uint8_t>(ram.begin() + addr, ram.begin() + addr + len);
  };
  auto r = read(rsdp->value, 36);
  auto xsdt = read(Le(r, 24, 8), 52);
  EXPECT_EQ(std::string(xsdt.begin(), xsdt.begin() + 4), "XSDT");
  auto fadt = read(Le(xsdt, 36, 8), 276);
  EXPECT_EQ(std::string(fadt.begin(), fadt.begin() + 4), "FACP");
  auto madt = read(Le(xsdt, 44, 8), 4);
  EXPECT_EQ(std::string(madt.begin(), madt.end()), "APIC");
  auto dsdt_header = read(Le(fadt, 140, 8), 36);
  EXPECT_EQ(std::string(dsdt_header.begin(), dsdt_header.begin() + 4), "DSDT");
  auto dsdt = read(Le(fadt, 140, 8), Le(dsdt_header, 4, 4));
  EXPECT_EQ(Sum(dsdt, dsdt.size()), 0);
}

TEST(AcpiTables, Write_MemoryWithoutBiosArea_Refused) {
  std::vector<uint8_t> ram(0x80000);  // 512 KiB: ends below 0xe0000
  auto memory = GuestMemory::FromRegions({{GuestAddr(0), ram.size(), ram.data()}});
  ASSERT_TRUE(memory.has_value());
  EXPECT_FALSE(WriteAcpiTables(*memory, AcpiConfig{}).has_value());
}

}  // namespace
}  // namespace kite::acpi
