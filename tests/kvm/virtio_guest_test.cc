// Runs the guest-firmware virtio programs (virtio_blk, virtio_rng, virtio_net, virtio_bad;
// guest-firmware/runtime/virtio.c is their driver) under `kite run` on /dev/kvm and checks what
// they print, kite's exit status and, for disks, the image file afterwards. Both link variants
// of every guest run ("pvh": PVH note; "lm": kite sets up long mode).
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "testing/kite_process.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::testing {
namespace {

using std::chrono::milliseconds;

// Emulated KVM runs guest code ~1000x slower: generous, but bounded.
constexpr milliseconds kGuestTimeout{120000};
constexpr size_t kSector = 512;
constexpr size_t kDiskBytes = 1 << 20;

std::string GuestPath(const std::string& program, const std::string& variant) {
  return std::string(KITE_GUEST_FIRMWARE_DIR) + "/" + program + (variant == "lm" ? "-lm" : "") +
         ".elf";
}

// A disk image whose sector 0 holds a byte pattern the guest's checksum must reproduce.
std::string DiskContents() {
  std::string disk(kDiskBytes, '\0');
  for (size_t i = 0; i < kSector; i++) disk[i] = static_cast<char>((i * 37 + 11) & 0xff);
  return disk;
}

// FNV-1a 32, as virtio_blk.c computes it, in the guest's "%08x" format.
std::string Fnv1aHex(const std::string& bytes) {
  uint32_t h = 2166136261u;
  for (unsigned char c : bytes) h = (h ^ c) * 16777619u;
  char out[9];
  snprintf(out, sizeof(out), "%08x", h);
  return out;
}

// What virtio_blk.c writes to sectors 1 and 2.
std::string WrittenSectors() {
  std::string s;
  for (size_t i = 0; i < 2 * kSector; i++) {
    s += (i < kSector ? "kite-virtio-blk:" : "KITE-VIRTIO-BLK:")[i % 16];
  }
  return s;
}

// Runs a host tool to completion; false when it could not run or exited non-zero.
bool RunTool(std::vector<std::string> argv) {
  ProcessOptions options;
  options.argv = std::move(argv);
  Result<ProcessResult> r = RunProcess(options);
  EXPECT_TRUE(r.has_value() && r->exit_status == 0)
      << options.argv[1] << ": " << (r ? r->Describe() : r.error().message());
  return r.has_value() && r->exit_status == 0;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class VirtioGuestTest : public ::testing::TestWithParam<std::string> {
 protected:
  // kite run --kernel <guest> --memory 128M --serial stdio <extra...>
  ProcessResult RunGuest(const std::string& program, std::vector<std::string> extra = {}) {
    ProcessOptions options;
    options.argv = {KITE_BINARY, "run",  "--kernel", GuestPath(program, GetParam()),
                    "--memory",  "128M", "--serial", "stdio"};
    options.argv.insert(options.argv.end(), extra.begin(), extra.end());
    options.timeout = kGuestTimeout;
    Result<ProcessResult> r = RunProcess(options);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message());
    return r ? *r : ProcessResult{};
  }

  // virtio_bad runs once per variant; several tests assert different parts of its output.
  struct BadRun {
    ProcessResult result;
    bool disk_unchanged = false;  // it only reads
  };
  const BadRun& BadGuest() {
    static std::map<std::string, BadRun> runs;
    if (auto it = runs.find(GetParam()); it != runs.end()) return it->second;
    std::string disk = dir_.File("bad.raw");
    WriteFile(disk, DiskContents());
    BadRun run;
    run.result = RunGuest("virtio_bad", {"--disk", "path=" + disk + ",format=raw"});
    run.disk_unchanged = ReadFile(disk) == DiskContents();
    return runs.emplace(GetParam(), std::move(run)).first->second;
  }

  // The disk contents converted by qemu-img to `format` as a read-only disk: the guest reads
  // the same sectors, its write is refused, and the file is unchanged.
  void ExpectReadOnlyImageDisk(const std::string& format) {
    const std::string qemu_img = FindTool("qemu-img");
    std::string raw = dir_.File("src.raw"), disk = dir_.File("disk." + format);
    WriteFile(raw, DiskContents());
    ASSERT_TRUE(RunTool({qemu_img, "convert", "-f", "raw", "-O", format, raw, disk}));
    std::string before = ReadFile(disk);
    ProcessResult r =
        RunGuest("virtio_blk", {"--disk", "path=" + disk + ",format=" + format + ",readonly=on"});
    EXPECT_EQ(r.exit_status, 0) << r.Describe();
    EXPECT_TRUE(Contains(r.out, "virtio_blk: capacity 2048 sectors read-only\n")) << r.Describe();
    EXPECT_TRUE(Contains(r.out, "sector 0 fnv1a " + Fnv1aHex(DiskContents().substr(0, kSector))))
        << r.Describe();
    EXPECT_TRUE(Contains(r.out, "virtio_blk: write refused, status 1\n")) << r.Describe();
    EXPECT_TRUE(Contains(r.out, "virtio_blk: ok\n")) << r.Describe();
    EXPECT_EQ(ReadFile(disk), before);
  }

  TempDir dir_;
};

TEST_P(VirtioGuestTest, Rng_Reads64Bytes_NotAllZero_TwoRequestsDiffer) {
  KITE_REQUIRE_KVM();
  ProcessResult r = RunGuest("virtio_rng");
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_rng: two requests differ\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_rng: ok\n")) << r.Describe();
  EXPECT_FALSE(Contains(r.out, "FAIL")) << r.Describe();
}

TEST_P(VirtioGuestTest, Rng_NoRngOption_GuestFindsNoDevice) {
  KITE_REQUIRE_KVM();
  ProcessResult r = RunGuest("virtio_rng", {"--no-rng"});
  EXPECT_TRUE(Contains(r.out, "virtio_rng: FAIL no entropy device")) << r.Describe();
}

TEST_P(VirtioGuestTest, Blk_Raw_WriteFlushReadBack_FileHoldsData_Sector0Matches) {
  KITE_REQUIRE_KVM();
  std::string disk = dir_.File("disk.raw");
  WriteFile(disk, DiskContents());
  ProcessResult r =
      RunGuest("virtio_blk", {"--disk", "path=" + disk + ",format=raw,serial=kite-7"});
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_blk: capacity 2048 sectors\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "sector 0 fnv1a " + Fnv1aHex(DiskContents().substr(0, kSector))))
      << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_blk: serial 'kite-7' (status 0)")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_blk: wrote, flushed and read back sectors 1-2"))
      << r.Describe();
  EXPECT_TRUE(Contains(r.out, "read past the end refused, status 1")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_blk: ok\n")) << r.Describe();
  std::string after = ReadFile(disk);
  ASSERT_EQ(after.size(), kDiskBytes);
  EXPECT_EQ(after.substr(kSector, 2 * kSector), WrittenSectors());
  EXPECT_EQ(after.substr(0, kSector), DiskContents().substr(0, kSector));
}

TEST_P(VirtioGuestTest, G19_Blk_ReadOnly_WriteRefusedWithIoErr_FileUnchanged) {
  KITE_REQUIRE_KVM();
  std::string disk = dir_.File("ro.raw");
  WriteFile(disk, DiskContents());
  ProcessResult r = RunGuest("virtio_blk", {"--disk", "path=" + disk + ",format=raw,readonly=on"});
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_blk: capacity 2048 sectors read-only\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_blk: write refused, status 1\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_blk: ok\n")) << r.Describe();
  EXPECT_EQ(ReadFile(disk), DiskContents());
}

// Slots follow the command line: disks first (vda, vdb, ...), then the rng.
TEST_P(VirtioGuestTest, Blk_TwoDisks_FirstSlotIsFirstDisk) {
  KITE_REQUIRE_KVM();
  std::string a = dir_.File("a.raw"), b = dir_.File("b.raw");
  WriteFile(a, DiskContents());
  WriteFile(b, std::string(2 * kDiskBytes, '\0'));
  ProcessResult r = RunGuest("virtio_blk", {"--disk", "path=" + a + ",format=raw,readonly=on",
                                            "--disk", "path=" + b + ",format=raw"});
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_blk: capacity 2048 sectors read-only\n")) << r.Describe();
  EXPECT_EQ(ReadFile(b), std::string(2 * kDiskBytes, '\0'));
}

TEST_P(VirtioGuestTest, Rng_AfterTwoDisks_StillFound) {
  KITE_REQUIRE_KVM();
  std::string a = dir_.File("a.raw"), b = dir_.File("b.raw");
  WriteFile(a, DiskContents());
  WriteFile(b, DiskContents());
  ProcessResult r = RunGuest(
      "virtio_rng", {"--disk", "path=" + a + ",format=raw", "--disk", "path=" + b + ",format=raw"});
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_rng: ok\n")) << r.Describe();
}

// The most devices a VM may have (kMaxVirtioDevices = 16): 15 disks, then the rng in the last
// slot (0xd000f000, GSI 22) — each with its own irqfd and ioeventfd — and it still works.
TEST_P(VirtioGuestTest, SixteenDevices_RngInLastSlot_Works) {
  KITE_REQUIRE_KVM();
  std::vector<std::string> args;
  for (int i = 0; i < 15; ++i) {
    std::string disk = dir_.File("d" + std::to_string(i) + ".raw");
    WriteFile(disk, DiskContents());
    args.insert(args.end(), {"--disk", "path=" + disk + ",format=raw,readonly=on"});
  }
  ProcessResult r = RunGuest("virtio_rng", args);
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_rng: ok\n")) << r.Describe();
}

TEST_P(VirtioGuestTest, Blk_Qcow2_WriteFlushReadBack_ImageChecksClean) {
  KITE_REQUIRE_KVM();
  KITE_REQUIRE_TOOL("qemu-img");
  const std::string qemu_img = FindTool("qemu-img");
  std::string disk = dir_.File("disk.qcow2");
  ASSERT_TRUE(RunTool({qemu_img, "create", "-q", "-f", "qcow2", disk, "1M"}));
  ProcessResult r = RunGuest("virtio_blk", {"--disk", "path=" + disk + ",format=qcow2"});
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "sector 0 fnv1a " + Fnv1aHex(std::string(kSector, '\0'))))
      << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_blk: ok\n")) << r.Describe();
  EXPECT_TRUE(RunTool({qemu_img, "check", "-q", disk}));
  std::string raw = dir_.File("out.raw");
  ASSERT_TRUE(RunTool({qemu_img, "convert", "-f", "qcow2", "-O", "raw", disk, raw}));
  EXPECT_EQ(ReadFile(raw).substr(kSector, 2 * kSector), WrittenSectors());
}

// A QED image (qemu-img convert from the raw contents) as a read-only disk: the guest reads
// the same sectors, its write is refused, and the file is unchanged.
TEST_P(VirtioGuestTest, Blk_Qed_ReadOnly_ReadsContents_WriteRefused_FileUnchanged) {
  KITE_REQUIRE_KVM();
  KITE_REQUIRE_TOOL("qemu-img");
  ExpectReadOnlyImageDisk("qed");
}

// A VMDK (qemu-img convert's monolithicSparse) as a read-only disk, the same way.
TEST_P(VirtioGuestTest, Blk_Vmdk_ReadOnly_ReadsContents_WriteRefused_FileUnchanged) {
  KITE_REQUIRE_KVM();
  KITE_REQUIRE_TOOL("qemu-img");
  ExpectReadOnlyImageDisk("vmdk");
}

// A writable qcow2 overlay over a streamOptimized VMDK: the guest reads the VMDK's sector 0,
// its writes land in the overlay (the qcow2 test above), and the VMDK is unchanged.
TEST_P(VirtioGuestTest, Blk_Qcow2OverVmdk_ReadsBase_WritesToOverlay_VmdkUnchanged) {
  KITE_REQUIRE_KVM();
  KITE_REQUIRE_TOOL("qemu-img");
  const std::string qemu_img = FindTool("qemu-img");
  std::string raw = dir_.File("src.raw"), base = dir_.File("base.vmdk");
  std::string disk = dir_.File("disk.qcow2");
  WriteFile(raw, DiskContents());
  ASSERT_TRUE(RunTool({qemu_img, "convert", "-f", "raw", "-O", "vmdk", "-o",
                       "subformat=streamOptimized", raw, base}));
  ASSERT_TRUE(RunTool({qemu_img, "create", "-q", "-f", "qcow2", "-b", base, "-F", "vmdk", disk}));
  std::string before = ReadFile(base);
  ProcessResult r = RunGuest("virtio_blk", {"--disk", "path=" + disk + ",format=qcow2"});
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "sector 0 fnv1a " + Fnv1aHex(DiskContents().substr(0, kSector))))
      << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_blk: ok\n")) << r.Describe();
  EXPECT_TRUE(RunTool({qemu_img, "check", "-q", disk}));
  std::string out = dir_.File("out.raw");
  ASSERT_TRUE(RunTool({qemu_img, "convert", "-f", "qcow2", "-O", "raw", disk, out}));
  EXPECT_EQ(ReadFile(out).substr(kSector, 2 * kSector), WrittenSectors());
  EXPECT_EQ(ReadFile(base), before);
}

TEST_P(VirtioGuestTest, Net_User_ArpRequestForGateway_GetsReply) {
  KITE_REQUIRE_KVM();
  ProcessResult r = RunGuest("virtio_net", {"--net", "user"});
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_net: mac ")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_net: arp reply from 10.0.2.2 at ")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_net: ok\n")) << r.Describe();
}

// kite's policy (docs/VIRTIO.md): a malformed chain comes back with used length 0 and the queue
// stays usable; a malformed available ring (G3, G5) sets DEVICE_NEEDS_RESET; a well-formed
// chain with a request the disk cannot do gets a status byte. Zero-length descriptors are
// skipped (G7).
TEST_P(VirtioGuestTest, G1_G3_G5_G6_G8_G11_G18_Bad_MalformedChainsRefused_DeviceRecovers) {
  KITE_REQUIRE_KVM();
  const ProcessResult& r = BadGuest().result;
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  for (const char* name :
       {"descriptor loop", "next out of range", "buffer outside RAM", "buffer in MMIO",
        "length overflows", "header in writable descriptor", "status in readable descriptor",
        "indirect not negotiated", "indirect inside indirect",
        "indirect length not a multiple of 16", "indirect with next"}) {
    EXPECT_TRUE(
        Contains(r.out, std::string("virtio_bad: ") + name + ": used len 0, next request ok\n"))
        << name << "\n"
        << r.Describe();
  }
  for (const char* name : {"avail index jump", "head out of range"}) {
    EXPECT_TRUE(Contains(r.out, std::string("virtio_bad: ") + name +
                                    ": device needs reset, recovered after reset\n"))
        << name << "\n"
        << r.Describe();
  }
  EXPECT_TRUE(Contains(r.out, "virtio_bad: indirect table: ok\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_bad: ok\n")) << r.Describe();
  EXPECT_TRUE(BadGuest().disk_unchanged) << "only reads were requested";
}

TEST_P(VirtioGuestTest, G33_Bad_ResetDuringRead_NothingWrittenAfterReset) {
  KITE_REQUIRE_KVM();
  const ProcessResult& r = BadGuest().result;
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_TRUE(
      Contains(r.out, "virtio_bad: reset during I/O: nothing written after reset, recovered\n"))
      << r.Describe();
  EXPECT_TRUE(BadGuest().disk_unchanged) << "only reads were requested";
}

TEST_P(VirtioGuestTest, G7_G16_G17_G20_G21_Bad_RequestsRefusedByStatus) {
  KITE_REQUIRE_KVM();
  const ProcessResult& r = BadGuest().result;
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_bad: sector 2^64-1: status 1\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_bad: data length 100: status 1\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_bad: unknown type: status 2\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_bad: get id buffer 8 bytes: status 1\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_bad: zero-length descriptor: status 0\n")) << r.Describe();
}

// The set-up protocol broken step by step on the rng device (transport policy: a bad queue
// stays not ready, FEATURES_OK and DRIVER_OK do not stick when refused).
TEST_P(VirtioGuestTest, G12_G13_G14_G32_Setup_BadQueueAndStatusWritesRefused) {
  KITE_REQUIRE_KVM();
  ProcessResult r = RunGuest("virtio_setup");
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  for (const char* name :
       {"queue size 0", "queue size 3", "queue size above max", "misaligned descriptor table",
        "misaligned used ring", "ring outside RAM", "rings overlap", "queue select out of range",
        "features without VERSION_1", "feature not offered (RING_PACKED)",
        "DRIVER_OK before FEATURES_OK"}) {
    EXPECT_TRUE(Contains(r.out, std::string("virtio_setup: ") + name + ": refused\n"))
        << name << "\n"
        << r.Describe();
  }
  EXPECT_TRUE(Contains(r.out, "virtio_setup: good set-up after all that: ok\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "virtio_setup: ok\n")) << r.Describe();
}

INSTANTIATE_TEST_SUITE_P(Variants, VirtioGuestTest, ::testing::Values("pvh", "lm"));

}  // namespace
}  // namespace kite::testing
