// Command line and JSON config parsing.
#include "vmm/cli.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "vmm/config_json.h"
#include "vmm/device_options.h"

namespace kite::cli {
namespace {

// Files the parser may "read".
std::map<std::string, std::string> g_files;

Result<std::string> FakeRead(const std::string& path) {
  auto it = g_files.find(path);
  if (it == g_files.end()) return Err("no such file");
  return it->second;
}

Result<Command> Parse(std::vector<std::string> args) {
  return ParseCommandLine(args, FakeRead);
}

VmConfig ParseRun(std::vector<std::string> args) {
  auto r = Parse(std::move(args));
  EXPECT_TRUE(r) << (r ? "" : r.error().message());
  if (!r || !std::holds_alternative<Run>(*r)) return {};
  return std::get<Run>(*r).config;
}

std::string ParseError(std::vector<std::string> args) {
  auto r = Parse(std::move(args));
  EXPECT_FALSE(r);
  return r ? "" : r.error().message();
}

TEST(Cli, Run_AllOptions) {
  VmConfig c = ParseRun({"run", "--kernel", "vmlinux", "--initrd", "initrd.cpio", "--cmdline",
                         "console=ttyS0 quiet", "--cpus", "4", "--memory", "1G", "--serial",
                         "file:/tmp/out.log", "--no-acpi", "--on-reboot", "restart", "--stats",
                         "--no-host-quirks"});
  EXPECT_EQ(c.kernel, "vmlinux");
  EXPECT_EQ(c.initrd, "initrd.cpio");
  EXPECT_EQ(c.cmdline, "console=ttyS0 quiet");
  EXPECT_EQ(c.cpus, 4u);
  EXPECT_EQ(c.memory, 1ull << 30);
  EXPECT_EQ(c.serial, SerialMode::kFile);
  EXPECT_EQ(c.serial_path, "/tmp/out.log");
  EXPECT_FALSE(c.acpi);
  EXPECT_EQ(c.on_reboot, OnReboot::kRestart);
  EXPECT_TRUE(c.stats);
  EXPECT_FALSE(c.host_quirks);
}

TEST(Cli, Run_Defaults) {
  VmConfig c = ParseRun({"run", "--kernel", "k"});
  EXPECT_EQ(c.cpus, 1u);
  EXPECT_EQ(c.memory, 512ull << 20);
  EXPECT_EQ(c.serial, SerialMode::kStdio);
  EXPECT_TRUE(c.acpi);
  EXPECT_EQ(c.on_reboot, OnReboot::kExit);
  EXPECT_TRUE(c.host_quirks);
}

TEST(Cli, Run_EqualsForm) {
  VmConfig c = ParseRun({"run", "--kernel=k", "--cpus=2", "--serial=none"});
  EXPECT_EQ(c.kernel, "k");
  EXPECT_EQ(c.cpus, 2u);
  EXPECT_EQ(c.serial, SerialMode::kNone);
}

TEST(Cli, HelpAndVersion) {
  EXPECT_TRUE(std::holds_alternative<Help>(*Parse({"--help"})));
  EXPECT_TRUE(std::holds_alternative<Help>(*Parse({"run", "--help"})));
  EXPECT_TRUE(std::holds_alternative<ShowVersion>(*Parse({"--version"})));
  EXPECT_NE(UsageText().find("--on-reboot"), std::string::npos);
}

TEST(Cli, NoCommand_Refused) {
  EXPECT_NE(ParseError({}).find("no command"), std::string::npos);
}

TEST(Cli, UnknownCommand_Refused) {
  EXPECT_NE(ParseError({"migrate", "dir"}).find("unknown command 'migrate'"), std::string::npos);
}

TEST(Cli, Restore_Options) {
  std::vector<std::string> args = {"restore",    "snap",   "--paused", "--disk-overlays",
                                   "--api-sock", "v.sock", "--serial", "file:out.txt"};
  auto command = Parse(args);
  ASSERT_TRUE(command) << command.error().message();
  const RestoreOptions& o = std::get<cli::Restore>(*command).options;
  EXPECT_EQ(o.path, "snap");
  EXPECT_TRUE(o.paused);
  EXPECT_TRUE(o.disk_overlays);
  EXPECT_EQ(o.api_sock, "v.sock");
  EXPECT_TRUE(o.override_serial);
  EXPECT_EQ(o.serial, SerialMode::kFile);
  EXPECT_EQ(o.serial_path, "out.txt");
}

TEST(Cli, Seccomp_DefaultOn_LogOffAccepted_OtherRefused) {
  auto run = Parse({"run", "--kernel", "k"});
  ASSERT_TRUE(run) << run.error().message();
  EXPECT_EQ(std::get<cli::Run>(*run).seccomp, seccomp::Mode::kKill);
  run = Parse({"run", "--kernel", "k", "--seccomp=log"});
  ASSERT_TRUE(run) << run.error().message();
  EXPECT_EQ(std::get<cli::Run>(*run).seccomp, seccomp::Mode::kLog);
  run = Parse({"run", "--kernel", "k", "--seccomp", "off"});
  ASSERT_TRUE(run) << run.error().message();
  EXPECT_EQ(std::get<cli::Run>(*run).seccomp, seccomp::Mode::kOff);
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--seccomp", "loose"})
                .find("--seccomp: seccomp mode 'loose' is not one of on, log, off"),
            std::string::npos);

  auto restore = Parse({"restore", "snap"});
  ASSERT_TRUE(restore) << restore.error().message();
  EXPECT_EQ(std::get<cli::Restore>(*restore).seccomp, seccomp::Mode::kKill);
  restore = Parse({"restore", "snap", "--seccomp=off"});
  ASSERT_TRUE(restore) << restore.error().message();
  EXPECT_EQ(std::get<cli::Restore>(*restore).seccomp, seccomp::Mode::kOff);
  restore = Parse({"restore", "--seccomp", "log", "snap"});
  ASSERT_TRUE(restore) << restore.error().message();
  EXPECT_EQ(std::get<cli::Restore>(*restore).seccomp, seccomp::Mode::kLog);
  EXPECT_NE(ParseError({"restore", "snap", "--seccomp", "x"}).find("--seccomp"), std::string::npos);
}

TEST(Cli, Restore_NoDirOrTwoDirs_Refused) {
  EXPECT_NE(ParseError({"restore"}).find("needs a snapshot directory"), std::string::npos);
  EXPECT_NE(ParseError({"restore", "a", "b"}).find("one snapshot directory"), std::string::npos);
  EXPECT_NE(ParseError({"restore", "a", "--bogus"}).find("--bogus"), std::string::npos);
}

TEST(Cli, Ctl_PassesArgumentsThrough) {
  std::vector<std::string> args = {"ctl", "--json", "v.sock", "stop"};
  auto command = Parse(args);
  ASSERT_TRUE(command);
  std::vector<std::string> expected = {"--json", "v.sock", "stop"};
  EXPECT_EQ(std::get<cli::Ctl>(*command).args, expected);
}

TEST(Cli, ApiSockNamePaused_Options) {
  std::vector<std::string> args = {"run", "--kernel", "k",   "--api-sock",
                                   "s",   "--name",   "vm1", "--paused"};
  auto command = Parse(args);
  ASSERT_TRUE(command) << command.error().message();
  const VmConfig& c = std::get<cli::Run>(*command).config;
  EXPECT_EQ(c.api_sock, "s");
  EXPECT_EQ(c.name, "vm1");
  EXPECT_TRUE(c.start_paused);
}

TEST(Cli, DeviceIds_DefaultsUserGivenAndDuplicates) {
  std::vector<std::string> args = {"run",
                                   "--kernel",
                                   "k",
                                   "--disk",
                                   "path=a,format=raw",
                                   "--disk",
                                   "path=b,format=raw,id=data",
                                   "--net",
                                   "user,id=lan"};
  auto command = Parse(args);
  ASSERT_TRUE(command) << command.error().message();
  const VmConfig& c = std::get<cli::Run>(*command).config;
  EXPECT_EQ(DiskId(c, 0), "vda");
  EXPECT_EQ(DiskId(c, 1), "data");
  EXPECT_EQ(NetId(c, 0), "lan");
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--disk", "path=a,format=raw,id=x", "--disk",
                        "path=b,format=raw,id=x"})
                .find("device id 'x' is used twice"),
            std::string::npos);
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--disk", "path=a,format=raw,id=rng0"})
                .find("used twice"),
            std::string::npos);
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--disk", "path=a,format=raw,id=1x"})
                .find("must start with a letter"),
            std::string::npos);
}

TEST(Cli, UnknownOption_Refused) {
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--gpu"}).find("--gpu"), std::string::npos);
}

TEST(Cli, MissingValue_Refused) {
  EXPECT_NE(ParseError({"run", "--kernel"}).find("needs a value"), std::string::npos);
}

TEST(Cli, FlagWithValue_Refused) {
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--stats=yes"}).find("takes no value"),
            std::string::npos);
}

TEST(Cli, NoKernel_Refused) {
  EXPECT_NE(ParseError({"run"}).find("kernel"), std::string::npos);
}

TEST(Cli, CpusZero_Refused) {
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--cpus", "0"}).find("--cpus"), std::string::npos);
}

TEST(Cli, Cpus255_Refused) {
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--cpus", "255"}).find("out of range"),
            std::string::npos);
}

TEST(Cli, CpusGarbage_Refused) {
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--cpus", "2x"}).find("not a number"),
            std::string::npos);
}

TEST(Cli, MemoryGarbage_Refused) {
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--memory", "lots"}).find("--memory"),
            std::string::npos);
}

TEST(Cli, MemoryTooSmall_Refused) {
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--memory", "1M"}).find("too small"),
            std::string::npos);
}

TEST(Cli, BadSerial_Refused) {
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--serial", "tcp:1"}).find("serial mode"),
            std::string::npos);
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--serial", "file:"}).find("serial mode"),
            std::string::npos);
}

TEST(Cli, BadOnReboot_Refused) {
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--on-reboot", "halt"}).find("on-reboot"),
            std::string::npos);
}

TEST(Cli, Config_AppliedAndCommandLineWins) {
  g_files["/etc/vm.json"] =
      R"({"kernel": "vmlinux", "cpus": 2, "memory": "256M", "acpi": false, "stats": true,
          "serial": "file:out.log", "on_reboot": "restart", "cmdline": "quiet"})";
  VmConfig c = ParseRun({"run", "--cpus", "3", "--config", "/etc/vm.json"});
  EXPECT_EQ(c.kernel, "/etc/vmlinux");  // relative to the config file
  EXPECT_EQ(c.serial_path, "/etc/out.log");
  EXPECT_EQ(c.cpus, 3u);
  EXPECT_EQ(c.memory, 256ull << 20);
  EXPECT_FALSE(c.acpi);
  EXPECT_TRUE(c.stats);
  EXPECT_EQ(c.on_reboot, OnReboot::kRestart);
  EXPECT_EQ(c.cmdline, "quiet");
}

TEST(Cli, Config_MemoryAsBytes) {
  VmConfig c;
  ASSERT_TRUE(ApplyConfigJson(R"({"memory": 67108864})", "", c));
  EXPECT_EQ(c.memory, 64ull << 20);
}

TEST(Cli, Config_MissingFile_NamesIt) {
  EXPECT_NE(ParseError({"run", "--config", "/nope.json"}).find("/nope.json"), std::string::npos);
}

std::string JsonError(const std::string& text) {
  VmConfig c;
  auto r = ApplyConfigJson(text, "", c);
  EXPECT_FALSE(r) << text;
  return r ? "" : r.error().message();
}

TEST(Cli, Config_UnknownKey_NamesKey) {
  EXPECT_NE(JsonError(R"({"kernal": "x"})").find("unknown key 'kernal'"), std::string::npos);
}

TEST(Cli, Config_WrongType_NamesKey) {
  EXPECT_NE(JsonError(R"({"cpus": "four"})").find("'cpus'"), std::string::npos);
  EXPECT_NE(JsonError(R"({"acpi": 1})").find("'acpi'"), std::string::npos);
  EXPECT_NE(JsonError(R"({"kernel": 7})").find("'kernel'"), std::string::npos);
  EXPECT_NE(JsonError(R"({"memory": [1]})").find("'memory'"), std::string::npos);
}

TEST(Cli, C2_Config_OutOfRangeNumbers_Refused) {
  EXPECT_NE(JsonError(R"({"cpus": 18446744073709551615})").find("'cpus'"), std::string::npos);
  EXPECT_NE(JsonError(R"({"cpus": -1})").find("'cpus'"), std::string::npos);
  EXPECT_NE(JsonError(R"({"memory": -1})").find("'memory'"), std::string::npos);
  EXPECT_NE(JsonError(R"({"cpus": 2.5})").find("'cpus'"), std::string::npos);
}

TEST(Cli, C1_Config_NotJson_Refused) {
  EXPECT_NE(JsonError("{\"kernel\": ").find("not valid JSON"), std::string::npos);
  EXPECT_NE(JsonError("[1, 2]").find("object"), std::string::npos);
}

TEST(Cli, ExampleConfigFile_Parses) {
  std::string path = std::string(KITE_SOURCE_DIR) + "/examples/vm.json";
  auto r = ParseCommandLine(std::vector<std::string>{"run", "--config", path});
  ASSERT_TRUE(r) << r.error().message();
  const VmConfig& c = std::get<cli::Run>(*r).config;
  EXPECT_EQ(c.cpus, 2u);
  EXPECT_EQ(c.kernel, std::string(KITE_SOURCE_DIR) + "/examples/../../shared/guest/vmlinux");
}

}  // namespace
}  // namespace kite::cli

namespace kite::cli {
namespace {

// --transport and "transport" (docs/CLI.md, docs/PCI.md).
TEST(Cli, Transport_DefaultMmio_PciFromOptionAndJson) {
  EXPECT_EQ(ParseRun({"run", "--kernel", "k"}).transport, VirtioTransportKind::kMmio);
  EXPECT_EQ(ParseRun({"run", "--kernel", "k", "--transport", "pci"}).transport,
            VirtioTransportKind::kPci);
  EXPECT_EQ(ParseRun({"run", "--kernel", "k", "--transport=mmio"}).transport,
            VirtioTransportKind::kMmio);
  VmConfig c;
  ASSERT_TRUE(ApplyConfigJson(R"({"transport": "pci"})", "", c));
  EXPECT_EQ(c.transport, VirtioTransportKind::kPci);
  EXPECT_FALSE(ApplyConfigJson(R"({"transport": 1})", "", c));
}

TEST(Cli, Transport_Unknown_Refused) {
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--transport", "isa"}).find("expected mmio or pci"),
            std::string::npos);
  VmConfig c;
  auto r = ApplyConfigJson(R"({"transport": "ccw"})", "", c);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("transport"), std::string::npos);
}

TEST(Cli, Transport_PciWithoutAcpi_Refused) {
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--transport", "pci", "--no-acpi"})
                .find("pci needs ACPI"),
            std::string::npos);
}

VmConfig WithKernel(VmConfig c) {
  c.kernel = "k";
  return c;
}

// "pci_slots" (a snapshot's config records every device's slot) and --unplug-timeout.
TEST(Cli, PciSlots_FromJson_CheckedAndRoundTrip) {
  VmConfig c;
  ASSERT_TRUE(
      ApplyConfigJson(R"({"transport": "pci", "pci_slots": {"vda": 3, "net0": 1}})", "", c));
  EXPECT_EQ(c.pci_slots, (std::map<std::string, uint32_t>{{"vda", 3}, {"net0", 1}}));
  EXPECT_TRUE(ValidateVmConfig(WithKernel(c)));
  VmConfig back;
  ASSERT_TRUE(ApplyConfigJson(ConfigToJson(c).dump(), "", back));
  EXPECT_EQ(back.pci_slots, c.pci_slots);

  VmConfig bad;
  EXPECT_FALSE(ApplyConfigJson(R"({"pci_slots": [1]})", "", bad));
  EXPECT_FALSE(ApplyConfigJson(R"({"pci_slots": {"vda": "1"}})", "", bad));
  for (const char* json : {R"({"transport": "pci", "pci_slots": {"vda": 0}})",
                           R"({"transport": "pci", "pci_slots": {"vda": 32}})",
                           R"({"transport": "pci", "pci_slots": {"vda": 2, "vdb": 2}})",
                           R"({"pci_slots": {"vda": 2}})"}) {
    VmConfig v;
    ASSERT_TRUE(ApplyConfigJson(json, "", v)) << json;
    auto r = ValidateVmConfig(WithKernel(v));
    ASSERT_FALSE(r) << json;
    EXPECT_NE(r.error().message().find("pci_slots"), std::string::npos) << r.error().message();
  }
}

// Rate limits survive the JSON config (and with it a snapshot's config.json); an unlimited
// device writes no rate keys.
TEST(Cli, RateLimits_JsonRoundTrip) {
  VmConfig c = WithKernel({});
  DiskConfig disk;
  disk.path = "/d.raw";
  disk.format = "raw";
  c.disks.push_back(disk);
  c.disks.push_back(disk);
  c.disks[1].path = "/e.raw";
  c.disks[0].throttle.total = {
      .bps = 1 << 20, .bps_max = 2 << 20, .bps_burst = 3, .ops = 50, .ops_max = 60, .ops_burst = 4};
  c.disks[1].throttle.read = {
      .bps = 100, .bps_max = 200, .bps_burst = 1, .ops = 5, .ops_max = 6, .ops_burst = 2};
  c.disks[1].throttle.write = {
      .bps = 300, .bps_max = 0, .bps_burst = 0, .ops = 7, .ops_max = 0, .ops_burst = 3};
  c.nets.push_back({});
  c.nets[0].throttle = {
      .bps = 125000, .bps_max = 0, .bps_burst = 0, .ops = 1000, .ops_max = 0, .ops_burst = 9};
  nlohmann::json j = ConfigToJson(c);
  EXPECT_EQ(j["disks"][0]["iops_burst"], 4);
  EXPECT_EQ(j["nets"][0]["pps"], 1000);
  EXPECT_FALSE(j["disks"][1].contains("bps"));
  EXPECT_EQ(j["disks"][1]["bps_rd_max"], 200);
  EXPECT_EQ(j["disks"][1]["iops_wr_burst"], 3);
  VmConfig back;
  ASSERT_TRUE(ApplyConfigJson(j.dump(), "", back));
  ASSERT_EQ(back.disks.size(), 2u);
  EXPECT_EQ(back.disks[0].throttle, c.disks[0].throttle);
  EXPECT_EQ(back.disks[1].throttle, c.disks[1].throttle);
  EXPECT_EQ(back.disks[1].throttle.total, Throttle{});
  ASSERT_EQ(back.nets.size(), 1u);
  EXPECT_EQ(back.nets[0].throttle, c.nets[0].throttle);
}

TEST(Cli, UnplugTimeout_SecondsOption_MillisecondsJson) {
  EXPECT_EQ(ParseRun({"run", "--kernel", "k"}).unplug_timeout_ms, 10000u);
  EXPECT_EQ(ParseRun({"run", "--kernel", "k", "--unplug-timeout", "2.5"}).unplug_timeout_ms, 2500u);
  EXPECT_EQ(ParseRun({"run", "--kernel", "k", "--unplug-timeout=0.001"}).unplug_timeout_ms, 1u);
  for (const char* bad : {"0", "-1", "abc", "3601", "1e9"}) {
    EXPECT_NE(
        ParseError({"run", "--kernel", "k", "--unplug-timeout", bad}).find("--unplug-timeout"),
        std::string::npos)
        << bad;
  }
  VmConfig c;
  ASSERT_TRUE(ApplyConfigJson(R"({"unplug_timeout_ms": 500})", "", c));
  EXPECT_EQ(c.unplug_timeout_ms, 500u);
  EXPECT_FALSE(ApplyConfigJson(R"({"unplug_timeout_ms": 0})", "", c));
  EXPECT_FALSE(ApplyConfigJson(R"({"unplug_timeout_ms": 3600001})", "", c));
}

// Two NICs with one MAC (C10): refused on the command line as in device_add.
TEST(Cli, Net_SameMacTwice_Refused) {
  std::string err = ParseError({"run", "--kernel", "k", "--net", "user,mac=52:54:00:12:34:56",
                                "--net", "user,mac=52:54:00:12:34:56"});
  EXPECT_NE(err.find("net net1: MAC address 52:54:00:12:34:56 is already used"), std::string::npos)
      << err;
  EXPECT_NE(ParseError({"run", "--kernel", "k", "--net", "user,mac=52:54:00:ab:cd:ef", "--net",
                        "user,mac=52:54:00:AB:CD:EF"})
                .find("is already used"),
            std::string::npos)
      << "compared without case";
  ParseRun({"run", "--kernel", "k", "--net", "user,mac=52:54:00:12:34:56", "--net",
            "user,mac=52:54:00:12:34:57", "--net", "user"});
}

}  // namespace
}  // namespace kite::cli
