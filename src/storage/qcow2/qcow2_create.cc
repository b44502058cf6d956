// CreateQcow2: lays out a new image (header, refcount table, refcount blocks, L1 table, in
// that order from cluster 0) and optionally preallocates metadata and data.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "storage/qcow2/qcow2.h"
#include "storage/qcow2/qcow2_header.h"
#include "storage/qcow2/qcow2_meta.h"
#include "storage/raw_image.h"

namespace kite::storage {
namespace {

using qcow2::Header;

// qemu's rules and messages for data_file and data_file_raw.
Result<void> CheckDataFileOptions(const Qcow2CreateOptions& o, uint32_t version) {
  if (o.data_file_raw && o.data_file.empty()) return Err("data-file-raw requires data-file");
  if (o.data_file.empty()) return {};
  if (version < 3) {
    return Err(
        "External data files are only supported with compatibility level 1.1 and above (use "
        "version=v3 or greater)");
  }
  if (o.data_file_raw && !o.backing_file.empty()) {
    return Err("Backing file and data-file-raw cannot be used at the same time");
  }
  if (o.data_file.size() > qcow2::kMaxBackingNameLength) return Err("Data file name too long");
  if (o.extended_l2) {
    return Err("External data files with extended L2 entries are not supported by kite");
  }
  return {};
}

// qemu-img create's refusals for extended_l2=on, in its words.
Result<void> CheckExtendedL2(const Qcow2CreateOptions& o, uint32_t version) {
  if (!o.extended_l2) return {};
  if (version < 3) {
    return Err(
        "Extended L2 entries are only supported with compatibility level 1.1 and above (use "
        "version=v3 or greater)");
  }
  if (o.cluster_size < (1u << qcow2::kMinExtendedL2ClusterBits)) {
    return Err("Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
  }
  return {};
}

Result<Header> BuildHeader(const Qcow2CreateOptions& o, uint64_t size) {
  Header h;
  uint64_t cs = o.cluster_size;
  if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1))) {
    return Err("Cluster size must be a power of two between 512 and 2M");
  }
  if (o.compat == "0.10" || o.compat == "v2") {
    h.version = 2;
  } else if (o.compat == "1.1" || o.compat == "v3" || o.compat.empty()) {
    h.version = 3;
  } else {
    return Err("Invalid compatibility level: '" + o.compat + "'");
  }
  int bits = o.refcount_bits;
  if (bits < 1 || bits > 64 || (bits & (bits - 1))) {
    return Err("Refcount width must be a power of two and may not exceed 64 bits");
  }
  if (h.version == 2 && bits != 16)
    return Err("Different refcount widths than 16 bits require compatibility level 1.1 or above");
  if (h.version == 2 && o.lazy_refcounts)
    return Err("Lazy refcounts only supported with compatibility level 1.1 and above");
  if (h.version == 2 && o.compression_type != CompressionType::kZlib) {
    return Err("Compression type other than zlib requires compatibility level 1.1 or above");
  }
  TRY(CheckDataFileOptions(o, h.version));
  TRY(CheckExtendedL2(o, h.version));
  if (!o.backing_file.empty() && !ParseImageFormat(o.backing_format)) {
    return Err("Backing file '" + o.backing_file +
               "' needs a backing format (raw, qcow2, vmdk or qed)");
  }
  if (size > qcow2::kMaxVirtualSize) return Err("Image size too big");
  h.cluster_bits = static_cast<uint32_t>(__builtin_ctzll(cs));
  h.size = size;
  h.refcount_order = static_cast<uint32_t>(__builtin_ctz(static_cast<unsigned>(bits)));
  if (o.lazy_refcounts) h.compatible_features |= qcow2::kCompatLazyRefcounts;
  if (o.compression_type == CompressionType::kZstd) {
    h.compression_type = 1;
    h.incompatible_features |= qcow2::kIncompatCompression;
  }
  if (o.extended_l2) h.incompatible_features |= qcow2::kIncompatExtendedL2;
  h.backing_file = o.backing_file;
  h.backing_format = o.backing_file.empty() ? "" : o.backing_format;
  if (!o.data_file.empty()) {
    h.incompatible_features |= qcow2::kIncompatDataFile;
    h.data_file = o.data_file;
    if (o.data_file_raw) h.autoclear_features |= qcow2::kAutoclearDataFileRaw;
  }
  uint64_t l1 = qcow2::L1EntriesFor(size, h.cluster_bits, o.extended_l2);
  if (l1 * 8 > qcow2::kMaxL1Bytes) return Err("Image size too big for this cluster size");
  h.l1_size = static_cast<uint32_t>(l1);
  return h;
}

Result<uint64_t> BackingSize(const std::string& path, const Qcow2CreateOptions& o) {
  std::filesystem::path b(o.backing_file);
  if (b.is_relative()) b = std::filesystem::path(path).parent_path() / b;
  OpenOptions opts;
  opts.read_only = true;
  opts.force_share = true;
  opts.open_backing = false;
  opts.follow_data_file = true;  // only its size is read
  auto image = TRY(OpenImage(b.string(), TRY(ParseImageFormat(o.backing_format)), opts));
  return image->size();
}

// With an external data file (`data_fd` >= 0) every cluster maps to its guest offset there,
// and falloc/full apply to the data file; else clusters are allocated in the image.
Result<void> Preallocate(int fd, const std::string& path, Preallocation mode, int data_fd) {
  auto meta = TRY(qcow2::Meta::Open(fd, path, true));
  uint64_t cs = meta->cluster_size(), size = meta->header().size;
  uint64_t clusters = (size + cs - 1) / cs;
  std::vector<uint8_t> zeros(mode == Preallocation::kFull ? cs : 0, 0);
  int out = data_fd >= 0 ? data_fd : fd;
  for (uint64_t c = 0; c < clusters; ++c) {
    uint64_t host = data_fd >= 0 ? c * cs : TRY(meta->Allocate(1));
    if (mode == Preallocation::kFull) TRY(PwriteFull(out, zeros.data(), cs, host));
    // Extended L2 entries: host space with every subcluster unallocated (bitmap 0), as qemu.
    TRY(meta->SetL2Entry(c * cs, host | qcow2::kOflagCopied, 0));
  }
  uint64_t end = data_fd >= 0 ? size : meta->alloc_end() * cs;
  if (mode == Preallocation::kFalloc && end > 0 &&
      ::fallocate(out, 0, 0, static_cast<off_t>(end))) {
    return SysErr(path + ": fallocate");
  }
  if (data_fd >= 0) {
    if (::ftruncate(data_fd, static_cast<off_t>(size)) != 0) return SysErr(path + ": data file");
    end = meta->alloc_end() * cs;
  }
  // The data clusters of metadata preallocation are not written: extend the file over them.
  if (::ftruncate(fd, static_cast<off_t>(std::max(end, meta->file_size()))) != 0) {
    return SysErr(path + ": ftruncate");
  }
  return {};
}

// The external data file, created or truncated to `size` (as qemu-img create does; a relative
// name is relative to the working directory, as qemu's); an invalid fd without one.
Result<UniqueFd> CreateDataFile(const Qcow2CreateOptions& o, uint64_t size) {
  if (o.data_file.empty()) return UniqueFd();
  std::filesystem::path d(o.data_file);
  UniqueFd fd(::open(d.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return SysErr("Could not create data file '" + d.string() + "'");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return SysErr("Could not open data file '" + d.string() + "'");
  if (S_ISBLK(st.st_mode)) return fd;  // a block device keeps its size (and data)
  if (::ftruncate(fd.get(), 0) != 0 || ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return SysErr("Could not resize data file '" + d.string() + "'");
  }
  return fd;
}

}  // namespace

Result<void> CreateQcow2(const std::string& path, const Qcow2CreateOptions& options) {
  uint64_t size = (options.size + 511) & ~511ull;
  if (size == 0 && !options.backing_file.empty() && options.size_from_backing) {
    size = TRY_CTX(BackingSize(path, options), "Could not open backing image");
  }
  Header h = TRY(BuildHeader(options, size));
  uint64_t cs = h.cluster_size(), epb = h.refblock_entries();
  uint64_t l1_clusters = (uint64_t{h.l1_size} * 8 + cs - 1) / cs;
  uint64_t t = 1, k = 1;
  while (true) {  // header + table + blocks + L1 must all be counted by the blocks
    uint64_t used = 1 + t + k + l1_clusters;
    uint64_t k2 = (used + epb - 1) / epb, t2 = (k2 * 8 + cs - 1) / cs;
    if (k2 == k && t2 == t) break;
    k = k2;
    t = t2;
  }
  uint64_t used = 1 + t + k + l1_clusters;
  h.refcount_table_offset = cs;
  h.refcount_table_clusters = static_cast<uint32_t>(t);
  h.l1_table_offset = (1 + t + k) * cs;
  std::vector<uint8_t> header = TRY(SerializeHeader(h));

  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return SysErr("Could not create '" + path + "'");
  std::vector<uint8_t> meta((1 + t + k) * cs, 0);
  std::copy(header.begin(), header.end(), meta.begin());
  for (uint64_t b = 0; b < k; ++b) {
    qcow2::PutBe64(&meta[cs + b * 8], (1 + t + b) * cs);
    uint8_t* block = &meta[(1 + t + b) * cs];
    for (uint64_t c = b * epb; c < std::min(used, (b + 1) * epb); ++c) {
      qcow2::PutRefcountEntry(block, c - b * epb, h.refcount_order, 1);
    }
  }
  TRY(PwriteFull(fd.get(), meta.data(), meta.size(), 0));
  if (::ftruncate(fd.get(), static_cast<off_t>(used * cs)) != 0) return SysErr(path);
  UniqueFd data = TRY(CreateDataFile(options, size));
  Preallocation prealloc = options.preallocation;
  if (options.data_file_raw && prealloc == Preallocation::kOff) prealloc = Preallocation::kMetadata;
  if (prealloc != Preallocation::kOff) TRY(Preallocate(fd.get(), path, prealloc, data.get()));
  if (options.sync && data && ::fsync(data.get()) != 0) return SysErr(path + ": data file: fsync");
  if (options.sync && ::fsync(fd.get()) != 0) return SysErr(path + ": fsync");
  return {};
}

}  // namespace kite::storage
