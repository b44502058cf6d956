// Internal snapshots: the snapshot table (read, write) and the operations behind
// CreateSnapshot/ApplySnapshot/DeleteSnapshot in qcow2.h. Each snapshot owns a copy of the L1
// table; the L2 tables and data clusters it reaches are shared with the active image by
// refcount (copy-on-write on the next write).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "storage/qcow2/qcow2_header.h"
#include "storage/qcow2/qcow2_io.h"

namespace kite::storage::qcow2 {

class Meta;

struct SnapshotEntry {
  uint64_t l1_table_offset = 0;
  uint32_t l1_size = 0;
  std::string id;
  std::string name;
  uint32_t date_sec = 0;
  uint32_t date_nsec = 0;
  uint64_t vm_clock_nsec = 0;
  uint64_t vm_state_size = 0;
  uint64_t disk_size = 0;
  bool has_icount = false;
  uint64_t icount = 0;
  std::vector<uint8_t> extra_unknown;  // extra data beyond the fields kite knows, preserved
};

// Reads and validates the snapshot table (I23). `file_size` bounds every offset.
Result<std::vector<SnapshotEntry>> ReadSnapshots(const FileIo& io, const Header& header,
                                                 uint64_t file_size, const std::string& path);
// Serialized table bytes.
std::vector<uint8_t> SerializeSnapshots(const std::vector<SnapshotEntry>& snapshots);

// Adds `delta` to the refcount of every L2 table and data cluster reachable from `l1`,
// then (when `fix_copied`) rewrites the COPIED flags of the active L1/L2 tables.
Result<void> UpdateL1Refcounts(Meta& meta, const std::vector<uint64_t>& l1, int delta);
Result<void> FixCopiedFlags(Meta& meta);

// Replaces the snapshot table (new clusters, header update, old table freed).
Result<void> WriteSnapshotTable(Meta& meta, const std::vector<SnapshotEntry>& snapshots);

}  // namespace kite::storage::qcow2
