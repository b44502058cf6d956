// KernelFile: regular-file checks and bounded reads for kernels and initrds (BAD_INPUTS K7).
#include "vmm/boot/kernel_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/units.h"
#include "vmm/boot/hex.h"

namespace kite::boot {
namespace {

const char* FileTypeName(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

}  // namespace

Result<KernelFile> KernelFile::Open(const std::string& path, std::string_view what) {
  KernelFile file;
  file.name_ = std::string(what) + " " + path;
  if (path.empty()) return Err(std::string(what) + ": empty path");
  // O_NONBLOCK: opening a FIFO for reading must not wait for a writer. It has no effect on
  // the regular files that get past the fstat check below.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return SysErr("opening " + file.name_);
  file.fd_ = UniqueFd(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return SysErr("stat of " + file.name_);
  if (!S_ISREG(st.st_mode)) {
    return Err(file.name_ + ": not a regular file (it is " + FileTypeName(st.st_mode) + ")");
  }
  file.size_ = static_cast<uint64_t>(st.st_size);
  return file;
}

Result<void> KernelFile::ReadAt(uint64_t offset, std::span<uint8_t> dst) const {
  if (offset > size_ || dst.size() > size_ - offset) {
    return Err(name_ + ": read of " + std::to_string(dst.size()) + " bytes at offset " +
               Hex(offset) + " is past the end of the file (" + std::to_string(size_) + " bytes)");
  }
  size_t done = 0;
  while (done < dst.size()) {
    ssize_t n =
        ::pread(fd_.get(), dst.data() + done, dst.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysErr("reading " + name_);
    if (n == 0) return Err(name_ + ": file shrank while being read");
    done += static_cast<size_t>(n);
  }
  return {};
}

Result<void> KernelFile::CopyToGuest(const GuestMemory& memory, GuestAddr addr, uint64_t offset,
                                     uint64_t len) const {
  std::span<uint8_t> dst = memory.Slice(addr, len);
  if (dst.size() != len) {
    return Err(name_ + ": " + std::to_string(len) + " bytes at guest address " + Hex(addr.value) +
               " are not inside guest RAM");
  }
  return ReadAt(offset, dst);
}

}  // namespace kite::boot
