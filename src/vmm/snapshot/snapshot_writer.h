// SnapshotWriter: writes a snapshot directory so that a crash at any moment leaves either the
// previous complete snapshot or the new complete one at DIR (BAD_INPUTS.md F11), and never
// writes over a file the running VM depends on (C13). docs/SNAPSHOTS.md "Atomicity and
// crashes".
//
//   SnapshotWriter w = TRY(SnapshotWriter::Begin(dir, {memory.backing_path(), disk paths...}));
//   MemoryFileLayout layout = TRY(w.WriteMemory(memory.regions()));
//   body["memory"] = MemoryLayoutToJson(layout);
//   TRY(w.WriteConfig(ConfigToJson(config)));
//   TRY(w.WriteState(body));
//   TRY(w.Commit());        // without it, the destructor removes everything written
//
// The files go into a fresh sibling directory DIR.partial-<pid>-<random> (mode 0700, files
// 0600: guest memory is private). Commit() fsyncs it and swaps it in: rename(2) when DIR does
// not exist, renameat2(RENAME_EXCHANGE) when it does (the destructor removes the old tree). Begin()
// removes stale DIR.partial-* directories of dead processes.
#pragma once

#include <sys/types.h>

#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "vmm/guest_memory.h"
#include "vmm/snapshot/memory_file.h"

namespace kite::snapshot {

class SnapshotWriter {
 public:
  // Refuses (before creating anything) when DIR exists and is not a directory, is not a kite
  // snapshot (holds files other than state/memory/config.json, or files but no state), or
  // when DIR or a file in it resolves to one of `forbidden_paths` (the memory file the VM
  // maps, its disks; paths that do not exist are ignored).
  static Result<SnapshotWriter> Begin(const std::string& dir,
                                      const std::vector<std::string>& forbidden_paths);

  SnapshotWriter(SnapshotWriter&& other) noexcept;
  SnapshotWriter& operator=(SnapshotWriter&&) = delete;
  SnapshotWriter(const SnapshotWriter&) = delete;
  SnapshotWriter& operator=(const SnapshotWriter&) = delete;
  ~SnapshotWriter();

  // The target, symlinks resolved.
  const std::string& dir() const { return dir_; }
  std::string partial_dir() const;

  Result<MemoryFileLayout> WriteMemory(std::span<const MemoryRegion> regions,
                                       MemoryWriteStats* stats = nullptr);
  // config.json, pretty-printed (the `kite run --config` schema; see vmm/config_json.h).
  Result<void> WriteConfig(const nlohmann::json& config);
  Result<void> WriteState(const nlohmann::json& body);
  // Needs all three files written. On success the snapshot is at dir() and durable; the
  // previous snapshot it replaced is removed by the destructor (so a caller may resume the VM
  // first: nothing after WriteState() reads guest state).
  Result<void> Commit();

 private:
  struct FileId {
    dev_t dev;
    ino_t ino;
    std::string path;
  };
  SnapshotWriter() = default;
  Result<void> CheckExistingTarget() const;
  Result<void> CheckNotForbidden(int dirfd, const char* name, const std::string& shown) const;
  Result<void> SwapIn();

  std::string dir_;           // resolved target
  std::string parent_;        // its folder
  std::string name_;          // its last component
  std::string partial_name_;  // in parent_
  UniqueFd parent_fd_;
  UniqueFd partial_fd_;
  std::vector<FileId> forbidden_;
  bool wrote_memory_ = false, wrote_config_ = false, wrote_state_ = false;
  bool committed_ = false;
  bool replaced_old_ = false;  // committed by exchange: the old tree is at partial_name_
};

// Removes `name` (a snapshot or partial directory in `parent_fd`): its snapshot files, then
// the directory. Anything else in it stays (and so does the directory).
Result<void> RemoveSnapshotDir(int parent_fd, const std::string& name);

}  // namespace kite::snapshot
