// Hotplug with a Linux guest that does nothing to help (the "counter" guest of make-rootfs.sh
// and its /bin/hotplug-watch, tests/e2e/hotplug-watch.sh), on a --transport pci machine, over
// the control socket as a QMP client would:
//   * a qcow2 disk hot-added: the guest has /dev/vdb by itself, makes a file system, writes a
//     file, syncs; device_del: DEVICE_DELETED once the guest let go, and the host reads the file
//     from the image (qemu-img check clean). Errors on the way: the root disk, an unknown id, a
//     duplicate id, an image in use.
//   * a user-mode NIC hot-added: the guest brings it up with DHCP and pings the gateway through
//     it; device_del: the interface is gone.
//   * a disk hot-added, then a snapshot; restored in a new process, the disk is there again in
//     the same slot, the guest goes on, and the disk can be removed from the restored VM.
//   * a guest that ignores the unplug request (acpiphp.disable=1): DEVICE_UNPLUG_GUEST_ERROR
//     after --unplug-timeout, and the device stays and keeps serving the guest.
//   * a disk removed while the guest reads it without a pause (C11): the requests in flight are
//     drained, DEVICE_DELETED comes, the guest lets go and goes on, the image is clean.
//   * a disk added in prelaunch (--paused): the guest boots with it; removed later.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "counter_guest.h"
#include "linux_guest.h"
#include "testing/kvm_required.h"
#include "testing/qmp_client.h"
#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

using nlohmann::json;

constexpr char kCmdline[] =
    "console=ttyS0 reboot=k panic=1 quiet root=/dev/vda rw rootfstype=ext4 init=/init "
    "clocksource=kvm-clock kite.limit=100000";

class HotplugE2e : public CounterGuestTest {
 protected:
  std::string Path(const std::string& name) const { return dir_.File(name); }

  void Start(std::vector<std::string> extra, const std::string& cmdline = kCmdline) {
    std::vector<std::string> argv = {
        KITE_BINARY,   "run",  "--kernel",  kernel_,
        "--memory",    "256M", "--cmdline", cmdline,
        "--transport", "pci",  "--disk",    "path=" + Path("root.qcow2") + ",format=qcow2",
        "--api-sock",  sock_,  "--serial",  "file:" + serial_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    kite_ = std::make_unique<KiteInBackground>(argv);
    ASSERT_TRUE(qmp_.Connect(sock_, 60s)) << Slurp(serial_);
    ASSERT_TRUE(qmp_.Negotiate());
  }

  // Waits until the console has `text` (after the first `skip` bytes); false after 120 s.
  bool WaitConsole(const std::string& text, size_t skip = 0) {
    auto deadline = std::chrono::steady_clock::now() + 120s;
    while (std::chrono::steady_clock::now() < deadline && kite_->running()) {
      std::string out = Slurp(serial_);
      if (out.size() > skip && out.find(text, skip) != std::string::npos) return true;
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "the guest never printed '" << text << "'\n" << Slurp(serial_);
    return false;
  }

  // A test that stopped half-way must not leave its kite running.
  void TearDown() override {
    if (kite_ && kite_->running()) kite_->Kill();
  }

  json Run(const std::string& command) { return qmp_.Run(command); }
  static std::string Error(const json& reply) {
    return reply.contains("error") ? reply["error"]["desc"].get<std::string>() : "";
  }
  // query-block's devices by id ("qdev": kite's disks have no legacy drive name).
  std::vector<std::string> BlockIds() {
    json reply = Run(R"({"execute":"query-block"})");
    EXPECT_TRUE(reply.contains("return") && reply["return"].is_array()) << reply;
    std::vector<std::string> ids;
    for (const json& b : reply.value("return", json::array())) ids.push_back(b["qdev"]);
    return ids;
  }
  uint64_t ReadOps(const std::string& id) {
    json reply = Run(R"({"execute":"query-blockstats"})");  // kept: the loop reads into it
    for (const json& s : reply["return"]) {
      if (s["qdev"] == id) return s["stats"]["rd_operations"].get<uint64_t>();
    }
    return 0;
  }
  // The file the guest wrote on a disk image: qemu-img check clean, then read with debugfs.
  std::string HelloOnImage(const std::string& image) {
    EXPECT_TRUE(Sh("qemu-img check " + image));
    std::string raw = image + ".raw";
    EXPECT_TRUE(Sh("qemu-img convert -O raw " + image + " " + raw));
    std::string out;
    Sh("debugfs -R 'cat /hello.txt' " + raw + " 2>/dev/null", &out);
    return out;
  }

  std::string serial_ = dir_.File("serial.txt");
  std::string sock_ = dir_.File("api.sock");
  std::unique_ptr<KiteInBackground> kite_;
  QmpClient qmp_;
};

TEST_F(HotplugE2e, DiskAndNic_FoundUsedAndReleasedByTheGuest_Errors) {
  Start({});
  ASSERT_TRUE(WaitConsole("kite-counter: 2 "));
  ASSERT_TRUE(Sh(std::string(KITE_IMG_BINARY) + " create -f qcow2 " + Path("data.qcow2") + " 32M"));

  // The disk: found, formatted and written by the guest on its own.
  // With a rate limit on its writes, as --disk takes it (high enough not to slow the test).
  json added = Run(R"({"execute":"device_add","arguments":{"driver":"virtio-blk-pci",)"
                   R"("id":"disk1","path":")" +
                   Path("data.qcow2") + R"(","format":"qcow2","bps_wr":67108864,"iops_wr":5000}})");
  ASSERT_EQ(added, json({{"return", json::object()}})) << added;
  ASSERT_TRUE(WaitConsole("kite-hotplug: disk vdb added size 65536"));
  ASSERT_TRUE(WaitConsole("kite-hotplug: disk vdb written"));
  EXPECT_EQ(BlockIds(), (std::vector<std::string>{"vda", "disk1"}));
  json blocks = Run(R"({"execute":"query-block"})");
  EXPECT_EQ(blocks["return"][1]["inserted"]["bps_wr"], 67108864) << blocks;
  EXPECT_EQ(blocks["return"][1]["inserted"]["iops_wr"], 5000) << blocks;
  EXPECT_EQ(blocks["return"][1]["inserted"]["bps"], 0) << blocks;

  // C10, C11 while it is there.
  EXPECT_EQ(Error(Run(R"({"execute":"device_add","arguments":{"driver":"virtio-blk-pci",)"
                      R"("id":"disk1","path":")" +
                      Path("data.qcow2") + R"(","format":"qcow2"}})")),
            "device_add disk1: device id 'disk1' is used twice");
  std::string locked =
      Error(Run(R"({"execute":"device_add","arguments":{"driver":"virtio-blk-pci",)"
                R"("id":"disk2","path":")" +
                Path("data.qcow2") + R"(","format":"qcow2"}})"));
  EXPECT_NE(locked.find("disk disk2"), std::string::npos) << locked;
  EXPECT_NE(locked.find("lock"), std::string::npos) << locked;
  EXPECT_EQ(Error(Run(R"({"execute":"device_del","arguments":{"id":"vda"}})")),
            "device_del: 'vda' is the root disk (the first disk): it cannot be removed");
  json unknown = Run(R"({"execute":"device_del","arguments":{"id":"nosuch"}})");
  EXPECT_EQ(unknown["error"]["class"], "DeviceNotFound") << unknown;
  EXPECT_EQ(BlockIds(), (std::vector<std::string>{"vda", "disk1"})) << "nothing half-added";

  // Removed: the event once the guest let go; the host reads what the guest wrote.
  ASSERT_EQ(Run(R"({"execute":"device_del","arguments":{"id":"disk1"}})"),
            json({{"return", json::object()}}));
  EXPECT_EQ(Error(Run(R"({"execute":"device_del","arguments":{"id":"disk1"}})")).empty(), false);
  json deleted = qmp_.WaitEvent("DEVICE_DELETED", 30s);
  ASSERT_FALSE(deleted.is_null()) << Slurp(serial_);
  EXPECT_EQ(deleted["data"], json({{"device", "disk1"}, {"path", "/machine/peripheral/disk1"}}));
  ASSERT_TRUE(WaitConsole("kite-hotplug: disk vdb removed"));
  EXPECT_EQ(BlockIds(), std::vector<std::string>{"vda"});
  EXPECT_EQ(HelloOnImage(Path("data.qcow2")), "hello from vdb\n");

  // The NIC: DHCP and a ping through it; removed, the interface is gone.
  size_t mark = Slurp(serial_).size();
  ASSERT_EQ(Run(R"({"execute":"device_add","arguments":{"driver":"virtio-net-pci","id":"nic1",)"
                R"("backend":"user","mac":"52:54:00:12:34:99","pps":10000}})"),
            json({{"return", json::object()}}));
  ASSERT_TRUE(WaitConsole("kite-hotplug: nic eth0 ip 10.0.2.15 ping ok", mark));
  json nic = Run(R"({"execute":"x-kite-query-net-throttle","arguments":{"id":"nic1"}})");
  EXPECT_EQ(nic["return"][0]["pps"], 10000) << nic;
  EXPECT_NE(Error(Run(R"({"execute":"device_add","arguments":{"driver":"virtio-net-pci",)"
                      R"("id":"nic2","mac":"52:54:00:12:34:99"}})"))
                .find("already used"),
            std::string::npos);
  ASSERT_EQ(Run(R"({"execute":"device_del","arguments":{"id":"nic1"}})"),
            json({{"return", json::object()}}));
  deleted = qmp_.WaitEvent("DEVICE_DELETED", 30s);
  ASSERT_FALSE(deleted.is_null()) << Slurp(serial_);
  EXPECT_EQ(deleted["data"]["device"], "nic1");
  ASSERT_TRUE(WaitConsole("kite-hotplug: nic eth0 removed", mark));

  // The guest still runs and the VM powers off cleanly.
  Run(R"({"execute":"system_powerdown"})");
  const ProcessResult& r = kite_->Join();
  EXPECT_TRUE(r.exited && r.exit_status == 0) << r.Describe();
  EXPECT_EQ(Slurp(serial_).find("kite-hotplug: disk vdb failed"), std::string::npos);
}

// device_add before the first cont (--paused, "prelaunch"): a cold plug. The guest finds the
// disk as it boots, like one from the command line, and it can be removed later like any other.
// device_del is refused until the guest runs (nothing would let go of the device).
TEST_F(HotplugE2e, ColdPlugInPrelaunch_GuestBootsWithTheDisk_RemovableLater) {
  Start({"--paused"});
  ASSERT_TRUE(Sh(std::string(KITE_IMG_BINARY) + " create -f qcow2 " + Path("cold.qcow2") + " 32M"));
  EXPECT_EQ(Run(R"({"execute":"query-status"})")["return"]["status"], "prelaunch");
  ASSERT_EQ(Run(R"({"execute":"device_add","arguments":{"driver":"virtio-blk-pci",)"
                R"("id":"cold1","path":")" +
                Path("cold.qcow2") + R"(","format":"qcow2"}})"),
            json({{"return", json::object()}}));
  EXPECT_EQ(BlockIds(), (std::vector<std::string>{"vda", "cold1"}));
  json early = Run(R"({"execute":"device_del","arguments":{"id":"cold1"}})");
  EXPECT_EQ(early["error"]["class"], "DeviceNotActive") << early;
  ASSERT_EQ(Run(R"({"execute":"cont"})"), json({{"return", json::object()}}));
  ASSERT_TRUE(WaitConsole("kite-hotplug: disk vdb added size 65536"));
  ASSERT_TRUE(WaitConsole("kite-hotplug: disk vdb written"));
  ASSERT_EQ(Run(R"({"execute":"device_del","arguments":{"id":"cold1"}})"),
            json({{"return", json::object()}}));
  json deleted = qmp_.WaitEvent("DEVICE_DELETED", 30s);
  ASSERT_FALSE(deleted.is_null()) << Slurp(serial_);
  EXPECT_EQ(deleted["data"]["device"], "cold1");
  ASSERT_TRUE(WaitConsole("kite-hotplug: disk vdb removed"));
  EXPECT_EQ(HelloOnImage(Path("cold.qcow2")), "hello from vdb\n");
  Run(R"({"execute":"system_powerdown"})");
  const ProcessResult& r = kite_->Join();
  EXPECT_TRUE(r.exited && r.exit_status == 0) << r.Describe();
}

TEST_F(HotplugE2e, HotAddedDisk_InSnapshot_RestoredInItsSlot_RemovableThere) {
  Start({});
  ASSERT_TRUE(WaitConsole("kite-counter: 2 "));
  ASSERT_TRUE(Sh(std::string(KITE_IMG_BINARY) + " create -f qcow2 " + Path("data.qcow2") + " 32M"));
  ASSERT_EQ(Run(R"({"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"disk1",)"
                R"("addr":"0x9","path":")" +
                Path("data.qcow2") + R"(","format":"qcow2"}})"),
            json({{"return", json::object()}}));
  ASSERT_TRUE(WaitConsole("kite-hotplug: disk vdb written"));
  std::string snap = Path("snap");
  ASSERT_TRUE(Run(R"({"execute":"stop"})").contains("return"));
  json saved = Run(R"({"execute":"x-vm-snapshot-save","arguments":{"path":")" + snap + "\"}}");
  ASSERT_TRUE(saved.contains("return")) << saved;
  json config = json::parse(Slurp(snap + "/config.json"), nullptr, false);
  EXPECT_EQ(config["pci_slots"]["disk1"], 9) << config;
  kite_->Kill();
  kite_->Join();
  size_t before = Slurp(serial_).size();

  // Restored: the same devices, the guest goes on and still has vdb, which can be removed.
  std::string sock2 = Path("api2.sock");
  kite_ = std::make_unique<KiteInBackground>(std::vector<std::string>{
      KITE_BINARY, "restore", snap, "--api-sock", sock2, "--serial", "file:" + serial_ + ".2"});
  QmpClient qmp;
  ASSERT_TRUE(qmp.Connect(sock2, 60s));
  ASSERT_TRUE(qmp.Negotiate());
  json blocks = qmp.Run(R"({"execute":"query-block"})");
  ASSERT_EQ(blocks["return"].size(), 2u) << blocks;
  EXPECT_EQ(blocks["return"][1]["qdev"], "disk1");
  serial_ += ".2";
  ASSERT_TRUE(WaitConsole("kite-counter: "));
  (void)before;
  ASSERT_EQ(qmp.Run(R"({"execute":"device_del","arguments":{"id":"disk1"}})"),
            json({{"return", json::object()}}));
  json deleted = qmp.WaitEvent("DEVICE_DELETED", 30s);
  EXPECT_FALSE(deleted.is_null()) << Slurp(serial_);
  ASSERT_TRUE(WaitConsole("kite-hotplug: disk vdb removed"));
  qmp.Run(R"({"execute":"quit"})");
  EXPECT_NE(kite_->Join().err.find("kite: device_del disk1: released by the guest"),
            std::string::npos)
      << kite_->Join().Describe();
  EXPECT_EQ(HelloOnImage(Path("data.qcow2")), "hello from vdb\n");
}

TEST_F(HotplugE2e, UnplugDuringGuestIo_Drained_Deleted_GuestGoesOn) {
  Start({});
  ASSERT_TRUE(WaitConsole("kite-counter: 2 "));
  ASSERT_TRUE(Sh(std::string(KITE_IMG_BINARY) + " create -f qcow2 " + Path("busy.qcow2") + " 32M"));
  json added = Run(R"({"execute":"device_add","arguments":{"driver":"virtio-blk-pci",)"
                   R"("id":"busy","serial":"busy","path":")" +
                   Path("busy.qcow2") + R"(","format":"qcow2"}})");
  ASSERT_EQ(added, json({{"return", json::object()}})) << added;
  ASSERT_TRUE(WaitConsole("kite-hotplug: disk vdb reading"));
  // The guest's reads are flowing before the unplug.
  uint64_t reads = ReadOps("busy");
  auto until = std::chrono::steady_clock::now() + 30s;
  while (ReadOps("busy") < reads + 100 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_GE(ReadOps("busy"), reads + 100) << "the guest is not reading vdb\n" << Slurp(serial_);

  ASSERT_EQ(Run(R"({"execute":"device_del","arguments":{"id":"busy"}})"),
            json({{"return", json::object()}}));
  json deleted = qmp_.WaitEvent("DEVICE_DELETED", 30s);
  ASSERT_FALSE(deleted.is_null()) << Slurp(serial_);
  EXPECT_EQ(deleted["data"]["device"], "busy");
  ASSERT_TRUE(WaitConsole("kite-hotplug: disk vdb removed"));
  EXPECT_EQ(BlockIds(), std::vector<std::string>{"vda"});
  // The guest goes on: its counter keeps counting on vda, and its kernel did not oops.
  size_t mark = Slurp(serial_).size();
  int last = CounterLines(Slurp(serial_)).back().n;
  ASSERT_TRUE(WaitConsole("kite-counter: " + std::to_string(last + 2) + " ", mark));
  std::string console = Slurp(serial_);
  for (const char* bad : {"BUG:", "Oops", "Call Trace", "hung_task"}) {
    EXPECT_EQ(console.find(bad), std::string::npos) << bad << "\n" << console;
  }
  EXPECT_TRUE(Sh("qemu-img check " + Path("busy.qcow2")));
  Run(R"({"execute":"system_powerdown"})");
  const ProcessResult& r = kite_->Join();
  EXPECT_TRUE(r.exited && r.exit_status == 0) << r.Describe();
}

TEST_F(HotplugE2e, GuestIgnoresUnplug_ErrorEvent_DeviceStaysAndServes) {
  ASSERT_TRUE(Sh(std::string(KITE_IMG_BINARY) + " create -f qcow2 " + Path("data.qcow2") + " 32M"));
  Start({"--disk", "path=" + Path("data.qcow2") + ",format=qcow2", "--unplug-timeout", "2"},
        std::string(kCmdline) + " acpiphp.disable=1");
  ASSERT_TRUE(WaitConsole("kite-hotplug: disk vdb written"));
  ASSERT_EQ(Run(R"({"execute":"device_del","arguments":{"id":"vdb"}})"),
            json({{"return", json::object()}}));
  EXPECT_EQ(Error(Run(R"({"execute":"device_del","arguments":{"id":"vdb"}})")),
            "Device 'vdb' is already in the process of unplug");
  json error = qmp_.WaitEvent("DEVICE_UNPLUG_GUEST_ERROR", 30s);
  ASSERT_FALSE(error.is_null());
  EXPECT_EQ(error["data"], json({{"device", "vdb"}, {"path", "/machine/peripheral/vdb"}}));
  EXPECT_TRUE(qmp_.WaitEvent("DEVICE_DELETED", 1s).is_null());
  EXPECT_EQ(BlockIds(), (std::vector<std::string>{"vda", "vdb"}));
  // Still serving: the guest reads it every round.
  uint64_t reads = ReadOps("vdb");
  std::this_thread::sleep_for(2s);
  EXPECT_GT(ReadOps("vdb"), reads);
  EXPECT_EQ(Slurp(serial_).find("kite-hotplug: disk vdb removed"), std::string::npos);
  Run(R"({"execute":"system_powerdown"})");
  const ProcessResult& r = kite_->Join();
  EXPECT_TRUE(r.exited && r.exit_status == 0) << r.Describe();
}

}  // namespace
}  // namespace kite::testing
