// RawImage: regular files and host block devices as disks. See raw_image.h.
#include "storage/raw_image.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/log.h"

namespace kite::storage {
namespace {

// I/O errors name the image (F2: the guest's IOERR is logged with the file that failed).
Result<void> InFile(const std::string& path, Result<void> r) {
  if (!r) return std::move(r).error().Context(path);
  return r;
}

struct AlignedBuf {
  explicit AlignedBuf(size_t len) : len(len) {
    if (::posix_memalign(&ptr, kDirectAlign, len) != 0) ptr = nullptr;
  }
  ~AlignedBuf() { std::free(ptr); }
  void* ptr = nullptr;
  size_t len;
};

}  // namespace

Result<void> LockImageFile(int fd, const std::string& path, bool exclusive) {
  struct flock fl {};
  fl.l_type = exclusive ? F_WRLCK : F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 100;  // one byte; like QEMU, locks live past the data a guest cares about
  fl.l_len = 1;
  if (::fcntl(fd, F_OFD_SETLK, &fl) == 0) return {};
  if (errno == EAGAIN || errno == EACCES) {
    return Err(path + ": Failed to get \"" + (exclusive ? "write" : "read") +
               "\" lock: Is another process using the image?");
  }
  if (errno == EINVAL || errno == ENOLCK || errno == EOPNOTSUPP) return {};  // fs without locks
  return SysErr(path + ": taking the image lock");
}

Result<OpenedFile> OpenImageFile(const std::string& path, const OpenOptions& options,
                                 bool allow_block_device) {
  int flags = (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK;
  if (options.cache == CacheMode::kNone) flags |= O_DIRECT;
  UniqueFd fd(::open(path.c_str(), flags));
  if (!fd) return SysErr("Could not open '" + path + "'");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return SysErr(path + ": fstat");
  struct statfs sfs {};
  if (::fstatfs(fd.get(), &sfs) == 0 &&
      (sfs.f_type == PROC_SUPER_MAGIC || sfs.f_type == SYSFS_MAGIC)) {
    return Err("'" + path + "' is on procfs/sysfs, not an image");
  }
  OpenedFile file;
  file.dev = st.st_dev;
  file.ino = st.st_ino;
  if (S_ISREG(st.st_mode)) {
    file.size = static_cast<uint64_t>(st.st_size);
  } else if (S_ISBLK(st.st_mode) && allow_block_device) {
    uint64_t bytes = 0;
    if (::ioctl(fd.get(), BLKGETSIZE64, &bytes) != 0) return SysErr(path + ": BLKGETSIZE64");
    file.size = bytes;
    file.block_device = true;
  } else {
    const char* what = S_ISDIR(st.st_mode)    ? "a directory"
                       : S_ISFIFO(st.st_mode) ? "a FIFO"
                       : S_ISCHR(st.st_mode)  ? "a character device"
                       : S_ISBLK(st.st_mode)  ? "a block device (not allowed here)"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "not a regular file";
    return Err("'" + path + "' is " + what + ", expected a regular file or block device");
  }
  // Back to blocking mode for the real I/O.
  int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK) != 0) {
    return SysErr(path + ": fcntl");
  }
  if (options.lock && !options.force_share) {
    TRY(LockImageFile(fd.get(), path, !options.read_only));
  }
  file.fd = std::move(fd);
  return file;
}

Result<void> CreateRaw(const std::string& path, uint64_t size, Preallocation prealloc, bool sync) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return SysErr("Could not create '" + path + "'");
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return SysErr(path + ": ftruncate");
  if (prealloc == Preallocation::kFalloc && size > 0) {
    if (::fallocate(fd.get(), 0, 0, static_cast<off_t>(size)) != 0) {
      return SysErr(path + ": fallocate");
    }
  } else if (prealloc == Preallocation::kFull) {
    std::vector<char> zeros(1 << 20, 0);
    for (uint64_t off = 0; off < size; off += zeros.size()) {
      TRY(PwriteFull(fd.get(), zeros.data(), std::min<uint64_t>(zeros.size(), size - off), off));
    }
  }
  if (sync && ::fsync(fd.get()) != 0) return SysErr(path + ": fsync");
  return {};
}

Result<std::unique_ptr<RawImage>> RawImage::Open(const std::string& path,
                                                 const OpenOptions& options) {
  OpenedFile file = TRY(OpenImageFile(path, options));
  return std::make_unique<RawImage>(path, std::move(file), options);
}

RawImage::RawImage(std::string path, OpenedFile file, const OpenOptions& options)
    : path_(std::move(path)),
      fd_(std::move(file.fd)),
      size_(file.size),
      block_device_(file.block_device),
      options_(options) {}

uint64_t RawImage::allocated_bytes() const {
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

std::optional<int> RawImage::raw_fd() const {
  // Writethrough needs an fdatasync after every write: that stays in WriteV (worker pool).
  if (options_.cache == CacheMode::kWritethrough) return std::nullopt;
  return fd_.get();
}

Result<void> RawImage::Grow(uint64_t new_size) {
  if (options_.read_only) return Err(path_ + ": image is read-only");
  if (block_device_) {
    return Err(path_ + ": a block device cannot be resized by kite (resize the device itself)");
  }
  if (new_size < size_) return Err(path_ + ": shrinking is not supported on a running disk");
  if (::ftruncate(fd_.get(), static_cast<off_t>(new_size)) != 0) {
    return SysErr(path_ + ": ftruncate to " + std::to_string(new_size));
  }
  size_ = new_size;
  return {};
}

Result<void> RawImage::CheckRange(uint64_t offset, uint64_t length, bool write) const {
  if (write && options_.read_only) return Err(path_ + ": image is read-only");
  if (write && failed_.load()) return Err(path_ + ": image failed after a write-back error");
  if (offset > size_ || length > size_ - offset) {
    return Err(path_ + ": request [" + std::to_string(offset) + ", +" + std::to_string(length) +
               ") is past the end of the disk (" + std::to_string(size_) + " bytes)");
  }
  return {};
}

Result<void> RawImage::AfterWrite() {
  if (options_.cache != CacheMode::kWritethrough) return {};
  return Flush();
}

Result<void> RawImage::ReadV(uint64_t offset, std::span<const iovec> iov) {
  uint64_t len = IovLength(iov);
  TRY(CheckRange(offset, len, false));
  if (!direct() || DirectAligned(offset, iov)) {
    return InFile(path_, PreadvFull(fd_.get(), iov, offset));
  }
  uint64_t start = offset / kDirectAlign * kDirectAlign;
  uint64_t end = (offset + len + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
  AlignedBuf buf(end - start);
  if (buf.ptr == nullptr) return Err("out of memory for a bounce buffer");
  TRY_CTX(PreadFull(fd_.get(), buf.ptr, buf.len, start), path_);
  CopyToIov(iov, static_cast<uint8_t*>(buf.ptr) + (offset - start));
  return {};
}

Result<void> RawImage::WriteV(uint64_t offset, std::span<const iovec> iov) {
  uint64_t len = IovLength(iov);
  TRY(CheckRange(offset, len, true));
  if (!direct() || DirectAligned(offset, iov)) {
    TRY_CTX(PwritevFull(fd_.get(), iov, offset), path_);
    return AfterWrite();
  }
  // O_DIRECT with unaligned memory or offset: bounce (read-modify-write at the edges).
  uint64_t start = offset / kDirectAlign * kDirectAlign;
  uint64_t end = (offset + len + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
  AlignedBuf buf(end - start);
  if (buf.ptr == nullptr) return Err("out of memory for a bounce buffer");
  if (start != offset || end != offset + len) {
    TRY_CTX(PreadFull(fd_.get(), buf.ptr, buf.len, start), path_);
  }
  CopyFromIov(iov, static_cast<uint8_t*>(buf.ptr) + (offset - start));
  uint64_t write_len = end - start;
  if (!block_device_ && end > size_ && start + write_len > size_) {
    // Never grow a file past the disk size: write whole blocks, then trim.
    TRY_CTX(PwriteFull(fd_.get(), buf.ptr, write_len, start), path_);
    if (::ftruncate(fd_.get(), static_cast<off_t>(size_)) != 0) return SysErr(path_ + ": trim");
  } else {
    TRY_CTX(PwriteFull(fd_.get(), buf.ptr, write_len, start), path_);
  }
  return AfterWrite();
}

Result<void> RawImage::Flush() {
  if (options_.read_only) return {};
  if (failed_.load()) return Err(path_ + ": image failed after a write-back error");
  if (options_.cache == CacheMode::kUnsafe) return {};
  while (::fdatasync(fd_.get()) != 0) {
    if (errno == EINTR) continue;
    // The kernel may have dropped the dirty pages: a retry could report success for data
    // that is gone (F4), so the image stays failed.
    failed_.store(true);
    KITE_LOG(Error, "%s: fdatasync failed (%s); disk marked failed", path_.c_str(),
             std::strerror(errno));
    return SysErr(path_ + ": fdatasync");
  }
  return {};
}

Result<void> RawImage::PunchHole(uint64_t offset, uint64_t length) {
  if (block_device_) {
    uint64_t range[2] = {offset, length};
    if (::ioctl(fd_.get(), BLKDISCARD, &range) != 0) return SysErr(path_ + ": BLKDISCARD");
    return {};
  }
  if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(length)) != 0) {
    return SysErr(path_ + ": punching a hole");
  }
  return {};
}

Result<void> RawImage::Discard(uint64_t offset, uint64_t length) {
  TRY(CheckRange(offset, length, true));
  if (length == 0) return {};
  auto r = PunchHole(offset, length);
  if (!r && (r.error().sys_errno() == EOPNOTSUPP || r.error().sys_errno() == ENOTTY)) {
    return {};  // discard is advisory: a file system without holes keeps the data
  }
  return r;
}

Result<void> RawImage::WriteZeroes(uint64_t offset, uint64_t length, bool may_unmap) {
  TRY(CheckRange(offset, length, true));
  if (length == 0) return {};
  if (!block_device_) {
    if (!may_unmap && ::fallocate(fd_.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                                  static_cast<off_t>(offset), static_cast<off_t>(length)) == 0) {
      return AfterWrite();
    }
    if (PunchHole(offset, length)) return AfterWrite();
  } else {
    uint64_t range[2] = {offset, length};
    if (::ioctl(fd_.get(), BLKZEROOUT, &range) == 0) return AfterWrite();
  }
  // Fallback: write zero bytes.
  AlignedBuf zeros(1 << 20);
  if (zeros.ptr == nullptr) return Err("out of memory for zeros");
  std::memset(zeros.ptr, 0, zeros.len);
  while (length > 0) {
    uint64_t chunk = std::min<uint64_t>(length, zeros.len);
    iovec v{zeros.ptr, chunk};
    TRY(WriteV(offset, {&v, 1}));
    offset += chunk;
    length -= chunk;
  }
  return {};
}

Result<Extent> RawImage::BlockStatus(uint64_t offset, uint64_t max_length) {
  TRY(CheckRange(offset, 0, false));
  Extent e;
  e.offset = offset;
  e.length = std::min(max_length, size_ - offset);
  e.allocated = true;
  e.data = true;
  e.host_offset = offset;
  if (block_device_ || e.length == 0) return e;
  off_t data = ::lseek(fd_.get(), static_cast<off_t>(offset), SEEK_DATA);
  if (data < 0 && errno == ENXIO) data = static_cast<off_t>(size_);  // hole up to EOF
  if (data < 0) return e;
  if (static_cast<uint64_t>(data) > offset) {  // in a hole
    e.data = false;
    e.zero = true;
    e.length = std::min<uint64_t>(e.length, static_cast<uint64_t>(data) - offset);
    return e;
  }
  off_t hole = ::lseek(fd_.get(), static_cast<off_t>(offset), SEEK_HOLE);
  if (hole > 0 && static_cast<uint64_t>(hole) > offset) {
    e.length = std::min<uint64_t>(e.length, static_cast<uint64_t>(hole) - offset);
  }
  return e;
}

}  // namespace kite::storage
