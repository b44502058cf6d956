// ConfigToJson writes exactly what `kite run --config` reads: configs survive
// ConfigToJson -> cli::ApplyConfigJson field by field.
#include "vmm/config_json.h"

#include <gtest/gtest.h>

#include "vmm/cli.h"

namespace kite {
namespace {

void ExpectSameDisk(const DiskConfig& a, const DiskConfig& b) {
  EXPECT_EQ(a.path, b.path);
  EXPECT_EQ(a.format, b.format);
  EXPECT_EQ(a.read_only, b.read_only);
  EXPECT_EQ(a.cache, b.cache);
  EXPECT_EQ(a.serial, b.serial);
  EXPECT_EQ(a.queues, b.queues);
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.throttle, b.throttle);
  EXPECT_EQ(a.throttle_group, b.throttle_group);
}

void ExpectSameNet(const NetConfig& a, const NetConfig& b) {
  EXPECT_EQ(a.backend, b.backend);
  EXPECT_EQ(a.tap, b.tap);
  EXPECT_EQ(a.mac, b.mac);
  EXPECT_EQ(a.hostfwd, b.hostfwd);
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.queues, b.queues);
  EXPECT_EQ(a.mac_pinning, b.mac_pinning);
}

void ExpectSame(const VmConfig& a, const VmConfig& b) {
  EXPECT_EQ(a.kernel, b.kernel);
  EXPECT_EQ(a.initrd, b.initrd);
  EXPECT_EQ(a.cmdline, b.cmdline);
  EXPECT_EQ(a.cpus, b.cpus);
  EXPECT_EQ(a.memory, b.memory);
  EXPECT_EQ(a.serial, b.serial);
  EXPECT_EQ(a.serial_path, b.serial_path);
  EXPECT_EQ(a.acpi, b.acpi);
  EXPECT_EQ(a.on_reboot, b.on_reboot);
  EXPECT_EQ(a.stats, b.stats);
  EXPECT_EQ(a.host_quirks, b.host_quirks);
  EXPECT_EQ(a.cpu_template, b.cpu_template);
  ASSERT_EQ(a.disks.size(), b.disks.size());
  for (size_t i = 0; i < a.disks.size(); ++i) ExpectSameDisk(a.disks[i], b.disks[i]);
  ASSERT_EQ(a.nets.size(), b.nets.size());
  for (size_t i = 0; i < a.nets.size(); ++i) ExpectSameNet(a.nets[i], b.nets[i]);
  EXPECT_EQ(a.rng, b.rng);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.api_sock, b.api_sock);
  EXPECT_EQ(a.start_paused, b.start_paused);
}

// Reads the JSON back into a config whose every field differs from the defaults, so that a
// key ConfigToJson forgot shows up as a difference.
VmConfig RoundTrip(const VmConfig& config) {
  VmConfig back;
  back.kernel = "other";
  back.initrd = "other";
  back.cmdline = "other";
  back.cpus = 7;
  back.memory = 7 << 20;
  back.serial = SerialMode::kFile;
  back.serial_path = "other";
  back.acpi = !config.acpi;
  back.on_reboot = config.on_reboot == OnReboot::kExit ? OnReboot::kRestart : OnReboot::kExit;
  back.stats = !config.stats;
  back.host_quirks = !config.host_quirks;
  back.cpu_template = "other";
  back.rng = !config.rng;
  back.start_paused = !config.start_paused;
  std::string text = ConfigToJson(config).dump();
  auto applied = cli::ApplyConfigJson(text, "", back);
  EXPECT_TRUE(applied) << applied.error().message() << "\n" << text;
  return back;
}

TEST(ConfigJsonTest, Defaults_RoundTrip) {
  VmConfig config;
  config.kernel = "/boot/vmlinux";
  config.serial_path = "";
  VmConfig back = RoundTrip(config);
  back.serial_path.clear();  // stdio keeps no path
  ExpectSame(config, back);
}

TEST(ConfigJsonTest, EverythingSet_RoundTrips) {
  VmConfig c;
  c.kernel = "images/bzImage";
  c.initrd = "/srv/initrd.img";
  c.cmdline = "console=ttyS0 root=/dev/vda rw quiet \"x=a b\"";
  c.cpus = 4;
  c.memory = 3ull << 30;
  c.serial = SerialMode::kFile;
  c.serial_path = "/var/log/guest console.log";
  c.acpi = false;
  c.on_reboot = OnReboot::kRestart;
  c.stats = true;
  c.host_quirks = false;
  c.cpu_template = "minimal";
  c.rng = false;
  c.name = "web-1";
  c.api_sock = "/run/kite/web-1.sock";
  c.start_paused = true;
  DiskConfig root{"root.qcow2", "qcow2", false, "none", "ROOT-1", 4, "root"};
  root.throttle_group = "tenant-7";
  DiskConfig iso{"/images/tools.iso", "", true, "writeback", "", 1, ""};
  c.disks = {root, iso};
  NetConfig user;
  user.backend = NetBackendKind::kUser;
  user.mac = "52:54:00:12:34:56";
  user.hostfwd = {"tcp::2222-:22", "udp::5353-:53"};
  user.id = "lan";
  NetConfig tap;
  tap.backend = NetBackendKind::kTap;
  tap.tap = "tap0";
  tap.queues = 4;
  tap.mac_pinning = true;
  c.nets = {user, tap};
  ExpectSame(c, RoundTrip(c));
}

TEST(ConfigJsonTest, SerialNone_AndUnnamed_RoundTrips) {
  VmConfig c;
  c.kernel = "k";
  c.serial = SerialMode::kNone;
  VmConfig back = RoundTrip(c);
  back.serial_path.clear();
  ExpectSame(c, back);
}

TEST(ConfigJsonTest, ResultIsValid) {
  VmConfig c;
  c.kernel = "k";
  c.disks = {{"d.img", "raw", false, "writeback", "", 1, ""}};
  VmConfig back;
  ASSERT_TRUE(cli::ApplyConfigJson(ConfigToJson(c).dump(), "", back));
  EXPECT_TRUE(ValidateVmConfig(back));
}

}  // namespace
}  // namespace kite
