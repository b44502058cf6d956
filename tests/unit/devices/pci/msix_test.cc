// Msix (src/devices/pci/msix.cc): the table, masking (per vector and per function), pending
// bits, routing only what is deliverable, bad table accesses and state.
#include "devices/pci/msix.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace kite::pci {
namespace {

class RecordingSink : public MsiSink {
 public:
  void Route(uint16_t vector, const MsiMessage& message) override {
    routes.emplace_back(vector, message);
  }
  void Signal(uint16_t vector) override { signals.push_back(vector); }
  std::vector<std::pair<uint16_t, MsiMessage>> routes;
  std::vector<uint16_t> signals;
};

class MsixTest : public ::testing::Test {
 protected:
  MsixTest() : sink_(std::make_shared<RecordingSink>()), msix_(4, sink_) {}

  void Write32(uint64_t offset, uint32_t value) {
    uint8_t b[4];
    std::memcpy(b, &value, 4);
    msix_.TableWrite(offset, b);
  }
  uint32_t Read32(uint64_t offset) {
    uint8_t b[4];
    msix_.TableRead(offset, b);
    uint32_t v;
    std::memcpy(&v, b, 4);
    return v;
  }
  uint64_t Pba() {
    uint8_t b[8];
    msix_.PbaRead(0, b);
    uint64_t v;
    std::memcpy(&v, b, 8);
    return v;
  }
  // Linux's order: address, data, then unmask.
  void Program(uint16_t v, uint32_t addr, uint32_t data, bool unmask = true) {
    Write32(v * 16 + 0, addr);
    Write32(v * 16 + 4, 0);
    Write32(v * 16 + 8, data);
    if (unmask) Write32(v * 16 + 12, 0);
  }

  std::shared_ptr<RecordingSink> sink_;
  Msix msix_;
};

TEST_F(MsixTest, Reset_AllVectorsMasked_Disabled) {
  EXPECT_FALSE(msix_.enabled());
  for (uint16_t v = 0; v < 4; ++v) EXPECT_EQ(Read32(v * 16 + 12), kMsixVectorMasked);
  EXPECT_EQ(msix_.table_size(), 64u);
  EXPECT_EQ(msix_.pba_size(), 8u);
}

TEST_F(MsixTest, Capability_TableSizeAndBir) {
  std::vector<uint8_t> cap = msix_.Capability(0, 0x4000, 0, 0x5000);
  ASSERT_EQ(cap.size(), 12u);
  EXPECT_EQ(cap[0], 0x11);
  EXPECT_EQ(cap[2] | cap[3] << 8, 3);  // table size - 1
  uint32_t table, pba;
  std::memcpy(&table, &cap[4], 4);
  std::memcpy(&pba, &cap[8], 4);
  EXPECT_EQ(table, 0x4000u);
  EXPECT_EQ(pba, 0x5000u);
}

TEST_F(MsixTest, Disabled_NotifyDropped) {
  Program(0, 0xfee00000, 0x41);
  msix_.Notify(0);
  EXPECT_TRUE(sink_->signals.empty());
  EXPECT_TRUE(sink_->routes.empty()) << "nothing routed while disabled";
  EXPECT_EQ(msix_.stats().dropped, 1u);
}

TEST_F(MsixTest, EnabledUnmasked_RoutedThenSignalled) {
  msix_.WriteControl(kMsixControlEnable);
  Program(1, 0xfee01000, 0x4022);
  ASSERT_EQ(sink_->routes.size(), 1u);
  EXPECT_EQ(sink_->routes[0].first, 1);
  EXPECT_EQ(sink_->routes[0].second, (MsiMessage{0xfee01000, 0x4022}));
  msix_.Notify(1);
  EXPECT_EQ(sink_->signals, std::vector<uint16_t>{1});
}

TEST_F(MsixTest, VectorMasked_PendingBitSet_UnmaskDeliversAndClears) {
  msix_.WriteControl(kMsixControlEnable);
  Program(2, 0xfee00000, 0x30, /*unmask=*/false);
  msix_.Notify(2);
  EXPECT_TRUE(sink_->signals.empty());
  EXPECT_EQ(Pba(), 1u << 2);
  Write32(2 * 16 + 12, 0);  // unmask
  EXPECT_EQ(sink_->signals, std::vector<uint16_t>{2});
  EXPECT_EQ(Pba(), 0u);
  EXPECT_EQ(msix_.stats().masked, 1u);
}

TEST_F(MsixTest, FunctionMask_PendsEveryVector_ClearingDeliversThem) {
  msix_.WriteControl(kMsixControlEnable | kMsixControlFunctionMask);
  Program(0, 0xfee00000, 0x30);
  Program(3, 0xfee00000, 0x33);
  EXPECT_TRUE(sink_->routes.empty());
  msix_.Notify(0);
  msix_.Notify(3);
  EXPECT_TRUE(sink_->signals.empty());
  EXPECT_EQ(Pba(), 0b1001u);
  msix_.WriteControl(kMsixControlEnable);
  EXPECT_EQ(sink_->routes.size(), 2u);
  EXPECT_EQ(sink_->signals, (std::vector<uint16_t>{0, 3}));
}

TEST_F(MsixTest, OutOfRangeVector_AndNoVector_Dropped) {
  msix_.WriteControl(kMsixControlEnable);
  msix_.Notify(4);
  msix_.Notify(0xffff);
  EXPECT_TRUE(sink_->signals.empty());
  EXPECT_EQ(msix_.stats().dropped, 2u);
}

TEST_F(MsixTest, RewriteWhileUnmasked_Rerouted) {
  msix_.WriteControl(kMsixControlEnable);
  Program(0, 0xfee00000, 0x30);
  Write32(8, 0x31);
  ASSERT_EQ(sink_->routes.size(), 2u);
  EXPECT_EQ(sink_->routes[1].second.data, 0x31u);
}

TEST_F(MsixTest, BadTableAccesses_Ignored) {
  uint8_t two[2] = {0xff, 0xff};
  msix_.TableWrite(12, two);  // 16-bit: not allowed
  uint8_t four[4] = {0, 0, 0, 0};
  msix_.TableWrite(14, four);  // misaligned
  msix_.TableWrite(64, four);  // past the table
  EXPECT_EQ(Read32(12), kMsixVectorMasked);
  uint8_t out[4];
  msix_.TableRead(66, out);
  EXPECT_EQ(msix_.stats().bad_accesses, 4u);
  Write32(12, 0xfffffffe);  // reserved Vector Control bits stay 0
  EXPECT_EQ(Read32(12), 0u);
  Write32(0, 0xfee00003);  // message address is dword aligned
  EXPECT_EQ(Read32(0), 0xfee00000u);
}

TEST_F(MsixTest, QwordAccess_WholeAddress) {
  uint64_t addr = 0x00000001fee00000;
  uint8_t b[8];
  std::memcpy(b, &addr, 8);
  msix_.TableWrite(16, b);
  EXPECT_EQ(Read32(16), 0xfee00000u);
  EXPECT_EQ(Read32(20), 1u);
}

TEST_F(MsixTest, SaveRestore_RoundTrip_RoutesDeliverableVectors) {
  msix_.WriteControl(kMsixControlEnable);
  Program(1, 0xfee00000, 0x41);
  Program(2, 0xfee00000, 0x42, false);
  msix_.Notify(2);
  MsixState saved = msix_.Save();

  auto sink = std::make_shared<RecordingSink>();
  Msix restored(4, sink);
  ASSERT_TRUE(restored.Restore(saved, kMsixControlEnable));
  EXPECT_EQ(restored.Save(), saved);
  ASSERT_EQ(sink->routes.size(), 1u);
  EXPECT_EQ(sink->routes[0].first, 1);
  EXPECT_TRUE(restored.enabled());

  Msix smaller(2, sink);
  EXPECT_FALSE(smaller.Restore(saved, 0));
  MsixState bad = saved;
  bad.entries[0].control = 2;
  EXPECT_FALSE(restored.Restore(bad, 0));
}

}  // namespace
}  // namespace kite::pci
