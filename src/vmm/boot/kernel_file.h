// KernelFile: a kernel or initrd opened for loading. Only regular files are accepted (a FIFO,
// a device such as /dev/zero or a directory is refused at open, without blocking or reading),
// and every read is checked against the file size, so a header field pointing past the end
// of the file becomes an Error instead of a short read.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "vmm/guest_memory.h"

namespace kite::boot {

class KernelFile {
 public:
  // `what` names the file in errors: "kernel", "initrd".
  static Result<KernelFile> Open(const std::string& path, std::string_view what);

  uint64_t size() const { return size_; }
  // "kernel /path/to/vmlinux": the prefix of every error about this file.
  const std::string& name() const { return name_; }

  // Reads exactly [offset, offset + dst.size()) of the file; an Error when it is not all
  // inside the file.
  Result<void> ReadAt(uint64_t offset, std::span<uint8_t> dst) const;
  // Copies [offset, offset + len) of the file to guest memory at `addr` (one RAM region).
  Result<void> CopyToGuest(const GuestMemory& memory, GuestAddr addr, uint64_t offset,
                           uint64_t len) const;

 private:
  UniqueFd fd_;
  uint64_t size_ = 0;
  std::string name_;
};

}  // namespace kite::boot
