// Qcow2Image: guest reads and writes through L1/L2 lookups, copy-on-write from the backing
// image, zero clusters, discard and flush. See qcow2_image.h for the locking rules.
#include "storage/qcow2/qcow2_image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "base/log.h"
#include "storage/qcow2/qcow2_check.h"
#include "storage/qcow2/qcow2_compress.h"
#include "storage/qcow2/qcow2_subcluster.h"

namespace kite::storage::qcow2 {

Qcow2Image::Qcow2Image(std::string path, OpenedFile file, const OpenOptions& options,
                       std::unique_ptr<Meta> meta, std::unique_ptr<DiskImage> backing,
                       std::optional<ExternalData> data)
    : path_(std::move(path)),
      fd_(std::move(file.fd)),
      options_(options),
      meta_(std::move(meta)),
      backing_(std::move(backing)),
      data_(std::move(data)),
      size_(meta_->header().size) {
  if (data_) data_io_ = std::make_unique<FileIo>(data_->file.fd.get());
}

Result<std::unique_ptr<Qcow2Image>> Qcow2Image::Open(std::string path, OpenedFile file,
                                                     const OpenOptions& options,
                                                     std::unique_ptr<DiskImage> backing,
                                                     std::optional<ExternalData> data) {
  auto meta = TRY(Meta::Open(file.fd.get(), path, !options.read_only));
  if (meta->header().external_data() != data.has_value()) {
    return Err(data ? path + ": has no external data file, but one was given"
                    : "Could not open '" + path + "': 'data-file' is required for this image");
  }
  std::unique_ptr<Qcow2Image> image(new Qcow2Image(std::move(path), std::move(file), options,
                                                   std::move(meta), std::move(backing),
                                                   std::move(data)));
  if (!options.read_only) TRY(image->PrepareWritable());
  return image;
}

Result<void> Qcow2Image::PrepareWritable() {
  const Header& h = meta_->header();
  if (h.incompatible_features & kIncompatCorrupt) {
    return Err(path_ +
               ": qcow2 image is corrupt; cannot be opened read/write (repair it with "
               "'kite-img check -r all')");
  }
  if (h.incompatible_features & kIncompatDirty) {
    KITE_LOG(Warn, "%s: image was not closed cleanly; rebuilding refcounts", path_.c_str());
    CheckReport report = TRY(CheckMeta(*meta_, RepairMode::kAll));
    if (report.corruptions > 0) return Err(path_ + ": dirty image could not be repaired");
  }
  // I9: unknown autoclear bits are cleared; data_file_raw only means something (and is only
  // kept) with an external data file.
  uint64_t keep = h.external_data() ? kAutoclearKnown : 0;
  if ((h.autoclear_features & ~keep) != 0) {
    uint8_t be[8];
    PutBe64(be, h.autoclear_features & keep);
    TRY(meta_->WriteHeaderBytes(kOffAutoclear, be, 8));
    meta_->mutable_header().autoclear_features &= keep;
    TRY(meta_->Sync());
  }
  // Only after any repair: the rebuild above must write its refcounts eagerly.
  if (h.compatible_features & kCompatLazyRefcounts) meta_->EnableLazyRefcounts();
  return {};
}

Qcow2Image::~Qcow2Image() {
  if (options_.read_only || failed()) return;  // a failed image stays dirty: repaired
  std::lock_guard lock(meta_mu_);
  if (Result<void> r = meta_->MarkClean(); !r) {
    KITE_LOG(Error, "%s: closing with lazy refcounts: %s (the next open repairs the image)",
             path_.c_str(), r.error().message().c_str());
  }
}

uint64_t Qcow2Image::allocated_bytes() const {
  struct stat st {};
  return ::fstat(fd_.get(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

Result<void> Qcow2Image::CheckRange(uint64_t offset, uint64_t length, bool write) const {
  if (write && options_.read_only) return Err(path_ + ": image is read-only");
  if (write && failed()) return Err(path_ + ": image failed after a write-back error");
  if (write && meta_->corrupt()) return Err(path_ + ": image is marked corrupt");
  if (offset > size_ || length > size_ - offset) {
    return Err(path_ + ": request [" + std::to_string(offset) + ", +" + std::to_string(length) +
               ") is past the end of the disk");
  }
  return {};
}

Result<void> Qcow2Image::ReadBacking(uint64_t offset, std::span<const iovec> iov) {
  uint64_t len = IovLength(iov);
  uint64_t bsize = backing_ ? backing_->size() : 0;
  uint64_t from_backing = offset >= bsize ? 0 : std::min(len, bsize - offset);
  if (from_backing > 0) TRY(backing_->ReadV(offset, SliceIov(iov, 0, from_backing)));
  if (from_backing < len) ZeroIov(SliceIov(iov, from_backing, len - from_backing));  // I18
  return {};
}

Result<void> Qcow2Image::ReadCompressed(const Mapping& m, std::vector<uint8_t>& cluster) {
  uint64_t cs = meta_->cluster_size();
  if (m.comp_len > 2 * cs) return Err(path_ + ": compressed cluster size is bogus");
  std::vector<uint8_t> in(m.comp_len);
  TRY(meta_->io().Read(in.data(), in.size(), m.host));
  cluster.resize(cs);
  auto type = static_cast<CompressionType>(meta_->header().compression_type);
  TRY_CTX(DecompressCluster(type, in, cluster), path_);
  return {};
}

Result<void> Qcow2Image::ReadMapped(const Mapping& m, uint64_t offset, std::span<const iovec> iov) {
  uint64_t cs = meta_->cluster_size();
  switch (m.kind) {
    case Mapping::kUnallocated:
      return ReadBacking(offset, iov);
    case Mapping::kZero:
      ZeroIov(iov);
      return {};
    case Mapping::kNormal:
      return data_io().ReadV(iov, m.host + (offset & (cs - 1)));
    case Mapping::kCompressed: {
      std::vector<uint8_t> cluster;
      TRY(ReadCompressed(m, cluster));
      CopyToIov(iov, cluster.data() + (offset & (cs - 1)));
      return {};
    }
    case Mapping::kMixed:
      return ReadSubclusters(m, offset, iov);
  }
  return {};
}

Result<void> Qcow2Image::ReadV(uint64_t offset, std::span<const iovec> iov) {
  uint64_t len = IovLength(iov);
  TRY(CheckRange(offset, len, false));
  uint64_t cs = meta_->cluster_size();
  uint64_t done = 0;
  while (done < len) {
    uint64_t pos = offset + done;
    uint64_t chunk = std::min(len - done, cs - (pos & (cs - 1)));
    std::unique_lock meta_lock(meta_mu_);
    Mapping m = TRY(meta_->Lookup(pos));
    if (m.kind != Mapping::kCompressed && m.kind != Mapping::kMixed) {
      chunk = TRY(ExtendRun(m, pos, chunk, len - done, false));
    }
    std::shared_lock io_lock(io_mu_);
    meta_lock.unlock();
    TRY(ReadMapped(m, pos, SliceIov(iov, done, chunk)));
    done += chunk;
  }
  return {};
}

std::optional<Result<void>> Qcow2Image::TryReadNow(uint64_t offset, std::span<const iovec> iov) {
  constexpr uint64_t kMaxInline = 4 << 20;
  uint64_t len = IovLength(iov);
  if (len > kMaxInline || !CheckRange(offset, len, false)) return std::nullopt;
  std::unique_lock meta_lock(meta_mu_, std::try_to_lock);
  if (!meta_lock.owns_lock()) return std::nullopt;
  uint64_t cs = meta_->cluster_size();
  for (uint64_t pos = offset & ~(cs - 1); pos < offset + len; pos += cs) {
    Result<std::optional<Mapping>> m = meta_->LookupCached(pos);
    if (!m || !*m) return std::nullopt;  // errors: ReadV reports them
    bool zeros = (*m)->kind == Mapping::kZero || ((*m)->kind == Mapping::kUnallocated && !backing_);
    if (!zeros) return std::nullopt;
  }
  meta_lock.unlock();
  ZeroIov(iov);
  return Result<void>{};
}

Result<uint64_t> Qcow2Image::ExtendRun(const Mapping& m, uint64_t pos, uint64_t chunk,
                                       uint64_t limit, bool for_write) {
  constexpr uint64_t kMaxRun = 4 << 20;
  uint64_t cs = meta_->cluster_size();
  uint64_t base = pos & ~(cs - 1);
  while (chunk < limit && chunk < kMaxRun) {
    uint64_t next = pos + chunk;
    Mapping n = TRY(meta_->Lookup(next));
    if (n.kind != m.kind) break;
    if (m.kind == Mapping::kNormal) {
      if (n.host != m.host + (next - base) || (for_write && !n.copied)) break;
      if (for_write) TRY(meta_->CheckDataWrite(n.host));
    }
    chunk += std::min(limit - chunk, cs);
  }
  return chunk;
}

Result<uint64_t> Qcow2Image::AllocateData(uint64_t guest, uint64_t n) {
  if (external_data()) return guest;
  return meta_->Allocate(n);
}

Result<void> Qcow2Image::ZeroDataFile(uint64_t offset, uint64_t length) {
  if (!meta_->header().data_file_raw() || length == 0) return {};
  int fd = data_->file.fd.get();
  auto off = static_cast<off_t>(offset), len = static_cast<off_t>(length);
  if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0) return {};
  if (::fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len) == 0) return {};
  std::vector<uint8_t> zeros(std::min<uint64_t>(length, 1 << 20), 0);
  for (uint64_t done = 0; done < length;) {
    uint64_t n = std::min<uint64_t>(zeros.size(), length - done);
    TRY_CTX(data_io_->Write(zeros.data(), n, offset + done), data_->path + ": zeroing");
    done += n;
  }
  return {};
}

Result<void> Qcow2Image::FreeData(const Mapping& m) {
  std::unique_lock io_lock(io_mu_);  // wait for in-flight I/O to the cluster
  return meta_->FreeMapping(m);
}

Result<void> Qcow2Image::AllocatingWrite(uint64_t offset, std::span<const iovec> iov,
                                         const Mapping& m) {
  uint64_t cs = meta_->cluster_size();
  uint64_t start = offset & ~(cs - 1);
  uint64_t head = offset - start, len = IovLength(iov);
  uint64_t tail_at = head + len;
  std::vector<uint8_t> old;  // what the cluster reads as now, when the write is partial
  if (head != 0 || tail_at != cs) {
    old.resize(cs);
    uint64_t valid = std::min(cs, size_ - start);
    iovec v{old.data(), valid};
    TRY(ReadMapped(m, start, {&v, 1}));
  }
  uint64_t host = TRY(AllocateData(start, 1));
  std::vector<iovec> out;
  if (head) out.push_back({old.data(), head});
  out.insert(out.end(), iov.begin(), iov.end());
  if (tail_at != cs) out.push_back({old.data() + tail_at, cs - tail_at});
  // Data first; only then does an L2 entry point at it (a crash leaks, never corrupts).
  TRY(data_io().WriteV(out, host));
  TRY(meta_->SetL2Entry(start, host | kOflagCopied));
  if (m.kind != Mapping::kUnallocated) TRY(FreeData(m));
  return {};
}

Result<uint64_t> Qcow2Image::AllocateRun(uint64_t offset, std::span<const iovec> iov) {
  constexpr uint64_t kMaxRun = 4 << 20;
  uint64_t cs = meta_->cluster_size();
  uint64_t limit = std::min(IovLength(iov), kMaxRun) & ~(cs - 1);
  if ((offset & (cs - 1)) != 0) return 0;
  std::unique_lock meta_lock(meta_mu_);
  uint64_t len = 0;
  for (; len < limit; len += cs) {  // nothing to copy or free: unallocated or zero without host
    Mapping m = TRY(meta_->Lookup(offset + len));
    if (m.kind != Mapping::kUnallocated && !(m.kind == Mapping::kZero && m.host == 0)) break;
  }
  if (len == 0) return 0;
  uint64_t n = len / cs;
  // Crash-safe order as for one cluster: refcounts, data, then the L2 entries.
  uint64_t host = TRY(AllocateData(offset, n));
  for (uint64_t i = 0; i < n; ++i) TRY(meta_->CheckDataWrite(host + i * cs));
  TRY(data_io().WriteV(SliceIov(iov, 0, len), host));
  TRY(meta_->SetL2Run(offset, n, host, kOflagCopied));
  return len;
}

Result<void> Qcow2Image::WriteCluster(uint64_t offset, std::span<const iovec> iov) {
  std::unique_lock meta_lock(meta_mu_);
  Mapping m = TRY(meta_->Lookup(offset));
  uint64_t cs = meta_->cluster_size();
  if (WritableInPlace(m, offset & (cs - 1), IovLength(iov), cs)) {
    TRY(meta_->CheckDataWrite(m.host));
    std::shared_lock io_lock(io_mu_);
    meta_lock.unlock();
    return data_io().WriteV(iov, m.host + (offset & (cs - 1)));
  }
  if (m.kind == Mapping::kMixed && m.copied && m.host != 0) return FillSubclusters(offset, iov, m);
  return AllocatingWrite(offset, iov, m);
}

Result<void> Qcow2Image::WriteV(uint64_t offset, std::span<const iovec> iov) {
  uint64_t len = IovLength(iov);
  TRY(CheckRange(offset, len, true));
  uint64_t cs = meta_->cluster_size();
  for (uint64_t done = 0; done < len;) {
    uint64_t pos = offset + done;
    uint64_t chunk = std::min(len - done, cs - (pos & (cs - 1)));
    {  // fast path: a run of clusters the image owns, written in place with one syscall
      std::unique_lock meta_lock(meta_mu_);
      Mapping m = TRY(meta_->Lookup(pos));
      if (WritableInPlace(m, pos & (cs - 1), chunk, cs)) {
        TRY(meta_->CheckDataWrite(m.host));
        if (m.kind == Mapping::kNormal) chunk = TRY(ExtendRun(m, pos, chunk, len - done, true));
        std::shared_lock io_lock(io_mu_);
        meta_lock.unlock();
        TRY(data_io().WriteV(SliceIov(iov, done, chunk), m.host + (pos & (cs - 1))));
        done += chunk;
        continue;
      }
    }
    uint64_t run = TRY(AllocateRun(pos, SliceIov(iov, done, len - done)));
    if (run > 0) {
      done += run;
      continue;
    }
    TRY(WriteCluster(pos, SliceIov(iov, done, chunk)));
    done += chunk;
  }
  if (options_.cache == CacheMode::kWritethrough) TRY(Flush());
  return {};
}

Result<void> Qcow2Image::Flush() {
  if (options_.read_only) return {};
  if (failed()) return Err(path_ + ": image failed after a write-back error");
  if (options_.cache == CacheMode::kUnsafe) return {};
  // Data before the metadata that points at it.
  if (data_) TRY(SyncFile(data_->file.fd.get(), data_->path));
  return SyncFile(fd_.get(), path_);
}

Result<void> Qcow2Image::SyncFile(int fd, const std::string& path) {
  while (::fdatasync(fd) != 0) {
    if (errno == EINTR) continue;
    failed_.store(true);  // F4: no false OK after a retry
    KITE_LOG(Error, "%s: fdatasync failed (%s); disk marked failed", path.c_str(),
             std::strerror(errno));
    return SysErr(path + ": fdatasync");
  }
  return {};
}

Result<void> Qcow2Image::ZeroCluster(uint64_t start, bool discard) {
  std::unique_lock meta_lock(meta_mu_);
  Mapping m = TRY(meta_->Lookup(start));
  bool v3 = meta_->header().version >= 3;
  if (!v3 && backing_) {  // v2 has no zero flag: store zeros over the backing data
    std::vector<uint8_t> zeros(meta_->cluster_size(), 0);
    iovec v{zeros.data(), std::min<uint64_t>(zeros.size(), size_ - start)};
    if (m.kind == Mapping::kNormal && m.copied) {  // version 2: no extended L2 entries
      meta_lock.unlock();
      return WriteCluster(start, {&v, 1});
    }
    return AllocatingWrite(start, {&v, 1}, m);
  }
  uint64_t entry = (v3 && (backing_ || !discard)) ? kOflagZero : 0;
  if (m.kind == Mapping::kUnallocated && entry == 0) return {};
  if (m.kind == Mapping::kZero && m.host == 0 && entry == kOflagZero) return {};
  TRY(meta_->SetL2Entry(start, entry));
  TRY(FreeData(m));
  if (!meta_->header().data_file_raw()) return {};
  std::unique_lock io_lock(io_mu_);
  return ZeroDataFile(start, std::min(meta_->cluster_size(), size_ - start));
}

Result<void> Qcow2Image::ZeroClusters(uint64_t start, uint64_t n, bool discard) {
  uint64_t cs = meta_->cluster_size();
  bool v3 = meta_->header().version >= 3;
  uint64_t entry = (v3 && (backing_ || !discard)) ? kOflagZero : 0;
  std::unique_lock meta_lock(meta_mu_);
  std::vector<Mapping> freed;
  uint64_t run = 0;  // clusters just before cluster i that change, their L2 entries not written
  for (uint64_t i = 0; i <= n; ++i) {
    Mapping m;
    bool change = false;
    if (i < n) {
      m = TRY(meta_->Lookup(start + i * cs));
      bool already = (m.kind == Mapping::kUnallocated && entry == 0) ||
                     (m.kind == Mapping::kZero && m.host == 0 && entry == kOflagZero);
      change = !already;
    }
    if (change) {
      ++run;
      if (m.kind != Mapping::kUnallocated) freed.push_back(m);
      continue;
    }
    if (run > 0) TRY(meta_->SetL2Entries(start + (i - run) * cs, run, entry));
    run = 0;
  }
  std::unique_lock io_lock(io_mu_);  // wait for in-flight I/O to the clusters
  TRY(FreeRuns(freed));
  return ZeroDataFile(start, std::min(n * cs, size_ - start));
}

// Drops the references `freed` held (after their L2 entries changed): contiguous host clusters
// with refcount 1 in one refcount write, anything else one by one. Under meta_mu_ and io_mu_.
Result<void> Qcow2Image::FreeRuns(const std::vector<Mapping>& freed) {
  if (external_data()) return {};  // data file clusters are not refcounted
  uint64_t cs = meta_->cluster_size();
  for (size_t i = 0; i < freed.size();) {
    size_t j = i;
    while (j < freed.size() && freed[j].kind == Mapping::kNormal &&
           freed[j].host == freed[i].host + (j - i) * cs &&
           TRY(meta_->GetRefcount(freed[j].host / cs)) == 1) {
      ++j;
    }
    if (j - i >= 2) {
      TRY(meta_->SetRefcounts(freed[i].host / cs, j - i, 0));
      i = j;
      continue;
    }
    TRY(meta_->FreeMapping(freed[i]));
    ++i;
  }
  return {};
}

Result<void> Qcow2Image::ZeroRange(uint64_t offset, uint64_t length, bool discard) {
  TRY(CheckRange(offset, length, true));
  uint64_t cs = meta_->cluster_size();
  std::vector<uint8_t> zeros;
  for (uint64_t done = 0; done < length;) {
    uint64_t pos = offset + done;
    uint64_t in = pos & (cs - 1);
    uint64_t chunk = std::min(length - done, cs - in);
    bool whole = in == 0 && (chunk == cs || pos + chunk == size_);
    bool v2_over_backing = meta_->header().version < 3 && backing_;
    if (whole && !v2_over_backing) {
      uint64_t end = offset + length == size_ ? size_ : (offset + length) & ~(cs - 1);
      uint64_t n = (end - pos + cs - 1) / cs;
      TRY(ZeroClusters(pos, n, discard));
      chunk = end - pos;
    } else if (whole) {
      TRY(ZeroCluster(pos, discard));
    } else {  // part of a cluster: zeros written as data (subclusters too: no zero bits set)
      zeros.assign(chunk, 0);
      iovec v{zeros.data(), chunk};
      TRY(WriteCluster(pos, {&v, 1}));
    }
    done += chunk;
  }
  if (options_.cache == CacheMode::kWritethrough) TRY(Flush());
  return {};
}

Result<void> Qcow2Image::Discard(uint64_t offset, uint64_t length) {
  return ZeroRange(offset, length, true);
}

Result<void> Qcow2Image::WriteZeroes(uint64_t offset, uint64_t length, bool may_unmap) {
  return ZeroRange(offset, length, may_unmap);
}

Result<Extent> Qcow2Image::BlockStatus(uint64_t offset, uint64_t max_length) {
  TRY(CheckRange(offset, 0, false));
  uint64_t cs = meta_->cluster_size();
  Extent e;
  e.offset = offset;
  uint64_t limit = std::min(max_length, size_ - offset);
  std::unique_lock meta_lock(meta_mu_);
  Mapping first = TRY(meta_->Lookup(offset));
  // Extended L2 entries with subclusters of several kinds: the run of one kind, no further.
  const bool mixed = first.kind == Mapping::kMixed;
  SubRun sub = SubclusterRun(first, offset & (cs - 1), cs);
  first = sub.m;
  // Unallocated here: the answer is the backing's extent, cut where this image's run ends.
  // Asking the backing first bounds the scan below by its extent (else a long unallocated run
  // was scanned to its end once for every backing extent inside it).
  std::optional<Extent> below;
  if (first.kind == Mapping::kUnallocated && backing_ && offset < backing_->size()) {
    below = TRY(backing_->BlockStatus(offset, std::min(limit, backing_->size() - offset)));
    limit = std::min(limit, below->length);
  }
  uint64_t len = std::min(limit, sub.length);
  while (!mixed && len < limit) {
    Mapping next = TRY(meta_->Lookup(offset + len));
    if (next.kind != first.kind) break;
    if (first.kind == Mapping::kNormal &&
        next.host != first.host + ((offset + len) & ~(cs - 1)) - (offset & ~(cs - 1))) {
      break;
    }
    if (first.kind == Mapping::kCompressed) break;
    len = std::min(limit, len + cs);
  }
  meta_lock.unlock();
  e.length = len;
  e.allocated = first.kind != Mapping::kUnallocated;
  e.data = first.kind == Mapping::kNormal || first.kind == Mapping::kCompressed;
  e.zero = first.kind == Mapping::kZero;
  if (first.kind == Mapping::kNormal) e.host_offset = first.host + (offset & (cs - 1));
  if (below) {
    below->length = len;
    below->depth += 1;
    below->allocated = false;
    return *below;
  }
  if (first.kind == Mapping::kUnallocated) e.zero = true;
  return e;
}

}  // namespace kite::storage::qcow2

namespace kite::storage::qcow2 {

Result<void> Qcow2Image::CheckCompressedTarget(uint64_t offset, uint64_t length) {
  TRY(CheckRange(offset, length, true));
  if (external_data()) {
    return Err(path_ + ": compressed clusters are not supported with an external data file");
  }
  uint64_t cs = meta_->cluster_size();
  bool whole = length == cs || (length > 0 && length < cs && offset + length == size_);
  if ((offset & (cs - 1)) != 0 || !whole) {
    return Err(path_ + ": a compressed write must cover one whole cluster (offset " +
               std::to_string(offset) + ", length " + std::to_string(length) + ")");
  }
  std::unique_lock meta_lock(meta_mu_);
  Mapping m = TRY(meta_->Lookup(offset));
  if (m.kind == Mapping::kUnallocated || (m.kind == Mapping::kZero && m.host == 0)) return {};
  return Err(path_ + ": compressed write to an allocated cluster (guest offset " +
             std::to_string(offset) + ")");
}

// Under meta_mu_, in crash-safe order: refcounts (AllocateBytes), stream, L2 entry.
Result<void> Qcow2Image::StoreCompressed(uint64_t offset, std::span<const uint8_t> stream) {
  const uint32_t cluster_bits = meta_->header().cluster_bits;
  const uint32_t x = 62 - (cluster_bits - 8);  // bits of the host offset in the L2 entry
  std::unique_lock meta_lock(meta_mu_);
  Mapping m = TRY(meta_->Lookup(offset));  // checked again: another writer may have come first
  if (m.kind != Mapping::kUnallocated && !(m.kind == Mapping::kZero && m.host == 0)) {
    return Err(path_ + ": compressed write to an allocated cluster");
  }
  uint64_t host = TRY(meta_->AllocateBytes(stream.size()));
  uint64_t end = host + stream.size();
  if (end > (1ull << x)) return Err(path_ + ": image too large for a compressed cluster");
  // The entry counts whole sectors; zero the slack of the last one so reads see no stale bytes
  // (the next packed stream may overwrite it later).
  std::vector<uint8_t> padded(stream.begin(), stream.end());
  padded.resize(((end + 511) & ~511ull) - host, 0);
  uint64_t cs = meta_->cluster_size();
  TRY(meta_->CheckDataWrite(host));
  TRY(meta_->CheckDataWrite((end - 1) & ~(cs - 1)));
  TRY(meta_->io().Write(padded.data(), padded.size(), host));
  uint64_t extra_sectors = ((end - 1) >> 9) - (host >> 9);
  TRY(meta_->SetL2Entry(offset, host | kOflagCompressed | (extra_sectors << x)));
  return {};
}

Result<std::vector<uint8_t>> Qcow2Image::CompressForCluster(
    std::span<const uint8_t> cluster) const {
  std::vector<uint8_t> full(cluster.begin(), cluster.end());
  full.resize(meta_->cluster_size(), 0);
  auto type = static_cast<CompressionType>(meta_->header().compression_type);
  return CompressCluster(type, full);
}

Result<void> Qcow2Image::WriteCompressedCluster(uint64_t offset, std::span<const uint8_t> cluster) {
  TRY(CheckCompressedTarget(offset, cluster.size()));
  std::vector<uint8_t> stream = TRY(CompressForCluster(cluster));
  return WriteCompressedCluster(offset, cluster, stream);
}

Result<void> Qcow2Image::WriteCompressedCluster(uint64_t offset, std::span<const uint8_t> cluster,
                                                std::span<const uint8_t> stream) {
  TRY(CheckCompressedTarget(offset, cluster.size()));
  if (stream.empty()) {
    TRY(Write(offset, cluster.data(), cluster.size()));  // does not shrink: store it as is
    return {};
  }
  if (stream.size() >= meta_->cluster_size()) {
    return Err(path_ + ": compressed stream is not smaller than a cluster");
  }
  TRY(StoreCompressed(offset, stream));
  if (options_.cache == CacheMode::kWritethrough) TRY(Flush());
  return {};
}

}  // namespace kite::storage::qcow2

namespace kite::storage {

Result<void> WriteCompressedCluster(DiskImage& image, uint64_t offset,
                                    std::span<const uint8_t> cluster) {
  auto* qcow2 = dynamic_cast<qcow2::Qcow2Image*>(&image);
  if (qcow2 == nullptr) return Err("Compression not supported for this file format");
  return qcow2->WriteCompressedCluster(offset, cluster);
}

Result<std::vector<uint8_t>> CompressClusterFor(DiskImage& image,
                                                std::span<const uint8_t> cluster) {
  auto* qcow2 = dynamic_cast<qcow2::Qcow2Image*>(&image);
  if (qcow2 == nullptr) return Err("Compression not supported for this file format");
  return qcow2->CompressForCluster(cluster);
}

Result<void> WriteCompressedCluster(DiskImage& image, uint64_t offset,
                                    std::span<const uint8_t> cluster,
                                    std::span<const uint8_t> stream) {
  auto* qcow2 = dynamic_cast<qcow2::Qcow2Image*>(&image);
  if (qcow2 == nullptr) return Err("Compression not supported for this file format");
  return qcow2->WriteCompressedCluster(offset, cluster, stream);
}

}  // namespace kite::storage
