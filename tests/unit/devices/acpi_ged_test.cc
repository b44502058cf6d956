// AcpiGed: the Generic Event Device's latched event selector and its interrupt.
#include "devices/acpi_ged.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "testing/fake_irq_line.h"

namespace kite {
namespace {

class AcpiGedTest : public ::testing::Test {
 protected:
  uint32_t Read32(uint64_t offset) {
    uint8_t data[4] = {};
    ged_.Read(offset, data);
    return data[0] | (data[1] << 8) | (data[2] << 16) | (uint32_t{data[3]} << 24);
  }
  uint32_t ReadSelector() { return Read32(kGedEventSelectorOffset); }
  void Write32(uint64_t offset, uint32_t value) {
    const uint8_t data[4] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8),
                             static_cast<uint8_t>(value >> 16), static_cast<uint8_t>(value >> 24)};
    ged_.Write(offset, data);
  }

  std::shared_ptr<testing::FakeIrqLine> irq_ = std::make_shared<testing::FakeIrqLine>();
  std::vector<uint32_t> ejected_;
  AcpiGed ged_{irq_, [this](uint32_t slot) { ejected_.push_back(slot); }};
};

TEST_F(AcpiGedTest, Trigger_LatchesBitsAndPulsesOnce) {
  ged_.Trigger(kGedEventPowerButton);
  EXPECT_EQ(irq_->pulses(), 1u);
  EXPECT_EQ(irq_->set_level_calls(), 0u);  // edge: a pulse, never a held level
  EXPECT_EQ(ReadSelector(), kGedEventPowerButton);
}

TEST_F(AcpiGedTest, Read_ClearsLatchedBits) {
  ged_.Trigger(kGedEventPowerButton);
  EXPECT_EQ(ReadSelector(), kGedEventPowerButton);
  EXPECT_EQ(ReadSelector(), 0u);
}

TEST_F(AcpiGedTest, Trigger_TwiceBeforeRead_BitsAccumulate) {
  ged_.Trigger(1u << 0);
  ged_.Trigger(1u << 3);
  EXPECT_EQ(irq_->pulses(), 2u);
  EXPECT_EQ(ReadSelector(), 0x9u);
}

TEST_F(AcpiGedTest, Trigger_ZeroMask_NoInterrupt) {
  ged_.Trigger(0);
  EXPECT_EQ(irq_->pulses(), 0u);
  EXPECT_EQ(ReadSelector(), 0u);
}

TEST_F(AcpiGedTest, NarrowRead_ClearsOnlyItsBytes) {
  ged_.Trigger(0x0101);
  uint8_t low = 0;
  ged_.Read(kGedEventSelectorOffset, std::span<uint8_t>(&low, 1));
  EXPECT_EQ(low, 0x01);
  EXPECT_EQ(ReadSelector(), 0x0100u);
}

TEST_F(AcpiGedTest, G31_UnknownOffset_ReadsZeroAndKeepsEvents) {
  ged_.Trigger(kGedEventPowerButton);
  uint8_t data[4] = {0xff, 0xff, 0xff, 0xff};
  ged_.Read(0x10, data);
  EXPECT_EQ(data[0] | data[1] | data[2] | data[3], 0);
  uint8_t straddle[4] = {0xff, 0xff, 0xff, 0xff};
  ged_.Read(2, straddle);  // runs past the 4-byte register
  EXPECT_EQ(straddle[0] | straddle[1], 0);
  EXPECT_EQ(ged_.stats().unknown_accesses, 2u);
  EXPECT_EQ(ReadSelector(), kGedEventPowerButton);
}

TEST_F(AcpiGedTest, G31_WriteToEventSelector_Dropped) {
  ged_.Trigger(kGedEventPowerButton);
  const uint8_t zeros[4] = {};
  ged_.Write(kGedEventSelectorOffset, zeros);
  EXPECT_EQ(ReadSelector(), kGedEventPowerButton);
  EXPECT_EQ(ged_.stats().unknown_accesses, 1u);
}

TEST_F(AcpiGedTest, State_RoundTripsEventsAndSlots) {
  ged_.Trigger(kGedEventPowerButton);
  ASSERT_TRUE(ged_.SetSlotPresent(4, true));
  ASSERT_TRUE(ged_.RequestSlotEject(6));
  AcpiGed::State state = ged_.GetState();
  AcpiGed restored(irq_);
  restored.SetState(state);
  auto read = [&](uint64_t offset) {
    uint8_t d[4] = {};
    restored.Read(offset, d);
    return d[0] | (d[1] << 8) | (d[2] << 16) | (uint32_t{d[3]} << 24);
  };
  EXPECT_EQ(read(kGedEventSelectorOffset), kGedEventPowerButton | kGedEventSlots);
  EXPECT_EQ(read(kGedSlotPresentOffset), 1u << 4);
  EXPECT_EQ(read(kGedSlotCheckOffset), 1u << 4);
  EXPECT_EQ(read(kGedSlotEjectRequestOffset), 1u << 6);
  EXPECT_EQ(irq_->pulses(), 3u);  // restoring does not re-send the interrupt
}

TEST_F(AcpiGedTest, SetSlotPresent_SetsPresenceAndCheckBitAndRaisesSlotEvent) {
  ASSERT_TRUE(ged_.SetSlotPresent(3, true));
  EXPECT_EQ(irq_->pulses(), 1u);
  EXPECT_EQ(ReadSelector(), kGedEventSlots);
  EXPECT_EQ(Read32(kGedSlotPresentOffset), 1u << 3);
  EXPECT_EQ(Read32(kGedSlotCheckOffset), 1u << 3);
  EXPECT_EQ(Read32(kGedSlotCheckOffset), 0u) << "read-to-clear";
  EXPECT_EQ(Read32(kGedSlotPresentOffset), 1u << 3) << "presence is not cleared by reads";
}

TEST_F(AcpiGedTest, SetSlotPresent_False_ClearsPresenceAndAsksForACheck) {
  ASSERT_TRUE(ged_.SetSlotPresent(0, true));
  ASSERT_TRUE(ged_.SetSlotPresent(1, true));
  Read32(kGedSlotCheckOffset);
  ASSERT_TRUE(ged_.SetSlotPresent(0, false));
  EXPECT_EQ(Read32(kGedSlotPresentOffset), 1u << 1);
  EXPECT_EQ(Read32(kGedSlotCheckOffset), 1u << 0);
}

TEST_F(AcpiGedTest, Slot_OutOfRange_Refused) {
  EXPECT_FALSE(ged_.SetSlotPresent(kGedMaxSlots, true));
  EXPECT_FALSE(ged_.RequestSlotEject(kGedMaxSlots));
  EXPECT_EQ(irq_->pulses(), 0u);
  EXPECT_EQ(Read32(kGedSlotPresentOffset), 0u);
}

TEST_F(AcpiGedTest, RequestSlotEject_LatchesRequestAndRaisesSlotEvent) {
  ASSERT_TRUE(ged_.SetSlotPresent(5, true));
  ASSERT_TRUE(ged_.RequestSlotEject(5));
  EXPECT_EQ(irq_->pulses(), 2u);
  EXPECT_EQ(Read32(kGedSlotEjectRequestOffset), 1u << 5);
  EXPECT_EQ(Read32(kGedSlotEjectRequestOffset), 0u);
  EXPECT_EQ(Read32(kGedSlotPresentOffset), 1u << 5) << "still present until the guest ejects";
  EXPECT_TRUE(ejected_.empty());
}

TEST_F(AcpiGedTest, EjectWrite_EmptiesSlotAndTellsTheVmm) {
  ASSERT_TRUE(ged_.SetSlotPresent(5, true));
  Write32(kGedSlotEjectOffset, 5);
  EXPECT_EQ(ejected_, std::vector<uint32_t>{5});
  EXPECT_EQ(Read32(kGedSlotPresentOffset), 0u);
  EXPECT_EQ(ged_.stats().slot_ejects, 1u);
}

TEST_F(AcpiGedTest, EjectWrite_SlotOutOfRange_Dropped) {
  Write32(kGedSlotEjectOffset, kGedMaxSlots);
  Write32(kGedSlotEjectOffset, 0xffffffff);
  EXPECT_TRUE(ejected_.empty());
  EXPECT_EQ(ged_.stats().unknown_accesses, 2u);
}

TEST_F(AcpiGedTest, EjectRegister_ReadsZero) {
  ASSERT_TRUE(ged_.SetSlotPresent(2, true));
  EXPECT_EQ(Read32(kGedSlotEjectOffset), 0u);
}

TEST_F(AcpiGedTest, WriteToReadOnlyRegisters_Dropped) {
  ASSERT_TRUE(ged_.SetSlotPresent(2, true));
  Write32(kGedSlotPresentOffset, 0);
  Write32(kGedSlotCheckOffset, 0);
  EXPECT_EQ(Read32(kGedSlotPresentOffset), 1u << 2);
  EXPECT_EQ(Read32(kGedSlotCheckOffset), 1u << 2);
  EXPECT_TRUE(ejected_.empty());
}

TEST_F(AcpiGedTest, ConcurrentTriggerAndRead_EachEventSeenExactlyOnce) {
  for (int round = 0; round < 20; ++round) {
    std::thread producer([&] {
      for (int bit = 0; bit < 32; ++bit) ged_.Trigger(1u << bit);
    });
    uint32_t seen = 0;
    bool duplicate = false;
    auto collect = [&] {
      uint32_t v = ReadSelector();
      duplicate |= (seen & v) != 0;
      seen |= v;
    };
    while (seen != 0xffffffffu && !duplicate) {
      // Every pulse follows its latch: once all pulses are counted, one more read drains all.
      bool producer_done = irq_->pulses() == 32u * (round + 1);
      collect();
      if (producer_done) break;
    }
    producer.join();
    ASSERT_FALSE(duplicate) << "round " << round;
    ASSERT_EQ(seen, 0xffffffffu) << "round " << round;
  }
}

}  // namespace
}  // namespace kite
