// F2 at the virtio-blk level: a guest (guest-firmware/programs/virtio_blk.c) reads sector 0 of a
// disk whose first 4 KiB fail with EIO (a device-mapper `error` segment, dm_device.h). The guest
// must get IOERR (status 1) for that request (not a hang, not a broken device), kite logs the
// failure naming the disk, and the VM powers off normally (the guest does so after the failure).
//
// Label kvm: needs /dev/kvm and root + device-mapper (the nested VM of scripts/test.sh).
// Threads: the test thread only (kite runs as a child process).
#include <gtest/gtest.h>

#include <string>

#include "fault/dm_device.h"
#include "testing/kite_process.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

TEST(BlkFault, F2_GuestReadOfFailingSector_GetsIoErr_VmPowersOff) {
  KITE_REQUIRE_KVM();
  KITE_REQUIRE_DEVICE_MAPPER();
  TempDir dir;
  std::string backing = dir.File("disk.img");
  WriteFile(backing, std::string(1 << 20, '\x5a'));
  auto dev = DmDevice::Create(backing, {{0, 4096}});  // sector 0's page fails
  ASSERT_TRUE(dev) << dev.error().message();

  ProcessOptions options;
  options.argv = {KITE_BINARY, "run",
                  "--kernel",  std::string(KITE_GUEST_FIRMWARE_DIR) + "/virtio_blk.elf",
                  "--memory",  "128M",
                  "--serial",  "stdio",
                  "--disk",    "path=" + (*dev)->path() + ",format=raw"};
  options.timeout = std::chrono::milliseconds(120000);
  Result<ProcessResult> r = RunProcess(options);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(r->exited && r->exit_status == 0) << "kite must end with the guest's power-off\n"
                                                << r->Describe();
  EXPECT_NE(r->out.find("virtio_blk: capacity 2048 sectors\n"), std::string::npos) << r->Describe();
  EXPECT_NE(r->out.find("virtio_blk: FAIL read sector 0 status 1\n"), std::string::npos)
      << "the guest should see IOERR for the failing read\n"
      << r->Describe();
  EXPECT_NE(r->err.find((*dev)->path()), std::string::npos)
      << "kite should log the failed request with the disk's name\n"
      << r->Describe();
}

}  // namespace
}  // namespace kite::testing
