// Meta: opening a qcow2 file's metadata, L1/L2 lookups and updates, header writes.
#include "storage/qcow2/qcow2_meta.h"

#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "storage/qcow2/qcow2_snapshot.h"
#include "storage/qcow2/qcow2_subcluster.h"
#include "storage/raw_image.h"

namespace kite::storage::qcow2 {
namespace {

constexpr size_t kCacheBytes = 4 << 20;  // per cache; bounded whatever the cluster size

size_t CacheEntries(uint64_t cluster_size) {
  return std::max<size_t>(16, kCacheBytes / cluster_size);
}

}  // namespace

Meta::Meta(int fd, std::string path, bool writable, Header header)
    : fd_(fd),
      io_(fd),
      path_(std::move(path)),
      writable_(writable),
      header_(std::move(header)),
      l2_cache_(io_, header_.cluster_size(), CacheEntries(header_.cluster_size())),
      refblock_cache_(io_, header_.cluster_size(), CacheEntries(header_.cluster_size())) {}

Result<std::unique_ptr<Meta>> Meta::Open(int fd, const std::string& path, bool writable) {
  FileIo io(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return SysErr(path + ": fstat");
  uint64_t file_size = io.Size();
  std::vector<uint8_t> first(std::min<uint64_t>(file_size, 1u << kMaxClusterBits));
  TRY(io.Read(first.data(), first.size(), 0));
  Header h = TRY(ParseHeader(first, file_size, path));
  std::unique_ptr<Meta> meta(new Meta(fd, path, writable, std::move(h)));
  uint64_t cs = meta->cluster_size();
  meta->alloc_end_ = (file_size + cs - 1) / cs;
  TRY(meta->LoadTables());
  return meta;
}

uint64_t Meta::file_size() const {
  return io_.Size();
}

Result<void> Meta::Reload() {
  uint64_t size = file_size();
  std::vector<uint8_t> first(std::min<uint64_t>(size, 1u << kMaxClusterBits));
  TRY(io_.Read(first.data(), first.size(), 0));
  header_ = TRY(ParseHeader(first, size, path_));
  l2_cache_.Clear();
  refblock_cache_.Clear();
  metadata_.clear();
  free_hint_ = 0;
  free_byte_offset_ = 0;
  alloc_end_ = (size + cluster_size() - 1) / cluster_size();
  return LoadTables();
}

Result<std::vector<uint64_t>> Meta::ReadTable(uint64_t offset, uint64_t entries) {
  std::vector<uint8_t> raw(entries * 8);
  TRY(io_.Read(raw.data(), raw.size(), offset));
  std::vector<uint64_t> out(entries);
  for (uint64_t i = 0; i < entries; ++i) out[i] = Be64(&raw[i * 8]);
  return out;
}

Result<void> Meta::LoadTables() {
  const Header& h = header_;
  uint64_t cs = cluster_size();
  l1_ = TRY(ReadTable(h.l1_table_offset, h.l1_size));
  reftable_ = TRY(ReadTable(h.refcount_table_offset, h.refcount_table_clusters * cs / 8));
  AddMetadata(0, cs);
  AddMetadata(h.l1_table_offset, uint64_t{h.l1_size} * 8);
  AddMetadata(h.refcount_table_offset, uint64_t{h.refcount_table_clusters} * cs);
  for (uint64_t e : reftable_) {
    uint64_t off = e & ~(cs - 1) & ((1ull << 56) - 1);
    if (e != off || off / cs >= alloc_end_) {
      return Err(path_ + ": Invalid reference count block offset (refcount table)");
    }
    if (off != 0) AddMetadata(off, cs);
  }
  auto add_l1 = [&](const std::vector<uint64_t>& l1) {
    for (uint64_t e : l1) {
      if (e & kL1OffsetMask) AddMetadata(e & kL1OffsetMask, cs);
    }
  };
  add_l1(l1_);
  if (h.nb_snapshots > 0) {
    auto snaps = TRY(ReadSnapshots(io_, h, file_size(), path_));
    uint64_t table_bytes = SerializeSnapshots(snaps).size();
    AddMetadata(h.snapshots_offset, table_bytes);
    for (const SnapshotEntry& s : snaps) {
      AddMetadata(s.l1_table_offset, uint64_t{s.l1_size} * 8);
      add_l1(TRY(ReadTable(s.l1_table_offset, s.l1_size)));
    }
  }
  return {};
}

Result<uint64_t> Meta::L2TableFor(uint64_t l1_index, bool for_write) {
  if (l1_index >= l1_.size()) return MarkCorrupt("guest offset beyond the L1 table");
  uint64_t e = l1_[l1_index];
  uint64_t cs = cluster_size();
  uint64_t off = e & kL1OffsetMask;
  if ((e & kL1Reserved) || (off & (cs - 1))) {
    return MarkCorrupt("L1 entry " + std::to_string(l1_index) +
                       " is invalid (reserved bits "
                       "or misaligned L2 offset)");
  }
  if (off != 0 && off / cs >= alloc_end_) {
    return MarkCorrupt("L1 entry " + std::to_string(l1_index) + " points past end of file");
  }
  if (!for_write || (off != 0 && (e & kOflagCopied))) return off;
  // Need a private L2 table: a fresh one, or a copy of one shared with a snapshot.
  std::vector<uint8_t> table(cs, 0);
  if (off != 0) {
    uint8_t* old = TRY(l2_cache_.Get(off));
    std::copy(old, old + cs, table.begin());
  }
  uint64_t fresh = TRY(Allocate(1));
  AddMetadata(fresh, cs);
  TRY(l2_cache_.Put(fresh, std::move(table)));
  TRY(WriteL1Entry(l1_index, fresh | kOflagCopied));
  if (off != 0) TRY(Free(off, cs));
  return fresh;
}

Result<void> Meta::WriteL1Entry(uint64_t index, uint64_t value) {
  uint64_t old = l1_[index];
  l1_[index] = value;
  Result<void> r = WriteTableEntry(header_.l1_table_offset, l1_, index, "writing the L1 table");
  if (!r) l1_[index] = old;
  return r;
}

Result<void> Meta::WriteTableEntry(uint64_t table_offset, const std::vector<uint64_t>& table,
                                   uint64_t index, const char* what) {
  uint64_t at = table_offset + index * 8;
  // With O_DIRECT, the aligned block around the entry is written from the table in memory
  // when it lies inside the table (no read-modify-write); else just the 8 bytes.
  uint64_t start = at / FileIo::kAlign * FileIo::kAlign;
  uint64_t end = start + FileIo::kAlign;
  if (io_.direct() && start >= table_offset && end <= table_offset + table.size() * 8) {
    std::vector<uint8_t> window(FileIo::kAlign);
    uint64_t first = (start - table_offset) / 8;
    for (uint64_t i = 0; i < window.size() / 8; ++i) PutBe64(&window[i * 8], table[first + i]);
    TRY_CTX(io_.WriteHeld(window, start, at, 8), what);
    return {};
  }
  uint8_t be[8];
  PutBe64(be, table[index]);
  TRY_CTX(io_.Write(be, 8, at), what);
  return {};
}

Result<Mapping> Meta::Decode(uint64_t e, uint64_t guest_offset, uint64_t bitmap) {
  Mapping m;
  const bool extended = header_.extended_l2();
  if (extended && !(e & kOflagCompressed)) e &= ~kOflagZero;  // not used with subclusters
  m.entry = e;
  uint64_t cs = cluster_size();
  auto where = [&] { return " (guest offset " + std::to_string(guest_offset) + ")"; };
  if (e & kOflagCompressed) {
    if (header_.external_data()) {
      return MarkCorrupt("compressed cluster in an image with an external data file" + where());
    }
    uint32_t x = 62 - (header_.cluster_bits - 8);
    m.kind = Mapping::kCompressed;
    m.host = e & ((1ull << x) - 1);
    uint64_t sectors = ((e >> x) & ((1ull << (header_.cluster_bits - 8)) - 1)) + 1;
    m.comp_len = sectors * 512 - (m.host & 511);
    if (e & kOflagCopied) return MarkCorrupt("compressed L2 entry with COPIED flag" + where());
    if (m.host == 0 || (m.host + m.comp_len + cs - 1) / cs > alloc_end_) {
      return MarkCorrupt("compressed cluster points past end of file" + where());
    }
    if (extended) {
      if (std::string why = ApplyBitmap(m, bitmap); !why.empty()) return MarkCorrupt(why + where());
    }
    return m;
  }
  m.host = e & kL2OffsetMask;
  m.copied = e & kOflagCopied;
  if ((e & kL2Reserved) || (m.host & (cs - 1))) {
    return MarkCorrupt("L2 entry with reserved bits set or misaligned offset" + where());
  }
  if (header_.external_data()) return DecodeExternal(m, guest_offset);
  if (e & kOflagZero) {
    if (header_.version < 3) return MarkCorrupt("zero flag in a version 2 image" + where());
    m.kind = Mapping::kZero;
  } else {
    m.kind = m.host == 0 ? Mapping::kUnallocated : Mapping::kNormal;
  }
  if (m.host != 0 && m.host / cs >= alloc_end_) {
    return MarkCorrupt("L2 entry points past end of file" + where());
  }
  if (extended) {
    if (std::string why = ApplyBitmap(m, bitmap); !why.empty()) return MarkCorrupt(why + where());
  }
  return m;
}

// External data file: a cluster is allocated when its entry has an offset or the COPIED flag
// (the guest's first cluster sits at data file offset 0), and it must sit at its own guest
// offset there (qcow2.txt).
Result<Mapping> Meta::DecodeExternal(Mapping m, uint64_t guest_offset) {
  bool allocated = m.host != 0 || m.copied;
  if (allocated && m.host != (guest_offset & ~(cluster_size() - 1))) {
    return MarkCorrupt("data cluster at data file offset " + std::to_string(m.host) +
                       " does not match its guest offset " + std::to_string(guest_offset));
  }
  if (m.entry & kOflagZero) {
    m.kind = Mapping::kZero;
    m.host = 0;  // nothing to free: data file clusters are not refcounted
  } else {
    m.kind = allocated ? Mapping::kNormal : Mapping::kUnallocated;
  }
  return m;
}

Result<Mapping> Meta::Lookup(uint64_t guest_offset) {
  uint64_t l2_bits = header_.l2_bits();
  uint64_t cluster = guest_offset >> header_.cluster_bits;
  uint64_t l1_index = cluster >> l2_bits;
  uint64_t l2_index = cluster & ((1ull << l2_bits) - 1);
  uint64_t l2 = TRY(L2TableFor(l1_index, false));
  if (l2 == 0) return Mapping{};
  uint8_t* table = TRY(l2_cache_.Get(l2));
  return DecodeAt(table, l2_index, guest_offset);
}

Result<Mapping> Meta::DecodeAt(const uint8_t* table, uint64_t index, uint64_t guest_offset) {
  const uint8_t* p = table + index * header_.l2_entry_bytes();
  return Decode(Be64(p), guest_offset, header_.extended_l2() ? Be64(p + 8) : 0);
}

Result<std::optional<Mapping>> Meta::LookupCached(uint64_t guest_offset) {
  uint64_t l2_bits = header_.l2_bits();
  uint64_t cluster = guest_offset >> header_.cluster_bits;
  uint64_t l2 = TRY(L2TableFor(cluster >> l2_bits, false));
  if (l2 == 0) return std::optional<Mapping>(Mapping{});
  const uint8_t* table = l2_cache_.Peek(l2);
  if (table == nullptr) return std::optional<Mapping>();
  uint64_t l2_index = cluster & ((1ull << l2_bits) - 1);
  return std::optional<Mapping>(TRY(DecodeAt(table, l2_index, guest_offset)));
}

Result<void> Meta::SetL2Entry(uint64_t guest_offset, uint64_t entry,
                              std::optional<uint64_t> bitmap) {
  uint64_t l2_bits = header_.l2_bits(), width = header_.l2_entry_bytes();
  uint64_t cluster = guest_offset >> header_.cluster_bits;
  uint64_t l2 = TRY(L2TableFor(cluster >> l2_bits, true));
  uint8_t be[16];
  PutL2Entry(be, entry);
  if (bitmap && width == 16) PutBe64(be + 8, *bitmap);
  return l2_cache_.Write(l2, (cluster & ((1ull << l2_bits) - 1)) * width, be, width);
}

void Meta::PutL2Entry(uint8_t* out, uint64_t entry) const {
  if (!header_.extended_l2()) return PutBe64(out, entry);
  ExtendedEntry x = ExtendedBitmapFor(entry);
  PutBe64(out, x.descriptor);
  PutBe64(out + 8, x.bitmap);
}

Result<void> Meta::SetL2Run(uint64_t guest_offset, uint64_t n, uint64_t host, uint64_t flags) {
  uint32_t bits = header_.cluster_bits;
  return WriteL2Entries(guest_offset, n, [&](uint64_t i) { return (host + (i << bits)) | flags; });
}

Result<void> Meta::SetL2Entries(uint64_t guest_offset, uint64_t n, uint64_t entry) {
  return WriteL2Entries(guest_offset, n, [&](uint64_t) { return entry; });
}

Result<void> Meta::WriteL2Entries(uint64_t guest_offset, uint64_t n,
                                  const std::function<uint64_t(uint64_t)>& entry) {
  uint64_t l2_bits = header_.l2_bits(), per_table = 1ull << l2_bits;
  uint64_t width = header_.l2_entry_bytes();
  uint64_t cluster = guest_offset >> header_.cluster_bits;
  std::vector<uint8_t> be;
  for (uint64_t done = 0; done < n;) {
    uint64_t c = cluster + done, index = c & (per_table - 1);
    uint64_t count = std::min(n - done, per_table - index);
    uint64_t l2 = TRY(L2TableFor(c >> l2_bits, true));
    be.resize(count * width);
    for (uint64_t i = 0; i < count; ++i) PutL2Entry(be.data() + i * width, entry(done + i));
    TRY(l2_cache_.Write(l2, index * width, be.data(), be.size()));
    done += count;
  }
  return {};
}

Result<void> Meta::WriteHeaderBytes(uint64_t offset, const void* data, size_t len) {
  TRY_CTX(io_.Write(data, len, offset), "writing the qcow2 header");
  return {};
}

Result<void> Meta::RewriteHeader() {
  std::vector<uint8_t> bytes = TRY(SerializeHeader(header_));
  // Zero-padded to the cluster's end, as qemu: no byte of a longer old header (extensions, a
  // backing name) lingers after the new end marker.
  bytes.resize(cluster_size(), 0);
  return WriteHeaderBytes(0, bytes.data(), bytes.size());
}

Result<void> Meta::SetIncompatBit(uint64_t bit, bool on) {
  uint64_t v = on ? (header_.incompatible_features | bit) : (header_.incompatible_features & ~bit);
  if (v == header_.incompatible_features || header_.version < 3) return {};
  uint8_t be[8];
  PutBe64(be, v);
  TRY(WriteHeaderBytes(kOffIncompat, be, 8));
  header_.incompatible_features = v;
  return {};
}

Error Meta::MarkCorrupt(const std::string& why) {
  KITE_LOG_RATELIMITED(Error, "%s: qcow2 metadata is corrupt: %s%s", path_.c_str(), why.c_str(),
                       writable_ ? "; marking the image corrupt" : "");
  if (writable_ && !corrupt() && header_.version >= 3) {
    (void)SetIncompatBit(kIncompatCorrupt, true);
    (void)Sync();
  }
  return Err(path_ + ": qcow2 metadata is corrupt: " + why);
}

Result<void> Meta::Sync() {
  while (::fdatasync(fd_) != 0) {
    if (errno == EINTR) continue;
    sync_failed_.store(true);
    return SysErr(path_ + ": fdatasync");
  }
  return {};
}

}  // namespace kite::storage::qcow2
