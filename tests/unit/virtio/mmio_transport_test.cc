// Tests of the virtio-mmio transport (src/virtio/mmio_transport.cc) against virtio 1.2
// section 4.2 and BAD_INPUTS.md G12-G14, G32, G33: a fake VirtioDevice records what the
// transport asks of it, the FakeDriver provides guest memory and rings, a FakeIrqLine counts
// interrupts and an asio::io_context polled by the test stands in for the event loop. The
// driver side follows Linux's drivers/virtio/virtio_mmio.c (32-bit register accesses, feature
// words high then low, queue setup after FEATURES_OK, read-back of the status).
#include "virtio/mmio_transport.h"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <atomic>
#include <cstring>
#include <functional>
#include <future>
#include <thread>

#include "testing/fake_irq_line.h"
#include "testing/virtio/fake_driver.h"

namespace kite::virtio {
namespace {

using namespace mmio;
using testing::FakeDriver;
using testing::FakeIrqLine;

constexpr uint64_t kDeviceBit = FeatureBit(5);  // a device-specific feature
constexpr uint64_t kOffered = FeatureBit(kFeatureVersion1) | FeatureBit(kFeatureEventIdx) |
                              FeatureBit(kFeatureIndirectDesc) | kDeviceBit;

class FakeDevice : public VirtioDevice {
 public:
  uint32_t device_id() const override { return kDeviceIdBlock; }
  uint64_t device_features() const override { return features; }
  std::vector<uint16_t> queue_max_sizes() const override { return {16, 8}; }
  void ReadConfig(uint64_t offset, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) {
      data[i] = offset + i < sizeof(config) ? config[offset + i] : 0;
    }
  }
  void WriteConfig(uint64_t offset, std::span<const uint8_t> data) override {
    config_writes.emplace_back(offset, std::vector<uint8_t>(data.begin(), data.end()));
  }
  Result<void> AcceptFeatures(uint64_t f) override {
    if (refuse_features) return Err("combination refused");
    accepted = f;
    return {};
  }
  Result<void> Activate(ActiveQueues q) override {
    ++activations;
    active = std::move(q);
    if (fail_activate) return Err("no backend");
    return {};
  }
  void ProcessQueue(uint16_t index) override {
    processed.push_back(index);
    if (on_process) on_process(index);
  }
  void Reset() override { ++resets; }
  std::string name() const override { return "fake"; }
  DeviceCounters counters() const override { return {}; }

  uint64_t features = kOffered;
  uint8_t config[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  bool refuse_features = false;
  bool fail_activate = false;
  uint64_t accepted = 0;
  int activations = 0;
  std::atomic<int> resets{0};
  ActiveQueues active;
  std::vector<uint16_t> processed;
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> config_writes;
  std::function<void(uint16_t)> on_process;
};

class MmioTransportTest : public ::testing::Test {
 protected:
  MmioTransportTest() { Make(); }

  void Make(uint64_t features = kOffered) {
    transport_.reset();
    device_ = std::make_shared<FakeDevice>();
    device_->features = features;
    dev_ = device_.get();
    transport_ = std::make_unique<MmioTransport>(device_, TransportEnv{&loop_, irq_, &mem()});
  }
  const GuestMemory& mem() { return driver_.memory(); }

  uint32_t Read32(uint64_t off) {
    uint32_t v = 0xdeadbeef;
    transport_->Read(off, {reinterpret_cast<uint8_t*>(&v), 4});
    return v;
  }
  void Write32(uint64_t off, uint32_t v) {
    transport_->Write(off, {reinterpret_cast<const uint8_t*>(&v), 4});
  }
  void AddStatus(uint32_t bit) { Write32(kStatus, (Read32(kStatus) & 0xff) | bit); }
  void Write64(uint64_t low_off, uint64_t v) {
    Write32(low_off, static_cast<uint32_t>(v));
    Write32(low_off + 4, static_cast<uint32_t>(v >> 32));
  }

  // Linux: reset, ACKNOWLEDGE, DRIVER, read both feature words, write the accepted ones.
  void NegotiateUpTo(uint64_t accept) {
    Write32(kStatus, 0);
    AddStatus(kStatusAcknowledge);
    AddStatus(kStatusDriver);
    Write32(kDeviceFeaturesSel, 1);
    uint64_t offered = uint64_t{Read32(kDeviceFeatures)} << 32;
    Write32(kDeviceFeaturesSel, 0);
    offered |= Read32(kDeviceFeatures);
    Write32(kDriverFeaturesSel, 1);
    Write32(kDriverFeatures, static_cast<uint32_t>((accept & offered) >> 32));
    Write32(kDriverFeaturesSel, 0);
    Write32(kDriverFeatures, static_cast<uint32_t>(accept & offered));
  }
  // Linux's vm_setup_vq: select, check not ready, read max, set size and the three rings.
  void SetupQueue(uint32_t index, uint32_t size, uint64_t desc, uint64_t avail, uint64_t used) {
    Write32(kQueueSel, index);
    ASSERT_EQ(Read32(kQueueReady), 0u);
    ASSERT_NE(Read32(kQueueNumMax), 0u);
    Write32(kQueueNum, size);
    Write64(kQueueDescLow, desc);
    Write64(kQueueDriverLow, avail);
    Write64(kQueueDeviceLow, used);
    Write32(kQueueReady, 1);
  }
  void SetupQueue0() {
    SetupQueue(0, 16, driver_.desc_addr(), driver_.avail_addr(), driver_.used_addr());
  }
  // The whole of 3.1.1 with queue 0 enabled.
  void InitDevice(uint64_t accept = kOffered) {
    NegotiateUpTo(accept);
    AddStatus(kStatusFeaturesOk);
    ASSERT_TRUE(Read32(kStatus) & kStatusFeaturesOk);
    SetupQueue0();
    ASSERT_EQ(Read32(kQueueReady), 1u);
    AddStatus(kStatusDriverOk);
  }
  uint64_t Errors() { return transport_->stats().protocol_errors; }
  size_t Poll() {
    loop_.restart();
    return loop_.poll();
  }
  // One chain for queue 0; the device pops it, returns it and signals.
  void CompleteOneChainOnNotify() {
    dev_->on_process = [this](uint16_t q) {
      DescriptorChain chain;
      while (dev_->active.queues[q]->Pop(&chain) == Queue::PopResult::kChain) {
        dev_->active.queues[q]->PushUsed(chain.head(), 0);
      }
      dev_->active.signal_used(q);
    };
    driver_.AddChain({{driver_.Alloc(64), 64, true}});
    driver_.Publish();
  }

  FakeDriver driver_{{.queue_size = 16}};
  asio::io_context loop_;
  std::shared_ptr<FakeIrqLine> irq_ = std::make_shared<FakeIrqLine>();
  std::shared_ptr<FakeDevice> device_;
  FakeDevice* dev_ = nullptr;
  std::unique_ptr<MmioTransport> transport_;
};

TEST_F(MmioTransportTest, Registers_IdentifyAsVersion2Device) {
  EXPECT_EQ(Read32(kMagicValue), kMagic);
  EXPECT_EQ(Read32(kVersion), 2u);
  EXPECT_EQ(Read32(kDeviceId), kDeviceIdBlock);
  EXPECT_EQ(Read32(kVendorId), kVendor);
  EXPECT_EQ(Errors(), 0u);
}

TEST_F(MmioTransportTest, DriverInit_LinuxSequence_ActivatesWithFeaturesAndQueues) {
  uint64_t accept = FeatureBit(kFeatureVersion1) | FeatureBit(kFeatureEventIdx) | kDeviceBit;
  NegotiateUpTo(accept);
  AddStatus(kStatusFeaturesOk);
  ASSERT_TRUE(Read32(kStatus) & kStatusFeaturesOk);
  SetupQueue0();
  uint64_t desc1 = driver_.Alloc(128), avail1 = driver_.Alloc(32), used1 = driver_.Alloc(128);
  SetupQueue(1, 8, desc1, avail1, used1);
  EXPECT_EQ(dev_->activations, 0);
  AddStatus(kStatusDriverOk);

  EXPECT_EQ(dev_->activations, 1);
  EXPECT_EQ(dev_->accepted, accept);
  EXPECT_EQ(dev_->active.features, accept);
  EXPECT_EQ(dev_->active.memory, &mem());
  ASSERT_EQ(dev_->active.queues.size(), 2u);
  const Queue& q1 = *dev_->active.queues[1];
  EXPECT_TRUE(dev_->active.queues[0]->ready());
  EXPECT_TRUE(q1.ready());
  EXPECT_EQ(q1.size(), 8);
  EXPECT_EQ(q1.desc_addr(), desc1);
  EXPECT_EQ(q1.avail_addr(), avail1);
  EXPECT_EQ(q1.used_addr(), used1);
  EXPECT_EQ(Read32(kStatus),
            kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_EQ(Errors(), 0u);
}

TEST_F(MmioTransportTest, DriverInit_OnlyEnabledQueuesReady) {
  InitDevice();
  EXPECT_TRUE(dev_->active.queues[0]->ready());
  EXPECT_FALSE(dev_->active.queues[1]->ready());
}

TEST_F(MmioTransportTest, DeviceFeatures_TransportBitsKiteLacksAreNotOffered) {
  Make(kOffered | FeatureBit(kFeatureRingPacked) | FeatureBit(40));
  Write32(kDeviceFeaturesSel, 1);
  EXPECT_EQ(Read32(kDeviceFeatures), 1u);  // VERSION_1 only
  Write32(kDeviceFeaturesSel, 2);
  EXPECT_EQ(Read32(kDeviceFeatures), 0u);
}

TEST_F(MmioTransportTest, DeviceFeatures_Version1AlwaysOffered) {
  Make(kDeviceBit);
  Write32(kDeviceFeaturesSel, 1);
  EXPECT_EQ(Read32(kDeviceFeatures), 1u);
  Write32(kDeviceFeaturesSel, 0);
  EXPECT_EQ(Read32(kDeviceFeatures), static_cast<uint32_t>(kDeviceBit));
}

TEST_F(MmioTransportTest, G32_FeaturesOk_UnofferedFeature_Refused) {
  NegotiateUpTo(kOffered);
  Write32(kDriverFeaturesSel, 0);
  Write32(kDriverFeatures, static_cast<uint32_t>(kOffered | FeatureBit(7)));
  AddStatus(kStatusFeaturesOk);
  EXPECT_FALSE(Read32(kStatus) & kStatusFeaturesOk);
  EXPECT_EQ(Errors(), 1u);
}

TEST_F(MmioTransportTest, G32_FeaturesOk_WithoutVersion1_Refused) {
  NegotiateUpTo(kDeviceBit);
  AddStatus(kStatusFeaturesOk);
  EXPECT_FALSE(Read32(kStatus) & kStatusFeaturesOk);
}

TEST_F(MmioTransportTest, G32_FeaturesOk_DeviceRefusesCombination_Refused) {
  dev_->refuse_features = true;
  NegotiateUpTo(kOffered);
  AddStatus(kStatusFeaturesOk);
  EXPECT_FALSE(Read32(kStatus) & kStatusFeaturesOk);
}

TEST_F(MmioTransportTest, G32_FeatureWriteAfterFeaturesOk_Ignored) {
  NegotiateUpTo(FeatureBit(kFeatureVersion1));
  AddStatus(kStatusFeaturesOk);
  Write32(kDriverFeaturesSel, 0);
  Write32(kDriverFeatures, static_cast<uint32_t>(kDeviceBit));
  SetupQueue0();
  AddStatus(kStatusDriverOk);
  EXPECT_EQ(dev_->active.features, FeatureBit(kFeatureVersion1));
  EXPECT_EQ(Errors(), 1u);
}

TEST_F(MmioTransportTest, G32_DriverOkWithoutFeaturesOk_NotActivated) {
  NegotiateUpTo(kOffered);
  AddStatus(kStatusDriverOk);
  EXPECT_EQ(dev_->activations, 0);
  EXPECT_FALSE(Read32(kStatus) & kStatusDriverOk);
  EXPECT_EQ(Errors(), 1u);
}

TEST_F(MmioTransportTest, G32_DriverOkAfterRefusedFeaturesOk_NotActivated) {
  NegotiateUpTo(kDeviceBit);  // no VERSION_1
  AddStatus(kStatusFeaturesOk);
  AddStatus(kStatusDriverOk);
  EXPECT_EQ(dev_->activations, 0);
}

TEST_F(MmioTransportTest, Status_DriverWithoutAcknowledge_Ignored) {
  Write32(kStatus, kStatusDriver);
  EXPECT_EQ(Read32(kStatus), 0u);
  EXPECT_EQ(Errors(), 1u);
}

TEST_F(MmioTransportTest, Status_ClearingABit_Ignored) {
  NegotiateUpTo(kOffered);
  Write32(kStatus, kStatusAcknowledge);
  EXPECT_EQ(Read32(kStatus), kStatusAcknowledge | kStatusDriver);
}

TEST_F(MmioTransportTest, Status_DriverCannotSetNeedsReset) {
  Write32(kStatus, kStatusAcknowledge | kStatusDeviceNeedsReset);
  EXPECT_EQ(Read32(kStatus), kStatusAcknowledge);
}

TEST_F(MmioTransportTest, Activate_Error_SetsNeedsResetAndRaisesConfigInterrupt) {
  dev_->fail_activate = true;
  InitDevice();
  EXPECT_TRUE(Read32(kStatus) & kStatusDeviceNeedsReset);
  EXPECT_EQ(Read32(kInterruptStatus), kInterruptConfigChange);
  EXPECT_EQ(irq_->pulses(), 1u);
  transport_->HandleNotify(0);
  EXPECT_TRUE(dev_->processed.empty());
}

// G13: QueueNum 0, not a power of two, above QueueNumMax, or wrapping past 16 bits.
TEST_F(MmioTransportTest, G13_BadQueueNum_QueueStaysNotReady) {
  for (uint32_t num : {0u, 12u, 32u, 0x10010u}) {
    SCOPED_TRACE(num);
    NegotiateUpTo(kOffered);
    AddStatus(kStatusFeaturesOk);
    SetupQueue(0, num, driver_.desc_addr(), driver_.avail_addr(), driver_.used_addr());
    EXPECT_EQ(Read32(kQueueReady), 0u);
  }
}

TEST_F(MmioTransportTest, G12_MisalignedDescriptorTable_QueueStaysNotReady) {
  NegotiateUpTo(kOffered);
  AddStatus(kStatusFeaturesOk);
  SetupQueue(0, 16, driver_.desc_addr() + 8, driver_.avail_addr(), driver_.used_addr());
  EXPECT_EQ(Read32(kQueueReady), 0u);
  EXPECT_EQ(Errors(), 1u);
}

TEST_F(MmioTransportTest, G12_UsedRingInMmioHole_QueueStaysNotReady) {
  NegotiateUpTo(kOffered);
  AddStatus(kStatusFeaturesOk);
  SetupQueue(0, 16, driver_.desc_addr(), driver_.avail_addr(), driver_.HoleAddr());
  EXPECT_EQ(Read32(kQueueReady), 0u);
}

TEST_F(MmioTransportTest, G12_RefusedQueue_DeviceSeesItNotReady) {
  NegotiateUpTo(kOffered);
  AddStatus(kStatusFeaturesOk);
  SetupQueue(0, 16, driver_.desc_addr(), driver_.avail_addr(), driver_.EndAddr());
  AddStatus(kStatusDriverOk);
  ASSERT_EQ(dev_->activations, 1);
  EXPECT_FALSE(dev_->active.queues[0]->ready());
}

TEST_F(MmioTransportTest, QueueReady_BeforeFeaturesOk_Refused) {
  NegotiateUpTo(kOffered);
  SetupQueue0();
  EXPECT_EQ(Read32(kQueueReady), 0u);
}

TEST_F(MmioTransportTest, QueueRegisters_WhileReady_Ignored) {
  NegotiateUpTo(kOffered);
  AddStatus(kStatusFeaturesOk);
  SetupQueue0();
  Write32(kQueueNum, 4);
  Write32(kQueueDescLow, 0x1000);
  AddStatus(kStatusDriverOk);
  EXPECT_EQ(dev_->active.queues[0]->size(), 16);
  EXPECT_EQ(dev_->active.queues[0]->desc_addr(), driver_.desc_addr());
}

TEST_F(MmioTransportTest, QueueRegisters_AfterDriverOk_Ignored) {
  InitDevice();
  Write32(kQueueSel, 1);
  Write32(kQueueNum, 8);
  Write32(kQueueReady, 1);
  EXPECT_EQ(Read32(kQueueReady), 0u);
  Write32(kQueueSel, 0);
  Write32(kQueueReady, 0);
  EXPECT_EQ(Read32(kQueueReady), 1u);
}

TEST_F(MmioTransportTest, QueueReadyZero_BeforeDriverOk_ResetsQueue) {
  NegotiateUpTo(kOffered);
  AddStatus(kStatusFeaturesOk);
  SetupQueue0();
  Write32(kQueueReady, 0);  // Linux's del_vq on a failed probe
  EXPECT_EQ(Read32(kQueueReady), 0u);
}

TEST_F(MmioTransportTest, G14_QueueSelOutOfRange_NumMaxZeroAndWritesIgnored) {
  NegotiateUpTo(kOffered);
  AddStatus(kStatusFeaturesOk);
  for (uint32_t sel : {2u, 0xffffu, 0xffffffffu}) {
    Write32(kQueueSel, sel);
    EXPECT_EQ(Read32(kQueueNumMax), 0u);
    Write32(kQueueNum, 8);
    Write32(kQueueReady, 1);
    EXPECT_EQ(Read32(kQueueReady), 0u);
  }
  Write32(kQueueSel, 0);
  EXPECT_EQ(Read32(kQueueNumMax), 16u);
  EXPECT_EQ(Read32(kQueueReady), 0u);
}

TEST_F(MmioTransportTest, G14_QueueNotifyOutOfRange_Ignored) {
  InitDevice();
  Write32(kQueueNotify, 2);
  Write32(kQueueNotify, 0xffffffff);
  EXPECT_EQ(Poll(), 0u);
  transport_->HandleNotify(0xffff);
  EXPECT_TRUE(dev_->processed.empty());
  EXPECT_EQ(Errors(), 3u);
}

TEST_F(MmioTransportTest, QueueNotify_PostedToLoop) {
  InitDevice();
  Write32(kQueueNotify, 0);
  EXPECT_TRUE(dev_->processed.empty());  // not on the vCPU thread
  EXPECT_EQ(Poll(), 1u);
  EXPECT_EQ(dev_->processed, std::vector<uint16_t>{0});
  EXPECT_EQ(transport_->stats().notifications, 1u);
}

TEST_F(MmioTransportTest, HandleNotify_BeforeDriverOk_Ignored) {
  NegotiateUpTo(kOffered);
  AddStatus(kStatusFeaturesOk);
  SetupQueue0();
  transport_->HandleNotify(0);
  EXPECT_TRUE(dev_->processed.empty());
}

TEST_F(MmioTransportTest, HandleNotify_QueueNotEnabled_Ignored) {
  InitDevice();
  transport_->HandleNotify(1);
  EXPECT_TRUE(dev_->processed.empty());
  EXPECT_EQ(transport_->stats().notifications, 0u);
}

TEST_F(MmioTransportTest, SignalUsed_DriverWantsInterrupt_SetsBitAndPulses) {
  InitDevice(FeatureBit(kFeatureVersion1));
  CompleteOneChainOnNotify();
  transport_->HandleNotify(0);
  ASSERT_TRUE(driver_.PopUsed().has_value());
  EXPECT_EQ(Read32(kInterruptStatus), kInterruptUsedBuffer);
  EXPECT_EQ(irq_->pulses(), 1u);
  EXPECT_EQ(transport_->stats().interrupts, 1u);
}

TEST_F(MmioTransportTest, SignalUsed_NoInterruptFlag_NoPulse) {
  InitDevice(FeatureBit(kFeatureVersion1));
  driver_.SetAvailFlags(kAvailFlagNoInterrupt);
  CompleteOneChainOnNotify();
  transport_->HandleNotify(0);
  ASSERT_TRUE(driver_.PopUsed().has_value());
  EXPECT_EQ(Read32(kInterruptStatus), 0u);
  EXPECT_EQ(irq_->pulses(), 0u);
}

TEST_F(MmioTransportTest, InterruptAck_ClearsOnlyAcknowledgedBits) {
  InitDevice(FeatureBit(kFeatureVersion1));
  CompleteOneChainOnNotify();
  transport_->HandleNotify(0);
  transport_->NotifyConfigChanged();
  ASSERT_EQ(Read32(kInterruptStatus), kInterruptUsedBuffer | kInterruptConfigChange);
  Write32(kInterruptAck, kInterruptUsedBuffer);
  EXPECT_EQ(Read32(kInterruptStatus), kInterruptConfigChange);
  Write32(kInterruptAck, kInterruptConfigChange);
  EXPECT_EQ(Read32(kInterruptStatus), 0u);
}

TEST_F(MmioTransportTest, MarkBroken_NeedsResetConfigInterruptAndNoMoreProcessing) {
  InitDevice();
  dev_->active.mark_broken("bad ring");
  EXPECT_TRUE(Read32(kStatus) & kStatusDeviceNeedsReset);
  EXPECT_EQ(Read32(kInterruptStatus), kInterruptConfigChange);
  EXPECT_EQ(irq_->pulses(), 1u);
  transport_->HandleNotify(0);
  EXPECT_TRUE(dev_->processed.empty());
}

TEST_F(MmioTransportTest, MarkBroken_FromProcessQueue_StopsLaterNotifications) {
  InitDevice();
  dev_->on_process = [this](uint16_t) { dev_->active.mark_broken("malformed"); };
  transport_->HandleNotify(0);
  transport_->HandleNotify(0);
  EXPECT_EQ(dev_->processed.size(), 1u);
  EXPECT_EQ(irq_->pulses(), 1u);
}

TEST_F(MmioTransportTest, MarkBroken_ThenReset_DeviceWorksAgain) {
  InitDevice();
  dev_->active.mark_broken("bad ring");
  InitDevice();
  EXPECT_EQ(dev_->activations, 2);
  EXPECT_FALSE(Read32(kStatus) & kStatusDeviceNeedsReset);
  transport_->HandleNotify(0);
  EXPECT_EQ(dev_->processed.size(), 1u);
}

TEST_F(MmioTransportTest, Callbacks_FromBeforeReset_DoNothing) {
  InitDevice();
  ActiveQueues stale = dev_->active;
  InitDevice();
  stale.mark_broken("late");
  stale.signal_used(0);
  EXPECT_FALSE(Read32(kStatus) & kStatusDeviceNeedsReset);
  EXPECT_EQ(irq_->pulses(), 0u);
}

TEST_F(MmioTransportTest, Config_AllWidths_ForwardedToDevice) {
  for (size_t width : {1, 2, 4, 8}) {
    uint8_t buf[8] = {};
    transport_->Read(kConfig + 3, {buf, width});
    for (size_t i = 0; i < width; ++i) EXPECT_EQ(buf[i], dev_->config[3 + i]) << width;
  }
  uint8_t value[2] = {0xaa, 0xbb};
  transport_->Write(kConfig + 6, value);
  ASSERT_EQ(dev_->config_writes.size(), 1u);
  EXPECT_EQ(dev_->config_writes[0].first, 6u);
  EXPECT_EQ(dev_->config_writes[0].second, (std::vector<uint8_t>{0xaa, 0xbb}));
}

TEST_F(MmioTransportTest, Config_OddWidth_ReadsZeroWriteDropped) {
  uint8_t buf[3] = {0xff, 0xff, 0xff};
  transport_->Read(kConfig, buf);
  EXPECT_EQ(buf[0] | buf[1] | buf[2], 0);
  transport_->Write(kConfig, buf);
  EXPECT_TRUE(dev_->config_writes.empty());
  EXPECT_EQ(Errors(), 2u);
}

TEST_F(MmioTransportTest, ConfigGeneration_DeviceChange_BumpsAndInterruptsOnceLive) {
  uint32_t before = Read32(kConfigGeneration);
  transport_->NotifyConfigChanged();
  EXPECT_EQ(Read32(kConfigGeneration), before + 1);
  EXPECT_EQ(irq_->pulses(), 0u);  // no driver yet
  InitDevice();
  uint32_t live = Read32(kConfigGeneration);
  transport_->NotifyConfigChanged();
  EXPECT_EQ(Read32(kConfigGeneration), live + 1);
  EXPECT_EQ(Read32(kInterruptStatus), kInterruptConfigChange);
  EXPECT_EQ(irq_->pulses(), 1u);
}

TEST_F(MmioTransportTest, Reset_ClearsEverything) {
  InitDevice();
  transport_->NotifyConfigChanged();
  uint32_t generation = Read32(kConfigGeneration);
  int resets_before = dev_->resets;
  Write32(kStatus, 0);
  EXPECT_EQ(dev_->resets, resets_before + 1);
  EXPECT_EQ(Read32(kStatus), 0u);
  EXPECT_EQ(Read32(kInterruptStatus), 0u);
  EXPECT_EQ(Read32(kConfigGeneration), generation + 1);
  const Queue& q0 = *dev_->active.queues[0];
  EXPECT_FALSE(q0.ready());
  EXPECT_EQ(q0.desc_addr(), 0u);
  EXPECT_EQ(q0.size(), q0.max_size());
  EXPECT_GE(transport_->stats().resets, 1u);
  // Features start over: FEATURES_OK with nothing written is refused (no VERSION_1).
  AddStatus(kStatusAcknowledge);
  AddStatus(kStatusDriver);
  AddStatus(kStatusFeaturesOk);
  EXPECT_FALSE(Read32(kStatus) & kStatusFeaturesOk);
}

TEST_F(MmioTransportTest, G33_ResetWithPostedNotify_DeviceNotCalledAfterReset) {
  InitDevice();
  Write32(kQueueNotify, 0);
  Write32(kStatus, 0);
  Poll();
  EXPECT_TRUE(dev_->processed.empty());
}

// G33: a reset from a vCPU waits for a ProcessQueue running on the loop thread.
TEST_F(MmioTransportTest, G33_ResetDuringProcessQueue_WaitsForIt) {
  InitDevice();
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> resets_seen_inside{-1};
  dev_->on_process = [&](uint16_t) {
    entered.set_value();
    released.wait();
    resets_seen_inside = dev_->resets.load();
  };
  int resets_before = dev_->resets;
  std::thread loop_thread([&] { transport_->HandleNotify(0); });
  entered.get_future().wait();
  std::thread vcpu([&] { Write32(kStatus, 0); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(dev_->resets, resets_before);  // still waiting
  release.set_value();
  vcpu.join();
  loop_thread.join();
  EXPECT_EQ(resets_seen_inside, resets_before);
  EXPECT_EQ(dev_->resets, resets_before + 1);
}

TEST_F(MmioTransportTest, Registers_WrongWidthOrAlignment_ReadZeroWriteDropped) {
  uint8_t two[2] = {0xff, 0xff};
  transport_->Read(kMagicValue, two);
  EXPECT_EQ(two[0] | two[1], 0);
  uint8_t eight[8];
  std::memset(eight, 0xff, sizeof(eight));
  transport_->Read(kMagicValue, eight);
  EXPECT_EQ(eight[0] | eight[7], 0);
  uint8_t ack = kStatusAcknowledge;
  transport_->Write(kStatus, {&ack, 1});
  uint32_t status_word = kStatusAcknowledge;
  transport_->Write(kStatus + 2, {reinterpret_cast<uint8_t*>(&status_word), 4});
  EXPECT_EQ(Read32(kStatus), 0u);
  EXPECT_EQ(Errors(), 4u);
}

TEST_F(MmioTransportTest, Registers_WriteOnly_ReadZero) {
  Write32(kDriverFeatures, 0x1234);
  Write32(kQueueSel, 1);
  for (uint64_t off : {kDeviceFeaturesSel, kDriverFeatures, kDriverFeaturesSel, kQueueSel,
                       kQueueNum, kQueueNotify, kInterruptAck, kQueueDescLow, kShmSel}) {
    EXPECT_EQ(Read32(off), 0u) << off;
  }
}

TEST_F(MmioTransportTest, Registers_ReadOnly_IgnoreWrites) {
  for (uint64_t off : {kMagicValue, kVersion, kDeviceId, kVendorId, kDeviceFeatures, kQueueNumMax,
                       kInterruptStatus, kConfigGeneration}) {
    Write32(off, 0);
  }
  EXPECT_EQ(Read32(kMagicValue), kMagic);
  EXPECT_EQ(Read32(kVersion), 2u);
  EXPECT_EQ(Read32(kDeviceId), kDeviceIdBlock);
  EXPECT_EQ(Read32(kDeviceFeatures), static_cast<uint32_t>(kOffered));
  EXPECT_EQ(Read32(kQueueNumMax), 16u);
  EXPECT_EQ(Errors(), 8u);
}

TEST_F(MmioTransportTest, SharedMemory_NoRegion_LengthAllOnes) {
  Write32(kShmSel, 0);
  EXPECT_EQ(Read32(kShmLenLow), 0xffffffffu);
  EXPECT_EQ(Read32(kShmLenHigh), 0xffffffffu);
}

TEST_F(MmioTransportTest, QueueReset_NotOffered_ReadsZeroWriteIgnored) {
  InitDevice();
  Write32(kQueueReset, 1);
  EXPECT_EQ(Read32(kQueueReset), 0u);
  EXPECT_EQ(Read32(kQueueReady), 1u);
}

TEST_F(MmioTransportTest, Shutdown_ResetsOnceAndRefusesLaterWrites) {
  InitDevice();
  int resets_before = dev_->resets;
  transport_->Shutdown();
  transport_->Shutdown();
  EXPECT_EQ(dev_->resets, resets_before + 1);
  Write32(kStatus, kStatusAcknowledge);
  EXPECT_EQ(Read32(kStatus), 0u);
  transport_.reset();  // the destructor does not reset a second time
  EXPECT_EQ(dev_->resets, resets_before + 1);
}

}  // namespace
}  // namespace kite::virtio
