// BootMarker: marks recorded with their time, reads zero, bounded history.
#include "devices/boot_marker.h"

#include <gtest/gtest.h>

namespace kite {
namespace {

using namespace std::chrono_literals;

TEST(BootMarkerTest, Write_RecordsValueAndTimeSinceStart) {
  auto start = BootMarker::Clock::now() - 250ms;
  BootMarker marker(start);
  uint8_t value = 7;
  marker.Write(0, std::span<const uint8_t>(&value, 1));
  auto marks = marker.marks();
  ASSERT_EQ(marks.size(), 1u);
  EXPECT_EQ(marks[0].value, 7);
  EXPECT_GE(marks[0].since_start, 250ms);
  EXPECT_LT(marks[0].since_start, 10s);
}

TEST(BootMarkerTest, Read_ReturnsZero) {
  BootMarker marker(BootMarker::Clock::now());
  uint8_t data[4] = {0xff, 0xff, 0xff, 0xff};
  marker.Read(0, data);
  EXPECT_EQ(data[0] | data[1] | data[2] | data[3], 0);
}

TEST(BootMarkerTest, WideWrite_LowByteCounts) {
  BootMarker marker(BootMarker::Clock::now());
  uint8_t data[4] = {0x34, 0x12, 0, 0};
  marker.Write(0, data);
  EXPECT_EQ(marker.marks().at(0).value, 0x34);
}

TEST(BootMarkerTest, Callback_SeesEveryMark) {
  int calls = 0;
  uint8_t last = 0;
  BootMarker marker(BootMarker::Clock::now(), [&](const BootMark& m) {
    ++calls;
    last = m.value;
  });
  for (uint8_t v : {1, 2, 3}) marker.Write(0, std::span<const uint8_t>(&v, 1));
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(last, 3);
}

TEST(BootMarkerTest, Flood_HistoryBoundedTotalCounted) {
  BootMarker marker(BootMarker::Clock::now());
  uint8_t v = 1;
  for (int i = 0; i < 10000; ++i) marker.Write(0, std::span<const uint8_t>(&v, 1));
  EXPECT_EQ(marker.marks().size(), BootMarker::kMaxMarkers);
  EXPECT_EQ(marker.total_marks(), 10000u);
}

}  // namespace
}  // namespace kite
