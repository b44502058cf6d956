// Path-based qcow2 operations for kite-img: info, check, snapshots, resize, rebase -u.
// Each opens the file itself (advisory lock included), works through Meta and closes it.
#include "storage/qcow2/qcow2_ops.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include "storage/qcow2/qcow2.h"
#include "storage/qcow2/qcow2_check.h"
#include "storage/qcow2/qcow2_image.h"
#include "storage/qcow2/qcow2_meta.h"
#include "storage/qcow2/qcow2_snapshot.h"

namespace kite::storage {

Result<qcow2::Opened> qcow2::OpenMeta(const std::string& path, bool writable, bool allow_corrupt) {
  OpenOptions options;
  options.read_only = !writable;
  options.force_share = !writable;
  Opened o;
  o.file = TRY(OpenImageFile(path, options, false));
  o.meta = TRY(Meta::Open(o.file.fd.get(), path, writable));
  if (!writable) return o;
  if (o.meta->corrupt() && !allow_corrupt) {
    return Err(path + ": qcow2 image is corrupt; cannot be opened read/write");
  }
  if (!allow_corrupt && (o.meta->header().incompatible_features & kIncompatDirty)) {
    TRY(CheckMeta(*o.meta, RepairMode::kAll));
  }
  return o;
}

namespace {

using qcow2::Meta;
using qcow2::Opened;
using qcow2::OpenMeta;
using qcow2::SnapshotEntry;

SnapshotInfo ToInfo(const SnapshotEntry& s) {
  SnapshotInfo i;
  i.id = s.id;
  i.name = s.name;
  i.vm_state_size = s.vm_state_size;
  i.date_sec = s.date_sec;
  i.date_nsec = s.date_nsec;
  i.vm_clock_nsec = s.vm_clock_nsec;
  if (s.has_icount) i.icount = s.icount;
  i.disk_size = s.disk_size;
  return i;
}

Result<std::vector<SnapshotEntry>> Snapshots(Meta& meta) {
  if (meta.header().nb_snapshots == 0) return std::vector<SnapshotEntry>{};
  return qcow2::ReadSnapshots(meta.io(), meta.header(), meta.file_size(), meta.path());
}

// Index of the snapshot whose id (first) or name matches.
Result<size_t> FindSnapshot(const std::vector<SnapshotEntry>& snaps, const std::string& key,
                            const std::string& path) {
  for (size_t i = 0; i < snaps.size(); ++i) {
    if (snaps[i].id == key) return i;
  }
  for (size_t i = 0; i < snaps.size(); ++i) {
    if (snaps[i].name == key) return i;
  }
  return Err(path + ": Can't find the snapshot '" + key + "'");
}

}  // namespace

Result<CompressionType> ParseCompressionType(std::string_view name) {
  if (name == "zlib") return CompressionType::kZlib;
  if (name == "zstd") return CompressionType::kZstd;
  return Err("Unknown compression type '" + std::string(name) + "' (expected zlib or zstd)");
}

const char* CompressionTypeName(CompressionType type) {
  return type == CompressionType::kZstd ? "zstd" : "zlib";
}

Result<Qcow2Info> InspectQcow2(const std::string& path) {
  Opened o = TRY(OpenMeta(path, false));
  const qcow2::Header& h = o.meta->header();
  Qcow2Info info;
  info.version = static_cast<int>(h.version);
  info.compat = h.version == 2 ? "0.10" : "1.1";
  info.cluster_size = static_cast<uint32_t>(h.cluster_size());
  info.virtual_size = h.size;
  info.backing_file = h.backing_file;
  info.backing_format = h.backing_format;
  info.lazy_refcounts = h.compatible_features & qcow2::kCompatLazyRefcounts;
  info.refcount_bits = static_cast<int>(h.refcount_bits());
  info.corrupt = h.incompatible_features & qcow2::kIncompatCorrupt;
  info.dirty = h.incompatible_features & qcow2::kIncompatDirty;
  info.extended_l2 = h.extended_l2();
  info.compression_type = static_cast<CompressionType>(h.compression_type);
  info.l1_size = h.l1_size;
  info.data_file = h.data_file;
  info.external_data = h.external_data();
  info.data_file_raw = h.data_file_raw();
  for (const SnapshotEntry& s : TRY(Snapshots(*o.meta))) info.snapshots.push_back(ToInfo(s));
  return info;
}

Result<CheckReport> CheckQcow2(const std::string& path, RepairMode repair) {
  Opened o = TRY(OpenMeta(path, repair != RepairMode::kNone, true));
  return qcow2::CheckMeta(*o.meta, repair);
}

Result<std::vector<SnapshotInfo>> ListSnapshots(const std::string& path) {
  return TRY(InspectQcow2(path)).snapshots;
}

Result<void> CreateSnapshot(const std::string& path, const std::string& name) {
  Opened o = TRY(OpenMeta(path, true));
  Meta& meta = *o.meta;
  if (meta.header().external_data()) {  // the data file holds one version of each cluster
    return Err(path + ": internal snapshots are not supported with an external data file");
  }
  auto snaps = TRY(Snapshots(meta));
  uint64_t next_id = 1;
  for (const SnapshotEntry& s : snaps) {
    if (s.name == name) return Err(path + ": a snapshot named '" + name + "' already exists");
    next_id = std::max<uint64_t>(next_id, std::strtoull(s.id.c_str(), nullptr, 10) + 1);
  }
  uint64_t cs = meta.cluster_size();
  SnapshotEntry s;
  s.l1_size = meta.header().l1_size;
  std::vector<uint8_t> l1(uint64_t{s.l1_size} * 8);
  for (size_t i = 0; i < meta.l1().size(); ++i) qcow2::PutBe64(&l1[i * 8], meta.l1()[i]);
  if (!l1.empty()) {
    s.l1_table_offset = TRY(meta.Allocate((l1.size() + cs - 1) / cs));
    meta.AddMetadata(s.l1_table_offset, l1.size());
    TRY(meta.io().Write(l1.data(), l1.size(), s.l1_table_offset));
  }
  // Raise refcounts first: a crash before the table is written leaks, never corrupts.
  TRY(qcow2::UpdateL1Refcounts(meta, meta.l1(), +1));
  TRY(qcow2::FixCopiedFlags(meta));
  TRY(meta.Sync());
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  s.id = std::to_string(next_id);
  s.name = name;
  s.date_sec = static_cast<uint32_t>(now.tv_sec);
  s.date_nsec = static_cast<uint32_t>(now.tv_nsec);
  s.disk_size = meta.header().size;
  snaps.push_back(s);
  return qcow2::WriteSnapshotTable(meta, snaps);
}

Result<void> ApplySnapshot(const std::string& path, const std::string& name_or_id) {
  Opened o = TRY(OpenMeta(path, true));
  Meta& meta = *o.meta;
  auto snaps = TRY(Snapshots(meta));
  const SnapshotEntry& s = snaps[TRY(FindSnapshot(snaps, name_or_id, path))];
  std::vector<uint64_t> l1 = TRY(meta.ReadTable(s.l1_table_offset, s.l1_size));
  if (l1.size() > meta.l1().size()) {
    return Err(path + ": snapshot L1 table is larger than the active one (not supported)");
  }
  l1.resize(meta.l1().size(), 0);
  // Every table the snapshot reaches is shared once its refcounts are raised: no COPIED.
  for (uint64_t& e : l1) e &= ~qcow2::kOflagCopied;
  TRY(qcow2::UpdateL1Refcounts(meta, l1, +1));
  std::vector<uint64_t> old = meta.l1();
  for (size_t i = 0; i < l1.size(); ++i) TRY(meta.WriteL1Entry(i, l1[i]));
  TRY(meta.Sync());
  TRY(qcow2::UpdateL1Refcounts(meta, old, -1));
  TRY(qcow2::FixCopiedFlags(meta));
  if (s.disk_size != meta.header().size && s.disk_size != 0) {
    uint8_t be[8];
    qcow2::PutBe64(be, s.disk_size);
    TRY(meta.WriteHeaderBytes(qcow2::kOffSize, be, 8));
  }
  return meta.Sync();
}

Result<void> DeleteSnapshot(const std::string& path, const std::string& name_or_id) {
  Opened o = TRY(OpenMeta(path, true));
  Meta& meta = *o.meta;
  auto snaps = TRY(Snapshots(meta));
  size_t index = TRY(FindSnapshot(snaps, name_or_id, path));
  SnapshotEntry gone = snaps[index];
  snaps.erase(snaps.begin() + static_cast<ptrdiff_t>(index));
  TRY(qcow2::WriteSnapshotTable(meta, snaps));  // first unlink it: a crash then only leaks
  std::vector<uint64_t> l1 = TRY(meta.ReadTable(gone.l1_table_offset, gone.l1_size));
  TRY(qcow2::UpdateL1Refcounts(meta, l1, -1));
  if (gone.l1_size > 0) {
    meta.RemoveMetadata(gone.l1_table_offset, uint64_t{gone.l1_size} * 8);
    TRY(meta.Free(gone.l1_table_offset, uint64_t{gone.l1_size} * 8));
  }
  TRY(qcow2::FixCopiedFlags(meta));
  return meta.Sync();
}

Result<void> SetBackingFile(const std::string& path, const std::string& new_backing,
                            const std::string& new_format) {
  Opened o = TRY(OpenMeta(path, true));
  if (!new_backing.empty() && !ParseImageFormat(new_format)) {
    return Err("A backing format (raw, qcow2, vmdk or qed) is required for '" + new_backing + "'");
  }
  qcow2::Header& h = o.meta->mutable_header();
  h.backing_file = new_backing;
  h.backing_format = new_backing.empty() ? "" : new_format;
  TRY(o.meta->RewriteHeader());
  return o.meta->Sync();
}

Result<void> ResizeImage(const std::string& path, ImageFormat format, uint64_t new_size,
                         const ResizeOptions& options) {
  OpenOptions open;
  open.open_backing = false;
  if (format == ImageFormat::kRaw) {
    auto image = TRY(OpenImage(path, format, open));
    uint64_t old = image->size();
    if (new_size < old && !options.shrink) {
      return Err(path + ": shrinking needs --shrink (data past the new end is lost)");
    }
    TRY(image->Flush());
    image.reset();
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(new_size)) != 0) {
      return SysErr(path + ": resizing");
    }
    if (new_size > old && options.preallocation == Preallocation::kFalloc &&
        ::fallocate(fd.get(), 0, static_cast<off_t>(old), static_cast<off_t>(new_size - old))) {
      return SysErr(path + ": fallocate");
    }
    return {};
  }
  if (format != ImageFormat::kQcow2) return Err("resize: unsupported image format");
  open.follow_data_file = true;                     // kite-img resize: the image's owner runs it
  auto image = TRY(OpenImage(path, format, open));  // with its external data file, if any
  return static_cast<qcow2::Qcow2Image&>(*image).Resize(new_size, options);
}

}  // namespace kite::storage
