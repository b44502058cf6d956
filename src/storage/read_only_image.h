// ReadOnlyImage: the part every read-only format shares (QED, VMDK): writes,
// discards and write-zeroes fail naming the image and saying why, and nothing is written;
// flush has nothing to do. A format implements the reads, its size and BlockStatus.
#pragma once

#include <string>

#include "storage/disk_image.h"

namespace kite::storage {

class ReadOnlyImage : public DiskImage {
 public:
  bool read_only() const final { return true; }
  Result<void> WriteV(uint64_t, std::span<const iovec>) final { return Refuse(); }
  Result<void> Flush() final { return {}; }
  Result<void> Discard(uint64_t, uint64_t) final { return Refuse(); }
  Result<void> WriteZeroes(uint64_t, uint64_t, bool) final { return Refuse(); }

 protected:
  // Why the image cannot be written, e.g. "QED images are read-only in kite".
  virtual std::string ReadOnlyReason() const = 0;

 private:
  Error Refuse() const { return Err(path() + ": " + ReadOnlyReason()); }
};

}  // namespace kite::storage
