// Meta: refcounts of any width (refcount_order 0..6), refcount blocks created on demand and
// the refcount table grown when the image outgrows it. New structures are written completely
// before anything points at them, so a crash leaves at most leaked clusters. Also lazy
// refcounts: the dirty bit and the clean close (see qcow2_meta.h).
#include <algorithm>

#include "base/log.h"
#include "storage/qcow2/qcow2_meta.h"

namespace kite::storage::qcow2 {
uint64_t GetRefcountEntry(const uint8_t* block, uint64_t index, uint32_t order) {
  uint64_t bits = 1ull << order;
  if (bits >= 8) {
    uint64_t bytes = bits / 8, v = 0;
    for (uint64_t i = 0; i < bytes; ++i) v = (v << 8) | block[index * bytes + i];
    return v;
  }
  uint64_t bit = index * bits;
  return (block[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
}

std::pair<uint64_t, uint64_t> PutRefcountEntry(uint8_t* block, uint64_t index, uint32_t order,
                                               uint64_t value) {
  uint64_t bits = 1ull << order;
  if (bits >= 8) {
    uint64_t bytes = bits / 8;
    for (uint64_t i = 0; i < bytes; ++i) {
      block[index * bytes + bytes - 1 - i] = static_cast<uint8_t>(value >> (8 * i));
    }
    return {index * bytes, bytes};
  }
  uint64_t bit = index * bits;
  uint8_t mask = static_cast<uint8_t>(((1u << bits) - 1) << (bit % 8));
  block[bit / 8] = static_cast<uint8_t>((block[bit / 8] & ~mask) | ((value << (bit % 8)) & mask));
  return {bit / 8, 1};
}

uint64_t Meta::refcount_max() const {
  uint64_t bits = header_.refcount_bits();
  return bits == 64 ? ~0ull : (1ull << bits) - 1;
}

Result<uint64_t> Meta::GetRefcount(uint64_t cluster) {
  uint64_t epb = header_.refblock_entries();
  uint64_t block = cluster / epb;
  if (block >= reftable_.size() || reftable_[block] == 0) return 0;
  uint8_t* data = TRY(refblock_cache_.Get(reftable_[block]));
  return GetRefcountEntry(data, cluster % epb, header_.refcount_order);
}

Result<void> Meta::SetRefcount(uint64_t cluster, uint64_t value) {
  uint64_t epb = header_.refblock_entries();
  uint64_t block = cluster / epb;
  TRY(EnsureRefblock(block, 0));
  if (lazy_) TRY(MarkDirty());
  uint64_t off = reftable_[block];
  uint8_t* data = TRY(refblock_cache_.Get(off));
  std::vector<uint8_t> copy(data, data + cluster_size());
  auto [first, len] = PutRefcountEntry(copy.data(), cluster % epb, header_.refcount_order, value);
  TRY(refblock_cache_.Write(off, first, copy.data() + first, len));
  if (value == 0) {
    free_hint_ = std::min(free_hint_, cluster);
    // A freed cluster may be reused for anything: stop packing compressed data into it.
    if (free_byte_offset_ / cluster_size() == cluster) free_byte_offset_ = 0;
  }
  return {};
}

Result<void> Meta::SetRefcounts(uint64_t first, uint64_t n, uint64_t value) {
  uint64_t epb = header_.refblock_entries();
  for (uint64_t c = first; c < first + n;) {
    uint64_t block = c / epb, count = std::min(first + n - c, epb - c % epb);
    TRY(EnsureRefblock(block, 0));
    if (lazy_) TRY(MarkDirty());
    uint64_t off = reftable_[block];
    uint8_t* data = TRY(refblock_cache_.Get(off));
    std::vector<uint8_t> copy(data, data + cluster_size());
    uint64_t lo = UINT64_MAX, hi = 0;
    for (uint64_t i = 0; i < count; ++i) {
      auto [b, len] = PutRefcountEntry(copy.data(), (c + i) % epb, header_.refcount_order, value);
      lo = std::min(lo, b);
      hi = std::max(hi, b + len);
    }
    TRY(refblock_cache_.Write(off, lo, copy.data() + lo, hi - lo));
    c += count;
  }
  if (value == 0) {
    free_hint_ = std::min(free_hint_, first);
    if (free_byte_offset_ / cluster_size() - first < n) free_byte_offset_ = 0;
  }
  return {};
}

Result<void> Meta::UpdateRefcounts(uint64_t offset, uint64_t bytes, int delta) {
  uint64_t cs = cluster_size();
  if (bytes == 0) return {};
  uint64_t first = offset / cs, last = (offset + bytes - 1) / cs;
  for (uint64_t c = first; c <= last; ++c) {
    uint64_t v = TRY(GetRefcount(c));
    if (delta < 0 && v < static_cast<uint64_t>(-delta)) {
      return MarkCorrupt("refcount of cluster " + std::to_string(c) + " would drop below 0");
    }
    if (delta > 0 && refcount_max() - v < static_cast<uint64_t>(delta)) {
      return Err(path_ + ": refcount overflow for cluster " + std::to_string(c));
    }
    TRY(SetRefcount(c, v + delta));
  }
  return {};
}

void Meta::EnableLazyRefcounts() {
  if (header_.version < 3 || !writable_) return;
  lazy_ = true;
  refblock_cache_.set_write_back(true);
}

Result<void> Meta::MarkDirty() {
  if (header_.incompatible_features & kIncompatDirty) return {};
  TRY(Sync());  // what is on disk so far is consistent: make it durable before the bit
  TRY(SetIncompatBit(kIncompatDirty, true));
  return Sync();
}

Result<void> Meta::MarkClean() {
  if (!lazy_ || !(header_.incompatible_features & kIncompatDirty)) return {};
  TRY(refblock_cache_.WriteDirty());
  TRY(Sync());  // the refcounts are on disk before the bit says they are accurate
  TRY(SetIncompatBit(kIncompatDirty, false));
  return Sync();
}

Result<void> Meta::EnsureRefblock(uint64_t block, int depth) {
  if (depth > 4) return Err(path_ + ": could not place a new refcount block");
  uint64_t cs = cluster_size(), epb = header_.refblock_entries();
  while (true) {
    if (block >= reftable_.size()) TRY(GrowRefcountTable(block + 1));
    if (reftable_[block] != 0) return {};
    uint64_t x = TRY(FindFree(1, free_hint_));
    uint64_t xblock = x / epb;
    std::vector<uint8_t> data(cs, 0);
    if (xblock == block) {
      PutRefcountEntry(data.data(), x % epb, header_.refcount_order, 1);  // describes itself
    } else if (xblock >= reftable_.size() || reftable_[xblock] == 0) {
      TRY(EnsureRefblock(xblock, depth + 1));
      continue;
    } else {
      TRY(SetRefcount(x, 1));
    }
    NoteUse(x + 1);
    AddMetadata(x * cs, cs);
    TRY(refblock_cache_.Put(x * cs, std::move(data)));
    reftable_[block] = x * cs;
    Result<void> r = WriteTableEntry(header_.refcount_table_offset, reftable_, block,
                                     "writing the refcount table");
    if (!r) reftable_[block] = 0;
    return r;
  }
}

Result<void> Meta::GrowRefcountTable(uint64_t min_blocks) {
  uint64_t cs = cluster_size(), epb = header_.refblock_entries();
  uint64_t want = std::max<uint64_t>(min_blocks, reftable_.size()) * 3 / 2 + 1;
  uint64_t e = alloc_end_;
  uint64_t t = (want * 8 + cs - 1) / cs, k = 0;
  uint64_t first_block = e / epb;
  while (true) {  // fixed point: table + new refblocks must cover themselves
    uint64_t last_block = (e + t + k - 1) / epb;
    uint64_t need = 0;
    for (uint64_t b = first_block; b <= last_block; ++b) {
      if (b >= reftable_.size() || reftable_[b] == 0) ++need;
    }
    uint64_t entries = std::max(want, last_block + 1);
    uint64_t t2 = (entries * 8 + cs - 1) / cs;
    if (need == k && t2 <= t) break;
    k = need;
    t = std::max(t, t2);
  }
  if (t * cs > kMaxRefcountTableBytes) return Err(path_ + ": refcount table would be too large");
  std::vector<uint64_t> table(t * cs / 8, 0);
  std::copy(reftable_.begin(), reftable_.end(), table.begin());
  uint64_t next = e + t, end = e + t + k;
  uint64_t last_block = (end - 1) / epb;
  for (uint64_t b = first_block; b <= last_block; ++b) {
    uint64_t lo = std::max(e, b * epb), hi = std::min(end, (b + 1) * epb);
    if (b < reftable_.size() && reftable_[b] != 0) {
      for (uint64_t c = lo; c < hi; ++c) TRY(SetRefcount(c, 1));
      continue;
    }
    std::vector<uint8_t> data(cs, 0);
    for (uint64_t c = lo; c < hi; ++c)
      PutRefcountEntry(data.data(), c % epb, header_.refcount_order, 1);
    TRY(refblock_cache_.Put(next * cs, std::move(data)));
    AddMetadata(next * cs, cs);
    table[b] = next * cs;
    ++next;
  }
  std::vector<uint8_t> raw(t * cs);
  for (size_t i = 0; i < table.size(); ++i) PutBe64(&raw[i * 8], table[i]);
  TRY_CTX(io_.Write(raw.data(), raw.size(), e * cs), "writing the new refcount table");
  TRY(Sync());
  uint8_t hdr[12];
  PutBe64(hdr, e * cs);
  PutBe32(hdr + 8, static_cast<uint32_t>(t));
  TRY(WriteHeaderBytes(kOffRefcountTable, hdr, 12));
  TRY(Sync());
  uint64_t old_off = header_.refcount_table_offset, old_bytes = reftable_.size() * 8;
  header_.refcount_table_offset = e * cs;
  header_.refcount_table_clusters = static_cast<uint32_t>(t);
  reftable_ = std::move(table);
  NoteUse(end);
  AddMetadata(e * cs, t * cs);
  RemoveMetadata(old_off, old_bytes);
  return UpdateRefcounts(old_off, old_bytes, -1);
}

}  // namespace kite::storage::qcow2
