// AcpiPm: the hardware-reduced sleep control/status and reset registers.
#include "devices/acpi_pm.h"

#include <gtest/gtest.h>

#include <vector>

#include "vmm/layout.h"

namespace kite {
namespace {

class AcpiPmTest : public ::testing::Test {
 protected:
  void WriteByte(uint64_t offset, uint8_t value) {
    uint8_t b = value;
    pm_.Write(offset, std::span<const uint8_t>(&b, 1));
  }

  std::vector<VmRequest> requests_;
  AcpiPm pm_{[this](VmRequest r) { requests_.push_back(r); }, layout::kAcpiResetValue};
};

TEST_F(AcpiPmTest, SleepControl_S5WithSlpEn_RequestsPowerOff) {
  WriteByte(kAcpiPmSleepControlOffset, (5 << 2) | (1 << 5));  // what Linux writes for S5
  EXPECT_EQ(requests_, std::vector<VmRequest>{VmRequest::kPowerOff});
}

TEST_F(AcpiPmTest, SleepControl_S5WithoutSlpEn_Ignored) {
  WriteByte(kAcpiPmSleepControlOffset, 5 << 2);
  EXPECT_TRUE(requests_.empty());
}

TEST_F(AcpiPmTest, SleepControl_OtherSleepTypes_IgnoredAndCounted) {
  for (uint8_t typ : {0, 1, 3, 4, 6, 7}) {
    WriteByte(kAcpiPmSleepControlOffset, static_cast<uint8_t>((typ << 2) | kAcpiSlpEn));
  }
  EXPECT_TRUE(requests_.empty());
  EXPECT_EQ(pm_.stats().ignored_writes, 6u);
}

TEST_F(AcpiPmTest, ResetRegister_ResetValue_RequestsReset) {
  WriteByte(kAcpiPmResetOffset, layout::kAcpiResetValue);
  EXPECT_EQ(requests_, std::vector<VmRequest>{VmRequest::kReset});
}

TEST_F(AcpiPmTest, ResetRegister_OtherValue_Ignored) {
  WriteByte(kAcpiPmResetOffset, 0x06);
  WriteByte(kAcpiPmResetOffset, 0x00);
  EXPECT_TRUE(requests_.empty());
  EXPECT_EQ(pm_.stats().ignored_writes, 2u);
}

TEST_F(AcpiPmTest, SleepStatus_WakeStatusClearWrite_NoRequest) {
  WriteByte(kAcpiPmSleepStatusOffset, 0x80);  // Linux clears WAK_STS before sleeping
  EXPECT_TRUE(requests_.empty());
  uint8_t status = 0xff;
  pm_.Read(kAcpiPmSleepStatusOffset, std::span<uint8_t>(&status, 1));
  EXPECT_EQ(status, 0);
}

TEST_F(AcpiPmTest, Reads_ReturnZero) {
  uint8_t data[3] = {0xff, 0xff, 0xff};
  pm_.Read(0, data);
  EXPECT_EQ(data[0] | data[1] | data[2], 0);
}

TEST_F(AcpiPmTest, G31_WriteBeyondRegisters_IgnoredAndCounted) {
  const uint8_t data[2] = {kAcpiSlpEn | (kAcpiSlpTypS5 << 2), layout::kAcpiResetValue};
  pm_.Write(kAcpiPmSize, data);  // past the reset register: no register, whatever the value
  EXPECT_TRUE(requests_.empty());
  EXPECT_EQ(pm_.stats().ignored_writes, 2u);
}

TEST_F(AcpiPmTest, WideWrite_TakenBytewise) {
  // A 16-bit write at the status register puts its high byte into the reset register.
  const uint8_t data[2] = {0x80, layout::kAcpiResetValue};
  pm_.Write(kAcpiPmSleepStatusOffset, data);
  EXPECT_EQ(requests_, std::vector<VmRequest>{VmRequest::kReset});
}

}  // namespace
}  // namespace kite
