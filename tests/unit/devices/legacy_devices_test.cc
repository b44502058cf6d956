// RegisterLegacyDevices: each device answers at its PC port through the bus.
#include "devices/legacy_devices.h"

#include <gtest/gtest.h>

#include <vector>

#include "testing/fake_irq_line.h"
#include "testing/fake_serial_sink.h"

namespace kite {
namespace {

class LegacyDevicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LegacyDeviceParams params;
    params.serial_sink = &sink_;
    params.com1_irq = &irq_;
    params.request = [this](VmRequest r) { requests_.push_back(r); };
    params.rtc_clock = [] { return std::time_t{1709211909}; };  // 2024-02-29 13:05:09
    auto devices = RegisterLegacyDevices(pio_, std::move(params));
    ASSERT_TRUE(devices) << devices.error().message();
    devices_ = std::move(*devices);
  }
  uint8_t In(uint16_t port) {
    uint8_t v = 0;
    pio_.Read(port, std::span(&v, 1));
    return v;
  }
  void Out(uint16_t port, uint8_t v) { pio_.Write(port, std::span(&v, 1)); }

  Bus pio_{"pio"};
  testing::FakeSerialSink sink_;
  testing::FakeIrqLine irq_;
  std::vector<VmRequest> requests_;
  LegacyDevices devices_;
};

TEST_F(LegacyDevicesTest, Com1_At0x3f8) {
  Out(0x3f8, 'k');
  EXPECT_EQ(sink_.output(), "k");
  EXPECT_EQ(In(0x3fd), 0x60);
}

TEST_F(LegacyDevicesTest, I8042Reset_At0x64) {
  Out(0x64, 0xfe);
  ASSERT_EQ(requests_.size(), 1u);
  EXPECT_EQ(requests_[0], VmRequest::kReset);
}

TEST_F(LegacyDevicesTest, Rtc_At0x70) {
  Out(0x70, 0x04);
  EXPECT_EQ(In(0x71), 0x13);
}

TEST_F(LegacyDevicesTest, BootMarker_At0x3f0) {
  Out(0x3f0, 42);
  ASSERT_EQ(devices_.boot_marker->marks().size(), 1u);
  EXPECT_EQ(devices_.boot_marker->marks()[0].value, 42);
}

TEST_F(LegacyDevicesTest, RegisterTwice_Refused) {
  LegacyDeviceParams params;
  params.serial_sink = &sink_;
  params.com1_irq = &irq_;
  auto again = RegisterLegacyDevices(pio_, std::move(params));
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message().find("COM1"), std::string::npos);
}

TEST(LegacyDevicesParamsTest, MissingSink_Refused) {
  Bus pio("pio");
  EXPECT_FALSE(RegisterLegacyDevices(pio, LegacyDeviceParams{}));
}

}  // namespace
}  // namespace kite
