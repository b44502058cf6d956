// DeviceRegistry and ResourceAllocator without a VM: ids, windows and GSIs handed out and given
// back, the checks a restore makes before any device takes its state, and what the ACPI tables
// are told about the registered devices (HasCmosRtc).
#include "vmm/device_registry.h"

#include <gtest/gtest.h>

#include "vmm/layout.h"
#include "vmm/vm_devices.h"

namespace kite {
namespace {

// A device whose state is one number; RestoreState refuses anything else.
class CountingDevice : public VmDevice {
 public:
  explicit CountingDevice(int value) : value_(value) {}
  Result<nlohmann::json> SaveState() const override { return nlohmann::json{{"value", value_}}; }
  Result<void> RestoreState(const nlohmann::json& state) override {
    if (!state.is_object() || !state.contains("value") || !state["value"].is_number_integer()) {
      return Err("expected {\"value\": N}");
    }
    value_ = state["value"].get<int>();
    return {};
  }
  Result<void> Quiesce() override {
    if (fail_quiesce) return Err("busy");
    ++quiesced;
    return {};
  }
  void Resume() override { ++resumed; }
  int value_;
  bool fail_quiesce = false;
  int quiesced = 0;
  int resumed = 0;
};

DeviceEntry Entry(std::string id, int value) {
  return {std::move(id), "counting", {}, std::make_unique<CountingDevice>(value)};
}

CountingDevice& Dev(DeviceRegistry& r, const std::string& id) {
  return static_cast<CountingDevice&>(*r.Find(id)->device);
}

TEST(ResourceAllocator, LowestFreeFirst_ReleasedReused) {
  ResourceAllocator a(0xd0000000, 0x1000, 2, {5, 6, 7});
  DeviceResources r0 = *a.AllocateVirtio();
  DeviceResources r1 = *a.AllocateVirtio();
  EXPECT_EQ(r0.base, 0xd0000000u);
  EXPECT_EQ(*r0.gsi, 5u);
  EXPECT_EQ(r1.base, 0xd0001000u);
  EXPECT_EQ(*r1.gsi, 6u);
  auto none = a.AllocateVirtio();
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message().find("no free virtio-mmio window"), std::string::npos);
  a.Release(r0);
  DeviceResources again = *a.AllocateVirtio();
  EXPECT_EQ(again.base, r0.base);
  EXPECT_EQ(*again.gsi, 5u);
}

TEST(ResourceAllocator, OutOfGsis_Refused) {
  ResourceAllocator a(0xd0000000, 0x1000, 4, {5});
  ASSERT_TRUE(a.AllocateVirtio());
  auto none = a.AllocateVirtio();
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message().find("no free interrupt line"), std::string::npos);
}

TEST(DeviceRegistry, DuplicateId_Refused) {
  DeviceRegistry r;
  ASSERT_TRUE(r.Add(Entry("vda", 1)));
  auto dup = r.Add(Entry("vda", 2));
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message().find("'vda' already exists"), std::string::npos);
}

TEST(DeviceRegistry, SaveRestore_RoundTripsIntoFreshDevices) {
  DeviceRegistry a;
  ASSERT_TRUE(a.Add(Entry("vda", 7)));
  ASSERT_TRUE(a.Add(Entry("net0", 9)));
  nlohmann::json saved = *a.SaveAll();
  DeviceRegistry b;
  ASSERT_TRUE(b.Add(Entry("vda", 0)));
  ASSERT_TRUE(b.Add(Entry("net0", 0)));
  ASSERT_TRUE(b.RestoreAll(saved));
  EXPECT_EQ(Dev(b, "vda").value_, 7);
  EXPECT_EQ(Dev(b, "net0").value_, 9);
  EXPECT_EQ(*b.SaveAll(), saved);
}

TEST(DeviceRegistry, Restore_UnknownMissingOrOtherKind_RefusedBeforeAnyDeviceChanges) {
  DeviceRegistry a;
  ASSERT_TRUE(a.Add(Entry("vda", 7)));
  nlohmann::json saved = *a.SaveAll();

  DeviceRegistry more;  // a device the snapshot does not have
  ASSERT_TRUE(more.Add(Entry("vda", 0)));
  ASSERT_TRUE(more.Add(Entry("vdb", 0)));
  auto r = more.RestoreAll(saved);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("no state for device 'vdb'"), std::string::npos);
  EXPECT_EQ(Dev(more, "vda").value_, 0) << "a device changed before the checks were done";

  DeviceRegistry fewer;
  ASSERT_TRUE(fewer.Add(Entry("net0", 0)));
  r = fewer.RestoreAll(saved);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("'vda' this VM does not have"), std::string::npos);

  nlohmann::json other_kind = saved;
  other_kind["vda"]["kind"] = "virtio-net";
  DeviceRegistry same;
  ASSERT_TRUE(same.Add(Entry("vda", 0)));
  r = same.RestoreAll(other_kind);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("devices.vda: expected {\"kind\": \"counting\""),
            std::string::npos);
  EXPECT_FALSE(same.RestoreAll(nlohmann::json::array()));
}

TEST(DeviceRegistry, QuiesceFailure_ResumesThoseAlreadyQuiesced) {
  DeviceRegistry r;
  ASSERT_TRUE(r.Add(Entry("a", 0)));
  ASSERT_TRUE(r.Add(Entry("b", 0)));
  Dev(r, "b").fail_quiesce = true;
  auto q = r.QuiesceAll();
  ASSERT_FALSE(q);
  EXPECT_NE(q.error().message().find("quiescing b: busy"), std::string::npos);
  EXPECT_EQ(Dev(r, "a").quiesced, 1);
  EXPECT_EQ(Dev(r, "a").resumed, 1);
  EXPECT_EQ(Dev(r, "b").resumed, 0);
}

// HasCmosRtc: the RTC is described in the ACPI tables exactly when it is on the PIO bus.
DeviceEntry PioEntry(std::string id, std::string kind, uint64_t port) {
  return {std::move(id),
          std::move(kind),
          {DeviceResources::BusKind::kPio, port, 2, std::nullopt},
          std::make_unique<CountingDevice>(0)};
}

TEST(HasCmosRtc, RtcAtItsPort_True) {
  DeviceRegistry r;
  ASSERT_TRUE(r.Add(PioEntry("com1", "uart-16550", layout::kCom1Port)));
  ASSERT_TRUE(r.Add(PioEntry("rtc", "rtc-cmos", layout::kRtcPort)));
  EXPECT_TRUE(HasCmosRtc(r));
}

TEST(HasCmosRtc, NoRtc_False) {
  DeviceRegistry r;
  EXPECT_FALSE(HasCmosRtc(r));
  ASSERT_TRUE(r.Add(PioEntry("com1", "uart-16550", layout::kCom1Port)));
  ASSERT_TRUE(r.Add(PioEntry("rtc", "counting", layout::kRtcPort)));  // another device there
  EXPECT_FALSE(HasCmosRtc(r));
}

TEST(HasCmosRtc, RtcRemoved_False) {
  DeviceRegistry r;
  ASSERT_TRUE(r.Add(PioEntry("rtc", "rtc-cmos", layout::kRtcPort)));
  ASSERT_NE(r.Remove("rtc"), nullptr);
  EXPECT_FALSE(HasCmosRtc(r));
}

}  // namespace
}  // namespace kite
