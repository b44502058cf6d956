// Tests of the virtio-pci modern transport (src/virtio/pci_transport*.cc) against virtio 1.2
// section 4.1 and BAD_INPUTS.md G12-G14, G32, G33, mirroring mmio_transport_test.cc: a fake
// VirtioDevice, the FakeDriver's memory and rings, a recording MSI sink for the vectors and a
// polled asio::io_context as the event loop. The driver side follows Linux's
// drivers/virtio/virtio_pci_modern{,_dev}.c: capabilities found through configuration space,
// natural-width accesses to common configuration, MSI-X vectors chosen per queue.
#include "virtio/pci_transport.h"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <cstring>
#include <map>

#include "devices/pci/pci_config.h"
#include "testing/virtio/fake_driver.h"
#include "virtio/virtio_spec.h"

namespace kite::virtio {
namespace {

using namespace virtio_pci;
using testing::FakeDriver;

constexpr uint64_t kBarAddress = 0xe8000000;
constexpr uint64_t kDeviceBit = FeatureBit(5);
constexpr uint64_t kOffered = FeatureBit(kFeatureVersion1) | FeatureBit(kFeatureEventIdx) |
                              FeatureBit(kFeatureIndirectDesc) | kDeviceBit;

class FakeDevice : public VirtioDevice {
 public:
  uint32_t device_id() const override { return kDeviceIdBlock; }
  uint64_t device_features() const override { return kOffered; }
  std::vector<uint16_t> queue_max_sizes() const override { return {16, 8}; }
  void ReadConfig(uint64_t offset, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i)
      data[i] = offset + i < 16 ? uint8_t(offset + i + 1) : 0;
  }
  void WriteConfig(uint64_t offset, std::span<const uint8_t> data) override {
    config_writes.emplace_back(offset, data.size());
  }
  Result<void> Activate(ActiveQueues q) override {
    ++activations;
    active = std::move(q);
    return {};
  }
  void ProcessQueue(uint16_t index) override {
    processed.push_back(index);
    DescriptorChain chain;
    while (active.queues[index]->Pop(&chain) == Queue::PopResult::kChain) {
      active.queues[index]->PushUsed(chain.head(), 0);
    }
    active.signal_used(index);
  }
  void Reset() override { ++resets; }
  std::string name() const override { return "fake"; }
  DeviceCounters counters() const override { return {}; }

  int activations = 0;
  int resets = 0;
  ActiveQueues active;
  std::vector<uint16_t> processed;
  std::vector<std::pair<uint64_t, size_t>> config_writes;
};

class RecordingSink : public pci::MsiSink {
 public:
  void Route(uint16_t vector, const pci::MsiMessage& m) override { routes[vector] = m; }
  void Signal(uint16_t vector) override { signals.push_back(vector); }
  std::map<uint16_t, pci::MsiMessage> routes;
  std::vector<uint16_t> signals;
};

class PciTransportTest : public ::testing::Test {
 protected:
  PciTransportTest() { Make(); }
  void Make() {
    transport_.reset();
    device_ = std::make_shared<FakeDevice>();
    sink_ = std::make_shared<RecordingSink>();
    transport_ = std::make_unique<PciTransport>(
        device_, TransportEnv{&loop_, nullptr, &driver_.memory()}, kBarAddress, sink_);
  }

  template <typename T>
  T Bar(uint64_t offset) {
    T v{};
    transport_->BarRead(0, offset, {reinterpret_cast<uint8_t*>(&v), sizeof(T)});
    return v;
  }
  template <typename T>
  void SetBar(uint64_t offset, T v) {
    transport_->BarWrite(0, offset, {reinterpret_cast<const uint8_t*>(&v), sizeof(T)});
  }
  uint32_t Config(uint16_t offset, size_t size = 4) {
    uint32_t v = 0;
    transport_->ConfigRead(offset, {reinterpret_cast<uint8_t*>(&v), size});
    return v;
  }
  void SetConfig(uint16_t offset, uint32_t v, size_t size = 4) {
    transport_->ConfigWrite(offset, {reinterpret_cast<const uint8_t*>(&v), size});
  }
  uint8_t Status() { return Bar<uint8_t>(kDeviceStatus); }
  void AddStatus(uint8_t bit) { SetBar<uint8_t>(kDeviceStatus, Status() | bit); }
  uint64_t Errors() { return transport_->stats().protocol_errors; }
  size_t Poll() {
    loop_.restart();
    return loop_.poll();
  }
  // The virtio capability of `type`: its config-space offset (0: none).
  uint8_t FindCap(uint8_t type) {
    for (uint8_t at = Config(pci::kCapabilitiesPointer, 1); at != 0; at = Config(at + 1, 1)) {
      if (Config(at, 1) == pci::kCapIdVendor && Config(at + 3, 1) == type) return at;
    }
    return 0;
  }
  uint8_t MsixCap() {
    for (uint8_t at = Config(pci::kCapabilitiesPointer, 1); at != 0; at = Config(at + 1, 1)) {
      if (Config(at, 1) == pci::kCapIdMsix) return at;
    }
    return 0;
  }
  // Linux's vp_modern: MSI-X on (function masked while programming), each vector's entry,
  // then unmasked.
  void EnableMsix() {
    uint8_t cap = MsixCap();
    SetConfig(cap + 2, pci::kMsixControlEnable | pci::kMsixControlFunctionMask, 2);
    for (uint16_t v = 0; v < 3; ++v) {
      SetBar<uint32_t>(PciTransport::kMsixTableOffset + 16 * v, 0xfee00000);
      SetBar<uint32_t>(PciTransport::kMsixTableOffset + 16 * v + 4, 0);
      SetBar<uint32_t>(PciTransport::kMsixTableOffset + 16 * v + 8, 0x40 + v);
      SetBar<uint32_t>(PciTransport::kMsixTableOffset + 16 * v + 12, 0);
    }
    SetConfig(cap + 2, pci::kMsixControlEnable, 2);
  }
  void Negotiate(uint64_t accept = kOffered) {
    SetBar<uint8_t>(kDeviceStatus, 0);
    AddStatus(kStatusAcknowledge);
    AddStatus(kStatusDriver);
    SetBar<uint32_t>(kDeviceFeatureSelect, 0);
    uint64_t offered = Bar<uint32_t>(kDeviceFeature);
    SetBar<uint32_t>(kDeviceFeatureSelect, 1);
    offered |= uint64_t{Bar<uint32_t>(kDeviceFeature)} << 32;
    SetBar<uint32_t>(kDriverFeatureSelect, 0);
    SetBar<uint32_t>(kDriverFeature, static_cast<uint32_t>(accept & offered));
    SetBar<uint32_t>(kDriverFeatureSelect, 1);
    SetBar<uint32_t>(kDriverFeature, static_cast<uint32_t>((accept & offered) >> 32));
  }
  // vp_modern setup_vq: select, size, the rings (two 32-bit halves each), vector, enable.
  void SetupQueue(uint16_t index, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used,
                  uint16_t vector) {
    SetBar<uint16_t>(kQueueSelect, index);
    ASSERT_EQ(Bar<uint16_t>(kQueueEnable), 0);
    SetBar<uint16_t>(kQueueSize, size);
    for (auto [field, addr] :
         {std::pair{kQueueDesc, desc}, {kQueueDriver, avail}, {kQueueDevice, used}}) {
      SetBar<uint32_t>(field, static_cast<uint32_t>(addr));
      SetBar<uint32_t>(field + 4, static_cast<uint32_t>(addr >> 32));
    }
    SetBar<uint16_t>(kQueueMsixVector, vector);
    ASSERT_EQ(Bar<uint16_t>(kQueueMsixVector), vector);
    SetBar<uint16_t>(kQueueEnable, 1);
  }
  void InitDevice() {
    EnableMsix();
    Negotiate();
    AddStatus(kStatusFeaturesOk);
    ASSERT_TRUE(Status() & kStatusFeaturesOk);
    SetBar<uint16_t>(kConfigMsixVector, 0);
    ASSERT_EQ(Bar<uint16_t>(kConfigMsixVector), 0);
    SetupQueue(0, 16, driver_.desc_addr(), driver_.avail_addr(), driver_.used_addr(), 1);
    AddStatus(kStatusDriverOk);
  }
  void Kick(uint16_t queue) {
    SetBar<uint16_t>(PciTransport::kNotifyOffset + PciTransport::kNotifyMultiplier * queue, queue);
  }

  FakeDriver driver_{{.queue_size = 16}};
  asio::io_context loop_;
  std::shared_ptr<FakeDevice> device_;
  std::shared_ptr<RecordingSink> sink_;
  std::unique_ptr<PciTransport> transport_;
};

TEST_F(PciTransportTest, ConfigSpace_ModernVirtioIds_NoIntx) {
  EXPECT_EQ(Config(pci::kVendorId, 2), 0x1af4u);
  EXPECT_EQ(Config(pci::kDeviceId, 2), 0x1042u);  // 0x1040 + virtio-blk
  EXPECT_EQ(Config(pci::kRevisionId, 1), 1u);
  EXPECT_EQ(Config(pci::kSubsystemId, 2), 0x40u);
  EXPECT_EQ(Config(pci::kInterruptPin, 1), 0u);
  EXPECT_EQ(Config(pci::kCommand, 2), 0u);
  EXPECT_EQ(Config(pci::kBar0), kBarAddress | 0x4);  // 64-bit memory BAR
}

TEST_F(PciTransportTest, Capabilities_PointIntoBar0_WithLinuxMinimumLengths) {
  struct Expect {
    uint8_t type;
    uint32_t offset;
    uint32_t min_length;
  };
  for (Expect e : {Expect{kCapCommonCfg, 0x0000, 0x38}, Expect{kCapNotifyCfg, 0x3000, 8},
                   Expect{kCapIsrCfg, 0x1000, 1}, Expect{kCapDeviceCfg, 0x2000, 16}}) {
    uint8_t at = FindCap(e.type);
    ASSERT_NE(at, 0) << int(e.type);
    EXPECT_EQ(Config(at + 4, 1), 0u) << "BAR 0";
    EXPECT_EQ(Config(at + 8), e.offset);
    EXPECT_GE(Config(at + 12), e.min_length);
  }
  EXPECT_EQ(Config(FindCap(kCapNotifyCfg) + 16), PciTransport::kNotifyMultiplier);
  EXPECT_NE(FindCap(kCapPciCfg), 0);
  uint8_t msix = MsixCap();
  ASSERT_NE(msix, 0);
  EXPECT_EQ(Config(msix + 2, 2) & 0x7ff, 2u) << "3 vectors: 2 queues + config";
  EXPECT_EQ(Config(msix + 4), PciTransport::kMsixTableOffset);
  EXPECT_EQ(Config(msix + 8), PciTransport::kMsixPbaOffset);
}

TEST_F(PciTransportTest, Bar0_SizingAndMemoryEnable_DecideMappedBars) {
  EXPECT_TRUE(transport_->MappedBars().empty()) << "decoding off after reset";
  SetConfig(pci::kCommand, pci::kCommandMemory, 2);
  auto bars = transport_->MappedBars();
  ASSERT_EQ(bars.size(), 1u);
  EXPECT_EQ(bars[0].address, kBarAddress);
  EXPECT_EQ(bars[0].size, PciTransport::kBarSize);
  SetConfig(pci::kBar0, 0xffffffff);
  EXPECT_EQ(Config(pci::kBar0), static_cast<uint32_t>(~(PciTransport::kBarSize - 1)) | 0x4);
  EXPECT_TRUE(transport_->MappedBars().empty()) << "being sized";
}

TEST_F(PciTransportTest, DriverInit_LinuxSequence_ActivatesWithQueueAndVectors) {
  InitDevice();
  EXPECT_EQ(device_->activations, 1);
  EXPECT_EQ(device_->active.features, kOffered);
  EXPECT_TRUE(device_->active.queues[0]->ready());
  EXPECT_FALSE(device_->active.queues[1]->ready());
  EXPECT_EQ(device_->active.queues[0]->size(), 16);
  EXPECT_EQ(Status(), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_EQ(Bar<uint16_t>(kNumQueues), 2);
  EXPECT_EQ(transport_->queue_vector(0), 1);
  EXPECT_EQ(transport_->config_vector(), 0);
  EXPECT_EQ(sink_->routes.size(), 3u) << "every programmed vector routed at unmask";
  EXPECT_EQ(Errors(), 0u);
}

TEST_F(PciTransportTest, Kick_NotifyAddress_ServedOnLoop_InterruptOnQueueVector) {
  InitDevice();
  driver_.AddChain({{driver_.Alloc(64), 64, true}});
  driver_.Publish();
  Kick(0);
  EXPECT_TRUE(device_->processed.empty()) << "never on the vCPU";
  Poll();
  EXPECT_EQ(device_->processed, std::vector<uint16_t>{0});
  EXPECT_EQ(sink_->signals, std::vector<uint16_t>{1});
  EXPECT_TRUE(driver_.PopUsed().has_value());
}

TEST_F(PciTransportTest, ConfigChange_ConfigVector_AndIsrBitReadClears) {
  InitDevice();
  uint8_t generation = Bar<uint8_t>(kConfigGeneration);
  transport_->NotifyConfigChanged();
  EXPECT_EQ(sink_->signals, std::vector<uint16_t>{0});
  EXPECT_EQ(Bar<uint8_t>(kConfigGeneration), uint8_t(generation + 1));
  EXPECT_EQ(Bar<uint8_t>(PciTransport::kIsrOffset) & kIsrConfig, kIsrConfig);
  EXPECT_EQ(Bar<uint8_t>(PciTransport::kIsrOffset), 0) << "reading ISR clears it";
}

TEST_F(PciTransportTest, NoVector_NoMessage) {
  EnableMsix();
  Negotiate();
  AddStatus(kStatusFeaturesOk);
  SetupQueue(0, 16, driver_.desc_addr(), driver_.avail_addr(), driver_.used_addr(), kNoVector);
  AddStatus(kStatusDriverOk);
  driver_.AddChain({{driver_.Alloc(64), 64, true}});
  driver_.Publish();
  transport_->HandleNotify(0);
  transport_->NotifyConfigChanged();
  EXPECT_TRUE(sink_->signals.empty());
  EXPECT_TRUE(driver_.PopUsed().has_value()) << "the request itself is served";
}

TEST_F(PciTransportTest, VectorBeyondTable_ReadsBackNoVector) {
  SetBar<uint16_t>(kConfigMsixVector, 3);
  EXPECT_EQ(Bar<uint16_t>(kConfigMsixVector), kNoVector);
  SetBar<uint16_t>(kQueueSelect, 1);
  SetBar<uint16_t>(kQueueMsixVector, 0x7ff);
  EXPECT_EQ(Bar<uint16_t>(kQueueMsixVector), kNoVector);
}

TEST_F(PciTransportTest, MsixDisabled_InterruptsDropped_Counted) {
  Negotiate();
  AddStatus(kStatusFeaturesOk);
  SetBar<uint16_t>(kConfigMsixVector, 0);
  SetupQueue(0, 16, driver_.desc_addr(), driver_.avail_addr(), driver_.used_addr(), 1);
  AddStatus(kStatusDriverOk);
  transport_->NotifyConfigChanged();
  EXPECT_TRUE(sink_->signals.empty());
  EXPECT_EQ(transport_->msix_stats().dropped, 1u);
}

TEST_F(PciTransportTest, MaskedVector_Pending_DeliveredOnUnmask) {
  InitDevice();
  SetBar<uint32_t>(PciTransport::kMsixTableOffset + 12, 1);  // mask vector 0
  transport_->NotifyConfigChanged();
  EXPECT_TRUE(sink_->signals.empty());
  EXPECT_EQ(Bar<uint32_t>(PciTransport::kMsixPbaOffset), 1u);
  SetBar<uint32_t>(PciTransport::kMsixTableOffset + 12, 0);
  EXPECT_EQ(sink_->signals, std::vector<uint16_t>{0});
  EXPECT_EQ(Bar<uint32_t>(PciTransport::kMsixPbaOffset), 0u);
}

TEST_F(PciTransportTest, G32_FeatureNotOffered_FeaturesOkRefused) {
  Negotiate(kOffered | FeatureBit(7));
  SetBar<uint32_t>(kDriverFeatureSelect, 0);
  SetBar<uint32_t>(kDriverFeature, static_cast<uint32_t>(kOffered | FeatureBit(7)));
  AddStatus(kStatusFeaturesOk);
  EXPECT_FALSE(Status() & kStatusFeaturesOk);
  AddStatus(kStatusDriverOk);
  EXPECT_EQ(device_->activations, 0);
}

TEST_F(PciTransportTest, G32_NoVersion1_Refused_FeaturesFixedAfterFeaturesOk) {
  Negotiate(kOffered & ~FeatureBit(kFeatureVersion1));
  AddStatus(kStatusFeaturesOk);
  EXPECT_FALSE(Status() & kStatusFeaturesOk);
  Negotiate();
  AddStatus(kStatusFeaturesOk);
  ASSERT_TRUE(Status() & kStatusFeaturesOk);
  SetBar<uint32_t>(kDriverFeatureSelect, 0);
  uint64_t before = Errors();
  SetBar<uint32_t>(kDriverFeature, 0);
  EXPECT_EQ(Errors(), before + 1);
  EXPECT_EQ(Bar<uint32_t>(kDriverFeature), static_cast<uint32_t>(kOffered));
}

TEST_F(PciTransportTest, G14_QueueSelectOutOfRange_SizeZero_WritesIgnored) {
  SetBar<uint16_t>(kQueueSelect, 2);
  EXPECT_EQ(Bar<uint16_t>(kQueueSize), 0);
  EXPECT_EQ(Bar<uint16_t>(kQueueMsixVector), kNoVector);
  uint64_t before = Errors();
  SetBar<uint16_t>(kQueueSize, 8);
  SetBar<uint16_t>(kQueueEnable, 1);
  SetBar<uint16_t>(kQueueMsixVector, 0);
  EXPECT_EQ(Errors(), before + 3);
  Kick(5);  // beyond the notify region: a hole
  transport_->HandleNotify(9);
  EXPECT_EQ(Errors(), before + 5);
}

TEST_F(PciTransportTest, G13_BadQueueSize_EnableRefused) {
  Negotiate();
  AddStatus(kStatusFeaturesOk);
  SetBar<uint16_t>(kQueueSelect, 0);
  SetBar<uint16_t>(kQueueSize, 12);  // not a power of two
  SetBar<uint16_t>(kQueueEnable, 1);
  EXPECT_EQ(Bar<uint16_t>(kQueueEnable), 0);
}

TEST_F(PciTransportTest, G12_RingOutsideRam_EnableRefused) {
  Negotiate();
  AddStatus(kStatusFeaturesOk);
  SetupQueue(0, 16, driver_.HoleAddr(), driver_.avail_addr(), driver_.used_addr(), kNoVector);
  EXPECT_EQ(Bar<uint16_t>(kQueueEnable), 0);
}

TEST_F(PciTransportTest, QueueSetupAfterDriverOk_Ignored) {
  InitDevice();
  SetBar<uint16_t>(kQueueSelect, 0);
  SetBar<uint32_t>(kQueueDesc, 0x5000);
  SetBar<uint16_t>(kQueueSize, 8);
  EXPECT_EQ(Bar<uint64_t>(kQueueDesc), driver_.desc_addr());
  EXPECT_EQ(Bar<uint16_t>(kQueueSize), 16);
}

TEST_F(PciTransportTest, NaturalWidthsOnly_OthersRefused) {
  uint64_t before = Errors();
  EXPECT_EQ(Bar<uint16_t>(kDeviceFeature), 0) << "16-bit read of a 32-bit field";
  SetBar<uint32_t>(kDeviceStatus, kStatusAcknowledge);  // 32-bit write of an 8-bit field
  EXPECT_EQ(Status(), 0);
  SetBar<uint32_t>(kNumQueues, 7);  // read-only
  EXPECT_EQ(Bar<uint16_t>(kNumQueues), 2);
  EXPECT_EQ(Bar<uint32_t>(0x3c), 0u) << "past common configuration";
  EXPECT_EQ(Errors(), before + 4);
  EXPECT_EQ(Bar<uint64_t>(kQueueDesc), 0u) << "64-bit access to a 64-bit field is fine";
}

TEST_F(PciTransportTest, DeviceConfig_ForwardedWithOffsets) {
  EXPECT_EQ(Bar<uint32_t>(PciTransport::kDeviceCfgOffset + 4), 0x08070605u);
  SetBar<uint16_t>(PciTransport::kDeviceCfgOffset + 2, 1);
  ASSERT_EQ(device_->config_writes.size(), 1u);
  EXPECT_EQ(device_->config_writes[0], (std::pair<uint64_t, size_t>{2, 2}));
}

TEST_F(PciTransportTest, PciCfgWindow_ReadsAndWritesBar0) {
  uint8_t cap = FindCap(kCapPciCfg);
  SetConfig(cap + 4, 0, 1);
  SetConfig(cap + 8, kDeviceStatus);
  SetConfig(cap + 12, 1);
  SetConfig(cap + 16, kStatusAcknowledge, 1);  // write through the window
  EXPECT_EQ(Status(), kStatusAcknowledge);
  SetConfig(cap + 8, PciTransport::kDeviceCfgOffset);
  SetConfig(cap + 12, 4);
  EXPECT_EQ(Config(cap + 16), 0x04030201u);
  SetConfig(cap + 12, 3);  // not 1, 2 or 4: nothing happens
  EXPECT_EQ(Config(cap + 16), 0x04030201u);
}

TEST_F(PciTransportTest, Reset_VectorsBackToNoVector_QueuesReset_DeviceReset) {
  InitDevice();
  int resets = device_->resets;
  SetBar<uint8_t>(kDeviceStatus, 0);
  EXPECT_EQ(device_->resets, resets + 1);
  EXPECT_EQ(Status(), 0);
  EXPECT_EQ(Bar<uint16_t>(kConfigMsixVector), kNoVector);
  SetBar<uint16_t>(kQueueSelect, 0);
  EXPECT_EQ(Bar<uint16_t>(kQueueMsixVector), kNoVector);
  EXPECT_EQ(Bar<uint16_t>(kQueueEnable), 0);
  EXPECT_EQ(Bar<uint16_t>(kQueueSize), 16) << "back to the maximum";
  EXPECT_TRUE(transport_->msix_enabled()) << "MSI-X is the PCI function's, not reset";
}

TEST_F(PciTransportTest, OtherBars_ReadAllOnes) {
  uint32_t v = 0;
  transport_->BarRead(2, 0, {reinterpret_cast<uint8_t*>(&v), 4});
  EXPECT_EQ(v, 0xffffffffu);
}

TEST_F(PciTransportTest, Snapshot_RoundTrip_IntoFreshTransport_ServesAndSignals) {
  SetConfig(pci::kCommand, pci::kCommandMemory | pci::kCommandBusMaster, 2);
  SetConfig(pci::kBar0, 0xe8010000);
  InitDevice();
  driver_.AddChain({{driver_.Alloc(64), 64, true}});
  driver_.Publish();
  ASSERT_TRUE(transport_->Quiesce());
  Kick(0);
  Poll();
  EXPECT_TRUE(device_->processed.empty()) << "quiesced: deferred";
  auto saved = transport_->SavePciState();
  ASSERT_TRUE(saved) << saved.error().message();

  auto device = std::make_shared<FakeDevice>();
  auto sink = std::make_shared<RecordingSink>();
  PciTransport fresh(device, TransportEnv{&loop_, nullptr, &driver_.memory()}, kBarAddress, sink);
  auto restored = fresh.RestorePciState(*saved);
  ASSERT_TRUE(restored) << restored.error().message();
  EXPECT_EQ(device->activations, 1);
  EXPECT_EQ(sink->routes.size(), 3u) << "unmasked vectors routed again";
  auto again = fresh.SavePciState();
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *saved);
  auto bars = fresh.MappedBars();
  ASSERT_EQ(bars.size(), 1u);
  EXPECT_EQ(bars[0].address, 0xe8010000u) << "where the guest had put it";

  fresh.Resume();
  Poll();
  EXPECT_EQ(device->processed, std::vector<uint16_t>{0});
  EXPECT_TRUE(driver_.PopUsed().has_value());
  EXPECT_FALSE(sink->signals.empty());
  for (uint16_t v : sink->signals) EXPECT_EQ(v, 1) << "queue 0's vector only";
}

TEST_F(PciTransportTest, Restore_BadState_Refused_TransportStaysFresh) {
  InitDevice();
  ASSERT_TRUE(transport_->Quiesce());
  PciTransportState good = *transport_->SavePciState();
  auto device = std::make_shared<FakeDevice>();
  auto sink = std::make_shared<RecordingSink>();
  PciTransport fresh(device, TransportEnv{&loop_, nullptr, &driver_.memory()}, kBarAddress, sink);

  std::vector<PciTransportState> bad(6, good);
  bad[0].config[pci::kDeviceId] ^= 1;  // another device id
  bad[1].config.resize(64);            // truncated
  bad[2].msix.entries.pop_back();      // another table size
  bad[3].queue_vectors[0] = 7;         // beyond the table
  bad[4].queue_vectors.push_back(0);   // another queue count
  bad[5].virtio.status |= 0x10;        // an unknown status bit (core check)
  for (size_t i = 0; i < bad.size(); ++i) {
    EXPECT_FALSE(fresh.RestorePciState(bad[i])) << i;
    EXPECT_EQ(fresh.status(), 0u) << i;
    EXPECT_EQ(device->activations, 0) << i;
    EXPECT_EQ(fresh.config_vector(), kNoVector) << i;
    EXPECT_FALSE(fresh.msix_enabled()) << i;
  }
  EXPECT_TRUE(fresh.RestorePciState(good)) << "still restorable";
}

}  // namespace
}  // namespace kite::virtio
