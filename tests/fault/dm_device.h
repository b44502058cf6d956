// Failing block devices for the fault tests (BAD_INPUTS F2-F4): a loop device over a file, and
// a device-mapper device on top whose table maps byte ranges either straight through
// (`linear`) or to the `error` target (every I/O there fails with EIO). The table can be
// switched while the device is open (suspend --nolockfs, reload, resume), so a test can make
// a healthy disk fail under an open image, and heal it again, without the page cache being
// written back on the way (--nolockfs: no sync of the device at suspend).
//
// Needs root, device-mapper (/dev/mapper/control, dm-mod), loop devices and the dmsetup and
// losetup tools. KITE_REQUIRE_DEVICE_MAPPER() skips a test with the reason when something is
// missing, except under CI=true (the nested VM of scripts/test.sh has all of it): there it
// fails, as KITE_REQUIRE_KVM does.
//
// Threads: one test thread; the commands run as child processes (RunProcess).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "testing/kvm_required.h"

namespace kite::testing {

// The absolute path of a system tool (RunProcess does not search PATH: /usr/sbin, /sbin,
// /usr/bin, /bin), or empty.
std::string FindSystemTool(const std::string& name);

// Empty when the fault tests can make dm devices here; otherwise why not. Loads dm-mod and
// loop with modprobe when their control devices are missing.
std::string DeviceMapperUnavailableReason();

// A byte range [offset, offset + length) of a dm device; both multiples of 512.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

class DmDevice {
 public:
  // Binds `backing_file` (its size a multiple of 512) to a loop device and creates a dm device
  // of the same size over it, with `errors` mapped to the error target.
  static Result<std::unique_ptr<DmDevice>> Create(const std::string& backing_file,
                                                  std::vector<ByteRange> errors = {});
  ~DmDevice();  // removes the dm device, then detaches the loop device
  DmDevice(const DmDevice&) = delete;
  DmDevice& operator=(const DmDevice&) = delete;

  // Switches the live table: `errors` fail with EIO from now on, the rest maps to the file.
  // Dirty pages in the device's page cache stay dirty (no sync at suspend).
  Result<void> SetErrors(std::vector<ByteRange> errors);
  Result<void> FailAll() { return SetErrors({{0, bytes_}}); }
  Result<void> Heal() { return SetErrors({}); }
  // Empties the device's page cache (BLKFLSBUF), so the next access of any page, even a small
  // write into it, goes to the table.
  Result<void> DropCache();

  const std::string& path() const { return path_; }  // /dev/mapper/NAME (or /dev/dm-N)
  const std::string& loop() const { return loop_; }
  uint64_t bytes() const { return bytes_; }

 private:
  DmDevice() = default;
  Result<std::string> TableFile(const std::vector<ByteRange>& errors) const;

  std::string name_;
  std::string loop_;
  std::string path_;
  std::string table_file_;
  uint64_t bytes_ = 0;
  bool created_ = false;
};

}  // namespace kite::testing

#define KITE_REQUIRE_DEVICE_MAPPER()                                                   \
  do {                                                                                 \
    std::string kite_dm_reason_ = ::kite::testing::DeviceMapperUnavailableReason();    \
    if (!kite_dm_reason_.empty()) {                                                    \
      if (::kite::testing::RunningInCi()) {                                            \
        FAIL() << "CI=true but " << kite_dm_reason_ << ": fault tests must run in CI " \
               << "(scripts/test.sh runs them as root in the nested VM)";              \
      }                                                                                \
      GTEST_SKIP() << "skipped: " << kite_dm_reason_;                                  \
    }                                                                                  \
  } while (0)
