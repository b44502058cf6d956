// Internal snapshots: the snapshot table format (validated, I23) and the refcount walks that
// share L2 tables and data clusters between a snapshot and the active image.
#include "storage/qcow2/qcow2_snapshot.h"

#include <algorithm>

#include "storage/qcow2/qcow2_meta.h"
#include "storage/raw_image.h"

namespace kite::storage::qcow2 {
namespace {

constexpr uint64_t kMaxTableBytes = 64ull << 20;
constexpr uint32_t kMaxExtraData = 1024;

Error Bad(const std::string& path, const std::string& what) {
  return Err(path + ": " + what);
}

}  // namespace

Result<std::vector<SnapshotEntry>> ReadSnapshots(const FileIo& io, const Header& h,
                                                 uint64_t file_size, const std::string& path) {
  std::vector<SnapshotEntry> out;
  uint64_t off = h.snapshots_offset, cs = h.cluster_size();
  uint64_t limit = std::min(file_size, h.snapshots_offset + kMaxTableBytes);
  for (uint32_t i = 0; i < h.nb_snapshots; ++i) {
    uint8_t fixed[40];
    if (off + 40 > limit) return Bad(path, "Invalid snapshot table offset (entry past end)");
    TRY(io.Read(fixed, 40, off));
    SnapshotEntry s;
    s.l1_table_offset = Be64(fixed);
    s.l1_size = Be32(fixed + 8);
    uint16_t id_len = Be16(fixed + 12), name_len = Be16(fixed + 14);
    s.date_sec = Be32(fixed + 16);
    s.date_nsec = Be32(fixed + 20);
    s.vm_clock_nsec = Be64(fixed + 24);
    s.vm_state_size = Be32(fixed + 32);
    uint32_t extra = Be32(fixed + 36);
    if (extra > kMaxExtraData) return Bad(path, "Too much extra metadata in snapshot table");
    uint64_t total = 40ull + extra + id_len + name_len;
    if (off + total > limit) return Bad(path, "Snapshot table entry overflows the table");
    std::vector<uint8_t> rest(total - 40);
    TRY(io.Read(rest.data(), rest.size(), off + 40));
    if (extra >= 8) s.vm_state_size = Be64(&rest[0]);
    if (extra >= 16) s.disk_size = Be64(&rest[8]);
    if (extra >= 24) {
      s.icount = Be64(&rest[16]);
      s.has_icount = s.icount != ~0ull;
    }
    if (extra > 24) s.extra_unknown.assign(rest.begin() + 24, rest.begin() + extra);
    s.id.assign(rest.begin() + extra, rest.begin() + extra + id_len);
    s.name.assign(rest.begin() + extra + id_len, rest.end());
    if (s.l1_size > kMaxL1Bytes / 8) return Bad(path, "Snapshot L1 table too large");
    if ((s.l1_table_offset & (cs - 1)) || s.l1_table_offset + uint64_t{s.l1_size} * 8 > file_size) {
      return Bad(path, "Snapshot L1 table offset invalid");
    }
    if (extra < 16) s.disk_size = h.size;
    out.push_back(std::move(s));
    off += (total + 7) & ~7ull;
  }
  return out;
}

std::vector<uint8_t> SerializeSnapshots(const std::vector<SnapshotEntry>& snapshots) {
  std::vector<uint8_t> out;
  for (const SnapshotEntry& s : snapshots) {
    uint32_t extra = static_cast<uint32_t>(24 + s.extra_unknown.size());
    size_t at = out.size();
    uint64_t total = 40ull + extra + s.id.size() + s.name.size();
    out.resize(at + ((total + 7) & ~7ull), 0);
    uint8_t* p = &out[at];
    PutBe64(p, s.l1_table_offset);
    PutBe32(p + 8, s.l1_size);
    PutBe16(p + 12, static_cast<uint16_t>(s.id.size()));
    PutBe16(p + 14, static_cast<uint16_t>(s.name.size()));
    PutBe32(p + 16, s.date_sec);
    PutBe32(p + 20, s.date_nsec);
    PutBe64(p + 24, s.vm_clock_nsec);
    PutBe32(p + 32, static_cast<uint32_t>(std::min<uint64_t>(s.vm_state_size, UINT32_MAX)));
    PutBe32(p + 36, extra);
    PutBe64(p + 40, s.vm_state_size);
    PutBe64(p + 48, s.disk_size);
    PutBe64(p + 56, s.has_icount ? s.icount : ~0ull);
    std::copy(s.extra_unknown.begin(), s.extra_unknown.end(), p + 64);
    std::copy(s.id.begin(), s.id.end(), p + 40 + extra);
    std::copy(s.name.begin(), s.name.end(), p + 40 + extra + s.id.size());
  }
  return out;
}

Result<void> UpdateL1Refcounts(Meta& meta, const std::vector<uint64_t>& l1, int delta) {
  uint64_t cs = meta.cluster_size();
  for (uint64_t e : l1) {
    uint64_t l2 = e & kL1OffsetMask;
    if (l2 == 0) continue;
    std::vector<uint64_t> table = TRY(meta.ReadTable(l2, cs / 8));
    const uint64_t words = meta.header().l2_entry_bytes() / 8;  // 2: extended L2 entries
    for (uint64_t j = 0; j < table.size(); j += words) {
      uint64_t entry = table[j];
      if (entry == 0) continue;
      Mapping m = TRY(meta.Decode(entry, 0, words == 2 ? table[j + 1] : 0));
      if (m.kind != Mapping::kCompressed && m.host != 0) {
        TRY(meta.UpdateRefcounts(m.host, cs, delta));
      } else if (m.kind == Mapping::kCompressed) {
        uint64_t first = m.host & ~(cs - 1);
        uint64_t last = (m.host + m.comp_len - 1) & ~(cs - 1);
        TRY(meta.UpdateRefcounts(first, last - first + cs, delta));
      }
    }
    TRY(meta.UpdateRefcounts(l2, cs, delta));
  }
  return {};
}

Result<void> FixCopiedFlags(Meta& meta) {
  uint64_t cs = meta.cluster_size();
  for (uint64_t i = 0; i < meta.l1().size(); ++i) {
    uint64_t e = meta.l1()[i];
    uint64_t l2 = e & kL1OffsetMask;
    if (l2 == 0) continue;
    bool want = TRY(meta.GetRefcount(l2 / cs)) == 1;
    if (((e & kOflagCopied) != 0) != want) {
      TRY(meta.WriteL1Entry(i, want ? (e | kOflagCopied) : (e & ~kOflagCopied)));
    }
    std::vector<uint64_t> table = TRY(meta.ReadTable(l2, cs / 8));
    const uint64_t words = meta.header().l2_entry_bytes() / 8;  // j: the descriptor's word
    for (uint64_t j = 0; j < table.size(); j += words) {
      uint64_t entry = table[j];
      uint64_t host = entry & kL2OffsetMask;
      if ((entry & kOflagCompressed) || host == 0) continue;
      // A data file cluster's only user is the active table (no snapshots with a data file).
      bool copied = meta.header().external_data() || TRY(meta.GetRefcount(host / cs)) == 1;
      if (((entry & kOflagCopied) != 0) == copied) continue;
      uint8_t be[8];
      PutBe64(be, copied ? (entry | kOflagCopied) : (entry & ~kOflagCopied));
      TRY(meta.l2_cache().Write(l2, j * 8, be, 8));
    }
  }
  return {};
}

Result<void> WriteSnapshotTable(Meta& meta, const std::vector<SnapshotEntry>& snapshots) {
  const Header& h = meta.header();
  uint64_t cs = meta.cluster_size();
  uint64_t old_off = h.snapshots_offset, old_bytes = 0;
  if (h.nb_snapshots > 0) {
    old_bytes =
        SerializeSnapshots(TRY(ReadSnapshots(meta.io(), h, meta.file_size(), meta.path()))).size();
  }
  std::vector<uint8_t> bytes = SerializeSnapshots(snapshots);
  uint64_t off = 0;
  if (!bytes.empty()) {
    off = TRY(meta.Allocate((bytes.size() + cs - 1) / cs));
    meta.AddMetadata(off, bytes.size());
    TRY(meta.io().Write(bytes.data(), bytes.size(), off));
    TRY(meta.Sync());
  }
  uint8_t hdr[12];
  PutBe32(hdr, static_cast<uint32_t>(snapshots.size()));
  PutBe64(hdr + 4, off);
  TRY(meta.WriteHeaderBytes(kOffSnapshots, hdr, 12));
  TRY(meta.Sync());
  meta.mutable_header().nb_snapshots = static_cast<uint32_t>(snapshots.size());
  meta.mutable_header().snapshots_offset = off;
  if (old_bytes > 0) {
    meta.RemoveMetadata(old_off, old_bytes);
    TRY(meta.Free(old_off & ~(cs - 1), old_bytes));
  }
  return {};
}

}  // namespace kite::storage::qcow2
