// FileIo implementation: direct I/O when aligned, bounce buffers otherwise. See qcow2_io.h.
#include "storage/qcow2/qcow2_io.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "storage/raw_image.h"

namespace kite::storage::qcow2 {
namespace {

constexpr uint64_t kAlign = FileIo::kAlign;

bool Aligned(uint64_t v) {
  return v % kAlign == 0;
}

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using AlignedBuf = std::unique_ptr<uint8_t, FreeDeleter>;

Result<AlignedBuf> Allocate(size_t len) {
  void* p = nullptr;
  if (::posix_memalign(&p, kAlign, len) != 0) return Err("out of memory for a bounce buffer");
  return AlignedBuf(static_cast<uint8_t*>(p));
}

// An O_DIRECT read of an aligned range into aligned memory. A short read means the end of the
// file (the next offset would not be aligned): the rest reads as zeros.
Result<void> DirectPreadv(int fd, std::span<const iovec> iov, uint64_t offset) {
  uint64_t len = IovLength(iov), done = 0;
  while (done < len) {
    std::vector<iovec> v = SliceIov(iov, done, len - done);
    int count = static_cast<int>(std::min<size_t>(v.size(), IOV_MAX));
    ssize_t n = ::preadv(fd, v.data(), count, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return SysErr("read at offset " + std::to_string(offset + done));
    }
    done += static_cast<uint64_t>(n);
    if (n == 0 || !Aligned(offset + done)) {
      ZeroIov(SliceIov(iov, done, len - done));
      return {};
    }
  }
  return {};
}

Result<void> DirectPread(int fd, uint8_t* buf, size_t len, uint64_t offset) {
  iovec v{buf, len};
  return DirectPreadv(fd, {&v, 1}, offset);
}

}  // namespace

FileIo::FileIo(int fd) : fd_(fd) {
  int flags = ::fcntl(fd, F_GETFL);
  direct_ = flags != -1 && (flags & O_DIRECT) != 0;
}

uint64_t FileIo::Size() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return 0;
  uint64_t bytes = 0;
  if (S_ISBLK(st.st_mode)) return ::ioctl(fd_, BLKGETSIZE64, &bytes) == 0 ? bytes : 0;
  return static_cast<uint64_t>(st.st_size);
}

Result<void> FileIo::ReadV(std::span<const iovec> iov, uint64_t offset) const {
  if (!direct_) return PreadvFull(fd_, iov, offset);
  if (DirectAligned(offset, iov)) return DirectPreadv(fd_, iov, offset);
  return BounceRead(iov, offset);
}

Result<void> FileIo::WriteV(std::span<const iovec> iov, uint64_t offset) const {
  if (!direct_ || DirectAligned(offset, iov)) return PwritevFull(fd_, iov, offset);
  return BounceWrite(iov, offset);
}

Result<void> FileIo::Read(void* buf, size_t len, uint64_t offset) const {
  iovec v{buf, len};
  return ReadV({&v, 1}, offset);
}

Result<void> FileIo::Write(const void* buf, size_t len, uint64_t offset) const {
  iovec v{const_cast<void*>(buf), len};
  return WriteV({&v, 1}, offset);
}

Result<void> FileIo::WriteHeld(std::span<const uint8_t> held, uint64_t held_offset, uint64_t offset,
                               size_t len) const {
  const uint8_t* src = held.data() + (offset - held_offset);
  uint64_t start = offset / kAlign * kAlign;
  uint64_t end = (offset + len + kAlign - 1) / kAlign * kAlign;
  if (!direct_ || start < held_offset || end > held_offset + held.size()) {
    return Write(src, len, offset);
  }
  // The whole blocks around the range are in `held`: no read, and no other writer's bytes.
  AlignedBuf buf = TRY(Allocate(end - start));
  std::memcpy(buf.get(), held.data() + (start - held_offset), end - start);
  return PwriteFull(fd_, buf.get(), end - start, start);
}

Result<void> FileIo::BounceRead(std::span<const iovec> iov, uint64_t offset) const {
  uint64_t len = IovLength(iov);
  uint64_t start = offset / kAlign * kAlign;
  uint64_t end = (offset + len + kAlign - 1) / kAlign * kAlign;
  AlignedBuf buf = TRY(Allocate(end - start));
  TRY(DirectPread(fd_, buf.get(), end - start, start));
  CopyToIov(iov, buf.get() + (offset - start));
  return {};
}

Result<void> FileIo::BounceWrite(std::span<const iovec> iov, uint64_t offset) const {
  uint64_t len = IovLength(iov);
  if (len == 0) return {};
  uint64_t start = offset / kAlign * kAlign;
  uint64_t end = (offset + len + kAlign - 1) / kAlign * kAlign;
  AlignedBuf buf = TRY(Allocate(end - start));
  bool head = start != offset, tail = end != offset + len;
  std::unique_lock lock(rmw_mu_, std::defer_lock);
  if (head || tail) lock.lock();  // the partial blocks hold other writers' bytes
  if (head) TRY(DirectPread(fd_, buf.get(), kAlign, start));
  if (tail && (end - kAlign != start || !head)) {
    TRY(DirectPread(fd_, buf.get() + (end - kAlign - start), kAlign, end - kAlign));
  }
  CopyFromIov(iov, buf.get() + (offset - start));
  return PwriteFull(fd_, buf.get(), end - start, start);
}

}  // namespace kite::storage::qcow2
