// CheckQed: `kite-img check` for QED, read-only and counted as qemu-img counts (its
// block/qed-check.c): every L1 entry and every entry of every L2 table is checked; an offset
// that is misaligned, inside the header or outside the file, or a cluster referenced twice,
// is a corruption; a cluster of the file after the header that nothing references is a leak;
// allocated and fragmented clusters as qemu-img reports them. Tables are read in 4 KiB slices
// and the used-cluster map has one bit per cluster of the file, so memory is bounded by the
// file's size. No repair (QED is read-only in kite).
#pragma once

#include <string>

#include "base/result.h"
#include "storage/qcow2/qcow2.h"

namespace kite::storage::qed {

Result<CheckReport> CheckQed(const std::string& path);

}  // namespace kite::storage::qed
