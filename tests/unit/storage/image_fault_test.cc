// F4 on a real failing device: a loop block device over a file on a small tmpfs. Buffered
// writes to the block device land in its page cache and succeed; writeback then fails
// (the backing tmpfs is full, which the loop driver reports as a write error), so fdatasync
// on the device returns an error, as it would for EIO from a dying disk. After that the
// image stays failed: later writes and flushes fail too, even once the device has room again
// (the kernel may have dropped the dirty pages, so a second fdatasync could report success
// for data that is gone). Checked through RawImage, through AsyncDisk's io_uring and
// worker-pool paths, and for a qcow2 image on the device (whose metadata syncs fail too).
//
// Needs root (mount, loop devices). Elsewhere the tests skip with the reason, except under
// CI=true, where a skip would hide the case: there they fail.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "base/unique_fd.h"
#include "storage/async_disk.h"
#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "storage_test_util.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"

namespace kite::storage {
namespace {

using kite::testing::TempDir;

constexpr uint64_t kTmpfsBytes = 2 << 20;    // room for 2 MiB of the device's data
constexpr uint64_t kDeviceBytes = 32 << 20;  // sparse backing file: the device's size
constexpr uint64_t kWriteBytes = 8 << 20;    // more than the tmpfs holds

// A loop device over a sparse file on a tmpfs of kTmpfsBytes.
class FailingDevice {
 public:
  // Empty string when set up; else why not.
  std::string SetUp() {
    mnt_ = dir_.File("mnt");
    std::filesystem::create_directory(mnt_);
    std::string opts = "size=" + std::to_string(kTmpfsBytes);
    if (::mount("tmpfs", mnt_.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
      return std::string("cannot mount a tmpfs (needs root): ") + std::strerror(errno);
    }
    mounted_ = true;
    std::string backing = mnt_ + "/backing";
    UniqueFd file(::open(backing.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!file || ::ftruncate(file.get(), kDeviceBytes) != 0) return "cannot create the backing";
    UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
    if (!control) return std::string("no /dev/loop-control: ") + std::strerror(errno);
    int n = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (n < 0) return std::string("no free loop device: ") + std::strerror(errno);
    path_ = "/dev/loop" + std::to_string(n);
    loop_ = UniqueFd(::open(path_.c_str(), O_RDWR | O_CLOEXEC));
    if (!loop_) return "cannot open " + path_ + ": " + std::strerror(errno);
    if (::ioctl(loop_.get(), LOOP_SET_FD, file.get()) != 0) {
      return std::string("LOOP_SET_FD: ") + std::strerror(errno);
    }
    bound_ = true;
    return "";
  }

  // Gives the tmpfs room again: the device is healthy from now on.
  bool Heal() {
    std::string opts = "size=" + std::to_string(2 * kDeviceBytes);
    return ::mount("tmpfs", mnt_.c_str(), "tmpfs", MS_REMOUNT, opts.c_str()) == 0;
  }

  ~FailingDevice() {
    if (bound_) ::ioctl(loop_.get(), LOOP_CLR_FD, 0);
    loop_.Reset();
    if (mounted_) ::umount2(mnt_.c_str(), MNT_DETACH);
  }

  const std::string& path() const { return path_; }

 private:
  TempDir dir_;
  std::string mnt_;
  std::string path_;
  UniqueFd loop_;
  bool mounted_ = false;
  bool bound_ = false;
};

class RawFault : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = device_.SetUp();
    if (why.empty()) return;
    if (kite::testing::RunningInCi()) {
      FAIL() << "F4 needs root, a tmpfs mount and a loop device (CI runs as root): " << why;
    }
    GTEST_SKIP() << why;
  }

  std::shared_ptr<DiskImage> Open() {
    OpenOptions o;
    auto image = RawImage::Open(device_.path(), o);
    EXPECT_TRUE(image) << (image ? "" : image.error().message());
    return image ? std::shared_ptr<DiskImage>(std::move(*image)) : nullptr;
  }

  FailingDevice device_;
};

TEST_F(RawFault, F4_FlushWritebackError_FailsAndImageStaysFailed) {
  auto image = Open();
  ASSERT_NE(image, nullptr);
  std::vector<uint8_t> data = testing::Pattern(0, 1 << 20, 4);
  for (uint64_t off = 0; off < kWriteBytes; off += data.size()) {
    ASSERT_TRUE(image->Write(off, data.data(), data.size()));  // into the page cache
  }
  auto flushed = image->Flush();
  ASSERT_FALSE(flushed) << "fdatasync succeeded although the device could not store the data";
  EXPECT_TRUE(image->failed());
  EXPECT_NE(flushed.error().message().find(device_.path()), std::string::npos)
      << flushed.error().message();

  ASSERT_TRUE(device_.Heal());
  EXPECT_FALSE(image->Flush()) << "a retried flush reported success for lost data";
  auto again = image->Write(0, data.data(), 4096);
  EXPECT_FALSE(again);
  std::vector<uint8_t> back(4096);
  EXPECT_TRUE(image->Read(kDeviceBytes - 4096, back.data(), back.size()));  // reads still work
}

TEST_F(RawFault, F4_Qcow2OnFailingDevice_WritebackErrorFailsImage) {
  // A fresh qcow2 image (a few clusters) copied onto the device while it still has room.
  TempDir dir;
  Qcow2CreateOptions co;
  co.size = 24 << 20;
  co.cluster_size = 65536;
  ASSERT_TRUE(CreateQcow2(dir.File("a.qcow2"), co));
  std::string bytes = kite::testing::ReadFile(dir.File("a.qcow2"));
  {
    UniqueFd dev(::open(device_.path().c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(dev);
    ASSERT_EQ(::pwrite(dev.get(), bytes.data(), bytes.size(), 0),
              static_cast<ssize_t>(bytes.size()));
    ASSERT_EQ(::fsync(dev.get()), 0);
  }
  OpenOptions o;
  auto opened = OpenImage(device_.path(), ImageFormat::kQcow2, o);
  ASSERT_TRUE(opened) << opened.error().message();
  std::shared_ptr<DiskImage> image = std::move(*opened);
  std::vector<uint8_t> data = testing::Pattern(0, 1 << 20, 6);
  bool write_failed = false;  // a metadata sync inside an allocation may already fail
  for (uint64_t off = 0; off < kWriteBytes && !write_failed; off += data.size()) {
    write_failed = !image->Write(off, data.data(), data.size());
  }
  bool flush_failed = !image->Flush();
  EXPECT_TRUE(write_failed || flush_failed) << "8 MiB reached a device with room for 2 MiB";
  EXPECT_TRUE(image->failed());
  ASSERT_TRUE(device_.Heal());
  EXPECT_FALSE(image->Flush()) << "a retried flush reported success for lost data";
  EXPECT_FALSE(image->Write(0, data.data(), 4096));
}

class RawFaultAsync : public RawFault, public ::testing::WithParamInterface<AsyncBackend> {};

TEST_P(RawFaultAsync, F4_FlushErrorThroughAsyncDisk_LaterWritesAndFlushesFail) {
  auto image = Open();
  ASSERT_NE(image, nullptr);
  AsyncDiskOptions o;
  o.backend = GetParam();
  AsyncDisk disk(image, o);
  if (GetParam() == AsyncBackend::kIoUring) {
    EXPECT_TRUE(disk.uses_io_uring());
  }
  std::vector<uint8_t> data = testing::Pattern(0, 1 << 20, 5);
  std::atomic<int> write_errors{0}, flush_errors{0};
  auto submit = [&](DiskOp op, uint64_t offset, size_t len) {
    DiskRequest r;
    r.op = op;
    r.offset = offset;
    if (op == DiskOp::kWrite) r.iov = {{data.data(), len}};
    std::atomic<int>& errors = op == DiskOp::kWrite ? write_errors : flush_errors;
    disk.Submit(std::move(r), [&errors](Result<void> res) { errors += !res.has_value(); });
  };
  for (uint64_t off = 0; off < kWriteBytes; off += data.size()) {
    submit(DiskOp::kWrite, off, data.size());
  }
  disk.Drain();
  ASSERT_EQ(write_errors.load(), 0);
  submit(DiskOp::kFlush, 0, 0);
  disk.Drain();
  ASSERT_EQ(flush_errors.load(), 1);
  ASSERT_TRUE(device_.Heal());
  submit(DiskOp::kWrite, 0, 4096);  // refused: the image failed
  submit(DiskOp::kFlush, 0, 0);     // and no false OK after a retry
  disk.Drain();
  EXPECT_EQ(write_errors.load(), 1);
  EXPECT_EQ(flush_errors.load(), 2);
}

INSTANTIATE_TEST_SUITE_P(Backends, RawFaultAsync,
                         ::testing::Values(AsyncBackend::kIoUring, AsyncBackend::kThreads),
                         [](const auto& info) {
                           return info.param == AsyncBackend::kIoUring ? "IoUring" : "Threads";
                         });

}  // namespace
}  // namespace kite::storage
