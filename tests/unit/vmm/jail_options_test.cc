// The jail's settings (vmm/jail_options.h) and their command-line options (vmm/cli.h).
#include "vmm/jail_options.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "vmm/cli.h"

namespace kite {
namespace {

// The one config file the parser may read: /cfg/vm.json.
std::string g_config;

Result<cli::Command> Parse(std::vector<std::string> args) {
  return cli::ParseCommandLine(args, [](const std::string& path) -> Result<std::string> {
    if (path != "/cfg/vm.json") return Err("no such file");
    return g_config;
  });
}

std::string ParseError(std::vector<std::string> args) {
  auto r = Parse(std::move(args));
  EXPECT_FALSE(r);
  return r ? "" : r.error().message();
}

TEST(JailOptions, Cli_AllSettings) {
  auto r = Parse({"run", "--kernel", "k", "--jail", "/srv/vm1", "--jail-uid", "1000",
                  "--jail-gid=kvm", "--netns", "/var/run/netns/vm1", "--cgroup",
                  "cpu.max=50000 100000,memory.max=1G", "--rlimit", "fsize=8G,nofile=1024"});
  ASSERT_TRUE(r) << r.error().message();
  const auto& run = std::get<cli::Run>(*r);
  ASSERT_TRUE(run.jail.has_value());
  EXPECT_EQ(run.jail->dir, "/srv/vm1");
  EXPECT_EQ(run.jail->uid, "1000");
  EXPECT_EQ(run.jail->gid, "kvm");
  EXPECT_EQ(run.jail->netns, "/var/run/netns/vm1");
  EXPECT_EQ(run.jail->cpu_max, "50000 100000");
  EXPECT_EQ(run.jail->memory_max, std::to_string(1ull << 30));
  EXPECT_EQ(run.jail->fsize, 8ull << 30);
  EXPECT_EQ(run.jail->nofile, 1024u);
  EXPECT_EQ(run.config.kernel, "k");  // the VM's settings are untouched
}

TEST(JailOptions, Cli_NoJailByDefault) {
  auto r = Parse({"run", "--kernel", "k"});
  ASSERT_TRUE(r);
  EXPECT_FALSE(std::get<cli::Run>(*r).jail.has_value());
}

TEST(JailOptions, Cli_SettingWithoutJail_Refused) {
  EXPECT_EQ(ParseError({"run", "--kernel", "k", "--jail-uid", "1000"}),
            "--jail-uid needs --jail DIR");
  EXPECT_EQ(ParseError({"run", "--kernel", "k", "--cgroup", "memory.max=1G"}),
            "--cgroup needs --jail DIR");
}

TEST(JailOptions, Cli_JailWithoutIds_Refused) {
  EXPECT_NE(
      ParseError({"run", "--kernel", "k", "--jail", "/srv"}).find("--jail-uid and --jail-gid"),
      std::string::npos);
  EXPECT_NE(
      ParseError({"run", "--kernel", "k", "--jail", "/srv", "--jail-uid", "7"}).find("--jail-gid"),
      std::string::npos);
  EXPECT_EQ(ParseError({"run", "--kernel", "k", "--jail="}), "option --jail needs a value");
}

TEST(JailOptions, ConfigFile_JailObject_CommandLineWins) {
  g_config = R"({"kernel": "vmlinux", "jail": {"dir": "jail", "uid": 1000, "gid": "kite",
      "netns": "/run/netns/a", "cgroup": {"cpu.max": "20000", "memory.max": "1G"},
      "rlimits": {"fsize": "1M", "nofile": 512}}})";
  auto r = Parse({"run", "--config", "/cfg/vm.json", "--cgroup", "memory.max=2G"});
  ASSERT_TRUE(r) << r.error().message();
  const auto& run = std::get<cli::Run>(*r);
  EXPECT_EQ(run.config.kernel, "/cfg/vmlinux");
  ASSERT_TRUE(run.jail.has_value());
  EXPECT_EQ(run.jail->dir, "/cfg/jail");  // relative to the file, as every path in it
  EXPECT_EQ(run.jail->uid, "1000");
  EXPECT_EQ(run.jail->gid, "kite");
  EXPECT_EQ(run.jail->netns, "/run/netns/a");
  EXPECT_EQ(run.jail->cpu_max, "20000 100000");
  EXPECT_EQ(run.jail->memory_max, std::to_string(2ull << 30));  // the command line's
  EXPECT_EQ(run.jail->fsize, 1u << 20);
  EXPECT_EQ(run.jail->nofile, 512u);
}

TEST(JailOptions, ConfigFile_BadJail_NamedErrors) {
  g_config = R"({"kernel": "k", "jail": {"dir": "/j", "uid": 1, "gid": 1, "chroot": "/"}})";
  EXPECT_EQ(ParseError({"run", "--config", "/cfg/vm.json"}),
            "config /cfg/vm.json: unknown key 'jail.chroot'");
  g_config = R"({"kernel": "k", "jail": {"dir": "/j", "uid": -1, "gid": 1}})";
  EXPECT_EQ(ParseError({"run", "--config", "/cfg/vm.json"}),
            "config /cfg/vm.json: key 'jail.uid' must be a string or a positive number");
  g_config = R"({"kernel": "k", "jail": {"dir": "/j", "uid": 1, "gid": 1,
      "rlimits": {"nofile": 0}}})";
  EXPECT_EQ(ParseError({"run", "--config", "/cfg/vm.json"}),
            "config /cfg/vm.json: key 'jail.rlimits': --rlimit nofile: expected 1 to 1048576");
  g_config = R"({"kernel": "k", "jail": {"uid": 1, "gid": 1}})";
  EXPECT_EQ(ParseError({"run", "--config", "/cfg/vm.json"}), "config key 'jail' needs --jail DIR");
  g_config = R"({"kernel": "k", "jail": []})";
  EXPECT_EQ(ParseError({"run", "--config", "/cfg/vm.json"}),
            "config /cfg/vm.json: key 'jail' must be an object");
}

TEST(JailOptions, Restore_JailOptions) {
  auto r = Parse({"restore", "snap", "--jail=/srv/vm1", "--jail-uid", "7", "--jail-gid", "8",
                  "--rlimit", "nofile=99"});
  ASSERT_TRUE(r) << r.error().message();
  const auto& restore = std::get<cli::Restore>(*r);
  ASSERT_TRUE(restore.jail.has_value());
  EXPECT_EQ(restore.jail->dir, "/srv/vm1");
  EXPECT_EQ(restore.jail->uid, "7");
  EXPECT_EQ(restore.jail->nofile, 99u);
  EXPECT_FALSE(std::get<cli::Restore>(*Parse({"restore", "snap"})).jail.has_value());
  EXPECT_EQ(ParseError({"restore", "snap", "--netns", "/x"}), "--netns needs --jail DIR");
  // Clones in a jail: their overlays go into the jail's directory.
  auto clones = Parse(
      {"restore", "snap", "--jail", "/j", "--jail-uid", "1", "--jail-gid", "1", "--disk-overlays"});
  ASSERT_TRUE(clones) << clones.error().message();
  EXPECT_TRUE(std::get<cli::Restore>(*clones).options.disk_overlays);
  EXPECT_EQ(std::get<cli::Restore>(*clones).options.overlay_parent, "/j");
  EXPECT_EQ(
      std::get<cli::Restore>(*Parse({"restore", "snap", "--disk-overlays"})).options.overlay_parent,
      "");
}

TEST(JailOptions, CpuMax_Forms) {
  JailConfig j;
  ASSERT_TRUE(ParseCgroupLimits("cpu.max=max", j));
  EXPECT_EQ(j.cpu_max, "max 100000");
  ASSERT_TRUE(ParseCgroupLimits("cpu.max=20000", j));
  EXPECT_EQ(j.cpu_max, "20000 100000");
  ASSERT_TRUE(ParseCgroupLimits("cpu.max=max 50000", j));
  EXPECT_EQ(j.cpu_max, "max 50000");
  EXPECT_TRUE(j.memory_max.empty());
  EXPECT_TRUE(j.has_cgroup());
}

TEST(JailOptions, CgroupLimits_BadValues_NamedErrors) {
  JailConfig j;
  auto error = [&](const char* text) {
    auto r = ParseCgroupLimits(text, j);
    EXPECT_FALSE(r) << text;
    return r ? std::string() : r.error().message();
  };
  EXPECT_EQ(error("cpu.max=999"), "--cgroup cpu.max: the quota must be at least 1000 microseconds");
  EXPECT_EQ(error("cpu.max=5000 10"),
            "--cgroup cpu.max: the period must be 1000 to 1000000 microseconds");
  EXPECT_NE(error("cpu.max=lots").find("'lots' is not a number"), std::string::npos);
  EXPECT_NE(error("memory.max=0").find("no memory"), std::string::npos);
  EXPECT_NE(error("memory.max=-5").find("--cgroup memory.max"), std::string::npos);
  EXPECT_EQ(error("pids.max=10"),
            "--cgroup: unknown limit 'pids.max' (expected cpu.max or memory.max)");
  EXPECT_EQ(error("memory.max"), "--cgroup: 'memory.max' is not KEY=VALUE");
  EXPECT_EQ(error("memory.max=1G,"), "--cgroup: '' is not KEY=VALUE");
  EXPECT_FALSE(JailConfig{}.has_cgroup());
}

TEST(JailOptions, Rlimits) {
  JailConfig j;
  ASSERT_TRUE(ParseRlimits("nofile=64", j));
  EXPECT_EQ(j.nofile, 64u);
  EXPECT_FALSE(j.fsize.has_value());
  ASSERT_TRUE(ParseRlimits("fsize=1M", j));
  EXPECT_EQ(j.fsize, 1u << 20);
  auto error = [&](const char* text) {
    auto r = ParseRlimits(text, j);
    EXPECT_FALSE(r) << text;
    return r ? std::string() : r.error().message();
  };
  EXPECT_EQ(error("nofile=0"), "--rlimit nofile: expected 1 to 1048576");
  EXPECT_EQ(error("nofile=2000000"), "--rlimit nofile: expected 1 to 1048576");
  EXPECT_NE(error("fsize=big").find("--rlimit fsize"), std::string::npos);
  EXPECT_EQ(error("core=0"), "--rlimit: unknown limit 'core' (expected fsize or nofile)");
}

}  // namespace
}  // namespace kite
