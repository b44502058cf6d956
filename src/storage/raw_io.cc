// Positioned I/O helpers shared by every image format: loops over short transfers, EINTR and
// EAGAIN (F5), zero-fills reads past end of file (I18, I31: no mmap, so never SIGBUS).
#include <errno.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "storage/raw_image.h"

namespace kite::storage {
namespace {

constexpr int kMaxIov = 1024;  // IOV_MAX

// Drops the first `done` bytes from a working copy of an iovec array.
void Advance(std::vector<iovec>& v, size_t& first, size_t done) {
  while (done > 0 && first < v.size()) {
    size_t take = std::min(done, v[first].iov_len);
    v[first].iov_base = static_cast<char*>(v[first].iov_base) + take;
    v[first].iov_len -= take;
    done -= take;
    if (v[first].iov_len == 0) ++first;
  }
  while (first < v.size() && v[first].iov_len == 0) ++first;
}

void ZeroRest(std::vector<iovec>& v, size_t first) {
  for (size_t i = first; i < v.size(); ++i) std::memset(v[i].iov_base, 0, v[i].iov_len);
}

}  // namespace

bool DirectAligned(uint64_t offset, std::span<const iovec> iov) {
  if (offset % kDirectAlign != 0) return false;
  for (const iovec& v : iov) {
    if (reinterpret_cast<uintptr_t>(v.iov_base) % kDirectAlign != 0) return false;
    if (v.iov_len % kDirectAlign != 0) return false;
  }
  return true;
}

uint64_t IovLength(std::span<const iovec> iov) {
  uint64_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  return total;
}

std::vector<iovec> SliceIov(std::span<const iovec> iov, uint64_t skip, uint64_t len) {
  std::vector<iovec> out;
  for (const iovec& v : iov) {
    if (len == 0) break;
    if (skip >= v.iov_len) {
      skip -= v.iov_len;
      continue;
    }
    size_t take = std::min<uint64_t>(v.iov_len - skip, len);
    out.push_back({static_cast<char*>(v.iov_base) + skip, take});
    skip = 0;
    len -= take;
  }
  return out;
}

void ZeroIov(std::span<const iovec> iov) {
  for (const iovec& v : iov) std::memset(v.iov_base, 0, v.iov_len);
}

void CopyToIov(std::span<const iovec> iov, const uint8_t* src) {
  for (const iovec& v : iov) {
    std::memcpy(v.iov_base, src, v.iov_len);
    src += v.iov_len;
  }
}

void CopyFromIov(std::span<const iovec> iov, uint8_t* dst) {
  for (const iovec& v : iov) {
    std::memcpy(dst, v.iov_base, v.iov_len);
    dst += v.iov_len;
  }
}

Result<void> PreadvFull(int fd, std::span<const iovec> iov, uint64_t offset) {
  std::vector<iovec> v(iov.begin(), iov.end());
  size_t first = 0;
  Advance(v, first, 0);
  while (first < v.size()) {
    int count = static_cast<int>(std::min<size_t>(v.size() - first, kMaxIov));
    ssize_t n = ::preadv(fd, &v[first], count, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return SysErr("read at offset " + std::to_string(offset));
    }
    if (n == 0) {  // end of file: the rest reads as zeros
      ZeroRest(v, first);
      return {};
    }
    offset += static_cast<uint64_t>(n);
    Advance(v, first, static_cast<size_t>(n));
  }
  return {};
}

Result<void> PwritevFull(int fd, std::span<const iovec> iov, uint64_t offset) {
  std::vector<iovec> v(iov.begin(), iov.end());
  size_t first = 0;
  Advance(v, first, 0);
  while (first < v.size()) {
    int count = static_cast<int>(std::min<size_t>(v.size() - first, kMaxIov));
    ssize_t n = ::pwritev(fd, &v[first], count, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return SysErr("write at offset " + std::to_string(offset));
    }
    if (n == 0) return Err("write at offset " + std::to_string(offset) + ": no progress");
    offset += static_cast<uint64_t>(n);
    Advance(v, first, static_cast<size_t>(n));
  }
  return {};
}

Result<void> PreadFull(int fd, void* buf, size_t len, uint64_t offset) {
  iovec v{buf, len};
  return PreadvFull(fd, {&v, 1}, offset);
}

Result<void> PwriteFull(int fd, const void* buf, size_t len, uint64_t offset) {
  iovec v{const_cast<void*>(buf), len};
  return PwritevFull(fd, {&v, 1}, offset);
}

}  // namespace kite::storage
