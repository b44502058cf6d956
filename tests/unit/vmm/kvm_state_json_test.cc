// KVM vCPU/VM state <-> JSON: round trips and a catalogue of malformed members, each refused
// with an error naming the member.
#include "vmm/snapshot/kvm_state_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "vmm/snapshot/base64.h"

namespace kite::snapshot {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

template <typename T>
void Fill(T& value, uint8_t seed) {
  auto* bytes = reinterpret_cast<uint8_t*>(&value);
  for (size_t i = 0; i < sizeof(T); ++i) bytes[i] = static_cast<uint8_t>(seed + i * 7);
}

template <typename T>
bool SameBytes(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

VcpuState SampleVcpu() {
  VcpuState s;
  s.mp_state.mp_state = KVM_MP_STATE_HALTED;
  Fill(s.regs, 1);
  Fill(s.sregs, 2);
  s.xsave.resize(4096 + 64);
  for (size_t i = 0; i < s.xsave.size(); ++i) s.xsave[i] = static_cast<uint8_t>(i * 13);
  Fill(s.xcrs, 3);
  Fill(s.debugregs, 4);
  Fill(s.lapic, 5);
  s.tsc_khz = 2'995'200;
  s.cpuid.resize(3);
  for (auto& e : s.cpuid) Fill(e, 6);
  s.msrs = {{0x10, 0, 0xffffffffffffffffull}, {0x4b564d01, 0, 42}};
  Fill(s.events, 7);
  return s;
}

VmState SampleVm() {
  VmState s;
  Fill(s.pit, 8);
  Fill(s.clock, 9);
  Fill(s.pic_master, 10);
  Fill(s.pic_slave, 11);
  Fill(s.ioapic, 12);
  s.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
  s.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  s.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  return s;
}

std::string VcpuError(const json& j) {
  auto r = VcpuStateFromJson(j, "vcpus[1]");
  return r ? std::string("(accepted)") : r.error().message();
}

TEST(KvmStateJson, VcpuRoundTrip_ThroughText) {
  VcpuState in = SampleVcpu();
  json parsed = json::parse(ToJson(in).dump(), nullptr, false);
  ASSERT_FALSE(parsed.is_discarded());
  auto out = VcpuStateFromJson(parsed);
  ASSERT_TRUE(out) << out.error().message();
  EXPECT_EQ(out->mp_state.mp_state, in.mp_state.mp_state);
  EXPECT_TRUE(SameBytes(out->regs, in.regs));
  EXPECT_TRUE(SameBytes(out->sregs, in.sregs));
  EXPECT_EQ(out->xsave, in.xsave);
  EXPECT_TRUE(SameBytes(out->xcrs, in.xcrs));
  EXPECT_TRUE(SameBytes(out->debugregs, in.debugregs));
  EXPECT_TRUE(SameBytes(out->lapic, in.lapic));
  EXPECT_EQ(out->tsc_khz, in.tsc_khz);
  ASSERT_EQ(out->cpuid.size(), in.cpuid.size());
  for (size_t i = 0; i < in.cpuid.size(); ++i) EXPECT_TRUE(SameBytes(out->cpuid[i], in.cpuid[i]));
  ASSERT_EQ(out->msrs.size(), 2u);
  EXPECT_EQ(out->msrs[0].index, 0x10u);
  EXPECT_EQ(out->msrs[0].data, 0xffffffffffffffffull);
  EXPECT_EQ(out->msrs[1].index, 0x4b564d01u);
  EXPECT_EQ(out->msrs[1].data, 42u);
  EXPECT_TRUE(SameBytes(out->events, in.events));
}

TEST(KvmStateJson, MsrsArePairs) {
  json j = ToJson(SampleVcpu());
  EXPECT_EQ(j["msrs"][1], json::array({0x4b564d01, 42}));
}

TEST(KvmStateJson, VmRoundTrip) {
  VmState in = SampleVm();
  auto out = VmStateFromJson(json::parse(ToJson(in).dump()));
  ASSERT_TRUE(out) << out.error().message();
  EXPECT_TRUE(SameBytes(out->pit, in.pit));
  EXPECT_TRUE(SameBytes(out->clock, in.clock));
  EXPECT_TRUE(SameBytes(out->pic_master, in.pic_master));
  EXPECT_TRUE(SameBytes(out->pic_slave, in.pic_slave));
  EXPECT_TRUE(SameBytes(out->ioapic, in.ioapic));
}

TEST(KvmStateJson, Vcpu_NotAnObject) {
  EXPECT_EQ(VcpuError(json::array()), "vcpus[1]: expected an object");
}

TEST(KvmStateJson, Vcpu_EachMissingMemberNamed) {
  for (const char* name : {"mp_state", "regs", "sregs", "xsave", "xcrs", "debugregs", "lapic",
                           "tsc_khz", "cpuid", "msrs", "events"}) {
    json j = ToJson(SampleVcpu());
    j.erase(name);
    EXPECT_EQ(VcpuError(j), std::string("vcpus[1].") + name + ": missing");
  }
}

TEST(KvmStateJson, Vcpu_UnknownMember) {
  json j = ToJson(SampleVcpu());
  j["fpu"] = "AAAA";
  EXPECT_EQ(VcpuError(j), "vcpus[1]: unknown member 'fpu'");
}

TEST(KvmStateJson, Vcpu_EachStructWrongSizeNamed) {
  const std::pair<const char*, size_t> structs[] = {
      {"regs", sizeof(kvm_regs)},         {"sregs", sizeof(kvm_sregs)},
      {"xcrs", sizeof(kvm_xcrs)},         {"debugregs", sizeof(kvm_debugregs)},
      {"lapic", sizeof(kvm_lapic_state)}, {"events", sizeof(kvm_vcpu_events)}};
  for (const auto& [name, size] : structs) {
    json j = ToJson(SampleVcpu());
    j[name] = Base64Encode(std::vector<uint8_t>(12));
    EXPECT_EQ(VcpuError(j), std::string("vcpus[1].") + name + ": expected " + std::to_string(size) +
                                " bytes, got 12");
  }
}

TEST(KvmStateJson, Vcpu_LapicExample) {
  json j = ToJson(SampleVcpu());
  j["lapic"] = Base64Encode(std::vector<uint8_t>(12));
  EXPECT_EQ(VcpuError(j), "vcpus[1].lapic: expected 1024 bytes, got 12");
}

TEST(KvmStateJson, Vcpu_StructNotAString) {
  json j = ToJson(SampleVcpu());
  j["regs"] = 5;
  EXPECT_EQ(VcpuError(j), "vcpus[1].regs: expected a base64 string");
}

TEST(KvmStateJson, Vcpu_StructBadBase64) {
  json j = ToJson(SampleVcpu());
  j["sregs"] = "not base64!";
  EXPECT_THAT(VcpuError(j), HasSubstr("vcpus[1].sregs: base64:"));
}

TEST(KvmStateJson, Vcpu_XsaveTooSmallOrLarge) {
  json j = ToJson(SampleVcpu());
  j["xsave"] = Base64Encode(std::vector<uint8_t>(100));
  EXPECT_EQ(VcpuError(j), "vcpus[1].xsave: expected 4096 to 1048576 bytes, got 100");
}

TEST(KvmStateJson, Vcpu_CpuidPartialEntry) {
  json j = ToJson(SampleVcpu());
  j["cpuid"] = Base64Encode(std::vector<uint8_t>(sizeof(kvm_cpuid_entry2) + 1));
  EXPECT_THAT(VcpuError(j), HasSubstr("vcpus[1].cpuid: 41 bytes is not a whole number"));
}

TEST(KvmStateJson, Vcpu_CpuidTooMany) {
  json j = ToJson(SampleVcpu());
  j["cpuid"] = Base64Encode(std::vector<uint8_t>(sizeof(kvm_cpuid_entry2) * 257));
  EXPECT_THAT(VcpuError(j), HasSubstr("vcpus[1].cpuid: expected 40 to 10240 bytes"));
}

TEST(KvmStateJson, Vcpu_ScalarsChecked) {
  for (const char* name : {"mp_state", "tsc_khz"}) {
    json j = ToJson(SampleVcpu());
    j[name] = -1;
    EXPECT_EQ(VcpuError(j), std::string("vcpus[1].") + name + ": expected an unsigned integer");
    j[name] = 1.5;
    EXPECT_EQ(VcpuError(j), std::string("vcpus[1].") + name + ": expected an unsigned integer");
    j[name] = "3";
    EXPECT_EQ(VcpuError(j), std::string("vcpus[1].") + name + ": expected an unsigned integer");
    j[name] = 0x100000000ull;
    EXPECT_EQ(VcpuError(j), std::string("vcpus[1].") + name + ": 4294967296 is above 4294967295");
  }
}

TEST(KvmStateJson, Vcpu_MsrsMalformed) {
  const json bad[] = {json::array({json::array({1})}), json::array({json::array({1, 2, 3})}),
                      json::array({json::array({1, -2})}), json::array({json::array({"1", 2})}),
                      json::array({json::object()})};
  for (const json& msrs : bad) {
    json j = ToJson(SampleVcpu());
    j["msrs"] = msrs;
    EXPECT_EQ(VcpuError(j), "vcpus[1].msrs[0]: expected [index, value] with unsigned integers")
        << msrs.dump();
  }
  json j = ToJson(SampleVcpu());
  j["msrs"] = json::array({json::array({0x10, 1}), json::array({0x100000000ull, 1})});
  EXPECT_THAT(VcpuError(j), HasSubstr("vcpus[1].msrs[1]: MSR index 4294967296"));
  j["msrs"] = json::object();
  EXPECT_THAT(VcpuError(j), HasSubstr("vcpus[1].msrs: expected an array"));
  j["msrs"] = json(std::vector<json>(1025, json::array({0x10, 0})));
  EXPECT_THAT(VcpuError(j), HasSubstr("vcpus[1].msrs: expected an array of at most 1024"));
}

TEST(KvmStateJson, Vm_MissingWrongSizeUnknown) {
  for (const char* name : {"pit", "clock", "pic_master", "pic_slave", "ioapic"}) {
    json j = ToJson(SampleVm());
    j.erase(name);
    EXPECT_EQ(VmStateFromJson(j).error().message(), std::string("vm.") + name + ": missing");
    j[name] = Base64Encode(std::vector<uint8_t>(4));
    EXPECT_THAT(VmStateFromJson(j).error().message(),
                HasSubstr(std::string("vm.") + name + ": expected "));
  }
  json j = ToJson(SampleVm());
  j["hpet"] = "";
  EXPECT_EQ(VmStateFromJson(j).error().message(), "vm: unknown member 'hpet'");
  EXPECT_EQ(VmStateFromJson(json(3)).error().message(), "vm: expected an object");
}

TEST(KvmStateJson, Vm_WrongChipId) {
  VmState s = SampleVm();
  s.pic_slave.chip_id = KVM_IRQCHIP_IOAPIC;
  EXPECT_EQ(VmStateFromJson(ToJson(s)).error().message(), "vm: pic_slave: chip_id 2, expected 1");
}

}  // namespace
}  // namespace kite::snapshot
