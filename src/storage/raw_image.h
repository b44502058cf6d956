// RawImage: a DiskImage over a regular file or a host block device, byte for byte.
// Reads past the end of a file shorter than the disk return zeros; writes extend it.
// Thread-safe: every call is a positioned syscall (pread/pwrite/fallocate/fdatasync) on one
// fd; the only shared state is the failed flag (atomic).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "storage/disk_image.h"

namespace kite::storage {

// Creates (or truncates) a raw image of `size` bytes. kMetadata is treated as kOff (raw has no
// metadata); kFalloc reserves blocks with fallocate; kFull writes zeros. `sync`: fsync the new
// file before returning (see Qcow2CreateOptions::sync).
Result<void> CreateRaw(const std::string& path, uint64_t size, Preallocation prealloc,
                       bool sync = true);

// Opens `path` the way every image file is opened: O_NONBLOCK (no hang on a FIFO), then fstat;
// regular files and block devices only (I32). Sets O_DIRECT for cache=none. Takes the advisory
// lock unless options.lock is false. `allow_block_device` is false for backing files.
struct OpenedFile {
  UniqueFd fd;
  uint64_t size = 0;  // file size, or block device size
  bool block_device = false;
  uint64_t dev = 0;  // st_dev, st_ino: identity for backing-loop detection (I15)
  uint64_t ino = 0;
};
Result<OpenedFile> OpenImageFile(const std::string& path, const OpenOptions& options,
                                 bool allow_block_device = true);

// Takes the advisory OFD lock on an open image file: exclusive for writers, shared for
// readers, so two writers (or a writer and a plain reader) cannot use one image.
Result<void> LockImageFile(int fd, const std::string& path, bool exclusive);

class RawImage final : public DiskImage {
 public:
  static Result<std::unique_ptr<RawImage>> Open(const std::string& path,
                                                const OpenOptions& options);
  // For backing chains: wraps an already opened file.
  RawImage(std::string path, OpenedFile file, const OpenOptions& options);

  ImageFormat format() const override { return ImageFormat::kRaw; }
  const std::string& path() const override { return path_; }
  uint64_t size() const override { return size_; }
  bool read_only() const override { return options_.read_only; }
  uint64_t allocated_bytes() const override;
  bool failed() const override { return failed_.load(); }
  std::optional<int> raw_fd() const override;

  Result<void> ReadV(uint64_t offset, std::span<const iovec> iov) override;
  Result<void> WriteV(uint64_t offset, std::span<const iovec> iov) override;
  Result<void> Flush() override;
  Result<void> Discard(uint64_t offset, uint64_t length) override;
  Result<void> WriteZeroes(uint64_t offset, uint64_t length, bool may_unmap) override;
  Result<Extent> BlockStatus(uint64_t offset, uint64_t max_length) override;

  // block_resize: extends the file to `new_size` (sparse); a block device cannot grow. The
  // caller stops I/O on the image first.
  Result<void> Grow(uint64_t new_size);

  int fd() const { return fd_.get(); }
  bool block_device() const { return block_device_; }
  bool direct() const { return options_.cache == CacheMode::kNone; }

 private:
  Result<void> CheckRange(uint64_t offset, uint64_t length, bool write) const;
  Result<void> AfterWrite();
  Result<void> PunchHole(uint64_t offset, uint64_t length);

  std::string path_;
  UniqueFd fd_;
  uint64_t size_;
  bool block_device_;
  OpenOptions options_;
  std::atomic<bool> failed_{false};
};

// Positioned I/O that loops over short transfers and EINTR/EAGAIN (F5). A read that hits end of
// file fills the rest with zeros. Exposed for the qcow2 code, which reads and writes its file the
// same way.
Result<void> PreadvFull(int fd, std::span<const iovec> iov, uint64_t offset);
Result<void> PwritevFull(int fd, std::span<const iovec> iov, uint64_t offset);
Result<void> PreadFull(int fd, void* buf, size_t len, uint64_t offset);
Result<void> PwriteFull(int fd, const void* buf, size_t len, uint64_t offset);

// O_DIRECT alignment kite uses everywhere (not the device's logical block size), and whether
// a transfer meets it: offset, every buffer's address and every length.
inline constexpr uint64_t kDirectAlign = 4096;
bool DirectAligned(uint64_t offset, std::span<const iovec> iov);

// Total length of an iovec array.
uint64_t IovLength(std::span<const iovec> iov);
// The bytes [skip, skip + len) of an iovec array, as a new array.
std::vector<iovec> SliceIov(std::span<const iovec> iov, uint64_t skip, uint64_t len);
void ZeroIov(std::span<const iovec> iov);
// Copies between a flat buffer and an iovec array (as many bytes as the array holds).
void CopyToIov(std::span<const iovec> iov, const uint8_t* src);
void CopyFromIov(std::span<const iovec> iov, uint8_t* dst);

}  // namespace kite::storage
