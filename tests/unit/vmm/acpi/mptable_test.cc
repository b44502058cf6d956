// MP table (Intel MultiProcessor Specification 1.4): checksums, entry counts, entries.
#include "vmm/acpi/mptable.h"

#include <gtest/gtest.h>

#include "table_test_util.h"
#include "vmm/layout.h"

namespace kite::acpi {
namespace {

using testing::Le;

constexpr uint64_t kBase = layout::kMpTableAddr;

std::vector<uint8_t> Build(uint32_t cpus) {
  auto t = BuildMpTable(cpus, kBase);
  EXPECT_TRUE(t.has_value()) << t.error().message();
  return t.has_value() ? *t : std::vector<uint8_t>(16 + 44, 0);
}

uint8_t SumRange(const std::vector<uint8_t>& t, size_t from, size_t len) {
  uint8_t s = 0;
  for (size_t i = from; i < from + len; ++i) s = static_cast<uint8_t>(s + t.at(i));
  return s;
}

TEST(MpTable, FloatingPointer_PointsAtConfigTableWithValidChecksum) {
  auto t = Build(2);
  EXPECT_EQ(std::string(t.begin(), t.begin() + 4), "_MP_");
  EXPECT_EQ(Le(t, 4, 4), kBase + 16);
  EXPECT_EQ(t[8], 1) << "length in 16-byte units";
  EXPECT_EQ(t[9], 4) << "spec revision 1.4";
  EXPECT_EQ(SumRange(t, 0, 16), 0);
  EXPECT_EQ(t[11], 0) << "feature byte 1: configuration table present";
}

TEST(MpTable, ConfigTable_LengthCountAndChecksum) {
  for (uint32_t cpus : {1u, 2u, 8u, kMpMaxCpus}) {
    auto t = Build(cpus);
    size_t len = Le(t, 16 + 4, 2);
    EXPECT_EQ(std::string(t.begin() + 16, t.begin() + 20), "PCMP");
    EXPECT_EQ(len, t.size() - 16) << cpus;
    EXPECT_EQ(SumRange(t, 16, len), 0) << cpus;
    EXPECT_EQ(Le(t, 16 + 34, 2), cpus + 2 + kMpIsaIrqs + 2) << "entry count, " << cpus;
    EXPECT_EQ(Le(t, 16 + 36, 4), layout::kLapicAddr);
  }
}

TEST(MpTable, Processors_ApicIdIsIndexAndOnlyCpu0IsBsp) {
  auto t = Build(3);
  size_t off = 16 + 44;
  for (uint32_t i = 0; i < 3; ++i, off += 20) {
    EXPECT_EQ(t[off], 0) << "processor entry";
    EXPECT_EQ(t[off + 1], i) << "APIC ID";
    EXPECT_EQ(t[off + 3], i == 0 ? 0x3 : 0x1) << "enabled, BSP on 0 only";
  }
  EXPECT_EQ(t[off], 1) << "bus entry";
  EXPECT_EQ(std::string(t.begin() + off + 2, t.begin() + off + 8), "ISA   ");
  off += 8;
  EXPECT_EQ(t[off], 2) << "I/O APIC entry";
  EXPECT_EQ(t[off + 1], 3) << "IOAPIC id after the CPUs";
  EXPECT_EQ(Le(t, off + 4, 4), layout::kIoapicAddr);
}

TEST(MpTable, IsaIrqs_IdentityToIoApicPins_ThenLint0ExtIntLint1Nmi) {
  auto t = Build(1);
  size_t off = 16 + 44 + 20 + 8 + 8;
  for (uint32_t irq = 0; irq < kMpIsaIrqs; ++irq, off += 8) {
    EXPECT_EQ(t[off], 3) << "I/O interrupt entry";
    EXPECT_EQ(t[off + 1], 0) << "INT";
    EXPECT_EQ(t[off + 4], kMpIsaBusId);
    EXPECT_EQ(t[off + 5], irq);
    EXPECT_EQ(t[off + 6], 1) << "IOAPIC id";
    EXPECT_EQ(t[off + 7], irq) << "pin";
  }
  EXPECT_EQ(t[off], 4);
  EXPECT_EQ(t[off + 1], 3) << "ExtINT";
  EXPECT_EQ(t[off + 6], 0xff);
  EXPECT_EQ(t[off + 7], 0) << "LINT0";
  EXPECT_EQ(t[off + 9], 1) << "NMI";
  EXPECT_EQ(t[off + 15], 1) << "LINT1";
  EXPECT_EQ(off + 16, t.size());
}

TEST(MpTable, CpuCountOutOfRange_Refused) {
  EXPECT_FALSE(BuildMpTable(0, kBase).has_value());
  EXPECT_FALSE(BuildMpTable(kMpMaxCpus + 1, kBase).has_value());
}

TEST(MpTable, Write_AtLayoutAddress) {
  std::vector<uint8_t> ram(1 << 20);
  auto memory = GuestMemory::FromRegions({{GuestAddr(0), ram.size(), ram.data()}});
  ASSERT_TRUE(memory.has_value());
  ASSERT_TRUE(WriteMpTable(*memory, kMpMaxCpus).has_value());
  EXPECT_EQ(std::string(ram.begin() + kBase, ram.begin() + kBase + 4), "_MP_");
  auto expected = Build(kMpMaxCpus);
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), ram.begin() + kBase));
}

TEST(MpTable, Write_OutsideGuestRam_Refused) {
  std::vector<uint8_t> ram(0x1000);
  auto memory = GuestMemory::FromRegions({{GuestAddr(0), ram.size(), ram.data()}});
  ASSERT_TRUE(memory.has_value());
  EXPECT_FALSE(WriteMpTable(*memory, 1).has_value());
}

}  // namespace
}  // namespace kite::acpi
