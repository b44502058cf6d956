// QedImage: a read-only DiskImage over a QED file (qed_header.h), for `kite run` with
// readonly=on and for kite-img (info, map, compare, convert from QED). Writes are refused:
// kite reads QED to get guests and images off it, it does not keep it alive.
//
// Opening checks the header and every L1 entry the image size uses (an L2 table that is
// misaligned, inside the header or not wholly inside the file refuses the open, naming the
// entry). L2 tables are read in 4 KiB slices through a bounded cache (a table may be 1 GiB);
// every L2 entry is checked when used: a data cluster outside the file fails that read with an
// error naming the file, the guest offset and the entry. Unallocated clusters read from the
// backing file (zeros past its end) or as zeros; zero clusters (entry 1) read as zeros.
// QED_F_NEED_CHECK (not closed cleanly) is accepted, as qemu-img does for a read-only open: the
// tables are untrusted anyway, and nothing is written.
//
// Threads: ReadV/BlockStatus may run concurrently; the slice cache has its own lock.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "storage/disk_image.h"
#include "storage/qed/qed_header.h"
#include "storage/raw_image.h"

namespace kite::storage::qed {

struct QedOpenParams {
  std::string path;
  OpenedFile file;
  Header header;
  std::unique_ptr<DiskImage> backing;  // null: unallocated clusters read as zeros
};

Result<std::unique_ptr<DiskImage>> OpenQed(QedOpenParams params);

// Reads the header cluster prefix of an opened file and parses it (qed_header.h), and the
// backing file name when the header names one.
struct HeaderAndName {
  Header header;
  std::string backing_file;
};
Result<HeaderAndName> ReadHeader(int fd, uint64_t file_size, const std::string& path);

}  // namespace kite::storage::qed
