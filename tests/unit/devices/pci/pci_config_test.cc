// PciConfigSpace (src/devices/pci/pci_config.cc): the type-0 header, write masks, the BAR
// sizing protocol with 64-bit memory BARs, the capability list, bad accesses, restore checks.
#include "devices/pci/pci_config.h"

#include <gtest/gtest.h>

#include <cstring>

namespace kite::pci {
namespace {

PciIdentity Identity() {
  return {.vendor_id = 0x1af4,
          .device_id = 0x1042,
          .revision = 1,
          .class_code = 0x010000,
          .subsystem_vendor_id = 0x1af4,
          .subsystem_id = 0x40};
}

uint32_t Read(const PciConfigSpace& c, uint16_t offset, size_t size = 4) {
  uint8_t buf[4] = {};
  c.Read(offset, std::span(buf, size));
  uint32_t v = 0;
  std::memcpy(&v, buf, size);
  return v;
}

bool Write(PciConfigSpace& c, uint16_t offset, uint32_t value, size_t size = 4) {
  uint8_t buf[4];
  std::memcpy(buf, &value, 4);
  return c.Write(offset, std::span<const uint8_t>(buf, size));
}

TEST(PciConfig, Header_IdsClassRevision_ReadBack) {
  PciConfigSpace c(Identity());
  EXPECT_EQ(Read(c, kVendorId), 0x10421af4u);
  EXPECT_EQ(Read(c, kRevisionId), 0x01000001u);  // class 01, subclass 00, prog-if 00, rev 1
  EXPECT_EQ(Read(c, kSubsystemVendorId), 0x00401af4u);
  EXPECT_EQ(Read(c, kHeaderType, 1), 0u);
  EXPECT_EQ(Read(c, kCommand, 2), 0u);  // decoding off after reset
}

TEST(PciConfig, ReadOnlyRegisters_WritesIgnored) {
  PciConfigSpace c(Identity());
  EXPECT_TRUE(Write(c, kVendorId, 0xdeadbeef));
  EXPECT_TRUE(Write(c, kRevisionId, 0xffffffff));
  EXPECT_EQ(Read(c, kVendorId), 0x10421af4u);
  EXPECT_EQ(Read(c, kRevisionId), 0x01000001u);
}

TEST(PciConfig, Command_OnlyImplementedBitsStick) {
  PciConfigSpace c(Identity());
  Write(c, kCommand, 0xffff, 2);
  EXPECT_EQ(Read(c, kCommand, 2), kCommandMemory | kCommandBusMaster | kCommandParity |
                                      kCommandSerr | kCommandIntxDisable);  // no I/O space bit
  EXPECT_TRUE(c.memory_enabled());
}

TEST(PciConfig, Bar64_SizingWithAllOnes_ReadsSizeAndTypeBits) {
  PciConfigSpace c(Identity());
  ASSERT_TRUE(c.SetBar(0, {0x8000, true, false}, 0xe8000000));
  EXPECT_EQ(Read(c, kBar0), 0xe8000004u);  // 64-bit memory BAR
  EXPECT_EQ(Read(c, kBar0 + 4), 0u);
  Write(c, kBar0, 0xffffffff);
  EXPECT_EQ(Read(c, kBar0), 0xffff8004u);  // size 32 KiB
  EXPECT_EQ(c.bar_address(0), std::nullopt) << "half sized: no real address";
  Write(c, kBar0 + 4, 0xffffffff);
  EXPECT_EQ(Read(c, kBar0 + 4), 0xffffffffu);
  EXPECT_EQ(c.bar_address(0), std::nullopt);
  Write(c, kBar0, 0xe8010000);
  Write(c, kBar0 + 4, 0x1);
  EXPECT_EQ(c.bar_address(0), 0x1e8010000u);
  EXPECT_EQ(c.bar_size(0), 0x8000u);
}

TEST(PciConfig, Bar_LowAddressBitsAndTypeBits_ReadOnly) {
  PciConfigSpace c(Identity());
  ASSERT_TRUE(c.SetBar(0, {0x1000, false, true}, 0));
  Write(c, kBar0, 0x12345678);
  EXPECT_EQ(Read(c, kBar0), 0x12345008u);  // 32-bit, prefetchable, 4 KiB aligned
  EXPECT_EQ(c.bar_address(0), 0x12345000u);
}

TEST(PciConfig, UnusedBarsAndRom_ReadZero_SizeZero) {
  PciConfigSpace c(Identity());
  ASSERT_TRUE(c.SetBar(0, {0x8000, true, false}, 0));
  for (uint16_t reg = kBar0 + 8; reg <= kBar0 + 20; reg += 4) {
    Write(c, reg, 0xffffffff);
    EXPECT_EQ(Read(c, reg), 0u) << reg;
  }
  Write(c, kRomBar, 0xffffffff);
  EXPECT_EQ(Read(c, kRomBar), 0u);
}

TEST(PciConfig, SetBar_BadSizeOrOverlap_Refused) {
  PciConfigSpace c(Identity());
  EXPECT_FALSE(c.SetBar(0, {0x3000, true, false}, 0));      // not a power of two
  EXPECT_FALSE(c.SetBar(0, {0x1000, true, false}, 0x800));  // misaligned
  EXPECT_FALSE(c.SetBar(5, {0x1000, true, false}, 0));      // 64-bit needs two registers
  ASSERT_TRUE(c.SetBar(0, {0x1000, true, false}, 0));
  EXPECT_FALSE(c.SetBar(1, {0x1000, false, false}, 0));  // upper half of BAR 0
}

TEST(PciConfig, Capabilities_LinkedList_StatusBit) {
  PciConfigSpace c(Identity());
  EXPECT_EQ(Read(c, kStatus, 2) & kStatusCapabilities, 0u);
  uint8_t a[] = {0x11, 0xee, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  uint8_t b[] = {0x09, 0xee, 16, 1};
  auto first = c.AddCapability(a);
  auto second = c.AddCapability(b);
  ASSERT_TRUE(first && second);
  EXPECT_EQ(*first, 0x40);
  EXPECT_EQ(*second, 0x4c);
  EXPECT_NE(Read(c, kStatus, 2) & kStatusCapabilities, 0u);
  EXPECT_EQ(Read(c, kCapabilitiesPointer, 1), 0x40u);
  EXPECT_EQ(Read(c, 0x41, 1), 0x4cu);
  EXPECT_EQ(Read(c, 0x4d, 1), 0u) << "end of list";
  Write(c, 0x42, 0xffffffff, 2);
  EXPECT_EQ(Read(c, 0x42, 2), 0x0201u) << "read-only without a mask";
}

TEST(PciConfig, Capability_WriteMask_AppliesPerByte) {
  PciConfigSpace c(Identity());
  uint8_t cap[] = {0x11, 0, 0x03, 0x00};
  uint8_t mask[] = {0, 0, 0, 0xc0};
  auto at = c.AddCapability(cap, mask);
  ASSERT_TRUE(at);
  Write(c, *at + 2, 0xffff, 2);
  EXPECT_EQ(Read(c, *at + 2, 2), 0xc003u);
}

TEST(PciConfig, BadAccesses_ReadAllOnes_WritesRefused) {
  PciConfigSpace c(Identity());
  EXPECT_EQ(Read(c, 0x01, 2), 0xffffu);  // misaligned word
  EXPECT_EQ(Read(c, 0x02, 4), 0xffffffffu);
  uint8_t three[3] = {};
  EXPECT_FALSE(c.Read(0, three));
  EXPECT_FALSE(Write(c, kCommand + 1, 0x0606, 2));
  EXPECT_FALSE(c.Write(0xfe, std::span<const uint8_t>(three, 3)));
  uint8_t past[4];
  EXPECT_FALSE(c.Read(0x100, past));  // beyond 256 bytes
  EXPECT_EQ(Read(c, kCommand, 2), 0u);
}

TEST(PciConfig, Restore_RoundTrip_AndReadOnlyMismatchRefused) {
  PciConfigSpace a(Identity());
  ASSERT_TRUE(a.SetBar(0, {0x8000, true, false}, 0xe8000000));
  Write(a, kCommand, kCommandMemory, 2);
  Write(a, kBar0, 0xe8010000);
  std::vector<uint8_t> saved = a.Save();

  PciConfigSpace b(Identity());
  ASSERT_TRUE(b.SetBar(0, {0x8000, true, false}, 0xe8000000));
  ASSERT_TRUE(b.Restore(saved));
  EXPECT_EQ(b.bar_address(0), 0xe8010000u);
  EXPECT_TRUE(b.memory_enabled());

  std::vector<uint8_t> other = saved;
  other[kDeviceId] ^= 1;  // another device
  PciConfigSpace c(Identity());
  ASSERT_TRUE(c.SetBar(0, {0x8000, true, false}, 0xe8000000));
  auto refused = c.Restore(other);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("0x2"), std::string::npos) << refused.error().message();
  EXPECT_EQ(c.bar_address(0), 0xe8000000u) << "unchanged";
  EXPECT_FALSE(c.Restore(std::vector<uint8_t>(100, 0)));
}

}  // namespace
}  // namespace kite::pci
