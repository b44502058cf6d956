// qcow2 check: recount every reference (header, L1/L2 tables of the active image and of each
// snapshot, data and compressed clusters, snapshot table, refcount structures), compare with
// the stored refcounts, and optionally rebuild the refcount structures from the count.
#include "storage/qcow2/qcow2_check.h"

#include <algorithm>
#include <cstdio>

#include "base/units.h"
#include "storage/qcow2/qcow2_snapshot.h"
#include "storage/qcow2/qcow2_subcluster.h"
#include "storage/raw_image.h"

namespace kite::storage::qcow2 {
namespace {

struct Counter {
  Meta& meta;
  CheckReport& report;
  std::vector<uint64_t> refs;        // expected refcount per cluster
  std::vector<uint64_t> l2_offsets;  // active L2 tables, for the COPIED pass
  uint64_t file_clusters = 0;

  void Inc(uint64_t offset, uint64_t bytes, const char* what) {
    uint64_t cs = meta.cluster_size();
    if (bytes == 0) return;
    for (uint64_t c = offset / cs; c <= (offset + bytes - 1) / cs; ++c) {
      if (c >= file_clusters) {
        ++report.corruptions;
        report.messages.push_back(std::string("ERROR ") + what + " at offset " +
                                  std::to_string(c * cs) + " is beyond the end of the file");
        continue;
      }
      if (c >= refs.size()) refs.resize(c + 1, 0);
      ++refs[c];
    }
  }

  // Extended L2 entry `index` of the table at `l2`: false (a corruption counted) when its
  // bitmap is invalid; the entry's clusters are then not counted.
  bool CheckBitmap(uint64_t e, uint64_t bitmap, uint64_t index, uint64_t l2) {
    Mapping m;
    m.host = e & kL2OffsetMask;
    if (e & kOflagCompressed) m.kind = Mapping::kCompressed;
    std::string why = ApplyBitmap(m, bitmap);
    if (why.empty()) return true;
    ++report.corruptions;
    report.messages.push_back("ERROR invalid extended L2 entry " + std::to_string(index) +
                              " in table at " + std::to_string(l2) + ": " + why);
    return false;
  }

  // One L1 table's L2 tables and data clusters.
  Result<void> CountL1(const std::vector<uint64_t>& l1, bool active) {
    uint64_t cs = meta.cluster_size();
    uint64_t prev_end = 0;
    for (uint64_t i = 0; i < l1.size(); ++i) {
      uint64_t l2 = l1[i] & kL1OffsetMask;
      if (l2 == 0) continue;
      if ((l1[i] & kL1Reserved) || (l2 & (cs - 1))) {
        ++report.corruptions;
        report.messages.push_back("ERROR invalid L1 entry " + std::to_string(i));
        continue;
      }
      Inc(l2, cs, "L2 table");
      if (l2 / cs >= file_clusters) continue;
      if (active) l2_offsets.push_back(l2);
      auto table = meta.ReadTable(l2, cs / 8);
      if (!table) {
        ++report.check_errors;
        continue;
      }
      const uint64_t words = meta.header().l2_entry_bytes() / 8;  // 2: extended L2 entries
      for (uint64_t j = 0; j < table->size(); j += words) {
        uint64_t e = (*table)[j];
        if (words == 2 && !CheckBitmap(e, (*table)[j + 1], j / 2, l2)) continue;
        if (e == 0) continue;
        if ((e & kOflagCompressed) && meta.header().external_data()) {
          ++report.corruptions;
          report.messages.push_back(
              "ERROR compressed cluster in an image with an external "
              "data file: L2 entry " +
              std::to_string(j) + " in table at " + std::to_string(l2));
          continue;
        }
        if (e & kOflagCompressed) {
          uint32_t x = 62 - (meta.header().cluster_bits - 8);
          uint64_t host = e & ((1ull << x) - 1);
          uint64_t sectors = ((e >> x) & ((1ull << (meta.header().cluster_bits - 8)) - 1)) + 1;
          Inc(host & ~511ull, sectors * 512, "compressed cluster");
          if (active) ++report.allocated_clusters, ++report.compressed_clusters;
          continue;
        }
        uint64_t host = e & kL2OffsetMask;
        if ((e & kL2Reserved) || (host & (cs - 1))) {
          ++report.corruptions;
          report.messages.push_back("ERROR invalid L2 entry " + std::to_string(j) +
                                    " in table at " + std::to_string(l2));
          continue;
        }
        bool external = meta.header().external_data();
        if (host == 0 && !(external && (e & kOflagCopied))) {
          // extended L2 entries: the zero flag is not used
          if (active && words == 1 && (e & kOflagZero)) ++report.allocated_clusters;
          continue;
        }
        if (!external) Inc(host, cs, "data cluster");  // data file clusters: no refcount
        if (active) {
          ++report.allocated_clusters;
          if (prev_end != 0 && host != prev_end) ++report.fragmented_clusters;
          prev_end = host + cs;
        }
      }
    }
    return {};
  }
};

Result<Counter> Count(Meta& meta, CheckReport& report, bool with_refcount_structs) {
  const Header& h = meta.header();
  uint64_t cs = meta.cluster_size();
  Counter c{meta, report, {}, {}, (meta.file_size() + cs - 1) / cs};
  c.Inc(0, cs, "header");
  c.Inc(h.l1_table_offset, uint64_t{h.l1_size} * 8, "L1 table");
  TRY(c.CountL1(meta.l1(), true));
  if (h.nb_snapshots > 0) {
    auto snaps = TRY(ReadSnapshots(meta.io(), h, meta.file_size(), meta.path()));
    c.Inc(h.snapshots_offset, SerializeSnapshots(snaps).size(), "snapshot table");
    for (const SnapshotEntry& s : snaps) {
      c.Inc(s.l1_table_offset, uint64_t{s.l1_size} * 8, "snapshot L1 table");
      TRY(c.CountL1(TRY(meta.ReadTable(s.l1_table_offset, s.l1_size)), false));
    }
  }
  if (with_refcount_structs) {
    c.Inc(h.refcount_table_offset, uint64_t{h.refcount_table_clusters} * cs, "refcount table");
    for (uint64_t off : meta.reftable()) {
      if (off != 0) c.Inc(off, cs, "refcount block");
    }
  }
  return c;
}

Result<void> Compare(Meta& meta, const Counter& c, CheckReport& report) {
  uint64_t epb = meta.header().refblock_entries();
  uint64_t limit = std::max<uint64_t>(c.refs.size(), meta.reftable().size() * epb);
  for (uint64_t b = 0; b * epb < limit; ++b) {
    bool has_block = b < meta.reftable().size() && meta.reftable()[b] != 0;
    for (uint64_t i = 0; i < epb; ++i) {
      uint64_t cl = b * epb + i;
      uint64_t want = cl < c.refs.size() ? c.refs[cl] : 0;
      if (!has_block && want == 0) {
        if (cl >= c.refs.size()) break;
        continue;
      }
      if (want == 0 && cl >= c.file_clusters) continue;  // past EOF: ignored, as QEMU does
      uint64_t have = has_block ? TRY(meta.GetRefcount(cl)) : 0;
      if (have > want) {
        ++report.leaks;
        report.messages.push_back("Leaked cluster " + std::to_string(cl) + " refcount=" +
                                  std::to_string(have) + " reference=" + std::to_string(want));
      } else if (have < want) {
        ++report.corruptions;
        report.messages.push_back("ERROR cluster " + std::to_string(cl) + " refcount=" +
                                  std::to_string(have) + " reference=" + std::to_string(want));
      }
    }
  }
  for (uint64_t cl = c.refs.size(); cl-- > 0;) {
    if (c.refs[cl] != 0) {
      report.image_end_offset = (cl + 1) * meta.cluster_size();
      break;
    }
  }
  return {};
}

// COPIED must be set exactly on active L1/L2 entries whose target has refcount 1.
void CheckCopied(Meta& meta, const Counter& c, CheckReport& report) {
  uint64_t cs = meta.cluster_size();
  auto refs = [&](uint64_t off) { return off / cs < c.refs.size() ? c.refs[off / cs] : 0; };
  for (uint64_t e : meta.l1()) {
    uint64_t l2 = e & kL1OffsetMask;
    if (l2 != 0 && ((e & kOflagCopied) != 0) != (refs(l2) == 1)) {
      ++report.corruptions;
      report.messages.push_back("ERROR OFLAG_COPIED L2 cluster: l2_offset=" + std::to_string(l2));
    }
  }
  for (uint64_t l2 : c.l2_offsets) {
    auto table = meta.ReadTable(l2, cs / 8);
    if (!table) continue;
    const uint64_t words = meta.header().l2_entry_bytes() / 8;
    for (uint64_t j = 0; j < table->size(); j += words) {
      uint64_t e = (*table)[j];
      uint64_t host = e & kL2OffsetMask;
      if ((e & kOflagCompressed) || host == 0 || (host & (cs - 1))) continue;
      // A data file cluster has one user, the active table (no snapshots with a data file).
      bool one_user = meta.header().external_data() || refs(host) == 1;
      if (((e & kOflagCopied) != 0) != one_user) {
        ++report.corruptions;
        report.messages.push_back("ERROR OFLAG_COPIED data cluster: l2_entry=" + ToHex(e));
      }
    }
  }
}

Result<CheckReport> CheckOnce(Meta& meta) {
  CheckReport report;
  Counter c = TRY(Count(meta, report, true));
  TRY(Compare(meta, c, report));
  CheckCopied(meta, c, report);
  uint64_t cs = meta.cluster_size();
  report.total_clusters = (meta.header().size + cs - 1) / cs;
  return report;
}

}  // namespace

Result<void> RebuildRefcounts(Meta& meta, uint32_t order) {
  CheckReport scratch;
  Counter c = TRY(Count(meta, scratch, false));
  std::vector<uint64_t>& refs = c.refs;
  const uint32_t old_order = meta.header().refcount_order;
  if (order > 6) return Err(meta.path() + ": refcount order " + std::to_string(order) + " > 6");
  uint64_t cs = meta.cluster_size(), epb = cs * 8 >> order;
  uint64_t bits = 1ull << order, max = bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
  for (uint64_t i = 0; i < refs.size(); ++i) {  // before any write: a refusal changes nothing
    if (refs[i] <= max) continue;
    if (order >= old_order) return Err(meta.path() + ": refcount overflow");
    char offset[32];
    std::snprintf(offset, sizeof(offset), "%#llx", static_cast<unsigned long long>(i * cs));
    return Err("Cannot decrease refcount entry width to " + std::to_string(bits) +
               " bits: Cluster at offset " + offset + " has a refcount of " +
               std::to_string(refs[i]));
  }
  uint64_t e = std::max<uint64_t>(c.file_clusters, refs.size());
  refs.resize(e, 0);
  auto block_used = [&](uint64_t b) {
    for (uint64_t i = b * epb; i < std::min<uint64_t>(e, (b + 1) * epb); ++i) {
      if (refs[i]) return true;
    }
    return false;
  };
  uint64_t t = 1, k = 0, last = 0;
  while (true) {  // fixed point: the new structures describe themselves too
    uint64_t end = e + t + k;
    last = (end - 1) / epb;
    uint64_t need = 0;
    for (uint64_t b = 0; b <= last; ++b) need += (b * epb + epb > e) || block_used(b);
    uint64_t t2 = ((last + 1) * 8 + cs - 1) / cs;
    if (need == k && t2 <= t) break;
    k = need;
    t = std::max(t, t2);
  }
  if (t * cs > kMaxRefcountTableBytes) return Err(meta.path() + ": refcount table too large");
  uint64_t end = e + t + k;
  refs.resize(end, 0);
  for (uint64_t i = e; i < end; ++i) refs[i] = 1;
  std::vector<uint8_t> table(t * cs, 0);
  uint64_t next = e + t;
  for (uint64_t b = 0; b <= last; ++b) {
    if (!(b * epb + epb > e) && !block_used(b)) continue;
    std::vector<uint8_t> block(cs, 0);
    for (uint64_t i = b * epb; i < std::min(end, (b + 1) * epb); ++i) {
      PutRefcountEntry(block.data(), i - b * epb, order, refs[i]);
    }
    TRY(meta.io().Write(block.data(), cs, next * cs));
    PutBe64(&table[b * 8], next * cs);
    ++next;
  }
  TRY(meta.io().Write(table.data(), table.size(), e * cs));
  TRY(meta.Sync());
  if (order == old_order) {
    uint8_t hdr[12];
    PutBe64(hdr, e * cs);
    PutBe32(hdr + 8, static_cast<uint32_t>(t));
    TRY(meta.WriteHeaderBytes(kOffRefcountTable, hdr, 12));
  } else {
    // The width and the table switch together: both fields lie in the header's first sector,
    // written by one write of cluster 0.
    Header& h = meta.mutable_header();
    h.refcount_table_offset = e * cs;
    h.refcount_table_clusters = static_cast<uint32_t>(t);
    h.refcount_order = order;
    TRY(meta.RewriteHeader());
  }
  TRY(meta.Sync());
  return meta.Reload();
}

Result<CheckReport> CheckMeta(Meta& meta, RepairMode repair) {
  CheckReport before = TRY(CheckOnce(meta));
  bool dirty = meta.header().incompatible_features & kIncompatDirty;
  if (repair == RepairMode::kNone) return before;
  bool fix = before.leaks > 0 || dirty || (repair == RepairMode::kAll && before.corruptions > 0);
  if (!fix) return before;
  TRY(RebuildRefcounts(meta, meta.header().refcount_order));
  if (repair == RepairMode::kAll) TRY(FixCopiedFlags(meta));
  TRY(meta.SetIncompatBit(kIncompatDirty, false));
  TRY(meta.Sync());
  CheckReport after = TRY(CheckOnce(meta));
  after.leaks_fixed = before.leaks > after.leaks ? before.leaks - after.leaks : 0;
  after.corruptions_fixed =
      before.corruptions > after.corruptions ? before.corruptions - after.corruptions : 0;
  std::vector<std::string> msgs = std::move(before.messages);
  msgs.insert(msgs.end(), after.messages.begin(), after.messages.end());
  after.messages = std::move(msgs);
  return after;
}

}  // namespace kite::storage::qcow2

namespace kite::storage {

int CheckReport::ExitCode() const {
  if (check_errors > 0) return 1;
  if (corruptions > 0) return 2;
  if (leaks > 0) return 3;
  return 0;
}

}  // namespace kite::storage
