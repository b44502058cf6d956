// PciBus, PciEcam, PciConfigPorts and PciHostBridge (src/devices/pci/): slots, configuration
// access decoding through ECAM and 0xCF8/0xCFC, all-ones for absent functions, and BAR
// mapping on the MMIO bus following the command register and BAR writes.
#include "devices/pci/pci_bus.h"

#include <gtest/gtest.h>

#include <cstring>
#include <mutex>

#include "devices/pci/pci_config.h"
#include "devices/pci/pci_config_access.h"
#include "devices/pci/pci_host_bridge.h"

namespace kite::pci {
namespace {

constexpr uint64_t kWindow = 0xe8000000;
constexpr uint64_t kBarSize = 0x4000;

// A function with one 64-bit memory BAR that answers every BAR read with its offset.
class FakeFunction : public PciDevice {
 public:
  explicit FakeFunction(uint64_t bar) : config_({.vendor_id = 0x1234, .device_id = 0x5678}) {
    EXPECT_TRUE(config_.SetBar(0, {kBarSize, true, false}, bar));
  }
  void ConfigRead(uint16_t offset, std::span<uint8_t> data) override { config_.Read(offset, data); }
  void ConfigWrite(uint16_t offset, std::span<const uint8_t> data) override {
    config_.Write(offset, data);
  }
  std::vector<BarMapping> MappedBars() override {
    auto addr = config_.bar_address(0);
    if (!config_.memory_enabled() || !addr || *addr == 0) return {};
    return {{0, *addr, kBarSize}};
  }
  void BarRead(int, uint64_t offset, std::span<uint8_t> data) override {
    uint32_t v = static_cast<uint32_t>(offset);
    std::memcpy(data.data(), &v, std::min<size_t>(4, data.size()));
  }
  void BarWrite(int, uint64_t offset, std::span<const uint8_t>) override {
    writes.push_back(offset);
  }
  std::string pci_name() const override { return "fake"; }
  std::vector<uint64_t> writes;

 private:
  PciConfigSpace config_;
};

class PciBusTest : public ::testing::Test {
 protected:
  PciBusTest() : bus_(&mmio_, {{kWindow, 0x1000000}}), ecam_(&bus_), ports_(&bus_) {
    EXPECT_TRUE(bus_.AddDevice(std::make_shared<PciHostBridge>(), {}, 0));
  }

  uint32_t EcamRead(uint8_t dev, uint8_t fn, uint16_t reg, size_t size = 4) {
    uint8_t b[4] = {};
    ecam_.Read(uint64_t{dev} << 15 | uint64_t{fn} << 12 | reg, std::span(b, size));
    uint32_t v = 0;
    std::memcpy(&v, b, size);
    return v;
  }
  void EcamWrite(uint8_t dev, uint16_t reg, uint32_t value, size_t size = 4) {
    uint8_t b[4];
    std::memcpy(b, &value, 4);
    ecam_.Write(uint64_t{dev} << 15 | reg, std::span<const uint8_t>(b, size));
  }
  void Cf8(uint32_t address) {
    uint8_t b[4];
    std::memcpy(b, &address, 4);
    ports_.Write(0, b);
  }
  uint32_t Cfc(uint64_t byte, size_t size) {
    uint8_t b[4] = {};
    ports_.Read(4 + byte, std::span(b, size));
    uint32_t v = 0;
    std::memcpy(&v, b, size);
    return v;
  }
  uint32_t MmioRead(uint64_t addr) {
    uint8_t b[4];
    mmio_.Read(addr, b);
    uint32_t v;
    std::memcpy(&v, b, 4);
    return v;
  }
  std::shared_ptr<FakeFunction> AddFake(uint64_t bar, uint8_t slot = 3) {
    auto f = std::make_shared<FakeFunction>(bar);
    auto added = bus_.AddDevice(
        f, [this](int bar, std::optional<uint64_t> a) { events_.emplace_back(bar, a); }, slot);
    EXPECT_TRUE(added);
    return f;
  }

  Bus mmio_{"mmio"};
  PciBus bus_;
  PciEcam ecam_;
  PciConfigPorts ports_;
  std::vector<std::pair<int, std::optional<uint64_t>>> events_;
};

TEST_F(PciBusTest, HostBridge_AtSlot0_ClassHostBridge) {
  EXPECT_EQ(EcamRead(0, 0, kVendorId), 0x00081b36u);
  EXPECT_EQ(EcamRead(0, 0, kRevisionId) >> 8, 0x060000u);
  EXPECT_EQ(EcamRead(0, 0, kBar0), 0u);
}

TEST_F(PciBusTest, EmptySlotsAndOtherFunctions_ReadAllOnes_WritesIgnored) {
  EXPECT_EQ(EcamRead(5, 0, kVendorId), 0xffffffffu);
  EXPECT_EQ(EcamRead(0, 1, kVendorId), 0xffffffffu) << "function 1 of a present device";
  EXPECT_EQ(EcamRead(31, 7, 0x3c, 1), 0xffu);
  EcamWrite(5, kCommand, 0xffff, 2);
  EXPECT_GE(bus_.stats().empty_accesses, 4u);
}

TEST_F(PciBusTest, Ecam_DecodesDeviceFunctionRegister) {
  AddFake(0);
  EXPECT_EQ(EcamRead(3, 0, kVendorId), 0x56781234u);
  EXPECT_EQ(EcamRead(3, 0, kDeviceId, 2), 0x5678u);
  EXPECT_EQ(EcamRead(3, 0, kVendorId + 1, 1), 0x12u);
}

TEST_F(PciBusTest, Ecam_ExtendedSpace_ZeroForPresent_AllOnesForAbsent) {
  AddFake(0);
  EXPECT_EQ(EcamRead(3, 0, 0x100), 0u);
  EXPECT_EQ(EcamRead(4, 0, 0x100), 0xffffffffu);
}

TEST_F(PciBusTest, Ecam_BadWidthOrAlignment_AllOnes_Counted) {
  AddFake(0);
  uint8_t b[8];
  ecam_.Read(3 << 15, b);  // 8 bytes
  EXPECT_EQ(b[0], 0xff);
  EXPECT_EQ(EcamRead(3, 0, 1, 2), 0xffffu);   // misaligned
  ecam_.Read(kEcamBusSize, std::span(b, 4));  // bus 1
  EXPECT_EQ(ecam_.bad_accesses(), 3u);
}

TEST_F(PciBusTest, Cf8_AddressThenData_DwordWordByte) {
  AddFake(0);
  Cf8(0x80000000 | 3 << 11);
  EXPECT_EQ(Cfc(0, 4), 0x56781234u);
  EXPECT_EQ(Cfc(2, 2), 0x5678u);
  EXPECT_EQ(Cfc(3, 1), 0x56u);
  uint8_t back[4];
  ports_.Read(0, back);
  uint32_t addr;
  std::memcpy(&addr, back, 4);
  EXPECT_EQ(addr, 0x80000000u | 3 << 11);
}

TEST_F(PciBusTest, Cf8_EnableClear_OtherBus_BadWidth_AllOnes) {
  AddFake(0);
  Cf8(3 << 11);  // enable bit clear
  EXPECT_EQ(Cfc(0, 4), 0xffffffffu);
  Cf8(0x80000000 | 1 << 16 | 3 << 11);  // bus 1
  EXPECT_EQ(Cfc(0, 4), 0xffffffffu);
  Cf8(0x80000000 | 3 << 11);
  EXPECT_EQ(Cfc(1, 2), 0xffffu);  // misaligned word
  uint8_t one = 0;
  ports_.Write(1, std::span(&one, 1));  // 0xCF9: not the address register
  EXPECT_EQ(Cfc(0, 4), 0x56781234u);
}

TEST_F(PciBusTest, Cf8_WriteThroughData_ReachesDevice) {
  AddFake(kWindow);
  Cf8(0x80000000 | 3 << 11 | kCommand);
  uint8_t cmd[2] = {kCommandMemory, 0};
  ports_.Write(4, cmd);
  EXPECT_EQ(MmioRead(kWindow + 8), 8u) << "memory decoding on: BAR mapped";
}

TEST_F(PciBusTest, Bar_MappedOnlyWithMemoryEnable) {
  AddFake(kWindow);
  EXPECT_EQ(MmioRead(kWindow + 4), 0xffffffffu) << "decoding off after reset";
  EXPECT_TRUE(events_.empty());
  EcamWrite(3, kCommand, kCommandMemory, 2);
  EXPECT_EQ(MmioRead(kWindow + 4), 4u);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].second, kWindow);
  EcamWrite(3, kCommand, 0, 2);
  EXPECT_EQ(MmioRead(kWindow + 4), 0xffffffffu);
  EXPECT_EQ(events_.back().second, std::nullopt);
}

TEST_F(PciBusTest, Bar_Moved_OldAddressUnclaimed_NewAddressServed) {
  AddFake(kWindow);
  EcamWrite(3, kCommand, kCommandMemory, 2);
  EcamWrite(3, kBar0, kWindow + 0x10000);
  EXPECT_EQ(MmioRead(kWindow), 0xffffffffu);
  EXPECT_EQ(MmioRead(kWindow + 0x10000 + 12), 12u);
  ASSERT_EQ(events_.size(), 3u);  // mapped, unmapped, mapped at the new place
  EXPECT_EQ(events_[2].second, kWindow + 0x10000);
}

TEST_F(PciBusTest, Bar_Sizing_Unmapped_ThenRestored) {
  AddFake(kWindow);
  EcamWrite(3, kCommand, kCommandMemory, 2);
  EcamWrite(3, kBar0, 0xffffffff);
  EcamWrite(3, kBar0 + 4, 0xffffffff);
  EXPECT_EQ(EcamRead(3, 0, kBar0), 0xffffc004u);
  EXPECT_EQ(MmioRead(kWindow), 0xffffffffu);
  EcamWrite(3, kBar0, static_cast<uint32_t>(kWindow));
  EcamWrite(3, kBar0 + 4, 0);
  EXPECT_EQ(MmioRead(kWindow + 16), 16u);
}

TEST_F(PciBusTest, Bar_OutsideWindows_NotMapped) {
  AddFake(kWindow);
  EcamWrite(3, kBar0, 0x10000000);  // guest RAM, say
  EcamWrite(3, kCommand, kCommandMemory, 2);
  EXPECT_EQ(MmioRead(0x10000000), 0xffffffffu);
  EXPECT_EQ(bus_.stats().refused_bars, 1u);
  EXPECT_TRUE(events_.empty());
}

TEST_F(PciBusTest, Bar_OverAnotherDevicesBar_NotMapped) {
  AddFake(kWindow, 3);
  AddFake(kWindow + 0x4000, 4);
  EcamWrite(3, kCommand, kCommandMemory, 2);
  EcamWrite(4, kBar0, static_cast<uint32_t>(kWindow));  // the same range as slot 3's
  EcamWrite(4, kCommand, kCommandMemory, 2);
  EXPECT_EQ(bus_.stats().refused_bars, 1u);
  EXPECT_EQ(MmioRead(kWindow + 4), 4u) << "slot 3 keeps its range";
}

TEST_F(PciBusTest, AddRemove_SlotsReusedAndBarsUnmapped) {
  auto f = std::make_shared<FakeFunction>(kWindow);
  auto slot = bus_.AddDevice(f);
  ASSERT_TRUE(slot);
  EXPECT_EQ(*slot, 1) << "the lowest free slot";
  EXPECT_FALSE(bus_.AddDevice(std::make_shared<FakeFunction>(0), {}, 1)) << "taken";
  EXPECT_FALSE(bus_.AddDevice(std::make_shared<FakeFunction>(0), {}, 32)) << "no such slot";
  EcamWrite(1, kCommand, kCommandMemory, 2);
  EXPECT_EQ(MmioRead(kWindow), 0u);
  ASSERT_TRUE(bus_.RemoveDevice(1));
  EXPECT_EQ(MmioRead(kWindow), 0xffffffffu);
  EXPECT_EQ(EcamRead(1, 0, kVendorId), 0xffffffffu);
  EXPECT_FALSE(bus_.RemoveDevice(1));
  EXPECT_EQ(bus_.occupied_slots(), 1u);
  for (int i = 1; i < kSlots; ++i) ASSERT_TRUE(bus_.AddDevice(std::make_shared<FakeFunction>(0)));
  EXPECT_FALSE(bus_.AddDevice(std::make_shared<FakeFunction>(0))) << "all 32 slots full";
}

}  // namespace
}  // namespace kite::pci
