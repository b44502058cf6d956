// qcow2: the public, path-based operations on qcow2 images that kite-img and the VMM call.
// Opening a qcow2 image for I/O goes through OpenImage (disk_image.h); everything here opens
// the file itself, does its job and closes it again. The on-disk format is QEMU's
// docs/interop/qcow2.txt (versions 2 and 3); see docs/STORAGE.md for what kite supports.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "storage/disk_image.h"

namespace kite::storage {

enum class CompressionType { kZlib = 0, kZstd = 1 };
Result<CompressionType> ParseCompressionType(std::string_view name);  // "zlib", "zstd"
const char* CompressionTypeName(CompressionType type);

struct Qcow2CreateOptions {
  uint64_t size = 0;              // virtual size in bytes (rounded up to 512)
  uint32_t cluster_size = 65536;  // power of two, 512 B .. 2 MiB
  std::string compat = "1.1";     // "1.1" (version 3) or "0.10" (version 2)
  bool lazy_refcounts = false;    // needs compat 1.1
  Preallocation preallocation = Preallocation::kOff;
  int refcount_bits = 16;      // 1, 2, 4, ..., 64; version 2 allows only 16
  std::string backing_file;    // stored as given (relative names: against the image's dir)
  std::string backing_format;  // raw, qcow2, vmdk or qed; required with backing_file
  CompressionType compression_type = CompressionType::kZlib;  // zstd needs compat 1.1
  // An external data file (compat 1.1): created (truncated) at the virtual size; guest
  // clusters live there at their guest offsets. Stored as given; a relative name is relative
  // to the working directory, when created and when opened (qemu-img's rule).
  std::string data_file;
  bool data_file_raw = false;  // the data file stays a raw image (preallocates metadata)
  // Extended L2 entries (32 subclusters a cluster): compat 1.1, cluster_size >= 16 KiB.
  bool extended_l2 = false;
  // When size is 0 and a backing file is given, take the backing file's virtual size.
  bool size_from_backing = true;
  // fsync the new file before returning. kite-img convert with -t unsafe (its default) turns
  // it off, as qemu-img creates without a flush: on a journalling file system that fsync waits
  // for every dirty page the journal commit orders before it (~1 s behind a 500 MB write).
  bool sync = true;
};

// Creates (or truncates) `path` as a new qcow2 image.
Result<void> CreateQcow2(const std::string& path, const Qcow2CreateOptions& options);

enum class RepairMode { kNone, kLeaks, kAll };

// The result of a consistency check, as qemu-img check reports it.
struct CheckReport {
  uint64_t corruptions = 0;   // remaining after repair
  uint64_t leaks = 0;         // remaining after repair
  uint64_t check_errors = 0;  // I/O errors while checking
  uint64_t corruptions_fixed = 0;
  uint64_t leaks_fixed = 0;
  uint64_t image_end_offset = 0;
  uint64_t allocated_clusters = 0;  // guest clusters allocated in this image
  uint64_t total_clusters = 0;      // guest clusters of the virtual disk
  uint64_t fragmented_clusters = 0;
  uint64_t compressed_clusters = 0;
  std::vector<std::string> messages;  // one line per problem found, qemu-img style
  // qemu-img check's exit code: 0 clean, 1 check errors, 2 corruptions, 3 leaks only.
  int ExitCode() const;
};

// Checks `path`; with repair, rebuilds the refcounts (kLeaks fixes only leaks, kAll fixes
// refcounts that are too low as well) and clears the dirty bit.
Result<CheckReport> CheckQcow2(const std::string& path, RepairMode repair);

struct SnapshotInfo {
  std::string id;
  std::string name;
  uint64_t vm_state_size = 0;
  uint32_t date_sec = 0;
  uint32_t date_nsec = 0;
  uint64_t vm_clock_nsec = 0;
  std::optional<uint64_t> icount;  // absent when the entry has no instruction count
  uint64_t disk_size = 0;          // virtual size when the snapshot was taken
};

struct Qcow2Info {
  int version = 3;
  std::string compat;  // "0.10" or "1.1"
  uint32_t cluster_size = 0;
  uint64_t virtual_size = 0;
  std::string backing_file;    // as stored in the header
  std::string backing_format;  // empty when the header has no backing-format extension
  bool lazy_refcounts = false;
  int refcount_bits = 16;
  bool corrupt = false;
  bool dirty = false;
  bool extended_l2 = false;
  std::string data_file;       // the external data file name, as stored (may be empty)
  bool external_data = false;  // incompatible bit 2: guest data lives in the data file
  bool data_file_raw = false;  // the data file is a consistent raw image too
  CompressionType compression_type = CompressionType::kZlib;
  uint64_t l1_size = 0;
  std::vector<SnapshotInfo> snapshots;
};

// Reads header and snapshot table without opening for I/O (no lock taken: like qemu-img -U).
Result<Qcow2Info> InspectQcow2(const std::string& path);

// Internal snapshots. `name_or_id` matches an id first, then a name (as qemu-img -l/-a/-d).
Result<std::vector<SnapshotInfo>> ListSnapshots(const std::string& path);
Result<void> CreateSnapshot(const std::string& path, const std::string& name);
Result<void> ApplySnapshot(const std::string& path, const std::string& name_or_id);
Result<void> DeleteSnapshot(const std::string& path, const std::string& name_or_id);

struct ResizeOptions {
  bool shrink = false;  // needed to make the image smaller
  bool force = false;   // shrink even when allocated data past the new end would be lost
  Preallocation preallocation = Preallocation::kOff;  // for the grown part (raw: all modes)
};

// Resizes a raw or qcow2 image (qcow2 version 2: no shrinking while it has internal snapshots).
Result<void> ResizeImage(const std::string& path, ImageFormat format, uint64_t new_size,
                         const ResizeOptions& options);

// Rewrites the backing file name and format in the header (qemu-img rebase -u). An empty
// `new_backing` removes the backing file.
Result<void> SetBackingFile(const std::string& path, const std::string& new_backing,
                            const std::string& new_format);

// What `qemu-img amend` may change on a qcow2 image; unset fields stay as they are.
struct Qcow2AmendOptions {
  std::optional<int> version;            // 2 (compat=0.10) or 3 (compat=1.1)
  std::optional<bool> lazy_refcounts;    // needs version 3
  std::optional<int> refcount_bits;      // 1, 2, 4, ..., 64; other than 16 needs version 3
  std::optional<uint64_t> size;          // new virtual size, a multiple of 512; a shrink drops data
                                         // (an external data file is resized with it)
  std::optional<std::string> data_file;  // renames the external data file (images with one)
  std::optional<bool> data_file_raw;     // may only be turned off (or stay on)
};

// Amends `path` in qemu's order: upgrade to version 3, refcount width (new refcount table and
// blocks, as CheckQcow2's repair writes them), lazy refcounts, size, downgrade to
// version 2 (zero clusters become unallocated or zero-filled data clusters first). Every
// refusal qemu would make part-way is made before the first write. See qcow2_amend.cc.
Result<void> AmendQcow2(const std::string& path, const Qcow2AmendOptions& options);

// Writes one whole guest cluster of an open qcow2 image compressed, with the image's
// compression type (qemu-img convert -c): `offset` cluster-aligned, `cluster` one cluster long
// (shorter only for the disk's last cluster), the cluster not yet allocated in this image.
// Data that does not compress is written normally. Other formats: "Compression not supported
// for this file format". See Qcow2Image::WriteCompressedCluster.
Result<void> WriteCompressedCluster(DiskImage& image, uint64_t offset,
                                    std::span<const uint8_t> cluster);

// WriteCompressedCluster in two halves, so that callers compress on several threads and store
// in disk order on one: CompressClusterFor needs no lock and returns the image's stream for
// `cluster` (empty: it does not shrink); the four-argument WriteCompressedCluster stores a
// stream CompressClusterFor made for that same `cluster`.
Result<std::vector<uint8_t>> CompressClusterFor(DiskImage& image, std::span<const uint8_t> cluster);
Result<void> WriteCompressedCluster(DiskImage& image, uint64_t offset,
                                    std::span<const uint8_t> cluster,
                                    std::span<const uint8_t> stream);

}  // namespace kite::storage
