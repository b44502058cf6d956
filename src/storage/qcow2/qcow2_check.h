// qcow2 consistency check and refcount rebuild, on an open Meta. CheckQcow2 (qcow2.h) opens
// the file and calls this; a read-write open of a dirty image calls it with kAll (I8).
#pragma once

#include "base/result.h"
#include "storage/qcow2/qcow2.h"
#include "storage/qcow2/qcow2_meta.h"

namespace kite::storage::qcow2 {

// Counts every reference from the metadata, compares with the stored refcounts and checks
// L1/L2 entries. With repair, writes a fresh refcount table and blocks at the end of the file
// (the old ones become free space), fixes COPIED flags, and clears the dirty bit.
Result<CheckReport> CheckMeta(Meta& meta, RepairMode repair);

}  // namespace kite::storage::qcow2
