// Host resources: --memory's backing settings, --cpus N,pin=, --emulator-pin, the JSON keys,
// their checks, and thread placement (vmm/host_resources.h).
#include "vmm/host_resources.h"

#include <gtest/gtest.h>

#include <thread>

#include "vmm/cli.h"
#include "vmm/config_json.h"

namespace kite {
namespace {

using cli::ApplyConfigJson;
using cli::ApplyOption;

VmConfig WithKernel(VmConfig c) {
  c.kernel = "/vmlinux";
  return c;
}

std::string ErrorOf(const Result<void>& r) {
  return r ? std::string("(no error)") : r.error().message();
}

TEST(HostResources, ParseCpuList_RangesAndSingles) {
  auto cpus = ParseCpuList("7,2-5");
  ASSERT_TRUE(cpus) << cpus.error().message();
  EXPECT_EQ(*cpus, (std::vector<uint32_t>{2, 3, 4, 5, 7}));
  EXPECT_EQ(FormatCpuList(*cpus), "2-5,7");
  EXPECT_EQ(FormatCpuList({0}), "0");
  for (const char* bad : {"", "a", "5-2", "1,1", "1-", "-3", "1024", "0,,1", "2 "}) {
    EXPECT_FALSE(ParseCpuList(bad)) << bad;
  }
}

TEST(HostResources, MemoryOption_BackingSettings) {
  VmConfig c;
  ASSERT_TRUE(ApplyOption("--memory", "2G,hugepages=2M,prealloc=on,shared=on", c));
  EXPECT_EQ(c.memory, 2ull << 30);
  EXPECT_EQ(c.memory_backing.hugepage_size, 2ull << 20);
  EXPECT_TRUE(c.memory_backing.prealloc);
  EXPECT_TRUE(c.memory_backing.shared);
  EXPECT_EQ(FormatMemoryOption(c), "2147483648,hugepages=2M,prealloc=on,shared=on");
  ASSERT_TRUE(ApplyOption("--memory", "1G,hugepages=1G", c));
  EXPECT_EQ(c.memory_backing, (MemoryBacking{.hugepage_size = 1ull << 30}));
  ASSERT_TRUE(ApplyOption("--memory", "512M", c));
  EXPECT_EQ(c.memory_backing, MemoryBacking{});
}

TEST(HostResources, MemoryOption_BadSettingsNamed) {
  VmConfig c;
  std::string e = ErrorOf(ApplyOption("--memory", "1G,hugepages=4M", c));
  EXPECT_NE(e.find("hugepages=4M: expected 2M, 1G or off"), std::string::npos) << e;
  e = ErrorOf(ApplyOption("--memory", "1G,prealloc=yes", c));
  EXPECT_NE(e.find("prealloc=yes: expected on or off"), std::string::npos) << e;
  e = ErrorOf(ApplyOption("--memory", "1G,numa=0", c));
  EXPECT_NE(e.find("unknown setting 'numa'"), std::string::npos) << e;
  e = ErrorOf(ApplyOption("--memory", "1G,shared", c));
  EXPECT_NE(e.find("expected key=value"), std::string::npos) << e;
}

TEST(HostResources, Validate_MemoryNotWholeHugePages_Refused) {
  VmConfig c = WithKernel({});
  ASSERT_TRUE(ApplyOption("--memory", "1025M,hugepages=2M", c));
  std::string e = ErrorOf(ValidateVmConfig(c));
  EXPECT_NE(e.find("not a multiple of the huge page size"), std::string::npos) << e;
  ASSERT_TRUE(ApplyOption("--memory", "1026M,hugepages=2M", c));
  EXPECT_TRUE(ValidateVmConfig(c));
  ASSERT_TRUE(ApplyOption("--memory", "1536M,hugepages=1G", c));
  EXPECT_FALSE(ValidateVmConfig(c));
}

TEST(HostResources, CpusPin_OneHostCpuPerVcpu) {
  VmConfig c;
  ASSERT_TRUE(ApplyOption("--cpus", "4,pin=2-5", c));
  EXPECT_EQ(c.cpus, 4u);
  EXPECT_EQ(c.cpu_affinity, (std::vector<std::vector<uint32_t>>{{2}, {3}, {4}, {5}}));
  EXPECT_TRUE(ValidateVmConfig(WithKernel(c)));
  std::string e = ErrorOf(ApplyOption("--cpus", "4,pin=2-4", c));
  EXPECT_NE(e.find("3 host CPUs for 4 vCPUs"), std::string::npos) << e;
  e = ErrorOf(ApplyOption("--cpus", "2,affinity=1", c));
  EXPECT_NE(e.find("unknown setting 'affinity=1'"), std::string::npos) << e;
  ASSERT_TRUE(ApplyOption("--cpus", "2", c));
  EXPECT_TRUE(c.cpu_affinity.empty());
}

TEST(HostResources, Validate_AffinityPerVcpu) {
  VmConfig c = WithKernel({});
  c.cpus = 2;
  c.cpu_affinity = {{0}};
  EXPECT_NE(ErrorOf(ValidateVmConfig(c)).find("1 lists for 2 vCPUs"), std::string::npos);
  c.cpu_affinity = {{0}, {}};
  EXPECT_NE(ErrorOf(ValidateVmConfig(c)).find("cpu_affinity[1]: an empty CPU list"),
            std::string::npos);
  c.cpu_affinity = {{0}, {0, 1}};
  EXPECT_TRUE(ValidateVmConfig(c));
}

TEST(HostResources, Json_KeysAndRoundTrip) {
  VmConfig c;
  ASSERT_TRUE(ApplyConfigJson(R"({"cpus": 2, "memory": "64M,hugepages=2M,prealloc=on",
                                  "cpu_affinity": [[1], "0-1"], "emulator_affinity": [0]})",
                              "", c));
  EXPECT_EQ(c.memory, 64ull << 20);
  EXPECT_EQ(c.memory_backing, (MemoryBacking{.hugepage_size = 2ull << 20, .prealloc = true}));
  EXPECT_EQ(c.cpu_affinity, (std::vector<std::vector<uint32_t>>{{1}, {0, 1}}));
  EXPECT_EQ(c.emulator_affinity, (std::vector<uint32_t>{0}));
  VmConfig back;
  ASSERT_TRUE(ApplyConfigJson(ConfigToJson(c).dump(), "", back));
  EXPECT_EQ(back.memory, c.memory);
  EXPECT_EQ(back.memory_backing, c.memory_backing);
  EXPECT_EQ(back.cpu_affinity, c.cpu_affinity);
  EXPECT_EQ(back.emulator_affinity, c.emulator_affinity);
  // A default config writes neither key, and memory as a number.
  nlohmann::json plain = ConfigToJson(VmConfig{});
  EXPECT_TRUE(plain["memory"].is_number());
  EXPECT_FALSE(plain.contains("cpu_affinity"));
  for (const char* bad : {R"({"cpu_affinity": [1]})", R"({"cpu_affinity": [[-1]]})",
                          R"({"emulator_affinity": []})", R"({"emulator_affinity": "x"})"}) {
    VmConfig v;
    EXPECT_FALSE(ApplyConfigJson(bad, "", v)) << bad;
  }
}

// Run on a thread of its own: pinning changes the calling thread.
TEST(HostResources, PlaceThreads_PinsCallerAndKeepsProcessCpusForVcpus) {
  auto allowed = AllowedCpus();
  ASSERT_TRUE(allowed) << allowed.error().message();
  ASSERT_FALSE(allowed->empty());
  std::thread([&] {
    VmConfig c = WithKernel({});
    c.cpus = 2;
    c.emulator_affinity = {allowed->front()};
    // No lists of their own: the vCPUs take the CPUs the process had.
    auto placed = PlaceThreads(c);
    ASSERT_TRUE(placed) << placed.error().message();
    ASSERT_EQ(placed->vcpus.size(), 2u);
    EXPECT_EQ(placed->vcpus[0], *allowed);
    auto now = AllowedCpus();
    ASSERT_TRUE(now);
    EXPECT_EQ(*now, (std::vector<uint32_t>{allowed->front()}));
  }).join();
  std::thread([&] {
    VmConfig c = WithKernel({});
    c.cpus = 1;
    c.cpu_affinity = {{allowed->back()}};
    auto placed = PlaceThreads(c);
    ASSERT_TRUE(placed) << placed.error().message();
    EXPECT_EQ(placed->vcpus, (std::vector<std::vector<uint32_t>>{{allowed->back()}}));
    EXPECT_EQ(*AllowedCpus(), *allowed);  // no emulator pin: the caller stays as it was
  }).join();
}

TEST(HostResources, PlaceThreads_CpuOutsideTheProcess_Refused) {
  VmConfig c = WithKernel({});
  c.cpu_affinity = {{kMaxHostCpu - 1}};
  auto placed = PlaceThreads(c);
  ASSERT_FALSE(placed);
  EXPECT_NE(placed.error().message().find("vCPU 0 pin: host CPU 1023 is not one this process"),
            std::string::npos)
      << placed.error().message();
}

}  // namespace
}  // namespace kite
