// libFuzzer target: a qcow2 image from fuzz input (in a memfd, never a real file) goes through
// header/extension parsing, L1/refcount/snapshot table loading, a few guest reads and a
// read-only check. Nothing here may crash, hang or allocate without bound (BAD_INPUTS I2-I31).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "storage/qcow2/qcow2_check.h"
#include "storage/qcow2/qcow2_meta.h"

using namespace kite::storage;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (4 << 20)) return 0;
  int fd = memfd_create("qcow2-fuzz", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (write(fd, data, size) == static_cast<ssize_t>(size)) {
    auto meta = qcow2::Meta::Open(fd, "fuzz.qcow2", /*writable=*/false);
    if (meta) {
      uint64_t cs = (*meta)->cluster_size();
      uint64_t disk = (*meta)->header().size;
      for (uint64_t off = 0; off < disk && off < 64 * cs; off += cs) {
        if (!(*meta)->Lookup(off)) break;
      }
      if ((*meta)->file_size() < (1 << 20)) (void)qcow2::CheckMeta(**meta, RepairMode::kNone);
    }
  }
  close(fd);
  return 0;
}
