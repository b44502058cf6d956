// MmioTransport::RestoreState validation (BAD_INPUTS F13): a catalogue of corrupted states,
// each refused with the fresh transport left exactly as it was (and still restorable), plus
// the restore of a device that was never activated and of a broken one. The device is
// virtio-rng (one queue, no device state).
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <functional>
#include <memory>

#include "snapshot_harness.h"
#include "virtio/rng.h"

namespace kite::virtio {
namespace {

using kite::testing::FakeDriver;
using snaptest::TransportHarness;
using namespace mmio;

class TransportSnapshotTest : public ::testing::Test {
 protected:
  std::unique_ptr<TransportHarness> Fresh() {
    return std::make_unique<TransportHarness>(*CreateVirtioRng(&loop_),
                                              std::vector<FakeDriver*>{&driver_}, &loop_);
  }
  // A live rng that served one request, quiesced and saved.
  TransportState LiveState() {
    auto h = Fresh();
    EXPECT_TRUE(h->Init());
    driver_.AddChain({{driver_.Alloc(16), 16, true}});
    h->Kick(0);
    EXPECT_TRUE(h->RunUntil([&] { return driver_.PopUsed().has_value(); }));
    EXPECT_TRUE(h->transport().Quiesce());
    return *h->transport().SaveState();
  }

  asio::io_context loop_;
  FakeDriver driver_{{.queue_size = 16}};
};

struct Corruption {
  const char* name;
  std::function<void(TransportState&, const FakeDriver&)> apply;
};

class RestoreRefusedTest : public TransportSnapshotTest,
                           public ::testing::WithParamInterface<Corruption> {};

TEST_P(RestoreRefusedTest, RefusedAndTransportUnchanged) {
  TransportState good = LiveState();
  TransportState bad = good;
  GetParam().apply(bad, driver_);
  auto h = Fresh();
  TransportState before = *h->transport().SaveState();
  EXPECT_FALSE(h->transport().RestoreState(bad));
  EXPECT_TRUE(*h->transport().SaveState() == before);
  EXPECT_FALSE(h->transport().quiesced());
  Result<void> ok = h->transport().RestoreState(good);  // still fresh: the good one goes in
  EXPECT_TRUE(ok) << ok.error().message();
}

const Corruption kCorruptions[] = {
    {"SizeNotPowerOfTwo", [](TransportState& s, const FakeDriver&) { s.queues[0].size = 12; }},
    {"SizeAboveMax", [](TransportState& s, const FakeDriver&) { s.queues[0].size = 512; }},
    {"MaxSizeDiffers", [](TransportState& s, const FakeDriver&) { s.queues[0].max_size = 128; }},
    {"DescMisaligned", [](TransportState& s, const FakeDriver&) { s.queues[0].desc_addr += 8; }},
    {"UsedMisaligned", [](TransportState& s, const FakeDriver&) { s.queues[0].used_addr += 2; }},
    {"UsedOutsideRam",
     [](TransportState& s, const FakeDriver& d) { s.queues[0].used_addr = d.HoleAddr(); }},
    {"DescPastEndOfRam",
     [](TransportState& s, const FakeDriver& d) { s.queues[0].desc_addr = d.EndAddr() - 16; }},
    {"RingsOverlap",
     [](TransportState& s, const FakeDriver&) { s.queues[0].avail_addr = s.queues[0].desc_addr; }},
    {"NextAvailAheadOfNextUsed",
     [](TransportState& s, const FakeDriver&) { s.queues[0].next_avail += 1; }},
    {"IndicesDisagreeWithUsedIdxInMemory",
     [](TransportState& s, const FakeDriver&) {
       s.queues[0].next_avail += 7;
       s.queues[0].next_used += 7;
     }},
    {"NotReadyQueueWithIndices",
     [](TransportState& s, const FakeDriver&) { s.queues[0].ready = false; }},
    {"DriverFeatureNotOffered",
     [](TransportState& s, const FakeDriver&) { s.driver_features |= FeatureBit(5); }},
    {"NoVersion1", [](TransportState& s,
                      const FakeDriver&) { s.driver_features &= ~FeatureBit(kFeatureVersion1); }},
    {"DriverOkWithoutFeaturesOk",
     [](TransportState& s, const FakeDriver&) { s.status &= ~kStatusFeaturesOk; }},
    {"UnknownStatusBit", [](TransportState& s, const FakeDriver&) { s.status |= 0x10; }},
    {"NeedsResetWithoutDriverOk",
     [](TransportState& s, const FakeDriver&) {
       s.status = kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDeviceNeedsReset;
     }},
    {"ReadyQueueBeforeFeaturesOk",
     [](TransportState& s, const FakeDriver&) { s.status = kStatusAcknowledge | kStatusDriver; }},
    {"UnknownInterruptBit", [](TransportState& s, const FakeDriver&) { s.interrupt_status = 4; }},
    {"OtherDeviceType", [](TransportState& s, const FakeDriver&) { s.device_id = kDeviceIdNet; }},
    {"QueueCountDiffers", [](TransportState& s, const FakeDriver&) { s.queues.push_back({}); }},
    {"DeviceBytesMalformed", [](TransportState& s, const FakeDriver&) { s.device = {1}; }},
};

INSTANTIATE_TEST_SUITE_P(F13, RestoreRefusedTest, ::testing::ValuesIn(kCorruptions),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(TransportSnapshotTest, Restore_NeverActivated_NoActivationRingsUntouched) {
  TransportState s;
  s.device_id = kDeviceIdRng;
  s.status = kStatusAcknowledge | kStatusDriver;
  s.queue_sel = 7;                    // out of range selects nothing, as the register allows
  s.driver_features = FeatureBit(5);  // being written: checked only at FEATURES_OK
  // The driver wrote a size and addresses but never enabled the queue: nothing is checked.
  s.queues = {QueueState{.max_size = 256, .size = 3, .desc_addr = driver_.HoleAddr()}};
  auto h = Fresh();
  s.offered_features = h->transport().SaveState()->offered_features;
  Result<void> r = h->transport().RestoreState(s);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(*h->transport().SaveState() == s);
  h->transport().Resume();
  EXPECT_EQ(h->irq().pulses(), 0u);  // not live: no re-kick, no interrupt
  EXPECT_EQ(h->Read32(kStatus), s.status);
}

TEST_F(TransportSnapshotTest, Restore_Broken_StaysBrokenUntilGuestReset) {
  TransportState s = LiveState();
  s.status |= kStatusDeviceNeedsReset;
  driver_.AddChain({{driver_.Alloc(16), 16, true}});
  driver_.Publish();
  auto h = Fresh();
  ASSERT_TRUE(h->transport().RestoreState(s));
  h->transport().Resume();
  h->Kick(0);
  h->Poll();
  EXPECT_FALSE(driver_.PopUsed().has_value());  // a broken device serves nothing
  EXPECT_TRUE(h->Read32(kStatus) & kStatusDeviceNeedsReset);
  h->Write32(kStatus, 0);  // the guest resets it; then it works again
  EXPECT_EQ(h->Read32(kStatus), 0u);
}

TEST_F(TransportSnapshotTest, Restore_NotFreshTransport_Refused) {
  TransportState s = LiveState();
  auto h = Fresh();
  ASSERT_TRUE(h->Init());
  EXPECT_FALSE(h->transport().RestoreState(s));
}

TEST_F(TransportSnapshotTest, Resume_AfterRestore_KicksAndRaisesOneInterrupt) {
  TransportState s = LiveState();
  uint16_t head = driver_.AddChain({{driver_.Alloc(16), 16, true}});
  driver_.Publish();  // published before the snapshot, never kicked
  auto h = Fresh();
  ASSERT_TRUE(h->transport().RestoreState(s));
  h->Poll();
  EXPECT_FALSE(driver_.PopUsed().has_value());  // quiesced until Resume
  h->transport().Resume();
  std::optional<UsedElement> used;
  ASSERT_TRUE(h->RunUntil([&] { return (used = driver_.PopUsed()).has_value(); }));
  EXPECT_EQ(used->id, head);
  EXPECT_GE(h->irq().pulses(), 1u);
  EXPECT_EQ(h->transport().stats().resets, 0u);
}

}  // namespace
}  // namespace kite::virtio
