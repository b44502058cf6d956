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

// Writes fresh refcount structures of width 2^`order` bits past the end of everything in use,
// counting every reference from the metadata and themselves; then switches the header to them
// (and to the new width). The old structures become free clusters. A count that does not fit
// the new width is refused before anything is written (qemu-img amend's message).
Result<void> RebuildRefcounts(Meta& meta, uint32_t order);

}  // namespace kite::storage::qcow2
