// The VM generation id: a fresh random version-4 GUID each time, written to and read from
// its page at layout::kVmGenIdAddr (vmm/vmgenid.h).
#include "vmm/vmgenid.h"

#include <gtest/gtest.h>

#include <vector>

#include "vmm/layout.h"

namespace kite {
namespace {

struct TestMemory {
  explicit TestMemory(size_t size, uint8_t fill = 0) : ram(size, fill) {
    memory = GuestMemory::FromRegions({{GuestAddr(0), ram.size(), ram.data()}}).value();
  }
  std::vector<uint8_t> ram;
  GuestMemory memory;
};

TEST(VmGenId, New_VersionAndVariantBitsOfARandomGuid) {
  for (int i = 0; i < 16; ++i) {
    VmGenId id = NewVmGenId();
    EXPECT_EQ(id[7] & 0xf0, 0x40) << "version 4 (the GUID's Data3, little-endian)";
    EXPECT_EQ(id[8] & 0xc0, 0x80) << "RFC 4122 variant";
  }
}

TEST(VmGenId, New_TwoCallsDiffer) {
  EXPECT_NE(NewVmGenId(), NewVmGenId());
}

// Every bit but the six fixed ones takes both values over 64 ids (a constant bit would mean a
// byte left unfilled; by chance, probability ~2^-56).
TEST(VmGenId, New_AllOtherBitsVary) {
  VmGenId ones{}, zeros{};
  zeros.fill(0xff);
  for (int i = 0; i < 64; ++i) {
    VmGenId id = NewVmGenId();
    for (size_t b = 0; b < id.size(); ++b) {
      ones[b] |= id[b];
      zeros[b] &= id[b];
    }
  }
  for (size_t b = 0; b < ones.size(); ++b) {
    uint8_t fixed = b == 7 ? 0xf0 : b == 8 ? 0xc0 : 0x00;
    EXPECT_EQ(ones[b] | fixed, 0xff) << "byte " << b;
    EXPECT_EQ(zeros[b] & ~fixed & 0xff, 0x00) << "byte " << b;
  }
}

TEST(VmGenId, Write_StoresTheIdAtItsAddressOnly) {
  TestMemory t(2 << 20, 0xee);
  VmGenId id = NewVmGenId();
  ASSERT_TRUE(WriteVmGenId(t.memory, id).has_value());
  for (size_t i = 0; i < id.size(); ++i) EXPECT_EQ(t.ram[layout::kVmGenIdAddr + i], id[i]);
  EXPECT_EQ(t.ram[layout::kVmGenIdAddr - 1], 0xee);
  EXPECT_EQ(t.ram[layout::kVmGenIdAddr + id.size()], 0xee);
}

TEST(VmGenId, Read_ReturnsTheLastIdWritten) {
  TestMemory t(2 << 20);
  VmGenId first = NewVmGenId();
  VmGenId second = NewVmGenId();
  ASSERT_TRUE(WriteVmGenId(t.memory, first).has_value());
  ASSERT_TRUE(WriteVmGenId(t.memory, second).has_value());
  Result<VmGenId> read = ReadVmGenId(t.memory);
  ASSERT_TRUE(read.has_value()) << read.error().message();
  EXPECT_EQ(*read, second);
}

TEST(VmGenId, WriteAndRead_MemoryBelowTheIdPage_Refused) {
  TestMemory t(0x80000);  // 512 KiB: ends below kVmGenIdAddr
  Result<void> w = WriteVmGenId(t.memory, NewVmGenId());
  ASSERT_FALSE(w.has_value());
  EXPECT_NE(w.error().message().find("VM generation id"), std::string::npos) << w.error().message();
  EXPECT_FALSE(ReadVmGenId(t.memory).has_value());
}

}  // namespace
}  // namespace kite
