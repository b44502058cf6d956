// qmp::Dispatcher and the command table against an un-started Machine (in prelaunch): the
// negotiation rules, every error text and class, the id echo, and each command's result shape.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "testing/temp_dir.h"
#include "vmm/control/qmp_balloon_commands.h"
#include "vmm/control/qmp_commands.h"
#include "vmm/control/qmp_dispatcher.h"
#include "vmm/control/qmp_protocol.h"

namespace kite::qmp {
namespace {

using nlohmann::json;

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VmConfig config;
    config.kernel = "vmlinux";
    config.name = "vm1";
    config.memory = 256ull << 20;
    config.cpus = 2;
    auto created = Machine::Create(config);
    ASSERT_TRUE(created) << created.error().message();
    machine_ = std::move(*created);
    dispatcher_ = std::make_unique<Dispatcher>(machine_.get());
  }

  // One request, slow commands run inline; the reply parsed.
  json Send(std::string_view text) {
    Outcome outcome = dispatcher_->Handle(text);
    std::string line = outcome.slow ? outcome.slow() : outcome.reply;
    EXPECT_EQ(line.substr(line.size() - 2), "\r\n");
    return json::parse(line);
  }
  json Negotiated(std::string_view text) {
    if (!dispatcher_->negotiated()) Send(R"({"execute":"qmp_capabilities"})");
    return Send(text);
  }
  static void ExpectError(const json& reply, const char* cls, const std::string& desc) {
    ASSERT_TRUE(reply.contains("error")) << reply;
    EXPECT_EQ(reply["error"]["class"], cls) << reply;
    EXPECT_EQ(reply["error"]["desc"], desc) << reply;
  }

  std::unique_ptr<Machine> machine_;
  std::unique_ptr<Dispatcher> dispatcher_;
};

TEST_F(DispatcherTest, BeforeNegotiation_CommandNotFoundWithId) {
  json reply = Send(R"({"execute":"query-status","id":5})");
  ExpectError(reply, "CommandNotFound",
              "Expecting capabilities negotiation with 'qmp_capabilities'");
  EXPECT_EQ(reply["id"], 5);
  ExpectError(Send(R"({"execute":"nosuch"})"), "CommandNotFound",
              "Expecting capabilities negotiation with 'qmp_capabilities'");
  EXPECT_FALSE(dispatcher_->negotiated());
}

TEST_F(DispatcherTest, Capabilities_ThenSecondRefused) {
  EXPECT_EQ(Send(R"({"execute":"qmp_capabilities"})"), json({{"return", json::object()}}));
  EXPECT_TRUE(dispatcher_->negotiated());
  json reply = Send(R"({"execute":"qmp_capabilities","id":null})");
  ExpectError(reply, "CommandNotFound",
              "Capabilities negotiation is already complete, command ignored");
  EXPECT_TRUE(reply.contains("id"));
  EXPECT_TRUE(reply["id"].is_null());
}

TEST_F(DispatcherTest, CapabilitiesOob_NotOffered) {
  ExpectError(Send(R"({"execute":"qmp_capabilities","arguments":{"enable":["oob"]}})"),
              "GenericError", "Capability oob not available");
  ExpectError(Send(R"({"execute":"qmp_capabilities","arguments":{"enable":["foo"]}})"),
              "GenericError", "Parameter 'enable' does not accept value 'foo'");
  ExpectError(Send(R"({"execute":"qmp_capabilities","arguments":{"enable":"x"}})"), "GenericError",
              "Invalid parameter type for 'enable', expected: array");
  ExpectError(Send(R"({"execute":"qmp_capabilities","arguments":{"bogus":1}})"), "GenericError",
              "Parameter 'bogus' is unexpected");
  EXPECT_FALSE(dispatcher_->negotiated());
  EXPECT_TRUE(
      Send(R"({"execute":"qmp_capabilities","arguments":{"enable":[]}})").contains("return"));
}

TEST_F(DispatcherTest, UnknownCommand) {
  json reply = Negotiated(R"({"execute":"nosuchcmd","id":"a"})");
  ExpectError(reply, "CommandNotFound", "The command nosuchcmd has not been found");
  EXPECT_EQ(reply["id"], "a");
}

TEST_F(DispatcherTest, IdOfAnyType_Echoed) {
  for (const char* id : {"1", "1.5", "true", "null", "\"s\"", "[1,2]", "{\"x\":[1,2]}"}) {
    json reply = Negotiated(std::string(R"({"execute":"query-kvm","id":)") + id + "}");
    ASSERT_TRUE(reply.contains("return")) << reply;
    EXPECT_EQ(reply["id"], json::parse(id));
  }
}

TEST_F(DispatcherTest, MalformedRequests_GenericErrorTexts) {
  Send(R"({"execute":"qmp_capabilities"})");
  EXPECT_EQ(Send("[1]")["error"]["desc"], "QMP input must be a JSON object");
  EXPECT_EQ(Send(R"({"execute":1,"id":7})")["id"], 7);
  EXPECT_EQ(Send(R"({"execute": })")["error"]["class"], "GenericError");
  ExpectError(Send(R"({"execute":"query-status","foo":1})"), "GenericError",
              "QMP input member 'foo' is unexpected");
}

TEST_F(DispatcherTest, FramingError_GenericError) {
  Outcome outcome = dispatcher_->Handle(Frame{"", "JSON parse error, stray '\x01'"});
  ExpectError(json::parse(outcome.reply), "GenericError", "JSON parse error, stray '\x01'");
}

TEST_F(DispatcherTest, ArgumentErrors_QemuTexts) {
  ExpectError(Negotiated(R"({"execute":"stop","arguments":{"bogus":1}})"), "GenericError",
              "Parameter 'bogus' is unexpected");
  ExpectError(Negotiated(R"({"execute":"x-vm-snapshot-save"})"), "GenericError",
              "Parameter 'path' is missing");
  ExpectError(Negotiated(R"({"execute":"x-vm-snapshot-save","arguments":{"path":1}})"),
              "GenericError", "Invalid parameter type for 'path', expected: string");
  ExpectError(Negotiated(R"({"execute":"human-monitor-command","arguments":{"command-line":5}})"),
              "GenericError", "Invalid parameter type for 'command-line', expected: string");
  ExpectError(
      Negotiated(
          R"({"execute":"human-monitor-command","arguments":{"command-line":"x","cpu-index":"0"}})"),
      "GenericError", "Invalid parameter type for 'cpu-index', expected: integer");
}

TEST_F(DispatcherTest, SlowCommands_ComeBackAsJobs) {
  Send(R"({"execute":"qmp_capabilities"})");
  for (const char* name : {"stop", "cont", "system_powerdown", "system_reset", "quit"}) {
    Outcome outcome = dispatcher_->Handle(std::string(R"({"execute":")") + name + "\"}");
    EXPECT_TRUE(outcome.slow) << name;
    EXPECT_TRUE(outcome.reply.empty()) << name;
  }
  EXPECT_FALSE(dispatcher_->Handle(R"({"execute":"query-status"})").slow);
  // Bad arguments never reach the command thread.
  EXPECT_FALSE(dispatcher_->Handle(R"({"execute":"stop","arguments":{"x":1}})").slow);
}

TEST_F(DispatcherTest, QueryStatus_Prelaunch) {
  EXPECT_EQ(Negotiated(R"({"execute":"query-status"})")["return"],
            json({{"running", false}, {"singlestep", false}, {"status", "prelaunch"}}));
}

TEST_F(DispatcherTest, Stop_InPrelaunch_EmptyReturn) {
  EXPECT_EQ(Negotiated(R"({"execute":"stop"})"), json({{"return", json::object()}}));
  EXPECT_EQ(Negotiated(R"({"execute":"stop"})"), json({{"return", json::object()}}));
}

TEST_F(DispatcherTest, Snapshot_NotPaused_Refused) {
  ExpectError(Negotiated(R"({"execute":"x-vm-snapshot-save","arguments":{"path":"/tmp/s"}})"),
              "GenericError", "VM must be paused");
}

TEST_F(DispatcherTest, QueryVersion_Shape) {
  json r = Negotiated(R"({"execute":"query-version"})")["return"];
  EXPECT_TRUE(r["qemu"]["major"].is_number_integer());
  EXPECT_TRUE(r["qemu"]["minor"].is_number_integer());
  EXPECT_TRUE(r["qemu"]["micro"].is_number_integer());
  EXPECT_EQ(r["package"], std::string("kite ") + Version());
}

TEST_F(DispatcherTest, QueryCommands_ListsTableWithNames) {
  json r = Negotiated(R"({"execute":"query-commands"})")["return"];
  ASSERT_TRUE(r.is_array());
  EXPECT_EQ(r.size(), Commands().size());
  EXPECT_NE(std::find(r.begin(), r.end(), json({{"name", "x-vm-snapshot-save"}})), r.end());
  EXPECT_NE(std::find(r.begin(), r.end(), json({{"name", "qmp_capabilities"}})), r.end());
}

TEST_F(DispatcherTest, QueryName_Kvm_MemorySummary) {
  EXPECT_EQ(Negotiated(R"({"execute":"query-name"})")["return"], json({{"name", "vm1"}}));
  EXPECT_EQ(Negotiated(R"({"execute":"query-kvm"})")["return"],
            json({{"enabled", true}, {"present", true}}));
  EXPECT_EQ(Negotiated(R"({"execute":"query-memory-size-summary"})")["return"],
            json({{"base-memory", 256ull << 20}, {"plugged-memory", 0}}));
  json memdev = Negotiated(R"({"execute":"query-memdev"})")["return"];
  ASSERT_EQ(memdev.size(), 1u) << memdev;
  EXPECT_EQ(memdev[0]["id"], "ram");
  EXPECT_EQ(memdev[0]["size"], 256ull << 20);
  EXPECT_EQ(memdev[0]["prealloc"], false);
  EXPECT_EQ(memdev[0]["share"], false);
  EXPECT_EQ(memdev[0]["hugetlb"], false);
  EXPECT_EQ(memdev[0]["policy"], "default");
}

TEST_F(DispatcherTest, ListQueries_Arrays) {
  for (const char* name : {"query-cpus-fast", "query-block", "query-blockstats"}) {
    json r = Negotiated(std::string(R"({"execute":")") + name + "\"}");
    EXPECT_TRUE(r["return"].is_array()) << name << ": " << r;
  }
  EXPECT_TRUE(Negotiated(R"({"execute":"x-query-kite-stats"})")["return"].is_object());
}

TEST_F(DispatcherTest, DiskCommands_NoSuchDeviceOrJob_QemuTexts) {
  ExpectError(Negotiated(R"({"execute":"blockdev-snapshot-sync","arguments":)"
                         R"({"device":"vda","snapshot-file":"/tmp/o.qcow2"}})"),
              "GenericError", "Cannot find device='vda' nor node-name=''");
  ExpectError(Negotiated(R"({"execute":"block_resize","arguments":{"device":"vda","size":1024}})"),
              "GenericError", "Cannot find device='vda' nor node-name=''");
  ExpectError(Negotiated(R"({"execute":"block-commit","arguments":{"device":"vdb"}})"),
              "GenericError", "Cannot find device='vdb' nor node-name=''");
  ExpectError(Negotiated(R"({"execute":"set_link","arguments":{"name":"net0","up":false}})"),
              "DeviceNotFound", "Device 'net0' not found");
  for (const char* verb :
       {"block-job-cancel", "block-job-pause", "block-job-resume", "block-job-complete"}) {
    ExpectError(
        Negotiated(std::string(R"({"execute":")") + verb + R"(","arguments":{"device":"job0"}})"),
        "DeviceNotActive", "Block job 'job0' not found");
  }
  ExpectError(
      Negotiated(R"({"execute":"block-job-set-speed","arguments":{"device":"j","speed":1}})"),
      "DeviceNotActive", "Block job 'j' not found");
  EXPECT_EQ(Negotiated(R"({"execute":"query-block-jobs"})")["return"], json::array());
}

TEST_F(DispatcherTest, DiskCommands_BadValues_Refused) {
  ExpectError(Negotiated(R"({"execute":"block_resize","arguments":{"device":"vda","size":-1}})"),
              "GenericError", "Parameter 'size' expects a non-negative value");
  ExpectError(Negotiated(R"({"execute":"drive-backup","arguments":)"
                         R"({"device":"vda","target":"/tmp/b","sync":"top"}})"),
              "GenericError",
              "drive-backup: sync mode 'top' is not supported (kite copies \"full\")");
  ExpectError(Negotiated(R"({"execute":"blockdev-snapshot-sync","arguments":)"
                         R"({"device":"vda","snapshot-file":"/tmp/o","mode":"weird"}})"),
              "GenericError", "Parameter 'mode' does not accept value 'weird'");
  ExpectError(Negotiated(R"({"execute":"block-commit","arguments":{"device":"vda","speed":-5}})"),
              "GenericError", "Parameter 'speed' expects a non-negative value");
  ExpectError(Negotiated(R"({"execute":"block-stream"})"), "GenericError",
              "Parameter 'device' is missing");
  ExpectError(Negotiated(R"({"execute":"set_link","arguments":{"name":"n","up":"no"}})"),
              "GenericError", "Invalid parameter type for 'up', expected: boolean");
  ExpectError(Negotiated(R"({"execute":"announce-self","arguments":{"rounds":0}})"), "GenericError",
              "Parameter 'rounds' expects a value between 1 and 1000");
  ExpectError(Negotiated(R"({"execute":"announce-self","arguments":{"step":-1}})"), "GenericError",
              "Parameter 'step' expects a non-negative value");
  ExpectError(Negotiated(R"({"execute":"announce-self","arguments":{"interfaces":[1]}})"),
              "GenericError", "Parameter 'interfaces' expects a list of strings");
  ExpectError(Negotiated(R"({"execute":"announce-self","arguments":{"id":"t"}})"), "GenericError",
              "Parameter 'id' is unexpected");
  ExpectError(Negotiated(R"({"execute":"block-commit","arguments":{"device":"v","on-error":"x"}})"),
              "GenericError", "Parameter 'on-error' is unexpected");
}

// block_set_io_throttle (QEMU's arguments) and x-kite-set-net-throttle: every check happens
// before a device is looked up; an unknown device is DeviceNotFound.
TEST_F(DispatcherTest, Throttle_ArgumentsChecked_UnknownDeviceNotFound) {
  const std::string all6 = R"("bps":0,"bps_rd":0,"bps_wr":0,"iops":0,"iops_rd":0,"iops_wr":0)";
  auto block = [&](const std::string& args) {
    return Negotiated(R"({"execute":"block_set_io_throttle","arguments":{)" + args + "}}");
  };
  ExpectError(block(R"("id":"vda",)" + all6), "DeviceNotFound", "Device 'vda' not found");
  ExpectError(block(R"("device":"vdb",)" + all6), "DeviceNotFound", "Device 'vdb' not found");
  ExpectError(block(all6), "GenericError", "Need exactly one of 'device' and 'id'");
  ExpectError(block(R"("id":"vda","device":"vda",)" + all6), "GenericError",
              "Need exactly one of 'device' and 'id'");
  // QEMU requires all six base values.
  ExpectError(block(R"("id":"vda","bps":0,"bps_rd":0,"bps_wr":0,"iops":0,"iops_rd":0)"),
              "GenericError", "Parameter 'iops_wr' is missing");
  ExpectError(block(R"("id":"vda","bps":-1,"bps_rd":0,"bps_wr":0,"iops":0,"iops_rd":0,)"
                    R"("iops_wr":0)"),
              "GenericError", "Parameter 'bps' expects a non-negative value");
  ExpectError(block(R"("id":"vda","bps":"1","bps_rd":0,"bps_wr":0,"iops":0,"iops_rd":0,)"
                    R"("iops_wr":0)"),
              "GenericError", "Invalid parameter type for 'bps', expected: integer");
  // QEMU's rule: bytes (or operations) limited in total or per direction, not both.
  ExpectError(block(R"("id":"vda","bps":10,"bps_rd":5,"bps_wr":0,"iops":0,"iops_rd":0,)"
                    R"("iops_wr":0)"),
              "GenericError", "bps and bps_rd/bps_wr cannot be used at the same time");
  ExpectError(block(R"("id":"vda","bps":0,"bps_rd":0,"bps_wr":0,"iops":3,"iops_rd":0,)"
                    R"("iops_wr":4)"),
              "GenericError", "iops and iops_rd/iops_wr cannot be used at the same time");
  ExpectError(block(R"("id":"vda","bps_wr_max":10,)" + all6), "GenericError",
              "bps_wr_max needs bps_wr (a rate to refill at)");
  // Per-direction limits alone are accepted (the device is then looked up).
  ExpectError(block(R"("id":"vda","bps":0,"bps_rd":5,"bps_wr":6,"iops":0,"iops_rd":7,)"
                    R"("iops_wr":8,"bps_rd_max":9,"x-kite-iops-wr-burst":1)"),
              "DeviceNotFound", "Device 'vda' not found");
  // A throttle group (QEMU's "group"): its name is checked before the device is looked up.
  ExpectError(block(R"("id":"vda","group":"g",)" + all6), "DeviceNotFound",
              "Device 'vda' not found");
  ExpectError(block(R"("id":"vda","group":"a b",)" + all6), "GenericError",
              "throttle group 'a b' is not a name (1 to 64 letters, digits, '-', '_' or '.')");
  ExpectError(block(R"("id":"vda","group":7,)" + all6), "GenericError",
              "Invalid parameter type for 'group', expected: string");
  ExpectError(block(R"("id":"vda","bps_max":10,)" + all6), "GenericError",
              "bps_max needs bps (a rate to refill at)");
  ExpectError(block(R"("id":"vda","bps":0,"bps_rd":0,"bps_wr":0,"iops":100,"iops_rd":0,)"
                    R"("iops_wr":0,"iops_max":50)"),
              "GenericError",
              "iops_max=50 is lower than iops=100 (the bucket holds at least one second's worth)");
  ExpectError(block(R"("id":"vda","bps":1000000000000001,"bps_rd":0,"bps_wr":0,"iops":0,)"
                    R"("iops_rd":0,"iops_wr":0)"),
              "GenericError", "bps=1000000000000001 is out of range (0 to 1000000000000000)");

  auto net = [&](const std::string& args) {
    return Negotiated(R"({"execute":"x-kite-set-net-throttle","arguments":{)" + args + "}}");
  };
  ExpectError(net(R"("id":"net0","bps":1000,"pps":10)"), "DeviceNotFound",
              "Device 'net0' not found");
  ExpectError(net(R"("id":"net0","bps":1000)"), "GenericError", "Parameter 'pps' is missing");
  ExpectError(net(R"("id":"net0","bps":0,"pps":0,"pps_burst":4)"), "GenericError",
              "pps_burst needs pps (a rate to refill at)");
  ExpectError(net(R"("id":"net0","bps":0,"pps":-2)"), "GenericError",
              "Parameter 'pps' expects a non-negative value");
  // The query: every NIC (none here), or the one named.
  EXPECT_EQ(Negotiated(R"({"execute":"x-kite-query-net-throttle"})"),
            json({{"return", json::array()}}));
  ExpectError(Negotiated(R"({"execute":"x-kite-query-net-throttle","arguments":{"id":"net0"}})"),
              "DeviceNotFound", "Device 'net0' not found");
}

TEST_F(DispatcherTest, HumanMonitor_InfoStatus_OthersRefused) {
  EXPECT_EQ(Negotiated(
                R"({"execute":"human-monitor-command","arguments":{"command-line":"info status"}})")
                ["return"],
            "VM status: paused (prelaunch)\r\n");
  json reply =
      Negotiated(R"({"execute":"human-monitor-command","arguments":{"command-line":"savevm x"}})");
  EXPECT_EQ(reply["error"]["class"], "GenericError");
  EXPECT_NE(reply["error"]["desc"].get<std::string>().find("info status"), std::string::npos);
}

TEST_F(DispatcherTest, NonAsciiId_EscapedOnTheWire) {
  Send(R"({"execute":"qmp_capabilities"})");
  Outcome outcome = dispatcher_->Handle("{\"execute\":\"query-kvm\",\"id\":\"\xc3\xa9\"}");
  EXPECT_NE(outcome.reply.find("\"id\":\"\\u00e9\""), std::string::npos) << outcome.reply;
  for (unsigned char c : outcome.reply) EXPECT_LT(c, 0x80);
}

// The memory balloon's commands without a balloon (with one: tests/e2e/balloon_e2e_test.cc).
TEST_F(DispatcherTest, Balloon_NoBalloon_DeviceNotActive_QemuText) {
  ExpectError(Negotiated(R"({"execute":"balloon","arguments":{"value":1073741824}})"),
              "DeviceNotActive", "No balloon device has been activated");
  ExpectError(Negotiated(R"({"execute":"query-balloon"})"), "DeviceNotActive",
              "No balloon device has been activated");
  // QEMU checks for the device before the value.
  ExpectError(Negotiated(R"({"execute":"balloon","arguments":{"value":-5}})"), "DeviceNotActive",
              "No balloon device has been activated");
}

TEST_F(DispatcherTest, Balloon_QomPaths_WithoutBalloon_DeviceNotFound) {
  ExpectError(
      Negotiated(R"({"execute":"qom-get","arguments":{"path":"/machine/peripheral/balloon0",)"
                 R"("property":"guest-stats"}})"),
      "DeviceNotFound", "Device '/machine/peripheral/balloon0' not found");
  ExpectError(
      Negotiated(R"({"execute":"qom-set","arguments":{"path":"/machine/peripheral/balloon0",)"
                 R"("property":"guest-stats-polling-interval","value":2}})"),
      "DeviceNotFound", "Device '/machine/peripheral/balloon0' not found");
}

TEST_F(DispatcherTest, Balloon_Arguments_QemuTexts) {
  ExpectError(Negotiated(R"({"execute":"balloon"})"), "GenericError",
              "Parameter 'value' is missing");
  ExpectError(Negotiated(R"({"execute":"balloon","arguments":{"value":"1G"}})"), "GenericError",
              "Invalid parameter type for 'value', expected: integer");
  ExpectError(Negotiated(R"({"execute":"qom-get","arguments":{"path":"/x"}})"), "GenericError",
              "Parameter 'property' is missing");
  ExpectError(Negotiated(R"({"execute":"qom-set","arguments":{"path":"/x","property":"p"}})"),
              "GenericError", "Parameter 'value' is missing");
  ExpectError(Negotiated(R"({"execute":"query-balloon","arguments":{"x":1}})"), "GenericError",
              "Parameter 'x' is unexpected");
}

TEST(BalloonShapes, GuestStats_QemuNames_UnsetIsMinusOneAsUint64) {
  BalloonInfo info;
  info.stats.assign(16, UINT64_MAX);
  info.stats[4] = 1000;  // free memory
  info.stats[5] = 4000;  // total memory
  info.last_update = 1718000000;
  json j = GuestStatsJson(info);
  EXPECT_EQ(j["last-update"], 1718000000);
  EXPECT_EQ(j["stats"]["stat-free-memory"], 1000u);
  EXPECT_EQ(j["stats"]["stat-total-memory"], 4000u);
  EXPECT_EQ(j["stats"]["stat-swap-in"], UINT64_MAX);
  for (const char* name :
       {"stat-swap-out", "stat-major-faults", "stat-minor-faults", "stat-available-memory",
        "stat-disk-caches", "stat-htlb-pgalloc", "stat-htlb-pgfail"}) {
    EXPECT_TRUE(j["stats"].contains(name)) << name;
  }
  EXPECT_EQ(j["stats"].size(), 16u);
}

TEST(RunInline, StreamOfRequests_RepliesInOrder) {
  VmConfig config;
  config.kernel = "vmlinux";
  auto machine = Machine::Create(config);
  ASSERT_TRUE(machine);
  std::string out = RunInline(machine->get(),
                              "{'execute':'qmp_capabilities'}{\"execute\":\"query-kvm\",\"id\":1}"
                              "\x01 {\"execute\":\"stop\",\"id\":2}");
  EXPECT_EQ(out,
            "{\"return\":{}}\r\n"
            "{\"return\":{\"enabled\":true,\"present\":true},\"id\":1}\r\n"
            "{\"error\":{\"class\":\"GenericError\",\"desc\":\"JSON parse error, stray "
            "'\\u0001'\"}}\r\n"
            "{\"return\":{},\"id\":2}\r\n");
}

// ---- pure shapes ----

TEST(Shapes, CpuJson_QemuShape) {
  EXPECT_EQ(CpuJson({3, 4242}),
            json({{"cpu-index", 3},
                  {"qom-path", "/machine/unattached/device[3]"},
                  {"thread-id", 4242},
                  {"props", {{"core-id", 3}, {"thread-id", 0}, {"socket-id", 0}}},
                  {"target", "x86_64"}}));
}

TEST(Shapes, BlockJson_ChainNestedAsBackingImage) {
  BlockInfo block;
  block.id = "vda";
  block.cache = "none";
  block.chain = {{"top.qcow2", "qcow2", 1 << 20, 4096, 65536, true, "mid.qcow2"},
                 {"mid.qcow2", "qcow2", 1 << 20, 8192, 65536, false, "base.raw"},
                 {"base.raw", "raw", 1 << 20, 1 << 20, 0, false, ""}};
  json j = BlockJson(block);
  EXPECT_EQ(j["device"], "");
  EXPECT_EQ(j["qdev"], "vda");
  EXPECT_EQ(j["type"], "unknown");
  EXPECT_EQ(j["removable"], false);
  EXPECT_EQ(j["locked"], false);
  EXPECT_EQ(j["io-status"], "ok");
  const json& inserted = j["inserted"];
  EXPECT_EQ(inserted["file"], "top.qcow2");
  EXPECT_EQ(inserted["drv"], "qcow2");
  EXPECT_EQ(inserted["ro"], false);
  EXPECT_EQ(inserted["backing_file_depth"], 2);
  EXPECT_EQ(inserted["encrypted"], false);
  EXPECT_EQ(inserted["backing_file"], "mid.qcow2");
  EXPECT_EQ(inserted["cache"], json({{"writeback", true}, {"direct", true}, {"no-flush", false}}));
  const json& image = inserted["image"];
  EXPECT_EQ(image["filename"], "top.qcow2");
  EXPECT_EQ(image["virtual-size"], 1 << 20);
  EXPECT_EQ(image["actual-size"], 4096);
  EXPECT_EQ(image["cluster-size"], 65536);
  EXPECT_EQ(image["dirty-flag"], true);
  EXPECT_EQ(image["backing-filename"], "mid.qcow2");
  EXPECT_EQ(image["backing-image"]["filename"], "mid.qcow2");
  const json& base = image["backing-image"]["backing-image"];
  EXPECT_EQ(base["format"], "raw");
  EXPECT_FALSE(base.contains("cluster-size"));
  EXPECT_FALSE(base.contains("dirty-flag"));
  EXPECT_FALSE(base.contains("backing-image"));
}

TEST(Shapes, BlockJson_IoErrorAndNoMedium) {
  BlockInfo block;
  block.id = "vdb";
  block.io_error = true;
  json j = BlockJson(block);
  EXPECT_EQ(j["io-status"], "failed");
  EXPECT_FALSE(j.contains("inserted"));
}

TEST(Shapes, BlockStatsJson_QemuKeys) {
  BlockStats s;
  s.id = "vda";
  s.rd_bytes = 1;
  s.wr_bytes = 2;
  s.rd_operations = 3;
  s.wr_operations = 4;
  s.flush_operations = 5;
  s.discard_operations = 6;
  s.failed_operations = 7;
  json j = BlockStatsJson(s);
  EXPECT_EQ(j["device"], "");
  EXPECT_EQ(j["qdev"], "vda");
  const json& stats = j["stats"];
  EXPECT_EQ(stats["rd_bytes"], 1);
  EXPECT_EQ(stats["wr_bytes"], 2);
  EXPECT_EQ(stats["rd_operations"], 3);
  EXPECT_EQ(stats["wr_operations"], 4);
  EXPECT_EQ(stats["flush_operations"], 5);
  EXPECT_EQ(stats["unmap_operations"], 6);
  EXPECT_EQ(stats["failed_rd_operations"], 7);
  EXPECT_EQ(stats["failed_wr_operations"], 0);
  EXPECT_TRUE(stats["timed_stats"].is_array());
}

TEST(Shapes, InfoStatusText) {
  EXPECT_EQ(InfoStatusText(RunState::kRunning), "VM status: running\r\n");
  EXPECT_EQ(InfoStatusText(RunState::kPaused), "VM status: paused\r\n");
}

// ---- x-vm-snapshot-save path policy (C12) ----

TEST(SnapshotPath, Relative_Refused) {
  auto r = CheckSnapshotPath("snap");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("must be absolute"), std::string::npos);
  EXPECT_FALSE(CheckSnapshotPath(""));
}

TEST(SnapshotPath, KernelFileSystems_Refused) {
  for (const char* p : {"/proc/self/mem", "/sys/x", "/dev/null", "/tmp/../proc/x", "/", "//dev"}) {
    EXPECT_FALSE(CheckSnapshotPath(p)) << p;
  }
}

TEST(SnapshotPath, SymlinkedParentIntoProc_Refused) {
  testing::TempDir dir;
  std::string link = dir.File("p");
  ASSERT_EQ(::symlink("/proc/self", link.c_str()), 0);
  auto r = CheckSnapshotPath(link + "/snap");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("/proc"), std::string::npos) << r.error().message();
}

TEST(SnapshotPath, FifoFileAndSymlink_Refused) {
  testing::TempDir dir;
  ASSERT_EQ(::mkfifo(dir.File("fifo").c_str(), 0600), 0);
  testing::WriteFile(dir.File("file"), "x");
  ASSERT_EQ(::mkdir(dir.File("real").c_str(), 0700), 0);
  ASSERT_EQ(::symlink(dir.File("real").c_str(), dir.File("link").c_str()), 0);
  EXPECT_NE(CheckSnapshotPath(dir.File("fifo")).error().message().find("not a directory"),
            std::string::npos);
  EXPECT_FALSE(CheckSnapshotPath(dir.File("file")));
  EXPECT_NE(CheckSnapshotPath(dir.File("link")).error().message().find("symbolic link"),
            std::string::npos);
}

TEST(SnapshotPath, NewOrExistingDirectory_Accepted) {
  testing::TempDir dir;
  ASSERT_EQ(::mkdir(dir.File("real").c_str(), 0700), 0);
  auto existing = CheckSnapshotPath(dir.File("real") + "/");
  ASSERT_TRUE(existing) << existing.error().message();
  EXPECT_EQ(*existing, std::filesystem::path(dir.File("real")).lexically_normal().string());
  EXPECT_TRUE(CheckSnapshotPath(dir.File("new")));
}

// device_add's arguments are checked before anything is built (C10, C12); a VM that is not
// running refuses both commands.
TEST_F(DispatcherTest, DeviceAddDel_BadArguments_QemuTexts) {
  auto add = [&](const std::string& args) {
    return Negotiated(R"({"execute":"device_add","arguments":)" + args + "}");
  };
  ExpectError(add(R"({"driver":"e1000","id":"n1"})"), "GenericError",
              "'e1000' is not a valid device model name (kite hot-adds virtio-blk-pci and "
              "virtio-net-pci)");
  ExpectError(add(R"({"id":"d1"})"), "GenericError", "Parameter 'driver' is missing");
  ExpectError(add(R"({"driver":"virtio-blk-pci","id":"d1","path":"/x","tap":"t0"})"),
              "GenericError", "Property 'virtio-blk-pci.tap' not found");
  ExpectError(add(R"({"driver":"virtio-net-pci","id":"n1","format":"raw"})"), "GenericError",
              "Property 'virtio-net-pci.format' not found");
  // Rate limits: each driver takes its own kind (pps is a NIC's, the per-direction ones a disk's).
  ExpectError(add(R"({"driver":"virtio-blk-pci","id":"d1","path":"/x","pps":5})"), "GenericError",
              "Property 'virtio-blk-pci.pps' not found");
  ExpectError(add(R"({"driver":"virtio-net-pci","id":"n1","iops_rd":5})"), "GenericError",
              "Property 'virtio-net-pci.iops_rd' not found");
  ExpectError(add(R"({"driver":"virtio-blk-pci","id":"d1","path":"/x","drive":"d"})"),
              "GenericError", "Parameter 'drive' is unexpected");
  ExpectError(add(R"({"driver":"virtio-blk-pci","id":"d1","path":"/x","bus":"pcie.1"})"),
              "GenericError", "Bus 'pcie.1' not found (kite has pci.0)");
  for (const char* addr : {"0", "0x20", "zz", "3.1", ""}) {
    json reply = add(std::string(R"({"driver":"virtio-blk-pci","id":"d1","path":"/x","addr":")") +
                     addr + "\"}");
    ASSERT_TRUE(reply.contains("error")) << addr;
    EXPECT_NE(reply["error"]["desc"].get<std::string>().find("Property 'addr'"), std::string::npos)
        << reply;
  }
  ExpectError(add(R"({"driver":"virtio-blk-pci","path":"/x","format":"raw"})"), "GenericError",
              "device_add: Parameter 'id' is missing (device_del needs it)");
  ExpectError(add(R"({"driver":"virtio-blk-pci","id":"d1","path":"disk.qcow2"})"), "GenericError",
              "Property 'path': 'disk.qcow2' must be an absolute path");
  ExpectError(add(R"({"driver":"virtio-blk-pci","id":"d1","path":"/proc/self/mem"})"),
              "GenericError", "Property 'path': '/proc/self/mem' is refused");
  testing::TempDir dir;
  std::string link = dir.File("link.raw");
  ASSERT_EQ(::symlink("/etc/hostname", link.c_str()), 0);
  ExpectError(add(R"({"driver":"virtio-blk-pci","id":"d1","path":")" + link + R"("})"),
              "GenericError",
              "Property 'path': '" + link + "' is a symbolic link (give its target)");
  json reply = add(R"({"driver":"virtio-blk-pci","id":"d1","path":"/x"})");
  ASSERT_TRUE(reply.contains("error"));
  EXPECT_NE(reply["error"]["desc"].get<std::string>().find("format=raw or format=qcow2"),
            std::string::npos)
      << reply;
  ExpectError(add(R"({"driver":"virtio-net-pci","id":"n1","backend":"vde"})"), "GenericError",
              "device_add n1: 'backend' must be \"user\", \"tap\", \"dgram\" or \"stream\"");
  // Well formed, but the VM is not running (prelaunch).
  ExpectError(add(R"({"driver":"virtio-net-pci","id":"n1","addr":"0x5"})"), "DeviceNotActive",
              "device_add: the VM is not running (it is prelaunch)");
  ExpectError(Negotiated(R"({"execute":"device_del","arguments":{"id":"n1"}})"), "DeviceNotActive",
              "device_del: the VM is not running (it is prelaunch)");
  ExpectError(Negotiated(R"({"execute":"device_del"})"), "GenericError",
              "Parameter 'id' is missing");
}

}  // namespace
}  // namespace kite::qmp
