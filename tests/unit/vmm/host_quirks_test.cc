// Emulated-KVM host detection and command line editing.
#include "vmm/host_quirks.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace kite {
namespace {

constexpr char kIntelHost[] =
    "processor\t: 0\nvendor_id\t: GenuineIntel\n"
    "flags\t\t: fpu vme de pse tsc msr pae vmx sse sse2 hypervisor\n\n";
constexpr char kAmdHost[] = "processor\t: 0\nflags\t\t: fpu svm lm\n";
constexpr char kNestedlessGuest[] =
    "processor\t: 0\nflags\t\t: fpu vme lm constant_tsc hypervisor xsave avx\n"
    "vmx flags\t: vnmi\n";
constexpr char kNoFlagsLine[] = "processor\t: 0\nFeatures\t: fp asimd\n";

TEST(HostQuirks, VmxHost_NotEmulated) {
  EXPECT_FALSE(DetectHostQuirks(kIntelHost).emulated_kvm);
}

TEST(HostQuirks, SvmHost_NotEmulated) {
  EXPECT_FALSE(DetectHostQuirks(kAmdHost).emulated_kvm);
}

TEST(HostQuirks, HypervisorWithoutVmxSvm_Emulated) {
  HostQuirks q = DetectHostQuirks(kNestedlessGuest);
  EXPECT_TRUE(q.emulated_kvm);
  EXPECT_NE(q.reason.find("nested"), std::string::npos);
}

TEST(HostQuirks, VmxFlagsLineIsNotTheFlagsLine) {
  // "vmx flags" must not be read as the flags line, and "vmx" inside it is not a CPU flag.
  constexpr char text[] = "vmx flags\t: vmx\nflags\t\t: fpu lm\n";
  EXPECT_TRUE(DetectHostQuirks(text).emulated_kvm);
}

TEST(HostQuirks, FlagSubstringIsNotAFlag) {
  constexpr char text[] = "flags\t\t: fpu vmxx svm_lock lm\n";
  EXPECT_TRUE(DetectHostQuirks(text).emulated_kvm);
}

TEST(HostQuirks, NoFlagsLine_NormalHost) {
  EXPECT_FALSE(DetectHostQuirks(kNoFlagsLine).emulated_kvm);
  EXPECT_FALSE(DetectHostQuirks("").emulated_kvm);
}

TEST(HostQuirks, Items_IncludeNoxsaveAndClearcpuid) {
  auto items = EmulatedHostCmdlineItems(1);
  ASSERT_FALSE(items.empty());
  EXPECT_EQ(items[0], "noxsave");
  EXPECT_EQ(items[1].rfind("clearcpuid=smap,smep,popcnt", 0), 0u);
}

// Paravirtual hypercalls (PV IPIs) hang an SMP guest on such a host; one vCPU makes none.
TEST(HostQuirks, Items_NopvOnlyWithSeveralCpus) {
  auto has_nopv = [](uint32_t cpus) {
    auto items = EmulatedHostCmdlineItems(cpus);
    return std::find(items.begin(), items.end(), "nopv") != items.end();
  };
  EXPECT_FALSE(has_nopv(1));
  EXPECT_TRUE(has_nopv(2));
  EXPECT_TRUE(has_nopv(8));
}

TEST(HostQuirks, Append_ToEmptyCmdline) {
  std::string cmdline;
  auto added = AppendCmdlineItems(cmdline, {"noxsave", "lpj=5000000"});
  EXPECT_EQ(cmdline, "noxsave lpj=5000000");
  EXPECT_EQ(added.size(), 2u);
}

TEST(HostQuirks, Append_KeepsUserValueForSameKey) {
  std::string cmdline = "console=ttyS0 lpj=123";
  auto added = AppendCmdlineItems(cmdline, {"noxsave", "lpj=5000000"});
  EXPECT_EQ(cmdline, "console=ttyS0 lpj=123 noxsave");
  EXPECT_EQ(added, std::vector<std::string>{"noxsave"});
}

TEST(HostQuirks, Append_BeforeInitArguments) {
  std::string cmdline = "console=ttyS0 -- init_arg";
  auto added = AppendCmdlineItems(cmdline, {"noxsave"});
  EXPECT_EQ(cmdline, "console=ttyS0 noxsave -- init_arg");
  EXPECT_EQ(added.size(), 1u);
}

TEST(HostQuirks, Append_KeyAfterDoubleDashDoesNotCount) {
  std::string cmdline = "quiet -- noxsave";
  auto added = AppendCmdlineItems(cmdline, {"noxsave"});
  EXPECT_EQ(cmdline, "quiet noxsave -- noxsave");
  EXPECT_EQ(added.size(), 1u);
}

TEST(HostQuirks, Append_NothingNew_Unchanged) {
  std::string cmdline = "noxsave  ";
  auto added = AppendCmdlineItems(cmdline, {"noxsave"});
  EXPECT_EQ(cmdline, "noxsave  ");
  EXPECT_TRUE(added.empty());
}

}  // namespace
}  // namespace kite
