// AmendQcow2 (qemu-img amend): compat upgrade and downgrade, the refcount width, lazy
// refcounts on and off, the external data file's name and raw bit, and the virtual size (with
// the data file's), applied in qemu's order (upgrade, refcount width, lazy refcounts, size,
// downgrade).
//
// Refusals: everything qemu refuses part-way through (a downgrade of zstd-compressed clusters,
// of refcounts wider than 16 bits, a v2 resize with snapshots) is checked here before the first
// write, so a refused amend leaves the file as it was. One exception, as in qemu: a dirty
// image (lazy refcounts after a crash) is repaired when it is opened read-write.
//
// Crash safety: the header is switched by one write of cluster 0 after the structures it will
// describe are on disk and synced. A downgrade first turns every zero cluster into something
// version 2 can express: without a backing file an unallocated cluster (which reads as zeros),
// else a zero-filled data cluster (in place when the cluster already had host space of its
// own, as qemu), in the snapshots' L2 tables too (changed in place, shared or not). The zeros
// are written and synced before the L2 entries change, so a crash
// leaves a valid version 3 image with at most leaked clusters. A new refcount width gets
// fresh refcount structures past the end of the file (RebuildRefcounts), synced before the
// header names them; the old ones become free clusters. Not atomic: the header write
// itself (one pwrite of at most one cluster; the header with its extensions is about 600
// bytes, so it spans more than one 512-byte sector) and a size change followed by a downgrade
// (a crash between them leaves the new size with the old version).
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <set>

#include "storage/qcow2/qcow2.h"
#include "storage/qcow2/qcow2_check.h"
#include "storage/qcow2/qcow2_image.h"
#include "storage/qcow2/qcow2_ops.h"
#include "storage/qcow2/qcow2_snapshot.h"
#include "storage/raw_image.h"

namespace kite::storage {
namespace {

using qcow2::Header;
using qcow2::Mapping;
using qcow2::Meta;

// The feature name table (header extension 0x6803f857) qemu writes into every version 3
// header: type (0 incompatible, 1 compatible, 2 autoclear), bit, name (46 bytes, NUL-padded).
struct FeatureName {
  uint8_t type;
  uint8_t bit;
  const char* name;
};
constexpr FeatureName kFeatureNames[] = {
    {0, 0, "dirty bit"},        {0, 1, "corrupt bit"},         {0, 2, "external data file"},
    {0, 3, "compression type"}, {0, 4, "extended L2 entries"}, {1, 0, "lazy refcounts"},
    {2, 0, "bitmaps"},          {2, 1, "raw external data"}};
constexpr size_t kFeatureEntryBytes = 48;

std::vector<uint8_t> FeatureTable() {
  std::vector<uint8_t> table(std::size(kFeatureNames) * kFeatureEntryBytes, 0);
  for (size_t i = 0; i < std::size(kFeatureNames); ++i) {
    uint8_t* e = &table[i * kFeatureEntryBytes];
    e[0] = kFeatureNames[i].type;
    e[1] = kFeatureNames[i].bit;
    std::string_view name = kFeatureNames[i].name;
    std::copy(name.begin(), name.end(), e + 2);
  }
  return table;
}

// Version 3 headers carry the feature name table first (after the backing format, which
// SerializeHeader places itself); version 2 headers none.
void SetFeatureTable(Header& h, bool present) {
  std::erase_if(h.extensions,
                [](const qcow2::HeaderExtension& e) { return e.type == qcow2::kExtFeatureTable; });
  if (present) h.extensions.insert(h.extensions.begin(), {qcow2::kExtFeatureTable, FeatureTable()});
}

using L2Visitor = std::function<Result<void>(uint64_t l1_index, const std::vector<uint64_t>& l2)>;

// Reads each L2 table `l1` points at (offsets checked: untrusted) and hands it to `visit`.
Result<void> ForEachL2(Meta& meta, const std::vector<uint64_t>& l1, const L2Visitor& visit) {
  uint64_t cs = meta.cluster_size();
  for (uint64_t i = 0; i < l1.size(); ++i) {
    uint64_t off = l1[i] & qcow2::kL1OffsetMask;
    if (off == 0) continue;
    if ((off & (cs - 1)) != 0 || off > meta.file_size() || cs > meta.file_size() - off) {
      return Err(meta.path() + ": Invalid L2 table offset in L1 entry " + std::to_string(i));
    }
    TRY(visit(i, TRY(meta.ReadTable(off, meta.header().l2_entries()))));  // classic only
  }
  return {};
}

bool IsCompressed(uint64_t entry) {
  return entry & qcow2::kOflagCompressed;
}
bool IsZero(uint64_t entry) {
  return !IsCompressed(entry) && (entry & qcow2::kOflagZero);
}

// What stands in the way of a downgrade, as qemu words it.
Result<void> CheckDowngrade(Meta& meta, const std::vector<qcow2::SnapshotEntry>& snapshots,
                            uint32_t refcount_order) {
  const Header& h = meta.header();
  if (refcount_order != 4) return Err("compat=0.10 requires refcount_bits=16");
  if (h.incompatible_features & qcow2::kIncompatExtendedL2) {  // qemu's refusal, word for word
    char hex[32];
    uint64_t set = h.incompatible_features & ~(qcow2::kIncompatDirty | qcow2::kIncompatCorrupt);
    std::snprintf(hex, sizeof(hex), "%#llx", static_cast<unsigned long long>(set));
    return Err(std::string("Cannot downgrade an image with incompatible features ") + hex + " set");
  }
  if (h.compression_type == 0) return {};
  bool compressed = false;
  auto census = [&](uint64_t, const std::vector<uint64_t>& l2) -> Result<void> {
    compressed |= std::any_of(l2.begin(), l2.end(), IsCompressed);
    return {};
  };
  TRY(ForEachL2(meta, meta.l1(), census));
  for (const qcow2::SnapshotEntry& s : snapshots) {
    TRY(ForEachL2(meta, TRY(meta.ReadTable(s.l1_table_offset, s.l1_size)), census));
  }
  if (compressed) {
    return Err(
        "Cannot downgrade an image with zstd compression type and existing compressed "
        "clusters");
  }
  return {};
}

// Zeroes one host cluster: an unwritten extent where the file system has them (as qemu's
// write-zeroes, so the space stays sparse and reads as a hole), else zero bytes.
Result<void> ZeroHostCluster(Meta& meta, uint64_t host, const std::vector<uint8_t>& zeros) {
  if (::fallocate(meta.fd(), FALLOC_FL_ZERO_RANGE, static_cast<off_t>(host),
                  static_cast<off_t>(zeros.size())) == 0) {
    return {};
  }
  return meta.io().Write(zeros.data(), zeros.size(), host);
}

// Turns the zero clusters of one L2 table (`l2`, at `l2_offset`, reached through `l1_index`
// of some L1 table) into what version 2 can express (see the file comment). The table is
// changed in place, shared or not: every L1 table reaching it reads the same zeros after.
// A new data cluster gets one reference per L1 table reaching the L2 table (the L2 table's
// refcount), as snapshot creation counts them. Zeros are written and synced before entries.
Result<void> ExpandZerosInTable(Meta& meta, uint64_t l1_index, uint64_t l2_offset,
                                const std::vector<uint64_t>& l2) {
  uint64_t cs = meta.cluster_size(), per_table = meta.header().l2_entries();
  bool backed = !meta.header().backing_file.empty();
  uint64_t users = TRY(meta.GetRefcount(meta.ClusterOf(l2_offset)));
  if (users == 0) return Err(meta.path() + ": L2 table with refcount 0 (run check -r all)");
  std::vector<uint8_t> zeros(cs, 0);
  struct Change {
    uint64_t index;
    uint64_t entry;
    std::optional<Mapping> drop;  // the old host cluster, when replaced by a new one
  };
  std::vector<Change> changes;
  for (uint64_t j = 0; j < l2.size(); ++j) {
    if (!IsZero(l2[j])) continue;
    Mapping m = TRY(meta.Decode(l2[j], (l1_index * per_table + j) * cs));
    if (m.host == 0 && !backed) {
      changes.push_back({j, 0, std::nullopt});
      continue;
    }
    // In place when this table's users are the cluster's only users, as qemu.
    bool in_place = m.host != 0 && TRY(meta.GetRefcount(meta.ClusterOf(m.host))) == users;
    uint64_t host = m.host;
    if (!in_place) {
      host = TRY(meta.Allocate(1));
      if (users > 1) TRY(meta.UpdateRefcounts(host, cs, static_cast<int>(users - 1)));
    }
    TRY(meta.CheckDataWrite(host));
    TRY(ZeroHostCluster(meta, host, zeros));
    changes.push_back({j, host | (users == 1 ? qcow2::kOflagCopied : 0),
                       !in_place && m.host != 0 ? std::optional<Mapping>(m) : std::nullopt});
  }
  if (changes.empty()) return {};
  TRY(meta.Sync());
  for (const Change& c : changes) {
    uint8_t be[8];
    qcow2::PutBe64(be, c.entry);
    TRY(meta.l2_cache().Write(l2_offset, c.index * 8, be, 8));
  }
  TRY(meta.Sync());
  for (const Change& c : changes) {
    if (c.drop) TRY(meta.UpdateRefcounts(c.drop->host, cs, -static_cast<int>(users)));
  }
  return {};
}

// Every zero cluster of the active and the snapshots' L1 tables (shared L2 tables once).
Result<void> ExpandZeroClusters(Meta& meta, const std::vector<qcow2::SnapshotEntry>& snapshots) {
  std::vector<std::vector<uint64_t>> l1s = {meta.l1()};
  for (const qcow2::SnapshotEntry& s : snapshots) {
    l1s.push_back(TRY(meta.ReadTable(s.l1_table_offset, s.l1_size)));
  }
  std::set<uint64_t> done;
  for (const std::vector<uint64_t>& l1 : l1s) {
    TRY(ForEachL2(meta, l1, [&](uint64_t i, const std::vector<uint64_t>& l2) -> Result<void> {
      uint64_t offset = l1[i] & qcow2::kL1OffsetMask;
      if (!done.insert(offset).second) return {};
      return ExpandZerosInTable(meta, i, offset, l2);
    }));
  }
  return {};
}

Result<void> Downgrade(Meta& meta, const std::vector<qcow2::SnapshotEntry>& snapshots) {
  TRY(ExpandZeroClusters(meta, snapshots));
  TRY(meta.Sync());
  Header& h = meta.mutable_header();
  // Only the compression type bit can be set here: a dirty image was repaired on open, a
  // corrupt one is not opened read-write, and other bits are refused by the header parser.
  // A zstd image without compressed clusters (CheckDowngrade) goes back to zlib, as qemu.
  h.version = 2;
  h.incompatible_features = 0;
  h.compatible_features = 0;
  h.autoclear_features = 0;
  h.compression_type = 0;
  SetFeatureTable(h, false);
  TRY(meta.RewriteHeader());
  return meta.Sync();
}

// What an amend changes, decided (and refused) before the first write.
struct Plan {
  int old_version = 0, new_version = 0;
  bool old_lazy = false, lazy = false;
  uint32_t old_order = 0, order = 0;
};

Result<uint32_t> RefcountOrder(int bits, int new_version) {
  if (bits < 1 || bits > 64 || (bits & (bits - 1)) != 0) {
    return Err("Refcount width must be a power of two and may not exceed 64 bits");
  }
  if (new_version < 3 && bits != 16) {
    return Err(
        "Refcount widths other than 16 bits require compatibility level 1.1 or above (use "
        "compat=1.1 or greater)");
  }
  return static_cast<uint32_t>(__builtin_ctz(static_cast<unsigned>(bits)));
}

Result<Plan> MakePlan(Meta& meta, const std::vector<qcow2::SnapshotEntry>& snapshots,
                      const Qcow2AmendOptions& options) {
  const Header& h = meta.header();
  Plan p;
  p.old_version = static_cast<int>(h.version);
  p.new_version = options.version.value_or(p.old_version);
  if (p.new_version != 2 && p.new_version != 3) return Err("Unknown compatibility level");
  p.old_lazy = h.compatible_features & qcow2::kCompatLazyRefcounts;
  p.lazy = options.lazy_refcounts.value_or(p.old_lazy);
  if (p.lazy && !p.old_lazy && p.new_version < 3) {
    return Err(
        "Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 "
        "or greater)");
  }
  if (options.size) {
    if (*options.size % 512 != 0) return Err("The new size must be a multiple of 512");
    if (*options.size > qcow2::kMaxVirtualSize) return Err(meta.path() + ": Image size too big");
    // The resize comes before the downgrade: only an image that stays version 2 is refused.
    if (!snapshots.empty() && p.old_version < 3 && p.new_version < 3) {
      return Err("Can't resize a v2 image which has snapshots");
    }
  }
  if (h.external_data() && p.new_version < 3) {
    return Err("Cannot downgrade an image with a data file");
  }
  if (options.data_file_raw.value_or(false) && !h.data_file_raw()) {
    return Err("data-file-raw cannot be set on existing images");
  }
  p.old_order = p.order = h.refcount_order;
  if (options.refcount_bits) p.order = TRY(RefcountOrder(*options.refcount_bits, p.new_version));
  if (p.new_version < p.old_version) TRY(CheckDowngrade(meta, snapshots, p.order));
  return p;
}

// Upgrade and lazy refcounts: one header rewrite.
Result<void> RewriteV3Header(Meta& meta, const Plan& p) {
  Header& h = meta.mutable_header();
  if (p.new_version > p.old_version) {  // every version 3 field at its default, as qemu
    h.version = 3;
    h.incompatible_features = 0;
    h.autoclear_features = 0;
    h.refcount_order = 4;
    h.compression_type = 0;
  }
  SetFeatureTable(h, true);  // qemu writes it with every version 3 header
  if (p.lazy) {
    h.compatible_features |= qcow2::kCompatLazyRefcounts;
  } else {
    // Refcounts are exact: the open repaired a dirty image, and Meta writes through.
    h.compatible_features &= ~qcow2::kCompatLazyRefcounts;
  }
  TRY(meta.RewriteHeader());
  return meta.Sync();
}

// The data file's name and raw bit: one header rewrite.
Result<void> RewriteDataFile(Meta& meta, const Qcow2AmendOptions& options) {
  Header& h = meta.mutable_header();
  if (options.data_file) h.data_file = *options.data_file;
  if (options.data_file_raw == false) h.autoclear_features &= ~qcow2::kAutoclearDataFileRaw;
  SetFeatureTable(h, true);
  TRY(meta.RewriteHeader());
  return meta.Sync();
}

// The external data file follows the virtual size (as qemu-img amend size=); a block device
// must already be large enough.
Result<void> ResizeDataFile(const std::string& path, const Header& h, uint64_t new_size) {
  if (!h.external_data()) return {};
  std::filesystem::path d(h.data_file);  // relative: to the working directory, as qemu
  OpenOptions open;
  open.lock = false;  // the image's own lock guards its data file
  OpenedFile file = TRY_CTX(OpenImageFile(d.string(), open, true), path + ": data file");
  return qcow2::ResizeExternalDataFile(file, d.string(), new_size);
}

Result<void> Resize(const std::string& path, Meta& meta, uint64_t new_size) {
  ResizeOptions resize;
  resize.shrink = true;  // amend shrinks without asking, discarding the data (as qemu)
  resize.force = true;
  bool grow = new_size > meta.header().size;
  if (grow) TRY(ResizeDataFile(path, meta.header(), new_size));
  TRY(qcow2::ResizeMeta(meta, new_size, resize));
  if (!grow) TRY(ResizeDataFile(path, meta.header(), new_size));
  return {};
}

}  // namespace

Result<void> AmendQcow2(const std::string& path, const Qcow2AmendOptions& options) {
  qcow2::Opened o = TRY(qcow2::OpenMeta(path, true));
  Meta& meta = *o.meta;
  std::vector<qcow2::SnapshotEntry> snapshots;
  if (meta.header().nb_snapshots > 0) {
    snapshots = TRY(qcow2::ReadSnapshots(meta.io(), meta.header(), meta.file_size(), path));
  }
  const Plan p = TRY(MakePlan(meta, snapshots, options));
  if (p.new_version > p.old_version || p.lazy != p.old_lazy) TRY(RewriteV3Header(meta, p));
  if (p.order != p.old_order) {
    SetFeatureTable(meta.mutable_header(), true);  // the rebuild rewrites the v3 header
    TRY(qcow2::RebuildRefcounts(meta, p.order));
  }
  if (options.data_file || options.data_file_raw) TRY(RewriteDataFile(meta, options));
  if (options.size && *options.size != meta.header().size) TRY(Resize(path, meta, *options.size));
  if (p.new_version < p.old_version) TRY(Downgrade(meta, snapshots));
  return {};
}

}  // namespace kite::storage
