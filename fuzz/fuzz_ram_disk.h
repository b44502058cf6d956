// FuzzRamDisk: a small in-memory raw DiskImage for the virtio-blk fuzzers. A read-only disk
// aborts on any write that reaches it: the device must refuse those itself (BAD_INPUTS G19).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "storage/disk_image.h"

namespace kite::fuzz {

class FuzzRamDisk final : public storage::DiskImage {
 public:
  explicit FuzzRamDisk(uint64_t size, bool ro) : data_(size), ro_(ro) {}
  storage::ImageFormat format() const override { return storage::ImageFormat::kRaw; }
  const std::string& path() const override { return path_; }
  uint64_t size() const override { return data_.size(); }
  bool read_only() const override { return ro_; }
  uint64_t allocated_bytes() const override { return data_.size(); }
  Result<void> ReadV(uint64_t off, std::span<const iovec> iov) override {
    for (const iovec& v : iov) {
      if (off > size() || v.iov_len > size() - off) return Err("range");
      std::memcpy(v.iov_base, data_.data() + off, v.iov_len);
      off += v.iov_len;
    }
    return {};
  }
  Result<void> WriteV(uint64_t off, std::span<const iovec> iov) override {
    if (ro_) std::abort();  // the device must refuse writes to a read-only disk (G19)
    for (const iovec& v : iov) {
      if (off > size() || v.iov_len > size() - off) return Err("range");
      std::memcpy(data_.data() + off, v.iov_base, v.iov_len);
      off += v.iov_len;
    }
    return {};
  }
  Result<void> Flush() override { return {}; }
  Result<void> Discard(uint64_t off, uint64_t len) override { return Zero(off, len); }
  Result<void> WriteZeroes(uint64_t off, uint64_t len, bool) override { return Zero(off, len); }
  Result<storage::Extent> BlockStatus(uint64_t, uint64_t) override { return Err("unsupported"); }

 private:
  Result<void> Zero(uint64_t off, uint64_t len) {
    if (ro_) std::abort();
    if (off > size() || len > size() - off) return Err("range");
    std::memset(data_.data() + off, 0, len);
    return {};
  }
  std::string path_ = "fuzz";
  std::vector<uint8_t> data_;
  bool ro_;
};

}  // namespace kite::fuzz
