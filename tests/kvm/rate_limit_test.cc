// Rate limits on a running kite (BAD_INPUTS R1, docs/SECURITY.md "Rate limits"): the `busy`
// guest saturates a disk limited to LIMIT requests/s (one 4 KiB request at a time, writes and
// reads); the rate seen through query-blockstats stays at the limit, the control socket keeps
// answering meanwhile, block_set_io_throttle changes the limit live (query-block shows it) and
// 0 lifts it. Real time on a shared host: the bounds are generous here; the 5 % figure is the
// benchmark's (bench/r1-rate-limit.sh).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "testing/kite_process.h"
#include "testing/kvm_required.h"
#include "testing/qmp_client.h"
#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kLimit = 20;  // requests per second: far below what the guest does unlimited

// Completed reads and writes of the first disk so far.
struct Ops {
  uint64_t rd = 0, wr = 0;
};
Ops OperationsByKind(QmpClient& client) {
  nlohmann::json r = client.Run(R"({"execute":"query-blockstats"})");
  if (!r.contains("return") || r["return"].empty()) return {};
  const nlohmann::json& s = r["return"][0]["stats"];
  return {s["rd_operations"].get<uint64_t>(), s["wr_operations"].get<uint64_t>()};
}
uint64_t Operations(QmpClient& client) {
  Ops ops = OperationsByKind(client);
  return ops.rd + ops.wr;
}

// Requests per second over `span`, with the longest query-status round trip meanwhile.
struct Sample {
  double rate = 0;
  std::chrono::milliseconds worst_status{0};
};
Sample Measure(QmpClient& client, std::chrono::milliseconds span) {
  Sample s;
  uint64_t n0 = Operations(client);
  auto t0 = Clock::now();
  while (Clock::now() - t0 < span) {
    auto q0 = Clock::now();
    nlohmann::json r = client.Run(R"({"execute":"query-status"})");
    EXPECT_TRUE(r.contains("return")) << r;
    s.worst_status = std::max(
        s.worst_status, std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - q0));
    std::this_thread::sleep_for(50ms);
  }
  uint64_t n1 = Operations(client);
  double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  s.rate = static_cast<double>(n1 - n0) / seconds;
  return s;
}

// Waits for the guest's I/O to start, then measures 4 s of it, past the initial bucket.
Sample MeasureOnceBusy(QmpClient& client) {
  auto until = Clock::now() + 60s;
  while (Operations(client) < 2 * kLimit && Clock::now() < until) {
    std::this_thread::sleep_for(100ms);
  }
  [&] { ASSERT_GE(Operations(client), 2u * kLimit) << "the guest did no disk I/O"; }();
  return Measure(client, 4000ms);
}

// An 8 MiB sparse raw disk in `dir`.
void MakeDisk(const TempDir& dir, const std::string& name) {
  std::ofstream disk(dir.File(name), std::ios::binary);
  disk.seekp((8 << 20) - 1);
  disk.put('\0');
}

// `kite run` of the busy guest with `devices` (its --disk and --net options) and a control
// socket, and a negotiated QMP client on it (`connected`).
struct BusyKite {
  BusyKite(const TempDir& dir, const std::vector<std::string>& devices) {
    options.argv = {
        KITE_BINARY, "run",  "--kernel",   std::string(KITE_GUEST_FIRMWARE_DIR) + "/busy.elf",
        "--serial",  "none", "--api-sock", dir.File("api.sock")};
    options.argv.insert(options.argv.end(), devices.begin(), devices.end());
    options.timeout = 120s;
    options.on_spawn = [this](int pid) { spawned.set_value(pid); };
    run = std::async(std::launch::async, [this] { return RunProcess(options); });
    spawned.get_future().get();
    connected = client.Connect(dir.File("api.sock"), 30000ms) && client.Negotiate();
  }
  std::promise<int> spawned;
  ProcessOptions options;
  std::future<Result<ProcessResult>> run;
  QmpClient client;
  bool connected = false;
};

TEST(RateLimit, ThrottledDisk_GuestSaturates_RateHeld_ChangedLive) {
  KITE_REQUIRE_KVM();
  TempDir dir;
  MakeDisk(dir, "disk.raw");
  BusyKite kite(
      dir, {"--disk", "path=" + dir.File("disk.raw") + ",format=raw,iops=" + std::to_string(kLimit),
            "--net", "user,bps=125000,pps=100"});
  ASSERT_TRUE(kite.connected);
  QmpClient& client = kite.client;
  auto& run = kite.run;

  // The limit from the command line, as QEMU reports it.
  nlohmann::json block = client.Run(R"({"execute":"query-block"})");
  ASSERT_TRUE(block.contains("return")) << block;
  EXPECT_EQ(block["return"][0]["inserted"]["iops"], kLimit);
  EXPECT_EQ(block["return"][0]["inserted"]["bps"], 0);

  // The NIC's limit from the command line, then changed live (one limit per direction).
  EXPECT_EQ(client.Run(R"({"execute":"x-kite-query-net-throttle"})"),
            nlohmann::json::parse(R"({"return":[{"id":"net0","bps":125000,"bps_max":0,)"
                                  R"("bps_burst":0,"pps":100,"pps_max":0,"pps_burst":0}]})"));
  EXPECT_TRUE(client
                  .Run(R"({"execute":"x-kite-set-net-throttle","arguments":{"id":"net0","bps":0,)"
                       R"("pps":50,"pps_burst":3}})")
                  .contains("return"));
  EXPECT_EQ(client.Run(R"({"execute":"x-kite-query-net-throttle","arguments":{"id":"net0"}})"),
            nlohmann::json::parse(R"({"return":[{"id":"net0","bps":0,"bps_max":0,"bps_burst":0,)"
                                  R"("pps":50,"pps_max":0,"pps_burst":3}]})"));
  nlohmann::json none =
      client.Run(R"({"execute":"x-kite-query-net-throttle","arguments":{"id":"vda"}})");
  EXPECT_EQ(none["error"]["class"], "DeviceNotFound") << none;

  Sample limited = MeasureOnceBusy(client);
  if (HasFatalFailure()) return;
  EXPECT_LE(limited.rate, kLimit * 1.1);
  EXPECT_GE(limited.rate, kLimit * 0.5);
  EXPECT_LT(limited.worst_status, 2000ms);

  // Twice the limit, live: visible in query-block, and the rate follows.
  nlohmann::json set =
      client.Run(R"({"execute":"block_set_io_throttle","arguments":{"id":"vda","bps":0,"bps_rd":0,)"
                 R"("bps_wr":0,"iops":)" +
                 std::to_string(2 * kLimit) + R"(,"iops_rd":0,"iops_wr":0,"iops_max":)" +
                 std::to_string(2 * kLimit) + "}}");
  EXPECT_EQ(set, nlohmann::json({{"return", nlohmann::json::object()}}));
  block = client.Run(R"({"execute":"query-block"})");
  EXPECT_EQ(block["return"][0]["inserted"]["iops"], 2 * kLimit);
  EXPECT_EQ(block["return"][0]["inserted"]["iops_max"], 2 * kLimit);
  std::this_thread::sleep_for(1500ms);  // the new bucket (one second's worth) drained
  Sample doubled = Measure(client, 4000ms);
  EXPECT_LE(doubled.rate, 2 * kLimit * 1.1);
  EXPECT_GT(doubled.rate, limited.rate * 1.4);

  // 0 lifts it.
  set = client.Run(
      R"({"execute":"block_set_io_throttle","arguments":{"device":"vda","bps":0,"bps_rd":0,)"
      R"("bps_wr":0,"iops":0,"iops_rd":0,"iops_wr":0}})");
  EXPECT_TRUE(set.contains("return")) << set;
  block = client.Run(R"({"execute":"query-block"})");
  EXPECT_EQ(block["return"][0]["inserted"]["iops"], 0);
  EXPECT_FALSE(block["return"][0]["inserted"].contains("iops_max"));
  Sample free = Measure(client, 2000ms);
  EXPECT_GT(free.rate, doubled.rate);

  // Writes alone limited (QEMU's iops_wr): the guest writes a block, then reads it back, so
  // writes keep to the limit and reads follow them one for one, unlimited themselves.
  set =
      client.Run(R"({"execute":"block_set_io_throttle","arguments":{"id":"vda","bps":0,"bps_rd":0,)"
                 R"("bps_wr":0,"iops":0,"iops_rd":0,"iops_wr":)" +
                 std::to_string(kLimit) + "}}");
  EXPECT_TRUE(set.contains("return")) << set;
  block = client.Run(R"({"execute":"query-block"})");
  EXPECT_EQ(block["return"][0]["inserted"]["iops_wr"], kLimit);
  EXPECT_EQ(block["return"][0]["inserted"]["iops"], 0);
  std::this_thread::sleep_for(1500ms);
  Ops w0 = OperationsByKind(client);
  auto t0 = Clock::now();
  std::this_thread::sleep_for(4000ms);
  Ops w1 = OperationsByKind(client);
  double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  double writes = static_cast<double>(w1.wr - w0.wr) / seconds;
  double reads = static_cast<double>(w1.rd - w0.rd) / seconds;
  EXPECT_LE(writes, kLimit * 1.1);
  EXPECT_GE(writes, kLimit * 0.5);
  EXPECT_NEAR(reads, writes, 2.0);

  std::printf(
      "rates (requests/s): limit %d: %.1f; limit %d: %.1f; none: %.1f; iops_wr %d: %.1f "
      "writes, %.1f reads; worst query-status %lld ms\n",
      kLimit, limited.rate, 2 * kLimit, doubled.rate, free.rate, kLimit, writes, reads,
      static_cast<long long>(limited.worst_status.count()));

  // A snapshot keeps the limit: it is in the saved configuration, and a restore has it.
  set =
      client.Run(R"({"execute":"block_set_io_throttle","arguments":{"id":"vda","bps":0,"bps_rd":0,)"
                 R"("bps_wr":0,"iops":)" +
                 std::to_string(kLimit) + R"(,"iops_rd":0,"iops_wr":0,"x-kite-iops-burst":7}})");
  EXPECT_TRUE(set.contains("return")) << set;
  EXPECT_TRUE(client.Run(R"({"execute":"stop"})").contains("return"));
  nlohmann::json saved = client.Run(R"({"execute":"x-vm-snapshot-save","arguments":{"path":")" +
                                    dir.File("snap") + R"("}})");
  EXPECT_TRUE(saved.contains("return")) << saved;
  client.Send(R"({"execute":"quit"})");
  Result<ProcessResult> result = run.get();
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->exited) << result->Describe();
  {
    std::ifstream config(dir.File("snap") + "/config.json");
    nlohmann::json saved_config = nlohmann::json::parse(config, nullptr, false);
    ASSERT_TRUE(saved_config.is_object());
    EXPECT_EQ(saved_config["disks"][0]["iops"], kLimit);
    EXPECT_EQ(saved_config["disks"][0]["iops_burst"], 7);
    EXPECT_EQ(saved_config["nets"][0]["pps"], 50);
    EXPECT_EQ(saved_config["nets"][0]["pps_burst"], 3);
  }
  ProcessOptions restore;
  restore.argv = {KITE_BINARY, "restore", dir.File("snap"), "--paused",
                  "--serial",  "none",    "--api-sock",     dir.File("api2.sock")};
  restore.timeout = 60s;
  auto restored = std::async(std::launch::async, [&] { return RunProcess(restore); });
  QmpClient second;
  if (!second.Connect(dir.File("api2.sock"), 30000ms)) {
    Result<ProcessResult> failed = restored.get();
    ASSERT_TRUE(failed.has_value()) << failed.error().message();
    // A host whose /dev/kvm emulates guest code refuses every restore of a `host` CPU template
    // (the saved CPUID has bits its KVM does not list): not this test's subject. Where KVM is
    // real (the nested VM of scripts/kvm-vm) the restore is checked.
    if (failed->err.find("this host's KVM does not support") != std::string::npos) {
      std::printf("restore not checked on this host: %s\n", failed->err.c_str());
      return;
    }
    FAIL() << "kite restore: " << failed->Describe();
  }
  ASSERT_TRUE(second.Negotiate());
  block = second.Run(R"({"execute":"query-block"})");
  EXPECT_EQ(block["return"][0]["inserted"]["iops"], kLimit) << block;
  EXPECT_EQ(block["return"][0]["inserted"]["x-kite-iops-burst"], 7) << block;
  second.Send(R"({"execute":"quit"})");
  Result<ProcessResult> second_result = restored.get();
  ASSERT_TRUE(second_result.has_value());
  EXPECT_TRUE(second_result->exited) << second_result->Describe();
}

// A throttle group (QEMU's throttling.group, docs/VIRTIO.md "Rate limits"): the busy guest's vda
// and an idle vdb share group g1's limit. block_set_io_throttle on vdb changes the group's limit,
// so vda's rate follows; moving vdb to a group of its own (QEMU's "group" argument) leaves vda's.
TEST(RateLimit, ThrottleGroup_LimitSetThroughAnotherMember_GovernsTheBusyDisk) {
  KITE_REQUIRE_KVM();
  TempDir dir;
  MakeDisk(dir, "a.raw");
  MakeDisk(dir, "b.raw");
  BusyKite kite(
      dir, {"--disk",
            "path=" + dir.File("a.raw") + ",format=raw,group=g1,iops=" + std::to_string(kLimit),
            "--disk", "path=" + dir.File("b.raw") + ",format=raw,group=g1"});
  ASSERT_TRUE(kite.connected);
  QmpClient& client = kite.client;
  nlohmann::json block = client.Run(R"({"execute":"query-block"})");
  for (int i : {0, 1}) {
    EXPECT_EQ(block["return"][i]["inserted"]["group"], "g1") << block;
    EXPECT_EQ(block["return"][i]["inserted"]["iops"], kLimit) << block;  // vdb shares g1's
  }

  Sample limited = MeasureOnceBusy(client);
  if (HasFatalFailure()) return;
  EXPECT_LE(limited.rate, kLimit * 1.1);

  // The group's limit doubled through vdb: vda, the busy one, follows.
  auto set = [&](const std::string& extra, int iops) {
    return client.Run(R"({"execute":"block_set_io_throttle","arguments":{"id":"vdb",)" + extra +
                      R"("bps":0,"bps_rd":0,"bps_wr":0,"iops":)" + std::to_string(iops) +
                      R"(,"iops_rd":0,"iops_wr":0}})");
  };
  EXPECT_EQ(set("", 2 * kLimit), nlohmann::json({{"return", nlohmann::json::object()}}));
  block = client.Run(R"({"execute":"query-block"})");
  EXPECT_EQ(block["return"][0]["inserted"]["iops"], 2 * kLimit) << block;
  std::this_thread::sleep_for(1500ms);
  Sample doubled = Measure(client, 4000ms);
  EXPECT_LE(doubled.rate, 2 * kLimit * 1.1);
  EXPECT_GT(doubled.rate, limited.rate * 1.4);

  // vdb leaves for a group of its own with a tiny limit: vda keeps g1's.
  EXPECT_EQ(set(R"("group":"g2",)", 1), nlohmann::json({{"return", nlohmann::json::object()}}));
  block = client.Run(R"({"execute":"query-block"})");
  EXPECT_EQ(block["return"][0]["inserted"]["group"], "g1") << block;
  EXPECT_EQ(block["return"][0]["inserted"]["iops"], 2 * kLimit) << block;
  EXPECT_EQ(block["return"][1]["inserted"]["group"], "g2") << block;
  EXPECT_EQ(block["return"][1]["inserted"]["iops"], 1) << block;
  Sample kept = Measure(client, 3000ms);
  EXPECT_GT(kept.rate, limited.rate * 1.4);

  EXPECT_TRUE(client.Run(R"({"execute":"quit"})").contains("return"));
  Result<ProcessResult> r = kite.run.get();
  ASSERT_TRUE(r.has_value());
}

}  // namespace
}  // namespace kite::testing
