// VmdkWriter (see vmdk_writer.h): the streamOptimized and monolithicSparse layouts, grains
// appended in disk order.
// Field offsets are those of the packed little-endian SparseExtentHeader of VMware's
// "Virtual Disk Format 5.0" (4.1); the descriptor and header values follow what qemu-img writes
// so that VMware sees the same disk from either tool.
#include "storage/img/vmdk_writer.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>

#include "base/unique_fd.h"
#include "storage/img/convert_util.h"
#include "storage/raw_image.h"
#include "storage/vmdk/vmdk_format.h"

namespace kite::img {
namespace {

constexpr uint64_t kSectorBytes = 512;
constexpr uint64_t kGrainBytes = kVmdkWriteGrainSectors * kSectorBytes;
constexpr uint32_t kGtes = storage::kVmdkMaxGtesPerGt;  // 512 entries: one table covers 32 MiB
constexpr uint64_t kGtSectors = kGtes * 4 / kSectorBytes;
constexpr uint64_t kDescriptorSectors = 20;  // qemu-img's room for the embedded descriptor
constexpr uint64_t kMaxGte = UINT32_MAX;     // grain-table entries are 32-bit sector numbers

template <typename T>
void Store(uint8_t* at, T v) {
  std::memcpy(at, &v, sizeof(T));  // x86_64 is little-endian, as the format
}

uint64_t RoundUp(uint64_t v, uint64_t to) {
  return (v + to - 1) / to * to;
}

// Where a subformat puts things. streamOptimized: everything after the grains, gdOffset
// GD_AT_END. monolithicSparse (as qemu-img): from sector 21 the redundant grain directory and
// its tables, then the directory and its tables, all tables preallocated; grains from the next
// whole grain on.
struct Layout {
  bool stream = true;
  uint64_t capacity = 0;    // sectors
  uint64_t tables = 0;      // grain tables, entries of a directory
  uint64_t gd_sectors = 0;  // of one directory
  uint64_t rgd = 0, gd = storage::kVmdkGdAtEnd, overhead = kVmdkWriteGrainSectors;
  uint32_t version = 3, flags = 0;

  uint64_t GtSector(uint64_t table, bool redundant) const {
    return (redundant ? rgd : gd) + gd_sectors + table * kGtSectors;
  }
};

Layout MakeLayout(uint64_t size, const VmdkCreateOptions& options) {
  Layout l;
  l.stream = options.subformat == "streamOptimized";
  l.capacity = RoundUp(size, kSectorBytes) / kSectorBytes;
  l.tables = RoundUp(l.capacity, kVmdkWriteGrainSectors * kGtes) / (kVmdkWriteGrainSectors * kGtes);
  l.gd_sectors = std::max<uint64_t>(1, RoundUp(l.tables * 4, kSectorBytes) / kSectorBytes);
  l.flags =
      storage::kVmdkFlagNewlineTest | (options.zeroed_grain ? storage::kVmdkFlagZeroedGte : 0);
  if (l.stream) {
    l.flags |= storage::kVmdkFlagCompressed |
               storage::kVmdkFlagMarkers;  // no redundant directory in a stream
    return l;
  }
  l.version = options.zeroed_grain ? 2 : 1;
  l.flags |= storage::kVmdkFlagRedundantGt;
  l.rgd = 1 + kDescriptorSectors;
  l.gd = l.rgd + l.gd_sectors + l.tables * kGtSectors;
  l.overhead = RoundUp(l.gd + l.gd_sectors + l.tables * kGtSectors, kVmdkWriteGrainSectors);
  return l;
}

// The SparseExtentHeader; a stream's footer is the same with gd_offset set.
std::vector<uint8_t> HeaderSector(const Layout& l, uint64_t gd_offset) {
  std::vector<uint8_t> s(kSectorBytes, 0);
  Store<uint32_t>(&s[0], storage::kVmdkMagic);
  Store<uint32_t>(&s[4], l.version);
  Store<uint32_t>(&s[8], l.flags);
  Store<uint64_t>(&s[12], l.capacity);
  Store<uint64_t>(&s[20], kVmdkWriteGrainSectors);
  Store<uint64_t>(&s[28], 1);  // descriptor right after the header
  Store<uint64_t>(&s[36], kDescriptorSectors);
  Store<uint32_t>(&s[44], kGtes);
  Store<uint64_t>(&s[48], l.rgd);
  Store<uint64_t>(&s[56], gd_offset);
  Store<uint64_t>(&s[64], l.overhead);
  s[72] = 0;                                              // uncleanShutdown
  s[73] = '\n', s[74] = ' ', s[75] = '\r', s[76] = '\n';  // detects text-mode transfers
  Store<uint16_t>(&s[77], l.stream ? storage::kVmdkCompressDeflate : 0);
  return s;
}

class Writer final : public VmdkWriter {
 public:
  Writer(std::string path, UniqueFd fd, uint64_t size, const Layout& layout)
      : path_(std::move(path)),
        fd_(std::move(fd)),
        size_(size),
        layout_(layout),
        gt_(kGtes, 0),
        gd_(layout.stream ? layout.tables : 0, 0),
        grain_buf_(kGrainBytes, 0) {}

  storage::ImageFormat format() const override { return storage::ImageFormat::kVmdk; }
  const std::string& path() const override { return path_; }
  uint64_t size() const override { return size_; }
  bool read_only() const override { return false; }
  uint64_t allocated_bytes() const override { return pos_; }

  Result<void> ReadV(uint64_t, std::span<const iovec>) override { return Refused("read"); }
  Result<void> Discard(uint64_t, uint64_t) override { return Refused("discard"); }
  Result<storage::Extent> BlockStatus(uint64_t, uint64_t) override {
    return Refused("block status");
  }
  Result<void> Flush() override { return {}; }  // the file is a VMDK only after Finish

  Result<void> WriteV(uint64_t offset, std::span<const iovec> iov) override {
    std::lock_guard lock(mu_);
    uint64_t len = 0;
    for (const iovec& v : iov) len += v.iov_len;
    TRY(CheckOrder(offset, len));
    for (const iovec& v : iov) {
      TRY(Append(offset, static_cast<const uint8_t*>(v.iov_base), v.iov_len));
      offset += v.iov_len;
    }
    next_ = offset;
    return {};
  }

  // Grains not written read as zeros: only the order is checked.
  Result<void> WriteZeroes(uint64_t offset, uint64_t length, bool) override {
    std::lock_guard lock(mu_);
    TRY(CheckOrder(offset, length));
    next_ = offset + length;
    return {};
  }

  Result<void> Finish(bool sync) override {
    std::lock_guard lock(mu_);
    if (finished_) return Err(path_ + ": VMDK already finished");
    finished_ = true;
    TRY(EmitGrain());
    TRY(EmitTable());
    if (layout_.stream) {
      TRY(Marker(layout_.gd_sectors, storage::kVmdkMarkerGd));
      uint64_t gd_offset = pos_ / kSectorBytes;
      TRY(AppendSectors(gd_.data(), gd_.size() * 4));
      TRY(Marker(1, storage::kVmdkMarkerFooter));
      std::vector<uint8_t> footer = HeaderSector(layout_, gd_offset);
      TRY(AppendSectors(footer.data(), footer.size()));
      TRY(Marker(0, storage::kVmdkMarkerEos));
    }
    if (sync && ::fdatasync(fd_.get()) != 0) return SysErr(path_ + ": fdatasync");
    return {};
  }

  // The header and descriptor; monolithicSparse: both directories, pointing at their tables
  // (holes until written), as qemu-img preallocates them.
  Result<void> WriteStart(const std::string& descriptor) {
    std::vector<uint8_t> head = HeaderSector(layout_, layout_.gd);
    head.resize((1 + kDescriptorSectors) * kSectorBytes, 0);
    std::memcpy(head.data() + kSectorBytes, descriptor.data(), descriptor.size());
    TRY_CTX(storage::PwriteFull(fd_.get(), head.data(), head.size(), 0), path_);
    if (!layout_.stream) {
      for (bool redundant : {true, false}) {
        std::vector<uint32_t> dir(layout_.tables);
        for (uint64_t t = 0; t < dir.size(); ++t) {
          dir[t] = static_cast<uint32_t>(layout_.GtSector(t, redundant));  // < overhead
        }
        uint64_t at = (redundant ? layout_.rgd : layout_.gd) * kSectorBytes;
        TRY_CTX(storage::PwriteFull(fd_.get(), dir.data(), dir.size() * 4, at), path_);
      }
    }
    pos_ = layout_.overhead * kSectorBytes;
    if (::ftruncate(fd_.get(), static_cast<off_t>(pos_)) != 0) return SysErr(path_ + ": truncate");
    return {};
  }

 private:
  Error Refused(const std::string& what) const {
    return Err(path_ + ": " + what + " refused: kite-img only writes VMDK images");
  }

  Result<void> CheckOrder(uint64_t offset, uint64_t len) const {
    if (finished_) return Err(path_ + ": write after the VMDK was finished");
    if (offset > size_ || len > size_ - offset) {
      return Err(path_ + ": write at " + std::to_string(offset) + " beyond the disk's " +
                 std::to_string(size_) + " bytes");
    }
    if (offset < next_) {
      return Err(path_ + ": write at " + std::to_string(offset) + " before " +
                 std::to_string(next_) + ": kite-img writes a VMDK in disk order");
    }
    return {};
  }

  Result<void> Append(uint64_t offset, const uint8_t* data, uint64_t len) {
    while (len > 0) {
      uint64_t grain = offset / kGrainBytes, in = offset % kGrainBytes;
      if (grain != grain_) {
        TRY(EmitGrain());
        grain_ = grain;
      }
      uint64_t n = std::min(len, kGrainBytes - in);
      std::memcpy(grain_buf_.data() + in, data, n);
      grain_dirty_ = true;
      offset += n, data += n, len -= n;
    }
    return {};
  }

  // Appends the buffered grain unless it reads as zeros; the buffer is zeros afterwards (the
  // disk's last grain is written whole, zeros past the end of the disk, as qemu-img).
  Result<void> EmitGrain() {
    if (!grain_dirty_) return {};
    grain_dirty_ = false;
    if (IsZero(grain_buf_.data(), kGrainBytes)) return {};
    uint64_t table = grain_ / kGtes;
    if (table != table_) {
      TRY(EmitTable());
      table_ = table;
    }
    gt_[grain_ % kGtes] = TRY(HereAsEntry());
    table_used_ = true;
    if (layout_.stream) {
      TRY(AppendCompressed());
    } else {
      TRY(AppendSectors(grain_buf_.data(), kGrainBytes));
    }
    std::fill(grain_buf_.begin(), grain_buf_.end(), 0);
    return {};
  }

  // The grain marker (LBA, size) and the grain's deflate stream.
  Result<void> AppendCompressed() {
    uLongf packed_len = compressBound(kGrainBytes);
    packed_.resize(12 + packed_len);
    if (compress2(packed_.data() + 12, &packed_len, grain_buf_.data(), kGrainBytes,
                  Z_DEFAULT_COMPRESSION) != Z_OK) {
      return Err(path_ + ": deflate of grain " + std::to_string(grain_) + " failed");
    }
    Store<uint64_t>(&packed_[0], grain_ * kVmdkWriteGrainSectors);
    Store<uint32_t>(&packed_[8], static_cast<uint32_t>(packed_len));
    return AppendSectors(packed_.data(), 12 + packed_len);
  }

  // The current grain table, if it holds a grain: a stream appends it behind its marker;
  // monolithicSparse writes both copies into their preallocated places (seeking back, as
  // qemu-img does).
  Result<void> EmitTable() {
    if (!table_used_) return {};
    table_used_ = false;
    if (layout_.stream) {
      TRY(Marker(kGtSectors, storage::kVmdkMarkerGt));
      gd_[table_] = TRY(HereAsEntry());
      TRY(AppendSectors(gt_.data(), gt_.size() * 4));
    } else {
      for (bool redundant : {true, false}) {
        uint64_t at = layout_.GtSector(table_, redundant) * kSectorBytes;
        TRY_CTX(storage::PwriteFull(fd_.get(), gt_.data(), gt_.size() * 4, at), path_);
      }
    }
    std::fill(gt_.begin(), gt_.end(), 0);
    return {};
  }

  Result<uint32_t> HereAsEntry() const {
    uint64_t sector = pos_ / kSectorBytes;
    if (sector > kMaxGte) {
      return Err(path_ + ": VMDK stream beyond 2 TiB: grain and table offsets are 32-bit sectors");
    }
    return static_cast<uint32_t>(sector);
  }

  // A metadata marker: a sector of its own {sectors of what follows, size 0, type}.
  Result<void> Marker(uint64_t sectors, uint32_t type) {
    uint8_t m[kSectorBytes] = {};
    Store<uint64_t>(&m[0], sectors);
    Store<uint32_t>(&m[12], type);
    return AppendSectors(m, sizeof(m));
  }

  // Appends `len` bytes padded with zeros to a whole sector.
  Result<void> AppendSectors(const void* data, uint64_t len) {
    TRY_CTX(storage::PwriteFull(fd_.get(), data, len, pos_), path_);
    uint64_t padded = (len + kSectorBytes - 1) / kSectorBytes * kSectorBytes;
    if (padded > len) {
      static const uint8_t kZeros[kSectorBytes] = {};
      TRY_CTX(storage::PwriteFull(fd_.get(), kZeros, padded - len, pos_ + len), path_);
    }
    pos_ += padded;
    return {};
  }

  const std::string path_;
  const UniqueFd fd_;
  const uint64_t size_;
  const Layout layout_;
  std::mutex mu_;  // the pipeline's in-order Finish calls come from its worker threads
  // Everything below is guarded by mu_.
  uint64_t next_ = 0;  // disk offset where the next write may start
  uint64_t pos_ = 0;   // file offset of the next append, a whole sector
  bool finished_ = false;
  std::vector<uint32_t> gt_;  // the table of table_, filled as its grains are appended
  uint64_t table_ = 0;
  bool table_used_ = false;
  std::vector<uint32_t> gd_;        // a stream's directory, filled as tables are appended
  std::vector<uint8_t> grain_buf_;  // grain grain_, zeros where not written
  uint64_t grain_ = 0;
  bool grain_dirty_ = false;
  std::vector<uint8_t> packed_;  // grain marker and deflate stream
};

}  // namespace

std::string VmdkDescriptorText(const VmdkCreateOptions& options, uint64_t capacity_sectors,
                               const std::string& basename, uint32_t cid) {
  char cid_hex[9];
  std::snprintf(cid_hex, sizeof(cid_hex), "%x", cid);  // unpadded, as qemu-img
  std::string hw = !options.hwversion.empty() ? options.hwversion : options.compat6 ? "6" : "4";
  uint64_t heads = options.adapter_type == "ide" ? 16 : 255;
  std::string tools = options.toolsversion.empty() ? "2147483647" : options.toolsversion;
  return "# Disk DescriptorFile\nversion=1\nCID=" + std::string(cid_hex) +
         "\nparentCID=ffffffff\ncreateType=\"" + options.subformat +
         "\"\n\n# Extent description\nRW " + std::to_string(capacity_sectors) + " SPARSE \"" +
         basename + "\"\n\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"" + hw +
         "\"\nddb.geometry.cylinders = \"" + std::to_string(capacity_sectors / (heads * 63)) +
         "\"\nddb.geometry.heads = \"" + std::to_string(heads) +
         "\"\nddb.geometry.sectors = \"63\"\nddb.adapterType = \"" + options.adapter_type +
         "\"\nddb.toolsVersion = \"" + tools + "\"\n";
}

Result<std::unique_ptr<VmdkWriter>> VmdkWriter::Create(const std::string& path, uint64_t size,
                                                       const VmdkCreateOptions& options) {
  if (options.subformat != "streamOptimized" && options.subformat != "monolithicSparse") {
    return Err(path + ": kite-img cannot write VMDK subformat " + options.subformat);
  }
  Layout layout = MakeLayout(size, options);
  if (layout.capacity == 0) {  // qemu-img creates one, but neither it nor kite-img can open it
    return Err(path + ": a VMDK disk holds at least one sector (0 bytes asked)");
  }
  if (layout.capacity > storage::kVmdkMaxCapacitySectors) {
    return Err(path + ": VMDK disk size " + std::to_string(size) + " too large (at most " +
               std::to_string(storage::kVmdkMaxCapacitySectors * kSectorBytes) + " bytes)");
  }
  std::string basename = path.substr(path.find_last_of('/') + 1);
  std::string descriptor =
      VmdkDescriptorText(options, layout.capacity, basename, std::random_device{}());
  if (descriptor.size() > kDescriptorSectors * kSectorBytes) {
    return Err(path + ": VMDK descriptor too long for its " + std::to_string(kDescriptorSectors) +
               " sectors (file name too long?)");
  }
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return SysErr(path + ": create");
  auto writer = std::make_unique<Writer>(path, std::move(fd), size, layout);
  TRY(writer->WriteStart(descriptor));
  return std::unique_ptr<VmdkWriter>(std::move(writer));
}

}  // namespace kite::img
