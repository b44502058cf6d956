// Bus: dispatch by offset, range checks, unclaimed accesses (BAD_INPUTS.md G31).
#include "devices/bus.h"

#include <gtest/gtest.h>

#include <vector>

namespace kite {
namespace {

// Records every access; reads return the offset's low byte in every byte.
class RecordingDevice : public BusDevice {
 public:
  struct Access {
    bool write;
    uint64_t offset;
    size_t size;
    std::vector<uint8_t> data;
  };
  void Read(uint64_t offset, std::span<uint8_t> data) override {
    for (auto& b : data) b = static_cast<uint8_t>(offset);
    accesses.push_back({false, offset, data.size(), {}});
  }
  void Write(uint64_t offset, std::span<const uint8_t> data) override {
    accesses.push_back({true, offset, data.size(), {data.begin(), data.end()}});
  }
  std::vector<Access> accesses;
};

TEST(BusTest, Read_InsideRange_DispatchedWithOffset) {
  Bus bus("pio");
  auto device = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.Register(0x3f8, 8, device));
  uint8_t byte = 0;
  EXPECT_TRUE(bus.Read(0x3fd, std::span(&byte, 1)));
  ASSERT_EQ(device->accesses.size(), 1u);
  EXPECT_EQ(device->accesses[0].offset, 5u);
  EXPECT_EQ(byte, 5);
}

TEST(BusTest, Write_InsideRange_DispatchedWithOffsetAndData) {
  Bus bus("mmio");
  auto device = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.Register(0xd0000000, 0x1000, device));
  uint8_t data[4] = {1, 2, 3, 4};
  EXPECT_TRUE(bus.Write(0xd0000070, data));
  ASSERT_EQ(device->accesses.size(), 1u);
  EXPECT_TRUE(device->accesses[0].write);
  EXPECT_EQ(device->accesses[0].offset, 0x70u);
  EXPECT_EQ(device->accesses[0].data, std::vector<uint8_t>({1, 2, 3, 4}));
}

TEST(BusTest, Dispatch_TwoDevices_EachGetsItsOwnRange) {
  Bus bus("pio");
  auto a = std::make_shared<RecordingDevice>();
  auto b = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.Register(0x60, 5, a));
  ASSERT_TRUE(bus.Register(0x70, 2, b));
  uint8_t byte = 0;
  EXPECT_TRUE(bus.Read(0x64, std::span(&byte, 1)));
  EXPECT_TRUE(bus.Read(0x71, std::span(&byte, 1)));
  ASSERT_EQ(a->accesses.size(), 1u);
  ASSERT_EQ(b->accesses.size(), 1u);
  EXPECT_EQ(a->accesses[0].offset, 4u);
  EXPECT_EQ(b->accesses[0].offset, 1u);
}

TEST(BusTest, Register_Overlap_Refused) {
  Bus bus("pio");
  ASSERT_TRUE(bus.Register(0x100, 0x10, std::make_shared<RecordingDevice>()));
  EXPECT_FALSE(bus.Register(0x10f, 1, std::make_shared<RecordingDevice>()));
  EXPECT_FALSE(bus.Register(0xf8, 0x9, std::make_shared<RecordingDevice>()));
  EXPECT_FALSE(bus.Register(0x0, 0x1000, std::make_shared<RecordingDevice>()));
  EXPECT_TRUE(bus.Register(0x110, 1, std::make_shared<RecordingDevice>()));
  EXPECT_TRUE(bus.Register(0xf0, 0x10, std::make_shared<RecordingDevice>()));
}

TEST(BusTest, Register_EmptyOrWrappingRange_Refused) {
  Bus bus("mmio");
  EXPECT_FALSE(bus.Register(0x1000, 0, std::make_shared<RecordingDevice>()));
  EXPECT_FALSE(bus.Register(~0ull - 1, 4, std::make_shared<RecordingDevice>()));
}

TEST(BusTest, G31_StraddlingAccess_Unclaimed) {
  Bus bus("pio");
  auto device = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.Register(0x3f8, 8, device));
  uint8_t data[4] = {0, 0, 0, 0};
  EXPECT_FALSE(bus.Read(0x3fe, data));  // 0x3fe..0x401 crosses the end
  EXPECT_FALSE(bus.Read(0x3f6, data));  // starts before the range
  EXPECT_FALSE(bus.Write(0x3ff, std::span<const uint8_t>(data, 2)));
  EXPECT_TRUE(device->accesses.empty());
  EXPECT_EQ(bus.stats().unclaimed_reads, 2u);
  EXPECT_EQ(bus.stats().unclaimed_writes, 1u);
}

TEST(BusTest, G31_UnclaimedRead_AllOnesAndCounted) {
  Bus bus("pio");
  for (size_t size : {1u, 2u, 4u, 8u}) {
    std::vector<uint8_t> data(size, 0x12);
    EXPECT_FALSE(bus.Read(0x80, data));
    EXPECT_EQ(data, std::vector<uint8_t>(size, 0xff)) << size;
  }
  EXPECT_EQ(bus.stats().unclaimed_reads, 4u);
}

TEST(BusTest, G31_UnclaimedWrite_DroppedAndCounted) {
  Bus bus("mmio");
  uint8_t data[8] = {};
  EXPECT_FALSE(bus.Write(0xfeedf000, data));
  EXPECT_FALSE(bus.Write(0xfeedf000, std::span<const uint8_t>(data, 1)));
  EXPECT_EQ(bus.stats().unclaimed_writes, 2u);
  EXPECT_EQ(bus.stats().unclaimed_reads, 0u);
}

TEST(BusTest, Unregister_RangeBecomesUnclaimed) {
  Bus bus("mmio");
  auto device = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.Register(0x1000, 0x100, device));
  EXPECT_TRUE(bus.Unregister(0x1000));
  uint8_t byte = 0;
  EXPECT_FALSE(bus.Read(0x1000, std::span(&byte, 1)));
  EXPECT_TRUE(device->accesses.empty());
  // The range can be claimed again.
  EXPECT_TRUE(bus.Register(0x1000, 0x100, device));
}

TEST(BusTest, Unregister_UnknownBase_ReturnsFalse) {
  Bus bus("mmio");
  ASSERT_TRUE(bus.Register(0x1000, 0x100, std::make_shared<RecordingDevice>()));
  EXPECT_FALSE(bus.Unregister(0x1004));
  EXPECT_FALSE(bus.Unregister(0x2000));
}

TEST(BusTest, AccessSizes_AllPassedThrough) {
  Bus bus("mmio");
  auto device = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.Register(0x0, 0x100, device));
  for (size_t size : {1u, 2u, 4u, 8u}) {
    std::vector<uint8_t> data(size);
    EXPECT_TRUE(bus.Read(0x10, data));
    EXPECT_TRUE(bus.Write(0x20, data));
  }
  ASSERT_EQ(device->accesses.size(), 8u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(device->accesses[2 * i].size, size_t{1} << i);
    EXPECT_EQ(device->accesses[2 * i + 1].size, size_t{1} << i);
  }
}

TEST(BusTest, Access_LastByteOfRange_Claimed) {
  Bus bus("pio");
  auto device = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.Register(0xfff8, 8, device));
  uint8_t data[2] = {};
  EXPECT_TRUE(bus.Read(0xfffe, data));
  EXPECT_TRUE(bus.Read(0xffff, std::span(data, 1)));
  EXPECT_EQ(device->accesses.size(), 2u);
}

}  // namespace
}  // namespace kite
