// FileIo: positioned reads and writes on an open qcow2 file, which may be open with O_DIRECT
// (cache=none). Without O_DIRECT every call is one pread/pwrite (as PreadFull/PwriteFull).
// With O_DIRECT, requests whose offset, length and memory are 4 KiB-aligned go straight to the
// file; the others go through an aligned bounce buffer: reads read the aligned range around
// the request, writes read the partial first and last blocks, merge and write whole blocks
// (read-modify-write). The rest of such a block is written back with what was just read from
// the file, so a metadata write of an 8-byte entry stays as crash-safe as the entry write
// itself. A bounced write may extend the file to the next 4 KiB boundary (zeros), as QEMU's
// request padding does.
//
// Threads: any number. Read-modify-write writes take `rmw_mu_`, so two of them never rewrite
// one block at once; a write that needs no read (aligned offset and length) writes only its own
// bytes and takes no lock. Lock order: after Qcow2Image's meta_mu_ and io_mu_ (a leaf).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <mutex>
#include <span>

#include "base/result.h"
#include "storage/raw_image.h"

namespace kite::storage::qcow2 {

class FileIo {
 public:
  static constexpr uint64_t kAlign = kDirectAlign;

  // O_DIRECT is detected on `fd` (fcntl F_GETFL).
  explicit FileIo(int fd);

  int fd() const { return fd_; }
  bool direct() const { return direct_; }

  // The file's size (a block device's size for a block device); 0 when it cannot be read.
  uint64_t Size() const;

  // Reads past the end of the file return zeros.
  Result<void> ReadV(std::span<const iovec> iov, uint64_t offset) const;
  Result<void> WriteV(std::span<const iovec> iov, uint64_t offset) const;
  Result<void> Read(void* buf, size_t len, uint64_t offset) const;
  Result<void> Write(const void* buf, size_t len, uint64_t offset) const;
  // Writes `len` bytes at `offset` that lie inside [held_offset, held_offset + held.size()),
  // whose current file contents the caller holds in `held` (already updated with the new
  // bytes), such as a cached metadata cluster. With O_DIRECT, when the aligned blocks around
  // the range lie inside `held`, they are written from it without reading the file first.
  Result<void> WriteHeld(std::span<const uint8_t> held, uint64_t held_offset, uint64_t offset,
                         size_t len) const;

 private:
  Result<void> BounceRead(std::span<const iovec> iov, uint64_t offset) const;
  Result<void> BounceWrite(std::span<const iovec> iov, uint64_t offset) const;

  int fd_;
  bool direct_;
  mutable std::mutex rmw_mu_;
};

}  // namespace kite::storage::qcow2
